"""DrQ / DrQ-v2 speed on this machine: agent updates/s (fp32 against bf16 autocast) and env frames/s.

Updates are timed on a replay buffer filled with random 64x64 frames (speed
does not depend on their content), with the Table E.4 networks and batch 256
(``--quick``: batch 32, shorter timing); each configuration with and without
RND. Acting (one frame stack through encoder and actor) is timed per call, and
the env (``worldrl/dmc-cartpole_balance-v0``, action repeat 2, rendering 64x64)
in agent steps and frames per second. Results go to
``benchmarks/results/drq_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from common import machine
from tokenizer_speed import rate

import worldrl  # noqa: F401  (registers the ids)
from worldrl.agents import build_agent
from worldrl.data import ReplayBuffer
from worldrl.device import resolve_device

ENV = "worldrl/dmc-cartpole_balance-v0"
FRAME = (64, 64, 3)


def random_replay(steps: int, action_dim: int) -> ReplayBuffer:
    """A buffer of ``steps`` random steps in episodes of 500."""
    rng = np.random.default_rng(0)
    replay = ReplayBuffer(steps, FRAME, action_dim, seed=0)
    for t in range(steps):
        replay.add({"image": rng.integers(0, 256, (1, *FRAME), dtype=np.uint8),
                    "action": rng.uniform(-1, 1, (1, action_dim)).astype(np.float32),
                    "reward": rng.random(1).astype(np.float32), "is_first": np.array([t % 500 == 0]),
                    "is_last": np.array([t % 500 == 499]), "is_terminal": np.zeros(1, bool)})
    return replay


def measure_agent(name: str, batch: int, rnd: bool, bf16: bool, replay: ReplayBuffer, seconds: float,
                  device: torch.device) -> dict:
    torch.manual_seed(0)
    agent = build_agent(name, {"batch_size": batch, "rnd": rnd, "bf16": bf16}, FRAME, 1, device)
    obs = {"image": np.zeros((1, *FRAME), np.uint8), "is_first": np.ones(1, bool)}
    state = agent.act(obs, None, True)[1]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def update() -> None:
        agent.update(replay)
        sync()

    return {"agent": name, "precision": "bf16" if bf16 else "fp32", "rnd": rnd, "batch": batch,
            "updates_per_s": rate(update, seconds),
            "act_calls_per_s": rate(lambda: agent.act(obs, state, True), seconds / 2)}


def measure_env(seconds: float) -> dict:
    env = gym.make(ENV)
    env.reset(seed=0)
    env.action_space.seed(0)

    def step() -> None:
        if any(env.step(env.action_space.sample())[2:4]):
            env.reset()

    steps_per_s = rate(step, seconds)
    env.close()
    return {"env": ENV, "agent_steps_per_s": steps_per_s, "frames_per_s": 2 * steps_per_s,
            "note": "frames = physics steps at action repeat 2; one 64x64 render per agent step"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="batch 32 and shorter timing (a smoke run)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seconds", type=float, help="timing per measurement (default: 5, quick 1)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "drq_speed.json"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    batch = 32 if args.quick else 256
    replay = random_replay(1000 if args.quick else 5000, 1)
    rows = []
    for name in ("drq", "drqv2"):
        for rnd in (False, True):
            for bf16 in (False, True):
                rows.append(measure_agent(name, batch, rnd, bf16, replay, seconds, device))
                print(json.dumps(rows[-1]), file=sys.stderr)
    result = {"machine": machine(), "device": str(device), "quick": args.quick, "agents": rows,
              "env": measure_env(seconds)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["env"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
