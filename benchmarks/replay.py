"""Memory and sampling speed of worldrl's ReplayBuffer, and clip loading speed of VideoClipDataset.

Every speed is reported next to a baseline measured in the same run, since
shared machines are noisy: the raw ``np.take`` of the same frames from one
flat uint8 array (random windows of L rows for sequences, random single rows
for transitions), and for clips the raw decompression of the episode's
``image`` member plus the slice, which is what a shuffled clip costs at least.

    python benchmarks/replay.py                  # 100k-step buffer, about a minute
    python benchmarks/replay.py --capacity 20000 --seconds 1

Prints a table and writes benchmarks/results/replay.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import machine

from worldrl.data.episode import load_episode
from worldrl.data.folder import EpisodeFolder
from worldrl.data.replay import ReplayBuffer

SHAPE = (64, 64, 3)
ACTION_DIM = 6


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after one warm-up call)."""
    fn()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        calls += 1
    return calls / elapsed


def synthetic_episode(steps: int, rng: np.random.Generator, terminal: bool) -> dict[str, np.ndarray]:
    """A moving gradient with a little noise: compresses like rendered frames rather than like pure noise."""
    n = steps + 1
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    shift = np.arange(n)[:, None, None]
    base = ((x[None] + y[None] * 2 + shift * 3) % 256).astype(np.uint8)
    image = np.repeat(base[..., None], SHAPE[2], axis=-1)
    image += rng.integers(0, 8, image.shape, dtype=np.uint8)
    action = rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32)
    action[0] = 0
    return {
        "image": image,
        "action": action,
        "reward": np.r_[0.0, rng.random(steps)].astype(np.float32),
        "is_first": np.arange(n) == 0,
        "is_last": np.arange(n) == n - 1,
        "is_terminal": (np.arange(n) == n - 1) & terminal,
    }


def speed_row(figure: str, ours: float, baseline: float, note: str | None = None) -> dict:
    row = {"figure": figure, "worldrl_per_s": round(ours, 1), "baseline_per_s": round(baseline, 1),
           "baseline_over_worldrl": round(baseline / ours, 3)}
    return {**row, "note": note} if note else row


def bench_replay(capacity: int, num_envs: int, seconds: float) -> list[dict]:
    rng = np.random.default_rng(0)
    template = synthetic_episode(499, rng, terminal=False)
    frame_bytes = int(np.prod(SHAPE))
    before = rss_bytes()
    buffer = ReplayBuffer(capacity, SHAPE, ACTION_DIM, num_envs, seed=0)
    while (buffer.count < buffer.ring).any():
        buffer.add_episode(template)
    rss_delta = rss_bytes() - before
    rows = [{
        "figure": "memory per stored frame / (H*W*C)",
        "capacity": buffer.capacity, "num_envs": num_envs, "frame": list(SHAPE), "action_dim": ACTION_DIM,
        "nbytes_ratio": round(buffer.bytes_per_frame_ratio, 4),
        "rss_delta_ratio": round(rss_delta / (buffer.capacity * frame_bytes), 4),
        "target": 1.1,
    }]

    images = buffer.arrays["image"]
    batch, length = 16, 64

    def raw_windows() -> None:
        starts = rng.integers(buffer.capacity - length, size=batch)
        np.take(images, starts[:, None] + np.arange(length), axis=0)

    for within in (False, True):
        ours = rate(lambda: buffer.sample_sequences(batch, length, within_episode=within), seconds)
        rows.append(speed_row(f"sequence batches/s (B={batch}, L={length}{', within_episode' if within else ''})",
                              ours, rate(raw_windows, seconds)))

    batch, n_step, stack = 256, 3, 3
    frames = 2 * batch * stack  # obs and next_obs
    ours = rate(lambda: buffer.sample_transitions(batch, n_step, 0.99, stack), seconds)
    raw = rate(lambda: np.take(images, rng.integers(buffer.capacity, size=frames), axis=0), seconds)
    rows.append(speed_row(f"transition batches/s (B={batch}, n_step={n_step}, frame_stack={stack})", ours, raw))

    step = {key: np.repeat(value[1:2], num_envs, axis=0) for key, value in template.items()}
    adder = ReplayBuffer(num_envs * 1000, SHAPE, ACTION_DIM, num_envs)
    adder.add({**step, "is_first": np.ones(num_envs, bool)})
    raw_store = np.zeros_like(adder.arrays["image"])
    added = [0]

    def raw_add() -> None:
        raw_store[np.arange(num_envs) * adder.ring + added[0] % adder.ring] = step["image"]
        added[0] += 1

    rows.append(speed_row(f"add() calls/s ({num_envs} envs per call)", rate(lambda: adder.add(step), seconds),
                          rate(raw_add, seconds), "baseline: assigning the frames alone to their ring rows"))
    return rows


def bench_clips(seconds: float, episodes: int = 8, steps: int = 100) -> list[dict]:
    try:
        import torch
        from torch.utils.data import DataLoader

        from worldrl.data.clips import VideoClipDataset
    except ImportError as error:
        print(f"note: skipping clip throughput, worldrl.data.clips is unavailable ({error})")
        return []
    rng = np.random.default_rng(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = EpisodeFolder(Path(tmp) / "episodes", create=True)
        for i in range(episodes):
            folder.append(synthetic_episode(steps, rng, terminal=i % 2 == 0))
        dataset = VideoClipDataset(folders=[folder.path], clip_length=16, stride=1, split="all")
        paths = [folder.path / info.file for info in folder.infos]

        def raw_clip() -> None:
            episode = load_episode(paths[rng.integers(len(paths))], keys=("image",))
            start = rng.integers(steps + 1 - 16 + 1)
            np.ascontiguousarray(episode["image"][start:start + 16].transpose(0, 3, 1, 2))

        raw = rate(raw_clip, seconds)
        threads = torch.get_num_threads()
        # (workers, intra-op threads in this process): torch's default thread pool spins after each
        # collate on a small machine and competes with the decompression; workers use 1 thread each.
        for workers, num_threads in ((0, threads), (0, 1), (2, threads)):
            torch.set_num_threads(num_threads)
            loader = DataLoader(dataset, batch_size=16, shuffle=True, num_workers=workers,
                                generator=torch.Generator().manual_seed(0))
            iterator = iter(loader)
            next(iterator)  # worker start-up is not part of the steady rate
            clips, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                try:
                    clips += len(next(iterator)["video"])
                except StopIteration:
                    iterator = iter(loader)
            ours = clips / (time.perf_counter() - start)
            del iterator
            torch.set_num_threads(threads)
            rows.append(speed_row(
                f"VideoClipDataset clips/s (L=16, shuffled, {workers} workers, torch threads {num_threads})",
                ours, raw, "baseline: decompress the episode's image member and slice, in this process"))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=int, default=100_000, help="replay capacity in steps (default 100000)")
    parser.add_argument("--num-envs", type=int, default=4, help="parallel envs, one ring each (default 4)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per figure (default 3)")
    parser.add_argument("--no-clips", action="store_true", help="skip the VideoClipDataset figures")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "replay.json"))
    args = parser.parse_args(argv)

    rows = bench_replay(args.capacity, args.num_envs, args.seconds)
    if not args.no_clips:
        rows += bench_clips(args.seconds)

    memory = rows[0]
    print(f"memory per frame / (H*W*C), {memory['capacity']} steps of {SHAPE}: "
          f"arrays {memory['nbytes_ratio']:.4f}, RSS delta {memory['rss_delta_ratio']:.4f} (target <= 1.1)")
    print(f"{'figure':<72} {'ours/s':>10} {'baseline/s':>11} {'base/ours':>10}")
    for row in rows[1:]:
        print(f"{row['figure']:<72} {row['worldrl_per_s']:>10.1f} {row['baseline_per_s']:>11.1f} "
              f"{row['baseline_over_worldrl']:>10.3f}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "baseline_definition": "base/ours = baseline rate / worldrl rate: how many times slower worldrl is "
                               "than the raw operation on the same frames (1.0 = no overhead)",
        "results": rows,
    }
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
