"""The per-frame VQ-GAN tokenizer (Esser et al., 2021) that VIPER uses (Table E.1).

A CNN encoder maps each 64x64 frame to an ``h x w`` grid of features, the
quantizer turns them into codes, and a mirrored decoder maps codes back to
pixels. Levels of ``num_res_blocks`` residual blocks (GroupNorm, SiLU, 3x3
conv) are separated by stride-2 downsamplers, so ``channel_mult`` of length
``n`` downsamples by ``2^(n-1)``: ``[1, 1, 2, 2]`` gives 8x8 codes (DMC),
``[1, 2, 2]`` 16x16 (Atari, RLBench). An optional single-head self-attention
block sits at the lowest resolution. Frames are tokenized independently:
time is folded into the batch.
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
class VQGANConfig:
    frame_size: int = 64
    """Height and width of the (square) frames."""
    in_channels: int = 3
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2)
    """Channels per level as multiples of ``base_channels``; each level but the last halves the resolution."""
    num_res_blocks: int = 1
    attention: bool = True
    """Self-attention in the middle block, at the lowest resolution."""
    z_channels: int = 64
    """Channels of the encoder's output (before the 1x1 projection to the quantizer)."""
    dropout: float = 0.0
    norm_groups: int = 32
    """GroupNorm groups, lowered to a divisor of each layer's channels."""
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def __post_init__(self) -> None:
        if isinstance(self.quantizer, dict):
            self.quantizer = build_dataclass(QuantizerConfig, self.quantizer, "quantizer")
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"channel_mult must be positive integers, got {self.channel_mult}")
        if self.base_channels < 1 or self.num_res_blocks < 1 or self.z_channels < 1:
            raise ValueError("base_channels, num_res_blocks and z_channels must be >= 1")
        factor = self.downsample
        if self.frame_size < factor or self.frame_size % factor:
            raise ValueError(
                f"frame_size {self.frame_size} is not divisible by the downsampling factor {factor} "
                f"(2^(len(channel_mult) - 1) with channel_mult {self.channel_mult})"
            )

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(channels, groups), channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int, dropout: float):
        super().__init__()
        self.block = nn.Sequential(
            group_norm(in_channels, groups), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1),
            group_norm(out_channels, groups), nn.SiLU(), nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.block(x)


class SelfAttention(nn.Module):
    """Single-head attention over the positions of a feature map (SDPA), residual."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(y.transpose(1, 2).reshape(b, c, h, w))


def middle(channels: int, config: VQGANConfig) -> nn.Sequential:
    blocks: list[nn.Module] = [ResBlock(channels, channels, config.norm_groups, config.dropout)]
    if config.attention:
        blocks.append(SelfAttention(channels, config.norm_groups))
    blocks.append(ResBlock(channels, channels, config.norm_groups, config.dropout))
    return nn.Sequential(*blocks)


class Encoder(nn.Module):
    def __init__(self, config: VQGANConfig):
        super().__init__()
        widths = [config.base_channels * m for m in config.channel_mult]
        layers: list[nn.Module] = [nn.Conv2d(config.in_channels, widths[0], 3, padding=1)]
        channels = widths[0]
        for level, width in enumerate(widths):
            for _ in range(config.num_res_blocks):
                layers.append(ResBlock(channels, width, config.norm_groups, config.dropout))
                channels = width
            if level < len(widths) - 1:
                layers.append(nn.Conv2d(channels, channels, 4, stride=2, padding=1))
        layers += [
            middle(channels, config), group_norm(channels, config.norm_groups), nn.SiLU(),
            nn.Conv2d(channels, config.z_channels, 3, padding=1),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, config: VQGANConfig):
        super().__init__()
        widths = [config.base_channels * m for m in config.channel_mult][::-1]
        channels = widths[0]
        layers: list[nn.Module] = [nn.Conv2d(config.z_channels, channels, 3, padding=1), middle(channels, config)]
        for level, width in enumerate(widths):
            for _ in range(config.num_res_blocks):
                layers.append(ResBlock(channels, width, config.norm_groups, config.dropout))
                channels = width
            if level < len(widths) - 1:
                layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(channels, channels, 3, padding=1)]
        layers += [group_norm(channels, config.norm_groups), nn.SiLU()]
        self.net = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(channels, config.in_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        return self.conv_out(self.net(z))


class VQGAN(Tokenizer):
    """Per-frame VQ-GAN: ``[B, T, H, W, C]`` uint8 frames <-> ``[B, T, H/f, W/f]`` codes."""

    kind = "vqgan"
    config_class = VQGANConfig

    def __init__(self, config: VQGANConfig | None = None):
        config = config or VQGANConfig()
        super().__init__(config)
        self.encoder = Encoder(config)
        self.quantizer = build_quantizer(config.quantizer)
        self.quant_conv = nn.Conv2d(config.z_channels, self.quantizer.dim, 1)
        self.post_quant_conv = nn.Conv2d(self.quantizer.dim, config.z_channels, 1)
        self.decoder = Decoder(config)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.config.frame_size, self.config.frame_size, self.config.in_channels)

    @property
    def latent_shape(self) -> tuple[int, int]:
        side = self.config.frame_size // self.config.downsample
        return (side, side)

    @property
    def last_decoder_weight(self) -> Tensor:
        return self.decoder.conv_out.weight

    def encode_features(self, video: Tensor) -> Tensor:
        b, c, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, c, h, w)
        z = self.quant_conv(self.encoder(frames))
        return z.reshape(b, t, *z.shape[1:]).transpose(1, 2)

    def decode_features(self, features: Tensor) -> Tensor:
        b, d, t, h, w = features.shape
        z = features.transpose(1, 2).reshape(b * t, d, h, w)
        frames = self.decoder(self.post_quant_conv(z))
        return frames.reshape(b, t, *frames.shape[1:]).transpose(1, 2)
