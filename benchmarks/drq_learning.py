"""DrQ learning from pixels on DMC cartpole_balance: with the task reward, and with the VIPER reward plus RND.

Two runs of ``worldrl train-agent --agent drq`` (through
:func:`worldrl.training.agent.train_agent`), each in its own folder under
``--runs`` so an interrupted benchmark resumes exactly where it stopped:

``task``
    DrQ on the env's task reward, at action repeat 8 (DrQ's setting for
    cartpole), for ``--task-frames`` env frames. Target: a mean evaluation
    task return >= 800 within 100k frames.
``viper_rnd`` (``viper_rnd_norm`` with ``--viper-normalize``)
    DrQ with RND (``--rnd``) on the VIPER reward alone: the log-likelihood
    under the video model of ``--video-model``, by default the one
    ``benchmarks/viper_reward_quality.py`` trains on cartpole_balance expert
    videos (the oracle's best episodes; AUROC 1.0 there). The expert videos
    are recorded at the oracle's action repeat r (2, the suite's, unless its
    ``oracle.json`` says otherwise) and the model trained on every k-th of
    their frames (its ``train.frame_skip``, 1 by default), so this run steps
    at action repeat r k (``viper_reward_quality.py --video-frame-skip 4`` or
    ``--action-repeat 8`` make a model for action repeat 8, DrQ's cartpole
    setting), for
    ``--viper-frames`` frames. Target: a task return >= 70% of the oracle's
    (the SAC state oracle whose episodes made the expert videos). The runs
    that reach it (at 160k-190k frames) use a model of noisy expert videos at
    action repeat 8 (``--set env.viper.context=0``, each frame scored alone,
    or the full context, ``--tag ar8noisyexperts``)::

        python benchmarks/viper_reward_quality.py --tasks cartpole_balance --action-repeat 8 \
            --expert-noise 0.3 --pool 40 --top-k 32 --video-steps 1500
        python benchmarks/drq_learning.py --only viper_rnd --viper-normalize --viper-frames 300000 \
            --video-model \
            runs/bench_viper/default/cartpole_balance/sac10000_ar8/ep125_noise0.3/tok300/video1500/video_model \
            --set env.viper.context=0 --tag noisy-context0 --seed 0

The networks are the CPU DrQ preset (``configs/agents/drq_cpu.yaml``:
channels 16-32-64-64, MLPs 128x128, batch 64) with one update per agent step
and a replay of the latest 100k frames, so the runs fit this 2-core CPU; the Table E.4 preset runs the same code
(``--preset configs/agents/drq.yaml``) about 4x slower per update. Evaluation:
``--eval-episodes`` deterministic episodes every 10k frames, scored on the task
reward. For reference: a random policy's return at each run's action repeat,
and the do-nothing policy's (zero force): cartpole_balance starts upright
and pays for small controls, so doing nothing scores far above random.

Writes ``benchmarks/results/drq_learning.json`` (``--quick``:
``benchmarks/results/quick/``) with the curves, wall-clock seconds, the
configs and the machine, and the curves as ``drq_learning.png``. Runs not
finished are listed as such; ``--only`` runs one of them (two invocations can
train both in parallel on two cores; a third without ``--only`` only reads
them back). Runs of the JSON already written that are not in ``--runs`` (a
fresh checkout holds no run folders) are carried over as they were measured.
``--set KEY=VALUE`` trains a variant (e.g. ``agent.n_step=3``) in a folder
named with ``--tag``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import learning
import torch
from common import machine, shown
from learning import fill_defaults, first_reaching, plot_curves, train_run

from worldrl.config import apply_overrides, load_yaml
from worldrl.pipeline.stages import merge

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
ENV = "worldrl/dmc-cartpole_balance-v0"
ORACLE_RUN = ROOT / "runs/bench_viper/default/cartpole_balance/sac10000"
VIDEO_MODEL = ORACLE_RUN / "ep500/tok300/video300/video_model"
TASK_TARGET, VIPER_FRACTION_TARGET = 800.0, 0.7
REPLAY_FRAMES = 100_000
"""Env frames the replay holds (DrQ's 100k transitions at action repeat 1; a longer run keeps the latest)."""
RUNS = ("task", "viper_rnd")
VARIANTS = {"task": ("task", False), "viper_rnd": ("viper_rnd", False), "viper_rnd_norm": ("viper_rnd", True)}
"""Result name -> (run, VIPER reward standardised by running statistics)."""


EXPERT_REPEAT = 2
"""Action repeat of expert videos whose oracle does not record one (the suite's default)."""


def viper_action_repeat(video_model: Path) -> int:
    """The action repeat whose frames ``video_model`` scores: the expert videos' (their oracle's, see
    :func:`video_model_oracle`) times its ``train.frame_skip`` (read from the training run's ``config.yaml``
    beside the exported folder; 1 when there is none)."""
    config = video_model / ".." / "config.yaml"
    frame_skip = load_yaml(config).get("train", {}).get("frame_skip", 1) if config.is_file() else 1
    oracle = video_model_oracle(video_model)
    return (oracle["action_repeat"] if oracle else EXPERT_REPEAT) * int(frame_skip)


def run_config(args: argparse.Namespace, name: str, normalize: bool = False) -> tuple[dict[str, Any], int]:
    """The train-agent config of run ``name`` (``normalize``: standardised VIPER reward) and its action repeat."""
    repeat = args.task_repeat if name == "task" else viper_action_repeat(args.video_model)
    frames = args.task_frames if name == "task" else args.viper_frames
    steps = frames // repeat
    every = max(args.eval_frames // repeat, 1)
    env: dict[str, Any] = {"id": ENV, "kwargs": {"size": 64, "action_repeat": repeat}}
    if name == "viper_rnd":
        env.update(reward="viper", video_model=str(args.video_model))
        viper = {"normalize": True} if normalize else {}
        if args.viper_scale != 1.0:
            viper["scale"] = args.viper_scale
        if viper:
            env["viper"] = viper
    preset = load_yaml(args.preset)
    config = merge(preset, {
        "agent": {"rnd": name == "viper_rnd", "bf16": args.bf16},
        "env": env,
        "train": {"steps": steps, "seed": args.seed, "random_steps": min(args.random_frames // repeat, steps),
                  "update_ratio": args.update_ratio, "replay_capacity": min(steps, REPLAY_FRAMES // repeat),
                  "log_every": max(every // 4, 1), "eval_every": every, "eval_episodes": args.eval_episodes,
                  "checkpoint_every": every, "video_every": 0},
    })
    return apply_overrides(config, args.set), repeat


RUN_NAME = re.compile(r"(?P<name>[a-z_]+?)_(?P<budget>\d+)f_seed(?P<seed>\d+)(?:_(?P<tag>[\w-]+))?")


def finished_runs(folder: Path, seed: int) -> dict[str, Path]:
    """Result name (variant, plus ``_tag``, plus ``_seed<s>`` for seeds other than ``seed``) -> its finished run
    with the most frames in ``folder``."""
    matches = [RUN_NAME.fullmatch(path.name) for path in folder.iterdir()] if folder.is_dir() else []
    others = sorted({int(match["seed"]) for match in matches if match} - {seed})
    runs = {}
    for run_seed in [seed, *others]:
        suffix = "" if run_seed == seed else f"_seed{run_seed}"
        runs.update({name + (f"_{tag}" if tag else "") + suffix: path
                     for (name, tag), path in learning.finished_runs(folder, RUN_NAME, VARIANTS, run_seed).items()})
    return runs


def oracle_return(path: Path) -> dict[str, Any] | None:
    file = path / "oracle" / "oracle.json"
    if not file.exists():
        return None
    entry = json.loads(file.read_text())
    repeat = (entry.get("env_kwargs") or {}).get("action_repeat", EXPERT_REPEAT)
    return {"mean": entry["eval"]["mean"], "std": entry["eval"]["std"], "steps": entry["steps"],
            "action_repeat": repeat, "file": shown(file)}


def video_model_oracle(video_model: Path) -> dict[str, Any] | None:
    """The oracle whose episodes were the expert videos of ``video_model``: ``oracle/oracle.json`` in the nearest
    folder above it that has one (the layout of ``benchmarks/viper_reward_quality.py``)."""
    return next((found for folder in (ROOT / video_model).resolve().parents if (found := oracle_return(folder))),
                None)


def carried_oracle(result_file: Path) -> dict[str, Any] | None:
    """The oracle's return recorded in the earlier ``result_file`` (its run folder is not on this checkout)."""
    if not result_file.is_file():
        return None
    previous = json.loads(result_file.read_text())
    oracle = previous.get("reference", {}).get("oracle")
    return oracle and {**oracle, "carried_from": oracle.get("carried_from", previous.get("date"))}


def baseline_return(policy: str, episodes: int, seed: int, action_repeat: int = EXPERT_REPEAT) -> dict[str, float]:
    """Mean task return of ``policy`` (``"random"`` or ``"zero"``, doing nothing) at ``action_repeat``."""
    from worldrl.oracles import evaluate_policy_return

    kwargs = {"obs_type": "state", "action_repeat": action_repeat}
    result = evaluate_policy_return(ENV, policy, episodes, seed, kwargs)
    return {"mean": result["mean"], "std": result["std"], "episodes": episodes}


def viper_summary(curve: list[dict[str, float]], oracle: float) -> dict[str, Any]:
    """A VIPER run's curve against the target: best and final return, as shares of ``oracle`` too, and the
    frames of the first evaluation at or above the target (None: never)."""
    best = max((p["task_return"] for p in curve), default=float("nan"))
    final = curve[-1]["task_return"] if curve else None
    return {"best_return": best, "final_return": final, "oracle": oracle,
            "fraction_of_oracle_best": best / oracle,
            "fraction_of_oracle_final": None if final is None else final / oracle,
            "frames_to_target": first_reaching(curve, VIPER_FRACTION_TARGET * oracle),
            "target": f">= {VIPER_FRACTION_TARGET:.0%} of the return of the oracle whose episodes trained the "
                      "run's video model",
            "met": best / oracle >= VIPER_FRACTION_TARGET}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few thousand frames per run: a smoke test")
    parser.add_argument("--only", choices=RUNS, help="train only this run (others are read back if finished)")
    parser.add_argument("--no-train", action="store_true",
                        help="train nothing: rewrite the JSON and the plot from finished and carried runs")
    parser.add_argument("--task-frames", type=int, help="env frames of the task-reward run (default 100000)")
    parser.add_argument("--viper-frames", type=int, help="env frames of the VIPER+RND run (default 100000)")
    parser.add_argument("--eval-frames", type=int, help="frames between evaluations (default 10000)")
    parser.add_argument("--eval-episodes", type=int, help="episodes per evaluation (default 5)")
    parser.add_argument("--random-frames", type=int, help="frames of random actions first (default 8000)")
    parser.add_argument("--preset", default=str(ROOT / "configs/agents/drq_cpu.yaml"))
    parser.add_argument("--video-model", type=Path, default=VIDEO_MODEL)
    parser.add_argument("--oracle-run", type=Path, default=ORACLE_RUN, help="folder with oracle/oracle.json")
    parser.add_argument("--task-repeat", type=int, default=8,
                        help="action repeat of the task-reward run (default 8; 2 compares with the VIPER runs)")
    parser.add_argument("--viper-normalize", action="store_true",
                        help="standardise the VIPER reward by running statistics (env.viper.normalize)")
    parser.add_argument("--viper-scale", type=float, default=1.0,
                        help="multiply the log-likelihood by this fixed factor (env.viper.scale; a stationary "
                             "alternative to --viper-normalize; give the variant a --tag)")
    parser.add_argument("--update-ratio", type=float, default=1.0,
                        help="gradient updates per agent step (train.update_ratio; default 1; give the variant a "
                             "--tag)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override of the trained run, e.g. agent.n_step=3 (repeatable; give the variant "
                             "a --tag)")
    parser.add_argument("--tag", help="suffix of the trained run's folder and result name, e.g. the video model's "
                        "budget (letters, digits, -)")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench_drq_learning")
    parser.add_argument("--out", type=Path, help="JSON file (default: results/drq_learning.json or results/quick/)")
    return fill_defaults(parser.parse_args(),
                         {"task_frames": 4000, "viper_frames": 1000, "eval_frames": 2000, "eval_episodes": 1,
                          "random_frames": 800},
                         {"task_frames": 100_000, "viper_frames": 100_000, "eval_frames": 10_000, "eval_episodes": 5,
                          "random_frames": 8000})


def main() -> int:
    args = parse_args()
    torch.set_num_threads(1)
    mode = "quick" if args.quick else "default"
    folder = args.runs / mode
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS) / "drq_learning.json"
    wanted = [] if args.no_train else [args.only] if args.only else list(RUNS)
    not_run = {name: "not selected and not finished" for name in VARIANTS}
    if "viper_rnd" in wanted and not args.video_model.is_dir():
        message = (f"{args.video_model}: no video model; run `python benchmarks/viper_reward_quality.py --tasks "
                   f"cartpole_balance` first, or pass --video-model FOLDER (a train-video-model video_model/)")
        if args.only == "viper_rnd":
            sys.exit(message)
        print(f"viper_rnd not run: {message}", file=sys.stderr)
        wanted.remove("viper_rnd")
        not_run["viper_rnd_norm" if args.viper_normalize else "viper_rnd"] = message
    if args.tag and not re.fullmatch(r"[A-Za-z0-9-]+", args.tag):
        sys.exit(f"--tag {args.tag!r}: use letters, digits and '-'")
    for name, (kind, normalize) in VARIANTS.items():
        if kind in wanted and normalize == (kind == "viper_rnd" and args.viper_normalize):
            config, repeat = run_config(args, kind, normalize)
            tag = f"_{args.tag}" if args.tag else ""
            path = folder / f"{name}_{config['train']['steps'] * repeat}f_seed{args.seed}{tag}"
            print(f"== {name}: {path}", flush=True)
            train_run(config, path, repeat, args.device)
    runs: dict[str, Any] = {}
    for name, path in finished_runs(folder, args.seed).items():
        config = load_yaml(path / "config.yaml")
        repeat = config["env"]["kwargs"]["action_repeat"]
        runs[name] = {"action_repeat": repeat, "frames": config["train"]["steps"] * repeat, "run": shown(path),
                      "config": config, **train_run(config, path, repeat, args.device)}
    previous_oracle = carried_oracle(out)
    carried = learning.carry_over(out, runs)
    oracle = oracle_return(args.oracle_run) or previous_oracle
    for name, run in runs.items():
        # A VIPER run is measured against the oracle behind its own video model: a rerun pipeline trains another.
        if run["config"]["env"].get("reward") == "viper" and "oracle" not in run:
            run["oracle"] = (previous_oracle if name in carried
                             else video_model_oracle(Path(run["config"]["env"]["video_model"])) or oracle)
    repeats = sorted({run["action_repeat"] for run in runs.values()})
    seed = args.seed + 1_000_003
    reference = {"random": baseline_return("random", args.eval_episodes, seed), "oracle": oracle,
                 "random_by_action_repeat": {repeat: baseline_return("random", args.eval_episodes, seed, repeat)
                                             for repeat in repeats},
                 "zero_action": baseline_return("zero", args.eval_episodes, seed, max(repeats, default=8)),
                 "zero_action_note": ("the do-nothing policy: cartpole_balance starts upright and pays for small "
                                      "controls, so zero force scores far above random actions (the same at "
                                      "every action repeat)")}
    summary: dict[str, Any] = {}
    if "task" in runs:
        curve = runs["task"]["curve"]
        summary["task"] = {"best_return": max((p["task_return"] for p in curve), default=None),
                           "final_return": curve[-1]["task_return"] if curve else None,
                           "frames_to_800": first_reaching(curve, TASK_TARGET),
                           "target": f">= {TASK_TARGET:.0f} within 100k frames",
                           "met": (first_reaching(curve, TASK_TARGET) or 10**9) <= 100_000}
    for name in runs:
        run_oracle = runs[name].get("oracle")
        if not name.startswith("viper_rnd") or not run_oracle:
            continue
        summary[name] = {"action_repeat": runs[name]["action_repeat"],
                         "random_at_action_repeat": reference["random_by_action_repeat"][
                             runs[name]["action_repeat"]]["mean"],
                         "zero_action": reference["zero_action"]["mean"],
                         **viper_summary(runs[name]["curve"], run_oracle["mean"])}
    result = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": machine(), "mode": mode, "env": ENV, "summary": summary, "reference": reference,
              "runs_not_run": {name: why for name, why in not_run.items() if name not in runs},
              "carried_runs": carried,
              "runs_note": ("every finished run in the runs folder (the most frames of each variant, --tag and "
                            "seed; names end in _seed<s> for seeds other than --seed), each with the config it was "
                            "trained with; carried_runs (and an oracle with carried_from) were measured earlier, "
                            "on a checkout whose run folders are not here, and keep their curves as measured, with "
                            "carried_from the date and measured_on the machine of that result"),
              "note": ("Curves: mean task return of deterministic evaluation episodes against env frames (physics "
                       "steps: agent steps x action repeat). One torch thread per run; wall seconds include "
                       "evaluation and checkpoints and were measured on a shared 2-core machine."),
              "runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    lines = {f"random, action repeat {repeat}": entry["mean"]
             for repeat, entry in reference["random_by_action_repeat"].items()}
    lines["zero action (do nothing)"] = reference["zero_action"]["mean"]
    for run in runs.values():
        if run.get("oracle"):
            when = run["oracle"].get("carried_from", "")[:10] or "this checkout"
            lines[f"oracle {run['oracle']['mean']:.0f} ({when})"] = run["oracle"]["mean"]
    plot_curves({name: run["curve"] for name, run in runs.items()}, out.with_suffix(".png"),
                "DrQ on cartpole_balance (pixels)", lines)
    print(f"\n{'run':26} {'frames':>7} {'best':>7} {'final':>7} {'wall s':>7}")
    for name, run in runs.items():
        returns = [p["task_return"] for p in run["curve"]] or [float("nan")]
        print(f"{name:26} {run['frames']:7d} {max(returns):7.1f} {returns[-1]:7.1f} {run['wall_s']:7.0f}")
    randoms = ", ".join(f"{entry['mean']:.1f} at action repeat {repeat}"
                        for repeat, entry in reference["random_by_action_repeat"].items())
    print(f"random {randoms}; zero action {reference['zero_action']['mean']:.1f}; "
          f"oracle {oracle['mean'] if oracle else float('nan'):.1f}")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
