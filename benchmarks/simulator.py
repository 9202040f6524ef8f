"""The learned simulator (``worldrl/sim-v0``): imagined steps/s against the real pixel env, and open-loop fidelity.

1. **Speed.** :class:`~worldrl.envs.simulator.WorldModelVectorEnv` at batch
   1, 16 and 64 with random weights (speed does not depend on them), for three
   backends at two model sizes each:

   - ``videogpt``: ``dmc``, the VideoGPT of ``configs/video/dmc.yaml``
     (single-task, ``action_dim`` 1) on the DMC VQ-GAN preset, and ``cpu``, the
     small CPU presets; it samples the 64 codes of a frame one by one;
   - ``maskgit``: the same sizes with ``model.type: maskgit`` (MaskGIT within a
     frame, autoregressive over frames), at its default ``sample_steps`` of 8
     decoding passes per frame (no revise rounds);
   - ``dreamerv3``: the world model of a DreamerV3 ``train-agent`` run folder
     written here without training (config and ``agent.pt`` of a freshly
     built agent, 64x64 images, one action): ``dmc``, ``configs/agents/dreamerv3.yaml``
     (Table E.3, DMC), and ``cpu``, ``configs/agents/dreamerv3_cpu.yaml``; one
     RSSM prior step and one decoder pass per step.

   Observations ``pixels`` (one tokenizer decode per step, or the DreamerV3
   decoder) and, for the video models, ``codes``; fp32, then bf16
   (``torch.autocast`` around ``step``: the env has no precision setting of its
   own). Rows burn in real frames at reset (the backend's default: ``context``
   for video models, 5 for DreamerV3; not timed, under bf16 autocast; burn-in
   frames are only observed, one pass each); the termination head is off
   and the horizon long, so only imagined steps are timed. The reference is the
   real ``worldrl/dmc-cartpole_balance-v0`` at 64x64 stepped with random
   actions in the same run. Target: >= 10x its steps/s at batch 64; ``targets``
   holds the best batch-64 row of each backend and size.
2. **Open-loop fidelity.** An action-conditioned VideoGPT (the CPU preset with
   ``model.action_dim=1``, reward and continue heads) is trained briefly on
   cartpole_balance episodes (the SAC expert episodes under
   ``runs/bench_data/`` when present, else random episodes collected here),
   on a CPU tokenizer (``--tokenizer``, else the 400-step one of
   ``benchmarks/tokenizer_quality.py`` when present, else one trained here).
   From windows of held-out episodes the simulator burns in ``context`` real
   frames, then steps under the episode's real actions; PSNR and SSIM of the
   imagined frames against the real ones are averaged over steps 1-15 and
   1-50, at temperature 1 (the simulator's default) and 0 (greedy). Two
   references bound them: the tokenizer's reconstruction of the real frames
   (the best a simulator on these codes can do) and the last burn-in frame
   held still. ``--skip-fidelity`` measures only the speed table and keeps the
   ``fidelity`` entry of an existing output JSON (``fidelity_kept`` says from
   which run).
3. **Policy in the simulator against the real env**: not run (it needs agent
   runs of hours on this CPU); the JSON says so.

Everything runs with one torch thread. Results go to
``benchmarks/results/simulator.json`` (``--quick``: a smoke test of a few
minutes, to ``runs/bench_simulator/quick.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import machine, shown

from worldrl.config import apply_overrides, load_yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "simulator.json"
RUNS = ROOT / "runs" / "bench_simulator"
REAL = "worldrl/dmc-cartpole_balance-v0"
EXPERT = ROOT / "runs" / "bench_data" / "cartpole_balance" / "sac_10000" / "episodes"
TOKENIZERS = (ROOT / "runs" / "bench_tokenizer_quality" / "default" / "cartpole_balance_vq_restarts" / "tokenizer",)
CODE_CACHE = ROOT / "runs" / "bench_video_model_quality" / "codes"
PRESETS = {"dmc": ("configs/video/dmc.yaml", "configs/tokenizer/dmc.yaml"),
           "cpu": ("configs/video/cpu.yaml", "configs/tokenizer/cpu.yaml")}
AGENT_PRESETS = {"dmc": "configs/agents/dreamerv3.yaml", "cpu": "configs/agents/dreamerv3_cpu.yaml"}
BACKENDS = ("videogpt", "maskgit", "dreamerv3")
VIDEO_BACKENDS = ("videogpt", "maskgit")
FRAME_SHAPE = (64, 64, 3)
SPEEDUP_TARGET = 10.0
VAL_FRACTION = 0.2
NEVER = 10**9


@dataclass(frozen=True)
class Budget:
    backends: tuple[str, ...]
    presets: tuple[str, ...]
    batches: tuple[int, ...]
    min_seconds: float
    """Each speed row times at least this long (and at least 2 steps), after one untimed step."""
    real_steps: int
    tokenizer_steps: int
    """Steps of the CPU tokenizer when none fits (``--tokenizer`` or the benchmark's)."""
    video_steps: int
    batch_size: int
    windows_per_episode: int
    horizons: tuple[int, ...] = (15, 50)


MODES = {
    "default": Budget(backends=BACKENDS, presets=("dmc", "cpu"), batches=(1, 16, 64), min_seconds=4.0,
                      real_steps=300, tokenizer_steps=300, video_steps=300, batch_size=16, windows_per_episode=4),
    "quick": Budget(backends=BACKENDS, presets=("cpu",), batches=(1, 16), min_seconds=0.5, real_steps=50,
                    tokenizer_steps=20, video_steps=10, batch_size=8, windows_per_episode=2),
}


# Speed ----------------------------------------------------------------------------------------------------------------
def real_speed(steps: int) -> dict[str, Any]:
    """Steps/s of the real DMC pixel env (64x64, random actions, one env)."""
    import gymnasium as gym

    env = gym.make(REAL, size=64)
    env.reset(seed=0)
    env.action_space.seed(0)
    env.step(env.action_space.sample())
    start = time.perf_counter()
    for _ in range(steps):
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    seconds = time.perf_counter() - start
    env.close()
    return {"env_id": REAL, "size": 64, "steps": steps, "steps_per_s": round(steps / seconds, 1)}


def random_simulator(preset: str, folder: Path, start_frames: Path, kind: str = "videogpt") -> dict[str, Any]:
    """A simulator folder with random weights at ``preset``'s sizes (video model of type ``kind``, tokenizer,
    heads, spec); returns the model's config (defaults filled in)."""
    from worldrl.config import to_dict
    from worldrl.envs.simulator_spec import write_spec
    from worldrl.models.predictors import build_video_model
    from worldrl.models.reward_heads import HeadsConfig, RewardHeads
    from worldrl.models.tokenizers import build_tokenizer

    video, tokenizer = (load_yaml(ROOT / path)["model"] for path in PRESETS[preset])
    config = {**video, "type": kind, "num_tasks": 0, "action_dim": 1}
    torch.manual_seed(0)
    model = build_video_model(config)
    model.save(folder, build_tokenizer(tokenizer))
    RewardHeads(HeadsConfig(reward=True, cont=True, feature_dim=model.feature_dim)).save(folder)
    write_spec(folder, [start_frames])
    return {"type": kind, **to_dict(model.config)}


def random_dreamer(preset: str, folder: Path) -> dict[str, Any]:
    """A DreamerV3 ``train-agent`` run folder with random weights at ``preset``'s sizes, without training: the
    ``config.yaml`` of the preset on the real env (64x64) and the ``agent.pt`` of a freshly built agent (one
    continuous action); returns its world model's config."""
    import yaml

    from worldrl.agents.dreamerv3 import DreamerV3, load_dreamerv3_config
    from worldrl.config import to_dict

    path = ROOT / AGENT_PRESETS[preset]
    config = load_dreamerv3_config(path)
    agent = DreamerV3(config, FRAME_SHAPE, 1, "cpu")
    folder.mkdir(parents=True, exist_ok=True)
    agent.save(folder / "agent.pt")
    run_config = {**load_yaml(path), "env": {"id": REAL, "kwargs": {"size": FRAME_SHAPE[0]}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(run_config, sort_keys=False))
    return {"type": "dreamerv3", "preset": AGENT_PRESETS[preset], **to_dict(config.world_model)}


def time_steps(envs, bf16: bool, min_seconds: float) -> tuple[int, float]:
    """Imagined steps of every row timed for at least ``min_seconds`` (and 2 steps) after one untimed step."""
    rng = np.random.default_rng(0)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
        envs.step(rng.uniform(-1, 1, (envs.num_envs, 1)).astype(np.float32))
        steps, start = 0, time.perf_counter()
        while steps < 2 or time.perf_counter() - start < min_seconds:
            envs.step(rng.uniform(-1, 1, (envs.num_envs, 1)).astype(np.float32))
            steps += 1
    return steps, time.perf_counter() - start


def sim_speed(budget: Budget, start_frames: Path, real_steps_per_s: float,
              say) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Steps/s of every backend, preset, batch, observation type and precision; and each model's config."""
    from worldrl.envs.simulator import WorldModelVectorEnv

    rows, models = [], {}
    for backend in budget.backends:
        for preset in budget.presets:
            folder = RUNS / "random" / backend / preset
            shutil.rmtree(folder, ignore_errors=True)
            video = backend in VIDEO_BACKENDS
            models[f"{backend}/{preset}"] = (random_simulator(preset, folder, start_frames, backend) if video
                                             else random_dreamer(preset, folder))
            for batch in budget.batches:
                for obs_type in ("pixels", "codes") if video else ("pixels",):
                    wall = time.perf_counter()
                    envs = WorldModelVectorEnv(batch, model=str(folder), start_frames=str(start_frames),
                                               obs_type=obs_type,
                                               render_mode="rgb_array" if obs_type == "pixels" else None,
                                               terminate=False, horizon=NEVER, device="cpu", seed=0)
                    with torch.autocast("cpu", dtype=torch.bfloat16):  # not timed
                        envs.reset(seed=0)
                    for bf16 in (False, True):
                        steps, seconds = time_steps(envs, bf16, budget.min_seconds)
                        rate = batch * steps / seconds
                        rows.append({"backend": backend, "preset": preset, "batch": batch, "obs_type": obs_type,
                                     "precision": "bf16" if bf16 else "fp32", "timed_steps": steps,
                                     "steps_per_s": round(rate, 1), "over_real": round(rate / real_steps_per_s, 3)})
                        say(f"{backend:>9} {preset:>3} batch {batch:>2} {obs_type:>6} {rows[-1]['precision']}: "
                            f"{rate:7.1f} steps/s ({rate / real_steps_per_s:.2f}x the real env)")
                    envs.close()
                    say(f"  ({time.perf_counter() - wall:.0f} s with the reset)")
    return rows, models


def targets(speed: Sequence[dict[str, Any]], budget: Budget) -> dict[str, Any]:
    """The best batch-64 row of each backend and size, and whether it (and any) meets the target."""
    best = {}
    for backend in budget.backends:
        for preset in budget.presets:
            rows = [row for row in speed if (row["backend"], row["preset"], row["batch"]) == (backend, preset, 64)]
            if rows:
                best[f"{backend}/{preset}"] = max(rows, key=lambda row: row["over_real"])
    meets = {name: row["over_real"] >= SPEEDUP_TARGET for name, row in best.items()}
    return {"imagined_over_real_at_batch_64": SPEEDUP_TARGET, "best_at_batch_64": best, "meets_target": meets,
            "pass": None if not best else any(meets.values())}


def kept_fidelity(out: Path) -> dict[str, Any]:
    """The fidelity and policy entries of an existing output JSON (for ``--skip-fidelity``), with a note of the
    run that measured them."""
    if not out.is_file():
        return {}
    previous = json.loads(out.read_text())
    if "fidelity" not in previous:
        return {}
    note = previous.get("fidelity_kept") or {
        "note": "fidelity measured by an earlier run; this run (--skip-fidelity) measured only the speed table",
        "date": previous.get("date"), "command": previous.get("command"), "machine": previous.get("machine")}
    return {"fidelity": previous["fidelity"], "fidelity_kept": note,
            **({"policy_transfer": previous["policy_transfer"]} if "policy_transfer" in previous else {})}


# Fidelity -------------------------------------------------------------------------------------------------------------
def episodes(budget: Budget, quick: bool) -> tuple[Path, str]:
    """The cartpole episode folder: the SAC expert episodes if cached, else random ones collected once."""
    if (EXPERT / "dataset.json").is_file():
        return EXPERT, "SAC expert episodes (benchmarks/tokenizer_quality.py's cache)"
    from worldrl.data.collect import collect

    folder = RUNS / ("random_quick" if quick else "random")
    if not (folder / "dataset.json").is_file():
        rng = np.random.default_rng(0)
        collect(REAL, lambda obs: rng.uniform(-1, 1, size=(1, 1)), 4 if quick else 10, folder,
                env_kwargs={"max_episode_steps": 100 if quick else 500}, progress=False)
    return folder, "uniform random actions (collected here)"


def fits(folder: Path) -> bool:
    """Whether a tokenizer folder makes the CPU video preset's codes of 64x64 frames."""
    from worldrl.models.tokenizers import load_tokenizer

    if not (folder / "model.safetensors").is_file():
        return False
    video = load_yaml(ROOT / PRESETS["cpu"][0])["model"]
    tokenizer = load_tokenizer(folder)
    return (tokenizer.codebook_size == video["codebook_size"] and list(tokenizer.latent_shape) == video["latent_shape"]
            and tuple(tokenizer.frame_shape) == (64, 64, 3) and tokenizer.frames_per_code == 1)


def tokenizer_folder(budget: Budget, given: str | None, data: Path, quick: bool) -> tuple[Path, dict[str, Any]]:
    """A fitting tokenizer: the given one, the tokenizer benchmark's, or the CPU preset trained here (cached)."""
    from worldrl.training.tokenizer import train_tokenizer

    for folder in ([Path(given)] if given else list(TOKENIZERS)):
        if fits(folder):
            run_config = folder.parent / "config.yaml"
            steps = load_yaml(run_config).get("train", {}).get("steps") if run_config.is_file() else None
            return folder, {"folder": shown(folder), "steps": steps, "trained_here": False}
        if given:
            raise SystemExit(f"{given}: not a per-frame tokenizer of 64x64 frames with the CPU video preset's codes")
    run = RUNS / f"tokenizer_{budget.tokenizer_steps}"
    if not (run / "tokenizer" / "model.safetensors").is_file():
        config = apply_overrides(load_yaml(ROOT / PRESETS["cpu"][1]), [
            f"train.steps={budget.tokenizer_steps}", "train.batch_size=16", "train.num_workers=0",
            f"train.val_fraction={VAL_FRACTION}", f"train.eval_every={NEVER}", f"train.checkpoint_every={NEVER}",
            "train.image_every=0"])
        train_tokenizer(config, [data], run, device="cpu", progress=False)
    return run / "tokenizer", {"folder": shown(run / "tokenizer"), "steps": budget.tokenizer_steps,
                               "trained_here": True}


def train_simulator(budget: Budget, tokenizer: Path, data: Path, out: Path) -> dict[str, Any]:
    """The CPU video preset with action conditioning and heads, trained from scratch; its metrics and seconds."""
    from worldrl.training.video_model import train_video_model

    shutil.rmtree(out, ignore_errors=True)
    config = apply_overrides(load_yaml(ROOT / PRESETS["cpu"][0]), [
        "model.action_dim=1", f"train.steps={budget.video_steps}", f"train.batch_size={budget.batch_size}",
        f"train.val_fraction={VAL_FRACTION}", f"train.code_cache={CODE_CACHE}", "train.encode_frames=64",
        f"train.log_every={max(1, budget.video_steps // 5)}", f"train.eval_every={NEVER}", "train.eval_batches=1",
        f"train.sample_every={NEVER}", f"train.checkpoint_every={NEVER}", "heads.reward=true", "heads.continue=true"])
    wall = time.perf_counter()
    metrics = train_video_model(config, tokenizer, [data], out, device="cpu", progress=False)
    return {"steps": metrics.get("step", budget.video_steps), "batch_size": budget.batch_size,
            "wall_s": round(time.perf_counter() - wall, 1),
            **{key: round(float(value), 4) for key, value in metrics.items()
               if isinstance(value, float) and ("bits" in key or "reward" in key or "continue" in key)}}


class FixedStarts:
    """Burn-in windows given in advance (one per row), in place of the simulator's random ones."""

    def __init__(self, frames: np.ndarray, actions: np.ndarray):
        self.frames, self.actions = frames, actions

    def sample(self, rngs: Sequence[np.random.Generator]) -> tuple[np.ndarray, np.ndarray]:
        return self.frames, self.actions


def val_windows(data: Path, burn_in: int, horizon: int, per_episode: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``burn_in + horizon`` frames and their actions from the held-out episodes, evenly spaced."""
    from worldrl.data.clips import is_val_episode
    from worldrl.data.episode import load_episode
    from worldrl.data.folder import EpisodeFolder

    folder = EpisodeFolder(data)
    files = [folder.path / info.file for info in folder.infos if is_val_episode(info.file, VAL_FRACTION)]
    frames, actions = [], []
    for file in files:
        episode = load_episode(file, keys=("image", "action"))
        last = len(episode["image"]) - burn_in - horizon
        for begin in np.linspace(0, last, per_episode).astype(int):
            frames.append(episode["image"][begin : begin + burn_in + horizon])
            actions.append(episode["action"][begin : begin + burn_in + horizon])
    if not frames:
        raise SystemExit(f"no held-out episode of {burn_in + horizon} frames in {data}")
    return np.stack(frames), np.stack(actions).astype(np.float32)


def frame_scores(frames: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-step PSNR and SSIM ``[T]`` (mean over rows) of uint8 frames ``[N, T, H, W, C]``."""
    from worldrl.training.metrics import psnr_per_frame, ssim_per_frame

    def scaled(video: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(video).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0

    n, t = frames.shape[:2]
    fake, target = scaled(frames), scaled(real)
    psnr = psnr_per_frame(fake, target).reshape(n, t).mean(0).numpy()
    ssim = ssim_per_frame(fake, target).reshape(n, t).mean(0).numpy()
    return psnr, ssim


def summary(psnr: np.ndarray, ssim: np.ndarray, horizons: Sequence[int]) -> dict[str, Any]:
    """Mean PSNR and SSIM over the first ``h`` steps, and at step ``h``, for each horizon."""
    return {f"{h}_steps": {"psnr_db": round(float(psnr[:h].mean()), 2), "ssim": round(float(ssim[:h].mean()), 4),
                           "psnr_db_at_step": round(float(psnr[h - 1]), 2),
                           "ssim_at_step": round(float(ssim[h - 1]), 4)} for h in horizons}


def fidelity(budget: Budget, model: Path, data: Path, say) -> dict[str, Any]:
    """Open-loop PSNR/SSIM of the simulator under real actions, and the two references."""
    from worldrl.envs.simulator import WorldModelVectorEnv
    from worldrl.models.tokenizers import load_tokenizer

    horizon = max(budget.horizons)
    burn_in = load_yaml(ROOT / PRESETS["cpu"][0])["model"]["context"]
    frames, actions = val_windows(data, burn_in, horizon, budget.windows_per_episode)
    real = frames[:, burn_in:]
    result: dict[str, Any] = {"windows": len(frames), "burn_in": burn_in, "horizon": horizon}
    for temperature in (1.0, 0.0):
        envs = WorldModelVectorEnv(len(frames), model=str(model), start_frames=str(data), burn_in=burn_in,
                                   temperature=temperature, terminate=False, horizon=NEVER, device="cpu", seed=0)
        envs.starts = FixedStarts(frames[:, :burn_in], actions[:, :burn_in])
        envs.reset(seed=0)
        imagined = [envs.step(actions[:, burn_in + t])[0] for t in range(horizon)]
        envs.close()
        psnr, ssim = frame_scores(np.stack(imagined, 1), real)
        result[f"temperature_{temperature:g}"] = summary(psnr, ssim, budget.horizons)
        say(f"temperature {temperature:g}: {result[f'temperature_{temperature:g}']}")
    tokenizer = load_tokenizer(model / "tokenizer")
    with torch.no_grad():
        reconstruction = np.stack([tokenizer.decode(tokenizer.encode(torch.as_tensor(row[None])))[0].numpy()
                                   for row in real])
    result["reference_tokenizer_reconstruction"] = summary(*frame_scores(reconstruction, real), budget.horizons)
    held = np.repeat(frames[:, burn_in - 1 : burn_in], horizon, axis=1)
    result["reference_last_frame_held"] = summary(*frame_scores(held, real), budget.horizons)
    return result


# Main -----------------------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke test of a few minutes (cpu preset, batch 1 and "
                                                             "16, a 10-step model)")
    parser.add_argument("--tokenizer", help="a trained CPU tokenizer folder (default: the tokenizer benchmark's)")
    parser.add_argument("--skip-fidelity", action="store_true", help="only the speed table")
    parser.add_argument("--out", help="JSON path (default: benchmarks/results/simulator.json; quick: runs/...)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    mode = "quick" if args.quick else "default"
    budget = MODES[mode]
    out = Path(args.out) if args.out else (RUNS / "quick.json" if args.quick else RESULTS)
    wall = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - wall:6.0f}s] {message}", flush=True)

    data, data_kind = episodes(budget, args.quick)
    real = real_speed(budget.real_steps)
    say(f"real env: {real['steps_per_s']} steps/s")
    speed_wall = time.perf_counter()
    speed, models = sim_speed(budget, data, real["steps_per_s"], say)
    speed_wall = round(time.perf_counter() - speed_wall, 1)
    result: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/simulator.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "mode": mode,
        "budget": asdict(budget),
        "settings": {"torch_threads": 1, "device": "cpu", "backends": list(budget.backends),
                     "models": {p: list(PRESETS[p]) for p in budget.presets},
                     "agent_models": {p: AGENT_PRESETS[p] for p in budget.presets},
                     "weights": "random (speed; DreamerV3: a freshly built agent saved as a run folder, no training)",
                     "model_overrides": {"num_tasks": 0, "action_dim": 1, "type": "the backend (video models)"},
                     "model_configs": models,
                     "timing": "one untimed step, then whole vector steps; burn-in resets not timed (run under "
                               "bf16 autocast to shorten them: the timed steps attend to the same number of "
                               "context frames); terminate=False, no horizon",
                     "bf16": "torch.autocast('cpu', bfloat16) around step"},
        "real_env": real,
        "speed": speed,
        "speed_wall_s": speed_wall,
        "targets": targets(speed, budget),
    }
    if args.skip_fidelity:
        result.update(kept_fidelity(out))
    else:
        tokenizer, tokenizer_info = tokenizer_folder(budget, args.tokenizer, data, args.quick)
        say(f"tokenizer {tokenizer_info}; training the simulator on {shown(data)}")
        run = RUNS / mode / "videogpt_actions"
        training = train_simulator(budget, tokenizer, data, run)
        say(f"trained: {training}")
        result["fidelity"] = {"data": {"folder": shown(data), "kind": data_kind, "val_fraction": VAL_FRACTION},
                              "tokenizer": tokenizer_info, "model": {"preset": PRESETS["cpu"][0], "action_dim": 1,
                                                                     "heads": ["reward", "continue"], **training},
                              **fidelity(budget, run / "video_model", data, say)}
    result.setdefault("policy_transfer", "not run: a policy trained in the simulator and one in the real env for the "
                                         "same env steps need agent runs of hours on this CPU")
    result["total_wall_s"] = round(time.perf_counter() - wall, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
