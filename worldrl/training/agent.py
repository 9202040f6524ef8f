"""Online training of an agent (DrQ, DrQ-v2, DreamerV3; any :class:`~worldrl.agents.Agent`) on a worldrl env.

A run is described by a config with three sections: ``agent`` (``type`` and
the agent's settings, e.g. :class:`~worldrl.agents.drq.DrQConfig`), ``env``
(:class:`EnvConfig`: id, reward, env arguments) and ``train``
(:class:`AgentTrainConfig`). ``train.num_envs`` envs step in lockstep with
autoreset off: the trainer resets each finished env itself (a masked
``reset(seed=[...], options={"reset_mask": done})``), with a seed derived from
``(train.seed, env, episode)``. An env whose spec has a ``vector_entry_point``
and whose vector env saves its state (``state_dict`` / ``load_state_dict``,
as the learned simulator ``worldrl/sim-v0``'s
:class:`~worldrl.envs.simulator.WorldModelVectorEnv`: one model call steps
every env) runs natively batched; any other env (and one with ``reward: viper``
or ``max_episode_steps``) runs as single envs in a ``SyncVectorEnv``. With
``reward: viper`` that ``SyncVectorEnv`` is wrapped in one
:class:`~worldrl.wrappers.VIPERRewardVector` (options from ``env.viper``),
which scores every env's frame in one batched video-model call per step (its
``normalize`` statistics and exploration bonus are shared by the envs); the
evaluation env is one ``VIPERReward``-wrapped single env. Every step
goes into a :class:`~worldrl.data.ReplayBuffer`; after ``train.random_steps``
env steps of uniform random actions the agent makes ``train.update_ratio``
updates per env step, or, with ``train.train_ratio`` set, as many as replay
that many steps per env step (DreamerV3's train ratio: an update of
DreamerV3 replays ``batch_size * batch_length`` steps, one of DrQ
``batch_size``). Discrete action spaces (Atari) go to agents that take them
(DreamerV3) as one-hot actions, the replay's format; the env gets the argmax.
Observations are uint8 ``[H, W, C]`` frames (key ``image`` for the agent and
the replay), or, for agents that take them (DreamerV3), float vectors
(key ``state``, e.g. a DMC env with ``obs_type: state``).
Every ``train.eval_every`` steps the deterministic policy plays
``train.eval_episodes`` episodes (always the same seeds) in a separate env;
the return of ``info["task_reward"]`` is reported besides the env's reward,
so a VIPER-trained agent is scored on the task. Every ``train.video_every``
steps an agent with a world model (DreamerV3) logs open-loop predictions of
replayed clips next to the real frames (runs on frames only).

Layout of the run folder::

    config.yaml         the resolved config
    checkpoint.pt       agent (weights, optimizers), counters, RNG states, env replay log or env state (weights_only)
    replay_<step>.npz   the replay buffer of that checkpoint (written before checkpoint.pt names it)
    agent.pt            the agent alone (``worldrl evaluate`` reads it with config.yaml)
    tb/                 TensorBoard: losses, returns, policy/env/training speed, train ratio, open-loop videos

Exact resume. Env states cannot be saved in general, but worldrl envs are
deterministic given the reset seed and the actions, so the checkpoint keeps
each env's actions since its last reset, and resuming replays them (at most
one episode per env). With ``reward: viper`` the replayed frames go through
the ``VIPERRewardVector`` as unscored context (``add_context``), which rebuilds
each env's streaming context, and what the reward learns (the running
statistics of ``normalize``, the exploration bonus's weights and optimizer)
is saved (``viper`` in the checkpoint) and restored. A checkpoint of the
earlier layout, one ``VIPERReward`` per single env (``scorers``), resumes
when those scorers held no state (no ``normalize``; no ``exploration``, which
it did not save); otherwise resuming fails with a ``ConfigMismatchError``
saying why: per-env statistics cannot become the one batched scorer's. A
batched env that saves its state is saved instead (``env_state`` in the
checkpoint: the env's ``state_dict()`` with the current observations): the
simulator's rows share one sampling generator, so
replaying one row's actions would not bring its frames back, while its state
(model caches or latents, frames, counters, generator and start-frame RNG
states) does. A run checkpointed without an env state resumes as it ran, in a
``SyncVectorEnv``, by replay. With the agent, optimizers, replay (including
its sampling RNG), the torch/numpy/Python RNG states, the counters and the
agent's acting state (DreamerV3's per-env latents) restored, a run killed at
any point (SIGKILL included) and started again with the same command
continues exactly as if it had never stopped. Evaluation and videos draw
their random numbers from their own seeds, so they change no state of the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.registration import load_env_creator
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from tqdm import tqdm

from worldrl.agents import AGENTS, Agent, agent_class, build_agent, takes_vectors, vector_agents
from worldrl.config import ConfigError, build_dataclass, to_dict
from worldrl.data.replay import ReplayBuffer
from worldrl.training.common import (
    BASE_RESUMABLE_KEYS,
    ConfigMismatchError,
    RunTrainer,
    log_video_comparison,
    seed_everything,
)
from worldrl.training.distributed import DistributedContext

CHECKPOINT_FORMAT = 1
AGENT_FILE = "agent.pt"
SECTIONS = ("agent", "env", "train")
RESUMABLE_KEYS = BASE_RESUMABLE_KEYS | {"eval_episodes", "video_every"}
EVAL_SEED_OFFSET = 1_000_003
"""Evaluation episode ``j`` resets with seed ``train.seed + EVAL_SEED_OFFSET + j``."""


@dataclass
class EnvConfig:
    id: str = "worldrl/dmc-cartpole_balance-v0"
    reward: str = "task"
    """``task`` (the env's reward) or ``viper`` (the likelihood under ``video_model``)."""
    video_model: str | None = None
    """Video model folder (``worldrl train-video-model``'s ``video_model/``) for ``reward: viper``."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Arguments of ``gym.make`` (e.g. ``size: 64``, ``max_episode_steps: 100``)."""
    viper: dict[str, Any] = field(default_factory=dict)
    """Arguments of :class:`~worldrl.wrappers.VIPERReward` (e.g. ``context``, ``scale``)."""

    def __post_init__(self) -> None:
        if self.reward not in ("task", "viper"):
            raise ConfigError(f"env.reward must be 'task' or 'viper', got {self.reward!r}")
        if (self.reward == "viper") != (self.video_model is not None):
            raise ConfigError("env.video_model (--video-model) is needed with env.reward=viper, and only then")


@dataclass
class AgentTrainConfig:
    steps: int = 100_000
    """Env steps to train, summed over the envs."""
    seed: int = 0
    num_envs: int = 1
    random_steps: int = 4000
    """Env steps with uniform random actions before learning starts."""
    update_ratio: float = 1.0
    """Agent updates per env step (fractions accumulate: 0.5 is one update every other step)."""
    train_ratio: float | None = None
    """Replayed steps per env step; when set, replaces ``update_ratio`` (divided by the agent's replayed steps per
    update: ``batch_size * batch_length`` for DreamerV3)."""
    replay_capacity: int = 100_000
    """Steps the replay holds over all envs (as DrQ; 100k 64x64x3 frames: 1.2 GB; checkpoints write the rows held)."""
    log_every: int = 1000
    eval_every: int = 10_000
    eval_episodes: int = 10
    checkpoint_every: int = 10_000
    video_every: int = 10_000
    """Open-loop video predictions (agents with a world model); 0: none."""

    def __post_init__(self) -> None:
        for name in ("steps", "num_envs", "replay_capacity", "log_every", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if min(self.random_steps, self.update_ratio, self.eval_episodes, self.video_every, self.train_ratio or 0) < 0:
            raise ConfigError("train.random_steps, update_ratio, train_ratio, eval_episodes and video_every must be "
                              ">= 0")


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with every default filled in, as plain YAML data; unknown sections or keys are errors."""
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown config section {unknown[0]!r}; sections: {', '.join(SECTIONS)}")
    agent = dict(config.get("agent") or {})
    kind = agent.pop("type", None)
    cls = agent_class(kind) if kind is not None else None
    if cls is None:
        raise ConfigError(f"agent.type is not set (pass --agent with one of {', '.join(AGENTS)})")
    return {
        "agent": {"type": kind, **to_dict(build_dataclass(cls.config_class, agent, "agent"))},
        "env": to_dict(build_dataclass(EnvConfig, config.get("env"), "env")),
        "train": to_dict(build_dataclass(AgentTrainConfig, config.get("train"), "train")),
    }


# Envs ---------------------------------------------------------------------------------------------------------------
def stateful_vector_env(env: EnvConfig) -> bool:
    """Whether ``env`` runs as its own batched vector env that saves its state: a ``vector_entry_point`` class
    with ``state_dict`` and ``load_state_dict``, with the task reward and no ``max_episode_steps`` (a wrapper of
    single envs)."""
    spec = gym.registry.get(env.id)
    if spec is None or spec.vector_entry_point is None or env.reward != "task" or "max_episode_steps" in env.kwargs:
        return False
    entry = spec.vector_entry_point
    creator = entry if callable(entry) else load_env_creator(entry)
    return hasattr(creator, "state_dict") and hasattr(creator, "load_state_dict")


def make_train_envs(env: EnvConfig, num_envs: int, device: torch.device, batched: bool) -> gym.vector.VectorEnv:
    """``num_envs`` training envs with autoreset off: the env's batched vector env (``batched``; see
    :func:`stateful_vector_env`) or a ``SyncVectorEnv`` of single envs, for ``reward: viper`` in one
    :class:`~worldrl.wrappers.VIPERRewardVector` (one batched video-model call per step instead of one per env)."""
    if batched:
        return gym.make_vec(env.id, num_envs, vectorization_mode="vector_entry_point",
                            **{**env.kwargs, "autoreset_mode": AutoresetMode.DISABLED})
    task_env = replace(env, reward="task", video_model=None)
    envs = SyncVectorEnv([env_factory(task_env, device)] * num_envs, autoreset_mode=AutoresetMode.DISABLED)
    if env.reward != "viper":
        return envs
    if observation_key(envs.single_observation_space) != "image":
        envs.close()
        raise ConfigError(f"env.reward=viper scores uint8 [H, W, C] frames, but {env.id} observes "
                          f"{envs.single_observation_space}; make the env with frames (e.g. obs_type=pixels)")
    from worldrl.wrappers.viper import VIPERRewardVector

    return VIPERRewardVector(envs, video_model=env.video_model, **{"device": device, **env.viper})


def env_factory(env: EnvConfig, device: torch.device) -> Callable[[], gym.Env]:
    """A function making one env of ``env`` (VIPER-wrapped for ``reward: viper``, on ``device``)."""
    kwargs = dict(env.kwargs)
    if env.reward == "viper":
        kwargs.update(reward="viper", video_model=env.video_model, viper={"device": device, **env.viper})
    return lambda: gym.make(env.id, **kwargs)


ActionSpace = spaces.Box | spaces.Discrete


def observation_key(space: gym.Space) -> str:
    """The agent's and the replay's key for observations of ``space``: ``image`` for uint8 ``[H, W, C]`` frames,
    ``state`` for a float vector Box ``[S]``; a ConfigError for anything else."""
    if isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3:
        return "image"
    if isinstance(space, spaces.Box) and np.issubdtype(space.dtype, np.floating) and len(space.shape) == 1:
        return "state"
    hint = ("; observations of several kinds (a Dict) are not supported: make the env observe one, e.g. "
            "obs_type=pixels or obs_type=state") if isinstance(space, spaces.Dict) else ""
    raise ConfigError(f"the agents take uint8 [H, W, C] frames (or, {', '.join(vector_agents())}, float vectors "
                      f"[S]), but the env observes {space}{hint}")


def check_spaces(env: gym.Env | SyncVectorEnv) -> tuple[str, tuple[int, ...], ActionSpace]:
    """The observation key (:func:`observation_key`), the observation shape and the action space; a ConfigError
    for other observations or for actions neither Box nor Discrete."""
    obs_space = getattr(env, "single_observation_space", env.observation_space)
    action_space = getattr(env, "single_action_space", env.action_space)
    key = observation_key(obs_space)
    if not isinstance(action_space, (spaces.Box, spaces.Discrete)):
        raise ConfigError(f"the agents take Box or Discrete actions, but the env's are {action_space}")
    return key, tuple(obs_space.shape), action_space


def build_env_agent(name: str, config: Mapping[str, Any], env: gym.Env | SyncVectorEnv,
                    device: str | torch.device) -> tuple[Agent, ActionSpace]:
    """The agent ``name`` for ``env``'s observations (frames or, for agents that take them, vectors) and actions
    (``n`` one-hot actions for a Discrete space)."""
    key, shape, space = check_spaces(env)
    if key == "state" and not takes_vectors(name):
        raise ConfigError(f"{name} needs uint8 [H, W, C] frames; the env observes "
                          f"{getattr(env, 'single_observation_space', env.observation_space)}; agents that also "
                          f"take vector observations: {', '.join(vector_agents())}")
    discrete = isinstance(space, spaces.Discrete)
    action_dim = int(space.n) if discrete else int(np.prod(space.shape))
    frame_shape, vector_dim = (shape, None) if key == "image" else (None, shape[0])
    return build_agent(name, config, frame_shape, action_dim, device, discrete=discrete, vector_dim=vector_dim), space


def random_actions(count: int, action_dim: int, space: ActionSpace) -> np.ndarray:
    """``count`` uniform random agent actions (one-hot for a Discrete space), from torch's RNG."""
    if isinstance(space, spaces.Discrete):
        return np.eye(action_dim, dtype=np.float32)[torch.randint(action_dim, (count,)).numpy()]
    return (torch.rand(count, action_dim) * 2 - 1).numpy()


def to_env_action(action: np.ndarray, space: ActionSpace) -> np.ndarray:
    """Agent actions ``[N, A]`` -> the env's: the argmax of one-hot actions, or ``[-1, 1]`` scaled to the bounds."""
    if isinstance(space, spaces.Discrete):
        return (space.start + action.argmax(-1)).astype(space.dtype)
    low, high = space.low.reshape(-1), space.high.reshape(-1)
    scaled = low + (action + 1.0) * 0.5 * (high - low)
    return scaled.reshape(len(action), *space.shape).astype(space.dtype)


def evaluate_agent(agent: Agent, env: gym.Env, episodes: int, seed: int) -> dict[str, float]:
    """Mean and std of the return (env reward and ``info["task_reward"]``) of ``episodes`` deterministic episodes.

    Episode ``j`` resets with seed ``seed + j``. The agent's random draws
    (DreamerV3 samples its latents) come from torch's RNG seeded with
    ``seed`` inside a fork, so evaluating changes no RNG state and repeats.
    """
    device = getattr(agent, "device", torch.device("cpu"))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return _evaluate(agent, env, episodes, seed)


def _evaluate(agent: Agent, env: gym.Env, episodes: int, seed: int) -> dict[str, float]:
    key, _, space = check_spaces(env)
    returns, task_returns, lengths = [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        state, first, done = None, True, False
        total = task = 0.0
        length = 0
        while not done:
            action, state = agent.act({key: obs[None], "is_first": np.array([first])}, state, explore=False)
            obs, reward, terminated, truncated, info = env.step(to_env_action(action, space)[0])
            total += float(reward)
            task += float(info.get("task_reward", reward))
            first, done, length = False, terminated or truncated, length + 1
        returns.append(total)
        task_returns.append(task)
        lengths.append(length)
    return {"return": float(np.mean(returns)), "return_std": float(np.std(returns)),
            "task_return": float(np.mean(task_returns)), "task_return_std": float(np.std(task_returns)),
            "length": float(np.mean(lengths))}


def tensor_tree(value: Any) -> Any:
    """numpy arrays in nested dicts/lists/tuples as tensors (what ``weights_only`` checkpoints hold)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, Mapping):
        return {key: tensor_tree(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [tensor_tree(item) for item in value]
    return value


def numpy_tree(value: Any) -> Any:
    """The inverse of :func:`tensor_tree` (tuples come back as lists)."""
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, Mapping):
        return {key: numpy_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [numpy_tree(item) for item in value]
    return value


# Trainer ------------------------------------------------------------------------------------------------------------
class AgentTrainer(RunTrainer):
    """One training run of an agent in a run folder (see the module docstring)."""

    what = "agent"
    checkpoint_format = CHECKPOINT_FORMAT
    resumable_keys = RESUMABLE_KEYS

    def __init__(
        self,
        config: Mapping[str, Any],
        out: str | Path,
        device: str | torch.device = "auto",
        progress: bool = True,
        force: bool = False,
    ):
        from worldrl.device import resolve_device

        self.context = DistributedContext(device=resolve_device(device))
        self.device = self.context.device
        self.config = resolve_config(config)
        cfg = self.train_config = build_dataclass(AgentTrainConfig, self.config["train"], "train")
        self.env_config = build_dataclass(EnvConfig, self.config["env"], "env")
        self.out, self.progress = Path(out), progress
        checkpoint = self._read_checkpoint(force)

        seed_everything(cfg.seed)
        make_env = env_factory(self.env_config, self.device)
        self.batched = stateful_vector_env(self.env_config) and (checkpoint is None or
                                                                 checkpoint.get("env_state") is not None)
        self.envs = make_train_envs(self.env_config, cfg.num_envs, self.device, self.batched)
        self.viper = not self.batched and self.env_config.reward == "viper"
        self.eval_env = make_env() if cfg.eval_episodes else None
        agent = dict(self.config["agent"])
        self.agent, self.action_space = build_env_agent(agent.pop("type"), agent, self.envs, self.device)
        self._check_random_steps()
        self.update_ratio = (cfg.update_ratio if cfg.train_ratio is None
                             else cfg.train_ratio / self.agent.replayed_steps_per_update)
        self.obs_key, obs_shape, _ = check_spaces(self.envs)  # "image" or "state", for the agent and the replay
        self.action_dim = self.agent.action_dim
        images = self.obs_key == "image"
        self.replay = ReplayBuffer(cfg.replay_capacity, obs_shape if images else None, self.action_dim,
                                   cfg.num_envs, state_dim=None if images else obs_shape[0], seed=cfg.seed)

        self.step = 0
        self.saved_step: int | None = None
        self.episodes = np.zeros(cfg.num_envs, np.int64)
        self.histories: list[list[np.ndarray]] = [[] for _ in range(cfg.num_envs)]
        self.returns = np.zeros((2, cfg.num_envs))
        self.update_debt = 0.0
        self.act_time = 0.0
        self.agent_state: Any = None
        self.env_state: dict[str, Any] | None = None
        self.last_eval: dict[str, float] = {}
        if checkpoint is not None:
            self._restore(checkpoint)
        self._start_envs(checkpoint is not None)
        self._open_writer(checkpoint)

    def _check_random_steps(self) -> None:
        """Learning needs a batch in the replay: a transition (``n_step + 1`` steps) or a sequence of each env."""
        cfg = self.train_config
        per_env = self.agent.min_steps_per_env
        need = cfg.num_envs * per_env
        if cfg.random_steps < need:
            raise ConfigError(f"train.random_steps must be >= {need} (num_envs * {per_env} steps the "
                              f"{self.agent.name} agent samples at once), got {cfg.random_steps}")
        if cfg.replay_capacity // cfg.num_envs < per_env:
            raise ConfigError(f"train.replay_capacity must hold {per_env} steps per env, got {cfg.replay_capacity}")

    # Envs -----------------------------------------------------------------------------------------------------------
    def _episode_seed(self, env: int) -> int:
        """The reset seed of env ``env``'s current episode: a pure function of the run seed, env and episode."""
        sequence = np.random.SeedSequence([self.train_config.seed, env, int(self.episodes[env])])
        return int(sequence.generate_state(1)[0])

    def _start_envs(self, resumed: bool) -> None:
        """Reset every env with its episode seed; on resume, load the saved env state, or replay each env's logged
        actions since that reset."""
        if resumed and self.batched:
            self.envs.load_state_dict(self.env_state["env"])
            self.obs, self.is_first = self.env_state["obs"].copy(), self.env_state["is_first"].copy()
            self.env_state = None
            return
        seeds = [self._episode_seed(env) for env in range(self.envs.num_envs)]
        obs, _ = self.envs.reset(seed=seeds)
        self.obs = np.array(obs)
        self.is_first = np.array([not history for history in self.histories])
        if not resumed:
            self.replay.add(self._row(self.obs, np.zeros((self.envs.num_envs, self.action_dim)),
                                      np.zeros(self.envs.num_envs), self.is_first, np.zeros(self.envs.num_envs, bool)))
            return
        singles = self.envs.unwrapped.envs
        lengths = np.array([len(history) for history in self.histories])
        for t in range(int(lengths.max(initial=0))):
            rows = lengths > t
            for env in np.flatnonzero(rows):
                action = to_env_action(self.histories[env][t][None], self.action_space)[0]
                self.obs[env] = singles[env].step(action)[0]
            if self.viper:
                self.envs.add_context(self.obs, rows)

    def _row(self, obs, action, reward, is_first, terminated, is_last=None) -> dict[str, np.ndarray]:
        return {self.obs_key: obs, "action": np.asarray(action, np.float32), "reward": np.asarray(reward, np.float32),
                "is_first": is_first, "is_last": terminated if is_last is None else is_last,
                "is_terminal": terminated}

    def _env_step(self) -> tuple[np.ndarray, dict[str, Any]]:
        """Act in every env (random actions before ``train.random_steps``), store the step, reset finished envs."""
        num_envs = self.envs.num_envs
        self.agent.env_steps = self.step
        started = time.perf_counter()
        action, self.agent_state = self.agent.act({self.obs_key: self.obs, "is_first": self.is_first},
                                                  self.agent_state, explore=True)
        self.act_time += time.perf_counter() - started
        if self.step < self.train_config.random_steps:
            action = random_actions(num_envs, self.action_dim, self.action_space)
            self.agent_state = self.agent.took(self.agent_state, action)
        obs, reward, terminated, truncated, info = self.envs.step(to_env_action(action, self.action_space))
        done = terminated | truncated
        self.replay.add(self._row(obs, action, reward, np.zeros(num_envs, bool), terminated, done))
        self.returns += [reward, info.get("task_reward", reward)]
        if not self.batched:
            for env in range(num_envs):
                self.histories[env].append(action[env].astype(np.float32))
        self.obs, self.is_first = np.array(obs), np.zeros(num_envs, bool)
        self.step += num_envs
        finished = {"return": self.returns[0][done].tolist(), "task_return": self.returns[1][done].tolist()}
        if done.any():
            self._reset(done)
        return done, finished

    def _reset(self, done: np.ndarray) -> None:
        self.episodes[done] += 1
        for env in np.flatnonzero(done):
            self.histories[env] = []
        seeds = [self._episode_seed(env) if done[env] else None for env in range(self.envs.num_envs)]
        obs, _ = self.envs.reset(seed=seeds, options={"reset_mask": done})
        self.obs[done] = np.asarray(obs)[done]
        self.is_first[done] = True
        self.returns[:, done] = 0.0
        count = int(done.sum())
        self.replay.add(self._row(self.obs[done], np.zeros((count, self.action_dim)),
                                  np.zeros(count), np.ones(count, bool), np.zeros(count, bool)),
                        env_ids=np.flatnonzero(done))

    # Checkpoints ----------------------------------------------------------------------------------------------------
    def _replay_file(self, step: int) -> Path:
        return self.out / f"replay_{step}.npz"

    def checkpoint_state(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        self.replay.save(self._replay_file(self.step))
        return {
            "agent": self.agent.state_dict(),
            "replay_file": self._replay_file(self.step).name,
            "episodes": torch.from_numpy(self.episodes.copy()),
            "histories": [torch.from_numpy(np.stack(h)) if h else torch.zeros(0) for h in self.histories],
            "returns": torch.from_numpy(self.returns.copy()),
            "update_debt": self.update_debt,
            "agent_state": tensor_tree(self.agent_state),
            "env_state": tensor_tree({"env": self.envs.state_dict(), "obs": self.obs, "is_first": self.is_first})
            if self.batched else None,
            "viper": self.envs.state_dict() if self.viper else None,
        }

    def export(self) -> None:
        """``agent.pt``, and the replay files of older checkpoints removed (the new checkpoint names its own)."""
        self.agent.save(self.out / AGENT_FILE)
        for path in self.out.glob("replay_*.npz"):
            if path != self._replay_file(self.step):
                path.unlink(missing_ok=True)

    def _restore(self, checkpoint: Mapping[str, Any]) -> None:
        try:
            self.agent.load_state_dict(checkpoint["agent"])
            self.replay.load(self.out / checkpoint["replay_file"])
        except (RuntimeError, ValueError, KeyError, FileNotFoundError) as error:
            raise ConfigMismatchError(f"cannot resume from {self.out} with this config: {error}") from error
        self.step = self.saved_step = int(checkpoint["step"])
        self.episodes = checkpoint["episodes"].numpy().copy()
        self.histories = [list(h.numpy()) for h in checkpoint["histories"]]
        self.returns = checkpoint["returns"].numpy().copy()
        self.update_debt = float(checkpoint["update_debt"])
        self.agent_state = numpy_tree(checkpoint["agent_state"])
        if self.batched:
            self.env_state = {**checkpoint["env_state"], "obs": checkpoint["env_state"]["obs"].numpy(),
                              "is_first": checkpoint["env_state"]["is_first"].numpy()}
        self._restore_rng(checkpoint["rng"])
        self._restore_viper(checkpoint)

    def _restore_viper(self, checkpoint: Mapping[str, Any]) -> None:
        """What the VIPER reward learned, as saved (the replay of logged actions rebuilds its contexts). A
        checkpoint with one scorer per single env (``scorers``, the earlier layout) resumes only if they held no
        state: their per-env statistics cannot become the one batched scorer's."""
        per_env = [state for states in checkpoint.get("scorers", []) for state in states]
        if per_env and (any(state.get("normalizer") is not None for state in per_env)
                        or getattr(self.envs, "exploration", None) is not None):
            raise ConfigMismatchError(
                f"cannot resume from {self.out}: its checkpoint has one VIPER reward per env (an earlier worldrl), "
                "whose per-env running statistics (env.viper.normalize) or exploration bonuses (env.viper."
                "exploration, not saved then) cannot become the one batched VIPERRewardVector's; finish the run "
                "with the worldrl version that wrote it, or start a new run in another folder")
        if self.viper and checkpoint.get("viper") is not None:
            self.envs.load_state_dict(checkpoint["viper"])

    # Training -------------------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train up to ``train.steps`` env steps, evaluating, logging and checkpointing; return the final metrics."""
        cfg = self.train_config
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"train {self.agent.name}", unit="step",
                   disable=not self.progress)
        meter = Meter(self.step, self.agent.updates)
        try:
            while self.step < cfg.steps:
                before, act_time = self.step, self.act_time
                started = time.perf_counter()
                _, finished = self._env_step()
                meter.env_time += time.perf_counter() - started
                meter.policy_time += self.act_time - act_time
                meter.episodes(finished)
                started = time.perf_counter()
                for metrics in self._updates():
                    meter.add(metrics)
                meter.update_time += time.perf_counter() - started
                bar.update(self.step - before)
                if self._crossed(before, cfg.log_every):
                    self._log(meter.flush(self.step, self.agent.updates, self.agent.replayed_steps_per_update))
                    bar.set_postfix(meter.postfix)
                if cfg.eval_episodes and self._crossed(before, cfg.eval_every):
                    self._evaluate()
                if cfg.video_every and self.step >= cfg.random_steps and self._crossed(before, cfg.video_every):
                    self._log_video()
                if self._crossed(before, cfg.checkpoint_every) or self.step >= cfg.steps:
                    self.save()
        finally:
            bar.close()
        if cfg.eval_episodes and self.last_eval.get("step") != self.step:
            self._evaluate()
        self.close()
        return {"step": self.step, "updates": self.agent.updates, "episodes": int(self.episodes.sum()),
                **{f"eval_{key}": value for key, value in self.last_eval.items()}}

    def _crossed(self, before: int, every: int) -> bool:
        return before // every != self.step // every

    def _updates(self) -> list[dict[str, float]]:
        """The updates owed for the steps taken (none before ``train.random_steps``)."""
        cfg = self.train_config
        if self.step < cfg.random_steps:
            return []
        self.update_debt += self.envs.num_envs * self.update_ratio
        metrics = []
        while self.update_debt >= 1.0:
            metrics.append(self.agent.update(self.replay))
            self.update_debt -= 1.0
        return metrics

    def _evaluate(self) -> None:
        self.agent.env_steps = self.step
        result = evaluate_agent(self.agent, self.eval_env, self.train_config.eval_episodes,
                                self.train_config.seed + EVAL_SEED_OFFSET)
        self._log({f"eval/{key}": value for key, value in result.items()})
        self.last_eval = {"step": self.step, **result}

    def _log_video(self) -> None:
        """Open-loop predictions of replayed clips beside the real frames (``video/open_loop*``); none without."""
        if self.writer is None or self.obs_key != "image":
            return
        videos = self.agent.open_loop_video(self.replay, self.train_config.seed + self.step)
        if videos is not None:
            log_video_comparison(self.writer, "video", "open_loop", *videos, self.step)
            self.writer.flush()

    def _log(self, scalars: Mapping[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, self.step)
        self.writer.flush()

    def close(self) -> None:
        super().close()
        self.envs.close()
        if self.eval_env is not None:
            self.eval_env.close()


class Meter:
    """Sums of update metrics, episode returns and timings between two log points."""

    def __init__(self, step: int, updates: int):
        self.postfix: dict[str, str] = {}
        self.restart(step, updates)

    def restart(self, step: int, updates: int) -> None:
        self.step, self.updates = step, updates
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.returns: dict[str, list[float]] = {"return": [], "task_return": []}
        self.env_time = self.policy_time = self.update_time = 0.0  # env steps (acting included), acting, updates

    def add(self, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def episodes(self, finished: Mapping[str, list[float]]) -> None:
        for key, values in finished.items():
            self.returns[key] += values

    def flush(self, step: int, updates: int, replayed_per_update: int) -> dict[str, float]:
        """The means since the last flush, as TensorBoard scalars; starts a new interval.

        ``perf/train_ratio`` is replayed steps per env step; ``perf/policy_fps`` env steps per second of acting
        and ``perf/train_fps`` replayed steps per second of updates.
        """
        steps, done = step - self.step, updates - self.updates
        scalars = {f"train/{key}": value / self.counts[key] for key, value in self.sums.items()}
        for key, values in self.returns.items():
            if values:
                scalars[f"train/episode_{key}"] = float(np.mean(values))
        scalars["perf/env_steps_per_s"] = steps / max(self.env_time, 1e-9)
        scalars["perf/policy_fps"] = steps / max(self.policy_time, 1e-9)
        scalars["perf/updates_per_s"] = done / max(self.update_time, 1e-9) if done else 0.0
        scalars["perf/train_fps"] = scalars["perf/updates_per_s"] * replayed_per_update
        scalars["perf/updates_per_env_step"] = done / max(steps, 1)
        scalars["perf/train_ratio"] = done * replayed_per_update / max(steps, 1)
        if self.returns["task_return"]:
            self.postfix = {"return": f"{np.mean(self.returns['task_return']):.1f}"}
        self.restart(step, updates)
        return scalars


def train_agent(config: Mapping[str, Any], out: str | Path, device: str | torch.device = "auto",
                progress: bool = True, force: bool = False) -> dict[str, Any]:
    """Train (or resume) the run in ``out``; returns the final metrics."""
    return AgentTrainer(config, out, device, progress, force).train()


def load_agent(path: str | Path, device: str | torch.device = "auto") -> tuple[Agent, dict[str, Any]]:
    """The agent saved in a run folder (or its ``agent.pt``, with ``config.yaml`` beside it) and the run's config."""
    from worldrl.config import load_yaml
    from worldrl.training.common import CONFIG_FILE

    path = Path(path)
    folder, weights = (path, path / AGENT_FILE) if path.is_dir() else (path.parent, path)
    if not weights.is_file() or not (folder / CONFIG_FILE).is_file():
        raise ConfigError(f"{path}: expected a train-agent run folder with {AGENT_FILE} and {CONFIG_FILE}")
    config = resolve_config(load_yaml(folder / CONFIG_FILE))
    agent = dict(config["agent"])
    env = gym.make(config["env"]["id"], **config["env"]["kwargs"])
    built, _ = build_env_agent(agent.pop("type"), agent, env, device)
    env.close()
    built.load(weights)
    return built, config
