"""Video predictors: likelihood, streaming likelihood and sampling of tokenizer codes.

- :class:`~worldrl.models.predictors.videogpt.VideoGPT`: autoregressive prior over each frame's codes (VIPER).
- :class:`~worldrl.models.predictors.maskgit.MaskGIT`: spatial MaskGIT per frame, autoregressive over frames.
- :class:`~worldrl.models.predictors.teco.TECO`: latent dynamics (encoder, temporal transformer, MaskGIT prior
  over the latents, decoder to codes) for long, action-conditioned videos.

All share :class:`~worldrl.models.predictors.base.VideoModel` (``log_prob``,
``init_state``/``step``/``observe``, ``sample``). :func:`build_video_model` makes one from
a preset's ``model:`` section and :func:`load_video_model` loads any saved one.
"""

from __future__ import annotations

from typing import Any

from worldrl.models.checkpoint import build_from_section
from worldrl.models.predictors.base import (
    VIDEO_MODELS,
    LogProb,
    StreamState,
    VideoModel,
    VideoModelConfig,
    check_tokenizer,
    load_video_model,
)
from worldrl.models.predictors.maskgit import MaskGIT, MaskGITConfig
from worldrl.models.predictors.teco import TECO, TECOConfig
from worldrl.models.predictors.videogpt import VideoGPT


def build_video_model(model: dict[str, Any]) -> VideoModel:
    """A video model from a preset's ``model:`` section: ``type`` names the kind, the rest is its config."""
    return build_from_section(VIDEO_MODELS, model)


__all__ = [
    "VIDEO_MODELS",
    "LogProb",
    "MaskGIT",
    "MaskGITConfig",
    "StreamState",
    "TECO",
    "TECOConfig",
    "VideoGPT",
    "VideoModel",
    "VideoModelConfig",
    "build_video_model",
    "check_tokenizer",
    "load_video_model",
]
