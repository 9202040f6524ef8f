"""Exploration bonuses for VIPER: RND (with DrQ) and ensemble disagreement (Plan2Explore, with DreamerV3)."""

from __future__ import annotations

from typing import Any

from worldrl.exploration.base import ExplorationBonus, RunningMeanStd, Transition, check_tensor
from worldrl.exploration.disagreement import Disagreement
from worldrl.exploration.rnd import RND

EXPLORATION_BONUSES: dict[str, type[ExplorationBonus]] = {"rnd": RND, "disagreement": Disagreement}


def make_exploration(name: str, **kwargs: Any) -> ExplorationBonus:
    """A bonus by name: ``"rnd"`` (needs ``obs_shape``) or ``"disagreement"`` (``feature_dim``, ``action_dim``)."""
    if name not in EXPLORATION_BONUSES:
        raise ValueError(f"unknown exploration bonus {name!r}; known: {sorted(EXPLORATION_BONUSES)}")
    return EXPLORATION_BONUSES[name](**kwargs)


__all__ = [
    "EXPLORATION_BONUSES",
    "RND",
    "Disagreement",
    "ExplorationBonus",
    "RunningMeanStd",
    "Transition",
    "check_tensor",
    "make_exploration",
]
