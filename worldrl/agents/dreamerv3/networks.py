"""DreamerV3's building blocks: symlog, LayerNorm+SiLU MLPs and CNNs, two-hot and unimix categorical outputs.

Every hidden layer is ``Linear/Conv (no bias) -> LayerNorm -> SiLU``;
weights start from a truncated normal with fan-average variance, as in the
paper's code. Distributions are small classes rather than
``torch.distributions`` so they can sample with an explicit
``torch.Generator`` (reproducible acting) and keep the straight-through
gradient of the categorical latents.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def symlog(x: Tensor) -> Tensor:
    """``sign(x) ln(|x| + 1)``: compresses large magnitudes, identity-like near 0."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    """Inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(x.abs())


def init_weights(module: nn.Module) -> None:
    """Truncated normal with variance ``1 / fan_avg`` for linear and conv weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(module.weight)
        std = math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978  # std of a [-2, 2] truncated unit normal
        nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def dense(in_features: int, out_features: int) -> nn.Sequential:
    """``Linear -> LayerNorm -> SiLU`` (the linear layer has no bias: the norm's offset replaces it)."""
    return nn.Sequential(nn.Linear(in_features, out_features, bias=False), nn.LayerNorm(out_features, eps=1e-3),
                         nn.SiLU())


class MLP(nn.Module):
    """``layers`` dense blocks of ``units``, then an optional linear output (zero-initialised if ``zero_out``)."""

    def __init__(self, in_features: int, out_features: int | None, units: int, layers: int, zero_out: bool = False):
        super().__init__()
        sizes = [in_features] + [units] * layers
        self.hidden = nn.Sequential(*(dense(a, b) for a, b in zip(sizes, sizes[1:])))
        self.out = nn.Linear(sizes[-1], out_features) if out_features is not None else None
        self.apply(init_weights)
        if zero_out and self.out is not None:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.hidden(x)
        return self.out(x) if self.out is not None else x


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of ``[N, C, H, W]`` maps."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def conv_stages(size: int, min_resolution: int) -> int:
    """Stride-2 stages from ``size`` down to ``min_resolution`` (both powers of two times the same odd number)."""
    stages = int(round(math.log2(size / min_resolution)))
    if stages < 1 or min_resolution * 2**stages != size:
        raise ValueError(f"image size {size} must be min_resolution {min_resolution} times a power of two")
    return stages


class ConvEncoder(nn.Module):
    """Image ``[N, H, W, C]`` uint8 -> features: stride-2 4x4 convs, channels ``depth * 2^i``, down to 4x4."""

    def __init__(self, image_shape: tuple[int, int, int], depth: int, min_resolution: int = 4):
        super().__init__()
        height, width, channels = image_shape
        stages = conv_stages(height, min_resolution)
        if width % 2**stages:
            raise ValueError(f"image width {width} must be divisible by {2**stages}")
        layers: list[nn.Module] = []
        for i in range(stages):
            out = depth * 2**i
            layers += [nn.Conv2d(channels, out, 4, 2, 1, bias=False), ChannelNorm(out, eps=1e-3), nn.SiLU()]
            channels = out
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.out_features = channels * (height // 2**stages) * (width // 2**stages)
        self.apply(init_weights)

    def forward(self, image: Tensor) -> Tensor:
        x = image.permute(0, 3, 1, 2).float() / 255.0 - 0.5
        return self.net(x)


class ConvDecoder(nn.Module):
    """Features -> image ``[N, H, W, C]`` in ``[-0.5, 0.5]`` (mean of a unit Gaussian, as the encoder's inputs)."""

    def __init__(self, in_features: int, image_shape: tuple[int, int, int], depth: int, min_resolution: int = 4):
        super().__init__()
        height, width, channels = image_shape
        stages = conv_stages(height, min_resolution)
        self.start = (depth * 2 ** (stages - 1), height // 2**stages, width // 2**stages)
        self.linear = nn.Linear(in_features, math.prod(self.start))
        layers: list[nn.Module] = []
        for i in reversed(range(stages)):
            size_in = depth * 2**i
            if i:
                size_out = depth * 2 ** (i - 1)
                layers += [nn.ConvTranspose2d(size_in, size_out, 4, 2, 1, bias=False), ChannelNorm(size_out, eps=1e-3),
                           nn.SiLU()]
            else:
                layers.append(nn.ConvTranspose2d(size_in, channels, 4, 2, 1))
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, features: Tensor) -> Tensor:
        x = self.linear(features).reshape(-1, *self.start)
        return self.net(x).permute(0, 2, 3, 1)


class TwoHot:
    """Categorical over ``bins`` (symlog space) read as a scalar: symexp of the expected bin (DreamerV3's critic).

    ``log_prob(x)`` is the cross-entropy against the two-hot encoding of
    ``symlog(x)``: weight on the two nearest bins in proportion to closeness,
    so the encoding's expected bin is exactly ``symlog(x)`` inside the range.
    """

    def __init__(self, logits: Tensor, bins: Tensor):
        self.logits = logits.float()
        self.bins = bins

    @property
    def mean(self) -> Tensor:
        return symexp((self.logits.softmax(-1) * self.bins).sum(-1))

    def log_prob(self, x: Tensor) -> Tensor:
        return (two_hot(symlog(x.float()), self.bins) * self.logits.log_softmax(-1)).sum(-1)


def two_hot(x: Tensor, bins: Tensor) -> Tensor:
    """``[...]`` -> ``[..., K]``: weights on the two bins around ``x`` (clamped to the range) summing to 1."""
    x = x.clamp(bins[0], bins[-1])
    above = torch.searchsorted(bins, x.detach().contiguous(), right=True).clamp(1, len(bins) - 1)
    below = above - 1
    weight_above = ((x - bins[below]) / (bins[above] - bins[below])).clamp(0, 1)
    return (F.one_hot(below, len(bins)) * (1 - weight_above)[..., None]
            + F.one_hot(above, len(bins)) * weight_above[..., None])


def symlog_bins(count: int = 255, low: float = -20.0, high: float = 20.0) -> Tensor:
    """Bin centres in symlog space: ``count`` evenly spaced in ``[low, high]``."""
    return torch.linspace(low, high, count)


def unimix_probs(logits: Tensor, unimix: float) -> Tensor:
    """Softmax mixed with ``unimix`` of the uniform distribution (no class below ``unimix / K``)."""
    probs = logits.float().softmax(-1)
    return probs if unimix <= 0 else (1 - unimix) * probs + unimix / logits.shape[-1]


class OneHotCategorical:
    """One-hot categorical with unimix; :meth:`sample` is straight-through (gradients flow through the probs)."""

    def __init__(self, logits: Tensor, unimix: float = 0.01):
        self.probs = unimix_probs(logits, unimix)
        self.log_probs = self.probs.clamp_min(1e-12).log()

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        flat = self.probs.detach().reshape(-1, self.probs.shape[-1])
        index = torch.multinomial(flat, 1, generator=generator).reshape(self.probs.shape[:-1])
        sample = F.one_hot(index, self.probs.shape[-1]).to(self.probs.dtype)
        return sample + (self.probs - self.probs.detach())

    def mode(self) -> Tensor:
        return F.one_hot(self.probs.argmax(-1), self.probs.shape[-1]).to(self.probs.dtype)

    def log_prob(self, sample: Tensor) -> Tensor:
        return (sample.detach() * self.log_probs).sum(-1)

    def entropy(self) -> Tensor:
        return -(self.probs * self.log_probs).sum(-1)


class Normal:
    """Diagonal Gaussian over action vectors (log-probs and entropies summed over the action dimensions)."""

    def __init__(self, mean: Tensor, std: Tensor):
        self.mean, self.std = mean.float(), std.float()

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device)
        return self.mean + self.std * noise

    def mode(self) -> Tensor:
        return self.mean

    def log_prob(self, x: Tensor) -> Tensor:
        return (-0.5 * ((x - self.mean) / self.std) ** 2 - self.std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> Tensor:
        return (0.5 + 0.5 * math.log(2 * math.pi) + self.std.log()).sum(-1)
