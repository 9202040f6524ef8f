"""``worldrl train-video-model``: train a video model (VideoGPT, MaskGIT) on a tokenizer's codes of dataset folders.

The preset (``--config configs/video/dmc.yaml``) gives the model and the
training settings; ``key.sub=value`` arguments override single entries
(``train.steps=1000 model.context=7``). The episodes are encoded once with
``--tokenizer`` (a folder written by ``worldrl train-tokenizer``) and the
codes cached (``<out>/codes/`` unless ``train.code_cache`` names a folder).
``--out`` receives ``config.yaml``, ``checkpoint.pt``, ``video_model/`` (what
``load_video_model`` reads, with a copy of the tokenizer) and TensorBoard logs
in ``tb/``. Running the same command again resumes; ``--force`` resumes with
a changed config. For several processes: ``torchrun --nproc_per_node=N -m
worldrl.cli train-video-model ...``; ``train.batch_size`` is the global batch.
"""

from __future__ import annotations

import argparse
import os
import sys

from worldrl.commands.train_tokenizer import add_run_arguments, split_overrides

HELP = "train a video model (VideoGPT, MaskGIT) on tokenizer codes of dataset folders; resumes automatically"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokenizer", required=True, metavar="DIR", help="tokenizer folder (worldrl train-tokenizer)")
    add_run_arguments(parser, "video model preset, e.g. configs/video/dmc.yaml")
    parser.add_argument(
        "--model", metavar="KIND",
        help="predictor kind (videogpt, maskgit, teco): replaces the preset's model.type, keeping its other model keys",
    )


def run(args: argparse.Namespace) -> int:
    from worldrl.config import ConfigError, load_config
    from worldrl.training.common import NonFiniteLossError
    from worldrl.training.video_model import train_video_model

    data, overrides = split_overrides(args.data, args.overrides)
    if args.model:
        overrides.insert(0, f"model.type={args.model}")
    try:
        config = load_config(args.config, overrides)
        metrics = train_video_model(config, args.tokenizer, data, args.out, device=args.device,
                                    progress=not args.no_progress, force=args.force)
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not metrics["ranks_in_sync"]:
        print(f"error: the ranks ended with different weights: {', '.join(metrics['rank_differences'][:10])}",
              file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":
        ranks = f" on {metrics['world_size']} ranks (in sync)" if metrics["world_size"] > 1 else ""
        print(
            f"{args.out}: {metrics['step']} steps{ranks}; {metrics['eval_split']} {metrics['val_bits_per_code']:.3f} "
            f"bits per code, {metrics['val_frame_log_likelihood']:.1f} nats per frame; encoded "
            f"{metrics['encoded_episodes']} episodes; video model in {metrics['video_model']}"
        )
    return 0
