import gymnasium as gym
import numpy as np
import pytest
from dm_control import suite
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import worldrl
from worldrl.envs.dmc import DMCEnv


def test_every_suite_task_is_registered():
    ids = set(worldrl.registered_ids("dmc"))
    assert len(ids) == len(suite.ALL_TASKS) > 50
    assert {f"worldrl/dmc-{d}_{t}-v0" for d, t in suite.ALL_TASKS} == ids


def test_pixels_defaults():
    env = gym.make("worldrl/dmc-cartpole_balance-v0")
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert env.unwrapped.action_repeat == 2 and env.unwrapped.camera == 0
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs in env.observation_space
    assert info["task_reward"] == reward and 0.0 <= reward <= 2.0
    assert obs.std() > 0, "rendered frame is blank"


def test_episode_is_1000_control_steps_and_only_truncates():
    env = gym.make("worldrl/dmc-cartpole_balance-v0", obs_type="state")
    env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == 500 and truncated and not terminated


def test_action_repeat_sums_rewards():
    single = gym.make("worldrl/dmc-cartpole_balance-v0", obs_type="state", action_repeat=1)
    double = gym.make("worldrl/dmc-cartpole_balance-v0", obs_type="state", action_repeat=2)
    action = np.array([0.3], dtype=np.float32)
    single.reset(seed=5)
    double.reset(seed=5)
    r1 = single.step(action)[1] + single.step(action)[1]
    obs1 = single.step(action)[0]
    obs2, r2, *_ = double.step(action)
    obs2 = double.step(action)[0]
    assert r1 == pytest.approx(r2)
    assert not np.allclose(obs1, obs2)  # three single steps vs four physics steps: states differ


def test_quadruped_uses_camera_2():
    env = DMCEnv("quadruped", "walk", obs_type="state")
    assert env.camera == 2


@pytest.mark.parametrize("obs_type", ["state", "pixels+state"])
def test_state_observations(obs_type):
    env = gym.make("worldrl/dmc-walker_walk-v0", obs_type=obs_type, size=(48, 32))
    obs, _ = env.reset(seed=1)
    assert obs in env.observation_space
    state = obs if obs_type == "state" else obs["state"]
    assert state.dtype == np.float32 and state.shape == (24,)
    if obs_type == "pixels+state":
        assert obs["pixels"].shape == (48, 32, 3)


def test_same_seed_same_frames_different_seed_different_frames(seeded_rollout):
    env = gym.make("worldrl/dmc-cartpole_swingup-v0")
    first, rewards_a = seeded_rollout(env, 10, seed=3)
    second, rewards_b = seeded_rollout(env, 10, seed=3)
    other, _ = seeded_rollout(env, 10, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert rewards_a == rewards_b
    assert not np.array_equal(first[0], other[0])


def test_out_of_bounds_actions_are_clipped():
    env = gym.make("worldrl/dmc-cartpole_balance-v0", obs_type="state")
    env.reset(seed=0)
    clipped = env.step(np.array([1.0], dtype=np.float32))[0]
    env.reset(seed=0)
    outside = env.step(np.array([50.0], dtype=np.float32))[0]
    np.testing.assert_array_equal(clipped, outside)


@pytest.mark.parametrize("action", [np.zeros(2, np.float32), np.array([np.nan], np.float32)])
def test_malformed_actions_raise(action):
    env = gym.make("worldrl/dmc-cartpole_balance-v0", obs_type="state")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(action)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 0}, "size"),
        ({"size": (64, 64, 3)}, "size"),
        ({"camera": 7}, "camera"),
        ({"camera": "nope"}, "camera"),
        ({"obs_type": "rgb"}, "obs_type.*'pixels'"),
        ({"action_repeat": 0}, "action_repeat"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make("worldrl/dmc-cartpole_balance-v0", **kwargs)


@pytest.mark.parametrize("env_id", ["worldrl/dmc-cartpole_balance-v0", "worldrl/dmc-cheetah_run-v0"])
def test_check_env(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)
    sb3_check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    frame = env.render()
    np.testing.assert_array_equal(frame, obs)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8


def test_check_env_dict_observation():
    env = gym.make("worldrl/dmc-reacher_easy-v0", obs_type="pixels+state")
    check_env(env.unwrapped)
    sb3_check_env(env.unwrapped)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_env(mode):
    envs = gym.make_vec("worldrl/dmc-walker_walk-v0", num_envs=2, vectorization_mode=mode)
    try:
        obs, _ = envs.reset(seed=[0, 1])
        assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
        assert not np.array_equal(obs[0], obs[1])
        for _ in range(3):
            obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
        assert reward.shape == (2,) and info["task_reward"].shape == (2,)
    finally:
        envs.close()
