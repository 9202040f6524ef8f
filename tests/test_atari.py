"""The Atari suite: registration, spaces, seeding, checkers, validation, scoreboard masking."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import worldrl
from worldrl.envs.atari import SCOREBOARD_REGIONS, AtariEnv, games

PONG = "worldrl/atari-pong-v0"


def rollout(env, seed, steps=50):
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    frames = [obs]
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        frames.append(obs)
        if terminated or truncated:
            break
    return frames


def test_ids_registered():
    ids = worldrl.registered_ids("atari")
    assert "worldrl/atari-pong-v0" in ids and "worldrl/atari-breakout-v0" in ids
    assert "worldrl/atari-ms_pacman-v0" in ids and "worldrl/atari-space_invaders-v0" in ids
    assert len(ids) == len(games()) >= 50


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        ({}, (64, 64, 3)),
        ({"grayscale": True}, (64, 64, 1)),
        ({"size": (84, 84)}, (84, 84, 3)),
        ({"size": (84, 84), "grayscale": True}, (84, 84, 1)),
    ],
)
def test_reset_step_shapes(kwargs, shape):
    env = gym.make(PONG, **kwargs)
    assert env.observation_space.shape == shape and env.observation_space.dtype == np.uint8
    assert env.action_space == gym.spaces.Discrete(6)
    obs, info = env.reset(seed=0)
    assert obs.shape == shape and obs.dtype == np.uint8 and obs in env.observation_space
    assert info == {"lives": 0, "life_loss": False, "task_reward": 0.0}
    for action in (0, np.int64(1), np.array(2)):
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs.shape == shape and obs.dtype == np.uint8 and obs in env.observation_space
        assert isinstance(reward, float) and reward == info["task_reward"]
        assert terminated is False and truncated is False
        assert set(info) == {"lives", "life_loss", "task_reward"}
    env.close()


def test_full_action_space():
    env = gym.make(PONG, full_action_space=True)
    assert env.action_space.n == 18
    assert env.unwrapped.get_action_meanings()[:2] == ["NOOP", "FIRE"]


def test_same_seed_same_frames_different_seed_differs():
    a = rollout(gym.make(PONG), seed=3)
    b = rollout(gym.make(PONG), seed=3)
    assert len(a) == len(b) == 51
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = rollout(gym.make(PONG), seed=4)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_reseeding_the_same_env_repeats_the_episode():
    env = gym.make(PONG)
    a = rollout(env, seed=7, steps=20)
    rollout(env, seed=8, steps=5)
    b = rollout(env, seed=7, steps=20)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("kwargs", [{}, {"mask_scoreboard": True, "grayscale": True}])
def test_env_checkers(kwargs):
    env = gym.make(PONG, **kwargs)
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped)


@pytest.mark.parametrize("action", [6, -1, 1.5, "1", np.array([1, 2]), True])
def test_invalid_action_raises(action):
    env = gym.make(PONG)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        env.step(action)


def test_unknown_kwarg_names_it():
    with pytest.raises(TypeError, match="sizee.*did you mean 'size'"):
        gym.make(PONG, sizee=64)


def test_unknown_game_suggests_close_names():
    with pytest.raises(ValueError, match="game='pongg'.*pong"):
        AtariEnv("pongg")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"frame_skip": 0}, "frame_skip"),
        ({"repeat_action_probability": 1.5}, "repeat_action_probability"),
        ({"noop_max": -1}, "noop_max"),
        ({"render_mode": "human"}, "render_mode"),
        ({"size": 4}, "size"),
        ({"max_episode_steps": 0}, "max_episode_steps"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AtariEnv("pong", **kwargs)


def test_mask_scoreboard_without_region_raises():
    assert "alien" not in SCOREBOARD_REGIONS
    with pytest.raises(ValueError, match="alien.*breakout.*pong"):
        gym.make("worldrl/atari-alien-v0", mask_scoreboard=True)


def test_scoreboard_regions_are_known_games():
    required = {"pong", "breakout", "boxing", "freeway", "ms_pacman", "seaquest", "space_invaders"}
    assert required <= set(SCOREBOARD_REGIONS)
    assert set(SCOREBOARD_REGIONS) <= set(games())


def test_masked_region_is_black_and_unmasked_shows_the_score():
    regions = SCOREBOARD_REGIONS["pong"]
    masked = rollout(gym.make(PONG, size=(210, 160), mask_scoreboard=True), seed=0, steps=30)
    unmasked = rollout(gym.make(PONG, size=(210, 160)), seed=0, steps=30)
    assert all(not frame[region].any() for frame in masked for region in regions)
    assert any(frame[region].any() for frame in unmasked for region in regions)
    # Outside the scoreboard the two observations are identical.
    keep = np.ones((210, 160), bool)
    for region in regions:
        keep[region] = False
    assert all(np.array_equal(m[keep], u[keep]) for m, u in zip(masked, unmasked))


def test_life_loss_in_breakout():
    env = gym.make("worldrl/atari-breakout-v0")
    _, info = env.reset(seed=0)
    env.action_space.seed(0)
    lives = info["lives"]
    assert lives == 5
    for _ in range(2000):
        _, _, terminated, _, info = env.step(env.action_space.sample())
        if info["life_loss"]:
            break
    assert info["life_loss"] and info["lives"] == lives - 1 and not terminated


@pytest.mark.parametrize("frame_skip", [1, 4])
def test_game_over_terminates(frame_skip):
    env = gym.make("worldrl/atari-breakout-v0", frame_skip=frame_skip)
    env.reset(seed=0)
    env.action_space.seed(0)
    losses = 0
    for _ in range(3000):
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        losses += info["life_loss"]
        if terminated or truncated:
            break
    assert terminated and not truncated and info["lives"] == 0 and losses == 5
    assert obs in env.observation_space


def test_life_loss_terminal_then_reset_starts_a_new_game():
    env = gym.make("worldrl/atari-breakout-v0", life_loss_terminal=True)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(2000):
        _, _, terminated, _, info = env.step(env.action_space.sample())
        if terminated:
            break
    assert terminated and info["life_loss"] and info["lives"] == 4
    _, info = env.reset()
    assert info["lives"] == 5


def test_truncation_after_max_episode_steps():
    env = AtariEnv("pong", max_episode_steps=3)
    env.reset(seed=0)
    assert [env.step(0)[3] for _ in range(3)] == [False, False, True]


def test_render_is_native_rgb_frame():
    env = gym.make(PONG, render_mode="rgb_array", grayscale=True)
    env.reset(seed=0)
    env.step(0)
    frame = env.render()
    assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8
    assert AtariEnv("pong").render() is None
    env = AtariEnv("pong", size=(210, 160), frame_skip=1, render_mode="rgb_array")
    env.reset(seed=0)
    for action in (0, 2, 3):
        assert np.array_equal(env.step(action)[0], env.render())


def test_step_max_pools_the_last_two_frames_and_sums_rewards():
    env = AtariEnv("pong", size=(210, 160), repeat_action_probability=0.0, noop_max=0)
    env.reset(seed=0)
    ale, total = env.ale, 0.0
    for t in range(300):
        action = env._actions[(t // 7) % 6]
        state = ale.cloneState()
        obs, reward, *_ = env.step((t // 7) % 6)
        ale.restoreState(state)
        expected_reward = sum(ale.act(action) for _ in range(3))
        penultimate = ale.getScreenRGB()
        expected_reward += ale.act(action)
        assert reward == expected_reward
        assert np.array_equal(obs, np.maximum(penultimate, ale.getScreenRGB()))
        total += abs(reward)
    assert total > 0


def test_no_stdout_banner(capfd):
    AtariEnv("pong").reset(seed=0)
    assert capfd.readouterr().out == ""


def test_make_vec_sync():
    envs = gym.make_vec(PONG, num_envs=2, vectorization_mode="sync")
    obs, info = envs.reset(seed=0)
    assert obs.shape == (2, 64, 64, 3)
    for _ in range(3):
        obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert obs.shape == (2, 64, 64, 3) and reward.shape == (2,) and info["lives"].shape == (2,)
    envs.close()


def test_gym_make_time_limit_is_configurable():
    env = gym.make(PONG, max_episode_steps=2, noop_max=0)
    env.reset(seed=0)
    assert [env.step(0)[3] for _ in range(2)] == [False, True]
    assert gym.spec(PONG).max_episode_steps == 27_000


def test_state_obs_is_the_ram():
    env = gym.make(PONG, obs_type="state")
    assert env.observation_space == gym.spaces.Box(0, 255, (128,), np.uint8)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (128,) and obs.dtype == np.uint8 and obs in env.observation_space
    assert np.array_equal(obs, env.unwrapped.ale.getRAM())
    obs2, *_ = env.step(2)
    assert np.array_equal(obs2, env.unwrapped.ale.getRAM())
    assert not np.shares_memory(obs, obs2)  # each observation is its own copy
    # RIGHT moves Pong's paddle (RAM byte 51) up.
    for _ in range(5):
        obs3, *_ = env.step(2)
    assert obs3[51] < obs[51]


def test_pixels_plus_state_is_a_dict_and_passes_the_checkers():
    env = gym.make(PONG, obs_type="pixels+state", grayscale=True)
    space = env.observation_space
    assert isinstance(space, gym.spaces.Dict) and set(space.spaces) == {"pixels", "state"}
    assert space["pixels"].shape == (64, 64, 1) and space["state"].shape == (128,)
    obs, _ = env.reset(seed=0)
    assert obs in space
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped)


def test_state_and_pixels_see_the_same_game():
    """The same seed and actions give the same RAM and rewards with or without pixels, and the same frames."""
    runs = {}
    for obs_type in ("state", "pixels", "pixels+state"):
        env = AtariEnv("pong", obs_type=obs_type)
        obs, _ = env.reset(seed=5)
        observations, rewards = [obs], []
        for t in range(300):
            obs, reward, *_ = env.step((t // 5) % 6)
            observations.append(obs)
            rewards.append(reward)
        runs[obs_type] = observations, rewards
    state, pixels, both = runs["state"], runs["pixels"], runs["pixels+state"]
    assert state[1] == pixels[1] == both[1]
    assert all(np.array_equal(s, b["state"]) for s, b in zip(state[0], both[0]))
    assert all(np.array_equal(p, b["pixels"]) for p, b in zip(pixels[0], both[0]))


def test_same_seed_same_ram_different_seed_differs():
    a = rollout(gym.make(PONG, obs_type="state"), seed=3)
    b = rollout(gym.make(PONG, obs_type="state"), seed=3)
    c = rollout(gym.make(PONG, obs_type="state"), seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_invalid_obs_type():
    with pytest.raises(ValueError, match="obs_type='ram'.*'pixels', 'state', 'pixels\\+state'"):
        AtariEnv("pong", obs_type="ram")
