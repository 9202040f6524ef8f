"""Training of the video predictors (VideoGPT, MaskGIT) on the tokenizer codes of dataset folders.

A run is described by a preset (``configs/video/*.yaml``) with two sections:
``model`` (``type`` and the predictor's config, see
:func:`~worldrl.models.predictors.build_video_model`) and ``train``
(:class:`VideoTrainConfig`). The tokenizer is given apart (``--tokenizer``);
its codebook size and latent shape must be the model's.

Every episode is encoded once (batches of ``train.encode_frames`` frames,
no gradients) and its codes cached as ``.npy`` (int16 for codebooks of up to
32768 codes, else int32) under ``<cache>/<tokenizer digest>/``: the digest
covers the tokenizer's config and weights and the encoding settings, and each
file name the episode file's path, size and modification time, so a re-run or
resume reads the cache and another tokenizer or a changed episode is encoded
afresh. Training clips are ``model.context + 1`` code frames taken every
``model.stride`` frames (the :class:`~worldrl.models.predictors.VideoModel`
definition); each step minimises ``model.loss`` with AdamW.

``train.frame_skip: k`` trains on every k-th recorded frame, as if the
episodes had been recorded at k times their action repeat: a model for
VIPER rewards in an env that steps k times coarser than the expert videos
(e.g. videos at action repeat 2, agent at action repeat 8: ``frame_skip: 4``).
Every one of the k phases is used, so no frame is wasted. It is a property of
the data, not of the model (whose ``stride`` still counts its own frames), and
needs a model without actions or heads (the skipped frames' actions and
rewards would be dropped).

An optional ``heads`` section (:class:`~worldrl.models.reward_heads.HeadsConfig`,
e.g. ``heads: {reward: true, continue: true}``) trains a learned simulator's
reward and continue heads on the model's per-frame features, from the
episodes' ``reward`` and ``is_terminal``, jointly with the model (or on
detached features). The exported folder then also holds ``heads/``, and
always ``simulator.json`` (the real env's id, arguments and action space,
:mod:`worldrl.envs.simulator_spec`).

Layout of the run folder::

    config.yaml      the resolved config (every default filled in, and the tokenizer's digest)
    checkpoint.pt    training state: weights, optimizer, step, RNG states, config
    video_model/     the exportable model with its tokenizer (load_video_model reads it)
    codes/           the code cache (unless train.code_cache names another folder)
    tb/              TensorBoard: loss, bits per code, validation likelihood, sampled vs real videos

Resuming, the NaN guard and DDP work as for the tokenizer trainer
(:mod:`worldrl.training.tokenizer`): the same command continues exactly,
only :data:`RESUMABLE_KEYS` may change, and ``train.batch_size`` is global.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from worldrl.atomic import atomic_write
from worldrl.config import ConfigError, build_dataclass, to_dict
from worldrl.data.clips import VideoClipDataset
from worldrl.data.episode import load_episode
from worldrl.models.reward_heads import HeadsConfig, RewardHeads
from worldrl.training.common import (
    BASE_RESUMABLE_KEYS,
    CHECKPOINT_FILE,
    ClipBatches,
    ConfigMismatchError,
    RunTrainer,
    differing_tensors,
    eval_indices,
    local_batch,
    log_video_comparison,
    resolve_model,
    seed_everything,
)
from worldrl.training.distributed import DistributedContext, all_reduce, barrier, init_distributed, wrap

VIDEO_MODEL_DIR = "video_model"
CODES_DIR = "codes"
CHECKPOINT_FORMAT = 1
SECTIONS = ("model", "train", "heads")
RESUMABLE_KEYS = BASE_RESUMABLE_KEYS | {
    "sample_every", "sample_count", "sample_context", "sample_temperature", "code_cache"
}
"""``train.*`` keys that may differ between a checkpoint and the run resuming it (none changes the training)."""


@dataclass
class VideoTrainConfig:
    batch_size: int = 32
    """Clips per step over all ranks (each rank takes ``batch_size / world_size``)."""
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas (Table E.2)."""
    weight_decay: float = 0.0
    warmup_steps: int = 0
    """Linear learning-rate warm-up from 0; constant afterwards."""
    steps: int = 500_000
    seed: int = 0
    grad_clip: float | None = None
    """Clip the global gradient norm to this; None: no clipping."""
    bf16: bool = False
    """Autocast the model to bfloat16 (the logits and the loss stay fp32)."""
    val_fraction: float = 0.05
    """Share of episodes in the validation split (by file-name hash, see ``is_val_episode``)."""
    task_ids: tuple[int, ...] | None = None
    """Task id of each ``--data`` folder, in order, for episodes recorded without one (multi-task models)."""
    mask_scoreboard: str | None = None
    """Atari game whose score area is zeroed before encoding (VIPER masks it)."""
    encode_frames: int = 64
    """Frames per tokenizer call when encoding episodes."""
    code_cache: str | None = None
    """Folder of the code cache, which runs may share; None: ``<out>/codes``."""
    log_every: int = 100
    eval_every: int = 5000
    eval_batches: int = 8
    """Validation batches (of ``batch_size`` clips, spread evenly over the split) per evaluation."""
    sample_every: int = 5000
    """Steps between sampled videos in TensorBoard (0: only at the end)."""
    sample_count: int = 4
    sample_context: int | None = None
    """Frames of a validation clip the samples are conditioned on; None: half the clip."""
    sample_temperature: float = 1.0
    checkpoint_every: int = 5000
    find_unused_parameters: bool = False
    """Passed to DistributedDataParallel (e.g. for action-conditioned models with action_dropout 0)."""
    frame_skip: int = 1
    """Train on every k-th recorded frame: the model of an env stepping k times coarser than the videos."""

    def __post_init__(self) -> None:
        positive = ("batch_size", "steps", "log_every", "eval_every", "eval_batches", "checkpoint_every",
                    "encode_frames", "sample_count", "frame_skip")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or len(self.betas) != 2:
            raise ConfigError(f"train.lr must be > 0 and train.betas two numbers, got {self.lr} and {self.betas}")
        if min(self.sample_every, self.warmup_steps, self.sample_temperature) < 0:
            raise ConfigError("train.sample_every, warmup_steps and sample_temperature must be >= 0")


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with every default filled in, as plain YAML data; unknown sections or keys are errors."""
    from worldrl.models.predictors import VIDEO_MODELS

    resolved = {
        "model": resolve_model(config, SECTIONS, VIDEO_MODELS),
        "train": to_dict(build_dataclass(VideoTrainConfig, config.get("train"), "train")),
    }
    if config.get("heads"):
        resolved["heads"] = HeadsConfig.from_section(config["heads"]).to_section()
    return resolved


# Code cache ---------------------------------------------------------------------------------------------------------
def tokenizer_digest(directory: str | Path, settings: Mapping[str, Any]) -> str:
    """SHA-256 of a saved tokenizer's config and weights and of the encoding ``settings``."""
    from worldrl.models.checkpoint import WEIGHTS_FILE
    from worldrl.models.tokenizers.base import CONFIG_FILE

    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        digest.update((Path(directory) / name).read_bytes())
    digest.update(json.dumps(dict(settings), sort_keys=True).encode())
    return digest.hexdigest()


def code_dtype(codebook_size: int) -> np.dtype:
    """The smallest signed integer type that holds every code (int16 up to 32768 codes)."""
    return np.dtype(np.int16 if codebook_size <= 2**15 else np.int32)


class CodeCache:
    """Codes of episode files under one tokenizer, one ``.npy`` per episode, written atomically."""

    def __init__(self, root: str | Path, digest: str, tokenizer: nn.Module, encode_frames: int,
                 regions: Sequence[tuple[slice, slice]] = ()):
        self.folder = Path(root) / digest[:16]
        self.tokenizer, self.encode_frames, self.regions = tokenizer, encode_frames, list(regions)

    def path(self, episode: str | Path) -> Path:
        """Cache file of an episode file: its name plus a hash of its path, size and modification time."""
        episode = Path(episode).resolve()
        stat = episode.stat()
        key = hashlib.sha256(f"{episode}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        return self.folder / f"{episode.stem}-{key}.npy"

    def missing(self, episodes: Sequence[str]) -> list[str]:
        """The episodes that have no cached codes yet."""
        return [episode for episode in episodes if not self.path(episode).is_file()]

    def encode_all(self, episodes: Sequence[str], progress: bool = True) -> None:
        """Encode ``episodes`` and write their codes."""
        for episode in tqdm(episodes, desc="encode episodes", unit="episode", disable=not progress):
            codes = self.encode(load_episode(episode, keys=("image",))["image"])
            atomic_write(self.path(episode), lambda file, codes=codes: np.save(file, codes))

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames ``[T, H, W, C]`` -> codes ``[T, h, w]`` in the cache's integer type."""
        frames = frames.copy() if self.regions else frames
        for rows, cols in self.regions:
            frames[:, rows, cols] = 0
        chunks = []
        for start in range(0, len(frames), self.encode_frames):
            chunk = torch.from_numpy(np.ascontiguousarray(frames[start : start + self.encode_frames]))
            chunks.append(self.tokenizer.encode(chunk[None])[0].cpu())
        return torch.cat(chunks).numpy().astype(code_dtype(self.tokenizer.codebook_size))

    def load(self, episode: str | Path) -> np.ndarray:
        """The cached codes of an episode, memory-mapped."""
        return np.load(self.path(episode), mmap_mode="r")


class CodeClips(VideoClipDataset):
    """Clips of code frames: the episode index, split and task ids of :class:`VideoClipDataset`, the frames
    from a :class:`CodeCache`. Items hold ``codes`` int64 ``[L, h, w]`` and, as configured, ``actions``
    ``[L, A]``, ``task_id`` and (for reward heads) ``reward``, ``is_terminal`` and ``is_first`` ``[L]``.

    With ``frame_skip`` k the model's frames are every k-th recorded one: ``stride`` (the dataset's, in
    recorded frames) is the model's stride times k, and :meth:`segment` steps k recorded frames.
    """

    codes: list[np.ndarray]
    actions: list[np.ndarray] | None = None
    signals: list[dict[str, np.ndarray]] | None = None

    def __init__(self, folders: Sequence[str], model_stride: int = 1, frame_skip: int = 1, **clips: Any):
        super().__init__(folders, stride=model_stride * frame_skip, **clips)
        self.model_stride, self.frame_skip = model_stride, frame_skip

    def attach(self, cache: CodeCache, action_dim: int, signals: bool = False) -> None:
        """Read every episode's codes (and actions, checked to have ``action_dim`` entries) from the cache, and
        with ``signals`` the rewards and flags the heads learn."""
        self.codes = [cache.load(path) for path in self.paths]
        if signals:
            self.signals = [load_episode(path, keys=HEAD_KEYS) for path in self.paths]
        if action_dim:
            self.actions = [load_episode(path, keys=("action",))["action"] for path in self.paths]
            for path, actions in zip(self.paths, self.actions):
                if actions.shape[1:] != (action_dim,):
                    raise ConfigError(
                        f"model.action_dim is {action_dim} but {path} has actions of size {actions.shape[1]}"
                    )

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.item(index, self.stride)

    def segment(self, index: int) -> dict[str, Tensor]:
        """Item ``index`` at the model's full frame rate: every model frame of the clip's span, so that
        ``log_prob`` (which takes consecutive frames) scores the clip frames with exactly the context training
        gives them."""
        return self.item(index, self.frame_skip)

    def item(self, index: int, step: int) -> dict[str, Tensor]:
        episode, start = self.locate(index)
        frames = slice(start, start + self.span, step)
        item = {"codes": torch.from_numpy(self.codes[episode][frames].astype(np.int64))}
        if self.actions is not None:
            item["actions"] = torch.from_numpy(np.array(self.actions[episode][frames], np.float32))
        if self.with_task_id:
            item["task_id"] = torch.tensor(self._task_ids[episode], dtype=torch.int64)
        if self.signals is not None:
            for key in HEAD_KEYS:
                item[key] = torch.from_numpy(np.asarray(self.signals[episode][key][frames]))
        return item

    def batch(self, indices: Sequence[int], full_rate: bool = False) -> dict[str, Tensor]:
        items = [self.segment(i) if full_rate else self[i] for i in indices]
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}


HEAD_KEYS = ("reward", "is_terminal", "is_first")


class _Loss(nn.Module):
    """The model's loss (plus the heads') as ``forward``, so that DistributedDataParallel synchronises the
    gradients."""

    def __init__(self, model: nn.Module, heads: RewardHeads | None = None):
        super().__init__()
        self.model, self.heads = model, heads

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict]:
        codes, task, actions = batch["codes"], batch.get("task_id"), batch.get("actions")
        if self.heads is None:
            return self.model.loss(codes, task, actions)
        loss, stats, features = self.model.loss_and_features(codes, task, actions)
        config = self.heads.config
        features = features.detach() if config.detach else features
        heads_loss, heads_stats = self.heads.loss(features, batch["reward"], batch["is_terminal"], ~batch["is_first"])
        return loss + config.weight * heads_loss, {**stats, **heads_stats}


# Trainer ------------------------------------------------------------------------------------------------------------
class VideoModelTrainer(RunTrainer):
    """One training run of a video model in a run folder (see the module docstring)."""

    what = "video model"
    checkpoint_format = CHECKPOINT_FORMAT
    resumable_keys = RESUMABLE_KEYS

    def __init__(
        self,
        config: Mapping[str, Any],
        tokenizer: str | Path,
        data: Sequence[str | Path] | str | Path,
        out: str | Path,
        device: str | torch.device = "auto",
        progress: bool = True,
        force: bool = False,
        context: DistributedContext | None = None,
    ):
        from worldrl.models.predictors import build_video_model, check_tokenizer
        from worldrl.models.tokenizers import load_tokenizer

        self._open_run(resolve_config(config), out, device, progress, context)
        cfg = self.train_config = build_dataclass(VideoTrainConfig, self.config["train"], "train")
        self.local_batch = local_batch(cfg.batch_size, self.context)
        data = [data] if isinstance(data, (str, Path)) else list(data)
        self.data = [str(Path(folder).resolve()) for folder in data]
        self.train_data, self.val_data, self.eval_split = self._datasets()

        seed_everything(cfg.seed)
        self.model = build_video_model(self.config["model"]).to(self.device)
        self.heads = self._build_heads()
        self.tokenizer = load_tokenizer(tokenizer, self.device, frame_shape=tuple(self.train_data.image_shape))
        check_tokenizer(self.model, self.tokenizer, tokenizer)
        if self.tokenizer.frames_per_code != 1:
            raise ConfigError(
                f"{tokenizer}: video models take one code frame per frame, but this tokenizer codes "
                f"{self.tokenizer.frames_per_code} frames per step"
            )
        self._check_tasks()
        settings = {"encode_frames": cfg.encode_frames, "mask_scoreboard": cfg.mask_scoreboard}
        self.config["tokenizer"] = {"digest": tokenizer_digest(tokenizer, settings)}
        checkpoint = self._read_checkpoint(force)
        self.encoded = self._encode()

        parameters = list(self.model.parameters()) + ([] if self.heads is None else list(self.heads.parameters()))
        self.optimizer = torch.optim.AdamW(parameters, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        self.step = 0
        self.saved_step: int | None = None
        if checkpoint is not None:
            self._restore(checkpoint)
        elif self.context.rank:
            seed_everything(cfg.seed + self.context.rank)
        self.loss_ddp = wrap(_Loss(self.model, self.heads), self.context, cfg.find_unused_parameters)
        self.writer = None
        self._open_writer(checkpoint)
        self.history: list[dict[str, float]] = []
        self.spec_written = False

    # Setup ----------------------------------------------------------------------------------------------------------
    def _build_heads(self) -> RewardHeads | None:
        """The reward/continue heads of the ``heads`` section, on the model's features (None without it)."""
        config = HeadsConfig.from_section(self.config.get("heads"))
        if not config.enabled:
            return None
        if self.model.config.stride != 1:
            raise ConfigError("reward and continue heads need model.stride 1 (a reward per frame)")
        config.feature_dim = self.model.feature_dim
        return RewardHeads(config).to(self.device)

    def _datasets(self) -> tuple[CodeClips, CodeClips, str]:
        """Train and validation clips (the training split evaluates when there are no validation episodes)."""
        model, cfg = self.config["model"], self.train_config
        task_ids = None
        if cfg.task_ids is not None:
            if len(cfg.task_ids) != len(self.data):
                raise ConfigError(
                    f"train.task_ids gives {len(cfg.task_ids)} ids for {len(self.data)} --data folders"
                )
            task_ids = dict(zip(self.data, cfg.task_ids))
        if cfg.frame_skip > 1 and (model.get("action_dim") or self.config.get("heads")):
            raise ConfigError(f"train.frame_skip {cfg.frame_skip} drops the skipped frames' actions and rewards: "
                              "it needs a model without action_dim and without heads")
        clips = {"clip_length": model["context"] + 1, "model_stride": model["stride"], "frame_skip": cfg.frame_skip,
                 "val_fraction": cfg.val_fraction, "with_task_id": model["num_tasks"] > 0, "task_ids": task_ids,
                 "cache_episodes": 0}
        train = CodeClips(self.data, split="train", **clips)
        try:
            return train, CodeClips(self.data, split="val", **clips), "val"
        except ValueError:
            return train, train, "train"

    def _check_tasks(self) -> None:
        num_tasks = self.model.config.num_tasks
        if not num_tasks:
            if self.train_config.task_ids is not None:
                raise ConfigError("train.task_ids is set but model.num_tasks is 0 (a single-task model)")
            return
        ids = np.concatenate([self.train_data._task_ids, self.val_data._task_ids])
        if ids.min() < 0 or ids.max() >= num_tasks:
            raise ConfigError(
                f"the episodes have task ids {sorted(set(ids.tolist()))} but model.num_tasks is {num_tasks}: "
                f"ids must lie in [0, {num_tasks})"
            )

    def _encode(self) -> int:
        """Fill the code cache (ranks share the work) and attach the codes to the datasets; returns how many
        episodes were encoded."""
        cfg = self.train_config
        regions = []
        if cfg.mask_scoreboard is not None:
            from worldrl.wrappers.scoreboard import scaled_regions

            regions = scaled_regions(cfg.mask_scoreboard, *self.train_data.image_shape[:2])
        root = Path(cfg.code_cache) if cfg.code_cache else self.out / CODES_DIR
        cache = CodeCache(root, self.config["tokenizer"]["digest"], self.tokenizer, cfg.encode_frames, regions)
        episodes = list(dict.fromkeys(self.train_data.paths + self.val_data.paths))
        missing = cache.missing(episodes)
        barrier()  # every rank has listed the same missing episodes before any is written
        cache.encode_all(missing[self.context.rank :: self.context.world_size], self.progress)
        barrier()
        for dataset in {id(self.train_data): self.train_data, id(self.val_data): self.val_data}.values():
            dataset.attach(cache, self.model.config.action_dim, signals=self.heads is not None)
        return len(missing)

    def _restore(self, checkpoint: Mapping[str, Any]) -> None:
        try:
            self.model.load_state_dict(checkpoint["model"])
            if self.heads is not None:
                self.heads.load_state_dict(checkpoint["heads"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise ConfigMismatchError(
                f"cannot resume from {self.out / CHECKPOINT_FILE} with this config: {error}"
            ) from error
        self.step = self.saved_step = int(checkpoint["step"])
        self._restore_rng(checkpoint["rng"])

    def _batches(self) -> Iterator[dict[str, Tensor]]:
        cfg = self.train_config
        sampler = ClipBatches(
            len(self.train_data), self.local_batch, cfg.seed, self.context.rank, self.context.world_size, self.step
        )
        for indices in sampler:
            yield {key: value.to(self.device) for key, value in self.train_data.batch(indices).items()}

    # Training -------------------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train up to ``train.steps``, evaluate, sample, checkpoint; return the final metrics."""
        cfg = self.train_config
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train video model", unit="step",
                   disable=not self.progress)
        sums: dict[str, float] = {}
        count, last_time, last_step = 0, time.perf_counter(), self.step
        batches = self._batches()
        try:
            while self.step < cfg.steps:
                stats = self._train_step(next(batches))
                self.step += 1
                count += 1
                for key, value in stats.items():
                    sums[key] = sums.get(key, 0.0) + value
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.4f}", refresh=False)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    now = time.perf_counter()
                    self._log_train(sums, count, (self.step - last_step) / max(now - last_time, 1e-9))
                    sums, count, last_time, last_step = {}, 0, now, self.step
                if self.step % cfg.eval_every == 0:
                    self._log_eval(self.evaluate())
                if cfg.sample_every and self.step % cfg.sample_every == 0:
                    self.log_samples()
                if self.step % cfg.checkpoint_every == 0:
                    self.save()
            if self.saved_step != self.step:
                self.save()
            final = self.evaluate()
            self._log_eval(final)
            self.log_samples()
            differences = differing_tensors({"": self.model})
        finally:
            bar.close()
            if self.writer is not None:
                self.writer.flush()
        return {
            "step": self.step,
            "eval_split": self.eval_split,
            **{f"val_{key}": value for key, value in final.items()},
            "encoded_episodes": self.encoded,
            "world_size": self.context.world_size,
            "rank_differences": differences,
            # VQ's ring of recent encoder outputs (TECO's quantizer.recent) is rank-local by design.
            "ranks_in_sync": all(name.endswith("quantizer.recent") for name in differences),
            "history": self.history,
            "checkpoint": str(self.out / CHECKPOINT_FILE),
            "video_model": str(self.out / VIDEO_MODEL_DIR),
        }

    def _set_learning_rate(self) -> float:
        cfg = self.train_config
        lr = cfg.lr * (min(1.0, (self.step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _train_step(self, batch: Mapping[str, Tensor]) -> dict[str, float]:
        lr = self._set_learning_rate()
        with self._autocast():
            loss, stats = self.loss_ddp(batch)
        loss = loss.float()
        self._check_finite({"loss": loss})
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        stats = {"loss": loss, **stats, "grad_norm": self._clip(self.loss_ddp, "video model")}
        self.optimizer.step()
        values = torch.stack([torch.as_tensor(v, device=self.device).detach().float().reshape(()) for v in
                              stats.values()])
        return {**dict(zip(stats, values.tolist())), "lr": lr}

    # Evaluation -----------------------------------------------------------------------------------------------------
    @contextmanager
    def _evaluation(self) -> Iterator[None]:
        """Eval mode, and RNG states that evaluation leaves as they were (so it never changes training)."""
        devices = [self.device] if self.device.type == "cuda" else []
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=devices):
                yield
        finally:
            self.model.train()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Likelihood of up to ``eval_batches * batch_size`` fixed validation clips under ``model.log_prob``.

        Returns ``nats_per_code`` and ``bits_per_code`` (over every frame of
        the clips, as the training loss counts them), ``frame_log_likelihood``
        (mean ``ln p`` of a clip frame, nats) and ``context_log_likelihood``
        (of the clips' last frames, which see the full context: VIPER's reward).
        """
        cfg, context, dataset = self.train_config, self.context, self.val_data
        mine, weights = eval_indices(len(dataset), cfg.eval_batches * cfg.batch_size, context.rank,
                                     context.world_size)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        with self._evaluation():
            for start in range(0, len(mine), self.local_batch):
                batch = dataset.batch(mine[start : start + self.local_batch].tolist(), full_rate=True)
                batch = {key: value.to(self.device) for key, value in batch.items()}
                with self._autocast():
                    logp = self.model.log_prob(batch["codes"], batch.get("task_id"), batch.get("actions")).frame
                logp = logp[:, :: dataset.model_stride].double()
                weight = weights[start : start + len(logp)].to(self.device).double()
                sums += torch.stack([(logp.sum(1) * weight).sum(), (logp[:, -1] * weight).sum(), weight.sum()])
        all_reduce(sums, "sum")
        clips, frames = float(sums[2]), float(sums[2]) * dataset.clip_length
        nats = -float(sums[0]) / (frames * self.model.config.codes_per_frame)
        return {
            "nats_per_code": nats,
            "bits_per_code": nats / math.log(2),
            "frame_log_likelihood": float(sums[0]) / frames,
            "context_log_likelihood": float(sums[1]) / clips,
        }

    @torch.no_grad()
    def log_samples(self) -> None:
        """Rank 0: continue the first frames of a few validation clips and log them beside the real clips."""
        if self.writer is None:
            return
        cfg, dataset = self.train_config, self.val_data
        indices, _ = eval_indices(len(dataset), cfg.sample_count, 0, 1)
        batch = {key: value.to(self.device) for key, value in dataset.batch(indices.tolist()).items()}
        codes = batch["codes"]
        known = cfg.sample_context if cfg.sample_context is not None else max(1, codes.shape[1] // 2)
        known = min(known, codes.shape[1] - 1)
        generator = torch.Generator(self.device).manual_seed(cfg.seed)
        with self._evaluation():
            sampled = self.model.sample(
                codes[:, :known], codes.shape[1] - known, batch.get("task_id"), batch.get("actions"),
                temperature=cfg.sample_temperature, generator=generator,
            )
        from worldrl.models.tokenizers import frames_to_float

        real = frames_to_float(self.tokenizer.decode(codes))
        fake = frames_to_float(self.tokenizer.decode(torch.cat([codes[:, :known], sampled], dim=1)))
        log_video_comparison(self.writer, "val", "sample", real, fake, self.step)

    # Logging and checkpoints ----------------------------------------------------------------------------------------
    def _log_train(self, sums: Mapping[str, float], count: int, steps_per_second: float) -> None:
        means = self._mean_over_ranks(sums, count)
        if self.writer is None:
            return
        for key, value in means.items():
            self.writer.add_scalar(f"train/{key}", value, self.step)
        self.writer.add_scalar("train/steps_per_second", steps_per_second, self.step)
        self.history.append({"step": self.step, **means})

    def _log_eval(self, metrics: Mapping[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in metrics.items():
            self.writer.add_scalar(f"val/{key}", value, self.step)

    def checkpoint_state(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        heads = {} if self.heads is None else {"heads": self.heads.state_dict()}
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "data": self.data, **heads}

    def export(self) -> None:
        from worldrl.envs.simulator_spec import write_spec

        folder = self.out / VIDEO_MODEL_DIR
        self.model.save(folder, tokenizer=self.tokenizer)
        if self.heads is not None:
            self.heads.save(folder)
        if not self.spec_written:
            write_spec(folder, self.data)
            self.spec_written = True


def train_video_model(
    config: Mapping[str, Any],
    tokenizer: str | Path,
    data: Sequence[str | Path] | str | Path,
    out: str | Path,
    device: str | torch.device = "auto",
    progress: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Train (or resume) a video model on the codes ``tokenizer`` gives the episodes of ``data``, in ``out``.

    Returns the final metrics: ``step``, ``val_nats_per_code``,
    ``val_bits_per_code``, ``val_frame_log_likelihood``,
    ``val_context_log_likelihood``, ``eval_split`` (``"train"`` when the data
    has no validation episodes), ``encoded_episodes`` (0 when the cache had
    them all), the logged training scalars (``history``) and the paths
    written. Under ``torchrun`` every rank calls this.
    """
    context = init_distributed(device)
    trainer = None
    try:
        trainer = VideoModelTrainer(config, tokenizer, data, out, device, progress=progress, force=force,
                                    context=context)
        return trainer.train()
    finally:
        if trainer is not None:
            trainer.close()
        context.close()
