"""A trained agent's deterministic policy against a random policy, on the run's env and the same episode seeds.

The learning benchmarks evaluate with 5 episodes every interval; for a
small margin (Pong's -21 floor) that is too few to tell an agent from
chance. This evaluates a finished ``worldrl train-agent`` run over more
episodes and says how many standard errors of the difference separate the
two means:

    python benchmarks/agent_vs_random.py --agent runs/bench_dreamerv3_learning/default/pong_25000steps_seed0_m128 \\
        --episodes 20 --seed 100 --out benchmarks/results/dreamerv3_pong_vs_random.json

Episode ``i`` of both policies resets with seed ``--seed + i``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import machine

import worldrl  # noqa: F401  (registers the ids)


def random_returns(env, episodes: int, seed: int) -> list[float]:
    """Task returns of uniformly random actions, episode ``i`` reset with ``seed + i`` as ``evaluate_agent`` does
    (``worldrl.oracles.evaluate_policy_return`` seeds only its first reset, so its episodes would not match)."""
    env.action_space.seed(seed)
    returns = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, info = env.step(env.action_space.sample())
            total += float(info.get("task_reward", reward))
            done = terminated or truncated
        returns.append(total)
    return returns


def main() -> int:
    import gymnasium as gym

    from worldrl.training.agent import evaluate_agent, load_agent

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", type=Path, required=True, help="a finished train-agent run folder")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=100, help="seed of the first episode (not the training seeds)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, required=True, help="JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    agent, config = load_agent(args.agent, args.device)
    env = gym.make(config["env"]["id"], **config["env"].get("kwargs", {}))
    started = time.perf_counter()
    trained = evaluate_agent(agent, env, args.episodes, args.seed)
    agent_s = time.perf_counter() - started
    random = random_returns(env, args.episodes, args.seed)
    env.close()
    random_mean, random_std = float(np.mean(random)), float(np.std(random))
    standard_error = math.hypot(trained["task_return_std"], random_std) / math.sqrt(args.episodes)
    difference = trained["task_return"] - random_mean
    result = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": machine(), "agent": str(args.agent), "env": config["env"]["id"],
              "env_kwargs": config["env"].get("kwargs", {}), "episodes": args.episodes, "seed": args.seed,
              "trained": trained, "random": {"task_return": random_mean, "task_return_std": random_std,
                                             "returns": random},
              "difference": difference, "standard_error": standard_error,
              "standard_errors": difference / standard_error if standard_error else math.inf,
              "agent_eval_s": agent_s}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'policy':8} {'return':>8} {'std':>6}\n{'trained':8} {trained['task_return']:8.2f} "
          f"{trained['task_return_std']:6.2f}\n{'random':8} {random_mean:8.2f} {random_std:6.2f}")
    print(f"difference {difference:.2f} = {result['standard_errors']:.1f} standard errors; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
