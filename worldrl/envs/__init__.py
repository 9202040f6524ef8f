"""Environments behind the Gymnasium API: DMC, Atari, Jaco manipulation, DMLab-like mazes and RLBench."""

from worldrl.envs.headless import configure_mujoco_gl

configure_mujoco_gl()  # before anything imports dm_control or mujoco

from worldrl.envs.registration import closest_ids, make, register_envs, registered_ids  # noqa: E402

__all__ = ["closest_ids", "make", "register_envs", "registered_ids"]
