"""Stack frames taken every ``stride`` steps: the context a strided video model sees."""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class FrameStride(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Observation = the last ``num_frames`` observations spaced ``stride`` steps apart.

    At step t it is ``[o_{t-(n-1)s}, ..., o_{t-s}, o_t]`` stacked on a new first
    axis, the layout of gymnasium's ``FrameStackObservation`` (which is this
    wrapper with ``stride=1``). Before enough steps have passed, the reset
    observation fills the missing slots. VIPER's RLBench video models use
    stride 4.
    """

    def __init__(self, env: gym.Env, num_frames: int, stride: int = 1):
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive int, got {stride!r}")
        space = env.observation_space
        if not isinstance(space, spaces.Box):
            raise TypeError(f"FrameStride needs a Box observation space, got {space}")
        gym.utils.RecordConstructorArgs.__init__(self, num_frames=num_frames, stride=stride)
        super().__init__(env)
        self.num_frames, self.stride = num_frames, stride
        self.observation_space = spaces.Box(
            np.repeat(space.low[None], num_frames, axis=0),
            np.repeat(space.high[None], num_frames, axis=0),
            dtype=space.dtype,
        )
        self._history: deque[np.ndarray] = deque(maxlen=(num_frames - 1) * stride + 1)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._history.clear()
        self._history.extend([obs] * self._history.maxlen)
        return self._stack(), info

    def observation(self, observation: np.ndarray) -> np.ndarray:
        self._history.append(observation)
        return self._stack()

    def _stack(self) -> np.ndarray:
        return np.stack([self._history[i] for i in range(0, len(self._history), self.stride)])
