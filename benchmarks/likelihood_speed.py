"""How fast a video model scores frames: naive sliding windows against batch ``log_prob`` and streaming.

The model is VideoGPT at the DMC preset of Table E.2 (16-frame clips, i.e.
15 context frames, of 8x8 codes; 8 layers of width 256; single-task) with random weights:
speed does not depend on them. Three ways to get every frame's
log-likelihood given its 15 predecessors:

- ``naive``: for each frame, one forward pass over the window of the frame
  and its context (what a model without a cache must do every env step);
- ``batch``: ``log_prob`` over whole episodes (chunks of 16 frames through the
  rolling cache): the relabelling path;
- ``stream``: ``init_state`` then one ``step`` per frame: the online reward path.

All three must give the same numbers: the table reports the largest
difference to ``batch``. Rows: batch 1 and 8 episodes, fp32 and bf16
autocast. Results go to ``benchmarks/results/likelihood_speed.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import machine

from worldrl.config import load_yaml
from worldrl.models.predictors import build_video_model

PRESET = Path(__file__).parent.parent / "configs" / "video" / "dmc.yaml"
DMC_MODEL = {"type": "videogpt", "codebook_size": 1024, "latent_shape": [8, 8], "context": 15, "stride": 1,
             "transformer": {"hidden": 256, "ffn": 1024, "heads": 8, "layers": 8, "dropout": 0.0}}


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def naive(model, codes: torch.Tensor) -> torch.Tensor:
    k = model.config.context
    scores = [model.log_prob(codes[:, max(0, t - k) : t + 1], chunk=k + 1).frame[:, -1] for t in range(codes.shape[1])]
    return torch.stack(scores, 1)


def stream(model, codes: torch.Tensor) -> torch.Tensor:
    state, scores = model.init_state(codes.shape[0]), []
    for t in range(codes.shape[1]):
        state, logp = model.step(state, codes[:, t])
        scores.append(logp)
    return torch.stack(scores, 1)


def measure(model, batch: int, frames: int, bf16: bool, naive_frames: int) -> dict:
    """Frames/s of each method on ``batch`` random episodes of ``frames`` frames (naive: the first ``naive_frames``)."""
    codes = torch.randint(0, model.codebook_size, (batch, frames, *model.latent_shape),
                          generator=torch.Generator().manual_seed(0))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
        model.log_prob(codes[:, :17])  # warm-up
        reference, batch_seconds = timed(lambda: model.log_prob(codes).frame)
        streamed, stream_seconds = timed(lambda: stream(model, codes))
        windows, naive_seconds = timed(lambda: naive(model, codes[:, :naive_frames]))
    scored = batch * frames
    return {
        "batch": batch,
        "precision": "bf16" if bf16 else "fp32",
        "frames_per_s": {
            "naive": batch * naive_frames / naive_seconds,
            "batch": scored / batch_seconds,
            "stream": scored / stream_seconds,
        },
        "max_abs_diff_to_batch": {
            "naive": float((windows - reference[:, :naive_frames]).abs().max()),
            "stream": float((streamed - reference).abs().max()),
        },
        "mean_logp": float(reference.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter episodes (a minute or two)")
    parser.add_argument("--frames", type=int, help="frames per episode (default 64, quick 32)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's; 1 is steadier on a busy machine)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "likelihood_speed.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = args.frames or (32 if args.quick else 64)
    naive_frames = min(frames, 24 if args.quick else 32)

    config = dict(DMC_MODEL)
    if PRESET.is_file():
        config = {**load_yaml(PRESET)["model"], "num_tasks": 0}  # single-task: no task ids to pass
    torch.manual_seed(0)
    model = build_video_model(config).eval()
    rows = []
    for batch in (1, 8):
        for bf16 in (False, True):
            row = measure(model, batch, frames, bf16, naive_frames)
            rows.append(row)
            rates = row["frames_per_s"]
            print(
                f"batch {batch} {row['precision']}: naive {rates['naive']:7.1f}  batch {rates['batch']:7.1f}  "
                f"stream {rates['stream']:7.1f} frames/s  stream/naive {rates['stream'] / rates['naive']:5.1f}x  "
                f"max |diff| naive {row['max_abs_diff_to_batch']['naive']:.2e} "
                f"stream {row['max_abs_diff_to_batch']['stream']:.2e} (mean logp {row['mean_logp']:.1f})",
                flush=True,
            )
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "model": config,
        "frames_per_episode": frames,
        "naive_frames_per_episode": naive_frames,
        "target": "stream >= 10x naive frames/s with equal values",
        "rows": rows,
        "stream_over_naive": {
            f"b{r['batch']}_{r['precision']}": r["frames_per_s"]["stream"] / r["frames_per_s"]["naive"] for r in rows
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
