"""Policies for the collector and the oracle evaluation (see :mod:`worldrl.oracles` for the protocol)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

SCRIPTED_PREFIX = "scripted:"
ORACLE_FILE = "oracle.zip"
ORACLE_INFO = "oracle.json"
SPACE_POLICIES = ("random", "persistent", "zero")
"""Policies :func:`as_policy` builds from the env's action space alone."""


@runtime_checkable
class Policy(Protocol):
    """Maps a batch of observations ([N, ...] array or dict of them) to a batch of actions [N, ...]."""

    def __call__(self, obs: Any) -> np.ndarray: ...


def batch_size(obs: Any) -> int:
    """N of a batch of observations: the length of the array, or of the dict's first array."""
    if isinstance(obs, Mapping):
        if not obs:
            raise ValueError("empty observation dict: cannot tell the batch size")
        obs = next(iter(obs.values()))
    return len(obs)


def state_batch(obs: Any) -> np.ndarray:
    """The state part of a batch: ``obs["state"]`` of a dict, or the array itself."""
    if isinstance(obs, Mapping):
        if "state" not in obs:
            raise ValueError(
                f"this policy reads the state, but the observation has keys {sorted(obs)}; "
                "make the env with obs_type='pixels+state' (or 'state')"
            )
        obs = obs["state"]
    return np.asarray(obs)


class RandomPolicy:
    """Uniform samples from the (single-env) action space, seeded so that a run repeats."""

    required_obs_type = None

    def __init__(self, action_space: gym.Space, seed: int | None = 0):
        self.action_space = action_space
        self.action_space.seed(seed)

    def __call__(self, obs: Any) -> np.ndarray:
        return np.stack([self.action_space.sample() for _ in range(batch_size(obs))])

    def __repr__(self) -> str:
        return f"RandomPolicy({self.action_space})"


class ZeroPolicy:
    """The do-nothing baseline: zero force for a continuous action space (clipped into its bounds), the first
    action (NOOP on Atari) for a discrete one. On DMC tasks whose reward pays for small controls it can beat
    learning agents."""

    required_obs_type = None

    def __init__(self, action_space: gym.Space):
        if isinstance(action_space, gym.spaces.Box):
            zero = np.clip(np.zeros(action_space.shape), action_space.low, action_space.high)
        elif isinstance(action_space, gym.spaces.Discrete):
            zero = np.asarray(action_space.start)
        else:
            raise ValueError(f"ZeroPolicy needs a Box or Discrete action space, got {action_space}")
        self.action = zero.astype(action_space.dtype)

    def __call__(self, obs: Any) -> np.ndarray:
        return np.repeat(self.action[None], batch_size(obs), axis=0)

    def __repr__(self) -> str:
        return f"ZeroPolicy({self.action.tolist()})"


class PersistentRandomPolicy:
    """Random actions each held for a random number of steps, so a random walk travels instead of jittering.

    Every batch row draws an action from the (single-env) action space and
    repeats it for a number of steps uniform in ``[min_steps, max_steps]``,
    then draws again; holds run across episode boundaries. Seeded as
    :class:`RandomPolicy`.
    """

    required_obs_type = None

    def __init__(self, action_space: gym.Space, seed: int | None = 0, min_steps: int = 1, max_steps: int = 12):
        if not 1 <= min_steps <= max_steps:
            raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps} and {max_steps}")
        self.action_space = action_space
        self.action_space.seed(seed)
        self.min_steps, self.max_steps = min_steps, max_steps
        self._rng = np.random.default_rng(seed)
        self._actions: list[Any] = []
        self._left = np.zeros(0, dtype=np.int64)

    def reset(self) -> None:
        self._actions, self._left = [], np.zeros(0, dtype=np.int64)

    def __call__(self, obs: Any) -> np.ndarray:
        n = batch_size(obs)
        if len(self._actions) != n:
            self._actions, self._left = [None] * n, np.zeros(n, dtype=np.int64)
        for i in np.flatnonzero(self._left == 0):
            self._actions[i] = self.action_space.sample()
            self._left[i] = self._rng.integers(self.min_steps, self.max_steps + 1)
        self._left -= 1
        return np.stack(self._actions)

    def __repr__(self) -> str:
        return f"PersistentRandomPolicy({self.action_space}, steps {self.min_steps}..{self.max_steps})"


class SB3Policy:
    """A Stable-Baselines3 model acting deterministically.

    A model trained on a flat state (1-D Box observations) is given
    ``obs["state"]`` when the env returns a dict, so it can drive an env that
    records pixels too; its ``required_obs_type`` is then ``"pixels+state"``.
    """

    def __init__(self, model: Any, metadata: Mapping[str, Any] | None = None):
        self.model = model
        self.metadata = dict(metadata or {})
        space = model.observation_space
        self.reads_state = isinstance(space, gym.spaces.Box) and len(space.shape) == 1
        self.required_obs_type = "pixels+state" if self.reads_state else None

    def __call__(self, obs: Any) -> np.ndarray:
        if self.reads_state:
            obs = state_batch(obs)
        actions, _ = self.model.predict(obs, deterministic=True)
        return actions

    def __repr__(self) -> str:
        return f"SB3Policy({type(self.model).__name__})"


def _is_sb3_model(obj: Any) -> bool:
    try:
        from stable_baselines3.common.base_class import BaseAlgorithm
    except ImportError:
        return False
    return isinstance(obj, BaseAlgorithm)


def as_policy(obj: Any, action_space: gym.Space | None = None, *, seed: int | None = 0) -> Callable[[Any], np.ndarray]:
    """Turn ``obj`` into a policy.

    ``obj`` may be ``"random"``, ``"persistent"`` (:class:`PersistentRandomPolicy`)
    or ``"zero"`` (:class:`ZeroPolicy`; all three need the single-env
    ``action_space``, and the random ones are seeded with ``seed``),
    ``"scripted:<game>"`` or the path of a saved oracle (see :func:`load_oracle`),
    a Stable-Baselines3 model (acts deterministically), or any callable, which
    is returned unchanged.
    """
    if isinstance(obj, (str, os.PathLike)):
        name = os.fspath(obj)
        if name in SPACE_POLICIES:
            if action_space is None:
                raise ValueError(f"as_policy({name!r}) needs the env's action_space")
            if name == "zero":
                return ZeroPolicy(action_space)
            return (RandomPolicy if name == "random" else PersistentRandomPolicy)(action_space, seed=seed)
        return load_oracle(name, action_space=action_space)
    if _is_sb3_model(obj):
        return SB3Policy(obj)
    if callable(obj):
        return obj
    raise TypeError(
        f"cannot make a policy from {type(obj).__name__}: expected 'random', 'persistent', 'zero', 'scripted:<game>', "
        "the path of a saved oracle, a Stable-Baselines3 model or a callable"
    )


def load_oracle(path: str | os.PathLike, *, action_space: gym.Space | None = None) -> Callable[[Any], np.ndarray]:
    """Load a saved or scripted task oracle as a policy.

    ``path`` is ``"scripted:<game>"`` (a RAM oracle of
    :mod:`worldrl.oracles.atari`, acting in the game's minimal action set),
    an ``oracle.zip`` written by :func:`~worldrl.oracles.sac.train_state_oracle`
    or the folder holding it; the ``oracle.json`` beside it becomes the
    policy's ``metadata``. A folder where ``worldrl train-oracle`` reported
    a scripted Atari oracle (an ``oracle.json`` naming ``"policy":
    "scripted:<game>"``, no zip) loads that scripted oracle. The returned
    policy reads the state, so its ``required_obs_type`` is ``"pixels+state"``.

    Oracle zips hold pickled Python objects: load only files from a trusted
    source (ones you trained yourself).
    """
    name = os.fspath(path)
    if name.startswith(SCRIPTED_PREFIX):
        from worldrl.oracles.atari import scripted_oracle

        policy = scripted_oracle(name[len(SCRIPTED_PREFIX):])
        if action_space is not None and getattr(action_space, "n", None) != len(policy.action_meanings):
            raise ValueError(
                f"{name} acts in the game's minimal action set ({len(policy.action_meanings)} actions), "
                f"but the env's action space is {action_space}; make the env with full_action_space=False"
            )
        return policy
    file = Path(name)
    if file.is_dir():
        scripted = file / ORACLE_INFO
        if not (file / ORACLE_FILE).exists() and scripted.is_file():
            policy_name = json.loads(scripted.read_text()).get("policy", "")
            if policy_name.startswith(SCRIPTED_PREFIX):
                return load_oracle(policy_name, action_space=action_space)
        file = file / ORACLE_FILE
    if not file.is_file():
        raise FileNotFoundError(
            f"no oracle at {name!r}: expected an {ORACLE_FILE} (or a folder holding one) written by "
            "`worldrl train-oracle`, or 'scripted:<game>'"
        )
    info_file = file.with_name(ORACLE_INFO)
    metadata = json.loads(info_file.read_text()) if info_file.is_file() else {}
    algorithm = metadata.get("algorithm", "SAC")
    import stable_baselines3

    if not hasattr(stable_baselines3, algorithm):
        raise ValueError(f"{info_file}: unknown algorithm {algorithm!r}")
    model = getattr(stable_baselines3, algorithm).load(file, device="cpu")
    if action_space is not None and model.action_space.shape != action_space.shape:
        raise ValueError(
            f"oracle {file} acts in {model.action_space}, but the env's action space is {action_space}"
        )
    return SB3Policy(model, metadata)


def evaluate_policy_return(
    env_id: str,
    policy: Any,
    episodes: int = 20,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    *,
    num_envs: int | None = None,
    max_episode_steps: int | None = None,
) -> dict[str, Any]:
    """Mean and standard deviation of the return of ``episodes`` episodes of ``policy`` in ``env_id``.

    Runs ``num_envs`` (default ``min(episodes, 4)``) synchronous copies; env i
    plays a fixed share of the episodes, so fast-ending episodes are not
    over-counted. ``policy`` goes through :func:`as_policy`. A policy that
    reads only the state (``required_obs_type == "pixels+state"``) is evaluated
    with ``obs_type="state"`` unless ``env_kwargs`` says otherwise, since
    rendering pixels nobody looks at would only cost time.
    ``max_episode_steps`` caps each episode (episodes then end truncated).
    Returns ``mean``, ``std`` (population), and per episode ``returns`` and
    ``lengths`` (agent steps).
    """
    import worldrl  # noqa: F401  (registers the ids)

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env_kwargs = dict(env_kwargs or {})
    num_envs = min(episodes, 4) if num_envs is None else num_envs
    if max_episode_steps is not None:
        env_kwargs["max_episode_steps"] = max_episode_steps
    from_space = isinstance(policy, str) and policy in SPACE_POLICIES
    if not from_space:
        policy = as_policy(policy)
        if getattr(policy, "required_obs_type", None) == "pixels+state":
            env_kwargs.setdefault("obs_type", "state")
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync", **env_kwargs)
    if from_space:
        policy = as_policy(policy, envs.single_action_space, seed=seed)
    try:
        reset = getattr(policy, "reset", None)
        if callable(reset):
            reset()
        targets = np.array([(episodes + i) // num_envs for i in range(num_envs)])
        done_counts = np.zeros(num_envs, int)
        running = np.zeros(num_envs)
        length = np.zeros(num_envs, int)
        returns: list[float] = []
        lengths: list[int] = []
        obs, _ = envs.reset(seed=seed)
        while (done_counts < targets).any():
            actions = np.asarray(policy(obs))
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            running += rewards
            length += 1
            for i in np.flatnonzero(terminated | truncated):
                if done_counts[i] < targets[i]:
                    returns.append(float(running[i]))
                    lengths.append(int(length[i]))
                    done_counts[i] += 1
                running[i] = 0.0
                length[i] = -1  # the next step is the vector env's autoreset, not part of an episode
    finally:
        envs.close()
    values = np.array(returns)
    return {"mean": float(values.mean()), "std": float(values.std()), "returns": returns, "lengths": lengths}
