"""DMLab-like 3-D mazes as ``worldrl/maze-<layout>-v0``, built from dm_control's locomotion mazes.

A rolling ball with an egocentric camera moves through a random labmaze
layout (DeepMind Lab's maze generator) with DeepMind Lab's wall, floor and sky
textures. Every episode draws a new layout, spawn point, heading and wall and
floor textures from the env's random state, so a seed fixes them all. The task
has no goal and no reward (0 every step): it exists to record long videos of
random walks with their actions, the kind of data TECO's DMLab benchmark uses.

Actions are discrete by default, DMLab-style (``ACTION_MEANINGS``), or the
ball's two continuous controls (roll, steer) with ``action_type="continuous"``.
An agent step is 0.1 s; episodes end by truncation after ``max_steps`` (300).
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import cv2
import dm_env
import labmaze
import numpy as np
from absl import logging as absl_logging
from dm_control import composer, mjcf
from dm_control.composer.observation import observable
from dm_control.locomotion.arenas import mazes
from dm_control.locomotion.tasks import random_goal_maze
from dm_control.locomotion.walkers import jumping_ball
from gymnasium import spaces
from labmaze import assets as labmaze_assets

from worldrl.envs.dm_control_base import DMControlEnv, check_choice
from worldrl.envs.registration import register

LAYOUTS: dict[str, dict[str, int]] = {
    "random_small": {"height": 9, "width": 9, "max_rooms": 3, "room_min_size": 3, "room_max_size": 3},
    "random_medium": {"height": 11, "width": 11, "max_rooms": 4, "room_min_size": 3, "room_max_size": 4},
    "random_large": {"height": 15, "width": 15, "max_rooms": 6, "room_min_size": 3, "room_max_size": 5},
}
"""labmaze.RandomMaze arguments of each registered layout (cells of 2 m; sizes include the outer wall)."""

ACTION_MEANINGS = ("forward", "forward_left", "forward_right", "turn_left", "turn_right", "backward")
DISCRETE_CONTROLS = np.array(
    [[0.5, 0.0], [0.5, -0.4], [0.5, 0.4], [0.0, -0.5], [0.0, 0.5], [-0.5, 0.0]], dtype=np.float64
)
"""(roll, steer) of each discrete action; a positive steer turns right."""

WALL_STYLES = ("style_01", "style_02", "style_03", "style_04")
SKY_STYLES = ("sky_01", "sky_02", "sky_03")
PHYSICS_TIMESTEP = 0.005
TEXTURE_SIZE = 256
"""labmaze's 1024x1024 textures are downscaled to this: 4x faster resets (each new maze recompiles the model
and rebuilds the rendering context, which uploads every texture), no visible change in 64x64 frames."""


@functools.lru_cache(maxsize=None)
def _small_png(path: str) -> bytes:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"labmaze texture {path} could not be read")
    ok, encoded = cv2.imencode(".png", cv2.resize(image, (TEXTURE_SIZE, TEXTURE_SIZE), interpolation=cv2.INTER_AREA))
    return encoded.tobytes()


def _texture_file(path: str) -> mjcf.Asset:
    return mjcf.Asset(_small_png(path), ".png")


class LabmazeTextures(composer.Entity):
    """One labmaze texture style, downscaled: ``kind="sky"`` gives ``texture`` (a skybox), wall/floor ``textures``."""

    def _build(self, kind: str, style: str) -> None:
        self._mjcf_root = mjcf.RootElement(model=f"labmaze_{kind}_{style}")
        asset = self._mjcf_root.asset
        if kind == "sky":
            paths = labmaze_assets.get_sky_texture_paths(style)
            sides = {f"file{side}": _texture_file(getattr(paths, side)) for side in paths._fields}
            self.texture = asset.add("texture", type="skybox", name="texture", **sides)
            self.textures = [self.texture]
        else:
            paths = {"wall": labmaze_assets.get_wall_texture_paths, "floor": labmaze_assets.get_floor_texture_paths}
            self.textures = [
                asset.add("texture", type="2d", name=name, file=_texture_file(path))
                for name, path in paths[kind](style).items()
            ]

    @property
    def mjcf_model(self) -> mjcf.RootElement:
        return self._mjcf_root


class SeededRandomMaze(mazes.MazeWithTargets):
    """A labmaze ``RandomMaze`` arena whose layout and textures come from the random state passed to ``regenerate``."""

    def _build(self, maze_kwargs: dict[str, int], **kwargs: Any) -> None:
        self._maze_kwargs = dict(maze_kwargs, spawns_per_room=1, objects_per_room=0)
        super()._build(maze=labmaze.RandomMaze(**self._maze_kwargs, random_seed=0), **kwargs)

    def regenerate(self, random_state: np.random.RandomState) -> None:
        self._maze = labmaze.RandomMaze(**self._maze_kwargs, random_seed=int(random_state.randint(2**31)))
        global_state = np.random.get_state()
        np.random.seed(int(random_state.randint(2**31)))  # MazeWithTargets draws textures from numpy's global RNG
        try:
            super().regenerate()
        finally:
            np.random.set_state(global_state)


class RandomWalkMaze(random_goal_maze.NullGoalMaze):
    """No goal, no reward, no early termination: a new maze each episode; the state adds position and heading."""

    def __init__(self, walker: composer.Entity, arena: SeededRandomMaze, control_timestep: float):
        super().__init__(
            walker, arena, contact_termination=False,
            physics_timestep=PHYSICS_TIMESTEP, control_timestep=control_timestep,
        )
        walker.observables.egocentric_camera.enabled = False  # the env renders its own frames
        root = walker.root_body
        self._task_observables = {
            "position": observable.Generic(lambda physics: physics.bind(root).xpos.copy()),
            "heading": observable.Generic(lambda physics: physics.bind(root).xmat.reshape(3, 3)[:2, 0].copy()),
        }
        for item in self._task_observables.values():
            item.enabled = True

    def initialize_episode_mjcf(self, random_state: np.random.RandomState) -> None:
        self._maze_arena.regenerate(random_state)

    def initialize_episode(self, physics: Any, random_state: np.random.RandomState) -> None:
        verbosity = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.ERROR)  # the ball has no free joint: a warning each respawn
        try:
            super().initialize_episode(physics, random_state)
        finally:
            absl_logging.set_verbosity(verbosity)


class MazeEnv(DMControlEnv):
    """A random walk through random mazes; see the module docstring and :class:`DMControlEnv` for the contract."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        layout: str,
        *,
        obs_type: str = "pixels",
        size: int | tuple[int, int] = 64,
        camera: int | str = "walker/egocentric",
        action_type: str = "discrete",
        max_steps: int = 300,
        control_timestep: float = 0.1,
        action_repeat: int = 1,
        wall_style: str = "style_01",
        sky_style: str = "sky_03",
        render_mode: str | None = None,
    ):
        check_choice("layout", layout, list(LAYOUTS))
        check_choice("action_type", action_type, ("discrete", "continuous"))
        check_choice("wall_style", wall_style, WALL_STYLES)
        check_choice("sky_style", sky_style, SKY_STYLES)
        if not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
        if not isinstance(control_timestep, (int, float)) or not PHYSICS_TIMESTEP <= control_timestep <= 1:
            raise ValueError(f"control_timestep must be in [{PHYSICS_TIMESTEP}, 1] seconds, got {control_timestep!r}")
        self.layout, self.action_type, self.max_steps = layout, action_type, int(max_steps)
        self.control_timestep, self.wall_style, self.sky_style = float(control_timestep), wall_style, sky_style
        super().__init__(
            obs_type=obs_type, size=size, camera=camera, action_repeat=action_repeat, render_mode=render_mode
        )
        if action_type == "discrete":
            self.action_space = spaces.Discrete(len(ACTION_MEANINGS))

    def _load(self) -> dm_env.Environment:
        walker = jumping_ball.RollingBallWithHead(camera_height=0.3)
        arena = SeededRandomMaze(
            maze_kwargs=LAYOUTS[self.layout],
            skybox_texture=LabmazeTextures("sky", self.sky_style),
            wall_textures=LabmazeTextures("wall", self.wall_style),
            floor_textures=LabmazeTextures("floor", self.wall_style),
        )
        task = RandomWalkMaze(walker, arena, self.control_timestep)
        control_steps = self.max_steps * self.action_repeat
        return composer.Environment(
            task, time_limit=(control_steps - 0.5) * self.control_timestep, random_state=0,
            strip_singleton_obs_buffer_dim=True,
        )

    def _seed(self, seed: int) -> None:
        self._env.random_state.seed(seed)

    def _control(self, action: Any) -> np.ndarray:
        if self.action_type == "continuous":
            return super()._control(action)
        n = len(ACTION_MEANINGS)
        try:
            if isinstance(action, (bool, np.bool_)) or np.asarray(action).dtype.kind not in "iu":
                raise TypeError
            index = operator.index(action)
        except TypeError:
            raise ValueError(
                f"action {action!r} is not valid: expected an int in [0, {n - 1}] (discrete actions are never rounded)"
            ) from None
        if not 0 <= index < n:
            raise ValueError(f"action {action!r} is out of range: expected an int in [0, {n - 1}]")
        return DISCRETE_CONTROLS[index]


def register_ids() -> None:
    for layout in LAYOUTS:
        register("maze", layout, "worldrl.envs.maze:MazeEnv", kwargs={"layout": layout})
