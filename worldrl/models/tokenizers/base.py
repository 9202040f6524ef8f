"""The tokenizer interface: uint8 video <-> integer codes, plus the differentiable path for training.

A tokenizer maps a clip of ``T`` frames ``uint8 [B, T, H, W, C]`` to codes
``int64 [B, T', h, w]`` and back. ``frames_per_code`` frames share one code
step: 1 for the per-frame VQ-GAN; the temporal downsampling factor for
video tokenizers. Which ``T`` are valid, and the ``T'`` they give, is
:meth:`Tokenizer.num_code_frames`.

Subclasses implement the float path on channels-first video in ``[-1, 1]``:

- :meth:`encode_features`: ``[B, C, T, H, W] -> [B, D, T', h, w]`` (pre-quantization);
- :meth:`decode_features`: ``[B, D, T', h, w] -> [B, C, T, H, W]``;
- :attr:`last_decoder_weight`: the final layer's weight (the GAN's adaptive weight needs it).

:meth:`forward` (training) and :meth:`encode` / :meth:`decode` (uint8, no
gradients) are built on them here. :meth:`save` writes ``tokenizer.json``
(kind and config) and ``model.safetensors`` (weights, no pickle);
:func:`load_tokenizer` reads any kind back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from worldrl.config import build_dataclass
from worldrl.models.checkpoint import CheckpointError, load_weights, read_model_config, save_model
from worldrl.models.quantizers import Quantizer, QuantizerOutput

CONFIG_FILE = "tokenizer.json"

TOKENIZERS: dict[str, type[Tokenizer]] = {}


@dataclass
class TokenizerOutput:
    reconstruction: Tensor
    """``[B, C, T, H, W]`` float in (about) ``[-1, 1]``."""
    quantizer: QuantizerOutput
    """Quantized features, indices ``[B, T', h, w]``, auxiliary loss and usage stats."""


def frames_to_float(frames: Tensor) -> Tensor:
    """uint8 ``[B, T, H, W, C]`` -> float ``[B, C, T, H, W]`` in ``[-1, 1]``."""
    return frames.permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


def float_to_frames(video: Tensor) -> Tensor:
    """float ``[B, C, T, H, W]`` in ``[-1, 1]`` -> uint8 ``[B, T, H, W, C]`` (clamped, rounded)."""
    return video.float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 4, 1)


class Tokenizer(nn.Module):
    """Base class of the frame and video tokenizers (see the module docstring)."""

    kind: ClassVar[str]
    """Registry name, stored in ``tokenizer.json``."""
    config_class: ClassVar[type]
    quantizer: Quantizer

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            TOKENIZERS[cls.kind] = cls

    def __init__(self, config: Any):
        super().__init__()
        self.config = config

    # Shapes -------------------------------------------------------------------------------------------------------
    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of the frames it takes."""
        raise NotImplementedError

    @property
    def latent_shape(self) -> tuple[int, int]:
        """``(h, w)`` of one code step."""
        raise NotImplementedError

    @property
    def frames_per_code(self) -> int:
        """Frames covered by one code step (temporal downsampling factor)."""
        return 1

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    def num_code_frames(self, num_frames: int) -> int:
        """``T'`` for a clip of ``num_frames`` frames; ValueError for a length the model cannot take."""
        if num_frames < 1 or num_frames % self.frames_per_code:
            raise ValueError(
                f"{type(self).__name__} takes clips of a multiple of {self.frames_per_code} frames, got {num_frames}"
            )
        return num_frames // self.frames_per_code

    def num_frames(self, num_code_frames: int) -> int:
        """Frames that ``num_code_frames`` code steps decode to (inverse of :meth:`num_code_frames`)."""
        return num_code_frames * self.frames_per_code

    # Float path (subclasses) --------------------------------------------------------------------------------------
    def encode_features(self, video: Tensor) -> Tensor:
        raise NotImplementedError

    def decode_features(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def last_decoder_weight(self) -> Tensor:
        raise NotImplementedError

    def forward(self, video: Tensor) -> TokenizerOutput:
        """Reconstruct float video ``[B, C, T, H, W]`` in ``[-1, 1]`` through the quantizer (training path)."""
        self.check_video(video)
        quantized = self.quantizer(self.encode_features(video))
        return TokenizerOutput(self.decode_features(quantized.quantized), quantized)

    # uint8 path ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, frames: Tensor) -> Tensor:
        """uint8 frames ``[B, T, H, W, C]`` -> int64 codes ``[B, T', h, w]``."""
        frames = self._as_frames(frames)
        video = frames_to_float(frames.to(self.device))
        return self.quantizer(self.encode_features(video)).indices

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """int codes ``[B, T', h, w]`` -> uint8 frames ``[B, T, H, W, C]``."""
        codes = torch.as_tensor(codes, device=self.device)
        if codes.dim() != 4 or tuple(codes.shape[2:]) != self.latent_shape:
            h, w = self.latent_shape
            raise ValueError(f"codes must be [B, T', {h}, {w}], got {tuple(codes.shape)}")
        self.quantizer.check_indices(codes)
        features = self.quantizer.indices_to_codes(codes.long())
        return float_to_frames(self.decode_features(features))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _as_frames(self, frames: Tensor) -> Tensor:
        frames = torch.as_tensor(frames)
        if frames.dtype != torch.uint8:
            raise TypeError(f"frames must be uint8 [B, T, H, W, C], got dtype {frames.dtype}")
        if frames.dim() != 5 or tuple(frames.shape[2:]) != self.frame_shape:
            raise ValueError(
                f"frames must be uint8 [B, T, {', '.join(map(str, self.frame_shape))}] for this tokenizer, "
                f"got {tuple(frames.shape)}"
            )
        self.num_code_frames(frames.shape[1])
        return frames

    def check_video(self, video: Tensor) -> None:
        """Validate float video ``[B, C, T, H, W]`` against :attr:`frame_shape`."""
        h, w, c = self.frame_shape
        if video.dim() != 5 or tuple(video.shape[1:2]) + tuple(video.shape[3:]) != (c, h, w):
            raise ValueError(f"video must be float [B, {c}, T, {h}, {w}], got {tuple(video.shape)}")
        if not video.dtype.is_floating_point:
            raise TypeError(f"video must be a float tensor in [-1, 1], got {video.dtype}")
        self.num_code_frames(video.shape[2])

    # Checkpoints --------------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` and ``model.safetensors`` into ``directory`` (atomically, each)."""
        return save_model(self, directory, CONFIG_FILE)

    @classmethod
    def from_config(cls, config: Any) -> Tokenizer:
        if isinstance(config, dict):
            config = build_dataclass(cls.config_class, config, "model")
        return cls(config)


def load_tokenizer(
    directory: str | Path,
    device: str | torch.device = "cpu",
    frame_shape: tuple[int, int, int] | None = None,
) -> Tokenizer:
    """Load a tokenizer saved by :meth:`Tokenizer.save` (any kind), in eval mode on ``device``.

    ``frame_shape`` (``(H, W, C)``) states the frames the caller will feed;
    a checkpoint made for other frames is a :class:`CheckpointError` naming
    both. Weights are read with safetensors: nothing is unpickled.
    """
    from worldrl.device import resolve_device

    _import_kinds()
    kind, config = read_model_config(directory, CONFIG_FILE, "tokenizer", TOKENIZERS)
    model = TOKENIZERS[kind].from_config(config)
    if frame_shape is not None and tuple(frame_shape) != model.frame_shape:
        raise CheckpointError(
            f"{directory}: tokenizer expects frames of shape (H, W, C) = {model.frame_shape}, "
            f"but frames of shape {tuple(frame_shape)} were requested"
        )
    load_weights(model, directory, CONFIG_FILE)
    return model.to(resolve_device(device)).eval()


def _import_kinds() -> None:
    """Import the modules that define the tokenizer kinds, so that they register themselves."""
    import worldrl.models.tokenizers  # noqa: F401
