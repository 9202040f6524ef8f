"""Tokenizers: uint8 video <-> integer codes.

- :class:`~worldrl.models.tokenizers.vqgan.VQGAN`: per-frame CNN VQ-GAN (VIPER, Table E.1).
- :class:`~worldrl.models.tokenizers.videogpt.VideoVQVAE`: VideoGPT's 3D VQ-VAE with axial attention.
- :class:`~worldrl.models.tokenizers.causal.CausalVideoTokenizer`: temporally causal 3D CNN (MAGVIT-v2).

:func:`build_tokenizer` makes one from a preset's ``model:`` section and
:func:`load_tokenizer` loads any saved one.
"""

from __future__ import annotations

from typing import Any

from worldrl.models.checkpoint import build_from_section
from worldrl.models.tokenizers.base import (
    TOKENIZERS,
    CheckpointError,
    Tokenizer,
    TokenizerOutput,
    float_to_frames,
    frames_to_float,
    load_tokenizer,
)
from worldrl.models.tokenizers.causal import CausalVideoTokenizer
from worldrl.models.tokenizers.videogpt import VideoVQVAE
from worldrl.models.tokenizers.vqgan import VQGAN


def build_tokenizer(model: dict[str, Any]) -> Tokenizer:
    """A tokenizer from a preset's ``model:`` section: ``type`` names the kind, the rest is its config."""
    return build_from_section(TOKENIZERS, model)


__all__ = [
    "TOKENIZERS",
    "CausalVideoTokenizer",
    "CheckpointError",
    "Tokenizer",
    "TokenizerOutput",
    "VQGAN",
    "VideoVQVAE",
    "build_tokenizer",
    "float_to_frames",
    "frames_to_float",
    "load_tokenizer",
]
