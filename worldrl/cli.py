"""The ``worldrl`` command: one subcommand per job (``worldrl/commands``), each with ``--help``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from worldrl.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="worldrl", description="Reinforcement learning with video world models.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"worldrl.commands.{name.replace('-', '_')}")
        summary = module.HELP
        sub = subparsers.add_parser(name, help=summary, description=module.__doc__ or summary)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
