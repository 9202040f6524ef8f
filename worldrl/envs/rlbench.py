"""RLBench tasks (Franka Panda in CoppeliaSim) as ``worldrl/rlbench-<task>-v0``.

RLBench needs PyRep and the CoppeliaSim 4.1 simulator, none of which can be
installed from PyPI, so this module never imports them at import time: the ids
are registered without them, keyword arguments are validated without them, and
only constructing an environment loads RLBench. When something is missing the
constructor raises :class:`RLBenchUnavailableError` (an ``ImportError``) that
names what is missing and how to install it; :func:`missing_requirements` and
:func:`rlbench_available` answer the same question without raising.

The step contract matches the other worldrl suites:

* Observations: the front camera's RGB frame rendered by RLBench at ``size``
  (``(H, W, 3)`` uint8), the proprioceptive state (:data:`STATE_LAYOUT`:
  joint positions, joint velocities, gripper open flag and gripper pose,
  flattened to float32), or both in a dict.
* Actions, ``action_mode="joint_velocity"`` (RLBench's ``JointVelocity`` arm
  mode): 7 arm joint velocities in rad/s, clipped to
  ``[-JOINT_VELOCITY_LIMIT, JOINT_VELOCITY_LIMIT]`` and passed on unscaled,
  then the gripper command. Each RLBench step is one 0.05 s physics step
  (plus the steps RLBench takes to open or close the gripper when that
  command changes).
* Actions, ``action_mode="end_effector"`` (RLBench's absolute, world-frame
  ``EndEffectorPoseViaPlanning``): a target gripper position (metres, clipped
  to :data:`EE_POSITION_LOW`/:data:`EE_POSITION_HIGH`, the scene bounds RLBench
  agents such as ARM and PerAct use), a target orientation as a quaternion
  ``(qx, qy, qz, qw)`` (clipped to ``[-1, 1]`` then normalised to unit length,
  which RLBench requires; a quaternion of length ~0 is replaced by the current
  gripper orientation), then the gripper command. RLBench plans a path to the
  pose and executes all of it within one step.
* The gripper command (last entry, both modes) is clipped to ``[0, 1]`` and
  goes to RLBench's ``Discrete`` gripper mode: above 0.5 opens the gripper,
  below 0.5 closes it (grasped objects are attached, RLBench's default).
* Reward is RLBench's sparse task reward: 1.0 on the step the task succeeds,
  otherwise 0.0, summed over ``action_repeat``. ``terminated`` is RLBench's
  terminate flag (set on success, and on the failure conditions some tasks
  define); ``truncated`` is set after ``max_episode_steps`` agent steps (200
  by default). Through ``gym.make`` the limit is Gymnasium's own: the ids are
  registered with ``max_episode_steps=200`` for the ``TimeLimit`` wrapper and
  pass ``max_episode_steps=None`` (no limit of its own) to the environment, so
  ``gym.make(id, max_episode_steps=500)`` works as it does for any Gymnasium
  env (``gym.make`` keeps that argument for the wrapper and never passes it on).
  ``info["task_reward"]`` is the same reward and ``info["success"]`` whether the
  task succeeded during the step.
* Invalid actions: when RLBench rejects an action (``InvalidActionError``: a
  pose outside the workspace or unreachable, no path found) or PyRep's planner
  or IK fails (``ConfigurationPathError``, ``IKError``), the step does not
  crash: it returns the current observation, reward 0, not terminated,
  ``info["invalid_action"] = True`` and the error text in
  ``info["invalid_action_error"]``; the rest of the action repeat is skipped
  and the step still counts towards ``max_episode_steps``.
  ``info["invalid_action"]`` is ``False`` on every other step.

``reset`` returns RLBench's language descriptions of the task in
``info["descriptions"]``; ``reset(options={"variation": i})`` selects a task
variation (RLBench's default is variation 0).

Seeding: RLBench draws object placements from NumPy's global random state, so
``reset(seed=...)`` reseeds ``np.random`` (as RLBench's own Gymnasium wrapper
does); physics and path planning are not seeded, so episodes are not exactly
reproducible (the ids are registered with ``nondeterministic=True``).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worldrl.envs.dm_control_base import check_choice, parse_size
from worldrl.envs.registration import register

# Every task module of RLBench 1.2 (github.com/stepjam/RLBench, rlbench/tasks/__init__.py).
ALL_TASKS: tuple[str, ...] = (
    "basketball_in_hoop", "beat_the_buzz", "block_pyramid", "change_channel", "change_clock",
    "close_box", "close_door", "close_drawer", "close_fridge", "close_grill", "close_jar",
    "close_laptop_lid", "close_microwave", "empty_container", "empty_dishwasher",
    "get_ice_from_fridge", "hang_frame_on_hanger", "hit_ball_with_queue", "hockey",
    "insert_onto_square_peg", "insert_usb_in_computer", "lamp_off", "lamp_on",
    "lift_numbered_block", "light_bulb_in", "light_bulb_out", "meat_off_grill", "meat_on_grill",
    "move_hanger", "open_box", "open_door", "open_drawer", "open_fridge", "open_grill", "open_jar",
    "open_microwave", "open_oven", "open_washing_machine", "open_window", "open_wine_bottle",
    "phone_on_base", "pick_and_lift", "pick_and_lift_small", "pick_up_cup", "place_cups",
    "place_hanger_on_rack", "place_shape_in_shape_sorter", "play_jenga",
    "plug_charger_in_power_supply", "pour_from_cup_to_cup", "press_switch", "push_button",
    "push_buttons", "put_all_groceries_in_cupboard", "put_books_on_bookshelf",
    "put_bottle_in_fridge", "put_groceries_in_cupboard", "put_item_in_drawer",
    "put_knife_in_knife_block", "put_knife_on_chopping_board", "put_money_in_safe",
    "put_plate_in_colored_dish_rack", "put_rubbish_in_bin", "put_shoes_in_box",
    "put_toilet_roll_on_stand", "put_tray_in_oven", "put_umbrella_in_umbrella_stand",
    "reach_and_drag", "reach_target", "remove_cups", "scoop_with_spatula", "screw_nail",
    "set_the_table", "setup_checkers", "setup_chess", "slide_block_to_target",
    "slide_cabinet_open", "slide_cabinet_open_and_place_cups", "solve_puzzle", "stack_blocks",
    "stack_chairs", "stack_cups", "stack_wine", "straighten_rope", "sweep_to_dustpan",
    "take_cup_out_from_cabinet", "take_frame_off_hanger", "take_item_out_of_drawer",
    "take_lid_off_saucepan", "take_money_out_safe", "take_off_weighing_scales",
    "take_plate_off_colored_dish_rack", "take_shoes_out_of_box", "take_toilet_roll_off_stand",
    "take_tray_out_of_oven", "take_umbrella_out_of_umbrella_stand", "take_usb_out_of_computer",
    "toilet_seat_down", "toilet_seat_up", "turn_oven_on", "turn_tap", "tv_on", "unplug_charger",
    "water_plants", "weighing_scales", "wipe_desk",
)  # fmt: skip

# The six tasks VIPER trained on (Alescontrela/viper_rl, viper_rl/dreamerv3/embodied/envs/rlbench.py).
VIPER_TASKS: tuple[str, ...] = (
    "phone_on_base",
    "pick_and_lift",
    "pick_up_cup",
    "put_rubbish_in_bin",
    "take_lid_off_saucepan",
    "take_umbrella_out_of_umbrella_stand",
)


# The registered tasks: VIPER's six plus common single-arm RLBench benchmarks
# (reaching, buttons, drawers, boxes, appliances, stacking, sliding).
TASKS: tuple[str, ...] = VIPER_TASKS + (
    "reach_target",
    "push_button",
    "press_switch",
    "open_drawer",
    "close_drawer",
    "open_box",
    "close_box",
    "open_microwave",
    "close_microwave",
    "close_fridge",
    "close_laptop_lid",
    "toilet_seat_down",
    "lamp_on",
    "turn_tap",
    "meat_off_grill",
    "stack_blocks",
    "slide_block_to_target",
    "reach_and_drag",
)

ACTION_MODES = ("joint_velocity", "end_effector")
OBS_TYPES = ("pixels", "state", "pixels+state")

DEFAULT_MAX_EPISODE_STEPS = 200
ARM_JOINTS = 7  # Franka Panda, RLBench's default (and benchmark) robot
JOINT_VELOCITY_LIMIT = 1.0  # rad/s; the Panda's own limits are 2.1-2.6 rad/s
# Scene bounds [x, y, z] in metres used by RLBench agents (ARM, PerAct); the table top is at z ~ 0.75.
EE_POSITION_LOW = (-0.3, -0.5, 0.6)
EE_POSITION_HIGH = (0.7, 0.5, 1.6)
DEFAULT_QUATERNION = (0.0, 0.0, 0.0, 1.0)  # (qx, qy, qz, qw), used only if no gripper pose was seen

# Proprioceptive fields of an RLBench Observation, in the order they are flattened.
STATE_LAYOUT: tuple[tuple[str, int], ...] = (
    ("joint_positions", ARM_JOINTS),
    ("joint_velocities", ARM_JOINTS),
    ("gripper_open", 1),
    ("gripper_pose", 7),  # x, y, z, qx, qy, qz, qw
)
STATE_DIM = sum(n for _, n in STATE_LAYOUT)

COPPELIASIM_URL = "https://downloads.coppeliarobotics.com/V4_1_0/CoppeliaSim_Edu_V4_1_0_Ubuntu20_04.tar.xz"
INSTALL_INSTRUCTIONS = f"""\
To install them (Linux only):
  1. Download CoppeliaSim 4.1.0, the version PyRep and RLBench support, and unpack it:
       wget {COPPELIASIM_URL}
       mkdir -p $HOME/CoppeliaSim
       tar -xf CoppeliaSim_Edu_V4_1_0_Ubuntu20_04.tar.xz -C $HOME/CoppeliaSim --strip-components 1
  2. Point PyRep at it (add these to ~/.bashrc):
       export COPPELIASIM_ROOT=$HOME/CoppeliaSim
       export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$COPPELIASIM_ROOT
       export QT_QPA_PLATFORM_PLUGIN_PATH=$COPPELIASIM_ROOT
  3. Install PyRep, then RLBench (PyRep builds against CoppeliaSim, so COPPELIASIM_ROOT must be set first):
       pip install git+https://github.com/stepjam/PyRep.git
       pip install git+https://github.com/stepjam/RLBench.git
  4. CoppeliaSim needs an X server even when headless; on a machine without a display use a virtual one:
       sudo apt-get install xvfb
       xvfb-run -a python your_script.py
The Jaco-arm tasks worldrl/manip-* run on MuJoCo alone and need none of this."""


class RLBenchUnavailableError(ImportError):
    """RLBench, PyRep or CoppeliaSim is missing; ``missing`` lists what, the message says how to install."""

    def __init__(self, missing: list[str], detail: str | None = None):
        self.missing = list(missing)
        lines = ["RLBench environments need RLBench, PyRep and the CoppeliaSim simulator."]
        if self.missing:
            lines.append("Missing on this machine:")
            lines += [f"  - {item}" for item in self.missing]
        if detail:
            lines.append(detail)
        lines.append(INSTALL_INSTRUCTIONS)
        super().__init__("\n".join(lines), name="rlbench")


def missing_requirements(environ: Mapping[str, str] | None = None) -> list[str]:
    """What RLBench needs that this machine lacks, one line each; empty when everything is there.

    Checks the ``rlbench`` and ``pyrep`` modules (without importing them: PyRep
    raises on import without CoppeliaSim), the ``COPPELIASIM_ROOT`` variable and
    the CoppeliaSim library it must point to, and an X display (CoppeliaSim's Qt
    aborts the whole process without one). ``environ`` defaults to ``os.environ``.
    """
    environ = os.environ if environ is None else environ
    missing = []
    for module in ("rlbench", "pyrep"):
        if not _module_installed(module):
            missing.append(f"the `{module}` Python module (not installed)")
    root = environ.get("COPPELIASIM_ROOT")
    if not root:
        missing.append("CoppeliaSim: the COPPELIASIM_ROOT environment variable is not set")
    elif not os.path.isdir(root):
        missing.append(f"CoppeliaSim: COPPELIASIM_ROOT={root} is not a directory")
    elif not os.path.isfile(os.path.join(root, "libcoppeliaSim.so")):
        missing.append(f"CoppeliaSim: COPPELIASIM_ROOT={root} has no libcoppeliaSim.so (not a CoppeliaSim install)")
    if not environ.get("DISPLAY") and environ.get("QT_QPA_PLATFORM") != "offscreen":
        missing.append("an X display for CoppeliaSim: DISPLAY is not set (run under `xvfb-run -a`)")
    return missing


def rlbench_available() -> bool:
    """Whether RLBench environments can be constructed here (see :func:`missing_requirements`)."""
    return not missing_requirements()


def _module_installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# ---------------------------------------------------------------------------
# Pure conversions between RLBench and Gymnasium (no simulator needed).
# ---------------------------------------------------------------------------


def check_task(task: str) -> str:
    """Return ``task`` if it is an RLBench task name, else raise a ValueError naming the closest ones."""
    if isinstance(task, str) and task in ALL_TASKS:
        return task
    close = difflib.get_close_matches(str(task), ALL_TASKS, n=5, cutoff=0.5)
    hint = f" Closest: {', '.join(close)}." if close else ""
    raise ValueError(
        f"task={task!r} is not an RLBench task.{hint} VIPER's tasks: {', '.join(VIPER_TASKS)} "
        f"(any of the {len(ALL_TASKS)} names in worldrl.envs.rlbench.ALL_TASKS is accepted)."
    )


def action_bounds(action_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) float32 bounds of the agent's action for ``action_mode``; the gripper is last, in [0, 1]."""
    check_choice("action_mode", action_mode, ACTION_MODES)
    if action_mode == "joint_velocity":
        low = [-JOINT_VELOCITY_LIMIT] * ARM_JOINTS + [0.0]
        high = [JOINT_VELOCITY_LIMIT] * ARM_JOINTS + [1.0]
    else:
        low = [*EE_POSITION_LOW, -1.0, -1.0, -1.0, -1.0, 0.0]
        high = [*EE_POSITION_HIGH, 1.0, 1.0, 1.0, 1.0, 1.0]
    return np.asarray(low, np.float32), np.asarray(high, np.float32)


def process_action(
    action: Any,
    action_mode: str,
    *,
    fallback_quaternion: Any = DEFAULT_QUATERNION,
) -> np.ndarray:
    """The agent's action -> the float64 vector RLBench's ``MoveArmThenGripper`` mode expects.

    Rejects a wrong shape or NaN/inf with a ValueError, clips to
    :func:`action_bounds`, and in ``end_effector`` mode normalises the
    quaternion to unit length (``fallback_quaternion`` when its length is ~0).
    """
    low, high = action_bounds(action_mode)
    action = np.asarray(action, dtype=np.float64)
    if action.shape != low.shape:
        raise ValueError(f"action has shape {action.shape}, expected {low.shape} for action_mode={action_mode!r}")
    if not np.all(np.isfinite(action)):
        raise ValueError(f"action contains NaN or inf: {action}")
    action = np.clip(action, low.astype(np.float64), high.astype(np.float64))
    if action_mode == "end_effector":
        quaternion = action[3:7]
        norm = float(np.linalg.norm(quaternion))
        if norm < 1e-6:
            quaternion = np.asarray(fallback_quaternion, dtype=np.float64)
            norm = float(np.linalg.norm(quaternion))
        action[3:7] = quaternion / norm
    return action


def rgb_frame(image: Any, size: tuple[int, int]) -> np.ndarray:
    """An RLBench camera image -> ``(H, W, 3)`` uint8; floats in [0, 1] (older RLBench) are scaled to [0, 255]."""
    if image is None:
        raise ValueError("the observation has no front_rgb image; the front camera's rgb must be enabled")
    image = np.asarray(image)
    if image.shape != (*size, 3):
        raise ValueError(f"front_rgb has shape {image.shape}, expected {(*size, 3)}")
    if image.dtype == np.uint8:
        return image.copy()
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8)


def state_vector(observation: Any) -> np.ndarray:
    """The proprioceptive fields of an RLBench Observation (:data:`STATE_LAYOUT`), flattened to float32."""
    parts = []
    for name, size in STATE_LAYOUT:
        value = getattr(observation, name, None)
        if value is None:
            raise ValueError(f"the observation has no {name}; enable it in RLBench's ObservationConfig")
        value = np.asarray(value, dtype=np.float32).reshape(-1)
        if value.size != size:
            raise ValueError(f"observation.{name} has {value.size} values, expected {size}")
        parts.append(value)
    return np.concatenate(parts)


def convert_observation(observation: Any, obs_type: str, size: tuple[int, int]) -> np.ndarray | dict[str, np.ndarray]:
    """An RLBench Observation -> the Gymnasium observation for ``obs_type``."""
    check_choice("obs_type", obs_type, OBS_TYPES)
    if obs_type == "pixels":
        return rgb_frame(getattr(observation, "front_rgb", None), size)
    if obs_type == "state":
        return state_vector(observation)
    return {"pixels": rgb_frame(getattr(observation, "front_rgb", None), size), "state": state_vector(observation)}


def observation_space(obs_type: str, size: tuple[int, int]) -> spaces.Space:
    check_choice("obs_type", obs_type, OBS_TYPES)
    pixels = spaces.Box(0, 255, (*size, 3), np.uint8)
    state = spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32)
    return {"pixels": pixels, "state": state, "pixels+state": spaces.Dict({"pixels": pixels, "state": state})}[
        obs_type
    ]


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------
# The environment.
# ---------------------------------------------------------------------------


class _Backend(NamedTuple):
    environment: Any  # rlbench.environment.Environment (owns the simulator)
    task_env: Any  # rlbench.task_environment.TaskEnvironment
    invalid_action_errors: tuple[type[BaseException], ...]


def _invalid_action_errors() -> tuple[type[BaseException], ...]:
    """RLBench's and PyRep's "this action cannot be executed" exceptions, in whichever modules this version has."""
    found = []
    for module, name in (
        ("rlbench.backend.exceptions", "InvalidActionError"),
        ("rlbench.task_environment", "InvalidActionError"),  # RLBench before the action_modes package
        ("pyrep.errors", "ConfigurationPathError"),
        ("pyrep.errors", "IKError"),
    ):
        try:
            error = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        if isinstance(error, type) and issubclass(error, BaseException) and error not in found:
            found.append(error)
    return tuple(found)


class RLBenchEnv(gym.Env):
    """One RLBench task with the Franka Panda; see the module docstring for the step contract.

    ``max_episode_steps=None`` turns the env's own time limit off (the ids pass
    that and let Gymnasium's ``TimeLimit`` truncate instead).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # RLBench steps 0.05 s of simulation

    def __init__(
        self,
        task: str,
        *,
        size: int | tuple[int, int] = 64,
        action_mode: str = "joint_velocity",
        obs_type: str = "pixels",
        action_repeat: int = 1,
        max_episode_steps: int | None = DEFAULT_MAX_EPISODE_STEPS,
        headless: bool = True,
        render_mode: str | None = None,
    ):
        # Everything is validated before RLBench is looked for, so bad input fails clearly anywhere.
        self.task = check_task(task)
        self.size = parse_size(size)
        check_choice("action_mode", action_mode, ACTION_MODES)
        check_choice("obs_type", obs_type, OBS_TYPES)
        check_choice("render_mode", render_mode, (None, "rgb_array"))
        if not isinstance(headless, (bool, np.bool_)):
            raise ValueError(f"headless must be a bool, got {headless!r}")
        self.action_mode = action_mode
        self.obs_type = obs_type
        self.action_repeat = _positive_int("action_repeat", action_repeat)
        self.max_episode_steps = (
            None if max_episode_steps is None else _positive_int("max_episode_steps", max_episode_steps)
        )
        self.headless = bool(headless)
        self.render_mode = render_mode

        low, high = action_bounds(action_mode)
        self.action_space = spaces.Box(low, high, dtype=np.float32)
        self.observation_space = observation_space(obs_type, self.size)

        self._backend: _Backend | None = None
        self._frame: np.ndarray | None = None
        self._quaternion = np.asarray(DEFAULT_QUATERNION, dtype=np.float64)
        self._elapsed = 0
        self._needs_reset = True

        missing = missing_requirements()
        if missing:
            raise RLBenchUnavailableError(missing)
        self._backend = self._launch()

    @property
    def _render_front_camera(self) -> bool:
        return self.obs_type != "state" or self.render_mode is not None

    def _launch(self) -> _Backend:
        """Import RLBench, start CoppeliaSim and load the task (the only place RLBench is touched)."""
        try:
            from rlbench.action_modes.action_mode import MoveArmThenGripper
            from rlbench.action_modes.arm_action_modes import EndEffectorPoseViaPlanning, JointVelocity
            from rlbench.action_modes.gripper_action_modes import Discrete
            from rlbench.environment import Environment
            from rlbench.observation_config import ObservationConfig
            from rlbench.utils import name_to_task_class
        except Exception as error:  # ImportError, or PyRepError when CoppeliaSim's library cannot be loaded
            raise RLBenchUnavailableError(
                [], detail=f"Importing RLBench failed: {type(error).__name__}: {error}"
            ) from error

        obs_config = ObservationConfig()
        obs_config.set_all_high_dim(False)  # no cameras, depth, point clouds or masks ...
        obs_config.set_all_low_dim(False)
        if self._render_front_camera:  # ... except the front RGB camera
            obs_config.front_camera.rgb = True
            obs_config.front_camera.image_size = (self.size[1], self.size[0])  # PyRep takes (width, height)
        for name, _ in STATE_LAYOUT:  # always on: cheap, and keeps the gripper orientation for the fallback
            setattr(obs_config, name, True)

        arm = JointVelocity() if self.action_mode == "joint_velocity" else EndEffectorPoseViaPlanning()
        environment = Environment(
            action_mode=MoveArmThenGripper(arm_action_mode=arm, gripper_action_mode=Discrete()),
            obs_config=obs_config,
            headless=self.headless,
        )
        try:
            environment.launch()
            task_env = environment.get_task(name_to_task_class(self.task))
        except BaseException:
            environment.shutdown()
            raise
        return _Backend(environment, task_env, _invalid_action_errors())

    def _convert(self, observation: Any) -> np.ndarray | dict[str, np.ndarray]:
        pose = getattr(observation, "gripper_pose", None)
        if pose is not None and np.size(pose) == 7 and np.all(np.isfinite(pose)):
            self._quaternion = np.asarray(pose, dtype=np.float64).reshape(-1)[3:7]
        if self._render_front_camera:
            self._frame = rgb_frame(getattr(observation, "front_rgb", None), self.size)
        if self.obs_type == "pixels":
            return self._frame.copy()
        if self.obs_type == "state":
            return state_vector(observation)
        return {"pixels": self._frame.copy(), "state": state_vector(observation)}

    def _require_backend(self) -> _Backend:
        if self._backend is None:
            raise RuntimeError("this RLBench environment has been closed")
        return self._backend

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode. ``options={"variation": i}`` selects the task variation (default: the current one)."""
        super().reset(seed=seed)
        backend = self._require_backend()
        if seed is not None:
            # RLBench samples object placements from NumPy's global random state.
            np.random.seed(int(self.np_random.integers(2**32)))
        if options and "variation" in options:
            backend.task_env.set_variation(int(options["variation"]))
        descriptions, observation = backend.task_env.reset()
        self._elapsed = 0
        self._needs_reset = False
        return self._convert(observation), {"descriptions": list(descriptions or [])}

    def step(self, action):
        backend = self._require_backend()
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (and after an episode ends)")
        command = process_action(action, self.action_mode, fallback_quaternion=self._quaternion)
        reward, success, terminated, error = 0.0, False, False, None
        observation = None
        for _ in range(self.action_repeat):
            try:
                observation, step_reward, terminate = backend.task_env.step(command)
            except backend.invalid_action_errors as caught:
                error = caught
                break
            reward += float(step_reward)
            success = success or float(step_reward) >= 1.0
            if terminate:
                terminated = True
                break
        if error is not None:
            observation = self._observation_after_error(backend, observation)
            reward, success, terminated = 0.0, False, False
        self._elapsed += 1
        truncated = (
            not terminated and self.max_episode_steps is not None and self._elapsed >= self.max_episode_steps
        )
        self._needs_reset = terminated or truncated
        info = {"task_reward": reward, "success": success, "invalid_action": error is not None}
        if error is not None:
            info["invalid_action_error"] = f"{type(error).__name__}: {error}"
        return self._convert(observation), reward, terminated, truncated, info

    def _observation_after_error(self, backend: _Backend, observation: Any) -> Any:
        try:
            return backend.task_env.get_observation()
        except Exception:
            if observation is None:
                raise
            return observation

    def render(self) -> np.ndarray | None:
        if self.render_mode is None or self._frame is None:
            return None
        return self._frame.copy()

    def close(self) -> None:
        """Shut CoppeliaSim down; safe to call more than once."""
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.environment.shutdown()


def register_ids() -> None:
    for task in ALL_TASKS:
        register(
            "rlbench",
            task,
            "worldrl.envs.rlbench:RLBenchEnv",
            # The time limit is Gymnasium's TimeLimit (overridable in gym.make), not the env's own.
            kwargs={"task": task, "max_episode_steps": None},
            max_episode_steps=DEFAULT_MAX_EPISODE_STEPS,
            nondeterministic=True,
        )
