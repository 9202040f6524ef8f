"""Finite Scalar Quantization (Mentzer et al., 2023): round each of a few bounded channels to fixed levels.

No codebook, no codebook loss, no dead codes: channel ``i`` is squashed to
``(L_i - 1) / 2 * tanh(z_i)`` (shifted by half a step for even ``L_i`` so that
both ends are reachable) and rounded; the code index is the mixed-radix number
of the per-channel levels. ElasticTok's levels ``(8, 8, 8, 5, 5, 5)`` give
64,000 codes from 6 channels. Quantized values are scaled to ``[-1, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from worldrl.models.quantizers.base import Quantizer, QuantizerOutput, channels_first, channels_last


class FSQ(Quantizer):
    def __init__(self, levels: Sequence[int] = (8, 8, 8, 5, 5, 5), track_usage: bool = True):
        levels = tuple(int(level) for level in levels)
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must be a non-empty list of integers >= 2, got {levels}")
        super().__init__(math.prod(levels), len(levels), track_usage)
        self.levels = levels
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.float32), persistent=False)
        radix = torch.cumprod(torch.tensor((1, *levels[:-1])), 0)
        self.register_buffer("_radix", radix, persistent=False)

    def _bound(self, z: Tensor) -> Tensor:
        half = (self._levels - 1) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def quantize(self, z: Tensor) -> QuantizerOutput:
        bounded = self._bound(channels_last(z))
        rounded = bounded + (bounded.round() - bounded).detach()
        half = (self._levels - 1) / 2
        digits = (rounded.detach() + (self._levels // 2)).long()
        indices = (digits * self._radix).sum(-1)
        quantized = channels_first((rounded + self._levels // 2 - half) / half)
        return QuantizerOutput(quantized=quantized, indices=indices, loss=z.new_zeros(()))

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        self.check_indices(indices)
        digits = (indices.unsqueeze(-1) // self._radix) % self._levels.long()
        half = (self._levels - 1) / 2
        return channels_first((digits.float() - half) / half)
