"""Video model quality on held-out expert clips: VideoGPT against MaskGIT at equal size and CPU budget.

On DMC cartpole_balance the script

1. gets expert episodes: a SAC state oracle and its recorded 64x64 episodes,
   made (and cached under ``--data``, ``runs/bench_data/`` by default) by the
   functions of ``benchmarks/tokenizer_quality.py``, so both benchmarks share
   them; the validation split is by episode at ``val_fraction`` 0.2, the
   tokenizer benchmark's, so the held-out episodes are unseen by the tokenizer
   and by both video models;
2. gets a tokenizer: ``--tokenizer`` names a trained tokenizer folder, else the
   CPU VQ-GAN preset (``configs/tokenizer/cpu.yaml``, 8x8 codes, codebook 512)
   is trained briefly and cached under ``--runs``;
3. encodes every episode once into a code cache both video models share, so
   the training seconds below contain no encoding;
4. trains VideoGPT (``configs/video/cpu.yaml``) and MaskGIT (the same preset
   with ``model.type=maskgit``: same transformer, context, batch and learning
   rate) from scratch for the same number of steps with
   ``worldrl.training.video_model.train_video_model``, and records the CPU and
   wall seconds each call took (including the trainer's short final evaluation
   on one batch of validation clips and one sampled clip);
5. scores every frame of the held-out episodes with ``model.log_prob`` and
   reports bits per code (``-ln p / ln 2`` per code), over all frames and over
   the frames that see the full context. For MaskGIT this is its documented
   likelihood estimate (greedy-order chunked decoding, ``likelihood_steps``
   passes; ``worldrl/models/predictors/maskgit.py``), the exact likelihood of
   that decoding procedure, not of MaskGIT's sampler;
6. times ``model.sample`` (batch 1 and 8, temperature 1, a few frames after a
   context of the preset's ``context`` real frames) and reports frames/s.

Reference points: the uniform code distribution (``log2(codebook_size)`` bits
per code) and a unigram model (code frequencies of the training episodes,
add-one smoothed). The two parameter counts are reported; they differ only by
VideoGPT's start-of-frame token and position.

Steps, not seconds, fix the budget (so a run is reproducible); MaskGIT's
training step runs two token streams and costs more. Training runs with
``--threads`` torch threads (1 by default) and no data workers. Video model
runs start afresh each time. Results go to
``benchmarks/results/video_model_quality.json`` (``--quick``: to
``runs/bench_video_model_quality/quick.json``, a smoke test of a few minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import machine

from worldrl.config import apply_overrides, load_yaml

ROOT = Path(__file__).resolve().parent.parent
VIDEO_PRESET = ROOT / "configs" / "video" / "cpu.yaml"
RESULTS = Path(__file__).resolve().parent / "results" / "video_model_quality.json"
TASK = "cartpole_balance"
KINDS = ("videogpt", "maskgit")
NEVER = 10**9
"""``eval_every`` / ``checkpoint_every`` / ``sample_every`` that never fire: one evaluation at the end."""
ENCODE_FRAMES = 64
"""Frames per tokenizer call when filling the code cache (the trainer's default ``train.encode_frames``)."""


@dataclass(frozen=True)
class Budget:
    oracle_steps: int
    """SAC agent steps of the oracle (state observations)."""
    episodes: int
    """Oracle episodes recorded (500 agent steps, 501 frames each)."""
    tokenizer_steps: int
    """Steps of the CPU tokenizer when none is given with ``--tokenizer``."""
    video_steps: int
    """Training steps of each video model."""
    batch_size: int
    """Clips per video model step (each clip ``context + 1`` frames)."""
    sample_frames: int
    """Frames generated per ``model.sample`` call in the speed measurement."""
    sample_repeats: int
    """Timed ``model.sample`` calls per batch size (after one untimed warm-up call)."""


MODES = {
    "default": Budget(oracle_steps=10_000, episodes=10, tokenizer_steps=400, video_steps=150, batch_size=16,
                      sample_frames=4, sample_repeats=2),
    "quick": Budget(oracle_steps=1_000, episodes=4, tokenizer_steps=20, video_steps=10, batch_size=8,
                    sample_frames=2, sample_repeats=1),
}


def data_budget(budget: Budget, quick: bool):
    """The ``tokenizer_quality`` budget that makes this budget's oracle, episodes and tokenizer."""
    import tokenizer_quality

    base = tokenizer_quality.MODES["quick" if quick else "default"]
    return replace(base, oracle_steps=budget.oracle_steps, episodes=budget.episodes,
                   tokenizer_steps=budget.tokenizer_steps)


def expert_data(budget: Budget, quick: bool, data_root: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The episode folder, the oracle summary and the dataset summary (made by ``tokenizer_quality``'s functions)."""
    import tokenizer_quality as tq

    tq_budget = data_budget(budget, quick)
    cache = data_root / TASK / f"sac_{budget.oracle_steps}"
    info = tq.oracle(TASK, tq_budget, cache / "oracle")
    data = tq.expert_episodes(TASK, tq_budget, cache / "oracle", cache / "episodes")
    return cache / "episodes", tq.oracle_summary(info), data


def trained_tokenizer(budget: Budget, quick: bool, episodes: Path, runs: Path) -> tuple[Path, dict[str, Any]]:
    """Train the CPU tokenizer preset (cached: skipped when its folder is complete); its folder and metrics."""
    import tokenizer_quality as tq

    from worldrl.training.tokenizer import train_tokenizer

    tq_budget = data_budget(budget, quick)
    run = runs / "tokenizer" / f"{TASK}_sac{budget.oracle_steps}_ep{budget.episodes}_steps{budget.tokenizer_steps}"
    folder, metrics_file = run / "tokenizer", run / "benchmark_metrics.json"
    if metrics_file.is_file() and (folder / "model.safetensors").is_file():
        return folder, {**json.loads(metrics_file.read_text()), "cached": True}
    cpu, wall = time.process_time(), time.perf_counter()
    metrics = train_tokenizer(tq.tokenizer_config(tq_budget, "vq_restarts"), [episodes], run, device="cpu",
                              progress=False)
    summary = {
        "preset": f"configs/tokenizer/{tq.PRESET}.yaml",
        "steps": metrics["step"],
        "batch_size": tq_budget.batch_size,
        "eval_split": metrics["eval_split"],
        "val_psnr_db": round(metrics["val_psnr"], 2),
        "val_ssim": round(metrics["val_ssim"], 4),
        "val_usage": round(metrics["val_usage"], 4),
        "cpu_s": round(time.process_time() - cpu, 1),
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    metrics_file.write_text(json.dumps(summary, indent=1) + "\n")
    return folder, {**summary, "cached": False}


def given_tokenizer(folder: Path) -> dict[str, Any]:
    """What is known of a tokenizer folder passed with ``--tokenizer`` (its run's steps when it has a run folder)."""
    import tokenizer_quality as tq

    info: dict[str, Any] = {"given": tq.shown(folder)}
    run_config = folder.parent / "config.yaml"
    if run_config.is_file():
        train = load_yaml(run_config).get("train", {})
        info.update({"steps": train.get("steps"), "batch_size": train.get("batch_size")})
    return info


def val_split(episodes: Path) -> tuple[list[Path], list[Path]]:
    """Train and validation episode files (the tokenizer benchmark's split by file name)."""
    from tokenizer_quality import VAL_FRACTION

    from worldrl.data.clips import is_val_episode
    from worldrl.data.folder import EpisodeFolder

    files = [episodes / info.file for info in EpisodeFolder(episodes).infos]
    val = [file for file in files if is_val_episode(file.name, VAL_FRACTION)]
    if not val:
        raise SystemExit(f"no validation episode among the {len(files)} in {episodes}: record more (--episodes)")
    return [file for file in files if file not in val], val


def code_cache(tokenizer_dir: Path, root: Path, files: Sequence[Path]):
    """The code cache the video trainer will read (same digest), filled for ``files``; returns it and the
    number of episodes encoded now."""
    from worldrl.models.tokenizers import load_tokenizer
    from worldrl.training.video_model import CodeCache, tokenizer_digest

    digest = tokenizer_digest(tokenizer_dir, {"encode_frames": ENCODE_FRAMES, "mask_scoreboard": None})
    tokenizer = load_tokenizer(tokenizer_dir, "cpu", frame_shape=(64, 64, 3))
    cache = CodeCache(root, digest, tokenizer, ENCODE_FRAMES)
    missing = cache.missing([str(file) for file in files])
    cache.encode_all(missing, progress=False)
    return cache, tokenizer, len(missing)


def video_config(kind: str, budget: Budget, codes_root: Path) -> dict[str, Any]:
    """The CPU video preset as ``kind`` with the budget, the shared code cache and one final evaluation."""
    from tokenizer_quality import VAL_FRACTION

    overrides = [
        f"model.type={kind}",
        f"train.steps={budget.video_steps}",
        f"train.batch_size={budget.batch_size}",
        f"train.val_fraction={VAL_FRACTION}",
        f"train.encode_frames={ENCODE_FRAMES}",
        f"train.code_cache={codes_root}",
        f"train.log_every={max(1, budget.video_steps // 5)}",
        f"train.eval_every={NEVER}",
        "train.eval_batches=1",
        f"train.sample_every={NEVER}",
        "train.sample_count=1",
        f"train.checkpoint_every={NEVER}",
    ]
    return apply_overrides(load_yaml(VIDEO_PRESET), overrides)


def train(kind: str, budget: Budget, tokenizer_dir: Path, episodes: Path, codes_root: Path, out: Path):
    """Train one video model from scratch; the trainer's metrics and the CPU and wall seconds it took."""
    from worldrl.training.video_model import train_video_model

    shutil.rmtree(out, ignore_errors=True)
    config = video_config(kind, budget, codes_root)
    cpu, wall = time.process_time(), time.perf_counter()
    metrics = train_video_model(config, tokenizer_dir, [episodes], out, device="cpu", progress=False)
    return metrics, time.process_time() - cpu, time.perf_counter() - wall


def bits(nats: float, codes: int) -> float:
    return nats / (codes * math.log(2))


@torch.no_grad()
def likelihood(model, val_codes: list[torch.Tensor]) -> dict[str, Any]:
    """Bits per code of the held-out episodes under ``model.log_prob``, one episode at a time."""
    per_frame = model.config.codes_per_frame
    context = model.config.context
    total = full = first = 0.0
    frames = full_frames = 0
    seconds = 0.0
    for codes in val_codes:
        start = time.perf_counter()
        logp = model.log_prob(codes[None]).frame[0].double()
        seconds += time.perf_counter() - start
        total += -float(logp.sum())
        full += -float(logp[context:].sum())
        first += -float(logp[0])
        frames += len(logp)
        full_frames += max(0, len(logp) - context)
    return {
        "bits_per_code": round(bits(total, frames * per_frame), 4),
        "bits_per_code_full_context": round(bits(full, full_frames * per_frame), 4),
        "bits_per_code_first_frame": round(bits(first, len(val_codes) * per_frame), 4),
        "frames": frames,
        "full_context_frames": full_frames,
        "log_prob_frames_per_s": round(frames / seconds, 1),
    }


@torch.no_grad()
def sampling_speed(model, val_codes: list[torch.Tensor], budget: Budget) -> dict[str, Any]:
    """Frames/s of ``model.sample`` at batch 1 and 8: ``sample_frames`` frames after ``context`` real frames."""
    context = model.config.context
    length = min(len(codes) for codes in val_codes)
    rows = {}
    for batch in (1, 8):
        starts = np.linspace(0, length - context - 1, batch).astype(int)
        prompt = torch.stack([val_codes[i % len(val_codes)][s : s + context] for i, s in enumerate(starts)])
        generator = torch.Generator().manual_seed(0)
        model.sample(prompt, 1, generator=generator)  # warm-up
        seconds = []
        for _ in range(budget.sample_repeats):
            start = time.perf_counter()
            model.sample(prompt, budget.sample_frames, generator=generator)
            seconds.append(time.perf_counter() - start)
        best = min(seconds)
        rows[f"batch_{batch}"] = {
            "frames_per_s": round(batch * budget.sample_frames / best, 2),
            "seconds_per_call": round(best, 3),
            "calls": budget.sample_repeats,
        }
    return rows


def unigram_bits(train_codes: list[np.ndarray], val_codes: list[np.ndarray], codebook_size: int) -> float:
    """Bits per validation code under the training codes' frequencies (add-one smoothing)."""
    counts = np.bincount(np.concatenate([c.ravel() for c in train_codes]).astype(np.int64), minlength=codebook_size)
    logp = np.log2((counts + 1) / (counts.sum() + codebook_size))
    val = np.concatenate([c.ravel() for c in val_codes]).astype(np.int64)
    return float(-logp[val].mean())


def print_table(rows: list[dict[str, Any]], uniform: float, unigram: float) -> None:
    print(f"\n{'model':9} {'params':>9} {'steps':>6} {'cpu s':>7} {'wall s':>7} {'val bits/code':>13} "
          f"{'full ctx':>9} {'score fr/s':>10} {'sample fr/s b1':>14} {'b8':>7}")
    for row in rows:
        val, sample = row["val"], row["sampling"]
        print(f"{row['kind']:9} {row['parameters']:9d} {row['steps']:6d} {row['train_cpu_s']:7.1f} "
              f"{row['train_wall_s']:7.1f} {val['bits_per_code']:13.3f} {val['bits_per_code_full_context']:9.3f} "
              f"{val['log_prob_frames_per_s']:10.1f} {sample['batch_1']['frames_per_s']:14.2f} "
              f"{sample['batch_8']['frames_per_s']:7.2f}")
    print(f"{'uniform':9} {'':>9} {'':>6} {'':>7} {'':>7} {uniform:13.3f}")
    print(f"{'unigram':9} {'':>9} {'':>6} {'':>7} {'':>7} {unigram:13.3f}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budget, a smoke test of a few minutes")
    parser.add_argument("--oracle-steps", type=int, help="SAC steps of the oracle (default: 10000; quick: 1000)")
    parser.add_argument("--episodes", type=int, help="oracle episodes to record (default: 10; quick: 4)")
    parser.add_argument("--tokenizer", help="a trained tokenizer folder (tokenizer.json, model.safetensors) to use "
                                            "instead of training the CPU preset")
    parser.add_argument("--tokenizer-steps", type=int, help="steps of the CPU tokenizer (default: 400; quick: 20)")
    parser.add_argument("--steps", type=int, help="training steps per video model (default: 150; quick: 10)")
    parser.add_argument("--batch-size", type=int, help="clips per video model step (default: 16; quick: 8)")
    parser.add_argument("--sample-frames", type=int, help="frames per timed sample call (default: 4; quick: 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--data", default=str(ROOT / "runs" / "bench_data"), help="cache of oracles and episodes")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "bench_video_model_quality"),
                        help="tokenizer, code cache and video model run folders")
    parser.add_argument("--out", help="JSON file (default: results/video_model_quality.json; quick: RUNS/quick.json)")
    return parser.parse_args(argv)


def budget_from(args: argparse.Namespace) -> Budget:
    budget = asdict(MODES["quick" if args.quick else "default"])
    for key, value in (("oracle_steps", args.oracle_steps), ("episodes", args.episodes),
                       ("tokenizer_steps", args.tokenizer_steps), ("video_steps", args.steps),
                       ("batch_size", args.batch_size), ("sample_frames", args.sample_frames)):
        if value is not None:
            budget[key] = value
    return Budget(**budget)


def main(argv: Sequence[str] | None = None) -> None:
    from tokenizer_quality import VAL_FRACTION, shown

    from worldrl.models.predictors import load_video_model

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    budget = budget_from(args)
    runs = Path(args.runs)
    mode = "quick" if args.quick else "default"
    out = Path(args.out) if args.out else (runs / "quick.json" if args.quick else RESULTS)
    start_cpu, start_wall = time.process_time(), time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - start_wall:6.0f} s] {message}", flush=True)

    say(f"{TASK}: oracle and expert episodes")
    episodes, oracle, data = expert_data(budget, args.quick, Path(args.data))
    if args.tokenizer:
        tokenizer_dir, tokenizer_info = Path(args.tokenizer), given_tokenizer(Path(args.tokenizer))
    else:
        say("tokenizer")
        tokenizer_dir, tokenizer_info = trained_tokenizer(budget, args.quick, episodes, runs)
    train_files, val_files = val_split(episodes)
    say(f"code cache ({len(train_files)} train, {len(val_files)} validation episodes)")
    codes_root = runs / "codes"
    cache, tokenizer, encoded = code_cache(tokenizer_dir, codes_root, train_files + val_files)
    tokenizer_info["folder"] = shown(tokenizer_dir)
    val_codes = [torch.from_numpy(np.asarray(cache.load(file), dtype=np.int64)) for file in val_files]
    train_np = [np.asarray(cache.load(file)) for file in train_files]
    codebook_size = tokenizer.codebook_size
    uniform = math.log2(codebook_size)
    unigram = unigram_bits(train_np, [c.numpy() for c in val_codes], codebook_size)

    rows = []
    for kind in KINDS:
        say(f"train {kind} for {budget.video_steps} steps")
        metrics, cpu_s, wall_s = train(kind, budget, tokenizer_dir, episodes, codes_root, runs / mode / kind)
        model = load_video_model(metrics["video_model"], "cpu").eval()
        say(f"score {kind} on the validation episodes")
        val = likelihood(model, val_codes)
        say(f"time {kind} sampling")
        sampling = sampling_speed(model, val_codes, budget)
        last = metrics["history"][-1] if metrics["history"] else {}
        rows.append({
            "kind": kind,
            "parameters": sum(p.numel() for p in model.parameters()),
            "steps": metrics["step"],
            "train_cpu_s": round(cpu_s, 1),
            "train_wall_s": round(wall_s, 1),
            "train_s_per_step": round(wall_s / max(1, metrics["step"]), 3),
            "encoded_episodes_in_training": metrics["encoded_episodes"],
            "train_bits_per_code_last_window": round(last.get("bits_per_code", math.nan), 4),
            "trainer_eval_split": metrics["eval_split"],
            "trainer_val_bits_per_code_clips": round(metrics["val_bits_per_code"], 4),
            "val": val,
            "sampling": sampling,
            "model": load_yaml(runs / mode / kind / "config.yaml")["model"],
        })
    print_table(rows, uniform, unigram)
    params = {row["kind"]: row["parameters"] for row in rows}
    seconds = {row["kind"]: row["train_wall_s"] for row in rows}
    result = {
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "mode": mode,
        "task": TASK,
        "budget": {**asdict(budget), "video_preset": shown(VIDEO_PRESET), "val_fraction": VAL_FRACTION,
                   "torch_threads": args.threads, "num_workers": 0, "sample_temperature": 1.0,
                   "sample_context_frames": rows[0]["model"]["context"] if rows else None},
        "total_cpu_s": round(time.process_time() - start_cpu, 1),
        "total_wall_s": round(time.perf_counter() - start_wall, 1),
        "oracle": oracle,
        "data": {**data, "train_episode_files": [f.name for f in train_files],
                 "val_episode_files": [f.name for f in val_files],
                 "encoded_before_training": encoded},
        "tokenizer": {**tokenizer_info, "codebook_size": codebook_size,
                      "latent_shape": list(tokenizer.latent_shape)},
        "baselines_bits_per_code": {"uniform": round(uniform, 4), "unigram_train_frequencies": round(unigram, 4)},
        "parameter_ratio_maskgit_over_videogpt": (round(params["maskgit"] / params["videogpt"], 5)
                                                  if len(params) == 2 else None),
        "train_wall_ratio_maskgit_over_videogpt": (round(seconds["maskgit"] / seconds["videogpt"], 3)
                                                   if len(seconds) == 2 else None),
        "note": (
            "val.bits_per_code: -sum ln p / (ln 2 * codes) of every frame of the held-out episodes under "
            "model.log_prob (frame t given frames t-k..t-1, k = context; the first frames see fewer); "
            "bits_per_code_full_context: frames t >= k only. VideoGPT's number is an exact likelihood; "
            "MaskGIT's is its documented likelihood estimate (greedy-order chunked decoding with likelihood_steps "
            "passes, worldrl/models/predictors/maskgit.py), the exact likelihood of that decoding procedure, not "
            "of MaskGIT's sampler. train_bits_per_code_last_window is the training loss: MaskGIT's covers only "
            "masked codes, so it is not comparable to VideoGPT's. trainer_val_bits_per_code_clips is the "
            "trainer's own final evaluation on one batch of validation clips. Training seconds include that "
            "evaluation, one sampled clip and writing the checkpoint, but no encoding (the code cache was filled "
            "first). Sampling frames/s: the best of the timed model.sample calls, the context frames' pass "
            "included. The machine's 2 cores were shared with other jobs, so seconds are noisy."
        ),
        "models": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
