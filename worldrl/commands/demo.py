"""``worldrl demo``: VIPER's pipeline end to end on DMC cartpole_balance, sized for a CPU (what ``make demo`` runs).

Trains a SAC oracle on the state, records oracle and random episodes, keeps
the best as expert videos, trains the tokenizer and the VideoGPT prior,
reports how well the VIPER reward separates expert from random episodes,
trains DrQ on the VIPER reward alone and compares its task return with the
oracle's and a random policy's. The settings come from
``configs/pipeline/demo.yaml``; ``key.sub=value`` arguments override them
(``oracle.steps=3000``, ``agent.config.train.steps=5000``). Stages whose
outputs exist are skipped, so running the same command again resumes.

Examples::

    worldrl demo
    worldrl demo --out runs/demo_long agent.config.train.steps=20000 video.config.train.steps=1000
    worldrl demo --list
"""

from __future__ import annotations

import argparse
import sys

HELP = "VIPER end to end on cartpole_balance, sized for a CPU: oracle, data, tokenizer, video model, reward, agent"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--out", default="runs/demo", help="run folder; re-running resumes (default: %(default)s)")
    parser.add_argument("--config", help="pipeline preset (default: configs/pipeline/demo.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. oracle.steps=3000 agent.config.train.steps=5000")
    parser.add_argument("--list", action="store_true", help="list the stages and which are done, then stop")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from worldrl.config import ConfigError
    from worldrl.pipeline import PipelineRun, load_pipeline_config, run_pipeline, viper_stages
    from worldrl.pipeline.report import where_everything_is

    try:
        config = load_pipeline_config(args.config, args.overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.list:
        probe = PipelineRun(Path(args.out), config)
        for stage in viper_stages():
            print(f"{stage.name:<18} {'done' if stage.done(probe) else 'to do':<6} {stage.description}")
        return 0
    start = time.monotonic()
    result = run_pipeline(args.out, config, progress=not args.no_progress)
    print(f"\ndemo finished in {(time.monotonic() - start) / 60:.1f} min")
    ev = result.results["evaluate"]
    print("task return: " + ", ".join(f"{who} {ev[who]['mean']:.1f} +- {ev[who]['std']:.1f}"
                                      for who in ("oracle", "agent", "random")))
    print(where_everything_is(result))
    return 0
