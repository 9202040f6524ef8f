"""``worldrl envs``: the registered ids with their observation and action spaces."""

from __future__ import annotations

import argparse
import fnmatch
import sys

HELP = "list the registered environment ids with their spaces"


def describe_space(space) -> str:
    """One line per space: Box bounds collapse to their range, so the arm's 9-D bounds stay readable."""
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        low, high = space.low.min(), space.high.max()
        bounds = f"{low:g}..{high:g}" if space.is_bounded() else "unbounded"
        return f"Box({bounds}, {space.shape}, {space.dtype})"
    if isinstance(space, spaces.Dict):
        return "Dict(" + ", ".join(f"{k}: {describe_space(v)}" for k, v in space.spaces.items()) + ")"
    return str(space)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", help="only ids containing this text (glob wildcards allowed)")
    parser.add_argument("--suite", choices=["dmc", "atari", "manip", "maze", "rlbench"], help="only this suite")
    parser.add_argument("--ids-only", action="store_true", help="print the ids without making each env")


def run(args: argparse.Namespace) -> int:
    import gymnasium as gym
    from absl import logging as absl_logging
    from tqdm import tqdm

    import worldrl

    ids = worldrl.registered_ids(args.suite)
    if args.pattern:
        ids = [i for i in ids if fnmatch.fnmatch(i, f"*{args.pattern}*")]
    if not ids:
        print(f"no registered id matches {args.pattern!r}", file=sys.stderr)
        return 1
    if args.ids_only:
        print("\n".join(ids))
        return 0
    absl_logging.set_verbosity(absl_logging.ERROR)
    rows = []
    for env_id in tqdm(ids, desc="reading spaces", unit="env", file=sys.stderr, disable=len(ids) < 5):
        try:
            env = gym.make(env_id)
        except (ImportError, TypeError) as error:  # TypeError: an env that needs arguments (worldrl/sim-v0)
            rows.append((env_id, f"unavailable: {str(error).splitlines()[0]}", ""))
            continue
        rows.append((env_id, describe_space(env.observation_space), describe_space(env.action_space)))
        env.close()
    width = max(len(r[0]) for r in rows)
    print(f"{'id':<{width}}  observation space | action space")
    for env_id, obs_space, act_space in rows:
        print(f"{env_id:<{width}}  {obs_space} | {act_space}")
    return 0
