"""What DrQ and DrQ-v2 share: the pixel encoder, random-shift augmentation, the critics, RND and the update loop.

Both agents learn from frame stacks drawn by
:meth:`~worldrl.data.ReplayBuffer.sample_transitions` (in the caller's
process: no DataLoader, whose worker copies are what makes DrQ-v2's public
replay grow). One update samples a batch, shifts every frame stack at random
(independently for ``obs`` and ``next_obs``), trains the encoder with the
critics (the actor sees detached features, as in DrQ-v2), then the actor,
then moves the target critics by ``tau``. The target critics share the online
encoder (DrQ-v2's layout; the original DrQ kept a target copy of it too).

With ``rnd: true`` the reward of a sampled transition becomes
``task_weight * r + rnd_weight * r_rnd``, where ``r`` is what the env gave
(task or VIPER reward) and ``r_rnd`` is RND's novelty of the last frame of
``next_obs``, divided by its running standard deviation; each update also
trains RND once on those frames. With ``n_step > 1`` the bonus is that of the
bootstrap frame only (the replay returns the n-step sum of env rewards, not
the intermediate frames).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldrl.agents.base import Agent, Observation
from worldrl.config import ConfigError
from worldrl.device import resolve_device
from worldrl.exploration import RND, Transition


@dataclass
class DrQCommonConfig:
    """Settings both agents take; defaults follow VIPER's Table E.4 and DrQ-v2."""

    encoder_channels: tuple[int, ...] = (32, 64, 128, 256)
    """Output channels of the 3x3 stride-2 convolutions (64x64 frames -> 4x4x256)."""
    feature_dim: int = 50
    """Width of the LayerNorm + tanh trunk that actor and critics put on the encoder output."""
    hidden: int = 256
    hidden_layers: int = 2
    lr: float = 3e-4
    discount: float = 0.99
    tau: float = 0.005
    """Target critics move this fraction of the way to the online ones after every update."""
    batch_size: int = 256
    frame_stack: int = 3
    n_step: int = 1
    augment_pad: int = 4
    """Random shift of up to this many pixels (replicate padding, then a random crop); 0 turns it off."""
    actor_update_every: int = 1
    """Update the actor on every k-th update (the critic is updated on every one)."""
    bf16: bool = False
    """Autocast encoder, actor and critic forward passes to bfloat16 (losses stay float32)."""
    task_weight: float = 1.0
    """Weight of the env's reward (task or VIPER) in the training reward."""
    rnd: bool = False
    """Add RND's normalised novelty to the reward (``--rnd``)."""
    rnd_weight: float = 1.0
    rnd_channels: tuple[int, ...] = (32, 64, 64)
    rnd_hidden: int = 512
    rnd_lr: float = 3e-4

    def __post_init__(self) -> None:
        positive = ("feature_dim", "hidden", "hidden_layers", "batch_size", "frame_stack", "n_step",
                    "actor_update_every", "rnd_hidden")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"agent.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.tau <= 1.0 or not 0.0 <= self.discount <= 1.0:
            raise ConfigError(f"agent.tau must be in (0, 1] and agent.discount in [0, 1], got {self.tau}, "
                              f"{self.discount}")
        if self.augment_pad < 0 or self.lr <= 0 or not self.encoder_channels:
            raise ConfigError("agent.augment_pad must be >= 0, agent.lr > 0 and agent.encoder_channels non-empty")


# Networks -----------------------------------------------------------------------------------------------------------
def weight_init(module: nn.Module) -> None:
    """Orthogonal weights and zero biases (DrQ-v2's initialisation)."""
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.orthogonal_(module.weight, nn.init.calculate_gain("relu"))
        nn.init.zeros_(module.bias)


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """``layers`` ReLU layers of ``hidden`` units, then a linear output."""
    blocks: list[nn.Module] = []
    for size_in in [in_dim] + [hidden] * (layers - 1):
        blocks += [nn.Linear(size_in, hidden), nn.ReLU(inplace=True)]
    return nn.Sequential(*blocks, nn.Linear(hidden, out_dim))


def trunk(in_dim: int, feature_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())


class Encoder(nn.Module):
    """Frame stacks uint8 ``[B, S, H, W, C]`` -> flat features: 3x3 stride-2 convolutions with ReLU (Table E.4)."""

    def __init__(self, frame_shape: tuple[int, int, int], frame_stack: int, channels: tuple[int, ...]):
        super().__init__()
        height, width, in_channels = frame_shape
        in_channels *= frame_stack
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers += [nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            in_channels, height, width = out_channels, (height + 1) // 2, (width + 1) // 2
        self.convs = nn.Sequential(*layers, nn.Flatten())
        self.repr_dim = in_channels * height * width

    def forward(self, pixels: Tensor) -> Tensor:
        """``pixels``: float ``[B, S*C, H, W]`` in ``[0, 255]`` (see :func:`stack_to_pixels`)."""
        return self.convs(pixels / 255.0 - 0.5)


def stack_to_pixels(frames: np.ndarray | Tensor, device: torch.device) -> Tensor:
    """uint8 frame stacks ``[B, S, H, W, C]`` -> float ``[B, S*C, H, W]`` on ``device`` (values 0..255)."""
    x = torch.as_tensor(frames, device=device)
    batch, stack, height, width, channels = x.shape
    return x.permute(0, 1, 4, 2, 3).reshape(batch, stack * channels, height, width).float()


def random_shift(x: Tensor, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """Shift each image of ``x`` ``[B, C, H, W]`` by a random whole number of pixels in ``[-pad, pad]`` per axis.

    The image is padded by repeating its border, then cropped back to ``H x W`` at a random offset (DrQ's
    augmentation; DrQ-v2's bilinear ``grid_sample`` at whole-pixel offsets gives the same result).
    ``pad=0`` returns ``x`` unchanged.
    """
    if pad == 0:
        return x
    batch, channels, height, width = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    shift = torch.randint(0, 2 * pad + 1, (batch, 2), device=x.device, generator=generator)
    rows = (shift[:, 0, None] + torch.arange(height, device=x.device))[:, None, :, None]
    cols = (shift[:, 1, None] + torch.arange(width, device=x.device))[:, None, None, :]
    index = torch.arange(batch, device=x.device)[:, None, None, None]
    return padded[index, torch.arange(channels, device=x.device)[None, :, None, None], rows, cols]


class Critic(nn.Module):
    """Two Q-functions on a shared trunk over encoder features: ``(features, action) -> (q1, q2)``, each ``[B]``."""

    def __init__(self, repr_dim: int, action_dim: int, config: DrQCommonConfig):
        super().__init__()
        self.trunk = trunk(repr_dim, config.feature_dim)
        self.q1 = mlp(config.feature_dim + action_dim, config.hidden, config.hidden_layers, 1)
        self.q2 = mlp(config.feature_dim + action_dim, config.hidden, config.hidden_layers, 1)

    def forward(self, features: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([self.trunk(features), action.to(features.dtype)], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) * target + tau * online``, parameter by parameter."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.lerp_(o, tau)


# Agent --------------------------------------------------------------------------------------------------------------
class DrQBase(Agent):
    """Encoder, critics, optional RND and the update loop; subclasses add the actor and its loss.

    Subclasses build ``self.actor`` and any extra modules and optimizers in
    :meth:`build_actor`, and implement :meth:`policy` (actions from encoder
    features), :meth:`next_value` (the bootstrap value of next features) and
    :meth:`update_actor`.
    """

    def __init__(
        self,
        config: DrQCommonConfig,
        frame_shape: tuple[int, int, int],
        action_dim: int,
        device: str | torch.device = "auto",
    ):
        self.config, self.frame_shape, self.action_dim = config, tuple(frame_shape), int(action_dim)
        self.device = resolve_device(device)
        self.encoder = Encoder(self.frame_shape, config.frame_stack, config.encoder_channels)
        self.critic = Critic(self.encoder.repr_dim, self.action_dim, config)
        self.critic_target = Critic(self.encoder.repr_dim, self.action_dim, config)
        self.modules: dict[str, nn.Module] = {"encoder": self.encoder, "critic": self.critic}
        self.build_actor()
        for module in self.modules.values():
            module.apply(weight_init)
        self.modules["critic_target"] = self.critic_target
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.rnd = None
        if config.rnd:
            self.rnd = RND(self.frame_shape, config.rnd_channels, config.rnd_hidden, config.rnd_hidden,
                           lr=config.rnd_lr, device=self.device)
            self.modules["rnd"] = self.rnd
        for module in self.modules.values():
            module.to(self.device)
        critic_params = [*self.encoder.parameters(), *self.critic.parameters()]
        self.optimizers: dict[str, torch.optim.Optimizer] = {"critic": torch.optim.Adam(critic_params, lr=config.lr)}
        self.build_optimizers()
        self.updates = 0
        self.env_steps = 0

    # Subclasses -----------------------------------------------------------------------------------------------------
    def build_actor(self) -> None:
        """Create ``self.actor`` and register it (and any other trained module) in ``self.modules``."""
        raise NotImplementedError

    def build_optimizers(self) -> None:
        """Add the actor's (and any other) optimizer to ``self.optimizers``."""
        raise NotImplementedError

    def policy(self, features: Tensor, explore: bool) -> Tensor:
        """Actions ``[B, A]`` in ``[-1, 1]``."""
        raise NotImplementedError

    def next_value(self, next_features: Tensor) -> Tensor:
        """The bootstrap value ``[B]`` of the next observations (no gradient)."""
        raise NotImplementedError

    def update_actor(self, features: Tensor) -> dict[str, float]:
        """One actor step on detached encoder features; returns metrics."""
        raise NotImplementedError

    @property
    def replayed_steps_per_update(self) -> int:
        return self.config.batch_size

    @property
    def min_steps_per_env(self) -> int:
        return self.config.n_step + 1

    # Acting ---------------------------------------------------------------------------------------------------------
    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16)

    def stack(self, obs: Observation, state: np.ndarray | None) -> np.ndarray:
        """The frame stacks ``[N, S, H, W, C]`` after ``obs``: a new episode's stack repeats its first frame."""
        image = np.asarray(obs["image"])
        first = np.asarray(obs["is_first"], bool)
        if state is None:
            first = np.ones(len(image), bool)
            state = np.zeros((len(image), self.config.frame_stack, *image.shape[1:]), image.dtype)
        stack = np.concatenate([state[:, 1:], image[:, None]], axis=1)
        stack[first] = image[first, None]
        return stack

    @torch.no_grad()
    def act(self, obs: Observation, state: np.ndarray | None, explore: bool) -> tuple[np.ndarray, np.ndarray]:
        stack = self.stack(obs, state)
        with self.autocast():
            action = self.policy(self.encoder(stack_to_pixels(stack, self.device)), explore)
        return action.float().clamp(-1.0, 1.0).cpu().numpy(), stack

    # Learning -------------------------------------------------------------------------------------------------------
    def augment(self, frames: np.ndarray) -> Tensor:
        return random_shift(stack_to_pixels(frames, self.device), self.config.augment_pad)

    def training_reward(self, batch: Mapping[str, np.ndarray]) -> tuple[Tensor, dict[str, float]]:
        """``task_weight * reward + rnd_weight * rnd`` of a replay batch (RND trains once on it)."""
        extrinsic = torch.as_tensor(batch["reward"], device=self.device)
        reward = self.config.task_weight * extrinsic
        metrics = {"reward/extrinsic": extrinsic.mean().item()}
        if self.rnd is not None:
            frames = torch.as_tensor(np.ascontiguousarray(batch["next_obs"][:, -1]))
            intrinsic = self.rnd(Transition(next_obs=frames), learn=True).to(self.device)
            reward = reward + self.config.rnd_weight * intrinsic
            metrics["reward/rnd"] = intrinsic.mean().item()
        metrics["reward/total"] = reward.mean().item()
        return reward, metrics

    def update(self, replay: Any) -> dict[str, float]:
        cfg = self.config
        batch = replay.sample_transitions(cfg.batch_size, cfg.n_step, cfg.discount, cfg.frame_stack)
        reward, metrics = self.training_reward(batch)
        with self.autocast():
            features = self.encoder(self.augment(batch["obs"]))
            with torch.no_grad():
                next_features = self.encoder(self.augment(batch["next_obs"]))
        action = torch.as_tensor(batch["action"], device=self.device)
        discount = torch.as_tensor(batch["discount"], device=self.device)
        metrics.update(self.update_critic(features, action, reward, discount, next_features))
        if self.updates % cfg.actor_update_every == 0:
            metrics.update(self.update_actor(features.detach()))
        soft_update(self.critic_target, self.critic, cfg.tau)
        self.updates += 1
        return metrics

    def update_critic(
        self, features: Tensor, action: Tensor, reward: Tensor, discount: Tensor, next_features: Tensor
    ) -> dict[str, float]:
        """Both critics (and the encoder) towards ``reward + discount * next_value``."""
        with torch.no_grad():
            target = reward + discount * self.next_value(next_features).float()
        with self.autocast():
            q1, q2 = self.critic(features, action)
        loss = F.mse_loss(q1.float(), target) + F.mse_loss(q2.float(), target)
        self.step("critic", loss)
        return {"critic/loss": loss.item(), "critic/q": q1.float().mean().item(), "critic/target": target.mean().item()}

    def min_q(self, critic: nn.Module, features: Tensor, action: Tensor) -> Tensor:
        with self.autocast():
            q1, q2 = critic(features, action)
        return torch.min(q1, q2).float()

    def step(self, optimizer: str, loss: Tensor) -> None:
        self.optimizers[optimizer].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers[optimizer].step()

    # State ----------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "agent": self.name,
            "modules": {name: module.state_dict() for name, module in self.modules.items()},
            "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            "counters": {"updates": self.updates, "env_steps": self.env_steps},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("agent") != self.name:
            raise ValueError(f"a saved {state.get('agent')!r} agent cannot be loaded into a {self.name!r} agent")
        for name, module in self.modules.items():
            module.load_state_dict(state["modules"][name])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.updates = int(state["counters"]["updates"])
        self.env_steps = int(state["counters"]["env_steps"])
