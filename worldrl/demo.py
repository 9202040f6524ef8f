"""``make demo`` for now: one short random-policy episode per suite, written as GIFs.

Later issues grow this into the full VIPER pipeline (oracle, expert videos,
tokenizer, video model, reward, agent).
"""

from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
from tqdm import tqdm

import worldrl  # noqa: F401  (registers the ids)
from worldrl.envs.rlbench import rlbench_available

DEMO_ENVS = {
    "dmc": ("worldrl/dmc-walker_walk-v0", {}),
    "atari": ("worldrl/atari-pong-v0", {"mask_scoreboard": True}),
    "manip": ("worldrl/manip-reach_site-v0", {}),
    "rlbench": ("worldrl/rlbench-reach_target-v0", {}),
}


def record_episode(env_id: str, steps: int, seed: int, **kwargs) -> tuple[np.ndarray, float]:
    """Frames [T, H, W, C] and task return of a random policy for at most ``steps`` steps."""
    env = gym.make(env_id, **kwargs)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    frames, total = [obs], 0.0
    for _ in tqdm(range(steps), desc=env_id, unit="step", leave=False):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        frames.append(obs)
        total += float(reward)
        if terminated or truncated:
            break
    env.close()
    return np.stack(frames), total


def run_demo(out: str | Path, steps: int = 100, seed: int = 0) -> list[Path]:
    """Write ``<out>/<suite>.gif`` for each available suite and print a summary table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    print(f"{'suite':<8} {'env id':<36} {'frames':>6} {'return':>8} {'steps/s':>8}  gif")
    for suite, (env_id, kwargs) in DEMO_ENVS.items():
        if suite == "rlbench" and not rlbench_available():
            print(f"{suite:<8} {env_id:<36} skipped: RLBench is not installed (see README)")
            continue
        start = time.perf_counter()
        frames, total = record_episode(env_id, steps, seed, **kwargs)
        rate = (len(frames) - 1) / (time.perf_counter() - start)
        if frames.shape[-1] == 1:
            frames = np.repeat(frames, 3, axis=-1)
        path = out / f"{suite}.gif"
        iio.imwrite(path, frames, duration=40, loop=0)
        written.append(path)
        print(f"{suite:<8} {env_id:<36} {len(frames):>6} {total:>8.2f} {rate:>8.1f}  {path}")
    return written
