"""DrQ-v2 (Yarats et al. 2021): DDPG from pixels with scheduled exploration noise and n-step returns.

The actor is deterministic, ``mu(s) = tanh(f(s))``. Exploration adds
Gaussian noise whose standard deviation falls linearly from ``std_init`` to
``std_final`` over ``std_steps`` env steps (DrQ-v2's ``linear(1.0, 0.1, ...)``
schedule); in the targets and the actor loss the noise is clipped to
``+-std_clip``:

    critic:  Q_i(s, a) -> R_n + gamma^m * min_j Q'_j(s', clip(mu(s') + eps)),  R_n the n-step return
    actor:   minimise -min_j Q_j(s, clip(mu(s) + eps))

Encoder, critics, augmentation, replay sampling and RND are shared with DrQ
(:mod:`worldrl.agents.drq_common`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from worldrl.agents.drq_common import DrQBase, DrQCommonConfig, mlp, trunk
from worldrl.config import ConfigError


@dataclass
class DrQv2Config(DrQCommonConfig):
    n_step: int = 3
    std_init: float = 1.0
    std_final: float = 0.1
    std_steps: int = 250_000
    """Env steps over which the exploration std falls from ``std_init`` to ``std_final`` (then stays)."""
    std_clip: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.std_init, self.std_final, self.std_clip) < 0 or self.std_steps < 1:
            raise ConfigError("agent.std_init, std_final and std_clip must be >= 0 and agent.std_steps >= 1")


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """``start`` at step 0, ``end`` from ``duration`` on, linear in between."""
    mix = min(max(step / duration, 0.0), 1.0)
    return (1.0 - mix) * start + mix * end


class DeterministicActor(nn.Module):
    def __init__(self, repr_dim: int, action_dim: int, config: DrQv2Config):
        super().__init__()
        self.trunk = trunk(repr_dim, config.feature_dim)
        self.head = mlp(config.feature_dim, config.hidden, config.hidden_layers, action_dim)

    def forward(self, features: Tensor) -> Tensor:
        return torch.tanh(self.head(self.trunk(features)).float())


class DrQv2(DrQBase):
    """DrQ-v2 with the shared pieces of :class:`~worldrl.agents.drq_common.DrQBase`; see the module docstring."""

    name = "drqv2"
    config_class = DrQv2Config
    config: DrQv2Config

    def build_actor(self) -> None:
        self.actor = DeterministicActor(self.encoder.repr_dim, self.action_dim, self.config)
        self.modules["actor"] = self.actor

    def build_optimizers(self) -> None:
        self.optimizers["actor"] = torch.optim.Adam(self.actor.parameters(), lr=self.config.lr)

    @property
    def std(self) -> float:
        """The exploration std at the current env step."""
        cfg = self.config
        return linear_schedule(cfg.std_init, cfg.std_final, cfg.std_steps, self.env_steps)

    def noisy(self, mean: Tensor, clip: float | None) -> Tensor:
        """``mean`` plus Gaussian noise of the scheduled std (clipped to ``+-clip``), kept in ``[-1, 1]``."""
        noise = torch.randn_like(mean) * self.std
        if clip is not None:
            noise = noise.clamp(-clip, clip)
        return (mean + noise).clamp(-1.0, 1.0)

    def policy(self, features: Tensor, explore: bool) -> Tensor:
        mean = self.actor(features)
        return self.noisy(mean, None) if explore else mean

    def next_value(self, next_features: Tensor) -> Tensor:
        with self.autocast():
            action = self.noisy(self.actor(next_features), self.config.std_clip)
        return self.min_q(self.critic_target, next_features, action)

    def update_actor(self, features: Tensor) -> dict[str, float]:
        with self.autocast():
            action = self.noisy(self.actor(features), self.config.std_clip)
        loss = -self.min_q(self.critic, features, action).mean()
        self.step("actor", loss)
        return {"actor/loss": loss.item(), "actor/std": self.std}
