"""The agent interface the trainer (``worldrl train-agent``) and ``worldrl evaluate`` drive: DrQ, DrQ-v2, DreamerV3.

An agent acts on a batch of ``N`` envs at once and learns from a
:class:`~worldrl.data.ReplayBuffer`. Observations come as a dict with
``image`` (uint8 ``[N, H, W, C]``) and ``is_first`` (bool ``[N]``, true on an
episode's first frame), so recurrent agents (DreamerV3) and frame-stacking
agents (DrQ) both keep what they need in the opaque ``state`` they return
(``None`` before the first step). Actions are float32 ``[N, A]`` in
``[-1, 1]``; the trainer maps them to the env's bounds. Agents with
:attr:`Agent.discrete_actions` also take Discrete action spaces: their
actions are one-hot ``[N, n]`` (the replay's format) and the trainer sends
the argmax to the env.

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

    discrete_actions: ClassVar[bool] = False
    """Whether the class takes ``discrete=True`` (one-hot actions for a Discrete space) as a keyword."""

    vector_observations: ClassVar[bool] = False
    """Whether the class takes vector observations (``state``, ``vector_dim=`` keyword) besides or instead of frames."""

    action_dim: int
    """Entries of an action (``n`` for a Discrete space of ``n`` actions)."""

    env_steps: int = 0
    """Env steps taken so far over all envs; the trainer keeps it current (exploration schedules read it)."""

    @property
    def replayed_steps_per_update(self) -> int:
        """Replay steps one :meth:`update` trains on (the train ratio is this times updates per env step)."""
        raise NotImplementedError

    @property
    def min_steps_per_env(self) -> int:
        """Steps each env's replay must hold before :meth:`update` can sample a batch."""
        raise NotImplementedError

    def act(self, obs: Observation, state: Any, explore: bool) -> tuple[np.ndarray, Any]:
        """Actions float32 ``[N, A]`` in ``[-1, 1]`` for ``obs``, and the state for the next call."""
        raise NotImplementedError

    def took(self, state: Any, action: np.ndarray) -> Any:
        """The state after the trainer took ``action`` (random exploration) instead of what :meth:`act` chose.

        Recurrent agents feed the action taken to their model at the next
        step; the default (frame stacks) ignores it.
        """
        return state

    def update(self, replay: Any) -> dict[str, float]:
        """One gradient update on a batch sampled from ``replay``; returns scalar metrics to log."""
        raise NotImplementedError

    def open_loop_video(self, replay: Any, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Real and predicted clips (float ``[B, C, T, H, W]`` in ``[-1, 1]``) of replayed sequences, or None.

        Agents with a world model predict from a few observed frames and the
        replayed actions; ``seed`` fixes every random choice, so logging a
        video changes no RNG state of the run.
        """
        return None

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
