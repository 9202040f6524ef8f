"""Does a trained DreamerV3 world model know what its actions do? Imagined vs real response on cartpole_balance.

From ``--starts`` real states (random actions for a random number of steps
after a reset), the real env and the world model each play ``--horizon``
steps of action +1 and, from the same state, of action -1. The response is
the difference of the two resulting observations (+1 minus -1), per state
dimension (cart position, pole cos, pole sin, cart velocity, pole angular
velocity) after 1, 5 and ``--horizon`` steps. The model's rollout starts from
its posterior after observing the real history up to the start (its
``batch_length`` last steps) and reads states through its vector decoder, so
the run must be a DreamerV3 trained from states (``obs_type=state``, e.g. the
``cartpole_state`` run of ``dreamerv3_learning.py``).

A model that can teach its actor to balance must predict the pole's
response: the ratio model / real of the pole's sin and angular velocity
responses should be near 1. Writes
``benchmarks/results/dreamerv3_action_response.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from common import machine

import worldrl  # noqa: F401  (registers the env ids)
from worldrl.agents.dreamerv3.networks import symexp
from worldrl.training.agent import load_agent

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DIMS = ("cart_position", "pole_cos", "pole_sin", "cart_velocity", "pole_angular_velocity")


def real_start(env: gym.Env, rng: np.random.Generator, seed: int, length: int) -> dict[str, np.ndarray]:
    """A reset, then 16-100 random steps; the last ``length`` observations and the actions that led to them."""
    obs, _ = env.reset(seed=seed)
    history = {"state": [obs], "action": [np.zeros(1, np.float32)]}
    for _ in range(int(rng.integers(16, 100))):
        action = rng.uniform(-1, 1, 1).astype(np.float32)
        obs, *_ = env.step(action)
        history["state"].append(obs)
        history["action"].append(action)
    return {key: np.asarray(value[-length:], np.float32) for key, value in history.items()}


def real_response(env: gym.Env, horizon: int) -> np.ndarray:
    """Observations ``[horizon, 5]`` after +1 minus after -1, both from the env's current physics state."""
    physics = env.unwrapped._physics
    saved = physics.get_state().copy()
    rollouts = []
    for sign in (1.0, -1.0):
        with physics.reset_context():
            physics.set_state(saved)
        rollouts.append([env.step(np.array([sign], np.float32))[0] for _ in range(horizon)])
    return np.asarray(rollouts[0]) - np.asarray(rollouts[1])


@torch.no_grad()
def model_response(agent: Any, history: dict[str, np.ndarray], horizon: int, seed: int) -> np.ndarray:
    """The world model's version of :func:`real_response`, from its posterior after ``history``; both rollouts
    draw the same latent noise (``seed``), so their difference is the actions' effect alone."""
    length = len(history["state"])
    batch = agent.to_tensors({"state": history["state"][None], "action": history["action"][None],
                              "is_first": np.eye(1, length, dtype=bool)})
    world_model = agent.world_model
    post, _ = world_model.observe(batch, torch.Generator().manual_seed(seed))
    start = {key: value[:, -1] for key, value in post.items()}
    rollouts = []
    for sign in (1.0, -1.0):
        action = torch.full((1, agent.action_dim), sign, device=agent.device)
        generator = torch.Generator().manual_seed(seed + 1)
        traj, _ = world_model.rssm.imagine(lambda state, a=action: a, start, horizon, generator)
        feat = world_model.rssm.feat(traj)[1:]
        rollouts.append(symexp(world_model.vector_decoder(feat).float()))
    return (rollouts[0] - rollouts[1])[:, 0].cpu().numpy()


def default_runs(quick: bool, seed: int) -> list[Path]:
    """The longest finished ``cartpole_state`` run of ``dreamerv3_learning.py`` per variant, trained with ``seed``."""
    from dreamerv3_learning import finished_runs

    folder = ROOT / "runs/bench_dreamerv3_learning" / ("quick" if quick else "default")
    runs = [path for (task, _), path in finished_runs(folder, seed).items() if task == "cartpole_state"]
    if not runs:
        sys.exit("no cartpole_state run: run `python benchmarks/dreamerv3_learning.py --only cartpole_state` "
                 "first, or pass --run FOLDER")
    return runs


def response(run: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The world model's and the env's responses to +1 vs -1 actions, by steps and state dimension."""
    agent, config = load_agent(run, "cpu")
    if getattr(agent.world_model, "vector_dim", None) != len(DIMS):
        sys.exit(f"{run}: the world model must read the 5-D cartpole state (train it with obs_type=state)")
    env = gym.make(config["env"]["id"], **config["env"]["kwargs"])
    rng = np.random.default_rng(args.seed)
    real, model = [], []
    for start in range(args.starts):
        history = real_start(env, rng, args.seed + start, agent.config.batch_length)
        real.append(real_response(env, args.horizon))
        model.append(model_response(agent, history, args.horizon, args.seed + 2 * start))
    env.close()
    real_mean, model_mean = np.mean(real, 0), np.mean(model, 0)
    table = {str(t): {dim: {"real": float(real_mean[t - 1, i]), "model": float(model_mean[t - 1, i]),
                            "ratio": float(model_mean[t - 1, i] / real_mean[t - 1, i])}
                      for i, dim in enumerate(DIMS)}
             for t in sorted({1, 5, args.horizon})}
    return {"run": str(run), "world_model": config["agent"]["world_model"], "agent_env_steps": int(agent.env_steps),
            "agent_updates": int(agent.updates), "response_by_steps": table}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, nargs="+", help="train-agent run folders of DreamerV3s trained from "
                        "states (default: the longest cartpole_state run of each variant of dreamerv3_learning.py)")
    parser.add_argument("--quick", action="store_true", help="the quick cartpole_state runs, 4 starts: a smoke test")
    parser.add_argument("--starts", type=int, help="real start states (default 32)")
    parser.add_argument("--horizon", type=int, default=15, help="steps of +1 and of -1 from each start")
    parser.add_argument("--seed", type=int, default=0, help="start states' seed, and the default runs' training seed")
    parser.add_argument("--out", type=Path, help="JSON file (default: under results/)")
    args = parser.parse_args()
    args.starts = args.starts or (4 if args.quick else 32)
    args.out = args.out or (RESULTS / "quick" if args.quick else RESULTS) / "dreamerv3_action_response.json"
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    runs = [response(run, args) for run in args.run or default_runs(args.quick, args.seed)]
    result = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": machine(), "starts": args.starts, "horizon": args.horizon,
              "note": "response = observation after +1 actions minus after -1 actions, mean over start states",
              "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for run in runs:
        print(f"\n{run['run']} ({run['agent_env_steps']} env steps, {run['agent_updates']} updates), "
              f"{args.starts} starts")
        print(f"{'steps':>5} {'dimension':22} {'real':>8} {'model':>8} {'ratio':>6}")
        for t, dims in run["response_by_steps"].items():
            for dim, entry in dims.items():
                print(f"{int(t):5d} {dim:22} {entry['real']:8.3f} {entry['model']:8.3f} {entry['ratio']:6.2f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
