"""Training loops: the video tokenizers (:func:`train_tokenizer`) and the video models (:func:`train_video_model`),
with their shared run-folder machinery (:mod:`~worldrl.training.common`), losses, metrics and DDP helpers."""

from worldrl.training.common import ConfigMismatchError, NonFiniteLossError
from worldrl.training.tokenizer import (
    LossConfig,
    TokenizerTrainer,
    TrainConfig,
    resolve_config,
    train_tokenizer,
)
from worldrl.training.video_model import VideoModelTrainer, VideoTrainConfig, train_video_model

__all__ = [
    "ConfigMismatchError",
    "LossConfig",
    "NonFiniteLossError",
    "TokenizerTrainer",
    "TrainConfig",
    "VideoModelTrainer",
    "VideoTrainConfig",
    "resolve_config",
    "train_tokenizer",
    "train_video_model",
]
