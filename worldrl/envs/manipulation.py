"""dm_control's Jaco-arm manipulation tasks as ``worldrl/manip-<task>-v0``.

These run everywhere MuJoCo does, so they are worldrl's robot-arm suite when
RLBench (which needs CoppeliaSim) is not installed. The ``_features`` variant
of each task is loaded and the pixels are rendered here from the front camera,
at the requested size, once per agent step; the ``_vision`` variants would
render their own 84x84 frames as well.
"""

from __future__ import annotations

import dm_env
from dm_control import manipulation

from worldrl.envs.dm_control_base import DMControlEnv, check_choice
from worldrl.envs.registration import register


def tasks() -> list[str]:
    """Task names without the ``_features``/``_vision`` suffix, e.g. ``reach_site``."""
    return sorted({name.rsplit("_", 1)[0] for name in manipulation.ALL if name.endswith("_features")})


class ManipulationEnv(DMControlEnv):
    """One Jaco manipulation task (250 agent steps of 0.04 s at action repeat 1)."""

    def __init__(
        self,
        task: str,
        *,
        obs_type: str = "pixels",
        size: int | tuple[int, int] = 64,
        camera: int | str = "front_close",
        action_repeat: int = 1,
        render_mode: str | None = None,
    ):
        check_choice("task", task, tasks())
        self.task = task
        super().__init__(
            obs_type=obs_type, size=size, camera=camera, action_repeat=action_repeat, render_mode=render_mode
        )

    def _load(self) -> dm_env.Environment:
        return manipulation.load(f"{self.task}_features")

    def _seed(self, seed: int) -> None:
        self._env.random_state.seed(seed)


def register_ids() -> None:
    for task in tasks():
        register("manip", task, "worldrl.envs.manipulation:ManipulationEnv", kwargs={"task": task})
