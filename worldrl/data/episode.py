"""worldrl's episode format: one compressed ``.npz`` per episode, DreamerV3's keys.

An episode of T agent steps holds T+1 entries per key; entry t describes the
step that *led to* observation t, so entry 0 is the reset observation with a
zero action and zero reward:

=============  =========================  ==========================================
key            shape, dtype               meaning
=============  =========================  ==========================================
image          [T+1, H, W, C] uint8       observation frames
action         [T+1, A] float32           action taken before frame t (one-hot for
                                          discrete actions); row 0 is zeros
reward         [T+1] float32              reward received on reaching frame t
is_first       [T+1] bool                 true only at t=0
is_last        [T+1] bool                 true only at t=T
is_terminal    [T+1] bool                 true at t=T when the episode terminated
                                          (not truncated)
state          [T+1, S] (optional)        low-dimensional state (DMC proprioception,
                                          Atari RAM)
task_reward    [T+1] float32 (optional)   the env's own reward when ``reward`` is
                                          another (e.g. VIPER)
task_id        [T+1] int32 (optional)     task index for multi-task models
=============  =========================  ==========================================

Writes are atomic (a temporary file in the same folder, then ``os.replace``),
so a crash never leaves a half-written episode under its final name.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from worldrl.atomic import atomic_write

REQUIRED_KEYS = ("image", "action", "reward", "is_first", "is_last", "is_terminal")
OPTIONAL_KEYS = ("state", "task_reward", "task_id")
DTYPES = {
    "image": np.uint8,
    "action": np.float32,
    "reward": np.float32,
    "is_first": bool,
    "is_last": bool,
    "is_terminal": bool,
    "task_reward": np.float32,
    "task_id": np.int32,
}

Episode = dict[str, np.ndarray]


class EpisodeError(ValueError):
    """An episode file or dict that does not follow the format (the message names the problem)."""


def validate_episode(episode: Mapping[str, np.ndarray], name: str = "episode") -> None:
    """Raise :class:`EpisodeError` naming the first key with a wrong shape or dtype."""
    missing = [k for k in REQUIRED_KEYS if k not in episode]
    if missing:
        raise EpisodeError(f"{name}: missing keys {missing}; required: {list(REQUIRED_KEYS)}")
    length = len(episode["image"])
    if length < 1:
        raise EpisodeError(f"{name}: empty episode")
    for key, value in episode.items():
        if len(value) != length:
            raise EpisodeError(f"{name}: '{key}' has {len(value)} entries, 'image' has {length}")
        if key in DTYPES and value.dtype != DTYPES[key]:
            raise EpisodeError(f"{name}: '{key}' has dtype {value.dtype}, expected {np.dtype(DTYPES[key])}")
    if episode["image"].ndim != 4:
        raise EpisodeError(f"{name}: 'image' must be [T+1, H, W, C], got shape {episode['image'].shape}")
    if episode["action"].ndim != 2:
        raise EpisodeError(f"{name}: 'action' must be [T+1, A], got shape {episode['action'].shape}")
    if not episode["is_first"][0] or episode["is_first"][1:].any():
        raise EpisodeError(f"{name}: 'is_first' must be true at t=0 only")


def episode_return(episode: Mapping[str, np.ndarray], key: str = "reward") -> float:
    return float(np.sum(episode[key], dtype=np.float64))


def save_episode(path: str | Path, episode: Mapping[str, np.ndarray]) -> Path:
    """Validate and write ``episode`` to ``path`` (``.npz``) atomically; return the path."""
    path = Path(path)
    validate_episode(episode, str(path))
    return atomic_write(path, lambda file: np.savez_compressed(file, **episode))


def load_episode(path: str | Path, keys: tuple[str, ...] | None = None) -> Episode:
    """Read an episode (or only ``keys`` of it: npz members decompress one by one).

    Raises :class:`EpisodeError` naming the file when it is truncated, corrupt
    or not an episode. Files are read with ``allow_pickle=False``.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            wanted = keys if keys is not None else tuple(data.files)
            missing = [k for k in wanted if k not in data.files]
            if missing:
                raise EpisodeError(f"{path}: missing keys {missing}")
            episode = {k: data[k] for k in wanted}
    except EpisodeError:
        raise
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as error:
        raise EpisodeError(f"{path}: corrupt or truncated episode file ({error})") from error
    if keys is None:
        validate_episode(episode, str(path))
    return episode


class EpisodeBuilder:
    """Accumulates one env's steps into an episode dict in the format above.

    ``add_reset(obs)`` starts it; ``add_step(action, obs, reward, terminated,
    truncated, info)`` appends; ``episode()`` stacks the arrays. Observations
    may be an image array or a dict with ``pixels`` (and ``state``).
    Discrete actions are one-hot encoded with ``num_actions`` entries.
    """

    def __init__(self, action_dim: int, discrete: bool = False, task_id: int | None = None):
        self.action_dim, self.discrete, self.task_id = action_dim, discrete, task_id
        self._steps: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        """Agent steps so far."""
        return max(0, len(self._steps.get("image", ())) - 1)

    @property
    def started(self) -> bool:
        """Whether ``add_reset`` began an episode that has not been cleared."""
        return bool(self._steps)

    def clear(self) -> None:
        self._steps = {}

    def _append_obs(self, obs: Any) -> None:
        if isinstance(obs, Mapping):
            self._steps["image"].append(np.asarray(obs["pixels"]))
            if "state" in obs:
                self._steps.setdefault("state", []).append(np.asarray(obs["state"]))
        else:
            self._steps["image"].append(np.asarray(obs))

    def add_reset(self, obs: Any) -> None:
        self._steps = {"image": [], "action": [np.zeros(self.action_dim, np.float32)], "reward": [0.0],
                       "task_reward": [0.0], "is_terminal": [False]}
        self._append_obs(obs)

    def add_step(self, action: Any, obs: Any, reward: float, terminated: bool, info: Mapping[str, Any]) -> None:
        if not self._steps:
            raise RuntimeError("add_reset() must start an episode before add_step()")
        if self.discrete:
            one_hot = np.zeros(self.action_dim, np.float32)
            one_hot[int(action)] = 1.0
            action = one_hot
        self._steps["action"].append(np.asarray(action, np.float32).reshape(self.action_dim))
        self._steps["reward"].append(float(reward))
        self._steps["task_reward"].append(float(info.get("task_reward", reward)))
        self._steps["is_terminal"].append(bool(terminated))
        self._append_obs(obs)

    def episode(self) -> Episode:
        length = len(self._steps["image"])
        episode = {
            "image": np.stack(self._steps["image"]).astype(np.uint8, copy=False),
            "action": np.stack(self._steps["action"]),
            "reward": np.asarray(self._steps["reward"], np.float32),
            "task_reward": np.asarray(self._steps["task_reward"], np.float32),
            "is_first": np.arange(length) == 0,
            "is_last": np.arange(length) == length - 1,
            "is_terminal": np.asarray(self._steps["is_terminal"], bool),
        }
        if "state" in self._steps:
            episode["state"] = np.stack(self._steps["state"])
        if self.task_id is not None:
            episode["task_id"] = np.full(length, self.task_id, np.int32)
        return episode
