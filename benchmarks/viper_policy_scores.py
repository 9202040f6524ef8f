"""Score simple policies and trained agents on cartpole_balance under both rewards: task return and VIPER.

A VIPER agent can only climb what the reward grades. This scores, on the
same seeded episodes at the video model's action repeat, the task return and
the mean ``ln p(x_t | context)`` per frame (nats, fp32, as
``worldrl.wrappers.viper.relabel`` computes it) of:

``zero``
    doing nothing (zero force): the pole starts upright and the task reward
    pays for small controls, so this scores high on the task;
``hang``
    doing nothing from a pole hanging straight down at rest (set after the
    reset; the first frame is that of one zero-force step): a still scene
    that the task scores 0, to show whether the reward pays for stillness in
    any pose;
``random``
    uniform random actions;
``push``
    full force to the right all episode: the cart runs to the end of the rail,
    out of the camera's view;
``oracle``
    the SAC state oracle whose episodes trained the video model, run at the
    video model's action repeat (which differs from the oracle's own when the
    model was trained on every k-th frame);
``agent:<run>``
    the deterministic policy of a ``worldrl train-agent`` run folder.

Each episode also reports the fraction of its frames with the pole upright
(cosine > 0.95) and the mean ``ln p`` of those frames and of the others: the
gap between the two is what the reward pays an agent for balancing.
``--per-frame`` adds every frame's ``ln p`` and physical state, to see where in
an episode a policy gains or loses reward.

Writes ``benchmarks/results/viper_policy_scores.json`` with the command, the
machine and the per-episode figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import machine, shown
from drq_learning import ENV, VIDEO_MODEL, video_model_oracle, viper_action_repeat
from learning import eval_curve

RESULTS = Path(__file__).resolve().parent / "results"


def make_policy(name: str, space, video_model: Path):
    """``(obs dict, is_first) -> action`` for a policy name of the module docstring."""
    from worldrl.oracles import as_policy

    if name in ("zero", "random", "hang"):
        policy = as_policy("zero" if name == "hang" else name, space, seed=0)
        return lambda obs, first: policy(obs["state"][None])[0]
    if name == "push":
        return lambda obs, first: space.high.copy()
    if name == "oracle":
        oracle = video_model_oracle(video_model)
        if oracle is None:
            sys.exit(f"{video_model}: no oracle/oracle.json above it")
        policy = as_policy(str(Path(oracle["file"]).parent), space)
        return lambda obs, first: policy({"state": obs["state"][None]})[0]
    if name.startswith("agent:"):
        from worldrl.training.agent import load_agent

        agent, _ = load_agent(name[len("agent:"):], "cpu")
        state = {}

        def act(obs, first):
            action, state["agent"] = agent.act({"image": obs["pixels"][None], "is_first": np.array([first])},
                                               None if first else state["agent"], explore=False)
            return np.asarray(action)[0]

        return act
    sys.exit(f"unknown policy {name!r}: use zero, hang, random, push, oracle or agent:<run folder>")


def hang_pole(env) -> dict[str, np.ndarray]:
    """Put cartpole's pole straight down at rest and return the observation after one zero-force step."""
    physics = env.unwrapped._physics
    with physics.reset_context():
        physics.named.data.qpos["hinge_1"] = np.pi
        physics.named.data.qvel[:] = 0.0
    return env.step(np.zeros(env.action_space.shape, np.float32))[0]


UPRIGHT_COS = 0.95
"""A frame's pole counts as upright when the cosine of its angle from vertical exceeds this (18 degrees)."""


def score(name: str, video_model: Path, repeat: int, seeds: list[int], size: int = 64,
          max_steps: int | None = None, context: int | None = None,
          per_frame: bool = False) -> list[dict[str, Any]]:
    """Per seeded episode of policy ``name``: task return, mean VIPER ``ln p`` per frame, largest |cart x|, the
    fraction of frames with the pole upright and the mean ``ln p`` of those frames and of the others (``None``
    where there are none); ``per_frame`` adds each frame's ``ln p``, cart position, pole cosine, pole angular
    velocity, |action| and task reward."""
    import gymnasium as gym

    import worldrl  # noqa: F401  (registers the ids)
    from worldrl.wrappers.viper import relabel

    limit = {} if max_steps is None else {"max_episode_steps": max_steps}
    env = gym.make(ENV, size=size, action_repeat=repeat, obs_type="pixels+state", **limit)
    policy = make_policy(name, env.action_space, video_model)
    episodes = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        if name == "hang":
            obs = hang_pole(env)
        frames, rows, first, done = [obs["pixels"]], [], True, False
        while not done:
            action = policy(obs, first)
            obs, reward, terminated, truncated, _ = env.step(action)
            frames.append(obs["pixels"])
            cart_x, pole_cos, _, _, pole_velocity = obs["state"]  # cartpole: position (x, cos, sin), velocity
            rows.append((cart_x, pole_cos, pole_velocity, float(np.abs(action).max()), float(reward)))
            first, done = False, terminated or truncated
        logp = relabel([{"image": np.stack(frames)}], video_model, device="cpu", context=context)[0][1:]
        cart, cosine, velocity, force, task = np.asarray(rows, dtype=np.float64).T
        upright = cosine > UPRIGHT_COS
        episode = {"seed": seed, "task_return": float(task.sum()), "viper_logp_per_frame": float(np.mean(logp)),
                   "max_abs_cart_x": float(np.max(np.abs(cart))), "upright_fraction": float(upright.mean()),
                   "viper_logp_upright": float(logp[upright].mean()) if upright.any() else None,
                   "viper_logp_not_upright": float(logp[~upright].mean()) if not upright.all() else None}
        if per_frame:
            episode["frames"] = {key: np.round(values, 4).tolist() for key, values in
                                 (("viper_logp", logp), ("cart_x", cart), ("pole_cos", cosine),
                                  ("pole_angular_velocity", velocity), ("abs_action", force), ("task_reward", task))}
        episodes.append(episode)
    env.close()
    return episodes


def nats(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video-model", type=Path, default=VIDEO_MODEL)
    parser.add_argument("--policies", nargs="+", default=["zero", "random", "push", "oracle"],
                        help="zero, hang, random, push, oracle, agent:<train-agent run folder>")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--size", type=int, default=64, help="frame size the video model's tokenizer takes")
    parser.add_argument("--max-steps", type=int, help="cap each episode at this many agent steps")
    parser.add_argument("--context", type=int,
                        help="context frames of each score (default: the video model's; 0: each frame alone)")
    parser.add_argument("--per-frame", action="store_true",
                        help="also write each frame's ln p, cart position, pole cosine and angular velocity, |action| "
                             "and task reward")
    parser.add_argument("--out", type=Path, default=RESULTS / "viper_policy_scores.json")
    args = parser.parse_args()
    if not args.video_model.is_dir():
        sys.exit(f"{args.video_model}: no video model; run `python benchmarks/viper_reward_quality.py` first")
    torch.set_num_threads(1)
    repeat = viper_action_repeat(args.video_model)
    seeds = list(range(args.seed, args.seed + args.episodes))
    rows = {}
    print(f"{'policy':40} {'task return':>12} {'VIPER nats/frame':>17} {'max |x|':>8} {'upright':>8} "
          f"{'nats upright':>13} {'nats not':>9}")
    for name in args.policies:
        episodes = score(name, args.video_model, repeat, seeds, args.size, args.max_steps, args.context,
                         args.per_frame)
        rows[name] = {"task_return_mean": float(np.mean([e["task_return"] for e in episodes])),
                      "viper_logp_per_frame_mean": float(np.mean([e["viper_logp_per_frame"] for e in episodes])),
                      "episodes": episodes}
        if name.startswith("agent:"):  # the agent saved with the run's latest evaluation
            curve = eval_curve(Path(name[len("agent:"):]), repeat)
            rows[name]["last_evaluation"] = curve[-1] if curve else None
        rows[name]["upright_fraction_mean"] = float(np.mean([e["upright_fraction"] for e in episodes]))
        for part in ("upright", "not_upright"):
            values = [e[f"viper_logp_{part}"] for e in episodes if e[f"viper_logp_{part}"] is not None]
            rows[name][f"viper_logp_{part}_mean"] = float(np.mean(values)) if values else None
        row = rows[name]
        print(f"{name[-40:]:40} {row['task_return_mean']:12.1f} {row['viper_logp_per_frame_mean']:17.1f} "
              f"{max(e['max_abs_cart_x'] for e in episodes):8.2f} {row['upright_fraction_mean']:8.2f} "
              f"{nats(row['viper_logp_upright_mean']):>13} {nats(row['viper_logp_not_upright_mean']):>9}", flush=True)
    result = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": machine(), "env": ENV, "video_model": shown(args.video_model),
              "video_model_oracle": video_model_oracle(args.video_model), "action_repeat": repeat, "seeds": seeds,
              "context": args.context,
              "note": "VIPER: mean over frames t >= 1 of ln p(x_t | context) under the video model, nats (fp32); "
                      f"upright: pole cosine > {UPRIGHT_COS}",
              "policies": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
