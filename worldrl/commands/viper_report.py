"""``worldrl viper-report``: how well the VIPER reward separates expert episodes from worse ones.

Example::

    worldrl viper-report --video-model runs/video/cartpole/video_model \\
        --expert data/cartpole_balance/expert --other data/cartpole_balance/random data/cartpole_balance/medium \\
        --out runs/reports/cartpole

Scores every episode (or ``--max-episodes`` per folder) with the VIPER
log-likelihood and writes into ``--out``: ``report.json`` (per-group means,
AUROC of expert vs each other folder and vs all, Spearman of VIPER vs task
return, per-step curves, per-episode scores), ``reward_curves.png`` and
``returns.png`` (VIPER fig. 6.5), ``heatmaps_<folder>.png`` (per-code
``-ln p`` over frames, App. E.6) and TensorBoard logs in ``tb/``. Other
folders are labelled by their names.
"""

from __future__ import annotations

import argparse
import shlex
import sys

HELP = "score expert and other dataset folders with VIPER: reward curves, AUROC, Spearman, likelihood heat-maps"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--video-model", required=True, metavar="DIR",
                        help="video model folder (with its tokenizer/), as train-video-model writes it")
    parser.add_argument("--expert", required=True, metavar="DIR", help="dataset folder of expert episodes")
    parser.add_argument("--other", required=True, nargs="+", metavar="DIR",
                        help="dataset folders of other policies (e.g. random, medium), labelled by folder name")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for report.json, PNGs and tb/")
    parser.add_argument("--max-episodes", type=int, metavar="N",
                        help="score at most N episodes per folder, spread over it (default: all)")
    parser.add_argument("--task-id", type=int, metavar="K", help="task index for a task-conditioned video model")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default: %(default)s)")
    parser.add_argument("--heatmaps", type=int, default=4, metavar="N",
                        help="frames per likelihood heat-map grid, 0 for none (default: %(default)s)")
    parser.add_argument("--mask-scoreboard", metavar="GAME",
                        help="black out this Atari game's score area before scoring, as when training the model")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this report, for report.json."""
    words = ["worldrl", "viper-report", "--video-model", args.video_model, "--expert", args.expert,
             "--other", *args.other, "--out", args.out, "--device", args.device, "--heatmaps", str(args.heatmaps)]
    for flag, value in (("--max-episodes", args.max_episodes), ("--task-id", args.task_id),
                        ("--mask-scoreboard", args.mask_scoreboard)):
        if value is not None:
            words += [flag, str(value)]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from worldrl.diagnostics.viper_report import format_report, viper_report

    try:
        report = viper_report(
            args.video_model, args.expert, args.other, args.out, max_episodes=args.max_episodes,
            task_id=args.task_id, device=args.device, heatmaps=args.heatmaps, mask_scoreboard=args.mask_scoreboard,
            command=command_line(args), progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError) as error:  # CheckpointError is a ValueError
        print(f"worldrl viper-report: {error}", file=sys.stderr)
        return 1
    print(format_report(report))
    return 0
