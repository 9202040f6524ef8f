"""The quantizer interface: features in; quantized features, indices, auxiliary loss and usage out.

Every quantizer takes channels-first features ``z`` of shape ``[B, D, *S]``
(``S`` = ``(h, w)`` for frame tokenizers, ``(t, h, w)`` for video ones) and
returns a :class:`QuantizerOutput`. Quantization always runs in fp32, even
inside ``torch.autocast``: distances and roundings in bf16 would pick the
wrong code for nearby codes. Gradients pass to ``z`` straight through
(``z + (q - z).detach()``).

Usage statistics: ``stats`` holds the batch's ``perplexity`` (exp of the
entropy of the code histogram; equals K when all K codes are used equally)
and ``batch_usage`` (fraction of codes that occur in the batch). Across
batches, :meth:`Quantizer.usage` is the fraction of codes used since the last
:meth:`Quantizer.reset_usage` (counted in training and evaluation alike).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class QuantizerOutput:
    quantized: Tensor
    """``[B, D, *S]``, same dtype as the input; straight-through gradient to the input."""
    indices: Tensor
    """``[B, *S]`` int64 code indices in ``[0, codebook_size)``."""
    loss: Tensor
    """Scalar auxiliary loss to add to the model's loss (commitment, codebook, entropy); 0 when there is none."""
    stats: dict[str, Tensor] = field(default_factory=dict)
    """Detached scalars for logging: ``perplexity``, ``batch_usage`` and quantizer-specific entries."""


class Quantizer(nn.Module):
    """Base class: subclasses implement :meth:`quantize` (fp32) and :meth:`indices_to_codes`."""

    codebook_size: int
    dim: int
    """Channels ``D`` of the features it quantizes."""

    def __init__(self, codebook_size: int, dim: int, track_usage: bool = True):
        super().__init__()
        if codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
        self.codebook_size = int(codebook_size)
        self.dim = int(dim)
        self.track_usage = track_usage and codebook_size <= 2**20
        if self.track_usage:
            self.register_buffer("code_counts", torch.zeros(codebook_size, dtype=torch.long), persistent=False)

    def forward(self, z: Tensor) -> QuantizerOutput:
        if z.dim() < 3 or z.shape[1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} expects channels-first features [B, {self.dim}, ...], got {tuple(z.shape)}"
            )
        dtype = z.dtype
        with torch.autocast(z.device.type, enabled=False):
            out = self.quantize(z.float())
        counts = torch.bincount(out.indices.reshape(-1), minlength=self.codebook_size)
        if self.track_usage:
            self.code_counts += counts
        probs = counts.float() / counts.sum().clamp_min(1)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum()
        out.stats.setdefault("perplexity", entropy.exp().detach())
        out.stats.setdefault("batch_usage", (counts > 0).float().mean().detach())
        out.quantized = out.quantized.to(dtype)
        return out

    def quantize(self, z: Tensor) -> QuantizerOutput:
        """Quantize fp32 features ``[B, D, *S]``; called by :meth:`forward` with autocast off."""
        raise NotImplementedError

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """Indices ``[B, *S]`` -> quantized features ``[B, D, *S]`` (fp32), as :meth:`forward` would return them."""
        raise NotImplementedError

    def usage(self) -> float:
        """Fraction of the codebook used since the last :meth:`reset_usage` (NaN when not tracked)."""
        if not self.track_usage:
            return float("nan")
        return float((self.code_counts > 0).float().mean())

    def reset_usage(self) -> None:
        if self.track_usage:
            self.code_counts.zero_()

    def check_indices(self, indices: Tensor) -> None:
        if indices.dtype.is_floating_point:
            raise TypeError(f"code indices must be integers, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(
                f"code indices must lie in [0, {self.codebook_size}), got [{int(indices.min())}, {int(indices.max())}]"
            )


def channels_last(z: Tensor) -> Tensor:
    """``[B, D, *S]`` -> ``[B, *S, D]``."""
    return z.movedim(1, -1)


def channels_first(z: Tensor) -> Tensor:
    """``[B, *S, D]`` -> ``[B, D, *S]``."""
    return z.movedim(-1, 1)
