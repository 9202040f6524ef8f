"""``worldrl curate``: a new dataset folder holding the best episodes of another, or a band of returns.

Examples::

    worldrl curate --src data/pong --out data/pong_top100 --top-k 100
    worldrl curate --src data/pong --out data/pong_50_75 --return-range 0.5 0.75 --baseline -21

Episodes are hard-linked (``--copy`` copies them) and renumbered best first;
the source folder is left untouched.
"""

from __future__ import annotations

import argparse
import os
import sys

HELP = "make a dataset folder of the top-k episodes of another, or those within a fraction range of the best return"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--src", required=True, help="source dataset folder")
    parser.add_argument("--out", required=True, help="new (or empty) folder to write")
    rule = parser.add_mutually_exclusive_group(required=True)
    rule.add_argument("--top-k", type=int, metavar="K", help="keep the K highest-return episodes")
    rule.add_argument(
        "--return-range", type=float, nargs=2, metavar=("LO", "HI"),
        help="keep episodes whose return is between LO and HI times the best (e.g. 0.5 0.75)",
    )
    parser.add_argument(
        "--baseline", type=float, default=0.0,
        help="return that counts as 0%% for --return-range, e.g. the random policy's (default: %(default)s)",
    )
    parser.add_argument("--by", choices=["episode_return", "task_return"], default="episode_return",
                        help="which return to rank by (default: %(default)s)")
    parser.add_argument("--copy", action="store_true", help="copy the episode files instead of hard-linking them")


def run(args: argparse.Namespace) -> int:
    from worldrl.data.curate import curate, info_returns
    from worldrl.data.folder import EpisodeFolder

    try:
        src = EpisodeFolder(args.src)
        out = curate(
            src, args.out, top_k=args.top_k,
            return_range=tuple(args.return_range) if args.return_range else None,
            mode="copy" if args.copy else "link", by=args.by, baseline=args.baseline,
        )
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"worldrl curate: {error}", file=sys.stderr)
        return 1
    src_returns, kept = info_returns(src.infos, args.by), info_returns(out.infos, args.by)
    linked = os.stat(out.path / out.infos[0].file).st_nlink > 1
    print(f"kept {len(out)} of {len(src)} episodes ({'linked' if linked else 'copied'}) into {out.path}")
    print(f"{args.by} kept: {kept.min():g} .. {kept.max():g} (mean {kept.mean():g})")
    print(f"{args.by} in source: best {src_returns.max():g}, mean {src_returns.mean():g}")
    return 0
