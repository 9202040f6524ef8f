"""DeepMind Control Suite tasks as ``worldrl/dmc-<domain>_<task>-v0``.

Defaults follow DreamerV3 and VIPER: 64x64 RGB pixels, action repeat 2, camera
0 (2 for quadruped, whose camera 0 looks at the floor), the suite's own time
limit of 1000 control steps (500 agent steps at action repeat 2).
"""

from __future__ import annotations

import dm_env
from dm_control import suite

from worldrl.envs.dm_control_base import DMControlEnv, check_choice
from worldrl.envs.registration import register

DEFAULT_CAMERAS = {"quadruped": 2}


def tasks() -> list[tuple[str, str]]:
    """Every (domain, task) pair of the installed control suite."""
    return list(suite.ALL_TASKS)


class DMCEnv(DMControlEnv):
    """One control-suite task; see :class:`~worldrl.envs.dm_control_base.DMControlEnv` for the step contract."""

    def __init__(
        self,
        domain: str,
        task: str,
        *,
        obs_type: str = "pixels",
        size: int | tuple[int, int] = 64,
        camera: int | str | None = None,
        action_repeat: int = 2,
        render_mode: str | None = None,
    ):
        check_choice("domain/task", (domain, task), tasks())
        self.domain, self.task = domain, task
        super().__init__(
            obs_type=obs_type,
            size=size,
            camera=DEFAULT_CAMERAS.get(domain, 0) if camera is None else camera,
            action_repeat=action_repeat,
            render_mode=render_mode,
        )

    def _load(self) -> dm_env.Environment:
        return suite.load(self.domain, self.task)

    def _seed(self, seed: int) -> None:
        self._env.task.random.seed(seed)


def register_ids() -> None:
    for domain, task in tasks():
        register("dmc", f"{domain}_{task}", "worldrl.envs.dmc:DMCEnv", kwargs={"domain": domain, "task": task})
