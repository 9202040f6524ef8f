import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import worldrl
from worldrl.cli import main
from worldrl.envs.maze import ACTION_MEANINGS
from worldrl.oracles import PersistentRandomPolicy, as_policy

SMALL = "worldrl/maze-random_small-v0"


def layout(env: gym.Env) -> str:
    return str(env.unwrapped._env.task._maze_arena.maze.entity_layer)


def test_layouts_are_registered():
    assert {f"worldrl/maze-{name}-v0" for name in ("random_small", "random_medium", "random_large")} <= set(
        worldrl.registered_ids("maze")
    )


def test_check_env_and_frames():
    env = gym.make(SMALL, render_mode="rgb_array", max_steps=5)
    check_env(env.unwrapped, skip_render_check=False)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and obs.std() > 10
    np.testing.assert_array_equal(env.render(), obs)
    assert env.action_space == gym.spaces.Discrete(len(ACTION_MEANINGS))
    env.close()


def test_seeds_fix_the_maze_and_frames():
    env = gym.make(SMALL, max_steps=5)
    first, _ = env.reset(seed=1)
    maze = layout(env)
    frames = [env.step(0)[0] for _ in range(3)]
    again, _ = env.reset(seed=1)
    assert layout(env) == maze
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal([env.step(0)[0] for _ in range(3)], frames)
    other, _ = env.reset(seed=2)
    assert layout(env) != maze and not np.array_equal(other, first)
    env.reset()
    assert layout(env) not in (maze, layout(gym.make(SMALL).unwrapped))  # a new maze every episode
    env.close()


def test_episode_length_truncation_and_movement():
    env = gym.make(SMALL, obs_type="pixels+state", max_steps=12)
    obs, _ = env.reset(seed=0)
    start = obs["state"].copy()
    for step in range(12):
        obs, reward, terminated, truncated, _ = env.step(0)
        assert reward == 0.0 and not terminated and truncated == (step == 11)
    assert not np.allclose(obs["state"], start)
    env.close()


def test_bad_discrete_actions_raise():
    env = gym.make(SMALL, max_steps=5)
    env.reset(seed=0)
    for action in (1.0, True, 6, -1, np.array([0, 1])):
        with pytest.raises(ValueError, match="action"):
            env.step(action)
    env.step(np.int64(3))
    env.close()


def test_continuous_actions():
    env = gym.make(SMALL, action_type="continuous", max_steps=5)
    assert env.action_space.shape == (2,)
    env.reset(seed=0)
    env.step(np.array([2.0, -0.5]))  # clipped
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    env.close()


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="action_type"):
        gym.make(SMALL, action_type="joystick")
    with pytest.raises(ValueError, match="wall_style"):
        gym.make(SMALL, wall_style="style_09")


def test_persistent_policy_holds_actions_per_row():
    space = gym.spaces.Discrete(6)
    obs = np.zeros((3, 1))
    policy = as_policy("persistent", space, seed=4)
    assert isinstance(policy, PersistentRandomPolicy)
    actions = np.stack([policy(obs) for _ in range(60)])
    assert actions.shape == (60, 3)
    changes = (actions[1:] != actions[:-1]).mean()
    assert 0 < changes < 0.3  # held for 1..12 steps: a change about every 6.5 steps at most
    again = as_policy("persistent", gym.spaces.Discrete(6), seed=4)
    np.testing.assert_array_equal(np.stack([again(obs) for _ in range(60)]), actions)
    with pytest.raises(ValueError, match="min_steps"):
        PersistentRandomPolicy(space, min_steps=3, max_steps=2)


def test_collect_a_long_maze_episode(tmp_path, capsys):
    out = tmp_path / "maze"
    args = ["collect", "--env", SMALL, "--policy", "persistent", "--episodes", "1", "--out", str(out),
            "--env-arg", "max_steps=100", "--seed", "5"]
    assert main(args) == 0
    from worldrl.data import EpisodeFolder

    episode = EpisodeFolder(out)[0]
    assert episode["image"].shape == (101, 64, 64, 3) and episode["image"].dtype == np.uint8
    assert episode["action"].shape == (101, len(ACTION_MEANINGS))
    assert np.all(episode["action"][1:].sum(-1) == 1) and len(np.unique(episode["action"][1:], axis=0)) > 2
    assert np.abs(np.diff(episode["image"].astype(np.int16), axis=0)).mean() > 1  # the view changes
