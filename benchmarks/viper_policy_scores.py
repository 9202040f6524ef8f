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

Writes ``benchmarks/results/viper_policy_scores.json`` with the command, the
machine and the per-episode figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import machine
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


def score(name: str, video_model: Path, repeat: int, seeds: list[int], size: int = 64,
          max_steps: int | None = None, context: int | None = None) -> list[dict[str, float]]:
    """Per seeded episode of policy ``name``: task return, mean VIPER ``ln p`` per frame, largest |cart x|."""
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
        frames, task, first, done, cart = [obs["pixels"]], 0.0, True, False, []
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs, first))
            frames.append(obs["pixels"])
            task += float(reward)
            cart.append(float(obs["state"][0]))
            first, done = False, terminated or truncated
        logp = relabel([{"image": np.stack(frames)}], video_model, device="cpu", context=context)[0][1:]
        episodes.append({"seed": seed, "task_return": task, "viper_logp_per_frame": float(np.mean(logp)),
                         "max_abs_cart_x": float(np.max(np.abs(cart)))})
    env.close()
    return episodes


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
    parser.add_argument("--out", type=Path, default=RESULTS / "viper_policy_scores.json")
    args = parser.parse_args()
    if not args.video_model.is_dir():
        sys.exit(f"{args.video_model}: no video model; run `python benchmarks/viper_reward_quality.py` first")
    torch.set_num_threads(1)
    repeat = viper_action_repeat(args.video_model)
    seeds = list(range(args.seed, args.seed + args.episodes))
    rows = {}
    print(f"{'policy':40} {'task return':>12} {'VIPER nats/frame':>17} {'max |x|':>8}")
    for name in args.policies:
        episodes = score(name, args.video_model, repeat, seeds, args.size, args.max_steps, args.context)
        rows[name] = {"task_return_mean": float(np.mean([e["task_return"] for e in episodes])),
                      "viper_logp_per_frame_mean": float(np.mean([e["viper_logp_per_frame"] for e in episodes])),
                      "episodes": episodes}
        if name.startswith("agent:"):  # the agent saved with the run's latest evaluation
            curve = eval_curve(Path(name[len("agent:"):]), repeat)
            rows[name]["last_evaluation"] = curve[-1] if curve else None
        print(f"{name[-40:]:40} {rows[name]['task_return_mean']:12.1f} "
              f"{rows[name]['viper_logp_per_frame_mean']:17.1f} "
              f"{max(e['max_abs_cart_x'] for e in episodes):8.2f}", flush=True)
    result = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": machine(), "env": ENV, "video_model": str(args.video_model),
              "video_model_oracle": video_model_oracle(args.video_model), "action_repeat": repeat, "seeds": seeds,
              "context": args.context,
              "note": "VIPER: mean over frames t >= 1 of ln p(x_t | context) under the video model, nats (fp32)",
              "policies": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
