"""Training loops: the video tokenizers (:func:`train_tokenizer`), with their losses, metrics and DDP helpers."""

from worldrl.training.tokenizer import (
    ConfigMismatchError,
    LossConfig,
    NonFiniteLossError,
    TokenizerTrainer,
    TrainConfig,
    resolve_config,
    train_tokenizer,
)

__all__ = [
    "ConfigMismatchError",
    "LossConfig",
    "NonFiniteLossError",
    "TokenizerTrainer",
    "TrainConfig",
    "resolve_config",
    "train_tokenizer",
]
