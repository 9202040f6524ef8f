"""VideoGPT's VQ-VAE (Yan et al., 2021): 3D convolutions over space-time with axial-attention residual blocks.

The encoder downsamples a clip ``[B, C, T, H, W]`` by ``downsample = (t, h, w)``
with strided 3D convolutions (kernel 4, stride 2; one layer per factor of 2,
all axes strided together until each reaches its factor), then runs
attention residual blocks at the latent resolution: LayerNorm, ReLU, 3x3x3
conv, LayerNorm, ReLU, 1x1x1 conv, LayerNorm, ReLU, axial attention, added
back to the input. Axial attention is three multi-head self-attentions, one
along each of T, H and W, summed. The decoder mirrors the encoder with 3D
transposed convolutions. Learned position embeddings, one table per axis
(summed into a space-time embedding), are shared by every attention block of
the encoder and the decoder, as in the paper.

Defaults are the paper's BAIR model (Table A.1: 240 hidden and 128 residual
channels, 4 attention residual blocks, a 1024 x 256 EMA codebook with
restarts) except the downsampling: (2, 4, 4) instead of BAIR's (2, 2, 2).
VideoGPT trains with the *normalised MSE*, the reconstruction MSE divided by
the variance of the training data (:func:`normalized_mse`), which the paper
found to reduce codebook collapse. It is scale-free, so the paper's
``[-0.5, 0.5]`` pixels and the tokenizers' ``[-1, 1]`` give the same loss.

The model sees the whole clip: codes of early frames depend on later frames
(the causal tokenizer in :mod:`~worldrl.models.tokenizers.causal` does not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldrl.config import build_dataclass
from worldrl.models.quantizers import QuantizerConfig, build_quantizer
from worldrl.models.tokenizers.base import Tokenizer


@dataclass
class VideoVQVAEConfig:
    frame_size: int = 64
    """Height and width of the (square) frames."""
    in_channels: int = 3
    hidden_channels: int = 240
    """Channels of the strided convolutions and the attention residual blocks."""
    res_channels: int = 128
    """Bottleneck channels inside a residual block."""
    num_res_layers: int = 4
    """Residual blocks in the encoder and (as many) in the decoder."""
    downsample: tuple[int, int, int] = (2, 4, 4)
    """(time, height, width) downsampling factors, each a power of two."""
    attention: bool = True
    """Axial attention in the residual blocks (VideoGPT's Moving MNIST model has none)."""
    num_heads: int = 2
    """Heads of each axial attention (per axis)."""
    max_frames: int = 16
    """Longest clip, in frames, that the learned time positions cover."""
    quantizer: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(type="vq", codebook_size=1024, dim=256))

    def __post_init__(self) -> None:
        if isinstance(self.quantizer, dict):
            self.quantizer = build_dataclass(QuantizerConfig, self.quantizer, "quantizer")
        self.downsample = tuple(int(f) for f in self.downsample)
        if len(self.downsample) != 3 or any(f < 1 or f & (f - 1) for f in self.downsample):
            raise ValueError(f"downsample must be three powers of two (time, height, width), got {self.downsample}")
        if self.frame_size % self.downsample[1] or self.frame_size % self.downsample[2]:
            raise ValueError(f"frame_size {self.frame_size} is not divisible by the downsampling {self.downsample}")
        if self.max_frames < self.downsample[0] or self.max_frames % self.downsample[0]:
            raise ValueError(f"max_frames {self.max_frames} must be a multiple of the time factor {self.downsample[0]}")
        if self.attention and self.hidden_channels % self.num_heads:
            raise ValueError(f"hidden_channels {self.hidden_channels} is not divisible by num_heads {self.num_heads}")


def normalized_mse(reconstruction: Tensor, target: Tensor, data_variance: float | Tensor) -> Tensor:
    """VideoGPT's reconstruction loss: ``mean((reconstruction - target)^2) / data_variance``.

    ``data_variance`` is the pixel variance of the training set in the same
    scale as ``target`` (see :func:`data_variance`). Dividing by it makes the
    loss scale-free (1.0 = predicting the data mean), so the commitment
    weight 0.25 means the same for every dataset.
    """
    return F.mse_loss(reconstruction.float(), target.float()) / data_variance


def data_variance(frames: Tensor) -> float:
    """Pixel variance of uint8 frames after the tokenizers' ``[-1, 1]`` scaling (for :func:`normalized_mse`)."""
    return float(frames.double().div(127.5).sub(1.0).var())


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of ``[B, C, *S]``, separately at every position."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class AxialAttention(nn.Module):
    """Multi-head self-attention along each of the given axes of ``[B, T, H, W, C]``, summed.

    Each axis has its own query/key/value and output projections (stored
    side by side in one linear layer each). Attention along the H axis, for
    instance, mixes positions that share ``(t, w)`` and nothing else.
    """

    def __init__(self, channels: int, num_heads: int, axes: tuple[int, ...] = (1, 2, 3)):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} is not divisible by num_heads {num_heads}")
        if not axes or any(axis not in (1, 2, 3) for axis in axes):
            raise ValueError(f"axes must be a subset of (1, 2, 3) = (T, H, W), got {axes}")
        self.channels, self.num_heads, self.axes = channels, num_heads, tuple(axes)
        self.qkv = nn.Linear(channels, 3 * channels * len(self.axes))
        self.proj = nn.Linear(channels * len(self.axes), channels)

    def forward(self, x: Tensor) -> Tensor:
        qkv = self.qkv(x).chunk(len(self.axes), dim=-1)
        return self.proj(torch.cat([self._attend(part, axis) for part, axis in zip(qkv, self.axes)], dim=-1))

    def _attend(self, qkv: Tensor, axis: int) -> Tensor:
        """Attention along ``axis`` of ``[B, T, H, W, 3C]``; every other axis is folded into the batch."""
        qkv = qkv.movedim(axis, -2)
        outer, length = qkv.shape[:-2], qkv.shape[-2]
        head_dim = self.channels // self.num_heads
        q, k, v = qkv.reshape(-1, length, 3, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return y.transpose(1, 2).reshape(*outer, length, self.channels).movedim(-2, axis)


class AxialPositions(nn.Module):
    """Learned space-time positions: a table per axis, summed into ``[T, H, W, C]``."""

    def __init__(self, channels: int, shape: tuple[int, int, int]):
        super().__init__()
        self.time, self.height, self.width = (nn.Parameter(torch.randn(n, channels) * 0.02) for n in shape)

    def forward(self, num_steps: int) -> Tensor:
        if num_steps > self.time.shape[0]:
            raise ValueError(f"clip has {num_steps} code steps, the position table covers {self.time.shape[0]}")
        return self.time[:num_steps, None, None] + self.height[None, :, None] + self.width[None, None, :]


class AttentionResidualBlock(nn.Module):
    """``x + f(x)`` with f = norm, ReLU, 3x3x3 conv, norm, ReLU, 1x1x1 conv, norm, ReLU, axial attention."""

    def __init__(self, channels: int, res_channels: int, num_heads: int, attention: bool):
        super().__init__()
        self.conv = nn.Sequential(
            ChannelLayerNorm(channels),
            nn.ReLU(),
            nn.Conv3d(channels, res_channels, 3, padding=1),
            ChannelLayerNorm(res_channels),
            nn.ReLU(),
            nn.Conv3d(res_channels, channels, 1),
        )
        self.attention = AxialAttention(channels, num_heads) if attention else None
        self.norm = nn.LayerNorm(channels) if attention else None

    def forward(self, x: Tensor, positions: Tensor | None) -> Tensor:
        h = self.conv(x)
        if self.attention is not None:
            h = F.relu(self.norm(h.movedim(1, -1))) + positions
            h = self.attention(h).movedim(-1, 1)
        return x + h


def _strides(downsample: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Per-layer strides: axis ``a`` has stride 2 in the first ``log2(downsample[a])`` layers (one layer at least)."""
    steps = [int(math.log2(f)) for f in downsample]
    return [tuple(2 if i < n else 1 for n in steps) for i in range(max(1, *steps))]


def _kernel(stride: tuple[int, int, int]) -> tuple[int, int, int]:
    """Kernel 4 on strided axes, 3 on the others; with padding 1 both halve / keep the size exactly."""
    return tuple(4 if s == 2 else 3 for s in stride)


class VideoVQVAE(Tokenizer):
    """VideoGPT's VQ-VAE: ``[B, C, T, H, W]`` -> codes ``[B, T/t, H/h, W/w]`` (see the module docstring)."""

    kind = "videogpt"
    config_class = VideoVQVAEConfig

    def __init__(self, config: VideoVQVAEConfig):
        super().__init__(config)
        c, hidden = config, config.hidden_channels
        strides = _strides(c.downsample)
        down, channels = [], c.in_channels
        for stride in strides:
            down += [nn.Conv3d(channels, hidden, _kernel(stride), stride, padding=1), nn.ReLU()]
            channels = hidden
        self.encoder_down = nn.Sequential(*down, nn.Conv3d(hidden, hidden, 3, padding=1))
        self.encoder_blocks = self._residual_stack()
        self.encoder_out = nn.Sequential(ChannelLayerNorm(hidden), nn.ReLU())
        self.pre_quant = nn.Conv3d(hidden, c.quantizer.channels, 1)
        self.quantizer = build_quantizer(c.quantizer)
        self.post_quant = nn.Conv3d(c.quantizer.channels, hidden, 1)
        self.decoder_blocks = self._residual_stack()
        self.decoder_out = nn.Sequential(ChannelLayerNorm(hidden), nn.ReLU())
        up = []
        for i, stride in enumerate(reversed(strides)):
            out_channels = c.in_channels if i == len(strides) - 1 else hidden
            up += [nn.ReLU()] if i else []
            up += [nn.ConvTranspose3d(hidden, out_channels, _kernel(stride), stride, padding=1)]
        self.decoder_up = nn.Sequential(*up)
        latent = (c.max_frames // c.downsample[0], *self.latent_shape)
        self.positions = AxialPositions(hidden, latent) if c.attention else None

    def _residual_stack(self) -> nn.ModuleList:
        c = self.config
        return nn.ModuleList(
            AttentionResidualBlock(c.hidden_channels, c.res_channels, c.num_heads, c.attention)
            for _ in range(c.num_res_layers)
        )

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.config.frame_size, self.config.frame_size, self.config.in_channels)

    @property
    def latent_shape(self) -> tuple[int, int]:
        _, h, w = self.config.downsample
        return (self.config.frame_size // h, self.config.frame_size // w)

    @property
    def frames_per_code(self) -> int:
        return self.config.downsample[0]

    def num_code_frames(self, num_frames: int) -> int:
        steps = super().num_code_frames(num_frames)
        if num_frames > self.config.max_frames:
            raise ValueError(f"VideoVQVAE takes at most max_frames={self.config.max_frames} frames, got {num_frames}")
        return steps

    def _run_blocks(self, blocks: nn.ModuleList, x: Tensor) -> Tensor:
        positions = self.positions(x.shape[2]) if self.positions is not None else None
        for block in blocks:
            x = block(x, positions)
        return x

    def encode_features(self, video: Tensor) -> Tensor:
        h = self.encoder_down(video)
        return self.pre_quant(self.encoder_out(self._run_blocks(self.encoder_blocks, h)))

    def decode_features(self, features: Tensor) -> Tensor:
        h = self._run_blocks(self.decoder_blocks, self.post_quant(features))
        return self.decoder_up(self.decoder_out(h))

    @property
    def last_decoder_weight(self) -> Tensor:
        return self.decoder_up[-1].weight


__all__ = [
    "AttentionResidualBlock",
    "AxialAttention",
    "AxialPositions",
    "VideoVQVAE",
    "VideoVQVAEConfig",
    "data_variance",
    "normalized_mse",
]
