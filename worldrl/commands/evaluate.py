"""``worldrl evaluate``: the task return of a trained agent's deterministic policy over seeded episodes.

``--agent`` is a ``worldrl train-agent`` run folder (or its ``agent.pt``);
the env is the run's (id and arguments from its ``config.yaml``) with the task
reward, unless ``--env`` names another id: that env gets ``--env-arg``
arguments only, plus, for a run trained in the learned simulator
(``worldrl/sim-v0``) evaluated on the real env its model was trained on, the
real env's recorded arguments (frame size, ...). Episode ``i`` resets with
seed ``--seed + i``. ``--json`` also writes the result to a file.
"""

from __future__ import annotations

import argparse
import sys

HELP = "evaluate a trained agent (train-agent run folder) on an env: mean task return over seeded episodes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", required=True, metavar="RUN", help="train-agent run folder or its agent.pt")
    parser.add_argument("--env", help="registered id (default: the run's env)")
    parser.add_argument("--env-arg", action="append", metavar="KEY=VALUE", help="argument of gym.make, repeatable")
    parser.add_argument("--episodes", type=int, default=10, help="episodes (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="torch device (default: %(default)s)")
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON")


def run(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import worldrl  # noqa: F401  (registers the ids)
    from worldrl.atomic import write_json_atomic
    from worldrl.commands.collect import parse_assignments
    from worldrl.config import ConfigError
    from worldrl.envs.simulator_spec import SIM_ID, real_env_kwargs
    from worldrl.training.agent import evaluate_agent, load_agent

    try:
        agent, config = load_agent(args.agent, args.device)
        run_env = config["env"]
        env_id = args.env or run_env["id"]
        kwargs = dict(run_env["kwargs"]) if env_id == run_env["id"] else {}
        if env_id != run_env["id"] and run_env["id"] == SIM_ID:
            kwargs = real_env_kwargs(run_env["kwargs"], env_id)
        env = gym.make(env_id, **{**kwargs, **parse_assignments(args.env_arg)})
        result = evaluate_agent(agent, env, args.episodes, args.seed)
        env.close()
    except (ConfigError, ValueError, TypeError, gym.error.Error) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result = {"agent": str(args.agent), "env": env_id, "episodes": args.episodes, "seed": args.seed, **result}
    if args.json:
        write_json_atomic(args.json, result)
    print(f"{env_id}: task return over {args.episodes} episodes {result['task_return']:.1f} "
          f"+- {result['task_return_std']:.1f} (mean length {result['length']:.0f})")
    return 0
