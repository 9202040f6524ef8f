"""DrQ (Kostrikov et al. 2020): SAC from pixels with random-shift augmentation, VIPER's model-free agent.

Settings follow VIPER's Table E.4 (:class:`DrQConfig`). The actor is a
tanh-squashed Gaussian; the entropy temperature ``alpha`` starts at 0.1 and is
learned towards a target entropy of ``-action_dim``:

    critic:  Q_i(s, a) -> r + gamma^m * (min_j Q'_j(s', a') - alpha * log pi(a'|s')),  a' ~ pi(s')
    actor:   minimise alpha * log pi(a|s) - min_j Q_j(s, a),  a ~ pi(s)
    alpha:   minimise -log(alpha) * (log pi(a|s) + target_entropy)

so ``alpha`` grows while the policy's entropy is below the target. Encoder,
critics, augmentation, RND and the update order are in
:mod:`worldrl.agents.drq_common`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from worldrl.agents.drq_common import DrQBase, DrQCommonConfig, mlp, trunk
from worldrl.config import ConfigError


@dataclass
class DrQConfig(DrQCommonConfig):
    init_temperature: float = 0.1
    target_entropy: float | None = None
    """None: ``-action_dim``."""
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init_temperature <= 0 or self.log_std_min >= self.log_std_max:
            raise ConfigError("agent.init_temperature must be > 0 and agent.log_std_min < agent.log_std_max")


class GaussianActor(nn.Module):
    """Features -> mean and log-std of a Gaussian whose samples are squashed by tanh."""

    def __init__(self, repr_dim: int, action_dim: int, config: DrQConfig):
        super().__init__()
        self.trunk = trunk(repr_dim, config.feature_dim)
        self.head = mlp(config.feature_dim, config.hidden, config.hidden_layers, 2 * action_dim)
        self.log_std_min, self.log_std_max = config.log_std_min, config.log_std_max

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.head(self.trunk(features)).float().chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def sample(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """A squashed sample ``[B, A]`` (reparameterised) and its log-probability ``[B]``."""
        mean, log_std = self(features)
        noise = torch.randn_like(mean)
        pre_tanh = mean + noise * log_std.exp()
        action = torch.tanh(pre_tanh)
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log|d tanh(u)/du| = 2 * (log 2 - u - softplus(-2u)), stable for large |u|
        log_prob = log_prob - (2 * (math.log(2) - pre_tanh - nn.functional.softplus(-2 * pre_tanh))).sum(-1)
        return action, log_prob


class Temperature(nn.Module):
    """The learned entropy temperature, stored as ``log_alpha``."""

    def __init__(self, initial: float):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(initial)))

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.exp()


class DrQ(DrQBase):
    """DrQ with the shared pieces of :class:`~worldrl.agents.drq_common.DrQBase`; see the module docstring."""

    name = "drq"
    config_class = DrQConfig
    config: DrQConfig

    def build_actor(self) -> None:
        self.actor = GaussianActor(self.encoder.repr_dim, self.action_dim, self.config)
        self.temperature = Temperature(self.config.init_temperature)
        self.modules.update(actor=self.actor, temperature=self.temperature)
        target = self.config.target_entropy
        self.target_entropy = float(-self.action_dim if target is None else target)

    def build_optimizers(self) -> None:
        self.optimizers["actor"] = torch.optim.Adam(self.actor.parameters(), lr=self.config.lr)
        self.optimizers["temperature"] = torch.optim.Adam(self.temperature.parameters(), lr=self.config.lr)

    def policy(self, features: Tensor, explore: bool) -> Tensor:
        if explore:
            return self.actor.sample(features)[0]
        return torch.tanh(self.actor(features)[0])

    def next_value(self, next_features: Tensor) -> Tensor:
        with self.autocast():
            action, log_prob = self.actor.sample(next_features)
        return self.min_q(self.critic_target, next_features, action) - self.temperature.alpha.detach() * log_prob

    def update_actor(self, features: Tensor) -> dict[str, float]:
        with self.autocast():
            action, log_prob = self.actor.sample(features)
        q = self.min_q(self.critic, features, action)
        alpha = self.temperature.alpha.detach()
        actor_loss = (alpha * log_prob - q).mean()
        self.step("actor", actor_loss)
        temperature_loss = self.temperature_loss(log_prob.detach())
        self.step("temperature", temperature_loss)
        return {"actor/loss": actor_loss.item(), "actor/entropy": -log_prob.mean().item(),
                "actor/alpha": self.temperature.alpha.item(), "actor/alpha_loss": temperature_loss.item()}

    def temperature_loss(self, log_prob: Tensor) -> Tensor:
        """SAC's temperature loss: its gradient raises ``alpha`` when the entropy ``-log_prob`` is below target."""
        return -(self.temperature.log_alpha * (log_prob + self.target_entropy)).mean()
