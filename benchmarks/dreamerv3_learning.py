"""DreamerV3 learning from pixels: DMC cartpole_balance and Atari Pong with the task reward.

One run of ``worldrl train-agent --agent dreamerv3`` per task (through
:func:`worldrl.training.agent.train_agent`), each in its own folder under
``--runs``, so an interrupted benchmark resumes exactly where it stopped:

``cartpole``
    ``worldrl/dmc-cartpole_balance-v0`` (64x64 pixels, action repeat 2).
    Target: a mean evaluation return >= 800 within 100k env steps.
``pong``
    ``worldrl/atari-pong-v0`` (64x64 pixels, frame skip 4, sticky actions).
    Target: better than a random policy within the same budget.
``cartpole_state``
    cartpole_balance from its 5-D state (``obs_type=state``), a diagnostic
    beside the pixel run: the same agent and reward without the image
    encoder and decoder, and without the 20 ms a frame costs to render.

"Env steps" are agent steps (``env.step`` calls); the JSON also gives frames
(x action repeat or frame skip) and whether the target was met within
100k frames, the stricter reading. ``--set env.kwargs.action_repeat=8``
(with a ``--tag``) trains cartpole at DrQ's action repeat; with
``--preset configs/agents/dreamerv3_cpu_medium.yaml`` (and ``--steps 12500``)
it meets the target on this CPU (README). The agent is the CPU preset
(``configs/agents/dreamerv3_cpu.yaml``; ``--preset`` picks another, e.g. the
Table E.3 ``dreamerv3.yaml``, whose update takes tens of seconds on this CPU)
at the preset's train ratio unless ``--train-ratio`` says otherwise; the
JSON states both and the wall-clock. Evaluation: ``--eval-episodes`` episodes
of the policy's mode every ``--eval-every`` steps; a random policy's return
on the same env is measured for reference.

Writes ``benchmarks/results/dreamerv3_learning.json`` (``--quick``:
``benchmarks/results/quick/``) and the curves as ``dreamerv3_learning.png``.
The JSON reports every finished run in ``--runs`` (the longest of each task
and variant), so ``--only`` trains one task and the others are read back;
runs of the JSON already written that are not in ``--runs`` (a fresh
checkout holds no run folders) are carried over as they were measured.
``--set KEY=VALUE`` trains a variant (e.g.
``agent.world_model.rssm_inputs=separate``) in folders named with ``--tag``.
"""

from __future__ import annotations

import argparse
import json
import math
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
TASKS = {
    "cartpole": {"id": "worldrl/dmc-cartpole_balance-v0", "kwargs": {"size": 64}, "repeat": 2, "target": 800.0},
    "pong": {"id": "worldrl/atari-pong-v0", "kwargs": {"size": 64}, "repeat": 4, "target": None},
    "cartpole_state": {"id": "worldrl/dmc-cartpole_balance-v0", "kwargs": {"obs_type": "state"}, "repeat": 2,
                       "target": 800.0},
}
BUDGET = 100_000


def run_config(args: argparse.Namespace, task: str) -> dict[str, Any]:
    spec = TASKS[task]
    preset = load_yaml(args.preset)
    train = {"steps": args.steps, "seed": args.seed, "random_steps": min(args.random_steps, args.steps),
             "replay_capacity": max(args.steps, 1), "log_every": max(args.eval_every // 4, 1),
             "eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
             "checkpoint_every": args.eval_every, "video_every": args.eval_every}
    if args.train_ratio is not None:
        train["train_ratio"] = args.train_ratio
    config = merge(preset, {"agent": {"bf16": args.bf16}, "env": {"id": spec["id"], "kwargs": spec["kwargs"]},
                            "train": train})
    return apply_overrides(config, args.set)


def frames_per_step(config: dict[str, Any], task: str) -> int:
    """Env frames per agent step of a run: its ``action_repeat`` (DMC) or ``frame_skip`` (Atari) override, else
    the task's default."""
    kwargs = config["env"].get("kwargs") or {}
    return int(kwargs.get("action_repeat", kwargs.get("frame_skip", TASKS[task]["repeat"])))


def run_name(task: str, steps: int, seed: int, tag: str | None) -> str:
    return f"{task}_{steps}steps_seed{seed}" + (f"_{tag}" if tag else "")


RUN_NAME = re.compile(r"(?P<name>[a-z_]+?)_(?P<budget>\d+)steps_seed(?P<seed>\d+)(?:_(?P<tag>[\w-]+))?")


def finished_runs(folder: Path, seed: int) -> dict[tuple[str, str | None], Path]:
    """The finished run with the most steps of each (task, tag) in ``folder`` (other invocations' budgets)."""
    return learning.finished_runs(folder, RUN_NAME, TASKS, seed)


REPEAT_KEYS = ("action_repeat", "frame_skip")


def random_return(task: str, episodes: int, seed: int, repeat: dict[str, int]) -> dict[str, float]:
    """A random policy's mean return on the task's env at the run's ``repeat`` (action repeat or frame skip)."""
    from worldrl.oracles import evaluate_policy_return

    spec = TASKS[task]
    kwargs = {"obs_type": "state"} if task.startswith("cartpole") else dict(spec["kwargs"])
    result = evaluate_policy_return(spec["id"], "random", episodes, seed, {**kwargs, **repeat})
    return {"mean": result["mean"], "std": result["std"], "episodes": episodes, **repeat}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few hundred steps per task: a smoke test")
    parser.add_argument("--only", choices=sorted(TASKS), help="train only this task")
    parser.add_argument("--no-train", action="store_true",
                        help="train nothing: rewrite the JSON and the plot from finished and carried runs")
    parser.add_argument("--steps", type=int, help=f"env steps per task (default {BUDGET})")
    parser.add_argument("--eval-every", type=int, help="env steps between evaluations (default 10000)")
    parser.add_argument("--eval-episodes", type=int, help="episodes per evaluation (default 5)")
    parser.add_argument("--random-steps", type=int, help="steps of random actions first (default 2500)")
    parser.add_argument("--train-ratio", type=float, help="replayed steps per env step (default: the preset's)")
    parser.add_argument("--preset", default=str(ROOT / "configs/agents/dreamerv3_cpu.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override of the trained runs, e.g. agent.world_model.rssm_inputs=separate "
                             "(repeatable; give the variant a --tag)")
    parser.add_argument("--tag", help="suffix of the run folders and result names of a variant (letters, digits, -)")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench_dreamerv3_learning")
    parser.add_argument("--out", type=Path, help="JSON file (default: under results/)")
    return fill_defaults(parser.parse_args(),
                         {"steps": 300, "eval_every": 150, "eval_episodes": 1, "random_steps": 100},
                         {"steps": BUDGET, "eval_every": 10_000, "eval_episodes": 5, "random_steps": 2500})


def main() -> int:
    args = parse_args()
    torch.set_num_threads(1)
    mode = "quick" if args.quick else "default"
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS) / "dreamerv3_learning.json"
    if args.tag and not re.fullmatch(r"[A-Za-z0-9-]+", args.tag):
        sys.exit(f"--tag {args.tag!r}: use letters, digits and '-'")
    folder = args.runs / mode
    for task in [] if args.no_train else [args.only] if args.only else list(TASKS):
        path = folder / run_name(task, args.steps, args.seed, args.tag)
        print(f"== {task}: {path}", flush=True)
        config = run_config(args, task)
        train_run(config, path, frames_per_step(config, task), args.device)
    runs: dict[str, Any] = {}
    for (task, tag), path in finished_runs(folder, args.seed).items():
        config = load_yaml(path / "config.yaml")
        repeat = frames_per_step(config, task)
        run = train_run(config, path, repeat, args.device)
        for point in run["curve"]:
            point["env_steps"] = point["step"]
        runs[task + (f"_{tag}" if tag else "")] = {"task": task, "tag": tag, "env": TASKS[task]["id"],
                                                   "frames_per_step": repeat, "run": shown(path), "config": config,
                                                   **run}
    carried = learning.carry_over(out, runs)
    summary: dict[str, Any] = {}
    randoms: dict[str, dict[str, float]] = {}
    for name, run in sorted(runs.items()):
        task, config = run["task"], run["config"]
        spec, steps, repeat = TASKS[task], config["train"]["steps"], run["frames_per_step"]
        kwargs = config["env"].get("kwargs") or {}
        repeat_kwargs = {key: kwargs[key] for key in REPEAT_KEYS if key in kwargs}
        key = f"{task} {sorted(repeat_kwargs.items())}"
        if key not in randoms:
            randoms[key] = random_return(task, args.eval_episodes, args.seed + 1_000_003, repeat_kwargs)
        reference = run["random"] = randoms[key]
        returns = [p["task_return"] for p in run["curve"]]
        entry: dict[str, Any] = {"env_steps": steps, "frames": steps * repeat,
                                 "best_return": max(returns, default=None),
                                 "final_return": returns[-1] if returns else None, "random": reference["mean"],
                                 "wall_s": run["wall_s"]}
        if spec["target"] is not None:
            reached = first_reaching([{**p, "frames": p["step"]} for p in run["curve"]], spec["target"])
            frames = None if reached is None else reached * repeat
            entry.update(target=f">= {spec['target']:.0f} within {BUDGET} env steps", env_steps_to_target=reached,
                         frames_to_target=frames, met=reached is not None and reached <= BUDGET,
                         met_within_budget_in_frames=frames is not None and frames <= BUDGET)
        else:
            margin = 2 * reference["std"] / math.sqrt(reference["episodes"])
            entry.update(target=f"better than random (by 2 standard errors of its mean, {margin:.2f}) within "
                                f"{BUDGET} env steps",
                         better_than=reference["mean"] + margin,
                         met=bool(returns) and max(returns) > reference["mean"] + margin and steps <= BUDGET)
        summary[name] = entry
    result = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": machine(), "mode": mode, "preset": args.preset, "summary": summary,
              "tasks_not_run": [task for task in TASKS if not any(run["task"] == task for run in runs.values())],
              "carried_runs": carried,
              "note": ("Every finished run in the runs folder, each with the config it was trained with (variants "
                       "by --set carry their --tag in the name). Curves: mean task return of evaluation episodes "
                       "(the policy's mode) against env steps (agent steps) and frames. One torch thread per run; "
                       "wall seconds include evaluation and checkpoints and were measured on a shared 2-core "
                       "machine. carried_runs were measured earlier, on a checkout whose run folders are not "
                       "here: each keeps its curve, config and wall-clock, with carried_from the date of that "
                       "result and measured_on its machine."),
              "runs": dict(sorted(runs.items()))}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    randoms_by_name = {f"{run['task'].split('_')[0]} random, x{run['frames_per_step']}": run["random"]["mean"]
                       for run in runs.values()}
    targets = {f"{run['task'].split('_')[0]} target": TASKS[run["task"]]["target"] for run in runs.values()
               if TASKS.get(run["task"], {}).get("target") is not None}
    plot_curves({name: run["curve"] for name, run in runs.items()}, out.with_suffix(".png"),
                "DreamerV3, task reward", randoms_by_name | targets, xlabel="env frames (agent steps x action repeat)",
                panel=lambda name: f"DreamerV3 on {name.split('_')[0].split(' ')[0]}, task reward")
    print(f"\n{'run':24} {'steps':>7} {'best':>7} {'final':>7} {'random':>7} {'wall s':>7} met")
    for task, entry in summary.items():
        print(f"{task:24} {entry['env_steps']:7d} {entry['best_return'] or float('nan'):7.1f} "
              f"{entry['final_return'] or float('nan'):7.1f} {entry['random']:7.1f} {entry['wall_s']:7.0f} "
              f"{entry['met']}")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
