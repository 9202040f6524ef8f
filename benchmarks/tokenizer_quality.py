"""Tokenizer quality on held-out expert frames of DMC after a fixed CPU budget, and codebook usage of the quantizers.

For each task (cartpole_balance, walker_walk, cheetah_run) the script

1. trains a SAC state oracle (``worldrl.oracles.sac.train_state_oracle``) for
   ``--oracle-steps`` agent steps and records its mean return over 20
   deterministic episodes: the oracle is only as expert as that return says
   (at the default 10k steps cartpole_balance is near its maximum of 1000,
   walker_walk and cheetah_run are not experts);
2. records ``--episodes`` episodes of that oracle as 64x64 frames
   (``worldrl.data.collect``);
3. trains the small CPU VQ-GAN (``configs/tokenizer/cpu.yaml``, 8x8 codes,
   codebook 512) for a fixed number of steps and reports PSNR and SSIM on
   held-out episodes (the validation split, by episode, at ``val_fraction``
   0.2) with the measured CPU and wall-clock seconds of that training.

On one task (cartpole_balance) it also trains, with the same budget, the
quantizer variants VQ without dead-code restarts, LFQ (512 codes = 9 bits)
with the annealed entropy penalty and LFQ without it, and reports the share
of codes used on the held-out frames. The GAN loss of the preset starts at
step 2000 and the perceptual loss needs a feature network, so at the budgets
here the tokenizers train on L1 + quantizer loss only.

Steps, not seconds, fix the budget (so a run is reproducible); the JSON
records the CPU and wall seconds they took. Training runs with one torch
thread and no data workers. Oracles and episodes are cached under ``--data``
(``runs/bench_data/`` by default) and reused when present; tokenizer runs
start afresh each time. Results go to
``benchmarks/results/tokenizer_quality.json`` (``--quick``: to
``runs/bench_tokenizer_quality/quick.json``, a smoke test of a few minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from common import machine, shown

from worldrl.config import apply_overrides, load_yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs" / "tokenizer"
RESULTS = Path(__file__).resolve().parent / "results" / "tokenizer_quality.json"
PRESET = "cpu"
TASKS = ("cartpole_balance", "walker_walk", "cheetah_run")
USAGE_TASK = "cartpole_balance"
VAL_FRACTION = 0.2
PSNR_TARGET_DB = 30.0
USAGE_TARGET = 0.9
EXPERT_RETURN = 800.0
"""Mean return (of DMC's 1000) from which the JSON calls an oracle an expert."""
NEVER = 10**9
"""``eval_every`` / ``checkpoint_every`` that never fire during a run: one evaluation and checkpoint at the end."""
VARIANTS: dict[str, list[str]] = {
    "vq_restarts": ["model.quantizer.type=vq", "model.quantizer.restart_dead_codes=true"],
    "vq_no_restarts": ["model.quantizer.type=vq", "model.quantizer.restart_dead_codes=false"],
    "lfq_entropy": ["model.quantizer.type=lfq", "model.quantizer.codebook_size=512"],
    "lfq_no_entropy": [
        "model.quantizer.type=lfq",
        "model.quantizer.codebook_size=512",
        "model.quantizer.entropy_weight=0",
        "model.quantizer.entropy_weight_start=0",
    ],
}
"""Quantizer overrides of the preset; ``vq_restarts`` is the preset's own quantizer."""


@dataclass(frozen=True)
class Budget:
    oracle_steps: int
    """SAC agent steps per oracle (state observations)."""
    oracle_eval_episodes: int
    episodes: int
    """Oracle episodes recorded per task (500 frames each at action repeat 2)."""
    tokenizer_steps: int
    batch_size: int
    eval_batches: int
    """Held-out evaluation: up to ``eval_batches * batch_size`` frames spread over the validation episodes."""


MODES = {
    "default": Budget(oracle_steps=10_000, oracle_eval_episodes=20, episodes=10, tokenizer_steps=400, batch_size=16,
                      eval_batches=16),
    "quick": Budget(oracle_steps=1_000, oracle_eval_episodes=5, episodes=4, tokenizer_steps=20, batch_size=16,
                    eval_batches=4),
}


def env_id(task: str) -> str:
    return f"worldrl/dmc-{task}-v0"


def oracle(task: str, budget: Budget, folder: Path, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """A SAC state oracle for ``task`` (``env_kwargs``: e.g. its action repeat) in ``folder``, trained unless one
    of at least the budget's steps is there."""
    from worldrl.oracles.policy import ORACLE_INFO
    from worldrl.oracles.sac import train_state_oracle

    info_file = folder / ORACLE_INFO
    if info_file.is_file():
        info = json.loads(info_file.read_text())
        if info["steps"] >= budget.oracle_steps:
            return info
    return train_state_oracle(env_id(task), budget.oracle_steps, folder, env_kwargs=env_kwargs,
                              eval_episodes=budget.oracle_eval_episodes, device="cpu", progress=False)


def oracle_summary(info: dict[str, Any]) -> dict[str, Any]:
    """How expert an oracle is: its steps and the return of its deterministic evaluation episodes."""
    evaluation = info["eval"]
    return {"steps": info["steps"], "return_mean": round(evaluation["mean"], 1),
            "return_std": round(evaluation["std"], 1), "eval_episodes": evaluation["episodes"],
            "train_time_s": info["train_time_s"]}


def expert_episodes(task: str, budget: Budget, oracle_dir: Path, folder: Path) -> dict[str, Any]:
    """Record the oracle's episodes into ``folder`` until it holds ``budget.episodes``; describe the dataset."""
    import gymnasium as gym

    from worldrl.data.clips import is_val_episode
    from worldrl.data.collect import collect
    from worldrl.data.folder import EpisodeFolder
    from worldrl.oracles import as_policy

    have = len(EpisodeFolder(folder)) if (folder / "dataset.json").is_file() else 0
    if have < budget.episodes:
        probe = gym.make(env_id(task), obs_type="state")
        policy = as_policy(str(oracle_dir), probe.action_space)
        probe.close()
        kwargs = {"obs_type": getattr(policy, "required_obs_type", None) or "pixels"}
        collect(env_id(task), policy, budget.episodes - have, folder, seed=1, env_kwargs=kwargs,
                policy_name=str(oracle_dir), progress=False)
    data = EpisodeFolder(folder)
    val = [info for info in data.infos if is_val_episode(info.file, VAL_FRACTION)]
    return {
        "folder": shown(folder),
        "episodes": len(data),
        "val_episodes": len(val),
        "train_frames": sum(info.length + 1 for info in data.infos) - sum(info.length + 1 for info in val),
        "val_frames": sum(info.length + 1 for info in val),
        "return_mean": round(float(data.returns.mean()), 1),
    }


def tokenizer_config(budget: Budget, variant: str) -> dict[str, Any]:
    """The CPU preset with the budget, one thread's worth of data loading, one final evaluation, and the variant."""
    train = [
        f"train.steps={budget.tokenizer_steps}",
        f"train.batch_size={budget.batch_size}",
        f"train.eval_batches={budget.eval_batches}",
        f"train.val_fraction={VAL_FRACTION}",
        "train.num_workers=0",
        "train.image_every=0",
        f"train.log_every={max(1, budget.tokenizer_steps // 4)}",
        f"train.eval_every={NEVER}",
        f"train.checkpoint_every={NEVER}",
    ]
    return apply_overrides(load_yaml(CONFIGS / f"{PRESET}.yaml"), train + VARIANTS[variant])


def train(budget: Budget, variant: str, data: Path, out: Path) -> dict[str, Any]:
    """Train one tokenizer from scratch; its held-out metrics and the CPU and wall seconds it took."""
    from worldrl.training.tokenizer import train_tokenizer

    shutil.rmtree(out, ignore_errors=True)
    cpu, wall = time.process_time(), time.perf_counter()
    metrics = train_tokenizer(tokenizer_config(budget, variant), [data], out, device="cpu", progress=False)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    last = metrics["history"][-1] if metrics["history"] else {}
    return {
        "variant": variant,
        "steps": metrics["step"],
        "eval_split": metrics["eval_split"],
        "eval_frames": int(metrics["val_frames"]),
        "psnr_db": round(metrics["val_psnr"], 2),
        "ssim": round(metrics["val_ssim"], 4),
        "usage": round(metrics["val_usage"], 4),
        "train_usage_last_window": round(last.get("codebook/usage", math.nan), 4),
        "cpu_s": round(cpu, 1),
        "wall_s": round(wall, 1),
    }


def expert_note(tasks: list[dict[str, Any]]) -> str:
    weak = [f"{row['task']} ({row['oracle']['return_mean']:.0f})" for row in tasks
            if row["oracle"]["return_mean"] < EXPERT_RETURN]
    if not weak:
        return f"every oracle reached a mean return >= {EXPERT_RETURN:.0f} of 1000."
    return (f"oracles with a mean return below {EXPERT_RETURN:.0f} of 1000, so not experts at this SAC budget: "
            f"{', '.join(weak)}; their frames show a weaker policy than VIPER's experts.")


def targets(tasks: list[dict[str, Any]], usage: list[dict[str, Any]]) -> dict[str, Any]:
    psnr = {row["task"]: row["psnr_db"] >= PSNR_TARGET_DB for row in tasks}
    vq = next((row for row in usage if row["variant"] == "vq_restarts"), None)
    return {
        "psnr_db": {"target": PSNR_TARGET_DB, "pass": psnr, "all_pass": all(psnr.values())},
        "vq_usage_with_restarts": {
            "target": USAGE_TARGET,
            "measured": vq["usage"] if vq else None,
            "pass": vq["usage"] >= USAGE_TARGET if vq else None,
        },
    }


def print_tables(tasks: list[dict[str, Any]], usage: list[dict[str, Any]]) -> None:
    print(f"\n{'task':17} {'oracle ret':>10} {'data ret':>9} {'val ep':>6} {'PSNR dB':>8} {'SSIM':>7} "
          f"{'usage':>6} {'steps':>6} {'cpu s':>7} {'wall s':>7}")
    for row in tasks:
        print(f"{row['task']:17} {row['oracle']['return_mean']:10.1f} {row['data']['return_mean']:9.1f} "
              f"{row['data']['val_episodes']:6d} {row['psnr_db']:8.2f} {row['ssim']:7.4f} {row['usage']:6.3f} "
              f"{row['steps']:6d} {row['cpu_s']:7.1f} {row['wall_s']:7.1f}")
    if usage:
        print(f"\n{USAGE_TASK}: {'variant':15} {'usage (val)':>11} {'usage (train)':>13} {'PSNR dB':>8} {'SSIM':>7}")
        for row in usage:
            print(f"{'':{len(USAGE_TASK) + 2}}{row['variant']:15} {row['usage']:11.3f} "
                  f"{row['train_usage_last_window']:13.3f} {row['psnr_db']:8.2f} {row['ssim']:7.4f}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budget, a smoke test of a few minutes")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--oracle-steps", type=int, help="SAC steps per oracle (default: 10000; quick: 1000)")
    parser.add_argument("--episodes", type=int, help="oracle episodes per task (default: 10; quick: 4)")
    parser.add_argument("--steps", type=int, help="tokenizer training steps per run (default: 400; quick: 20)")
    parser.add_argument("--batch-size", type=int, help="frames per tokenizer step (default: 16)")
    parser.add_argument("--no-usage", action="store_true", help="skip the quantizer-variant runs")
    parser.add_argument("--data", default=str(ROOT / "runs" / "bench_data"), help="cache of oracles and episodes")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "bench_tokenizer_quality"), help="tokenizer run folders")
    parser.add_argument("--out", help="JSON file (default: results/tokenizer_quality.json; quick: RUNS/quick.json)")
    return parser.parse_args(argv)


def budget_from(args: argparse.Namespace) -> Budget:
    budget = asdict(MODES["quick" if args.quick else "default"])
    for key, value in (("oracle_steps", args.oracle_steps), ("episodes", args.episodes),
                       ("tokenizer_steps", args.steps), ("batch_size", args.batch_size)):
        if value is not None:
            budget[key] = value
    return Budget(**budget)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    budget = budget_from(args)
    data_root, runs = Path(args.data), Path(args.runs) / ("quick" if args.quick else "default")
    default_out = runs.parent / "quick.json" if args.quick else RESULTS
    out = Path(args.out) if args.out else default_out
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    tasks, usage = [], []
    for task in args.tasks:
        cache = data_root / task / f"sac_{budget.oracle_steps}"
        print(f"[{time.perf_counter() - start_wall:6.0f} s] {task}: oracle", flush=True)
        info = oracle(task, budget, cache / "oracle")
        print(f"[{time.perf_counter() - start_wall:6.0f} s] {task}: episodes", flush=True)
        data = expert_episodes(task, budget, cache / "oracle", cache / "episodes")
        variants = list(VARIANTS) if task == USAGE_TASK and not args.no_usage else ["vq_restarts"]
        for variant in variants:
            print(f"[{time.perf_counter() - start_wall:6.0f} s] {task}: tokenizer {variant}", flush=True)
            row = train(budget, variant, cache / "episodes", runs / f"{task}_{variant}")
            if variant == "vq_restarts":
                tasks.append({"task": task, "oracle": oracle_summary(info), "data": data, **row})
            if len(variants) > 1:
                usage.append({"task": task, **row})
    print_tables(tasks, usage)
    result = {
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "mode": "quick" if args.quick else "default",
        "budget": {**asdict(budget), "preset": f"configs/tokenizer/{PRESET}.yaml", "val_fraction": VAL_FRACTION,
                   "torch_threads": 1, "num_workers": 0},
        "total_cpu_s": round(time.process_time() - start_cpu, 1),
        "total_wall_s": round(time.perf_counter() - start_wall, 1),
        "note": ("PSNR/SSIM/usage on held-out episodes (validation split by episode); the tokenizer preset is "
                 "the small CPU VQ-GAN (8x8 codes, 512 codes), trained with L1 + quantizer loss only at this "
                 "budget. The machine's 2 cores were shared with other jobs, so seconds are noisy."),
        "experts": expert_note(tasks),
        "tasks": tasks,
        "usage": usage,
        "targets": targets(tasks, usage),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
