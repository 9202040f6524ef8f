"""Tokenizer throughput on this machine: encode, decode and training-step frames/s, fp32 against bf16 autocast.

Each preset is built with random weights (speed does not depend on them) and
timed on uint8 frames: ``encode`` (frames -> codes), ``decode`` (codes ->
frames) and one training step (forward, L1 + quantizer loss, backward, AdamW;
no discriminator). The bf16 rows run the same calls under
``torch.autocast(dtype=torch.bfloat16)`` (the quantizer stays fp32) and add
how often its codes agree with fp32's, since speed that changes the codes is
not free. Results go to ``benchmarks/results/tokenizer_speed.json``.
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
from worldrl.device import resolve_device
from worldrl.models.tokenizers import build_tokenizer, frames_to_float

CONFIGS = Path(__file__).parent.parent / "configs" / "tokenizer"
PRESETS = ("cpu", "dmc", "causal_cpu", "videogpt_dmc")


def rate(fn: Callable[[], None], seconds: float) -> float:
    """Calls per second of ``fn`` over at least ``seconds`` (after one warm-up call)."""
    fn()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 2:
        fn()
        calls += 1
    return calls / elapsed


def measure(preset: str, batch: int, seconds: float, device: torch.device) -> list[dict]:
    config = load_yaml(CONFIGS / f"{preset}.yaml")
    torch.manual_seed(0)
    model = build_tokenizer(config["model"]).to(device)
    clip = max(1, int(config["train"].get("clip_length", 1)))
    clips = max(1, batch // clip)
    h, w, c = model.frame_shape
    frames = torch.randint(0, 256, (clips, clip, h, w, c), dtype=torch.uint8, device=device)
    frames_per_call = clips * clip
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.eval()
    codes = {"fp32": model.encode(frames)}
    with torch.autocast(device.type, dtype=torch.bfloat16):
        codes["bf16"] = model.encode(frames)
    rows = []
    for precision in ("fp32", "bf16"):
        def autocast():
            if precision == "fp32":
                return contextlib.nullcontext()
            return torch.autocast(device.type, dtype=torch.bfloat16)

        model.eval()

        def encode() -> None:
            with autocast():
                model.encode(frames)

        def decode() -> None:
            with autocast():
                model.decode(codes["fp32"])

        def train_step() -> None:
            with autocast():
                video = frames_to_float(frames)
                out = model(video)
                loss = (out.reconstruction.float() - video).abs().mean() + out.quantizer.loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        row = {
            "preset": preset,
            "precision": precision,
            "frames_per_call": frames_per_call,
            "encode_frames_per_s": round(rate(encode, seconds) * frames_per_call, 1),
            "decode_frames_per_s": round(rate(decode, seconds) * frames_per_call, 1),
        }
        model.train()
        row["train_frames_per_s"] = round(rate(train_step, seconds) * frames_per_call, 1)
        row["codes_equal_to_fp32"] = round(float((codes[precision] == codes["fp32"]).float().mean()), 4)
        rows.append(row)
    fp32, bf16 = rows
    for key in ("encode_frames_per_s", "decode_frames_per_s", "train_frames_per_s"):
        bf16[key.replace("frames_per_s", "speedup_over_fp32")] = round(bf16[key] / fp32[key], 3)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), help="presets in configs/tokenizer/")
    parser.add_argument("--batch", type=int, default=32, help="frames per call (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (default: %(default)s)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "tokenizer_speed.json"))
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    rows = [row for preset in args.presets for row in measure(preset, args.batch, args.seconds, device)]
    header = f"{'preset':13} {'prec':5} {'encode f/s':>11} {'decode f/s':>11} {'train f/s':>10} {'codes==fp32':>12}"
    print(header)
    for row in rows:
        print(f"{row['preset']:13} {row['precision']:5} {row['encode_frames_per_s']:11.1f} "
              f"{row['decode_frames_per_s']:11.1f} {row['train_frames_per_s']:10.1f} "
              f"{row['codes_equal_to_fp32']:12.4f}")
    result = {
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "device": str(device),
        "note": "random weights; codes_equal_to_fp32 is the share of codes that bf16 autocast leaves unchanged",
        "results": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
