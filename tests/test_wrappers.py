import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import FrameStackObservation, GrayscaleObservation, ResizeObservation
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from worldrl.wrappers import ActionRepeat, FrameStride, ScoreboardMask
from worldrl.wrappers.scoreboard import scaled_regions


class Counter(gym.Env):
    """Observation = step count as a 1x1 image; reward 1 per step; ends after ``length`` steps."""

    observation_space = gym.spaces.Box(0, 255, (1, 1, 1), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int = 10):
        self.length, self.t = length, 0

    def _obs(self):
        return np.full((1, 1, 1), self.t, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, self.t >= self.length, False, {"task_reward": 2.0}


def test_action_repeat_sums_and_stops_at_episode_end():
    env = ActionRepeat(Counter(length=5), repeat=3)
    env.reset()
    obs, reward, terminated, _, info = env.step(0)
    assert obs.item() == 3 and reward == 3.0 and info["task_reward"] == 6.0 and not terminated
    obs, reward, terminated, _, _ = env.step(0)
    assert obs.item() == 5 and reward == 2.0 and terminated


def test_frame_stride_stacks_every_stride_th_frame():
    env = FrameStride(Counter(length=100), num_frames=3, stride=4)
    obs, _ = env.reset()
    assert obs.shape == (3, 1, 1, 1) and obs.ravel().tolist() == [0, 0, 0]
    for _ in range(5):
        obs = env.step(0)[0]
    assert obs.ravel().tolist() == [0, 1, 5]
    for _ in range(5):
        obs = env.step(0)[0]
    assert obs.ravel().tolist() == [2, 6, 10]
    assert env.reset()[0].ravel().tolist() == [0, 0, 0]


def test_frame_stride_one_matches_gymnasium_frame_stack():
    ours = FrameStride(Counter(length=100), num_frames=4, stride=1)
    theirs = FrameStackObservation(Counter(length=100), stack_size=4, padding_type="reset")
    np.testing.assert_array_equal(ours.reset()[0], theirs.reset()[0])
    for _ in range(6):
        np.testing.assert_array_equal(ours.step(0)[0], theirs.step(0)[0])


@pytest.mark.parametrize("bad", [{"num_frames": 0}, {"num_frames": 2, "stride": 0}])
def test_frame_stride_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        FrameStride(Counter(), **bad)


def test_scaled_regions_cover_the_native_region():
    (rows, cols), = scaled_regions("pong", 64, 64)
    assert rows == slice(0, 8) and cols == slice(0, 64)  # 24/210 * 64 = 7.3 -> 8
    with pytest.raises(ValueError, match="no scoreboard region.*pong"):
        scaled_regions("alien", 64, 64)


def test_scoreboard_mask_on_a_resized_ale_frame():
    env = ScoreboardMask(gym.make("worldrl/atari-pong-v0", size=84), "pong")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (84, 84, 3)
    (rows, cols), = env.regions
    assert not obs[rows, cols].any() and obs[rows.stop :].any()


def test_wrapped_dmc_env_passes_checkers():
    env = gym.make("worldrl/dmc-cartpole_balance-v0", size=96)
    env = GrayscaleObservation(ResizeObservation(env, (64, 64)), keep_dim=True)
    env = FrameStride(ActionRepeat(env, 2), num_frames=3, stride=2)
    check_env(env)
    sb3_check_env(env)
    assert env.reset(seed=0)[0].shape == (3, 64, 64, 1)
