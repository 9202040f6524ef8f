"""Reward and continue heads of a learned simulator, on a video model's per-frame features.

The features of frame ``t`` (:meth:`~worldrl.models.predictors.VideoModel.loss_and_features`
in training, :meth:`~worldrl.models.predictors.VideoModel.frame_features` when
streaming) see the frame, the action that led to it and its context. From
them the reward head predicts ``reward[t]`` (the reward of the transition into
frame ``t``) as DreamerV3 does: a two-hot categorical over symlog bins; the
continue head predicts ``1 - is_terminal[t]`` (a logit). Reset frames
(``is_first``) follow no action and train neither head.

A trained pair is saved as ``heads/`` inside the video model folder
(``heads.json`` and ``model.safetensors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldrl.agents.dreamerv3.networks import MLP, TwoHot, symlog_bins
from worldrl.config import ConfigError, build_dataclass, to_dict
from worldrl.models.checkpoint import load_weights, read_model_config, save_model

HEADS_DIR = "heads"
CONFIG_FILE = "heads.json"


@dataclass
class HeadsConfig:
    """The ``heads`` section of a video model preset (``continue`` in YAML is ``cont`` here)."""

    reward: bool = False
    cont: bool = False
    units: int = 256
    layers: int = 2
    bins: int = 255
    weight: float = 1.0
    """Weight of the heads' loss next to the video model's."""
    detach: bool = False
    """Train the heads on detached features (the video model's training is then unchanged)."""
    feature_dim: int = 0
    """Size of the video model's features (filled in by the trainer)."""

    def __post_init__(self) -> None:
        if min(self.units, self.layers, self.bins - 1) < 1 or self.weight < 0:
            raise ConfigError("heads.units, heads.layers must be >= 1, heads.bins >= 2 and heads.weight >= 0")

    @property
    def enabled(self) -> bool:
        return self.reward or self.cont

    @classmethod
    def from_section(cls, section: dict[str, Any] | None) -> HeadsConfig:
        section = dict(section or {})
        if "continue" in section:
            section["cont"] = section.pop("continue")
        return build_dataclass(cls, section, "heads")

    def to_section(self) -> dict[str, Any]:
        section = to_dict(self)
        section["continue"] = section.pop("cont")
        return section


class RewardHeads(nn.Module):
    """A two-hot symlog reward head and a continue head on frame features ``[..., D]``."""

    kind: ClassVar[str] = "reward_heads"

    def __init__(self, config: HeadsConfig):
        super().__init__()
        if config.feature_dim < 1:
            raise ConfigError("heads.feature_dim must be set to the video model's feature size")
        self.config = config
        dim, units, layers = config.feature_dim, config.units, config.layers
        self.reward = MLP(dim, config.bins, units, layers, zero_out=True) if config.reward else None
        self.cont = MLP(dim, 1, units, layers) if config.cont else None
        self.register_buffer("bins", symlog_bins(config.bins), persistent=False)

    def forward(self, features: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Predicted reward and continue probability ``[...]`` (None for a head that is off)."""
        features = features.float()
        reward = None if self.reward is None else TwoHot(self.reward(features), self.bins).mean
        cont = None if self.cont is None else torch.sigmoid(self.cont(features)[..., 0])
        return reward, cont

    def loss(self, features: Tensor, reward: Tensor, terminal: Tensor, valid: Tensor) -> tuple[Tensor, dict]:
        """Mean negative log-likelihood of ``reward`` and ``1 - terminal`` ``[B, L]`` on ``valid`` frames."""
        features, valid = features.float(), valid.float()
        count = valid.sum().clamp_min(1.0)
        total, stats = features.new_zeros(()), {}
        if self.reward is not None:
            dist = TwoHot(self.reward(features), self.bins)
            nll = -(dist.log_prob(reward) * valid).sum() / count
            stats["reward_nll"] = nll.detach()
            stats["reward_abs_error"] = (((dist.mean - reward).abs() * valid).sum() / count).detach()
            total = total + nll
        if self.cont is not None:
            logits = self.cont(features)[..., 0]
            bce = F.binary_cross_entropy_with_logits(logits, 1.0 - terminal.float(), reduction="none")
            bce = (bce * valid).sum() / count
            stats["continue_bce"] = bce.detach()
            total = total + bce
        return total, stats

    def save(self, video_model_dir: str | Path) -> Path:
        return save_model(self, Path(video_model_dir) / HEADS_DIR, CONFIG_FILE)


def load_heads(video_model_dir: str | Path, device: str | torch.device = "cpu") -> RewardHeads | None:
    """The heads saved in a video model folder (eval mode), or None if it has none."""
    directory = Path(video_model_dir) / HEADS_DIR
    if not directory.is_dir():
        return None
    _, config = read_model_config(directory, CONFIG_FILE, "reward heads", {RewardHeads.kind: RewardHeads})
    heads = RewardHeads(build_dataclass(HeadsConfig, config, "heads"))
    load_weights(heads, directory, CONFIG_FILE)
    return heads.to(device).eval()
