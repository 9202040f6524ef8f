"""What the VIPER reward costs an agent: env steps/s with and without the VIPER wrapper on DMC pixels.

The env is ``worldrl/dmc-cartpole_balance-v0`` (64x64 RGB, action repeat 2)
with uniform random actions. The reward model is built from presets with
random weights (speed does not depend on them):

- ``dmc``: the DMC VQ-GAN (``configs/tokenizer/dmc.yaml``, Table E.1: 8x8
  codes of 1024) and the DMC VideoGPT (``configs/video/dmc.yaml``, Table E.2:
  context 15, 8 layers of width 256) with ``num_tasks=0``;
- ``cpu``: the small CPU presets (``configs/tokenizer/cpu.yaml``,
  ``configs/video/cpu.yaml``).

Rows: 1 env (``VIPERReward``) and 8 envs (gymnasium's ``SyncVectorEnv`` and
``VIPERRewardVector``, one batched encode and streaming step per vector step),
fp32 and bf16 autocast (the wrappers' ``bf16=True``). Each row times the bare
env and the wrapped env in the same run, in alternating blocks, and reports
env steps/s of both, their ratio (target: wrapped >= 0.5x unwrapped) and the
milliseconds per vector step spent computing the reward (timed inside the
wrapper: all of it, and of it the tokenizer's encode and the video model's
streaming step). Results go
to ``benchmarks/results/viper_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "viper_overhead.json"
ENV_ID = "worldrl/dmc-cartpole_balance-v0"
PRESETS = {
    "dmc": ("configs/tokenizer/dmc.yaml", "configs/video/dmc.yaml"),
    "cpu": ("configs/tokenizer/cpu.yaml", "configs/video/cpu.yaml"),
}
TARGET = 0.5
"""Wrapped steps/s over unwrapped steps/s."""


def reward_model(preset: str) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, Any]]:
    """Tokenizer and video model of ``preset`` with random weights (seed 0), and their model configs."""
    from worldrl.config import load_yaml
    from worldrl.models.predictors import build_video_model
    from worldrl.models.tokenizers import build_tokenizer

    tokenizer_file, video_file = PRESETS[preset]
    tokenizer_config = load_yaml(ROOT / tokenizer_file)["model"]
    video_config = {**load_yaml(ROOT / video_file)["model"], "num_tasks": 0}
    torch.manual_seed(0)
    tokenizer, model = build_tokenizer(tokenizer_config).eval(), build_video_model(video_config).eval()
    return tokenizer, model, {"tokenizer": {"preset": tokenizer_file, **tokenizer_config},
                              "video_model": {"preset": video_file, **video_config}}


class Stepper:
    """Steps a single or vector env with random actions, resetting single envs at episode ends."""

    def __init__(self, env, vector: bool, seed: int = 0):
        self.env, self.vector = env, vector
        self.space = env.action_space
        self.space.seed(seed)
        env.reset(seed=seed)

    def run(self, steps: int) -> float:
        """Seconds for ``steps`` (vector) steps."""
        start = time.perf_counter()
        for _ in range(steps):
            _, _, terminated, truncated, _ = self.env.step(self.space.sample())
            if not self.vector and (terminated or truncated):
                self.env.reset()
        return time.perf_counter() - start


def timed(obj: Any, name: str) -> list[float]:
    """Time every call of ``obj.name`` (replaced on the instance); the list fills with seconds per call."""
    calls: list[float] = []
    inner: Callable = getattr(obj, name)

    def method(*args, **kwargs):
        start = time.perf_counter()
        out = inner(*args, **kwargs)
        calls.append(time.perf_counter() - start)
        return out

    setattr(obj, name, method)
    return calls


def measure(env, vector: bool, num_envs: int, tokenizer, model, bf16: bool, steps: int, blocks: int) -> dict:
    """Env steps/s of ``env`` bare and wrapped, alternating ``blocks`` blocks of ``steps // blocks`` steps."""
    from worldrl.wrappers.viper import VIPERReward, VIPERRewardVector

    wrap = VIPERRewardVector if vector else VIPERReward
    wrapped = wrap(env, video_model=model, tokenizer=tokenizer, device="cpu", bf16=bf16)
    seconds = {"reward": timed(wrapped, "_rewards"), "encode": timed(wrapped.scorer, "encode"),
               "video_model": timed(wrapped.scorer, "observe")}
    bare, viper = Stepper(env, vector), Stepper(wrapped, vector)
    with torch.no_grad():
        bare.run(2)
        viper.run(2)  # warm-up
        for calls in seconds.values():
            calls.clear()
        per_block = max(1, steps // blocks)
        bare_s = viper_s = 0.0
        for _ in range(blocks):
            bare_s += bare.run(per_block)
            viper_s += viper.run(per_block)
    done = per_block * blocks
    bare_rate, viper_rate = done * num_envs / bare_s, done * num_envs / viper_s
    return {
        "num_envs": num_envs,
        "precision": "bf16" if bf16 else "fp32",
        "vector_steps": done,
        "env_steps_per_s": {"unwrapped": round(bare_rate, 2), "wrapped": round(viper_rate, 2)},
        "ratio_wrapped_over_unwrapped": round(viper_rate / bare_rate, 3),
        "reward_ms_per_vector_step": round(1000 * float(np.mean(seconds["reward"])), 2),
        "reward_ms_per_env_step": round(1000 * float(np.mean(seconds["reward"])) / num_envs, 2),
        "of_which_ms_per_vector_step": {
            "encode": round(1000 * float(np.sum(seconds["encode"])) / len(seconds["reward"]), 2),
            "video_model_step": round(1000 * float(np.sum(seconds["video_model"])) / len(seconds["reward"]), 2),
        },
        "env_ms_per_vector_step": round(1000 * bare_s / done, 2),
        "meets_target": bool(viper_rate / bare_rate >= TARGET),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few steps per row (about a minute)")
    parser.add_argument("--steps", type=int, help="vector steps per row and side (default 200 for 1 env, 40 for 8; "
                                                  "quick: 20 and 6)")
    parser.add_argument("--blocks", type=int, default=4, help="alternating bare/wrapped blocks per row (default 4)")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", help="JSON file (default: results/viper_overhead.json; "
                                      "quick: runs/viper_overhead_quick.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import gymnasium as gym

    import worldrl  # noqa: F401  (registers the ids)

    out = Path(args.out) if args.out else (ROOT / "runs" / "viper_overhead_quick.json" if args.quick else RESULTS)
    steps = {1: args.steps or (20 if args.quick else 200), 8: args.steps or (6 if args.quick else 40)}
    blocks = min(args.blocks, 2) if args.quick else args.blocks
    envs = {1: gym.make(ENV_ID), 8: gym.make_vec(ENV_ID, num_envs=8, vectorization_mode="sync")}
    rows, configs = [], {}
    start = time.perf_counter()
    print(f"{'preset':6} {'envs':>4} {'prec':>4} {'bare steps/s':>12} {'VIPER steps/s':>13} {'ratio':>6} "
          f"{'reward ms/vstep':>15} {'encode':>7} {'model':>7} {'env ms/vstep':>12}", flush=True)
    for preset in args.presets:
        tokenizer, model, configs[preset] = reward_model(preset)
        for num_envs, env in envs.items():
            for bf16 in (False, True):
                row = {"preset": preset, **measure(env, num_envs > 1, num_envs, tokenizer, model, bf16,
                                                   steps[num_envs], blocks)}
                rows.append(row)
                rates, parts = row["env_steps_per_s"], row["of_which_ms_per_vector_step"]
                print(f"{preset:6} {num_envs:4d} {row['precision']:>4} {rates['unwrapped']:12.1f} "
                      f"{rates['wrapped']:13.1f} {row['ratio_wrapped_over_unwrapped']:6.2f} "
                      f"{row['reward_ms_per_vector_step']:15.1f} {parts['encode']:7.1f} "
                      f"{parts['video_model_step']:7.1f} "
                      f"{row['env_ms_per_vector_step']:12.1f}", flush=True)
    for env in envs.values():
        env.close()
    dmc_rows = [row for row in rows if row["preset"] == "dmc"]
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "mode": "quick" if args.quick else "default",
        "settings": {"env": ENV_ID, "frame_shape": [64, 64, 3], "actions": "uniform random",
                     "vectorization": "sync", "vector_steps": steps, "blocks": blocks, "torch_threads": args.threads,
                     "weights": "random (seed 0)", "device": "cpu"},
        "models": configs,
        "target": f"wrapped >= {TARGET}x unwrapped env steps/s (DMC presets)",
        "target_met": {f"{row['num_envs']}env_{row['precision']}": row["meets_target"] for row in dmc_rows},
        "note": ("Each row alternates blocks of bare and wrapped steps on the same env instance, so both sides "
                 "see the same machine load. reward_ms_per_vector_step is the time inside the wrapper's reward "
                 "computation (encode the new frames, one streaming step of the video model, bookkeeping), split "
                 "in of_which_ms_per_vector_step (encode includes the reset frames'); the rest of the wrapped step "
                 "is the env. The machine's 2 cores were shared with other jobs, so absolute rates are noisy; the "
                 "ratios are measured under the same load."),
        "total_wall_s": round(time.perf_counter() - start, 1),
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
