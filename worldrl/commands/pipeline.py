"""``worldrl pipeline``: VIPER's pipeline on several tasks of one suite with ONE task-conditioned video model.

As VIPER trains: per task an oracle (DMC: SAC on the state; Atari: the
scripted RAM oracle of ``worldrl/oracles/atari.py``; RLBench: motion-planner
demos, which need CoppeliaSim), its oracle and random episodes and the top-k
as expert videos; one tokenizer on every task's expert videos; one VideoGPT
conditioned on the task id (``model.num_tasks`` = the number of tasks); per
task the VIPER report, an agent on that task's VIPER reward alone and its
evaluation against the oracle and a random policy; a one-page ``REPORT.md``
with a row per task.

Presets are ``configs/pipeline/suite_<suite>_<preset>.yaml``: ``paper`` has
the settings of VIPER's Tables E.1-E.4 (for GPUs), ``small`` the CPU presets
and budgets of ``worldrl demo``. ``--tasks`` replaces the preset's tasks;
``key.sub=value`` arguments override the preset (``oracle.steps=3000``,
``agent.config.train.steps=5000``; ``tokenizer.config``, ``video.config``
and ``agent.config`` are merged over their presets). Stages whose outputs
exist are skipped, so running the same command again resumes.

Examples::

    worldrl pipeline --suite dmc --out runs/dmc_small
    worldrl pipeline --suite dmc --tasks cartpole_balance reacher_easy walker_walk --out runs/dmc3 oracle.steps=20000
    worldrl pipeline --suite atari --preset paper --out runs/atari
    worldrl pipeline --suite dmc --out runs/dmc_small --list
"""

from __future__ import annotations

import argparse
import sys

HELP = "VIPER on several tasks of a suite (dmc, atari, rlbench) with one task-conditioned video model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from worldrl.pipeline.suite import PRESETS, SUITES

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--suite", required=True, choices=SUITES, help="the task suite")
    parser.add_argument("--tasks", nargs="+", metavar="TASK",
                        help="tasks of the suite (default: the preset's), e.g. cartpole_balance reacher_easy")
    parser.add_argument("--preset", choices=PRESETS, default="small",
                        help="paper: VIPER's Tables E.1-E.4 (GPU); small: CPU presets and budgets (default)")
    parser.add_argument("--out", help="run folder; re-running resumes (default: runs/<suite>_<preset>)")
    parser.add_argument("--config", help="a pipeline file of your own instead of the preset")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. oracle.steps=3000 agent.config.train.steps=5000")
    parser.add_argument("--list", action="store_true", help="list the stages and which are done, then stop")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from worldrl.config import ConfigError
    from worldrl.envs.rlbench import RLBenchUnavailableError
    from worldrl.pipeline import PipelineRun, load_suite_config, run_suite, suite_stages
    from worldrl.pipeline.suite import suite_locations

    tasks = [t for t in args.tasks or () if "=" not in t] or None
    overrides = [t for t in args.tasks or () if "=" in t] + list(args.overrides)  # --tasks swallows what follows
    out = Path(args.out or f"runs/{args.suite}_{args.preset}")
    try:
        config = load_suite_config(args.suite, args.preset, tasks, overrides, args.config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.list:
        probe = PipelineRun(out, config)
        for stage in suite_stages(config):
            print(f"{stage.name:<40} {'done' if stage.done(probe) else 'to do':<6} {stage.description}")
        return 0
    start = time.monotonic()
    try:
        result = run_suite(out, config, progress=not args.no_progress)
    except RLBenchUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"\n{args.suite} suite finished in {(time.monotonic() - start) / 60:.1f} min")
    for task in config["tasks"]:
        ev = result.results[f"{task}/evaluate"]
        print(f"{task}: task return " + ", ".join(f"{who} {ev[who]['mean']:.1f} +- {ev[who]['std']:.1f}"
                                                  for who in ("oracle", "agent", "random")))
    print(suite_locations(result))
    return 0
