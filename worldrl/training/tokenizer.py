"""Training of the video tokenizers (VQ-GAN, VideoGPT's VQ-VAE, the causal tokenizer) on dataset folders.

A run is described by a preset (``configs/tokenizer/*.yaml``) with four sections:

- ``model``: the tokenizer (``type`` and its config, see :func:`build_tokenizer`);
- ``discriminator``: the PatchGAN's config, or null for no adversarial loss;
- ``loss``: :class:`LossConfig`;
- ``train``: :class:`TrainConfig`.

Each step reconstructs a batch of clips and minimises the reconstruction
loss (plus the perceptual loss when a feature network is given) plus the
quantizer's loss; from ``loss.discriminator_start`` on, the PatchGAN
generator loss is added with weight ``discriminator_weight`` times VQGAN's
adaptive weight (the ratio of the gradient norms of the reconstruction and
GAN losses at the decoder's last layer), and the discriminator takes a hinge
loss step on its own optimizer. Per-frame losses and the discriminator see
time folded into the batch.

Layout of the run folder::

    config.yaml      the resolved config (every default filled in)
    checkpoint.pt    training state: weights, optimizers, step, RNG states, config
    tokenizer/       the exportable tokenizer (Tokenizer.save; load_tokenizer reads it)
    tb/              TensorBoard logs

Running again with the same folder resumes from ``checkpoint.pt``: data order
and RNG states continue where they left off, so an interrupted run ends with
the same weights as an uninterrupted one. Only ``train.steps`` and the
logging, evaluation and checkpoint settings may change on resume
(:data:`RESUMABLE_KEYS`). A
non-finite loss stops training with :class:`NonFiniteLossError` before
the step is applied, and the last checkpoint stays as it was.

Under ``torchrun`` the model and discriminator are wrapped in
DistributedDataParallel; ``train.batch_size`` is the global batch, split
evenly over the ranks, and only rank 0 writes files and shows progress.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from worldrl.config import ConfigError, build_dataclass, to_dict
from worldrl.training.common import (
    BASE_RESUMABLE_KEYS,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    TENSORBOARD_DIR,
    ClipBatches,
    ConfigMismatchError,
    NonFiniteLossError,
    RunTrainer,
    config_differences,
    differing_tensors,
    eval_indices,
    local_batch,
    log_video_comparison,
    resolve_model,
    rng_state,
    seed_everything,
    set_rng_state,
)
from worldrl.training.distributed import (
    DistributedContext,
    all_reduce,
    init_distributed,
    wrap,
)
from worldrl.training.losses import (
    PerceptualLoss,
    check_reconstruction_loss,
    estimate_data_variance,
    reconstruction_loss,
)
from worldrl.training.metrics import fold_time, psnr, psnr_per_frame, ssim_per_frame

TOKENIZER_DIR = "tokenizer"
CHECKPOINT_FORMAT = 1
SECTIONS = ("model", "discriminator", "loss", "train")
RESUMABLE_KEYS = BASE_RESUMABLE_KEYS | {"image_every", "cache_episodes", "variance_samples"}
"""``train.*`` keys that may differ between a checkpoint and the run resuming it (none changes the training)."""
__all__ = [  # the shared pieces stay importable from here
    "CHECKPOINT_FILE", "CONFIG_FILE", "RESUMABLE_KEYS", "TENSORBOARD_DIR", "TOKENIZER_DIR", "ClipBatches",
    "ConfigMismatchError", "LossConfig", "NonFiniteLossError", "TokenizerTrainer", "TrainConfig",
    "config_differences", "resolve_config", "rng_state", "seed_everything", "set_rng_state", "train_tokenizer",
    "video_to_float",
]
SSIM_MIN_SIZE = 11
"""SSIM's Gaussian window is 11 pixels: smaller frames get no SSIM (NaN)."""


@dataclass
class LossConfig:
    reconstruction: str = "l1"
    """``l1``, ``l2``, ``l1+l2`` or ``normalized_mse`` (see :mod:`worldrl.training.losses`)."""
    perceptual_weight: float = 0.1
    """Weight of the perceptual loss; it is computed only when ``train.perceptual_weights`` names a network."""
    discriminator_weight: float = 0.1
    """Weight of the PatchGAN generator loss (times the adaptive weight)."""
    discriminator_start: int = 10_000
    """Step from which the GAN losses are on."""
    adaptive_weight_max: float = 1e4
    """Upper clamp of the adaptive weight."""

    def __post_init__(self) -> None:
        check_reconstruction_loss(self.reconstruction)


@dataclass
class TrainConfig:
    batch_size: int = 128
    """Clips per step over all ranks (each rank takes ``batch_size / world_size``)."""
    lr: float = 1e-4
    discriminator_lr: float | None = None
    """Discriminator learning rate; None uses ``lr``."""
    betas: tuple[float, float] = (0.5, 0.9)
    """AdamW betas (VQGAN's choice for GAN training)."""
    weight_decay: float = 0.0
    warmup_steps: int = 0
    """Linear learning-rate warm-up from 0; constant afterwards."""
    steps: int = 200_000
    """Total steps (a resumed run continues up to this)."""
    clip_length: int = 1
    frame_stride: int = 1
    seed: int = 0
    grad_clip: float | None = None
    """Clip the global gradient norm (of each of the two models) to this; None: no clipping."""
    bf16: bool = False
    """Autocast the models to bfloat16 (the quantizer and the losses stay fp32)."""
    num_workers: int = 4
    """DataLoader worker processes per rank."""
    cache_episodes: int = 16
    """Decompressed episodes each data worker keeps: shuffled clips from at most this many episodes are read
    without decompressing an episode per clip (memory: this many episodes' frames per worker)."""
    val_fraction: float = 0.05
    """Share of episodes in the validation split (by file-name hash, see ``is_val_episode``)."""
    mask_scoreboard: str | None = None
    """Atari game whose score area is zeroed in every frame."""
    perceptual_weights: str | None = None
    """TorchScript feature network for the perceptual loss (see :class:`PerceptualLoss`); None: no perceptual loss."""
    variance_samples: int = 256
    """Clips read to estimate the data variance for ``normalized_mse``."""
    log_every: int = 100
    image_every: int = 1000
    eval_every: int = 5000
    eval_batches: int = 8
    """Validation batches (of ``batch_size`` clips, spread evenly over the split) per evaluation."""
    checkpoint_every: int = 5000
    find_unused_parameters: bool = False
    """Passed to DistributedDataParallel, for models with parameters that some steps do not use."""

    def __post_init__(self) -> None:
        positive = ("batch_size", "steps", "clip_length", "frame_stride", "log_every", "eval_every", "eval_batches",
                    "checkpoint_every", "variance_samples")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or len(self.betas) != 2:
            raise ConfigError(f"train.lr must be > 0 and train.betas two numbers, got {self.lr} and {self.betas}")
        if min(self.image_every, self.num_workers, self.warmup_steps, self.cache_episodes) < 0:
            raise ConfigError("train.image_every, num_workers, warmup_steps and cache_episodes must be >= 0")


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with every default filled in, as plain YAML data; unknown sections or keys are errors."""
    from worldrl.models.tokenizers import TOKENIZERS
    from worldrl.models.tokenizers.discriminator import DiscriminatorConfig

    discriminator = config.get("discriminator")
    return {
        "model": resolve_model(config, SECTIONS, TOKENIZERS),
        "discriminator": None
        if discriminator is None
        else to_dict(build_dataclass(DiscriminatorConfig, discriminator, "discriminator")),
        "loss": to_dict(build_dataclass(LossConfig, config.get("loss"), "loss")),
        "train": to_dict(build_dataclass(TrainConfig, config.get("train"), "train")),
    }


def video_to_float(video: Tensor) -> Tensor:
    """Clips uint8 ``[B, T, C, H, W]`` (as :class:`VideoClipDataset` gives them) -> float ``[B, C, T, H, W]``."""
    return video.permute(0, 2, 1, 3, 4).float().div(127.5).sub(1.0)


class TokenizerTrainer(RunTrainer):
    """One training run of a tokenizer in a run folder (see the module docstring)."""

    what = "tokenizer"
    checkpoint_format = CHECKPOINT_FORMAT
    resumable_keys = RESUMABLE_KEYS

    def __init__(
        self,
        config: Mapping[str, Any],
        data: Sequence[str | Path],
        out: str | Path,
        device: str | torch.device = "auto",
        progress: bool = True,
        force: bool = False,
        context: DistributedContext | None = None,
    ):
        from worldrl.data.clips import VideoClipDataset
        from worldrl.models.tokenizers import build_tokenizer

        self._open_run(resolve_config(config), out, device, progress, context)
        self.train_config = build_dataclass(TrainConfig, self.config["train"], "train")
        self.loss_config = build_dataclass(LossConfig, self.config["loss"], "loss")
        cfg = self.train_config
        self.local_batch = local_batch(cfg.batch_size, self.context)
        checkpoint = self._read_checkpoint(force)

        data = [data] if isinstance(data, (str, Path)) else list(data)
        self.data = [str(Path(folder).resolve()) for folder in data]
        clips = {"clip_length": cfg.clip_length, "stride": cfg.frame_stride, "val_fraction": cfg.val_fraction,
                 "mask_scoreboard": cfg.mask_scoreboard, "cache_episodes": cfg.cache_episodes}
        self.train_data = VideoClipDataset(data, split="train", **clips)
        try:
            self.val_data = VideoClipDataset(data, split="val", **clips)
            self.eval_split = "val"
        except ValueError:
            self.val_data, self.eval_split = self.train_data, "train"

        seed_everything(cfg.seed)
        self.model = build_tokenizer(self.config["model"]).to(self.device)
        self.model.num_code_frames(cfg.clip_length)
        if tuple(self.train_data.image_shape) != tuple(self.model.frame_shape):
            raise ConfigError(
                f"the data has frames of shape (H, W, C) = {tuple(self.train_data.image_shape)} but the model "
                f"takes {tuple(self.model.frame_shape)}"
            )
        self.discriminator = self._build_discriminator()
        self.perceptual = None
        if cfg.perceptual_weights and self.loss_config.perceptual_weight > 0:
            self.perceptual = PerceptualLoss.from_file(cfg.perceptual_weights, self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
        )
        self.discriminator_optimizer = None
        if self.discriminator is not None:
            self.discriminator_optimizer = torch.optim.AdamW(
                self.discriminator.parameters(), lr=cfg.discriminator_lr or cfg.lr, betas=tuple(cfg.betas),
                weight_decay=cfg.weight_decay,
            )

        self.step = 0
        self.saved_step: int | None = None
        self.data_variance: float | None = None
        if checkpoint is not None:
            self._restore(checkpoint)
        else:
            if self.loss_config.reconstruction == "normalized_mse":
                self.data_variance = estimate_data_variance(self.train_data, cfg.variance_samples)
            if self.context.rank:
                seed_everything(cfg.seed + self.context.rank)
        self.model_ddp = wrap(self.model, self.context, cfg.find_unused_parameters)
        self.discriminator_ddp = None
        if self.discriminator is not None:
            self.discriminator_ddp = wrap(self.discriminator, self.context, cfg.find_unused_parameters)
        self.writer = None
        self._open_writer(checkpoint)
        self.history: list[dict[str, float]] = []

    # Setup ----------------------------------------------------------------------------------------------------------
    def _build_discriminator(self) -> nn.Module | None:
        if self.config["discriminator"] is None:
            return None
        from worldrl.models.tokenizers.discriminator import DiscriminatorConfig, PatchGAN

        config = build_dataclass(DiscriminatorConfig, self.config["discriminator"], "discriminator")
        return PatchGAN(self.model.frame_shape[2], config).to(self.device)

    def _restore(self, checkpoint: Mapping[str, Any]) -> None:
        """Load the training state; a discriminator that the checkpoint lacks (``--force``) starts fresh."""
        try:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            if self.discriminator is not None and checkpoint.get("discriminator") is not None:
                self.discriminator.load_state_dict(checkpoint["discriminator"])
                self.discriminator_optimizer.load_state_dict(checkpoint["discriminator_optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise ConfigMismatchError(
                f"cannot resume from {self.out / CHECKPOINT_FILE} with this config: {error}"
            ) from error
        self.step = self.saved_step = int(checkpoint["step"])
        self.data_variance = checkpoint.get("data_variance")
        if self.loss_config.reconstruction == "normalized_mse" and self.data_variance is None:
            self.data_variance = estimate_data_variance(self.train_data, self.train_config.variance_samples)
        self._restore_rng(checkpoint["rng"])

    def _loader(self) -> Iterator[dict[str, Tensor]]:
        cfg = self.train_config
        sampler = ClipBatches(
            len(self.train_data), self.local_batch, cfg.seed, self.context.rank, self.context.world_size, self.step
        )
        loader = DataLoader(
            self.train_data,
            batch_sampler=sampler,
            num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        return iter(loader)

    # Training -------------------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train up to ``train.steps``, evaluate, checkpoint; return the final metrics."""
        cfg = self.train_config
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train tokenizer", unit="step", disable=not self.progress)
        sums: dict[str, float] = {}
        count, last_time, last_step = 0, time.perf_counter(), self.step
        try:
            if self.step < cfg.steps:
                batches = self._loader()
            while self.step < cfg.steps:
                video = video_to_float(next(batches)["video"].to(self.device, non_blocking=True))
                stats, reconstruction = self._train_step(video)
                self.step += 1
                count += 1
                for key, value in stats.items():
                    sums[key] = sums.get(key, 0.0) + value
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.4f}", psnr=f"{stats['psnr']:.2f}", refresh=False)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    now = time.perf_counter()
                    self._log_train(sums, count, (self.step - last_step) / max(now - last_time, 1e-9))
                    sums, count, last_time, last_step = {}, 0, now, self.step
                if cfg.image_every and self.step % cfg.image_every == 0 and self.writer is not None:
                    log_video_comparison(self.writer, "train", "reconstruction", video, reconstruction, self.step)
                if self.step % cfg.eval_every == 0:
                    self._log_eval(self.evaluate())
                if self.step % cfg.checkpoint_every == 0:
                    self.save()
            if self.saved_step != self.step:
                self.save()
            final = self.evaluate()
            self._log_eval(final)
            differences = self.rank_differences()
        finally:
            bar.close()
            if self.writer is not None:
                self.writer.flush()
        return {
            "step": self.step,
            "eval_split": self.eval_split,
            **{f"val_{key}": value for key, value in final.items()},
            "world_size": self.context.world_size,
            "rank_differences": differences,
            "ranks_in_sync": not any(self._is_parameter(name) for name in differences),
            "history": self.history,
            "data_variance": self.data_variance,
            "checkpoint": str(self.out / CHECKPOINT_FILE),
            "tokenizer": str(self.out / TOKENIZER_DIR),
        }

    def _set_learning_rate(self) -> float:
        cfg = self.train_config
        scale = min(1.0, (self.step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * scale
        if self.discriminator_optimizer is not None:
            for group in self.discriminator_optimizer.param_groups:
                group["lr"] = (cfg.discriminator_lr or cfg.lr) * scale
        return cfg.lr * scale

    def _train_step(self, video: Tensor) -> tuple[dict[str, float], Tensor]:
        """One generator (and, once on, discriminator) update; returns its scalars and the reconstruction."""
        loss_cfg = self.loss_config
        gan = (
            self.discriminator is not None
            and loss_cfg.discriminator_weight > 0
            and self.step >= loss_cfg.discriminator_start
        )
        lr = self._set_learning_rate()
        with self._autocast():
            out = self.model_ddp(video)
        reconstruction = out.reconstruction
        terms: dict[str, Tensor] = {
            "reconstruction": reconstruction_loss(loss_cfg.reconstruction, reconstruction, video, self.data_variance)
        }
        nll = terms["reconstruction"]
        if self.perceptual is not None:
            with self._autocast():
                terms["perceptual"] = self.perceptual(fold_time(reconstruction), fold_time(video)).float()
            nll = nll + loss_cfg.perceptual_weight * terms["perceptual"]
        terms["quantizer"] = out.quantizer.loss.float()
        loss = nll + terms["quantizer"]
        extra: dict[str, Tensor] = {}
        if gan:
            from worldrl.models.tokenizers.discriminator import adaptive_weight, generator_loss

            with self._autocast():
                logits_fake = self.discriminator(fold_time(reconstruction))
            terms["generator"] = generator_loss(logits_fake.float())
            weight = adaptive_weight(
                nll, terms["generator"], self.model.last_decoder_weight, max_weight=loss_cfg.adaptive_weight_max
            )
            weight = all_reduce(torch.as_tensor(weight, dtype=torch.float32, device=self.device).detach().clone())
            extra["adaptive_weight"] = weight
            loss = loss + loss_cfg.discriminator_weight * weight * terms["generator"]
        terms["loss"] = loss
        self._check_finite(terms)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=list(self.model.parameters()))
        extra["grad_norm"] = self._clip(self.model, "tokenizer")
        self.optimizer.step()
        if gan:
            from worldrl.models.tokenizers.discriminator import hinge_d_loss

            real, fake = fold_time(video), fold_time(reconstruction.detach())
            with self._autocast():
                logits = self.discriminator_ddp(torch.cat([real, fake])).float()
            logits_real, logits_fake = logits.chunk(2)
            discriminator_loss = hinge_d_loss(logits_real, logits_fake)
            self._check_finite({"discriminator": discriminator_loss})
            self.discriminator_optimizer.zero_grad(set_to_none=True)
            discriminator_loss.backward()
            extra["discriminator_grad_norm"] = self._clip(self.discriminator, "discriminator")
            self.discriminator_optimizer.step()
            terms["discriminator"] = discriminator_loss
            extra["logits_real"], extra["logits_fake"] = logits_real.mean(), logits_fake.mean()
        stats = {**terms, **extra, "psnr": psnr(reconstruction.detach(), video)}
        for key, value in out.quantizer.stats.items():
            if torch.as_tensor(value).numel() == 1:
                stats[f"codebook/{key}"] = value
        as_scalar = [torch.as_tensor(v, device=self.device).detach().float().reshape(()) for v in stats.values()]
        values = torch.stack(as_scalar)
        return {**dict(zip(stats, values.tolist())), "lr": lr}, reconstruction.detach()

    # Evaluation -----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """PSNR, SSIM and codebook usage on up to ``eval_batches * batch_size`` clips of the validation split.

        The clips are fixed (evenly spread over the split) and shared out
        over the ranks, the sums all-reduced. Evaluation neither draws from
        the training RNGs nor changes the training usage counters.
        """
        cfg, context = self.train_config, self.context
        dataset = self.val_data
        mine, weights = eval_indices(len(dataset), cfg.eval_batches * cfg.batch_size, context.rank,
                                     context.world_size)
        per_rank = len(mine)
        quantizer = self.model.quantizer
        counts = getattr(quantizer, "code_counts", None)
        saved_counts = counts.clone() if counts is not None else None
        quantizer.reset_usage()
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        first: tuple[Tensor, Tensor] | None = None
        was_training = self.model.training
        self.model.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                for start in range(0, per_rank, self.local_batch):
                    chunk = mine[start : start + self.local_batch]
                    video = torch.stack([dataset[int(i)]["video"] for i in chunk]).to(self.device)
                    video = video_to_float(video)
                    with self._autocast():
                        reconstruction = self.model(video).reconstruction.float()
                    frames = video.shape[2]
                    weight = weights[start : start + len(chunk)].repeat_interleave(frames).to(self.device).double()
                    sums[0] += (psnr_per_frame(reconstruction, video).double() * weight).sum()
                    if min(video.shape[-2:]) >= SSIM_MIN_SIZE:
                        sums[1] += (ssim_per_frame(reconstruction, video).double() * weight).sum()
                    sums[2] += weight.sum()
                    if first is None:
                        first = (video, reconstruction)
            usage = float("nan")
            if counts is not None:
                used = all_reduce(quantizer.code_counts.clone(), "sum")
                usage = float((used > 0).float().mean())
        finally:
            self.model.train(was_training)
            if saved_counts is not None:
                quantizer.code_counts.copy_(saved_counts)
        all_reduce(sums, "sum")
        frames_seen = float(sums[2])
        small = min(self.model.frame_shape[:2]) < SSIM_MIN_SIZE
        if self.writer is not None and first is not None:
            log_video_comparison(self.writer, "val", "reconstruction", *first, self.step)
        return {
            "psnr": float(sums[0]) / frames_seen,
            "ssim": float("nan") if small else float(sums[1]) / frames_seen,
            "usage": usage,
            "frames": frames_seen,
        }

    def rank_differences(self) -> list[str]:
        """Names of the model and discriminator tensors that are not bit-identical on all ranks (``[]`` on one).

        Parameters must never differ under DDP. Some buffers may, by design:
        VQ's ring of recent encoder outputs (``quantizer.recent``) holds each
        rank's own samples, and rank 0's copy is the one checkpointed.
        """
        return differing_tensors({"": self.model, "discriminator.": self.discriminator})

    def _is_parameter(self, name: str) -> bool:
        if name.startswith("discriminator."):
            return name[len("discriminator."):] in dict(self.discriminator.named_parameters())
        return name in dict(self.model.named_parameters())

    # Logging and checkpoints ----------------------------------------------------------------------------------------
    def _log_train(self, sums: Mapping[str, float], count: int, steps_per_second: float) -> None:
        means = self._mean_over_ranks(sums, count)
        usage = self.model.quantizer.usage()
        self.model.quantizer.reset_usage()
        if self.writer is None:
            return
        for key, value in means.items():
            self.writer.add_scalar(f"train/{key}", value, self.step)
        self.writer.add_scalar("train/codebook/usage", usage, self.step)
        self.writer.add_scalar("train/steps_per_second", steps_per_second, self.step)
        self.history.append({"step": self.step, **means, "codebook/usage": usage})

    def _log_eval(self, metrics: Mapping[str, float]) -> None:
        if self.writer is None:
            return
        for key in ("psnr", "ssim", "usage"):
            if not math.isnan(metrics[key]):
                self.writer.add_scalar(f"val/{key}", metrics[key], self.step)

    def checkpoint_state(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        """What ``checkpoint.pt`` holds: only tensors, dicts, lists, numbers and strings (``weights_only`` loads it)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "discriminator": self.discriminator.state_dict() if self.discriminator is not None else None,
            "discriminator_optimizer": self.discriminator_optimizer.state_dict()
            if self.discriminator_optimizer is not None
            else None,
            "data_variance": self.data_variance,
            "data": self.data,
        }

    def export(self) -> None:
        self.model.save(self.out / TOKENIZER_DIR)


def train_tokenizer(
    config: Mapping[str, Any],
    data: Sequence[str | Path] | str | Path,
    out: str | Path,
    device: str | torch.device = "auto",
    progress: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Train (or resume) a tokenizer as ``config`` describes on the dataset folders ``data``, in run folder ``out``.

    Returns the final metrics: ``step``, ``val_psnr``, ``val_ssim``,
    ``val_usage`` (codebook usage on the evaluation clips), ``eval_split``
    (``"train"`` when the data has no validation episodes), the logged
    training scalars (``history``) and the paths written. Under ``torchrun``
    every rank calls this; it joins (and afterwards leaves) the process group.
    """
    context = init_distributed(device)
    trainer = None
    try:
        trainer = TokenizerTrainer(config, data, out, device, progress=progress, force=force, context=context)
        return trainer.train()
    finally:
        if trainer is not None:
            trainer.close()
        context.close()
