"""``worldrl collect``: record episodes of a policy into a dataset folder (the episode format)."""

from __future__ import annotations

import argparse

HELP = "record episodes of a policy (random, oracle, agent) into a dataset folder"


def parse_assignments(items: list[str] | None) -> dict:
    """``["size=96", "obs_type=pixels+state"]`` -> dict, values parsed as YAML scalars (96 -> int)."""
    import yaml

    parsed = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected key=value, got {item!r}")
        parsed[key] = yaml.safe_load(value)
    return parsed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True, help="environment id, e.g. worldrl/dmc-cartpole_balance-v0")
    parser.add_argument(
        "--policy", default="random",
        help="'random', 'persistent' (random actions held 1-12 steps), 'zero' (do nothing), "
        "'scripted:<game>' (Atari RAM oracles), or the path of a trained oracle "
        "(worldrl train-oracle) (default: %(default)s)",
    )
    parser.add_argument("--episodes", type=int, required=True, help="number of episodes to record")
    parser.add_argument("--out", required=True, help="dataset folder; re-running continues its numbering")
    parser.add_argument("--num-envs", type=int, default=1, help="parallel envs (default: %(default)s)")
    parser.add_argument("--async", dest="vector_mode", action="store_const", const="async", default="sync",
                        help="step the envs in subprocesses (gymnasium's AsyncVectorEnv)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default: %(default)s)")
    parser.add_argument("--task-id", type=int, help="task index stored with each frame (multi-task datasets)")
    parser.add_argument("--env-arg", action="append", metavar="KEY=VALUE",
                        help="environment argument, repeatable, e.g. --env-arg size=96 --env-arg mask_scoreboard=true")


def run(args: argparse.Namespace) -> int:
    from worldrl.data.collect import collect, policy_for_env

    policy, env_kwargs = policy_for_env(args.env, args.policy, parse_assignments(args.env_arg), seed=args.seed)
    folder = collect(
        args.env, policy, args.episodes, args.out, num_envs=args.num_envs, seed=args.seed,
        env_kwargs=env_kwargs, vectorization_mode=args.vector_mode, policy_name=args.policy, task_id=args.task_id,
    )
    returns = folder.returns[-args.episodes:]
    print(
        f"{args.out}: {len(folder)} episodes in all; this run: {args.episodes} episodes, "
        f"return {returns.mean():.1f} +- {returns.std():.1f} (min {returns.min():.1f}, max {returns.max():.1f})"
    )
    return 0
