import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import worldrl


def test_jaco_tasks_are_registered():
    ids = worldrl.registered_ids("manip")
    for task in ("reach_site", "lift_brick", "stack_2_bricks", "place_cradle"):
        assert f"worldrl/manip-{task}-v0" in ids


def test_reach_site_pixels_and_determinism(seeded_rollout):
    env = gym.make("worldrl/manip-reach_site-v0")
    first, rewards_a = seeded_rollout(env, 5, seed=0)
    second, rewards_b = seeded_rollout(env, 5, seed=0)
    other, _ = seeded_rollout(env, 1, seed=1)
    assert first[0].shape == (64, 64, 3) and first[0].dtype == np.uint8
    assert all(np.array_equal(a, b) for a, b in zip(first, second)) and rewards_a == rewards_b
    assert not np.array_equal(first[0], other[0])
    assert env.action_space.shape == (9,)


def test_lift_brick_check_env():
    env = gym.make("worldrl/manip-lift_brick-v0", obs_type="pixels+state")
    check_env(env.unwrapped)
    sb3_check_env(env.unwrapped)


def test_unknown_task_lists_allowed_values():
    from worldrl.envs.manipulation import ManipulationEnv

    with pytest.raises(ValueError, match="task='reach_sight'.*'reach_site'"):
        ManipulationEnv("reach_sight")
