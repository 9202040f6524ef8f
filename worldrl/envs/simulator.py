"""A learned simulator: an action-conditioned world model served as a (natively batched) Gymnasium env.

:class:`WorldModelVectorEnv` steps ``num_envs`` imagined episodes with one
model call for all rows and one decode; :class:`WorldModelEnv` is the single
env (one row). Both are registered as ``worldrl/sim-v0``::

    env = gym.make("worldrl/sim-v0", model="runs/vgpt/video_model", start_frames="data/cartpole/random")
    envs = gym.make_vec("worldrl/sim-v0", num_envs=64, vectorization_mode="vector_entry_point", model=..., ...)

- **Backends** (:mod:`worldrl.envs.simulator_backends`; the env owns the step
  contract below, the backend the predictions): ``model`` is a video model
  folder (any action-conditioned VideoModel: VideoGPT, MaskGIT, TECO; one
  :meth:`~worldrl.models.predictors.VideoModel.sample_step` per step, heads
  on its features) or a DreamerV3 ``train-agent`` run (its folder or
  ``agent.pt``: the RSSM posterior over the burn-in frames, then the prior
  per action; the decoder's mean image, the reward and continue heads; no
  tokenizer codes, so no ``obs_type="codes"``, ``top_k`` or ``task_id``).
- **Episodes** start from real frames: a row resets by clearing its model
  state and feeding ``burn_in`` consecutive frames (and their actions) of a
  random episode of ``start_frames`` (a dataset folder; from a random point,
  or the episode's start with ``start="first"``). The last of them is the
  reset observation. Episodes end when the continue head predicts a terminal
  frame (probability of continuing < 0.5; ``terminate=False`` ignores it) or
  are truncated after ``horizon`` steps (default: the longest training episode;
  a DreamerV3 run's ``max_episode_steps``).
- **Observations** are the decoded frames (uint8, the real env's shape), or
  with ``obs_type="codes"`` the tokenizer codes ``int64 [h, w]`` (no decoding).
- **Actions**: the real env's action space, read from the model folder's
  ``simulator.json`` (:mod:`worldrl.envs.simulator_spec`; for a DreamerV3
  run the agent's space, read from its weights) or passed as
  ``action_space=``; Discrete actions go to the model one-hot, Box actions
  are clipped to the bounds.
- **Rewards**: ``reward="head"`` (the reward head trained by
  ``train-video-model`` with ``heads: {reward: true}``, or DreamerV3's), ``"viper"`` (the
  log-likelihood of the imagined frame under a separate expert video model
  ``viper_model``, with :class:`~worldrl.wrappers.viper.VIPERScorer` options
  in ``viper``; any backend) or ``"head+viper"``, summed with ``weights`` (default 1 each).
  ``info`` holds ``task_reward`` (the head's reward, else the reward),
  ``continue`` (the continue probability, NaN without the head) and
  ``viper_logp`` with VIPER.
- **Randomness**: a seeded reset fixes each row's start frames (row ``i``
  of a vector env reset with ``seed`` uses ``seed + i``, as a single env reset
  with that seed) and the sampling generator. At ``temperature=0`` (greedy
  codes; DreamerV3: the latents' modes) a row of a vector env equals the
  single env with that row's seed (DreamerV3 frames up to a rounding step:
  batched float sums differ in the last bits); with sampling, the rows share
  one generator (reproducible, but not the single env's draws).
- **Subsets and saved state**: ``reset(seed=[s_0, ..., s_N-1], options={"reset_mask": mask})`` restarts only
  the masked rows (row ``i`` from seed ``s_i``; ``None`` leaves a row's start-frame RNG as it is; the first
  given seed reseeds the shared generator), the others keep going; ``autoreset_mode="disabled"`` leaves
  finished rows to such resets (as ``train-agent`` does). As rows share one generator, replaying a row's
  actions does not bring back its frames: :meth:`WorldModelVectorEnv.state_dict` holds everything that
  decides the future instead (the backend's per-row model state, the current frames, step counters, the
  generator's and the start-frame RNGs' states, VIPER's context), as CPU tensors and plain Python values
  (``weights_only`` checkpoints); after ``load_state_dict`` the env steps exactly as the saved one would.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from worldrl.envs.simulator_backends import (
    SimulatorBackend,
    load_backend,
    load_stream_state,
    restored,
    saved,
    stream_state_dict,
)
from worldrl.wrappers.viper import one_hot_actions

REWARDS = ("head", "viper", "head+viper")
OBS_TYPES = ("pixels", "codes")


class StartFrames:
    """Real burn-in windows from a dataset folder: ``length`` consecutive frames and their actions."""

    def __init__(self, folder: str | Path, frame_shape: Sequence[int], action_dim: int, length: int,
                 start: str = "random", cache_episodes: int = 16):
        from worldrl.data.folder import EpisodeFolder

        self.folder = EpisodeFolder(folder)
        if not len(self.folder):
            raise ValueError(f"start_frames {folder} holds no episodes")
        if tuple(self.folder.image_shape) != tuple(frame_shape):
            raise ValueError(f"start_frames {folder} has frames of shape (H, W, C) = {tuple(self.folder.image_shape)}"
                             f" but the model's tokenizer takes {tuple(frame_shape)}")
        if start not in ("random", "first"):
            raise ValueError(f"start must be 'random' or 'first', got {start!r}")
        self.length = min(length, int(self.folder.lengths.min()) + 1)
        self.action_dim, self.start, self.cache_episodes = action_dim, start, cache_episodes
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()

    def _episode(self, index: int) -> dict[str, np.ndarray]:
        if index not in self._cache:
            from worldrl.data.episode import load_episode

            path = self.folder.path / self.folder.infos[index].file
            episode = load_episode(path, keys=("image", "action"))
            if episode["action"].shape[1:] != (self.action_dim,):
                raise ValueError(f"{path} has actions of size {episode['action'].shape[1:]}, the model "
                                 f"{self.action_dim}")
            self._cache[index] = episode
            while len(self._cache) > self.cache_episodes:
                self._cache.popitem(last=False)
        self._cache.move_to_end(index)
        return self._cache[index]

    def sample(self, rngs: Sequence[np.random.Generator]) -> tuple[np.ndarray, np.ndarray]:
        """One window per generator: frames ``uint8 [n, length, H, W, C]`` and actions ``[n, length, A]``."""
        frames, actions = [], []
        for rng in rngs:
            episode = self._episode(int(rng.integers(len(self.folder))))
            last = len(episode["image"]) - self.length
            begin = int(rng.integers(last + 1)) if self.start == "random" else 0
            frames.append(episode["image"][begin : begin + self.length])
            actions.append(episode["action"][begin : begin + self.length])
        return np.stack(frames), np.stack(actions).astype(np.float32)


class WorldModelVectorEnv(VectorEnv):
    """``num_envs`` imagined episodes stepped together by one model call (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        model: str | Path | None = None,
        start_frames: str | Path | None = None,
        reward: str = "head",
        weights: Mapping[str, float] | None = None,
        horizon: int | None = None,
        obs_type: str = "pixels",
        burn_in: int | None = None,
        start: str = "random",
        temperature: float = 1.0,
        top_k: int | None = None,
        terminate: bool = True,
        viper_model: str | Path | None = None,
        viper: Mapping[str, Any] | None = None,
        action_space: spaces.Space | Mapping[str, Any] | None = None,
        task_id: int | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
        render_mode: str | None = "rgb_array",
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    ):
        from worldrl.device import resolve_device

        if model is None or start_frames is None:
            raise TypeError("worldrl/sim-v0 needs model= (a video model folder or a DreamerV3 run) and "
                            "start_frames= (a dataset folder)")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if reward not in REWARDS or obs_type not in OBS_TYPES:
            raise ValueError(f"reward must be one of {REWARDS} and obs_type one of {OBS_TYPES}, got {reward!r} and "
                             f"{obs_type!r}")
        self.num_envs, self.device = num_envs, resolve_device(device)
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            raise ValueError("WorldModelVectorEnv supports the NEXT_STEP and DISABLED autoreset modes")
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode, self.obs_type = render_mode, obs_type
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
        self.backend: SimulatorBackend = load_backend(model, num_envs, self.device, self.generator,
                                                      action_space=action_space, temperature=temperature,
                                                      top_k=top_k, task_id=task_id)
        backend = self.backend
        if obs_type == "codes" and backend.codes_space is None:
            raise ValueError(f"obs_type='codes' needs a video model on tokenizer codes; {model} has none: use "
                             "obs_type='pixels'")
        self.single_action_space = backend.action_space

        self.weights = {"head": 1.0, "viper": 1.0, **(weights or {})}
        if "head" in reward and not backend.has_reward:
            raise ValueError(f"{model} has no reward head: train it with heads: {{reward: true}}, or use "
                             "reward='viper'")
        self.use_head, self.scorer = "head" in reward, None
        if "viper" in reward:
            from worldrl.wrappers.viper import VIPERScorer

            if viper_model is None:
                raise ValueError("reward='viper' needs viper_model= (an expert video model folder)")
            self.scorer = VIPERScorer(viper_model, backend.frame_shape, num_envs, device=self.device,
                                      **(viper or {}))
        self.terminate = terminate and backend.has_continue
        self.horizon = int(horizon or backend.horizon or 1000)
        self.starts = StartFrames(start_frames, backend.frame_shape, backend.action_dim,
                                  burn_in or backend.default_burn_in, start)

        if obs_type == "pixels":
            self.single_observation_space = spaces.Box(0, 255, tuple(backend.frame_shape), np.uint8)
        else:
            self.single_observation_space = backend.codes_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

        self.frames: np.ndarray | None = None
        self.steps = np.zeros(num_envs, np.int64)
        self.done = np.zeros(num_envs, bool)
        entropy = np.random.SeedSequence(seed).entropy
        self.rngs = [np.random.default_rng([entropy, row]) for row in range(num_envs)]

    @property
    def model(self) -> Any:
        """The backend's model: a :class:`~worldrl.models.predictors.VideoModel` or a DreamerV3 world model."""
        return self.backend.model

    @property
    def state(self) -> Any:
        """The backend's per-row state (a video model's stream state, or the RSSM latents)."""
        return self.backend.state

    @property
    def tokenizer(self) -> Any:
        return getattr(self.backend, "tokenizer", None)

    @property
    def heads(self) -> Any:
        return getattr(self.backend, "heads", None)

    # Gymnasium API --------------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        """Start new episodes in every row, or only in the rows of ``options["reset_mask"]`` (bool ``[N]``).

        ``seed``: an int (row ``i`` gets ``seed + i``) or one seed per row (``None``: that row's start-frame RNG
        goes on); seeding also reseeds the shared sampling generator with the first seed of a reset row. Returns
        every row's observation (the unreset rows' current ones).
        """
        mask = np.ones(self.num_envs, bool) if not options or "reset_mask" not in options else np.asarray(
            options["reset_mask"], bool)
        if mask.shape != (self.num_envs,):
            raise ValueError(f"reset_mask must be bool [{self.num_envs}], got shape {mask.shape}")
        seeds = [seed + row for row in range(self.num_envs)] if isinstance(seed, int) else seed
        if seeds is not None:
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed must be an int or {self.num_envs} seeds, got {len(seeds)}")
            given = [(row, s) for row, s in enumerate(seeds) if s is not None and mask[row]]
            for row, row_seed in given:
                self.rngs[row] = np.random.default_rng(row_seed)
            if given:
                self.generator.manual_seed(int(given[0][1]))
        self._start(mask)
        self.done[mask] = False
        if self.obs_type == "pixels" or self.render_mode is not None:
            self._decode()
        return self._obs(), {}

    def step(self, actions: Any):
        resetting = self.done.copy() if self.autoreset_mode == AutoresetMode.NEXT_STEP else np.zeros_like(self.done)
        head_reward, cont = self.backend.step(self._model_actions(actions))
        self.steps += 1
        if resetting.any():
            self._start(resetting)
        if self.obs_type == "pixels" or self.render_mode is not None or self.scorer is not None:
            self._decode()
        reward = np.zeros(self.num_envs)
        info: dict[str, Any] = {}
        if head_reward is not None:
            info["task_reward"] = np.where(resetting, 0.0, head_reward)
            if self.use_head:
                reward += self.weights["head"] * info["task_reward"]
        if self.scorer is not None:
            logp = self.scorer.observe(self.scorer.encode(self.frames), rows=~resetting)
            info["viper_logp"] = logp
            reward += self.weights["viper"] * np.nan_to_num(self.scorer.likelihood_term(logp))
        info.setdefault("task_reward", reward.copy())
        info["continue"] = np.full(self.num_envs, np.nan) if cont is None else cont
        terminated = np.zeros(self.num_envs, bool)
        if self.terminate:
            terminated = (info["continue"] < 0.5) & ~resetting
        truncated = (self.steps >= self.horizon) & ~terminated & ~resetting
        self.done = terminated | truncated
        return self._obs(), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """The imagined frames ``uint8 [N, H, W, C]`` of the last reset or step."""
        if self.render_mode is None:
            return None
        if self.frames is None:
            self._decode()
        return self.frames

    # Saved state ----------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the env's future, as CPU tensors and plain Python values (see the module
        docstring): the backend's rows, the current frames, step counters and done flags, the sampling generator
        and the start-frame RNGs, and VIPER's context and statistics."""
        state = {
            "num_envs": self.num_envs,
            "backend": self.backend.state_dict(),
            "frames": None if self.frames is None else torch.from_numpy(self.frames.copy()),
            "steps": torch.from_numpy(self.steps.copy()),
            "done": torch.from_numpy(self.done.copy()),
            "generator": self.generator.get_state(),
            "rngs": [rng.bit_generator.state for rng in self.rngs],
            "scorer": None,
        }
        if self.scorer is not None:
            state["scorer"] = {"stream": stream_state_dict(self.scorer.state), "history": saved(self.scorer.history),
                               **self.scorer.state_dict()}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``state`` (of an env made with the same arguments)."""
        if state["num_envs"] != self.num_envs or (state["scorer"] is None) != (self.scorer is None):
            raise ValueError(f"the saved state is of {state['num_envs']} rows{'' if state['scorer'] else ' without'} "
                             f"VIPER; this env has {self.num_envs}{'' if self.scorer else ' without'}")
        self.backend.load_state_dict(state["backend"])
        self.frames = None if state["frames"] is None else state["frames"].numpy().copy()
        self.steps = state["steps"].numpy().copy()
        self.done = state["done"].numpy().copy()
        self.generator.set_state(state["generator"].clone())
        self.rngs = []
        for saved_rng in state["rngs"]:
            self.rngs.append(np.random.default_rng())
            self.rngs[-1].bit_generator.state = saved_rng
        if self.scorer is not None:
            load_stream_state(self.scorer.state, state["scorer"]["stream"])
            self.scorer.history = restored(state["scorer"]["history"], self.device)
            self.scorer.load_state_dict(state["scorer"])

    # Internals ------------------------------------------------------------------------------------------------------
    def _model_actions(self, actions: Any) -> torch.Tensor:
        """Env actions ``[N, ...]`` -> the model's ``float [N, A]`` (one-hot, or clipped to the bounds)."""
        space = self.single_action_space
        actions = np.asarray(actions)
        if isinstance(space, spaces.Discrete):
            if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer) or not (
                    ((actions >= space.start) & (actions < space.start + space.n)).all()):
                raise ValueError(f"actions must be {self.num_envs} ints in [{space.start}, {space.start + space.n}), "
                                 f"got {actions!r}")
            return one_hot_actions(space, actions, self.num_envs).to(self.device)
        if actions.shape != (self.num_envs, *space.shape) or not np.isfinite(actions).all():
            raise ValueError(f"actions must be finite with shape {(self.num_envs, *space.shape)}, got "
                             f"{actions.shape}")
        clipped = np.clip(actions, space.low, space.high).astype(np.float32)
        return torch.as_tensor(clipped, device=self.device).reshape(self.num_envs, -1)

    def _start(self, rows: np.ndarray) -> None:
        """Reset ``rows`` (bool ``[N]``) from burn-in windows of real frames (and VIPER's context with them)."""
        index = np.flatnonzero(rows)
        frames, actions = self.starts.sample([self.rngs[row] for row in index])
        self.backend.start(rows, frames, torch.as_tensor(actions, device=self.device))
        if self.scorer is not None:
            self.scorer.reset(rows)
            full = np.zeros((self.num_envs, *frames.shape[2:]), np.uint8)
            for t in range(frames.shape[1]):
                full[index] = frames[:, t]
                self.scorer.add_context(self.scorer.encode(full), rows=rows)
        self.steps[rows] = 0

    def _decode(self) -> None:
        self.frames = self.backend.frames()

    def _obs(self) -> np.ndarray:
        return self.frames.copy() if self.obs_type == "pixels" else self.backend.codes()


class WorldModelEnv(gym.Env):
    """One imagined episode: :class:`WorldModelVectorEnv` with a single row (same arguments, no autoreset)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, **kwargs: Any):
        kwargs.pop("autoreset_mode", None)
        self.vector = WorldModelVectorEnv(1, autoreset_mode=AutoresetMode.DISABLED, **kwargs)
        self.observation_space = self.vector.single_observation_space
        self.action_space = self.vector.single_action_space
        self.render_mode = self.vector.render_mode

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, _ = self.vector.reset(seed=None if seed is None else [seed])
        return obs[0], {}

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.vector.step(np.asarray(action)[None])
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), {
            key: float(value[0]) for key, value in info.items()}

    def render(self) -> np.ndarray | None:
        frames = self.vector.render()
        return None if frames is None else frames[0]

    def close(self) -> None:
        self.vector.close()
        super().close()
