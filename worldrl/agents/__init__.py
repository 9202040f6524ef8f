"""Agents behind one interface (:class:`Agent`), found by name: ``drq``, ``drqv2``, ``dreamerv3``.

Add an agent by adding ``"name": "module:Class"`` to :data:`AGENTS`; the
class takes ``(config, frame_shape, action_dim, device)`` (and
``discrete=True`` if it sets ``discrete_actions``, ``vector_dim=`` if it sets
``vector_observations``) and names its config dataclass in ``config_class``.
Modules are imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import torch

from worldrl.agents.base import Agent, Observation
from worldrl.config import ConfigError, build_dataclass

AGENTS: dict[str, str] = {
    "drq": "worldrl.agents.drq:DrQ",
    "drqv2": "worldrl.agents.drqv2:DrQv2",
    "dreamerv3": "worldrl.agents.dreamerv3:DreamerV3",
}


def agent_class(name: str) -> type[Agent]:
    """The class registered as ``name``; an unknown name lists the known ones."""
    if name not in AGENTS:
        raise ConfigError(f"unknown agent {name!r}; known agents: {', '.join(sorted(AGENTS))}")
    module, _, cls = AGENTS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def takes_vectors(name: str) -> bool:
    """Whether agent ``name`` takes vector observations (``state``, float ``[N, S]``) besides or instead of frames."""
    return agent_class(name).vector_observations


def vector_agents() -> list[str]:
    """The agents that take vector observations, sorted."""
    return sorted(n for n in AGENTS if takes_vectors(n))


def build_agent(
    name: str,
    config: Mapping[str, Any] | None,
    frame_shape: tuple[int, int, int] | None,
    action_dim: int,
    device: str | torch.device = "auto",
    discrete: bool = False,
    vector_dim: int | None = None,
) -> Agent:
    """An agent from its ``agent:`` config section (unknown keys are errors naming the valid ones).

    ``discrete``: a Discrete action space of ``action_dim`` actions, for agents that take one.
    ``vector_dim``: entries of a ``state`` observation, for agents that take one (``frame_shape`` None: no frames).
    """
    cls = agent_class(name)
    built = build_dataclass(cls.config_class, config, "agent")
    kwargs: dict[str, Any] = {}
    if discrete:
        if not cls.discrete_actions:
            takes = ", ".join(sorted(n for n in AGENTS if agent_class(n).discrete_actions))
            raise ConfigError(f"agent {name!r} takes continuous (Box) actions only, but the env's are discrete; "
                              f"agents for discrete actions: {takes}")
        kwargs["discrete"] = True
    if vector_dim is not None or frame_shape is None:
        if not takes_vectors(name):
            raise ConfigError(f"agent {name!r} needs uint8 [H, W, C] frames; agents that also take vector "
                              f"observations: {', '.join(vector_agents())}")
        kwargs["vector_dim"] = vector_dim
    return cls(built, frame_shape, action_dim, device, **kwargs)


__all__ = ["AGENTS", "Agent", "Observation", "agent_class", "build_agent", "takes_vectors", "vector_agents"]
