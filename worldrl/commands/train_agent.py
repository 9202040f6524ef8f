"""``worldrl train-agent``: train a pixel agent (DrQ, DrQ-v2, DreamerV3) online on a worldrl env, task or VIPER reward.

The agent's and the run's settings come from the dataclass defaults (VIPER's
Table E.4 for DrQ, Table E.3 for DreamerV3), a preset (``--config
configs/agents/drq.yaml``) and ``key.sub=value`` overrides
(``agent.batch_size=128 train.eval_every=5000``), in that order; the flags
below set single entries (``--steps`` is ``train.steps``, ``--rnd`` is
``agent.rnd=true``, ``--plan2explore`` is
``agent.behavior.disagreement_weight=1``, ...). With ``--reward viper
--plan2explore`` DreamerV3 learns VIPER's combination: its reward head fits
the env's reward, which is then VIPER's (extrinsic task reward 0, VIPER 1),
plus the ensemble disagreement with weight 1. ``--logdir`` receives
``config.yaml``, ``checkpoint.pt`` with ``replay_<step>.npz``, ``agent.pt``
and TensorBoard logs in ``tb/``. Running the same command again resumes
exactly where the last checkpoint left off, also after a SIGKILL; only
``train.steps`` and the logging, evaluation and checkpoint settings may
change (``--force`` resumes with any other change too).

Examples::

    worldrl train-agent --agent drq --env worldrl/dmc-cartpole_balance-v0 --steps 100000 --logdir runs/drq_cartpole
    worldrl train-agent --agent drq --env worldrl/dmc-cartpole_balance-v0 --reward viper \\
        --video-model runs/dmc_videogpt/video_model --rnd --logdir runs/drq_viper
    worldrl train-agent --config configs/agents/dreamerv3.yaml --env worldrl/dmc-cartpole_balance-v0 \\
        --reward viper --video-model runs/dmc_videogpt/video_model --plan2explore --logdir runs/dv3_viper
    worldrl train-agent --config configs/agents/dreamerv3_atari.yaml --env worldrl/atari-pong-v0 --logdir runs/dv3_pong
    worldrl train-agent --agent drq --env worldrl/sim-v0 --env-arg model=runs/vgpt/video_model \\
        --env-arg start_frames=data/cartpole_balance/random --logdir runs/drq_sim     # inside a learned simulator
"""

from __future__ import annotations

import argparse
import sys

HELP = ("train a pixel agent (DrQ, DrQ-v2, DreamerV3) on an env with the task or VIPER reward, optionally with RND "
        "or Plan2Explore; resumes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", help="agent name: drq, drqv2 or dreamerv3 (default: the preset's agent.type)")
    parser.add_argument("--env", help="registered id, e.g. worldrl/dmc-cartpole_balance-v0 (env.id)")
    parser.add_argument("--steps", type=int, help="env steps to train, over all envs (train.steps; default 100000)")
    parser.add_argument("--logdir", required=True, help="run folder; re-running with the same folder resumes")
    parser.add_argument("--num-envs", type=int, help="envs stepped in lockstep (train.num_envs; default 1)")
    parser.add_argument("--env-arg", action="append", metavar="KEY=VALUE",
                        help="argument of gym.make (env.kwargs), repeatable, e.g. --env-arg size=32")
    parser.add_argument("--reward", choices=("task", "viper"), help="env.reward (default: task)")
    parser.add_argument("--video-model", metavar="DIR", help="video model folder for --reward viper")
    parser.add_argument("--rnd", action="store_true", help="add the RND novelty bonus to the reward (agent.rnd)")
    parser.add_argument("--plan2explore", action="store_true",
                        help="DreamerV3: add Plan2Explore's disagreement (agent.behavior.disagreement_weight=1)")
    parser.add_argument("--config", help="preset, e.g. configs/agents/drq.yaml (default: built-in defaults)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. agent.lr=1e-4")
    parser.add_argument("--seed", type=int, help="train.seed (default 0)")
    parser.add_argument("--device", default="auto", help="torch device (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="resume even if the config differs from the checkpoint's")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The flags given on the command line as ``key=value`` overrides."""
    flags = {"agent.type": args.agent, "env.id": args.env, "train.steps": args.steps,
             "train.num_envs": args.num_envs, "env.reward": args.reward, "env.video_model": args.video_model,
             "train.seed": args.seed, "agent.rnd": True if args.rnd else None,
             "agent.behavior.disagreement_weight": 1 if args.plan2explore else None}
    return [f"{key}={value}" for key, value in flags.items() if value is not None]


def check_flags(args: argparse.Namespace, config: dict) -> None:
    """A clear error for an exploration flag the agent does not have."""
    from worldrl.config import ConfigError

    kind = (config.get("agent") or {}).get("type")
    if args.plan2explore and kind != "dreamerv3":
        raise ConfigError(f"--plan2explore is DreamerV3's exploration (agent.behavior.disagreement_weight); "
                          f"agent {kind!r} has none (DrQ's is --rnd)")
    if args.rnd and kind == "dreamerv3":
        raise ConfigError("--rnd is DrQ's exploration bonus; DreamerV3's is --plan2explore")


def run(args: argparse.Namespace) -> int:
    from worldrl.commands.collect import parse_assignments
    from worldrl.config import ConfigError, load_config
    from worldrl.training.agent import train_agent

    try:
        config = load_config(args.config, [*flag_overrides(args), *args.overrides])
        if args.env_arg:
            env = config.setdefault("env", {})
            env["kwargs"] = {**(env.get("kwargs") or {}), **parse_assignments(args.env_arg)}
        check_flags(args, config)
        metrics = train_agent(config, args.logdir, device=args.device, progress=not args.no_progress,
                              force=args.force)
    except (ConfigError, ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    evaluation = ""
    if "eval_task_return" in metrics:
        evaluation = (f"; evaluation task return {metrics['eval_task_return']:.1f} "
                      f"+- {metrics['eval_task_return_std']:.1f} (env reward {metrics['eval_return']:.1f})")
    print(f"{args.logdir}: {metrics['step']} env steps, {metrics['updates']} updates, "
          f"{metrics['episodes']} episodes{evaluation}; agent in {args.logdir}/agent.pt")
    return 0
