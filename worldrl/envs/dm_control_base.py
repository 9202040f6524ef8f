"""Gymnasium adapter for dm_control environments (the control suite and composer tasks).

The adapter owns the step contract that DreamerV3 and VIPER use: actions are
clipped to the bounds and repeated ``action_repeat`` times with rewards summed,
the frame is rendered once per agent step (after the repeat, not per physics
step, since rendering dominates the cost), and the episode ends by truncation
at the task's time limit. ``terminated`` is true only when the task itself ends
the episode with discount 0, which no standard control-suite task does.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import dm_env
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worldrl.envs.headless import require_rendering

OBS_TYPES = ("pixels", "state", "pixels+state")


def parse_size(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``64`` or ``(height, width)`` -> ``(height, width)``, with a clear error otherwise."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 8 <= s <= 1024 for s in size)
    ):
        raise ValueError(f"size must be an int or a (height, width) pair of ints in [8, 1024], got {size!r}")
    return int(size[0]), int(size[1])


def check_choice(name: str, value: Any, allowed: tuple | list) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; allowed values: {', '.join(map(repr, allowed))}")


def _flat_size(spec: Any) -> int:
    return int(np.prod(spec.shape)) if spec.shape else 1


class DMControlEnv(gym.Env):
    """Base class: subclasses load the dm_env and say how to seed it and which cameras it has."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        *,
        obs_type: str = "pixels",
        size: int | tuple[int, int] = 64,
        camera: int | str = 0,
        action_repeat: int = 2,
        render_mode: str | None = None,
    ):
        check_choice("obs_type", obs_type, OBS_TYPES)
        check_choice("render_mode", render_mode, (None, "rgb_array"))
        if not isinstance(action_repeat, (int, np.integer)) or action_repeat < 1:
            raise ValueError(f"action_repeat must be a positive int, got {action_repeat!r}")
        self.obs_type = obs_type
        self.size = parse_size(size)
        self.action_repeat = int(action_repeat)
        self.render_mode = render_mode
        if obs_type != "state" or render_mode is not None:
            require_rendering()

        self._env: dm_env.Environment = self._load()
        self.camera = self._check_camera(camera)

        action_spec = self._env.action_spec()
        self.action_space = spaces.Box(
            action_spec.minimum.astype(np.float32), action_spec.maximum.astype(np.float32), dtype=np.float32
        )
        self._action_low = action_spec.minimum.astype(np.float64)
        self._action_high = action_spec.maximum.astype(np.float64)

        self._state_keys = list(self._env.observation_spec().keys())
        state_dim = sum(_flat_size(s) for s in self._env.observation_spec().values())
        state_space = spaces.Box(-np.inf, np.inf, (state_dim,), np.float32)
        pixel_space = spaces.Box(0, 255, (*self.size, 3), np.uint8)
        self.observation_space = {
            "pixels": pixel_space,
            "state": state_space,
            "pixels+state": spaces.Dict({"pixels": pixel_space, "state": state_space}),
        }[obs_type]
        self._frame: np.ndarray | None = None

    def _load(self) -> dm_env.Environment:
        raise NotImplementedError

    @property
    def _physics(self):
        """Looked up each time: composer environments may rebuild their physics on reset."""
        return self._env.physics

    def _seed(self, seed: int) -> None:
        """Reseed the dm_env's own random state (it draws the initial state of each episode)."""
        raise NotImplementedError

    def _camera_names(self) -> list[str]:
        model = self._physics.model
        return [model.id2name(i, "camera") for i in range(model.ncam)]

    def _check_camera(self, camera: int | str) -> int | str:
        names = self._camera_names()
        if isinstance(camera, str):
            check_choice("camera", camera, names)
        elif not isinstance(camera, (int, np.integer)) or not -1 <= camera < len(names):
            raise ValueError(
                f"camera={camera!r} is not valid for this task; allowed values: -1 (free camera), "
                f"0..{len(names) - 1} or a name in {names}"
            )
        return camera

    def _state(self, observation: OrderedDict) -> np.ndarray:
        return np.concatenate(
            [np.asarray(observation[k], dtype=np.float32).reshape(-1) for k in self._state_keys]
        )

    def _render_frame(self) -> np.ndarray:
        return self._physics.render(*self.size, camera_id=self.camera)

    def _observation(self, time_step: dm_env.TimeStep) -> np.ndarray | dict[str, np.ndarray]:
        if self.obs_type == "state":
            self._frame = None
            return self._state(time_step.observation)
        self._frame = self._render_frame()
        if self.obs_type == "pixels":
            return self._frame
        return {"pixels": self._frame, "state": self._state(time_step.observation)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._seed(seed)
        time_step = self._env.reset()
        return self._observation(time_step), {}

    def _control(self, action: Any) -> np.ndarray:
        """The dm_env control vector for an agent's action: checked, then clipped to the bounds."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self._action_low.shape:
            raise ValueError(f"action has shape {action.shape}, expected {self._action_low.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action contains NaN or inf: {action}")
        return np.clip(action, self._action_low, self._action_high)

    def step(self, action):
        action = self._control(action)
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(action)
            reward += time_step.reward or 0.0
            if time_step.last():
                break
        terminated = bool(time_step.last() and time_step.discount == 0)
        truncated = bool(time_step.last() and not terminated)
        return self._observation(time_step), reward, terminated, truncated, {"task_reward": reward}

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self._frame.copy() if self._frame is not None else self._render_frame()

    def close(self) -> None:
        """Free the dm_env; closing again does nothing (composer environments fail on a second close)."""
        close = getattr(self._env, "close", None)
        if close is not None and not getattr(self, "_closed", False):
            close()
        self._closed = True
