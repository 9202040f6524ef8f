"""VIPER reward quality end to end on CPU: does the likelihood of a briefly trained video model rank episodes by skill?

For each DMC task (cartpole_balance, reacher_easy, cheetah_run) the script runs
VIPER's pipeline with a short CPU budget, every stage cached under ``--runs``
(``runs/bench_viper/`` by default; a stage whose output is there is skipped,
so a re-run resumes):

1. ``oracle``: a SAC state oracle (``tokenizer_quality.oracle``, i.e.
   ``worldrl.oracles.sac.train_state_oracle``) for ``--oracle-steps`` steps,
   with its mean return over deterministic evaluation episodes: the oracle is
   only as expert as that return says;
2. ``experts``: ``--pool`` oracle episodes recorded as 64x64 frames
   (``worldrl.data.collect``), of which the ``--top-k`` best by return become
   the expert videos (``worldrl.data.curate``, as ``worldrl curate --top-k``);
3. ``tokenizer``: the CPU VQ-GAN preset (``configs/tokenizer/cpu.yaml``) trained
   on the expert videos for ``--tokenizer-steps`` steps;
4. ``video_model``: VideoGPT at the CPU preset (``configs/video/cpu.yaml``,
   context 7) trained on their codes for ``--video-steps`` steps;
5. ``episodes``: held-out episodes recorded with other seeds, never seen by the
   tokenizer or the video model: ``expert`` (the deterministic oracle),
   ``noisy_<sigma>`` (oracle actions plus Gaussian noise of standard deviation
   sigma, clipped to the action bounds; ``worldrl collect`` has no noise
   option, so :class:`NoisyPolicy` here adds it) and ``random`` (uniform actions);
6. ``scores``: every held-out episode relabelled with ``worldrl.wrappers.viper.relabel``
   (fp32); its VIPER return is the sum of ``ln p(x_t | context)`` over its
   frames t >= 1, in nats (all episodes have the same length).

Reported per task: the AUROC of VIPER returns separating the held-out expert
episodes from the random ones (the probability that an expert episode scores
above a random one, ties half; ``auroc`` and ``spearman`` of
``worldrl.diagnostics.viper_report``), the Spearman rank correlation between VIPER
return and task return over all scored episodes (expert, noisy, random: graded
policies), and the CPU and wall seconds of every stage (for a cached stage,
those of the run that made it). Targets: AUROC >= 0.95 and Spearman >= 0.8 per
task.

``--action-repeat`` sets the action repeat of the oracle, its expert videos
and the scored episodes (the suite's 2 by default): a VIPER reward for an agent
at action repeat 8 can come from experts acting at 8 (``--action-repeat 8``,
episodes of 125 frames) or from experts acting at 2 with the model trained on
every 4th frame (``--video-frame-skip 4``). ``--expert-noise`` adds Gaussian
noise to the oracle's actions in the expert videos. Run folders other than the
default say so (``sac10000_ar8``, ``ep125_noise0.3``).

Steps, not seconds, fix the budget (so a run is reproducible). Training runs
with one torch thread (``--threads``) and no data workers. The JSON
(``benchmarks/results/viper_reward_quality.json``; ``--quick``:
``runs/bench_viper/quick.json``) is rewritten after each task, and lists the
tasks not run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import machine, shown

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "viper_reward_quality.json"
TASKS = ("cartpole_balance", "reacher_easy", "cheetah_run")
AUROC_TARGET = 0.95
SPEARMAN_TARGET = 0.8
STAGE_FILE = "stage.json"
"""Written into a stage's folder when the stage is complete: its summary and the seconds it took."""
SUITE_REPEAT = 2
"""The suite's action repeat (``worldrl/dmc-*`` default)."""
SEEDS = {"experts": 1, "expert": 101, "noisy": 201, "random": 301}
"""Collector seeds per episode set; distinct so that held-out episodes never repeat training episodes."""


@dataclass(frozen=True)
class Budget:
    oracle_steps: int
    """SAC agent steps per oracle (state observations)."""
    oracle_eval_episodes: int
    pool: int
    """Oracle episodes recorded for the expert videos."""
    top_k: int
    """The best of them (by return) kept as expert videos."""
    episode_steps: int | None
    """Agent steps per recorded episode (None: the suite's time limit, 1000 // action_repeat)."""
    action_repeat: int
    """Action repeat of the oracle's training, its expert videos and the scored episodes."""
    expert_noise: float
    """Gaussian noise (standard deviation) added to the oracle's actions in the expert videos: a deterministic
    oracle that balances perfectly makes near-still videos, which teach the video model nothing of recovering."""
    tokenizer_steps: int
    tokenizer_batch: int
    video_steps: int
    video_batch: int
    video_frame_skip: int
    """The video model's ``train.frame_skip``: it sees every k-th recorded frame (the agent at k x the
    expert videos' action repeat), and held-out episodes are scored on every k-th frame too."""
    heldout_expert: int
    """Held-out oracle episodes scored."""
    noisy: int
    """Scored episodes per noise level."""
    noise: tuple[float, ...]
    random: int
    """Scored random-policy episodes."""


MODES = {
    "default": Budget(oracle_steps=10_000, oracle_eval_episodes=10, pool=10, top_k=8, episode_steps=None,
                      action_repeat=SUITE_REPEAT, expert_noise=0.0, tokenizer_steps=300, tokenizer_batch=16,
                      video_steps=300, video_batch=16, video_frame_skip=1,
                      heldout_expert=5,
                      noisy=4, noise=(0.3, 0.6, 1.0), random=5),
    "quick": Budget(oracle_steps=1_000, oracle_eval_episodes=2, pool=3, top_k=2, episode_steps=40,
                    action_repeat=SUITE_REPEAT, expert_noise=0.0, tokenizer_steps=10, tokenizer_batch=8, video_steps=10,
                    video_batch=4, video_frame_skip=1,
                    heldout_expert=2, noisy=2,
                    noise=(0.3, 1.0), random=2),
}


# Stages -------------------------------------------------------------------------------------------------------------
def stage(folder: Path, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a stage writing into ``folder`` unless its ``stage.json`` says it is complete; its summary with
    ``cpu_s``, ``wall_s`` (of the run that made it) and ``cached``."""
    marker = folder / STAGE_FILE
    if marker.is_file():
        return {**json.loads(marker.read_text()), "cached": True}
    cpu, wall = time.process_time(), time.perf_counter()
    summary = run()
    summary = {**summary, "cpu_s": round(time.process_time() - cpu, 1), "wall_s": round(time.perf_counter() - wall, 1)}
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(summary, indent=1) + "\n")
    return {**summary, "cached": False}


class NoisyPolicy:
    """``policy``'s actions plus Gaussian noise of standard deviation ``sigma``, clipped to the action bounds."""

    def __init__(self, policy: Callable[[Any], np.ndarray], sigma: float, low: np.ndarray, high: np.ndarray,
                 seed: int = 0):
        self.policy, self.sigma, self.low, self.high = policy, float(sigma), low, high
        self.required_obs_type = getattr(policy, "required_obs_type", None)
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: Any) -> np.ndarray:
        actions = np.asarray(self.policy(obs), dtype=np.float64)
        noisy = actions + self.sigma * self.rng.standard_normal(actions.shape)
        return np.clip(noisy, self.low, self.high).astype(np.float32)


def env_id(task: str) -> str:
    return f"worldrl/dmc-{task}-v0"


def record(task: str, policy: Callable[[Any], np.ndarray], episodes: int, folder: Path, seed: int,
           budget: Budget, name: str) -> dict[str, Any]:
    """Record ``policy`` into ``folder`` until it holds ``episodes`` episodes (pixels and state); their returns."""
    from worldrl.data.collect import collect
    from worldrl.data.folder import EpisodeFolder

    kwargs: dict[str, Any] = {"obs_type": "pixels+state", "action_repeat": budget.action_repeat}
    if budget.episode_steps is not None:
        kwargs["max_episode_steps"] = budget.episode_steps
    have = len(EpisodeFolder(folder)) if (folder / "dataset.json").is_file() else 0
    if have < episodes:
        collect(env_id(task), policy, episodes - have, folder, seed=seed, env_kwargs=kwargs, policy_name=name,
                progress=False)
    returns = EpisodeFolder(folder).returns
    return {"episodes": len(returns), "return_mean": round(float(returns.mean()), 1),
            "return_min": round(float(returns.min()), 1), "return_max": round(float(returns.max()), 1)}


def policies(task: str, oracle_dir: Path, budget: Budget) -> dict[str, tuple[Callable[[Any], np.ndarray], int, int]]:
    """The scored episode sets: name -> (policy, episodes, collector seed)."""
    import gymnasium as gym

    from worldrl.oracles import as_policy

    probe = gym.make(env_id(task), obs_type="state")
    space = probe.action_space
    probe.close()
    oracle = as_policy(str(oracle_dir), space)
    sets = {"expert": (oracle, budget.heldout_expert, SEEDS["expert"])}
    for i, sigma in enumerate(budget.noise):
        noisy = NoisyPolicy(oracle, sigma, space.low, space.high, seed=SEEDS["noisy"] + i)
        sets[f"noisy_{sigma:g}"] = (noisy, budget.noisy, SEEDS["noisy"] + i)
    sets["random"] = (as_policy("random", space, seed=SEEDS["random"]), budget.random, SEEDS["random"])
    return sets


def experts(task: str, oracle_dir: Path, budget: Budget, folder: Path) -> dict[str, Any]:
    """``budget.pool`` oracle episodes in ``folder/pool``, the ``top_k`` best curated into ``folder/top<k>``."""
    import gymnasium as gym

    from worldrl.data.curate import curate
    from worldrl.data.folder import EpisodeFolder
    from worldrl.oracles import as_policy

    probe = gym.make(env_id(task), obs_type="state")
    space = probe.action_space
    probe.close()
    oracle = as_policy(str(oracle_dir), space)
    if budget.expert_noise > 0:
        oracle = NoisyPolicy(oracle, budget.expert_noise, space.low, space.high, seed=SEEDS["experts"])
    pool = record(task, oracle, budget.pool, folder / "pool", SEEDS["experts"], budget, str(oracle_dir))
    top = folder / f"top{budget.top_k}"
    if top.exists():
        import shutil

        shutil.rmtree(top)  # an interrupted curation: redo it (curate writes only into a new folder)
    kept = EpisodeFolder(curate(folder / "pool", top, top_k=budget.top_k).path).returns
    return {"pool": pool, "top_k": budget.top_k, "folder": shown(top),
            "return_mean": round(float(kept.mean()), 1), "return_min": round(float(kept.min()), 1)}


def tokenizer(budget: Budget, data: Path, out: Path) -> dict[str, Any]:
    """The CPU tokenizer preset trained on ``data`` (``tokenizer_quality``'s config at this budget)."""
    import tokenizer_quality as tq

    from worldrl.training.tokenizer import train_tokenizer

    tq_budget = replace(tq.MODES["default"], tokenizer_steps=budget.tokenizer_steps,
                        batch_size=budget.tokenizer_batch, eval_batches=4)
    metrics = train_tokenizer(tq.tokenizer_config(tq_budget, "vq_restarts"), [data], out, device="cpu",
                              progress=False)
    return {"preset": f"configs/tokenizer/{tq.PRESET}.yaml", "steps": metrics["step"],
            "batch_size": budget.tokenizer_batch, "eval_split": metrics["eval_split"],
            "val_psnr_db": round(metrics["val_psnr"], 2), "val_usage": round(metrics["val_usage"], 4),
            "folder": shown(out / "tokenizer")}


def video_model(budget: Budget, tokenizer_dir: Path, data: Path, out: Path) -> dict[str, Any]:
    """VideoGPT at the CPU preset trained on ``data``'s codes (``video_model_quality``'s config at this budget)."""
    import video_model_quality as vmq

    from worldrl.training.video_model import train_video_model

    vmq_budget = replace(vmq.MODES["default"], video_steps=budget.video_steps, batch_size=budget.video_batch)
    config = vmq.video_config("videogpt", vmq_budget, out / "codes")
    config["train"]["frame_skip"] = budget.video_frame_skip
    metrics = train_video_model(config, tokenizer_dir, [data], out, device="cpu", progress=False)
    return {"preset": shown(vmq.VIDEO_PRESET), "steps": metrics["step"], "batch_size": budget.video_batch,
            "frame_skip": budget.video_frame_skip,
            "eval_split": metrics["eval_split"], "val_bits_per_code": round(metrics["val_bits_per_code"], 4),
            "folder": shown(Path(metrics["video_model"]))}


def scores(video_dir: Path, sets: dict[str, Path], frame_skip: int = 1) -> dict[str, Any]:
    """VIPER returns (sum of ``ln p`` over frames t >= 1, nats) and task returns of every episode of ``sets``;
    with ``frame_skip`` k the model scores every k-th frame (what it sees from an env at k x the action repeat)."""
    from worldrl.data.folder import EpisodeFolder
    from worldrl.wrappers.viper import relabel

    out = {}
    for name, folder in sets.items():
        episodes = EpisodeFolder(folder)
        logps = relabel(({"image": episode["image"][::frame_skip]} for episode in episodes), video_dir, device="cpu")
        out[name] = {
            "files": [info.file for info in episodes.infos],
            "task_return": [round(float(r), 3) for r in episodes.returns],
            "viper_return": [round(float(np.nansum(lp)), 2) for lp in logps],
            "viper_mean_logp": [round(float(np.nanmean(lp)), 4) for lp in logps],
            "frames_scored": [int(np.isfinite(lp).sum()) for lp in logps],
        }
    return {"sets": out}


# One task -----------------------------------------------------------------------------------------------------------
def task_folders(task: str, budget: Budget, root: Path) -> tuple[Path, Path]:
    """The oracle's run folder (``sac<steps>``, ``_ar<r>`` off the suite's action repeat) and, inside it, the folder
    of the expert videos and the models trained on them (``ep<steps>``, ``_noise<sigma>`` with expert noise)."""
    repeat = budget.action_repeat
    base = root / task / (f"sac{budget.oracle_steps}" + (f"_ar{repeat}" if repeat != SUITE_REPEAT else ""))
    noise = f"_noise{budget.expert_noise:g}" if budget.expert_noise > 0 else ""
    return base, base / f"ep{budget.episode_steps or 1000 // repeat}{noise}"


def run_task(task: str, budget: Budget, root: Path, say: Callable[[str], None]) -> dict[str, Any]:
    import tokenizer_quality as tq

    repeat = budget.action_repeat
    base, data = task_folders(task, budget, root)
    oracle_dir = base / "oracle"
    stages: dict[str, Any] = {}
    say(f"{task}: oracle")
    tq_budget = replace(tq.MODES["default"], oracle_steps=budget.oracle_steps,
                        oracle_eval_episodes=budget.oracle_eval_episodes)
    env_kwargs = {"action_repeat": repeat} if repeat != SUITE_REPEAT else {}
    stages["oracle"] = stage(oracle_dir / "bench",
                             lambda: tq.oracle_summary(tq.oracle(task, tq_budget, oracle_dir, env_kwargs)))
    say(f"{task}: expert videos")
    stages["experts"] = stage(data / "experts", lambda: experts(task, oracle_dir, budget, data / "experts"))
    expert_dir = data / "experts" / f"top{budget.top_k}"
    models = data / f"tok{budget.tokenizer_steps}"
    say(f"{task}: tokenizer")
    stages["tokenizer"] = stage(models, lambda: tokenizer(budget, expert_dir, models))
    skip = budget.video_frame_skip
    video_run = models / (f"video{budget.video_steps}" + (f"_skip{skip}" if skip > 1 else ""))
    say(f"{task}: video model")
    stages["video_model"] = stage(video_run, lambda: video_model(budget, models / "tokenizer", expert_dir, video_run))
    sets = policies(task, oracle_dir, budget)
    folders = {}
    for name, (policy, count, seed) in sets.items():
        folders[name] = data / "scored" / f"{name}_n{count}"
        say(f"{task}: episodes {name}")
        stages[f"episodes_{name}"] = stage(folders[name],
                                           lambda p=policy, c=count, f=folders[name], s=seed, n=name:
                                           record(task, p, c, f, s, budget, n))
    say(f"{task}: scores")
    scores_dir = video_run / "_".join(["scores", *(folder.name for folder in folders.values())])
    scored = stage(scores_dir, lambda: scores(video_run / "video_model", folders, skip))
    stages["scores"] = {key: scored[key] for key in ("cpu_s", "wall_s", "cached")}
    return {"task": task, **summarize(scored["sets"]), "stages": stages, "episodes": scored["sets"]}


def summarize(sets: dict[str, Any]) -> dict[str, Any]:
    """AUROC (held-out expert vs random), Spearman over every scored episode, and per-set means."""
    from worldrl.diagnostics.viper_report import auroc, spearman

    viper = np.concatenate([s["viper_return"] for s in sets.values()])
    task = np.concatenate([s["task_return"] for s in sets.values()])
    area, rho = auroc(sets["expert"]["viper_return"], sets["random"]["viper_return"]), spearman(viper, task)
    return {
        "auroc_expert_vs_random": round(area, 4),
        "spearman_viper_vs_task_return": round(rho, 4),
        "scored_episodes": len(viper),
        "pass": {"auroc": bool(area >= AUROC_TARGET), "spearman": bool(rho >= SPEARMAN_TARGET)},
        "per_set": {name: {"episodes": len(s["viper_return"]),
                           "task_return_mean": round(float(np.mean(s["task_return"])), 1),
                           "viper_return_mean": round(float(np.mean(s["viper_return"])), 1),
                           "viper_mean_logp_per_frame": round(float(np.mean(s["viper_mean_logp"])), 3)}
                    for name, s in sets.items()},
    }


def print_task(row: dict[str, Any]) -> None:
    print(f"\n{row['task']}: AUROC expert vs random {row['auroc_expert_vs_random']:.3f} (target {AUROC_TARGET}), "
          f"Spearman VIPER vs task return {row['spearman_viper_vs_task_return']:.3f} (target {SPEARMAN_TARGET}) "
          f"over {row['scored_episodes']} episodes")
    print(f"  {'set':10} {'episodes':>8} {'task return':>11} {'VIPER return':>12} {'logp/frame':>10}")
    for name, s in row["per_set"].items():
        print(f"  {name:10} {s['episodes']:8d} {s['task_return_mean']:11.1f} {s['viper_return_mean']:12.1f} "
              f"{s['viper_mean_logp_per_frame']:10.3f}")
    print(f"  {'stage':18} {'cpu s':>8} {'wall s':>8} cached")
    for name, s in row["stages"].items():
        print(f"  {name:18} {s['cpu_s']:8.1f} {s['wall_s']:8.1f} {s['cached']}")


def print_summary(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'task':17} {'oracle ret':>10} {'AUROC':>6} {'Spearman':>8} {'wall s':>7} pass")
    for row in rows:
        wall = sum(s["wall_s"] for s in row["stages"].values())
        print(f"{row['task']:17} {row['stages']['oracle']['return_mean']:10.1f} {row['auroc_expert_vs_random']:6.3f} "
              f"{row['spearman_viper_vs_task_return']:8.3f} {wall:7.0f} {all(row['pass'].values())}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budget and 40-step episodes: a smoke test")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    defaults = MODES["default"]
    parser.add_argument("--oracle-steps", type=int, help=f"SAC steps per oracle (default {defaults.oracle_steps})")
    parser.add_argument("--pool", type=int, help=f"oracle episodes recorded (default {defaults.pool})")
    parser.add_argument("--top-k", type=int, help=f"best of them kept as expert videos (default {defaults.top_k})")
    parser.add_argument("--tokenizer-steps", type=int, help=f"default {defaults.tokenizer_steps}")
    parser.add_argument("--video-steps", type=int, help=f"default {defaults.video_steps}")
    parser.add_argument("--action-repeat", type=int,
                        help=f"action repeat of the oracle, its expert videos and the scored episodes "
                             f"(default {SUITE_REPEAT}, the suite's)")
    parser.add_argument("--expert-noise", type=float,
                        help="std of Gaussian noise on the oracle's actions in the expert videos (default 0)")
    parser.add_argument("--video-frame-skip", type=int,
                        help="train and score the video model on every k-th frame: for an agent at k x the expert "
                             "videos' action repeat (default 1)")
    parser.add_argument("--noise", type=float, nargs="+", help="action noise levels (default 0.3 0.6 1.0)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: stage seconds comparable across runs; more trains faster "
                             "but not bit-for-bit the same)")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "bench_viper"), help="cache of every stage")
    parser.add_argument("--out", help="JSON file (default: results/viper_reward_quality.json; quick: RUNS/quick.json)")
    return parser.parse_args(argv)


def budget_from(args: argparse.Namespace) -> Budget:
    budget = asdict(MODES["quick" if args.quick else "default"])
    for key in ("oracle_steps", "pool", "top_k", "tokenizer_steps", "video_steps", "video_frame_skip", "action_repeat",
                "expert_noise", "noise"):
        if getattr(args, key) is not None:
            budget[key] = tuple(args.noise) if key == "noise" else getattr(args, key)
    return Budget(**budget)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    budget = budget_from(args)
    mode = "quick" if args.quick else "default"
    root = Path(args.runs) / mode
    out = Path(args.out) if args.out else (Path(args.runs) / "quick.json" if args.quick else RESULTS)
    start_cpu, start_wall = time.process_time(), time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - start_wall:6.0f} s] {message}", flush=True)

    rows: list[dict[str, Any]] = []
    for done, task in enumerate(args.tasks, 1):
        rows.append(run_task(task, budget, root, say))
        print_task(rows[-1])
        result = {
            "command": " ".join(["python", *sys.argv]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": machine(),
            "mode": mode,
            "budget": {**asdict(budget), "tokenizer_preset": "configs/tokenizer/cpu.yaml",
                       "video_preset": "configs/video/cpu.yaml", "val_fraction_of_trainers": 0.2,
                       "torch_threads": args.threads, "num_workers": 0, "relabel_precision": "fp32"},
            "targets": {"auroc_expert_vs_random": AUROC_TARGET, "spearman_viper_vs_task_return": SPEARMAN_TARGET},
            "tasks_run": [row["task"] for row in rows],
            "tasks_not_run": list(args.tasks[done:]) + [t for t in TASKS if t not in args.tasks],
            "all_targets_met": all(all(row["pass"].values()) for row in rows),
            "total_cpu_s_this_invocation": round(time.process_time() - start_cpu, 1),
            "total_wall_s_this_invocation": round(time.perf_counter() - start_wall, 1),
            "note": (
                "VIPER return = sum over frames t >= 1 of ln p(x_t | up to 7 earlier frames) under the video "
                "model, nats (relabel, fp32). Scored episodes are recorded with seeds distinct from the expert "
                "videos', so none was seen in training. AUROC: held-out oracle episodes vs random-policy "
                "episodes; Spearman: VIPER return vs task return over expert, noisy and random episodes. "
                "Stage seconds are those of the run that made the stage (cached: an earlier invocation); "
                "oracle seconds include its evaluation episodes. The machine's 2 cores were shared with other "
                "jobs, so seconds are noisy."
            ),
            "tasks": rows,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
    print_summary(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
