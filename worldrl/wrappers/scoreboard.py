"""Black out an Atari game's score area in the observations of any env."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worldrl.envs.atari import NATIVE_SIZE, SCOREBOARD_REGIONS


def scaled_regions(game: str, height: int, width: int) -> list[tuple[slice, slice]]:
    """The game's native-frame score regions scaled to a ``height`` x ``width`` frame, rounded outwards."""
    if game not in SCOREBOARD_REGIONS:
        raise ValueError(
            f"no scoreboard region is defined for {game!r}; games with one: {', '.join(sorted(SCOREBOARD_REGIONS))}"
        )

    def scale(part: slice, native: int, size: int) -> slice:
        start, stop, _ = part.indices(native)
        return slice(math.floor(start * size / native), math.ceil(stop * size / native))

    return [
        (scale(rows, NATIVE_SIZE[0], height), scale(cols, NATIVE_SIZE[1], width))
        for rows, cols in SCOREBOARD_REGIONS[game]
    ]


class ScoreboardMask(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Zero the score area of ``game`` in image observations ``[H, W, C]`` of any size.

    worldrl's own Atari envs take ``mask_scoreboard=True`` and mask the native
    frame before resizing; this wrapper serves other Atari envs (ale-py's own,
    recorded datasets) whose frames are already resized, so the region is
    scaled and rounded outwards to cover the blurred edge. VIPER masks the
    score both when training the video model and when scoring, or the reward
    jumps whenever the score changes.
    """

    def __init__(self, env: gym.Env, game: str):
        space = env.observation_space
        if not isinstance(space, spaces.Box) or space.dtype != np.uint8 or len(space.shape) != 3:
            raise TypeError(f"ScoreboardMask needs uint8 image observations [H, W, C], got {space}")
        gym.utils.RecordConstructorArgs.__init__(self, game=game)
        super().__init__(env)
        self.regions = scaled_regions(game, space.shape[0], space.shape[1])

    def observation(self, observation: np.ndarray) -> np.ndarray:
        observation = observation.copy()
        for region in self.regions:
            observation[region] = 0
        return observation
