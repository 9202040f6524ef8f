"""The DreamerV3 agent: acts in a batch of envs with a per-env recurrent state, trains on replayed sequences.

One :meth:`DreamerV3.train_step` on a batch ``[B, L, ...]`` (the format of
:meth:`~worldrl.data.ReplayBuffer.sample_sequences`) updates, in order, the
world model, Plan2Explore's ensemble (when its weight is > 0), the actor and
the critics, each with its own Adam and global-norm gradient clipping; the
actor-critic imagines from all ``B * L`` posterior states of the batch. Each
module's loss is differentiated with respect to its own parameters only
(``backward(inputs=...)``), as the JAX original differentiates each loss
separately: the actor's backprop-through-dynamics gradient never leaks into
the world model or the critic.

As an :class:`~worldrl.agents.Agent` (``worldrl train-agent --agent
dreamerv3``) one :meth:`DreamerV3.update` trains on ``batch_size`` replayed
sequences of ``batch_length``; the acting state (each env's latent and
previous action) is plain tensors, so a run checkpoints it as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from worldrl.agents.base import Agent
from worldrl.agents.dreamerv3.behavior import ActorCritic
from worldrl.agents.dreamerv3.config import DreamerV3Config, OptimizerConfig
from worldrl.agents.dreamerv3.plan2explore import Plan2Explore
from worldrl.agents.dreamerv3.world_model import WorldModel
from worldrl.device import resolve_device

BOOL_KEYS = ("is_first", "is_last", "is_terminal")
OPEN_LOOP_CONTEXT = 5
"""Observed frames before open-loop video predictions (as DreamerV3's report)."""
OPEN_LOOP_CLIPS = 4


def make_optimizer(params: Iterable[nn.Parameter], config: OptimizerConfig) -> torch.optim.Adam:
    return torch.optim.Adam(list(params), lr=config.lr, eps=config.eps)


class DreamerV3(Agent):
    """DreamerV3 with optional Plan2Explore; actions are float32 ``[N, A]`` (one-hot for discrete spaces)."""

    name: ClassVar[str] = "dreamerv3"
    config_class: ClassVar[type] = DreamerV3Config
    discrete_actions: ClassVar[bool] = True
    vector_observations: ClassVar[bool] = True
    """Takes ``state`` vectors (``vector_dim``), with or without ``image`` frames."""

    def __init__(self, config: DreamerV3Config, frame_shape: tuple[int, int, int] | None, action_dim: int,
                 device: str | torch.device | None = None, *, discrete: bool = False, vector_dim: int | None = None):
        """``frame_shape`` ``(H, W, C)`` of ``image`` (None: no images), ``vector_dim`` of ``state`` (None: none);
        ``device`` overrides ``config.device``."""
        self.config, self.action_dim, self.discrete = config, action_dim, discrete
        self.device = resolve_device(config.device if device is None else device)
        image_shape = None if frame_shape is None else tuple(frame_shape)
        self.env_steps = 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.world_model = WorldModel(config.world_model, action_dim, image_shape, vector_dim)
            rssm = self.world_model.rssm
            b = config.behavior
            self.plan2explore = (Plan2Explore(rssm, action_dim, config.plan2explore)
                                 if b.disagreement_weight > 0 else None)
            self.behavior = ActorCritic(rssm.feat_dim, action_dim, discrete, b,
                                        {"reward": b.reward_weight, "disagreement": b.disagreement_weight})
        self.modules = nn.ModuleDict({"world_model": self.world_model, "behavior": self.behavior})
        if self.plan2explore is not None:
            self.modules["plan2explore"] = self.plan2explore
        self.modules.to(self.device)
        self.optimizers = {
            "world_model": make_optimizer(self.world_model.parameters(), config.world_model.optimizer),
            "actor": make_optimizer(self.behavior.actor.parameters(), b.actor_optimizer),
            "critic": make_optimizer((p for p in self.behavior.critics.parameters() if p.requires_grad),
                                     b.critic_optimizer),
        }
        self.clips = {"world_model": config.world_model.optimizer.clip, "actor": b.actor_optimizer.clip,
                      "critic": b.critic_optimizer.clip}
        if self.plan2explore is not None:
            self.optimizers["plan2explore"] = make_optimizer(self.plan2explore.parameters(),
                                                             config.plan2explore.optimizer)
            self.clips["plan2explore"] = config.plan2explore.optimizer.clip
        self.updates = 0

    @classmethod
    def from_spaces(cls, config: DreamerV3Config, observation_space: gym.Space, action_space: gym.Space) -> DreamerV3:
        """Build for an env: a uint8 image Box, a float vector Box, or a Dict of ``pixels``/``image`` and ``state``."""
        spaces = dict(observation_space.spaces) if isinstance(observation_space, gym.spaces.Dict) else (
            {"image" if observation_space.dtype == np.uint8 else "state": observation_space})
        image = spaces.get("image", spaces.get("pixels"))
        state = spaces.get("state")
        if isinstance(action_space, gym.spaces.Discrete):
            action_dim, discrete = int(action_space.n), True
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            action_dim, discrete = int(action_space.shape[0]), False
        else:
            raise ValueError(f"DreamerV3 needs a Discrete or a 1-D Box action space, got {action_space}")
        return cls(config, None if image is None else tuple(image.shape), action_dim, discrete=discrete,
                   vector_dim=None if state is None else int(np.prod(state.shape)))

    @property
    def replayed_steps_per_update(self) -> int:
        return self.config.batch_size * self.config.batch_length

    @property
    def min_steps_per_env(self) -> int:
        return self.config.batch_length

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16)

    def to_tensors(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """The keys the model reads, as tensors on the device (frames stay uint8; pinned copies for CUDA)."""
        out = {}
        for key in ("image", "state", "action", "reward", *BOOL_KEYS):
            if key not in batch:
                continue
            value = batch[key] if isinstance(batch[key], Tensor) else torch.from_numpy(np.ascontiguousarray(batch[key]))
            if key in BOOL_KEYS:
                value = value.bool()
            elif key != "image":
                value = value.float()
            if self.device.type == "cuda" and value.device.type == "cpu":
                value = value.pin_memory()
            out[key] = value.to(self.device, non_blocking=True)
        return out

    # ------------------------------------------------------------------ acting

    @torch.no_grad()
    def act(self, obs: Mapping[str, Any], state: Any = None, explore: bool = True,
            generator: torch.Generator | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Actions float32 ``[N, A]`` for ``obs`` (``image``/``state`` and ``is_first`` per env) and the next state.

        ``state`` is None at the start; envs whose ``is_first`` is set restart
        from the learned initial latent with a zero previous action. With
        ``explore`` actions are sampled, else the policy's mode. Continuous
        actions are clipped to ``[-1, 1]``.
        """
        inputs = self.to_tensors(obs)
        count = len(inputs["is_first"])
        rssm = self.world_model.rssm
        if state is None:
            state = {"latent": rssm.initial(count), "action": torch.zeros(count, self.action_dim, device=self.device)}
        else:
            state = self._on_device(state)
        with self.autocast():
            embed = self.world_model.encode({key: value[:, None] for key, value in inputs.items()})[:, 0]
            latent, _ = rssm.obs_step(state["latent"], state["action"], rssm.project_embed(embed),
                                      inputs["is_first"], generator)
            policy = self.behavior.actor(rssm.feat(latent))
        action = policy.sample(generator) if explore else policy.mode()
        action = action.float() if self.discrete else action.float().clamp(-1.0, 1.0)
        return action.cpu().numpy(), {"latent": latent, "action": action}

    def _on_device(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """An acting state as tensors on the device (a resumed run restores it as numpy arrays)."""
        device = self.device
        return {key: self._on_device(value) if isinstance(value, Mapping) else torch.as_tensor(value, device=device)
                for key, value in state.items()}

    def took(self, state: Mapping[str, Any], action: np.ndarray) -> dict[str, Any]:
        """The next step's RSSM input is the action the env took (random ones before learning starts)."""
        return {**state, "action": torch.as_tensor(action, dtype=torch.float32, device=self.device)}

    # ---------------------------------------------------------------- training

    def _step(self, name: str, loss: Tensor, params: list[nn.Parameter]) -> Tensor:
        """Backward ``loss`` into ``params`` only, clip their global norm and step their optimizer."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=params)
        norm = nn.utils.clip_grad_norm_(params, self.clips[name])
        optimizer.step()
        return norm

    def train_step(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """One update of every module on a replay batch ``[B, L, ...]``; returns scalar metrics."""
        data = self.to_tensors(batch)
        wm = self.world_model
        metrics: dict[str, Tensor] = {}
        with self.autocast():
            wm_loss, wm_metrics, post = wm.loss(data)
        metrics.update(wm_metrics)
        metrics["wm/grad_norm"] = self._step("world_model", wm_loss, list(wm.parameters()))
        if self.plan2explore is not None:
            with self.autocast():
                p2e_loss, p2e_metrics = self.plan2explore.loss(post, data["action"], data["is_first"], wm.rssm)
            metrics.update(p2e_metrics)
            metrics["plan2explore/grad_norm"] = self._step("plan2explore", p2e_loss,
                                                           list(self.plan2explore.parameters()))
        start = {key: value.detach().flatten(0, 1) for key, value in post.items()}
        start_cont = (~data["is_terminal"]).flatten()
        with self.autocast():
            actor_loss, critic_loss, behavior_metrics, _ = self.behavior.loss(
                wm.rssm, wm.cont_logits, self.imagined_rewards, start, start_cont)
        metrics.update(behavior_metrics)
        metrics["behavior/actor_grad_norm"] = self._step("actor", actor_loss, list(self.behavior.actor.parameters()))
        critic_params = [p for p in self.behavior.critics.parameters() if p.requires_grad]
        metrics["behavior/critic_grad_norm"] = self._step("critic", critic_loss, critic_params)
        self.behavior.update_slow()
        self.updates += 1
        names = list(metrics)
        values = torch.stack([metrics[name].detach().float().reshape(()) for name in names]).cpu().tolist()
        return dict(zip(names, values))

    def imagined_rewards(self, feat: Tensor, actions: Tensor) -> dict[str, Tensor]:
        """Each weighted reward term ``[H, N]`` of imagined steps (see :data:`~.behavior.RewardFn`)."""
        rewards = {}
        if "reward" in self.behavior.reward_weights:
            rewards["reward"] = self.world_model.reward(feat[1:]).mean
        if self.plan2explore is not None:
            rewards["disagreement"] = self.plan2explore.reward(feat, actions)
        return rewards

    def update(self, replay: Any) -> dict[str, float]:
        """One :meth:`train_step` on ``batch_size`` sequences of ``batch_length`` sampled from ``replay``."""
        return self.train_step(replay.sample_sequences(self.config.batch_size, self.config.batch_length))

    def open_loop_video(self, replay: Any, seed: int) -> tuple[Tensor, Tensor]:
        """Replayed clips of ``batch_length`` and the world model's: 5 observed frames, then open loop.

        Clips stay inside one episode where the replay holds such windows.
        """
        rng, length = np.random.default_rng(seed), self.config.batch_length
        try:
            batch = replay.sample_sequences(OPEN_LOOP_CLIPS, length, rng, within_episode=True)
        except ValueError:
            batch = replay.sample_sequences(OPEN_LOOP_CLIPS, length, rng)
        data = self.to_tensors(batch)
        generator = torch.Generator(self.device).manual_seed(seed)
        with self.autocast():
            predicted = self.world_model.open_loop(data, min(OPEN_LOOP_CONTEXT, length - 1), generator)
        real = data["image"].float() / 127.5 - 1.0
        predicted = (predicted * 2.0).clamp(-1.0, 1.0)
        return real.permute(0, 4, 1, 2, 3), predicted.permute(0, 4, 1, 2, 3)

    # -------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Weights (slow critics and return normalisers included), optimizer states and counters."""
        return {"agent": self.name, "modules": self.modules.state_dict(),
                "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
                "env_steps": int(self.env_steps), "updates": int(self.updates)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("agent", self.name) != self.name:
            raise ValueError(f"a saved {state.get('agent')!r} agent cannot be loaded into a {self.name!r} agent")
        self.modules.load_state_dict(state["modules"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.env_steps, self.updates = int(state["env_steps"]), int(state["updates"])
