"""DreamerV3 settings as typed dataclasses; the defaults are the Table E.3 DMC preset (``dreamerv3.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldrl.config import build_dataclass, load_config


@dataclass
class OptimizerConfig:
    lr: float = 1e-4
    eps: float = 1e-6
    clip: float = 100.0
    """Gradient clipping by global norm."""


@dataclass
class WorldModelConfig:
    deter: int = 512
    """GRU state size ("RSSM 512" in Table E.3)."""
    units: int = 512
    layers: int = 2
    stoch: int = 32
    classes: int = 32
    cnn_depth: int = 32
    min_resolution: int = 4
    unimix: float = 0.01
    rssm_inputs: str = "joint"
    """How ``h``, ``z`` and the action enter the GRU: ``joint`` (one dense layer of ``[z, a]``, the 2023 code) or
    ``separate`` (a dense layer each, as the 2024 code)."""
    free_nats: float = 1.0
    dyn_scale: float = 0.5
    rep_scale: float = 0.1
    image_scale: float = 1.0
    vector_scale: float = 1.0
    reward_scale: float = 1.0
    cont_scale: float = 1.0
    reward_bins: int = 255
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)


@dataclass
class BehaviorConfig:
    units: int = 512
    layers: int = 2
    horizon: int = 15
    discount: float = 0.995
    lam: float = 0.95
    entropy: float = 3e-4
    unimix: float = 0.01
    min_std: float = 0.1
    max_std: float = 1.0
    critic_bins: int = 255
    actor_grad: str = "auto"
    """``reinforce`` (score function), ``backprop`` (through the dynamics) or ``auto``: reinforce for discrete
    actions and backprop for continuous ones, as the 2023 DreamerV3 code; its 2024 rewrite uses reinforce for both."""
    slow_critic_every: int = 1
    slow_critic_fraction: float = 0.02
    slow_reg: float = 1.0
    return_decay: float = 0.99
    return_low: float = 0.05
    return_high: float = 0.95
    reward_weight: float = 1.0
    """Weight of the learned reward (the env's reward: the task's, or VIPER's when the env is wrapped)."""
    disagreement_weight: float = 0.0
    """Weight of the Plan2Explore disagreement; > 0 turns Plan2Explore on (VIPER: 1)."""
    actor_optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=3e-5, eps=1e-5))
    critic_optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=3e-5, eps=1e-5))


@dataclass
class Plan2ExploreConfig:
    members: int = 10
    units: int = 512
    layers: int = 2
    target: str = "stoch"
    """What the ensemble predicts at t+1: ``stoch`` (DreamerV3's code), ``deter`` or ``feat`` (both)."""
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-4, eps=1e-5))


@dataclass
class DreamerV3Config:
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    behavior: BehaviorConfig = field(default_factory=BehaviorConfig)
    plan2explore: Plan2ExploreConfig = field(default_factory=Plan2ExploreConfig)
    batch_size: int = 16
    batch_length: int = 64
    bf16: bool = False
    """bf16 autocast of the forward passes (losses and distributions stay float32)."""
    device: str = "auto"
    seed: int = 0


def load_dreamerv3_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                          section: str | None = "agent") -> DreamerV3Config:
    """A preset (its ``agent:`` section, or the whole file with ``section=None``) with ``key=value`` overrides.

    The section's ``type`` (the agent's name, read by ``worldrl train-agent``) is dropped.
    """
    data: dict[str, Any] = load_config(path, overrides)
    if section is not None:
        data = data.get(section, {})
    data = {key: value for key, value in data.items() if key != "type"}
    return build_dataclass(DreamerV3Config, data, section or "")
