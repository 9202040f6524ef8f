"""TECO against VideoGPT on held-out DMLab-like maze videos, action-conditioned, at equal steps on CPU.

The script

1. records random walks through random mazes (``worldrl/maze-random_small-v0``,
   ``--policy persistent``, 64x64 egocentric frames, discrete actions), cached
   under ``--data``; the validation split is by episode file name at
   ``val_fraction`` 0.2 (as the other quality benchmarks);
2. trains the CPU VQ-GAN tokenizer preset on them (cached under ``--runs``) and
   encodes every episode once into a code cache both video models share;
3. trains VideoGPT (``configs/video/cpu.yaml``) and TECO
   (``configs/video/teco_cpu.yaml``) from scratch for the same number of steps,
   both with ``model.action_dim`` 6 and ``action_dropout`` 0.5, TECO shrunk to
   VideoGPT's parameter count (``TECO_SIZE``);
4. reports bits per code of every held-out frame under ``model.log_prob``
   given the actions (exact for VideoGPT, TECO's documented estimate);
5. rolls out: from ``rollout_clips`` held-out clips, the model's ``context``
   real frames, then ``rollout_frames`` sampled frames given the recorded
   actions (temperature 1, a sliding window past the context), decoded by the
   tokenizer; PSNR and SSIM per future step against the real frames, with the
   tokenizer's own reconstruction of those frames (the ceiling) and "repeat
   the last context frame" (a floor) as references;
6. times ``model.sample`` (batch 1 and 8) in frames/s;
7. times TECO training steps (loss, backward, Adam) with DropLoss 0.9 and 0 on
   clips of ``drop_frames`` frames of real codes (the paper, table B.1a:
   1.46x at rate 0.8 on 300-frame DMLab clips).

Training runs with ``--threads`` torch threads (1 by default) and no data
workers. Results go to ``benchmarks/results/teco_quality.json``
(``--quick``: ``runs/bench_teco_quality/quick.json``, a smoke test of a few minutes).
"""

from __future__ import annotations

import argparse
import json
import math
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
RESULTS = Path(__file__).resolve().parent / "results" / "teco_quality.json"
ENV_ID = "worldrl/maze-random_small-v0"
PRESETS = {"videogpt": ROOT / "configs" / "video" / "cpu.yaml", "teco": ROOT / "configs" / "video" / "teco_cpu.yaml"}
ACTION_DROPOUT = 0.5
TECO_SIZE = [
    "model.depths=[32,64]", "model.encoder_blocks=1", "model.decoder_blocks=1", "model.transformer.layers=2",
    "model.prior.hidden=96", "model.prior.ffn=384", "model.prior.layers=2",
]
"""Shrinks the teco_cpu preset (3.3M parameters) to about VideoGPT cpu's size (1.06M vs 0.93M) for the comparison;
the DropLoss timing uses the preset itself."""


@dataclass(frozen=True)
class Budget:
    episodes: int
    """Maze episodes recorded (``episode_steps`` + 1 frames each)."""
    episode_steps: int
    tokenizer_steps: int
    tokenizer_batch: int
    video_steps: int
    """Training steps of each video model."""
    batch_size: int
    """Clips per video model step (each ``context + 1`` frames)."""
    rollout_clips: int
    rollout_frames: int
    """Sampled frames per rollout after the context."""
    sample_frames: int
    """Frames per timed ``model.sample`` call (after one untimed warm-up call)."""
    drop_frames: int
    """Clip length of the DropLoss timing."""
    drop_batch: int
    drop_steps: int
    """Timed training steps per DropLoss rate (after one untimed step)."""


MODES = {
    "default": Budget(episodes=16, episode_steps=300, tokenizer_steps=200, tokenizer_batch=16, video_steps=100,
                      batch_size=8, rollout_clips=8, rollout_frames=16, sample_frames=4, drop_frames=32,
                      drop_batch=4, drop_steps=5),
    "quick": Budget(episodes=5, episode_steps=100, tokenizer_steps=5, tokenizer_batch=8, video_steps=3,
                    batch_size=4, rollout_clips=2, rollout_frames=16, sample_frames=2, drop_frames=16,
                    drop_batch=2, drop_steps=1),
}


def maze_episodes(budget: Budget, root: Path, seed: int = 0) -> tuple[Path, dict[str, Any]]:
    """Record the episodes (skipped when the folder already holds enough); the folder and a summary."""
    from worldrl.data.collect import collect, policy_for_env
    from worldrl.data.folder import EpisodeFolder

    out = root / f"maze_random_small_{budget.episode_steps}"
    have = len(EpisodeFolder(out)) if (out / "dataset.json").is_file() else 0
    wall = time.perf_counter()
    if have < budget.episodes:
        kwargs = {"max_steps": budget.episode_steps}
        policy, kwargs = policy_for_env(ENV_ID, "persistent", kwargs, seed=seed + have)
        collect(ENV_ID, policy, budget.episodes - have, out, seed=seed, env_kwargs=kwargs,
                policy_name="persistent", progress=False)
    folder = EpisodeFolder(out)
    return out, {"env_id": ENV_ID, "policy": "persistent", "episodes": len(folder),
                 "frames_per_episode": budget.episode_steps + 1, "recorded_now": max(0, budget.episodes - have),
                 "collect_wall_s": round(time.perf_counter() - wall, 1)}


def trained_tokenizer(budget: Budget, episodes: Path, runs: Path) -> tuple[Path, dict[str, Any]]:
    """The CPU tokenizer preset trained on the maze episodes (cached); its folder and held-out metrics."""
    import tokenizer_quality as tq

    from worldrl.training.tokenizer import train_tokenizer

    run = runs / "tokenizer" / f"{episodes.name}_ep{budget.episodes}_steps{budget.tokenizer_steps}"
    folder, metrics_file = run / "tokenizer", run / "benchmark_metrics.json"
    if metrics_file.is_file() and (folder / "model.safetensors").is_file():
        return folder, {**json.loads(metrics_file.read_text()), "cached": True}
    tq_budget = replace(tq.MODES["quick"], tokenizer_steps=budget.tokenizer_steps, batch_size=budget.tokenizer_batch)
    wall = time.perf_counter()
    metrics = train_tokenizer(tq.tokenizer_config(tq_budget, "vq_restarts"), [episodes], run, device="cpu",
                              progress=False)
    summary = {"preset": "configs/tokenizer/cpu.yaml", "steps": metrics["step"], "batch_size": budget.tokenizer_batch,
               "val_psnr_db": round(metrics["val_psnr"], 2), "val_ssim": round(metrics["val_ssim"], 4),
               "val_usage": round(metrics["val_usage"], 4), "wall_s": round(time.perf_counter() - wall, 1)}
    metrics_file.write_text(json.dumps(summary, indent=1) + "\n")
    return folder, {**summary, "cached": False}


def video_config(kind: str, budget: Budget, codes_root: Path) -> dict[str, Any]:
    from tokenizer_quality import VAL_FRACTION
    from video_model_quality import ENCODE_FRAMES, NEVER

    overrides = [
        "model.action_dim=6", f"model.action_dropout={ACTION_DROPOUT}",
        f"train.steps={budget.video_steps}", f"train.batch_size={budget.batch_size}",
        f"train.val_fraction={VAL_FRACTION}", f"train.encode_frames={ENCODE_FRAMES}", f"train.code_cache={codes_root}",
        f"train.log_every={max(1, budget.video_steps // 5)}", f"train.eval_every={NEVER}", "train.eval_batches=1",
        f"train.sample_every={NEVER}", "train.sample_count=1", f"train.checkpoint_every={NEVER}",
    ]
    return apply_overrides(load_yaml(PRESETS[kind]), overrides + (TECO_SIZE if kind == "teco" else []))


def episode_actions(files: Sequence[Path]) -> list[torch.Tensor]:
    from worldrl.data.episode import load_episode

    return [torch.from_numpy(np.asarray(load_episode(f, keys=("action",))["action"], np.float32)) for f in files]


@torch.no_grad()
def likelihood(model, codes: list[torch.Tensor], actions: list[torch.Tensor]) -> dict[str, float]:
    """Bits per code of the held-out episodes given their actions, all frames and those with the full context."""
    context, per_frame = model.config.context, model.config.codes_per_frame
    total = full = 0.0
    frames = full_frames = 0
    for episode, action in zip(codes, actions):
        logp = model.log_prob(episode[None], actions=action[None]).frame[0].double()
        total, full = total - float(logp.sum()), full - float(logp[context:].sum())
        frames, full_frames = frames + len(logp), full_frames + max(0, len(logp) - context)
    return {"bits_per_code": round(total / (frames * per_frame * math.log(2)), 4),
            "bits_per_code_full_context": round(full / (full_frames * per_frame * math.log(2)), 4)}


def rollout_clips(codes: list[torch.Tensor], actions: list[torch.Tensor], images: list[np.ndarray], context: int,
                  budget: Budget) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``rollout_clips`` clips of ``context + rollout_frames`` frames spread over the held-out episodes:
    codes, actions and real frames (uint8)."""
    length = context + budget.rollout_frames
    picks = []
    for i in range(budget.rollout_clips):
        episode = i % len(codes)
        slots = max(1, (len(codes[episode]) - length) // max(1, budget.rollout_clips // len(codes)))
        start = min(len(codes[episode]) - length, (i // len(codes)) * slots)
        picks.append((episode, start))
    return (torch.stack([codes[e][s : s + length] for e, s in picks]),
            torch.stack([actions[e][s : s + length] for e, s in picks]),
            torch.from_numpy(np.stack([images[e][s : s + length] for e, s in picks])))


def frame_scores(frames: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """PSNR and SSIM per future step (mean over clips) of uint8 ``[B, T, H, W, C]`` against the real frames."""
    from worldrl.training.metrics import psnr_per_frame, ssim_per_frame

    def video(x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 4, 1, 2, 3).float() / 127.5 - 1

    batch, steps = frames.shape[:2]
    psnr = psnr_per_frame(video(frames), video(target)).view(batch, steps).mean(0)
    ssim = ssim_per_frame(video(frames), video(target)).view(batch, steps).mean(0)
    return psnr.numpy(), ssim.numpy()


def summary(psnr: np.ndarray, ssim: np.ndarray) -> dict[str, Any]:
    return {"psnr_db_mean": round(float(psnr.mean()), 2), "ssim_mean": round(float(ssim.mean()), 4),
            "psnr_db_per_step": [round(float(v), 2) for v in psnr], "ssim_per_step": [round(float(v), 4) for v in ssim]}


@torch.no_grad()
def rollout(model, tokenizer, clips: tuple[torch.Tensor, ...], seed: int = 0) -> dict[str, Any]:
    """Sample the future of each clip from its first ``context`` frames and all its actions; scores and seconds."""
    codes, actions, real = clips
    context = model.config.context
    start = time.perf_counter()
    sampled = model.sample(codes[:, :context], codes.shape[1] - context, actions=actions,
                           generator=torch.Generator().manual_seed(seed))
    seconds = time.perf_counter() - start
    return {**summary(*frame_scores(tokenizer.decode(sampled), real[:, context:])),
            "sample_seconds": round(seconds, 2),
            "sampled_frames_per_s": round(sampled.shape[0] * sampled.shape[1] / seconds, 2)}


@torch.no_grad()
def sampling_speed(model, clips: tuple[torch.Tensor, ...], frames: int) -> dict[str, Any]:
    """Frames/s of ``model.sample``: ``frames`` frames after ``context`` real ones, batch 1 and 8 (best of 2)."""
    codes, actions, _ = clips
    context = model.config.context
    rows = {}
    for batch in (1, 8):
        index = torch.arange(batch) % len(codes)
        prompt, action = codes[index, :context], actions[index, : context + frames]
        generator = torch.Generator().manual_seed(0)
        model.sample(prompt, 1, actions=action[:, : context + 1], generator=generator)  # warm-up
        best = math.inf
        for _ in range(2):
            start = time.perf_counter()
            model.sample(prompt, frames, actions=action, generator=generator)
            best = min(best, time.perf_counter() - start)
        rows[f"batch_{batch}"] = {"frames_per_s": round(batch * frames / best, 2), "ms_per_frame": round(
            1000 * best / (batch * frames), 1)}
    return rows


def drop_loss_timing(budget: Budget, codes: list[torch.Tensor], actions: list[torch.Tensor]) -> dict[str, Any]:
    """Seconds per TECO training step (loss, backward, Adam) at DropLoss 0.9 and 0 on ``drop_frames``-frame clips."""
    from worldrl.models.predictors import build_video_model

    config = load_yaml(PRESETS["teco"])["model"]
    length = budget.drop_frames
    usable = [i for i, c in enumerate(codes) if len(c) >= length]
    index = [usable[i % len(usable)] for i in range(budget.drop_batch)]
    batch_codes = torch.stack([codes[i][:length] for i in index])
    batch_actions = torch.stack([actions[i][:length] for i in index])
    rows = {}
    for rate in (0.9, 0.0):
        torch.manual_seed(0)
        model = build_video_model({**config, "context": length - 1, "drop_loss": rate, "action_dim": 6,
                                   "action_dropout": ACTION_DROPOUT}).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        seconds = []
        for _ in range(budget.drop_steps + 1):
            start = time.perf_counter()
            loss, _ = model.loss(batch_codes, actions=batch_actions)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seconds.append(time.perf_counter() - start)
        rows[f"drop_loss_{rate}"] = {"s_per_step": round(float(np.median(seconds[1:])), 3),
                                     "kept_frames": int(model.kept_frames(1, length, torch.device("cpu")).sum())}
    rows["speedup_0.9_over_0"] = round(rows["drop_loss_0.0"]["s_per_step"] / rows["drop_loss_0.9"]["s_per_step"], 2)
    rows.update({"clip_frames": length, "batch": budget.drop_batch, "steps_timed": budget.drop_steps})
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budget, a smoke test of a few minutes")
    parser.add_argument("--episodes", type=int, help="maze episodes to record (default: 16; quick: 5)")
    parser.add_argument("--steps", type=int, help="training steps per video model (default: 100; quick: 3)")
    parser.add_argument("--tokenizer-steps", type=int, help="CPU tokenizer steps (default: 200; quick: 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--data", default=str(ROOT / "runs" / "bench_data"), help="cache of recorded episodes")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "bench_teco_quality"), help="run folders and caches")
    parser.add_argument("--out", help="JSON file (default: results/teco_quality.json; quick: RUNS/quick.json)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    from tokenizer_quality import VAL_FRACTION, shown
    from video_model_quality import code_cache, val_split

    from worldrl.data.episode import load_episode
    from worldrl.models.predictors import load_video_model
    from worldrl.training.video_model import train_video_model

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    mode = "quick" if args.quick else "default"
    budget = MODES[mode]
    for key, value in (("episodes", args.episodes), ("video_steps", args.steps),
                       ("tokenizer_steps", args.tokenizer_steps)):
        if value is not None:
            budget = replace(budget, **{key: value})
    runs = Path(args.runs)
    out = Path(args.out) if args.out else (runs / "quick.json" if args.quick else RESULTS)
    start = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f} s] {message}", flush=True)

    say(f"record {budget.episodes} maze episodes")
    episodes, data = maze_episodes(budget, Path(args.data))
    say("tokenizer")
    tokenizer_dir, tokenizer_info = trained_tokenizer(budget, episodes, runs)
    train_files, val_files = val_split(episodes)
    say(f"code cache ({len(train_files)} train, {len(val_files)} validation episodes)")
    codes_root = runs / "codes"
    cache, tokenizer, _ = code_cache(tokenizer_dir, codes_root, train_files + val_files)
    val_codes = [torch.from_numpy(np.asarray(cache.load(f), dtype=np.int64)) for f in val_files]
    val_actions = episode_actions(val_files)
    val_images = [load_episode(f, keys=("image",))["image"] for f in val_files]
    context = load_yaml(PRESETS["teco"])["model"]["context"]
    clips = rollout_clips(val_codes, val_actions, val_images, context, budget)
    ceiling = tokenizer.decode(clips[0][:, context:])
    references = {"tokenizer_reconstruction": summary(*frame_scores(ceiling, clips[2][:, context:])),
                  "repeat_last_context_frame": summary(*frame_scores(
                      clips[2][:, context - 1 : context].expand_as(clips[2][:, context:]), clips[2][:, context:]))}

    rows = []
    for kind in PRESETS:
        say(f"train {kind} for {budget.video_steps} steps")
        config = video_config(kind, budget, codes_root)
        if config["model"]["context"] != context:
            raise SystemExit(f"the presets' contexts differ ({config['model']['context']} vs {context})")
        wall = time.perf_counter()
        metrics = train_video_model(config, tokenizer_dir, [episodes], runs / mode / kind, device="cpu",
                                    progress=False)
        wall = time.perf_counter() - wall
        model = load_video_model(metrics["video_model"], "cpu").eval()
        say(f"score, roll out and time {kind}")
        rows.append({
            "kind": kind, "preset": shown(PRESETS[kind]), "parameters": sum(p.numel() for p in model.parameters()),
            "steps": metrics["step"], "train_wall_s": round(wall, 1),
            "train_s_per_step": round(wall / metrics["step"], 3),
            "val": likelihood(model, val_codes, val_actions),
            "rollout": rollout(model, tokenizer, clips),
            "sampling": sampling_speed(model, clips, budget.sample_frames),
        })
    say("DropLoss timing")
    drop = drop_loss_timing(budget, val_codes + [torch.from_numpy(np.array(cache.load(f))) for f in train_files],
                            val_actions + episode_actions(train_files))
    print(f"\n{'model':9} {'params':>9} {'s/step':>7} {'val bits/code':>13} {'PSNR dB':>8} {'SSIM':>6} "
          f"{'sample fr/s b1':>14} {'b8':>7}")
    for row in rows:
        print(f"{row['kind']:9} {row['parameters']:9d} {row['train_s_per_step']:7.3f} "
              f"{row['val']['bits_per_code']:13.3f} {row['rollout']['psnr_db_mean']:8.2f} "
              f"{row['rollout']['ssim_mean']:6.3f} {row['sampling']['batch_1']['frames_per_s']:14.2f} "
              f"{row['sampling']['batch_8']['frames_per_s']:7.2f}")
    for name, ref in references.items():
        print(f"{name:27} PSNR {ref['psnr_db_mean']:.2f} dB, SSIM {ref['ssim_mean']:.3f}")
    print(f"DropLoss 0.9 vs 0 on {drop['clip_frames']}-frame clips: {drop['speedup_0.9_over_0']}x faster steps")
    result = {
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "mode": mode,
        "budget": {**asdict(budget), "teco_size_overrides": TECO_SIZE, "val_fraction": VAL_FRACTION,
                   "torch_threads": args.threads, "num_workers": 0, "action_dropout": ACTION_DROPOUT,
                   "sample_temperature": 1.0, "context_frames": context},
        "total_wall_s": round(time.perf_counter() - start, 1),
        "data": {**data, "train_episodes": len(train_files), "val_episodes": len(val_files)},
        "tokenizer": {**tokenizer_info, "folder": shown(tokenizer_dir)},
        "rollout_references": references,
        "drop_loss_timing": drop,
        "note": (
            "val: bits per code of every held-out frame given the recorded actions (VideoGPT exact, TECO its "
            "documented log_prob estimate). rollout: context real frames, then rollout_frames sampled at "
            "temperature 1 given the actions and decoded by the tokenizer, PSNR/SSIM per future step against the "
            "real frames, mean over rollout_clips clips; a random walk's future is uncertain, so one sample is "
            "scored, not the best of several. The 2 cores were shared with other jobs: seconds are noisy."
        ),
        "models": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
