"""``worldrl train-oracle``: train a state-based task oracle, whose rollouts become expert videos.

Continuous-control ids (``worldrl/dmc-<task>-v0`` and the other suites with
``obs_type="state"``) train a SAC agent on the state (``--out`` gets
``oracle.zip``, ``oracle.json``, TensorBoard logs and resumable checkpoints;
run the same command again to resume). Atari ids need no training: their
oracles are scripted from the console RAM (``--policy scripted:<game>`` for
the collector), so this command evaluates the scripted oracle instead.
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "train a SAC task oracle on the state of a control env (Atari: evaluate the scripted oracle)"
ATARI_PREFIX = "worldrl/atari-"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True, help="registered id, e.g. worldrl/dmc-cartpole_balance-v0")
    parser.add_argument("--steps", type=int, default=500_000, help="total env steps to train (default: 500000)")
    parser.add_argument("--out", help="output folder (required for training; optional for Atari, to write oracle.json)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    parser.add_argument(
        "--eval-episodes", type=int, default=20, help="episodes of the final evaluation (default: 20)"
    )
    parser.add_argument(
        "--checkpoint-every", type=int, default=10_000, help="steps between resumable checkpoints (default: 10000)"
    )
    parser.add_argument(
        "--learning-starts", type=int, help="random steps before learning (default: min(5000, max(100, steps/10)))"
    )
    parser.add_argument("--device", default="auto", help="torch device for SAC (default: auto)")
    parser.add_argument(
        "--max-episode-steps", type=int, help="Atari only: cap evaluation episodes at this many agent steps"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import worldrl  # noqa: F401  (registers the ids)

    if args.env not in gym.registry:
        from worldrl.envs.registration import closest_ids

        close = closest_ids(args.env)
        hint = f"; closest: {', '.join(close)}" if close else ""
        print(f"unknown env id {args.env!r}{hint}", file=sys.stderr)
        return 2
    if args.env.startswith(ATARI_PREFIX):
        return _scripted(args)
    if not args.out:
        print(
            "--out is required to train an oracle (it receives oracle.zip, oracle.json, logs and checkpoints)",
            file=sys.stderr,
        )
        return 2
    from worldrl.oracles.sac import train_state_oracle

    try:
        info = train_state_oracle(
            args.env,
            args.steps,
            args.out,
            seed=args.seed,
            eval_episodes=args.eval_episodes,
            checkpoint_every=args.checkpoint_every,
            learning_starts=args.learning_starts,
            device=args.device,
            progress=not args.no_progress,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    evaluation = info["eval"]
    print(
        f"{args.env}: {info['steps']} steps in {info['train_time_s']:.0f} s; return over "
        f"{evaluation['episodes']} episodes {evaluation['mean']:.1f} +- {evaluation['std']:.1f}; "
        f"oracle in {args.out} (collect with --policy {args.out})"
    )
    return 0


def _scripted(args: argparse.Namespace) -> int:
    """Atari: report the scripted RAM oracle of the game instead of training one."""
    from pathlib import Path

    from worldrl.oracles import evaluate_policy_return
    from worldrl.oracles.atari import ORACLES, scripted_oracle

    game = args.env[len(ATARI_PREFIX):].rsplit("-v", 1)[0]
    print(
        f"{args.env}: Atari oracles are scripted from the console RAM rather than trained, "
        f"so --steps and training options are ignored.",
        file=sys.stderr,
    )
    if game not in ORACLES:
        print(f"no scripted oracle for {game!r}; available: {', '.join(sorted(ORACLES))}", file=sys.stderr)
        return 2
    name = f"scripted:{game}"
    cap = f", capped at {args.max_episode_steps} steps" if args.max_episode_steps else ""
    print(f"evaluating {name} over {args.eval_episodes} episodes{cap} ...", file=sys.stderr)
    result = evaluate_policy_return(
        args.env,
        scripted_oracle(game),
        episodes=args.eval_episodes,
        seed=args.seed,
        max_episode_steps=args.max_episode_steps,
    )
    print(
        f"{name}: return over {args.eval_episodes} episodes {result['mean']:.1f} +- {result['std']:.1f}; "
        f"collect with --policy {name}"
    )
    if args.out:
        info = {
            "env_id": args.env,
            "policy": name,
            "required_obs_type": "pixels+state",
            "seed": args.seed,
            "max_episode_steps": args.max_episode_steps,
            "eval": {"episodes": args.eval_episodes, "seed": args.seed, **result},
        }
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "oracle.json").write_text(json.dumps(info, indent=2) + "\n")
    return 0
