"""Quantizers: VQ (EMA codebook, dead-code restarts, optional l2-normalised codes), FSQ and LFQ.

All share :class:`~worldrl.models.quantizers.base.Quantizer`'s interface;
:func:`build_quantizer` makes one from a :class:`QuantizerConfig` (the
``quantizer:`` section of a tokenizer preset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from worldrl.models.quantizers.base import Quantizer, QuantizerOutput

QUANTIZER_TYPES = ("vq", "fsq", "lfq")


@dataclass
class QuantizerConfig:
    type: str = "vq"
    """``vq``, ``fsq`` or ``lfq``."""
    codebook_size: int = 1024
    """Codes K (VQ, LFQ; LFQ needs a power of two). FSQ's K is the product of ``levels``."""
    dim: int = 64
    """VQ code dimension. FSQ uses ``len(levels)`` channels and LFQ ``log2(codebook_size)``."""
    beta: float = 0.25
    """Commitment weight (VQ and LFQ)."""
    ema_decay: float | None = 0.99
    """VQ: EMA codebook updates with this decay; None learns the codebook by gradient (codebook loss)."""
    l2_normalize: bool = False
    """VQ: l2-normalise codes and features before the lookup (ViT-VQGAN, TECO)."""
    restart_dead_codes: bool = True
    """VQ: replace codes unused for a while with recent encoder outputs."""
    dead_code_threshold: float = 1.0
    """VQ: a code whose EMA usage count falls below this is dead."""
    init_from_data: bool = True
    """VQ: initialise the codebook from the first training batch's encoder outputs."""
    levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    """FSQ levels per channel."""
    entropy_weight: float = 0.1
    """LFQ: final weight of the entropy penalty E[H(q(z))] - H[E(q(z))]."""
    entropy_weight_start: float = 0.3
    """LFQ: weight at step 0, annealed linearly to ``entropy_weight``."""
    entropy_anneal_steps: int = 2000
    """LFQ: steps of that annealing."""

    def __post_init__(self) -> None:
        if self.type not in QUANTIZER_TYPES:
            raise ValueError(f"quantizer type must be one of {', '.join(QUANTIZER_TYPES)}, got {self.type!r}")
        if self.type == "lfq" and (self.codebook_size < 2 or self.codebook_size & (self.codebook_size - 1)):
            raise ValueError(f"LFQ needs a power-of-two codebook_size, got {self.codebook_size}")

    @property
    def num_codes(self) -> int:
        return math.prod(self.levels) if self.type == "fsq" else self.codebook_size

    @property
    def channels(self) -> int:
        """Channels of the features the quantizer takes."""
        if self.type == "fsq":
            return len(self.levels)
        if self.type == "lfq":
            return int(math.log2(self.codebook_size))
        return self.dim


def build_quantizer(config: QuantizerConfig) -> Quantizer:
    """The quantizer that ``config`` describes."""
    if config.type == "fsq":
        from worldrl.models.quantizers.fsq import FSQ

        return FSQ(config.levels)
    if config.type == "lfq":
        from worldrl.models.quantizers.lfq import LFQ

        return LFQ.from_config(config)
    from worldrl.models.quantizers.vq import VectorQuantizer

    return VectorQuantizer.from_config(config)


__all__ = ["QUANTIZER_TYPES", "Quantizer", "QuantizerConfig", "QuantizerOutput", "build_quantizer"]
