"""RLBench adapter: registration, validation and install errors without RLBench, the
step contract against a fake RLBench backend, and real episodes when RLBench is installed."""

import subprocess
import sys
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import worldrl.envs.rlbench as rl
from worldrl.envs.rlbench import RLBenchEnv, RLBenchUnavailableError, rlbench_available

ID = "worldrl/rlbench-reach_target-v0"
needs_rlbench = pytest.mark.skipif(
    not rlbench_available(),
    reason="RLBench needs the rlbench and pyrep modules, CoppeliaSim (COPPELIASIM_ROOT) and an X display; "
    "missing: " + "; ".join(rl.missing_requirements()),
)
without_rlbench = pytest.mark.skipif(rlbench_available(), reason="RLBench is installed here")


# --------------------------------------------------------------------------- registration, import


def test_all_tasks_are_registered():
    rl.register_ids()
    assert len(rl.ALL_TASKS) == len(set(rl.ALL_TASKS)) > 100
    assert set(rl.VIPER_TASKS) <= set(rl.ALL_TASKS)
    for task in rl.ALL_TASKS:
        spec = gym.spec(f"worldrl/rlbench-{task}-v0")
        assert spec.kwargs == {"task": task, "max_episode_steps": None}
        assert spec.max_episode_steps == rl.DEFAULT_MAX_EPISODE_STEPS == 200  # Gymnasium's TimeLimit
        assert spec.nondeterministic


def test_import_and_registration_do_not_load_rlbench():
    code = (
        "import sys, worldrl.envs.rlbench as m; m.register_ids(); m.missing_requirements(); "
        "bad = [k for k in ('rlbench', 'pyrep') if k in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- missing RLBench


@without_rlbench
def test_make_without_rlbench_explains_how_to_install():
    with pytest.raises(RLBenchUnavailableError) as caught:
        gym.make(ID)
    error = caught.value
    assert isinstance(error, ImportError) and error.missing
    message = str(error)
    for needle in (
        "CoppeliaSim",
        "COPPELIASIM_ROOT",
        "LD_LIBRARY_PATH",
        "QT_QPA_PLATFORM_PLUGIN_PATH",
        "CoppeliaSim_Edu_V4_1_0",
        "pip install git+https://github.com/stepjam/PyRep.git",
        "pip install git+https://github.com/stepjam/RLBench.git",
        "xvfb",
    ):
        assert needle in message, needle
    for item in error.missing:
        assert item in message


def test_error_names_exactly_what_is_missing(monkeypatch):
    monkeypatch.setattr(rl, "missing_requirements", lambda: ["the `pyrep` Python module (not installed)"])
    with pytest.raises(RLBenchUnavailableError, match=r"Missing on this machine:\n  - the `pyrep` Python module"):
        RLBenchEnv("reach_target")


def test_missing_requirements_checks_modules_root_and_display(monkeypatch, tmp_path):
    monkeypatch.setattr(rl, "_module_installed", lambda name: name == "pyrep")
    missing = rl.missing_requirements({})
    assert any("`rlbench` Python module" in m for m in missing)
    assert not any("`pyrep`" in m for m in missing)
    assert any("COPPELIASIM_ROOT environment variable is not set" in m for m in missing)
    assert any("DISPLAY is not set" in m for m in missing)

    missing = rl.missing_requirements({"COPPELIASIM_ROOT": str(tmp_path / "nowhere"), "DISPLAY": ":0"})
    assert any("is not a directory" in m for m in missing)
    assert not any("DISPLAY" in m for m in missing)

    missing = rl.missing_requirements({"COPPELIASIM_ROOT": str(tmp_path), "DISPLAY": ":0"})
    assert any("has no libcoppeliaSim.so" in m for m in missing)

    monkeypatch.setattr(rl, "_module_installed", lambda name: True)
    (tmp_path / "libcoppeliaSim.so").touch()
    assert rl.missing_requirements({"COPPELIASIM_ROOT": str(tmp_path), "DISPLAY": ":0"}) == []
    assert rl.missing_requirements({"COPPELIASIM_ROOT": str(tmp_path), "QT_QPA_PLATFORM": "offscreen"}) == []


# --------------------------------------------------------------------------- argument validation


def test_bad_task_suggests_the_closest():
    with pytest.raises(ValueError, match="task='reach_targt'.*Closest: reach_target"):
        RLBenchEnv("reach_targt")
    with pytest.raises(ValueError, match="take_lid_off_saucepan"):
        gym.make(ID, task="take_lid_of_saucepan")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 0}, "size must be"),
        ({"size": (64, 64, 3)}, "size must be"),
        ({"action_mode": "joint_torque"}, "action_mode='joint_torque'.*'joint_velocity', 'end_effector'"),
        ({"obs_type": "rgb"}, "obs_type='rgb'"),
        ({"action_repeat": 0}, "action_repeat must be a positive int"),
        ({"render_mode": "human"}, "render_mode='human'"),
        ({"headless": "yes"}, "headless must be a bool"),
    ],
)
def test_bad_arguments_raise_value_error_without_rlbench(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make(ID, **kwargs)


@pytest.mark.parametrize("value", [0, -5, 2.5, True])
def test_bad_max_episode_steps_raises_value_error(value):
    # Not through gym.make, which keeps max_episode_steps for its TimeLimit wrapper.
    with pytest.raises(ValueError, match="max_episode_steps must be a positive int"):
        RLBenchEnv("reach_target", max_episode_steps=value)


def test_unknown_argument_is_named():
    with pytest.raises(TypeError, match=r"'sise' \(did you mean 'size'\?\)"):
        gym.make(ID, sise=64)


# --------------------------------------------------------------------------- pure conversions


def fake_observation(size=(64, 64), rng=None, float_rgb=False):
    rng = rng or np.random.default_rng(0)
    rgb = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    return SimpleNamespace(
        front_rgb=rgb.astype(np.float32) / 255.0 if float_rgb else rgb,
        joint_positions=rng.normal(size=7),
        joint_velocities=rng.normal(size=7),
        gripper_open=1.0,
        gripper_pose=np.array([0.3, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0]),
        joint_forces=None,
    )


def test_action_bounds():
    low, high = rl.action_bounds("joint_velocity")
    assert low.shape == high.shape == (8,) and low.dtype == np.float32
    assert np.all(low[:7] == -rl.JOINT_VELOCITY_LIMIT) and np.all(high[:7] == rl.JOINT_VELOCITY_LIMIT)
    assert (low[7], high[7]) == (0.0, 1.0)
    low, high = rl.action_bounds("end_effector")
    assert low.shape == high.shape == (8,)
    np.testing.assert_allclose(low[:3], rl.EE_POSITION_LOW)
    np.testing.assert_allclose(high[:3], rl.EE_POSITION_HIGH)
    assert np.all(low[3:7] == -1) and np.all(high[3:7] == 1) and (low[7], high[7]) == (0.0, 1.0)


def test_process_action_joint_velocity_clips():
    action = rl.process_action([2.0, -3.0, 0.5, 0, 0, 0, -0.25, 1.7], "joint_velocity")
    assert action.dtype == np.float64
    np.testing.assert_allclose(action, [1.0, -1.0, 0.5, 0, 0, 0, -0.25, 1.0])
    assert rl.process_action([0] * 7 + [-1.0], "joint_velocity")[-1] == 0.0


def test_process_action_end_effector_normalises_quaternion():
    action = rl.process_action([5.0, -5.0, 1.0, 0.0, 0.0, 0.5, 0.5, 0.7], "end_effector")
    np.testing.assert_allclose(action[:3], [0.7, -0.5, 1.0])
    np.testing.assert_allclose(action[3:7], [0, 0, np.sqrt(0.5), np.sqrt(0.5)])
    assert action[7] == pytest.approx(0.7)
    # Components are clipped to [-1, 1] before normalising.
    np.testing.assert_allclose(rl.process_action([0, 0, 1, 0, 0, 0, 9, 1], "end_effector")[3:7], [0, 0, 0, 1])
    # A zero quaternion falls back to the given orientation.
    action = rl.process_action([0, 0, 1, 0, 0, 0, 0, 1], "end_effector", fallback_quaternion=[0, 2, 0, 0])
    np.testing.assert_allclose(action[3:7], [0, 1, 0, 0])


@pytest.mark.parametrize("action, match", [([0.0] * 7, r"shape \(7,\)"), ([np.nan] + [0.0] * 7, "NaN")])
def test_process_action_rejects_bad_actions(action, match):
    with pytest.raises(ValueError, match=match):
        rl.process_action(action, "joint_velocity")


def test_rgb_frame_accepts_uint8_and_float():
    obs = fake_observation(size=(48, 32))
    frame = rl.rgb_frame(obs.front_rgb, (48, 32))
    assert frame.dtype == np.uint8 and frame.shape == (48, 32, 3)
    assert np.array_equal(frame, obs.front_rgb) and frame is not obs.front_rgb
    as_float = fake_observation(size=(48, 32), float_rgb=True).front_rgb
    assert np.array_equal(rl.rgb_frame(as_float, (48, 32)), obs.front_rgb)
    with pytest.raises(ValueError, match=r"expected \(64, 64, 3\)"):
        rl.rgb_frame(obs.front_rgb, (64, 64))
    with pytest.raises(ValueError, match="front camera"):
        rl.rgb_frame(None, (64, 64))


def test_state_vector_layout():
    obs = fake_observation()
    state = rl.state_vector(obs)
    assert state.dtype == np.float32 and state.shape == (rl.STATE_DIM,) == (22,)
    np.testing.assert_allclose(state[:7], obs.joint_positions, rtol=1e-6)
    np.testing.assert_allclose(state[7:14], obs.joint_velocities, rtol=1e-6)
    assert state[14] == 1.0
    np.testing.assert_allclose(state[15:], obs.gripper_pose)
    with pytest.raises(ValueError, match="no joint_velocities"):
        rl.state_vector(SimpleNamespace(**{**vars(obs), "joint_velocities": None}))
    with pytest.raises(ValueError, match="gripper_pose has 3 values, expected 7"):
        rl.state_vector(SimpleNamespace(**{**vars(obs), "gripper_pose": np.zeros(3)}))


@pytest.mark.parametrize("obs_type", rl.OBS_TYPES)
def test_convert_observation_matches_space(obs_type):
    space = rl.observation_space(obs_type, (64, 64))
    assert space.contains(rl.convert_observation(fake_observation(), obs_type, (64, 64)))


# --------------------------------------------------------------------------- step contract on a fake backend


class FakeInvalidActionError(Exception):
    pass


class FakeTaskEnvironment:
    """Mimics rlbench.task_environment.TaskEnvironment: reset/step/get_observation/set_variation.

    Observations come from NumPy's global random state, as RLBench's object placement does,
    so seeding through the env is observable. The task succeeds on step ``success_at``."""

    def __init__(self, size, success_at=None):
        self.size, self.success_at = size, success_at
        self.actions, self.variation, self.steps = [], 0, 0
        self.invalid = False

    def _observation(self):
        return fake_observation(self.size, rng=np.random.default_rng(np.random.randint(2**31)))

    def reset(self):
        self.steps = 0
        return [f"variation {self.variation}"], self._observation()

    def step(self, action):
        self.actions.append(np.array(action))
        if self.invalid:
            raise FakeInvalidActionError("A path could not be found.")
        self.steps += 1
        success = self.success_at is not None and self.steps >= self.success_at
        return self._observation(), float(success), success

    def get_observation(self):
        return self._observation()

    def set_variation(self, variation):
        self.variation = variation


class FakeEnvironment:
    def __init__(self):
        self.shutdowns = 0

    def shutdown(self):
        self.shutdowns += 1


@pytest.fixture
def make_fake(monkeypatch):
    """Build RLBenchEnv against the fake backend: make_fake(success_at=..., **env_kwargs) -> (env, task_env)."""
    monkeypatch.setattr(rl, "missing_requirements", lambda environ=None: [])

    def make(success_at=None, **kwargs):
        created = {}

        def launch(self):
            created["task_env"] = FakeTaskEnvironment(self.size, success_at)
            created["environment"] = FakeEnvironment()
            return rl._Backend(created["environment"], created["task_env"], (FakeInvalidActionError,))

        monkeypatch.setattr(RLBenchEnv, "_launch", launch)
        env = RLBenchEnv("reach_target", **kwargs)
        return env, created["task_env"], created["environment"]

    return make


@pytest.mark.filterwarnings("ignore:.*Box action spaces, we recommend:UserWarning")
@pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value:UserWarning")
@pytest.mark.parametrize("action_mode", rl.ACTION_MODES)
@pytest.mark.parametrize("obs_type", rl.OBS_TYPES)
def test_fake_backend_passes_check_env(make_fake, obs_type, action_mode):
    env, _, _ = make_fake(obs_type=obs_type, action_mode=action_mode, size=(48, 40))
    check_env(env, skip_render_check=True)
    env, _, _ = make_fake(obs_type=obs_type, action_mode=action_mode, size=(48, 40))
    sb3_check_env(env, warn=False)
    env, _, _ = make_fake(obs_type=obs_type, action_mode=action_mode, size=(48, 40))
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info == {"descriptions": ["variation 0"]}
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info == {"task_reward": 0.0, "success": False, "invalid_action": False}


def test_fake_backend_reset_seed_is_deterministic(make_fake):
    env, task_env, _ = make_fake()
    first, _ = env.reset(seed=3)
    second, _ = env.reset(seed=3)
    other, _ = env.reset(seed=4)
    assert np.array_equal(first, second) and not np.array_equal(first, other)
    _, info = env.reset(options={"variation": 2})
    assert task_env.variation == 2 and info["descriptions"] == ["variation 2"]


def test_success_terminates_with_reward_one(make_fake):
    env, _, _ = make_fake(success_at=2)
    env.reset(seed=0)
    assert env.step(env.action_space.sample())[1:4] == (0.0, False, False)
    _, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["success"] and info["task_reward"] == 1.0 and not info["invalid_action"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.action_space.sample())


def test_truncates_at_max_episode_steps(make_fake):
    env, _, _ = make_fake(max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    env.reset()
    assert env.step(env.action_space.sample())[2:4] == (False, False)


def test_gym_make_time_limit_is_gymnasiums(make_fake):
    make_fake()  # installs the fake backend for gym.make too
    env = gym.make(ID, max_episode_steps=4)
    assert env.unwrapped.max_episode_steps is None
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[2:4] for _ in range(4)]
    assert flags[-1] == (False, True) and not any(t for _, t in flags[:-1])

    env = gym.make(ID)
    env.reset(seed=0)
    steps = 0
    truncated = False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        assert not terminated
    assert steps == 200


def test_action_repeat_repeats_and_stops_on_success(make_fake):
    env, task_env, _ = make_fake(action_repeat=3, success_at=5)
    env.reset(seed=0)
    assert env.step(env.action_space.sample())[1] == 0.0
    assert len(task_env.actions) == 3
    _, reward, terminated, _, info = env.step(env.action_space.sample())
    assert len(task_env.actions) == 5 and reward == 1.0 and terminated and info["success"]


def test_actions_are_clipped_before_rlbench(make_fake):
    env, task_env, _ = make_fake()
    env.reset(seed=0)
    env.step(np.array([5, -5, 0, 0, 0, 0, 0, 2], dtype=np.float32))
    np.testing.assert_allclose(task_env.actions[-1], [1, -1, 0, 0, 0, 0, 0, 1])

    env, task_env, _ = make_fake(action_mode="end_effector")
    env.reset(seed=0)
    env.step(np.array([0.2, 0.0, 1.0, 0, 0, 0, 0, 0.2], dtype=np.float32))  # zero quaternion
    sent = task_env.actions[-1]
    np.testing.assert_allclose(sent[3:7], [0.0, 1.0, 0.0, 0.0])  # the gripper orientation last observed
    assert sent[7] == pytest.approx(0.2)


def test_invalid_action_is_a_zero_reward_step(make_fake):
    env, task_env, _ = make_fake(action_mode="end_effector", action_repeat=4, success_at=1, max_episode_steps=2)
    env.reset(seed=0)
    task_env.invalid = True
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["invalid_action"] and not info["success"] and info["task_reward"] == 0.0
    assert "FakeInvalidActionError: A path could not be found." == info["invalid_action_error"]
    assert len(task_env.actions) == 1  # the rest of the action repeat is skipped
    # Invalid steps count towards the time limit.
    assert env.step(env.action_space.sample())[3]


def test_render_returns_the_front_frame(make_fake):
    env, _, _ = make_fake(obs_type="state", render_mode="rgb_array", size=32)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (22,)
    frame = env.render()
    assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
    env, _, _ = make_fake()
    env.reset(seed=0)
    assert env.render() is None


def test_close_shuts_the_simulator_down_once(make_fake):
    env, _, environment = make_fake()
    env.reset(seed=0)
    env.close()
    env.close()
    assert environment.shutdowns == 1
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()


def test_step_before_reset_raises(make_fake):
    env, _, _ = make_fake()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.action_space.sample())


# --------------------------------------------------------------------------- real RLBench


@needs_rlbench
@pytest.mark.parametrize("action_mode", rl.ACTION_MODES)
def test_reach_target_reset_and_step(action_mode):
    env = gym.make(ID, action_mode=action_mode, obs_type="pixels+state")
    try:
        obs, info = env.reset(seed=0)
        assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].dtype == np.uint8
        assert obs["state"].shape == (22,) and obs["state"].dtype == np.float32
        assert info["descriptions"]
        env.action_space.seed(0)
        for _ in range(3):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs)
            assert {"task_reward", "success", "invalid_action"} <= set(info)
            if terminated or truncated:
                env.reset()
    finally:
        env.close()


@needs_rlbench
def test_reach_target_check_env():
    env = gym.make(ID)
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()
