"""VIPER rewards: the log-likelihood of what the agent sees under a video model trained on expert videos.

For the transition ``(x_t, a_t, x_{t+1})`` the reward is

    r_t = scale * ln p(x_{t+1} | x_{t+1-s}, ..., x_{t+1-k*s}) + beta * r_expl(x_t, a_t, x_{t+1})

(VIPER, eq. 6.6-6.7): it scores the frame the action *led to*, given up to
``k`` earlier frames ``s`` apart. The likelihood is over the tokenizer's codes
of the frame (the tokenizer travels with the video model's checkpoint), and
every env step costs one streaming step of the model for the new frame
(:meth:`~worldrl.models.predictors.VideoModel.step`), batched over the
sub-envs of a vector env. The context is cleared on reset; the reset frame
gets no reward of its own. ``info`` carries ``task_reward`` (the env's own
reward), ``viper_logp`` (the raw log-likelihood, nats) and ``expl`` (the
bonus before ``beta``).

Options that change the scale are off by default, as in the paper:
``scale`` multiplies the log-likelihood, and ``normalize=True`` standardises
it by a running mean and standard deviation (kept in :meth:`VIPERScorer.state_dict`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from worldrl.exploration.base import RunningMeanStd, Transition
from worldrl.models.checkpoint import CheckpointError

Exploration = Callable[[Transition], Any]


def image_space(space: spaces.Space, obs_key: str | None) -> spaces.Box:
    """The uint8 ``[H, W, C]`` image space inside ``space``; a clear error when there is none."""
    if isinstance(space, spaces.Dict):
        images = [key for key, sub in space.spaces.items() if _is_image(sub)]
        if obs_key is None:
            raise TypeError(
                f"the observation space is a Dict with keys {list(space.spaces)}: pass obs_key= naming the image "
                f"observation{f' (e.g. obs_key={images[0]!r})' if images else ''}"
            )
        if obs_key not in space.spaces:
            raise KeyError(f"obs_key {obs_key!r} is not in the observation space's keys {list(space.spaces)}")
        space = space.spaces[obs_key]
    elif obs_key is not None:
        raise TypeError(f"obs_key={obs_key!r} given, but the observation space is not a Dict: {space}")
    if not _is_image(space):
        raise TypeError(
            f"VIPER scores image observations (uint8 [H, W, C]), but the observation space is {space}; "
            "make the env with pixel observations (e.g. obs_type='pixels', or a Dict space with obs_key=)"
        )
    return space


def _is_image(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def one_hot_actions(space: spaces.Space, actions: Any, batch: int) -> torch.Tensor:
    """Actions as float ``[B, A]``: one-hot for Discrete spaces, flattened otherwise."""
    if isinstance(space, spaces.Discrete):
        index = torch.as_tensor(np.asarray(actions), dtype=torch.long).reshape(batch) - int(space.start)
        return torch.nn.functional.one_hot(index, int(space.n)).float()
    return torch.as_tensor(np.asarray(actions, dtype=np.float32)).reshape(batch, -1)


class VIPERScorer:
    """The reward model of ``num_envs`` parallel episodes: tokenizer, video model, streaming state, bonus.

    ``video_model`` is a checkpoint folder (``VideoModel.save``, with its
    ``tokenizer/``) or a loaded model together with ``tokenizer``. The
    scorer checks at construction that the tokenizer takes ``frame_shape``.
    """

    def __init__(
        self,
        video_model: str | Path | torch.nn.Module,
        frame_shape: Sequence[int],
        num_envs: int = 1,
        tokenizer: str | Path | torch.nn.Module | None = None,
        context: int | None = None,
        stride: int | None = None,
        task_id: int | None = None,
        mask_scoreboard: str | None = None,
        scale: float = 1.0,
        normalize: bool = False,
        device: str | torch.device = "auto",
        bf16: bool = False,
    ):
        from worldrl.device import resolve_device
        from worldrl.models.predictors import load_video_model
        from worldrl.models.tokenizers import load_tokenizer

        self.device = resolve_device(device)
        if isinstance(video_model, (str, Path)):
            folder = Path(video_model)
            if not folder.is_dir():
                raise CheckpointError(f"video model folder not found: {folder}")
            tokenizer = tokenizer if tokenizer is not None else folder / "tokenizer"
            if isinstance(tokenizer, Path) and not tokenizer.is_dir():
                raise CheckpointError(f"{folder} has no tokenizer/ folder: pass tokenizer= explicitly")
            video_model = load_video_model(folder, self.device, tokenizer=tokenizer)
        if tokenizer is None:
            raise ValueError("a loaded video model needs its tokenizer: pass tokenizer=")
        if isinstance(tokenizer, (str, Path)):
            tokenizer = load_tokenizer(tokenizer, self.device)
        self.model, self.tokenizer = video_model.to(self.device).eval(), tokenizer.to(self.device).eval()
        from worldrl.models.predictors import check_tokenizer

        check_tokenizer(self.model, self.tokenizer)
        if tokenizer.frames_per_code != 1:
            raise ValueError(f"VIPER needs a per-frame tokenizer; this one codes {tokenizer.frames_per_code} frames "
                             "per code step")
        if tuple(frame_shape) != tuple(tokenizer.frame_shape):
            raise ValueError(
                f"the env's frames have shape (H, W, C) = {tuple(frame_shape)} but the video model's tokenizer "
                f"takes {tuple(tokenizer.frame_shape)}: make the env with frames of that size "
                f"(e.g. size={tokenizer.frame_shape[0]})"
            )
        config = self.model.config
        self.context = config.context if context is None else int(context)
        if not 0 <= self.context <= config.context:
            raise ValueError(f"context must be in [0, {config.context}] (the video model's), got {context}")
        if stride is not None and stride != config.stride:
            raise ValueError(f"the video model was trained with frame stride {config.stride}, got stride={stride}")
        self.num_envs, self.scale, self.bf16 = num_envs, float(scale), bf16
        self.task = None
        if config.num_tasks:
            if task_id is None:
                raise ValueError(f"the video model is conditioned on {config.num_tasks} tasks: pass task_id=")
            self.task = torch.full((num_envs,), int(task_id), dtype=torch.long, device=self.device)
        elif task_id is not None:
            raise ValueError("the video model has no task conditioning; task_id must be None")
        self.regions = []
        if mask_scoreboard:
            from worldrl.wrappers.scoreboard import scaled_regions

            self.regions = scaled_regions(mask_scoreboard, frame_shape[0], frame_shape[1])
        self.normalizer = RunningMeanStd() if normalize else None
        self.state = self.model.init_state(num_envs, self.device)
        self.history: list[list[torch.Tensor]] = [[] for _ in range(num_envs)]

    # Frames -> codes ------------------------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames ``[N, H, W, C]`` -> codes ``[N, h, w]`` (score area masked first, if set)."""
        frames = np.ascontiguousarray(frames)
        if self.regions:
            frames = frames.copy()
            for rows, cols in self.regions:
                frames[:, rows, cols] = 0
        with self._autocast():
            return self.tokenizer.encode(torch.as_tensor(frames, device=self.device)[:, None])[:, 0]

    def features(self, codes: torch.Tensor) -> torch.Tensor:
        """The tokenizer's code vectors of ``codes`` ``[N, h, w]``, flattened to ``[N, F]`` (for disagreement)."""
        return self.tokenizer.quantizer.indices_to_codes(codes).float().flatten(1)

    # Streaming ------------------------------------------------------------------------------------------------------
    def reset(self, rows: np.ndarray) -> None:
        """Start new episodes in ``rows`` (bool ``[N]``): their contexts are cleared."""
        rows = np.asarray(rows, dtype=bool)
        self.model.reset_state(self.state, torch.as_tensor(rows, device=self.device))
        for row in np.flatnonzero(rows):
            self.history[row] = []

    def observe(self, codes: torch.Tensor, rows: np.ndarray | None = None) -> np.ndarray:
        """Feed the next frames' ``codes`` ``[N, h, w]`` to ``rows`` (all if None); return their ``ln p`` given
        their contexts (nats, float64 ``[N]``; NaN for the other rows, which do not move)."""
        rows = np.ones(self.num_envs, dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
        logp = np.full(self.num_envs, np.nan)
        if not rows.any():
            return logp
        if self.context < self.model.config.context:
            logp[rows] = self._windows(np.flatnonzero(rows), codes)
            return logp
        with self._autocast():
            _, out = self.model.step(self.state, codes, self.task, rows=torch.as_tensor(rows, device=self.device))
        logp[rows] = out.double().cpu().numpy()[rows]
        return logp

    def add_context(self, codes: torch.Tensor, rows: np.ndarray | None = None) -> None:
        """Feed the next frames' ``codes`` ``[N, h, w]`` to ``rows`` (all if None) as context only, without scoring
        them: the state ends up as after :meth:`observe` (reset frames, a simulator's burn-in)."""
        rows = np.ones(self.num_envs, dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
        if not rows.any():
            return
        if self.context < self.model.config.context:
            for row in np.flatnonzero(rows):
                self._extend_history(row, codes[row])
            return
        with self._autocast():
            self.model.observe(self.state, codes, self.task, rows=torch.as_tensor(rows, device=self.device))

    def _extend_history(self, row: int, codes: torch.Tensor) -> list[torch.Tensor]:
        """Append a frame to the row's last ``context * stride + 1`` frames (the newest one's window and itself)."""
        self.history[row] = (self.history[row] + [codes])[-(self.context * self.model.config.stride + 1) :]
        return self.history[row]

    def _windows(self, rows: np.ndarray, codes: torch.Tensor) -> np.ndarray:
        """A shorter context than the model's: rebuild each row's window in a fresh stream (its context frames
        observed, the new one scored), slower; for ablations such as k=0."""
        out = []
        for row in rows:
            history = self._extend_history(row, codes[row])
            task = None if self.task is None else self.task[row : row + 1]
            state = self.model.init_state(1, self.device)
            with self._autocast():
                for frame in history[:-1]:
                    self.model.observe(state, frame[None], task)
                out.append(float(self.model.step(state, history[-1][None], task)[1][0]))
        return np.asarray(out)

    # Reward ---------------------------------------------------------------------------------------------------------
    def likelihood_term(self, logp: np.ndarray) -> np.ndarray:
        """``scale * ln p``, standardised by running statistics when ``normalize`` is on."""
        valid = ~np.isnan(logp)
        if self.normalizer is None:
            return self.scale * logp
        self.normalizer.update(torch.as_tensor(logp[valid]))
        mean, std = float(self.normalizer.mean), float(self.normalizer.std)
        return self.scale * (logp - mean) / std

    @torch.no_grad()
    def relabel(self, images: np.ndarray) -> np.ndarray:
        """``ln p`` of every frame of one stored episode ``uint8 [T+1, H, W, C]`` (row 0, the reset frame: NaN).

        Uses batch ``log_prob`` over the whole episode, which equals streaming.
        """
        images = np.asarray(images)
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(self.tokenizer.frame_shape):
            raise ValueError(f"images must be uint8 [T+1, {', '.join(map(str, self.tokenizer.frame_shape))}], got "
                             f"{images.shape}")
        codes = torch.cat([self.encode(images[i : i + 256]) for i in range(0, len(images), 256)])
        task = None if self.task is None else self.task[:1]
        if self.context == self.model.config.context:
            with self._autocast():
                logp = self.model.log_prob(codes[None], task).frame[0].double().cpu().numpy()
        else:
            saved, self.history = self.history, [[] for _ in range(self.num_envs)]
            logp = np.asarray([self._windows(np.array([0]), codes[t : t + 1])[0] for t in range(len(codes))])
            self.history = saved
        logp[0] = np.nan
        return logp

    def state_dict(self) -> dict[str, Any]:
        return {"normalizer": None if self.normalizer is None else self.normalizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.normalizer is not None and state.get("normalizer") is not None:
            self.normalizer.load_state_dict(state["normalizer"])


def make_exploration(
    exploration: str | Exploration | None, frame_shape: Sequence[int], feature_dim: int, action_dim: int,
    device: torch.device,
) -> Exploration | None:
    """``"rnd"``, ``"disagreement"``, a callable ``(Transition) -> [B]`` (used as is), or None."""
    if exploration is None or callable(exploration):
        return exploration
    from worldrl.exploration import make_exploration as build

    if exploration == "rnd":
        return build("rnd", obs_shape=tuple(frame_shape), device=device)
    if exploration == "disagreement":
        return build("disagreement", feature_dim=feature_dim, action_dim=action_dim, device=device)
    raise ValueError(f"exploration must be 'rnd', 'disagreement', a callable or None, got {exploration!r}")


class _RewardMixin:
    """What the single and the vector wrapper share: building the scorer and combining the reward terms."""

    def _setup(
        self, observation_space: spaces.Space, action_space: spaces.Space, num_envs: int,
        video_model: str | Path | torch.nn.Module, obs_key: str | None = None, beta: float = 1.0,
        exploration: str | Exploration | None = None, learn_exploration: bool = True, **scorer_kwargs: Any,
    ) -> None:
        """Build the scorer (``scorer_kwargs``: :class:`VIPERScorer`'s options) and the exploration bonus."""
        self.obs_key = obs_key
        frame_space = image_space(observation_space, obs_key)
        self.scorer = VIPERScorer(video_model, frame_space.shape, num_envs, **scorer_kwargs)
        self.beta, self.learn_exploration = float(beta), learn_exploration
        self.action_space_single = action_space
        action_dim = int(action_space.n) if isinstance(action_space, spaces.Discrete) else int(
            np.prod(action_space.shape))
        feature_dim = self.scorer.tokenizer.quantizer.dim * int(np.prod(self.scorer.tokenizer.latent_shape))
        self.exploration = make_exploration(exploration, frame_space.shape, feature_dim, action_dim,
                                            self.scorer.device)
        self.last_frames: np.ndarray | None = None
        self.last_codes: torch.Tensor | None = None

    def _frames(self, obs: Any) -> np.ndarray:
        return np.asarray(obs[self.obs_key] if self.obs_key is not None else obs)

    def _bonus(self, rows: np.ndarray, frames: np.ndarray, codes: torch.Tensor, actions: Any) -> np.ndarray:
        """The exploration bonus of the transitions of ``rows`` (0 elsewhere and without exploration)."""
        bonus = np.zeros(len(rows))
        if self.exploration is None or not rows.any():
            return bonus
        index = np.flatnonzero(rows)
        actions = one_hot_actions(self.action_space_single, actions, len(rows))[index]
        rows_t = torch.as_tensor(index, device=self.scorer.device)
        transition = Transition(
            next_obs=torch.as_tensor(frames[index], device=self.scorer.device),
            obs=torch.as_tensor(self.last_frames[index], device=self.scorer.device),
            action=actions.to(self.scorer.device),
            features=self.scorer.features(self.last_codes[rows_t]),
            next_features=self.scorer.features(codes[rows_t]),
        )
        if hasattr(self.exploration, "learn") or isinstance(self.exploration, torch.nn.Module):
            values = self.exploration(transition, learn=self.learn_exploration)
        else:
            values = self.exploration(transition)
        bonus[index] = torch.as_tensor(values).double().cpu().numpy().reshape(len(index))
        return bonus

    def _remember(self, rows: np.ndarray, frames: np.ndarray, codes: torch.Tensor) -> None:
        if self.last_frames is None:
            self.last_frames, self.last_codes = frames.copy(), codes.clone()
            return
        self.last_frames[rows] = frames[rows]
        self.last_codes[torch.as_tensor(np.flatnonzero(rows), device=codes.device)] = codes[
            torch.as_tensor(np.flatnonzero(rows), device=codes.device)]

    def _rewards(
        self, frames: np.ndarray, actions: Any, starting: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Score every row's transition into ``frames``: ``(reward, logp, bonus)``.

        Rows in ``starting`` begin a new episode with this frame instead:
        reward 0, ``logp`` NaN, bonus 0.
        """
        rows = np.ones(self.scorer.num_envs, dtype=bool)
        if starting is not None and starting.any():
            self.scorer.reset(starting)
            rows = ~starting
        codes = self.scorer.encode(frames)
        logp = self.scorer.observe(codes)
        logp[~rows] = np.nan
        bonus = self._bonus(rows, frames, codes, actions)
        reward = np.where(rows, np.nan_to_num(self.scorer.likelihood_term(logp)) + self.beta * bonus, 0.0)
        self._remember(np.ones_like(rows), frames, codes)
        return reward, logp, bonus

    def _start(self, rows: np.ndarray, frames: np.ndarray) -> None:
        """Begin new episodes in ``rows`` with ``frames`` (the other rows do not move)."""
        self.scorer.reset(rows)
        self._add_context(rows, frames)

    def _add_context(self, rows: np.ndarray, frames: np.ndarray) -> None:
        """Feed ``frames`` of ``rows`` as context, unscored (the other rows do not move)."""
        codes = self.scorer.encode(frames)
        self.scorer.add_context(codes, rows)
        self._remember(rows, frames, codes)

    def state_dict(self) -> dict[str, Any]:
        """What the reward learns across steps, for a checkpoint: the scorer's running statistics and the
        exploration bonus (weights, optimizer, statistics). The streaming context is not in it: replaying the
        episode's frames rebuilds it."""
        exploration = self.exploration.state_dict() if isinstance(self.exploration, torch.nn.Module) else None
        return {"scorer": self.scorer.state_dict(), "exploration": exploration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scorer.load_state_dict(state["scorer"])
        if isinstance(self.exploration, torch.nn.Module) and state.get("exploration") is not None:
            self.exploration.load_state_dict(state["exploration"])


class VIPERReward(gym.Wrapper, gym.utils.RecordConstructorArgs, _RewardMixin):
    """Replace a single env's reward by VIPER's (see the module docstring); the env's own goes to ``info``.

    Example::

        env = VIPERReward(gym.make("worldrl/dmc-cartpole_balance-v0"), video_model="runs/vgpt/video_model",
                          beta=1.0, exploration="rnd")
    """

    def __init__(
        self,
        env: gym.Env,
        video_model: str | Path | torch.nn.Module,
        tokenizer: str | Path | torch.nn.Module | None = None,
        context: int | None = None,
        stride: int | None = None,
        beta: float = 1.0,
        exploration: str | Exploration | None = None,
        learn_exploration: bool = True,
        task_id: int | None = None,
        mask_scoreboard: str | None = None,
        obs_key: str | None = None,
        scale: float = 1.0,
        normalize: bool = False,
        device: str | torch.device = "auto",
        bf16: bool = False,
    ):
        options = dict(
            tokenizer=tokenizer, context=context, stride=stride, beta=beta, exploration=exploration,
            learn_exploration=learn_exploration, task_id=task_id, mask_scoreboard=mask_scoreboard, obs_key=obs_key,
            scale=scale, normalize=normalize, device=device, bf16=bf16,
        )
        gym.utils.RecordConstructorArgs.__init__(self, video_model=video_model, **options)
        super().__init__(env)
        self._setup(env.observation_space, env.action_space, 1, video_model, **options)
        self._needs_reset = True

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self._start(np.ones(1, dtype=bool), self._frames(obs)[None])
        self._needs_reset = False
        return obs, info

    def step(self, action: Any):
        if self._needs_reset:
            raise gym.error.ResetNeeded("call reset() before step() (VIPERReward needs the first frame)")
        obs, task_reward, terminated, truncated, info = self.env.step(action)
        reward, logp, bonus = self._rewards(self._frames(obs)[None], np.asarray(action)[None])
        info = dict(info)
        info.setdefault("task_reward", task_reward)
        info["viper_logp"], info["expl"] = float(logp[0]), float(bonus[0])
        self._needs_reset = terminated or truncated
        return obs, float(reward[0]), terminated, truncated, info


class VIPERRewardVector(VectorWrapper, _RewardMixin):
    """VIPER rewards for all sub-envs of a vector env, with one batched streaming call per step.

    Handles the three autoreset modes: ``NEXT_STEP`` (gymnasium's default:
    the step after an episode's end returns the reset frame, which gets reward
    0 and starts the row's new context), ``SAME_STEP`` (the final frame comes
    in ``info["final_obs"]`` and is scored; the returned frame starts the new
    context) and ``DISABLED`` (rows restart through ``reset(options={"reset_mask": ...})``).
    ``info`` holds per-env arrays ``task_reward``, ``viper_logp`` (NaN where
    nothing was scored) and ``expl``. For exact resume, :meth:`state_dict`
    holds what the reward learns and :meth:`add_context` rebuilds the contexts
    of sub-envs whose actions are replayed outside the wrapper.
    """

    def __init__(self, env: VectorEnv, video_model: str | Path | torch.nn.Module, **options: Any):
        """``options``: the keyword arguments of :class:`VIPERReward` (tokenizer, context, beta, exploration, ...)."""
        super().__init__(env)
        self.autoreset_mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        self._setup(env.single_observation_space, env.single_action_space, env.num_envs, video_model, **options)
        self._ended = np.zeros(env.num_envs, dtype=bool)

    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None):
        """Reset the sub-envs, or only those of ``options["reset_mask"]`` (autoreset ``DISABLED``): their
        contexts start again from the reset frames, the other rows' go on."""
        rows = np.ones(self.num_envs, dtype=bool)
        if options and "reset_mask" in options:  # read first: SyncVectorEnv pops it from options
            rows = np.array(options["reset_mask"], dtype=bool)
        obs, info = self.env.reset(seed=seed, options=options)
        self._start(rows, self._frames(obs))
        self._ended[rows] = False
        return obs, info

    def add_context(self, obs: Any, rows: np.ndarray) -> None:
        """Feed the observations ``obs`` of ``rows`` (bool ``[N]``) as context without scoring them: for sub-envs
        stepped outside the wrapper (a resumed run replaying its actions), whose streaming state then is as if
        the wrapper had stepped them."""
        rows = np.asarray(rows, dtype=bool)
        if rows.any():
            self._add_context(rows, self._frames(obs))

    def step(self, actions: Any):
        obs, task_reward, terminated, truncated, info = self.env.step(actions)
        frames = self._frames(obs)
        done = np.logical_or(terminated, truncated)
        info = dict(info)
        if self.autoreset_mode == AutoresetMode.SAME_STEP and done.any():
            final = np.array(frames)
            for row in np.flatnonzero(done):
                final[row] = self._frames(info["final_obs"][row])
            reward, logp, bonus = self._rewards(final, actions)
            self._start(done, frames)
        elif self.autoreset_mode == AutoresetMode.NEXT_STEP:
            reward, logp, bonus = self._rewards(frames, actions, starting=self._ended)
            self._ended = done
        else:
            reward, logp, bonus = self._rewards(frames, actions)
        info.setdefault("task_reward", np.asarray(task_reward))
        info["viper_logp"], info["expl"] = logp, bonus
        return obs, reward.astype(np.float64), terminated, truncated, info


def relabel(
    episodes: Sequence[dict[str, np.ndarray]] | Any,
    video_model: str | Path | torch.nn.Module,
    tokenizer: str | Path | torch.nn.Module | None = None,
    key: str = "image",
    **scorer_kwargs: Any,
) -> list[np.ndarray]:
    """VIPER log-likelihoods of stored episodes (dicts or an ``EpisodeFolder``), one ``[T+1]`` array each.

    Entry ``t`` >= 1 is ``ln p(image[t] | context)``, the likelihood term of
    the reward of the step into ``image[t]`` (row 0 is NaN: the reset frame
    has no reward). Equal to what the wrappers compute online.
    """
    scorer = None
    out = []
    for episode in episodes:
        images = np.asarray(episode[key])
        if scorer is None:
            scorer = VIPERScorer(video_model, images.shape[1:], 1, tokenizer=tokenizer, **scorer_kwargs)
        out.append(scorer.relabel(images))
    return out
