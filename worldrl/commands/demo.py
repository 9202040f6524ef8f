"""``worldrl demo``: what ``make demo`` runs."""

from __future__ import annotations

import argparse

HELP = "run the demo (for now: a short episode per suite, saved as GIFs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=100, help="agent steps per episode (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from worldrl.demo import run_demo

    run_demo(args.out, steps=args.steps, seed=args.seed)
    return 0
