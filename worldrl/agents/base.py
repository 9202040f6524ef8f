"""The agent interface the trainer (``worldrl train-agent``) and ``worldrl evaluate`` drive: DrQ, DrQ-v2, DreamerV3.

An agent acts on a batch of ``N`` envs at once and learns from a
:class:`~worldrl.data.ReplayBuffer`. Observations come as a dict with
``image`` (uint8 ``[N, H, W, C]``) and ``is_first`` (bool ``[N]``, true on an
episode's first frame), so recurrent agents (DreamerV3) and frame-stacking
agents (DrQ) both keep what they need in the opaque ``state`` they return
(``None`` before the first step). Actions are float32 ``[N, A]`` in
``[-1, 1]``; the trainer maps them to the env's bounds.

Everything that training changes (weights, optimizers, counters) is in
:meth:`Agent.state_dict`, as tensors, numbers and nested dicts only, so
``torch.load(..., weights_only=True)`` reads a saved agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from worldrl.atomic import atomic_write

Observation = Mapping[str, np.ndarray]


class Agent:
    """Base class: subclasses set :attr:`name` and :attr:`config_class` and implement the methods below."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    """Dataclass of the agent's settings (the ``agent:`` section of a preset)."""

    env_steps: int = 0
    """Env steps taken so far over all envs; the trainer keeps it current (exploration schedules read it)."""

    def act(self, obs: Observation, state: Any, explore: bool) -> tuple[np.ndarray, Any]:
        """Actions float32 ``[N, A]`` in ``[-1, 1]`` for ``obs``, and the state for the next call."""
        raise NotImplementedError

    def update(self, replay: Any) -> dict[str, float]:
        """One gradient update on a batch sampled from ``replay``; returns scalar metrics to log."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write :meth:`state_dict` to ``path`` atomically."""
        state = self.state_dict()
        return atomic_write(path, lambda file: torch.save(state, file))

    def load(self, path: str | Path) -> None:
        """Restore a :meth:`save` file (read with ``weights_only=True``: no code runs)."""
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
