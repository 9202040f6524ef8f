"""A temporally causal video tokenizer (MAGVIT-v2, Yu et al., 2024): codes of frame t never see frames after t.

Every temporal convolution pads ``k_t - 1`` frames before the clip (copies of
the first frame) and none after, so output step ``t`` depends only on inputs
``<= t``; GroupNorm normalises each frame on its own (statistics over
channels and space, never over time). Together these make the encoder and
the decoder causal: the first frame is tokenized as an image, and the codes
of a context never leak a later target frame, which is what VIPER-style
likelihood rewards need.

Layout (MAGVIT-v2, Fig. 5.4, without the GAN): causal conv in; per level
``num_res_blocks`` residual blocks, then a strided causal conv that halves
height and width; middle residual blocks; norm, SiLU, 1x1x1 conv to the
quantizer's channels. The decoder mirrors it, upsampling with a causal conv
followed by depth-to-space.

Temporal downsampling by ``s = temporal_downsample`` (a power of two) uses a
temporal stride of 2 in the *last* ``log2(s)`` downsamplers (MAGVIT-v2 defers
it to the end). The first frame is kept alone: a causal strided conv maps
``1 + k*s`` frames to ``1 + k`` steps, step 0 covers frame 0 and step
``j >= 1`` covers frames ``(j-1)*s + 1 .. j*s`` and depends on nothing later.
The decoder's temporal upsampler makes ``s`` frames per step by
depth-to-space and drops the first ``s - 1``, mapping ``1 + k`` steps back to
``1 + k*s`` frames; decoded frame ``t`` depends on steps ``<= ceil(t / s)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from worldrl.config import build_dataclass
from worldrl.models.quantizers import QuantizerConfig, build_quantizer
from worldrl.models.tokenizers.base import Tokenizer


@dataclass
class CausalTokenizerConfig:
    frame_size: int = 64
    """Height and width of the (square) frames; divisible by ``2 ** (len(channel_mult) - 1)``."""
    in_channels: int = 3
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    """Channels per level as multiples of ``base_channels``; each level but the last halves height and width."""
    num_res_blocks: int = 2
    """Residual blocks per level (and in the middle) of the encoder and the decoder."""
    temporal_downsample: int = 1
    """Frames per code step after the first (a power of two); ``> 1`` takes clips of ``1 + k * s`` frames."""
    temporal_kernel: int = 3
    """``k_t`` of the temporal convolutions."""
    norm_groups: int = 8
    """GroupNorm groups (must divide every level's channels)."""
    quantizer: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(type="lfq", codebook_size=2**10))

    def __post_init__(self) -> None:
        if isinstance(self.quantizer, dict):
            self.quantizer = build_dataclass(QuantizerConfig, self.quantizer, "quantizer")
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        s = self.temporal_downsample
        if s < 1 or s & (s - 1):
            raise ValueError(f"temporal_downsample must be a power of two, got {s}")
        if not self.channel_mult or int(math.log2(s)) > len(self.channel_mult) - 1:
            raise ValueError(
                f"temporal_downsample {s} needs log2({s}) spatial downsamplers, channel_mult {self.channel_mult} "
                f"has {len(self.channel_mult) - 1}"
            )
        if self.frame_size % 2 ** (len(self.channel_mult) - 1):
            raise ValueError(f"frame_size {self.frame_size} is not divisible by 2^{len(self.channel_mult) - 1}")
        if self.temporal_kernel < 1 or self.num_res_blocks < 1:
            raise ValueError(
                f"temporal_kernel and num_res_blocks must be >= 1, got {self.temporal_kernel}, {self.num_res_blocks}"
            )
        for mult in self.channel_mult:
            if (self.base_channels * mult) % self.norm_groups:
                raise ValueError(f"norm_groups {self.norm_groups} does not divide {self.base_channels * mult} channels")


class CausalConv3d(nn.Conv3d):
    """3D convolution, causal in time: ``k_t - 1`` copies of the first frame before the clip, none after.

    Height and width are zero-padded by ``(k - 1) // 2`` (kernel 3 or 4 with
    stride 2 halves even sizes exactly). With temporal stride ``s``, ``1 + k*s``
    frames give ``1 + k`` outputs and output ``j`` sees frames ``<= j*s``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int, int],
        stride: tuple[int, int, int] = (1, 1, 1),
    ):
        kt, kh, kw = kernel_size
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=(0, (kh - 1) // 2, (kw - 1) // 2))
        self.time_pad = kt - 1

    def forward(self, x: Tensor) -> Tensor:
        if self.time_pad:
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, 0), mode="replicate")
        return super().forward(x)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm of ``[B, C, T, H, W]`` with statistics per frame (time folded into the batch): no step sees another."""

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        y = super().forward(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, c, h, w).transpose(1, 2)


class CausalResBlock(nn.Module):
    """``skip(x) + conv(SiLU(norm(conv(SiLU(norm(x))))))`` with causal 3x3x3 (``k_t`` x 3 x 3) convolutions."""

    def __init__(self, in_channels: int, out_channels: int, temporal_kernel: int, groups: int):
        super().__init__()
        kernel = (temporal_kernel, 3, 3)
        self.body = nn.Sequential(
            FrameGroupNorm(groups, in_channels),
            nn.SiLU(),
            CausalConv3d(in_channels, out_channels, kernel),
            FrameGroupNorm(groups, out_channels),
            nn.SiLU(),
            CausalConv3d(out_channels, out_channels, kernel),
        )
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


class CausalUpsample(nn.Module):
    """Causal conv to ``C * st * 2 * 2`` channels, depth-to-space, then drop the first ``st - 1`` frames."""

    def __init__(self, channels: int, time_stride: int, temporal_kernel: int):
        super().__init__()
        self.time_stride = time_stride
        self.conv = CausalConv3d(channels, channels * time_stride * 4, (temporal_kernel, 3, 3))

    def forward(self, x: Tensor) -> Tensor:
        b, _, t, h, w = x.shape
        s = self.time_stride
        y = self.conv(x).reshape(b, -1, s, 2, 2, t, h, w)
        y = y.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, -1, t * s, 2 * h, 2 * w)
        return y[:, :, s - 1 :]


class CausalVideoTokenizer(Tokenizer):
    """Temporally causal 3D-CNN tokenizer: ``[B, C, T, H, W]`` -> codes ``[B, T', h, w]`` (module docstring)."""

    kind = "causal"
    config_class = CausalTokenizerConfig

    def __init__(self, config: CausalTokenizerConfig):
        super().__init__(config)
        c = config
        kt, groups = c.temporal_kernel, c.norm_groups
        channels = [c.base_channels * m for m in c.channel_mult]
        num_down = len(channels) - 1
        temporal = int(math.log2(c.temporal_downsample))
        time_strided = [i >= num_down - temporal for i in range(num_down)]

        def res_blocks(in_ch: int, out_ch: int) -> list[nn.Module]:
            return [CausalResBlock(in_ch if i == 0 else out_ch, out_ch, kt, groups) for i in range(c.num_res_blocks)]

        encoder: list[nn.Module] = [CausalConv3d(c.in_channels, channels[0], (kt, 3, 3))]
        for level, ch in enumerate(channels):
            encoder += res_blocks(channels[max(level - 1, 0)], ch)
            if level < num_down:
                stride = (2 if time_strided[level] else 1, 2, 2)
                encoder.append(CausalConv3d(ch, ch, (kt, 4, 4), stride))
        encoder += res_blocks(channels[-1], channels[-1])
        encoder += [FrameGroupNorm(groups, channels[-1]), nn.SiLU(), nn.Conv3d(channels[-1], c.quantizer.channels, 1)]
        self.encoder = nn.Sequential(*encoder)
        self.quantizer = build_quantizer(c.quantizer)

        decoder: list[nn.Module] = [CausalConv3d(c.quantizer.channels, channels[-1], (kt, 3, 3))]
        decoder += res_blocks(channels[-1], channels[-1])
        for level in reversed(range(len(channels))):
            decoder += res_blocks(channels[min(level + 1, num_down)], channels[level])
            if level > 0:
                decoder.append(CausalUpsample(channels[level], 2 if time_strided[level - 1] else 1, kt))
        decoder += [
            FrameGroupNorm(groups, channels[0]),
            nn.SiLU(),
            CausalConv3d(channels[0], c.in_channels, (kt, 3, 3)),
        ]
        self.decoder = nn.Sequential(*decoder)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.config.frame_size, self.config.frame_size, self.config.in_channels)

    @property
    def latent_shape(self) -> tuple[int, int]:
        size = self.config.frame_size // 2 ** (len(self.config.channel_mult) - 1)
        return (size, size)

    @property
    def frames_per_code(self) -> int:
        """Frames per code step after the first (step 0 always covers frame 0 alone)."""
        return self.config.temporal_downsample

    def num_code_frames(self, num_frames: int) -> int:
        """``1 + (T - 1) / s`` code steps; ValueError unless ``T = 1 + k * s``."""
        s = self.config.temporal_downsample
        if num_frames < 1 or (num_frames - 1) % s:
            raise ValueError(f"CausalVideoTokenizer takes clips of 1 + k * {s} frames, got {num_frames}")
        return 1 + (num_frames - 1) // s

    def num_frames(self, num_code_frames: int) -> int:
        return 1 + (num_code_frames - 1) * self.config.temporal_downsample

    def encode_features(self, video: Tensor) -> Tensor:
        return self.encoder(video)

    def decode_features(self, features: Tensor) -> Tensor:
        return self.decoder(features)

    @property
    def last_decoder_weight(self) -> Tensor:
        return self.decoder[-1].weight


__all__ = [
    "CausalConv3d",
    "CausalResBlock",
    "CausalTokenizerConfig",
    "CausalUpsample",
    "CausalVideoTokenizer",
    "FrameGroupNorm",
]
