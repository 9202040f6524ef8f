"""``worldrl train-tokenizer``: train a video tokenizer (VQ-GAN, VideoGPT VQ-VAE, causal) on dataset folders.

The preset (``--config configs/tokenizer/dmc.yaml``) gives the model,
discriminator, loss and training settings; ``key.sub=value`` arguments
override single entries (``train.steps=1000 model.quantizer.codebook_size=256``).
``--out`` receives ``config.yaml`` (the resolved config), ``checkpoint.pt``,
``tokenizer/`` (what ``load_tokenizer`` reads) and TensorBoard logs in ``tb/``.

Running the same command again resumes from the last checkpoint; only
``train.steps`` and the logging, evaluation and checkpoint intervals may
change (``--force`` resumes with any other change too). For several
processes, launch with ``torchrun --nproc_per_node=N -m worldrl.cli
train-tokenizer ...``; ``train.batch_size`` is the global batch.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

HELP = "train a video tokenizer (VQ-GAN, VideoGPT VQ-VAE, causal) on dataset folders; resumes automatically"
OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "tokenizer preset, e.g. configs/tokenizer/dmc.yaml")


def add_run_arguments(parser: argparse.ArgumentParser, config_help: str) -> None:
    """The arguments every training command takes: data, preset, run folder, overrides, device and flags."""
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR", help="dataset folders (worldrl collect)")
    parser.add_argument("--config", required=True, help=config_help)
    parser.add_argument("--out", required=True, help="run folder; re-running with the same folder resumes")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.steps=1000")
    parser.add_argument("--device", default="auto", help="torch device (default: %(default)s)")
    parser.add_argument(
        "--force", action="store_true", help="resume even if the config differs from the checkpoint's"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def split_overrides(data: list[str], overrides: list[str]) -> tuple[list[str], list[str]]:
    """``--data`` takes every word after it: move ``key=value`` words that are not existing paths to the overrides."""
    folders = [item for item in data if Path(item).exists() or not OVERRIDE.match(item)]
    moved = [item for item in data if item not in folders]
    return folders, [*moved, *overrides]


def run(args: argparse.Namespace) -> int:
    from worldrl.config import ConfigError, load_config
    from worldrl.training.tokenizer import NonFiniteLossError, train_tokenizer

    data, overrides = split_overrides(args.data, args.overrides)
    try:
        config = load_config(args.config, overrides)
        metrics = train_tokenizer(config, data, args.out, device=args.device, progress=not args.no_progress,
                                  force=args.force)
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not metrics["ranks_in_sync"]:
        differing = ", ".join(metrics["rank_differences"][:10])
        print(f"error: the {metrics['world_size']} ranks ended with different parameters: {differing}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":
        ranks = ""
        if metrics["world_size"] > 1:
            local = metrics["rank_differences"]
            ranks = f" on {metrics['world_size']} ranks (parameters in sync; rank-local buffers: {local or 'none'})"
        print(
            f"{args.out}: {metrics['step']} steps{ranks}; {metrics['eval_split']} PSNR {metrics['val_psnr']:.2f} dB, "
            f"SSIM {metrics['val_ssim']:.4f}, codebook usage {metrics['val_usage']:.1%}; "
            f"tokenizer in {metrics['tokenizer']}"
        )
    return 0
