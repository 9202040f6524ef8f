"""Atari 2600 games of the Arcade Learning Environment as ``worldrl/atari-<game>-v0``.

:class:`AtariEnv` drives ``ale_py.ALEInterface`` directly with the protocol that
DreamerV3 and the standard Atari benchmarks use: sticky actions (probability
0.25 per emulator frame), an action repeat of 4 with summed rewards, the
pixel-wise max over the last two emulator frames, an area-interpolated resize
(64x64 RGB by default), up to 30 no-op frames at reset, the minimal action set
and a limit of 27,000 agent steps (108,000 emulator frames).

``obs_type="state"`` observes the console's 128 bytes of RAM instead of pixels
(what scripted task oracles read), and ``"pixels+state"`` both, as a dict.
"""

from __future__ import annotations

import difflib
import operator
from typing import Any

import ale_py
import cv2
import gymnasium as gym
import numpy as np
from ale_py import roms
from gymnasium import spaces

from worldrl.envs.dm_control_base import OBS_TYPES, check_choice, parse_size
from worldrl.envs.registration import register

NATIVE_SIZE = (210, 160)
MAX_EPISODE_STEPS = 27_000
EMULATOR_FPS = 60
RAM_SIZE = 128

# Score areas of the native 210x160 frame as (rows, columns) slices, found by
# looking at frames of random play. Most span the full width so that scores with
# more digits stay covered.
SCOREBOARD_REGIONS: dict[str, tuple[tuple[slice, slice], ...]] = {
    # Digits in rows 1-20, above the top wall (row 24) that the ball never crosses.
    "pong": ((slice(0, 24), slice(None)),),
    # Digits in rows 5-14, above the wall (row 17). The lives counter and player
    # number share these rows and are hidden too (``info["lives"]`` still has them).
    "breakout": ((slice(0, 17), slice(None)),),
    # Scores in rows 5-11; the clock below (rows 17-23) and the ring (row 25 on) stay.
    "boxing": ((slice(0, 15), slice(None)),),
    # Digits in rows 5-12 of the grey strip; the chicken never goes above row 16.
    "freeway": ((slice(0, 14), slice(None)),),
    # Score in rows 187-193, below the maze (which ends at row 171) and the
    # lives and fruit row (173-182), which stays.
    "ms_pacman": ((slice(183, 210), slice(None)),),
    # Score in rows 9-16 of the sky, which the submarine never enters (it
    # surfaces at row 46); the reserve submarines below (rows 22-29) stay.
    "seaquest": ((slice(0, 20), slice(None)),),
    # The two 4-digit scores sit in rows 10-19 at columns 4-63 and 84-143. The
    # mothership flies through the same rows (11-20), so only the digit columns
    # are masked and the mothership is hidden only while it passes behind them.
    "space_invaders": ((slice(9, 20), slice(3, 65)), (slice(9, 20), slice(83, 145))),
}


def games() -> list[str]:
    """Every game whose ROM ships with ale-py, in ALE's snake_case (``pong``, ``ms_pacman``, ...)."""
    return list(roms.get_all_rom_ids())


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class AtariEnv(gym.Env):
    """One ALE game with pixel and/or RAM observations.

    Each :meth:`step` repeats the action for ``frame_skip`` emulator frames,
    summing the rewards, and observes the pixel-wise max of the last two frames
    resized to ``size``. ``obs_type`` picks the observation: ``"pixels"`` (that
    image), ``"state"`` (the 128-byte RAM after the last frame, uint8; the screen
    is then never read, which makes stepping cheaper) or ``"pixels+state"`` (a
    dict with both). Actions are ints in ``Discrete(n)``; anything else
    raises ValueError (discrete actions are never clipped). ``info`` holds
    ``lives``, ``life_loss`` (a life was lost this step) and ``task_reward``.

    ``terminated`` is set at game over, and also on a life loss when
    ``life_loss_terminal`` is true; the next :meth:`reset` then starts a whole
    new game, not the next life. ``truncated`` is set after
    ``max_episode_steps`` agent steps (None for no limit). The registered ids
    leave that to Gymnasium's TimeLimit instead (27,000 steps), so
    ``gym.make(id, max_episode_steps=N)`` sets any limit.

    ``reset(seed=s)`` reloads the ROM with an emulator seed drawn from ``s``,
    so the episode (no-op count, sticky actions, frames) is reproducible; an
    unseeded reset only restarts the game. ``mask_scoreboard`` zeroes the
    :data:`SCOREBOARD_REGIONS` of the game in every emulator frame before the
    max and resize. ``render()`` returns the current native 210x160 RGB frame.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": EMULATOR_FPS // 4}

    def __init__(
        self,
        game: str,
        *,
        obs_type: str = "pixels",
        size: int | tuple[int, int] = 64,
        grayscale: bool = False,
        frame_skip: int = 4,
        repeat_action_probability: float = 0.25,
        noop_max: int = 30,
        full_action_space: bool = False,
        life_loss_terminal: bool = False,
        mask_scoreboard: bool = False,
        max_episode_steps: int | None = MAX_EPISODE_STEPS,
        render_mode: str | None = None,
    ):
        all_games = games()
        if game not in all_games:
            close = difflib.get_close_matches(str(game), all_games, n=5)
            hint = f" Closest: {', '.join(close)}." if close else ""
            raise ValueError(
                f"game={game!r} is not an installed Atari game.{hint} `worldrl.envs.atari.games()` lists them."
            )
        self.size = parse_size(size)
        self.frame_skip = _check_int("frame_skip", frame_skip, 1)
        self.noop_max = _check_int("noop_max", noop_max, 0)
        if max_episode_steps is not None:
            max_episode_steps = _check_int("max_episode_steps", max_episode_steps, 1)
        if (
            not isinstance(repeat_action_probability, (int, float, np.integer, np.floating))
            or isinstance(repeat_action_probability, bool)
            or not 0.0 <= repeat_action_probability <= 1.0
        ):
            raise ValueError(
                f"repeat_action_probability must be a number in [0, 1], got {repeat_action_probability!r}"
            )
        check_choice("render_mode", render_mode, (None, *self.metadata["render_modes"]))
        check_choice("obs_type", obs_type, OBS_TYPES)
        if mask_scoreboard and game not in SCOREBOARD_REGIONS:
            raise ValueError(
                f"mask_scoreboard=True: no scoreboard region is defined for {game!r}; "
                f"games with one: {', '.join(sorted(SCOREBOARD_REGIONS))}"
            )
        self.game = game
        self.obs_type = obs_type
        self.grayscale = bool(grayscale)
        self.repeat_action_probability = float(repeat_action_probability)
        self.full_action_space = bool(full_action_space)
        self.life_loss_terminal = bool(life_loss_terminal)
        self.mask_scoreboard = bool(mask_scoreboard)
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": max(1, round(EMULATOR_FPS / self.frame_skip))}

        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale = ale_py.ALEInterface()
        self.ale.setInt("frame_skip", 1)
        self.ale.setFloat("repeat_action_probability", self.repeat_action_probability)
        self._rom = roms.get_rom_path(game)
        self._load_rom(int(np.random.SeedSequence().generate_state(1)[0] >> 1))

        actions = self.ale.getLegalActionSet() if self.full_action_space else self.ale.getMinimalActionSet()
        self._actions = list(actions)
        self.action_space = spaces.Discrete(len(self._actions))
        channels = 1 if self.grayscale else 3
        pixel_space = spaces.Box(0, 255, (*self.size, channels), np.uint8)
        state_space = spaces.Box(0, 255, (RAM_SIZE,), np.uint8)
        self.observation_space = {
            "pixels": pixel_space,
            "state": state_space,
            "pixels+state": spaces.Dict({"pixels": pixel_space, "state": state_space}),
        }[obs_type]
        self._pixels = obs_type != "state"
        self._ram = np.zeros(RAM_SIZE, np.uint8)

        buffer_shape = NATIVE_SIZE if self.grayscale else (*NATIVE_SIZE, 3)
        self._buffers = (np.zeros(buffer_shape, np.uint8), np.zeros(buffer_shape, np.uint8))
        self._get_screen = self.ale.getScreenGrayscale if self.grayscale else self.ale.getScreenRGB
        self._masks = SCOREBOARD_REGIONS[game] if self.mask_scoreboard else ()
        self._resize = self.size != NATIVE_SIZE
        self._cv_size = (self.size[1], self.size[0])
        self._lives = 0
        self._steps = 0

    def _load_rom(self, ale_seed: int) -> None:
        """ALE applies ``random_seed`` only when a ROM is loaded; loading also resets the game."""
        self.ale.setInt("random_seed", ale_seed)
        self.ale.loadROM(self._rom)

    def _grab(self, buffer: np.ndarray) -> None:
        self._get_screen(buffer)
        for region in self._masks:
            buffer[region] = 0

    def _image(self, frame: np.ndarray) -> np.ndarray:
        obs = cv2.resize(frame, self._cv_size, interpolation=cv2.INTER_AREA) if self._resize else frame.copy()
        return obs[:, :, None] if self.grayscale else obs

    def _state(self) -> np.ndarray:
        self.ale.getRAM(self._ram)
        return self._ram.copy()

    def _observation(self, frame: np.ndarray | None) -> np.ndarray | dict[str, np.ndarray]:
        if self.obs_type == "pixels":
            return self._image(frame)
        if self.obs_type == "state":
            return self._state()
        return {"pixels": self._image(frame), "state": self._state()}

    def _info(self, life_loss: bool, reward: float) -> dict[str, Any]:
        return {"lives": self._lives, "life_loss": life_loss, "task_reward": reward}

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[np.ndarray | dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._load_rom(int(self.np_random.integers(2**31)))
        else:
            self.ale.reset_game()
        if self.noop_max:
            noop = ale_py.Action.NOOP
            for _ in range(int(self.np_random.integers(1, self.noop_max + 1))):
                self.ale.act(noop)
                if self.ale.game_over():
                    self.ale.reset_game()
        self._lives = self.ale.lives()
        self._steps = 0
        frame = None
        if self._pixels:
            frame = self._buffers[0]
            self._grab(frame)
        return self._observation(frame), self._info(False, 0.0)

    def _action_index(self, action: Any) -> int:
        n = self.action_space.n
        if type(action) is not int:
            try:
                if isinstance(action, (bool, np.bool_)):
                    raise TypeError
                action = operator.index(action)
            except TypeError:
                raise ValueError(
                    f"action {action!r} is not valid: expected an int in [0, {n - 1}] "
                    f"(discrete actions are never clipped or rounded)"
                ) from None
        if not 0 <= action < n:
            raise ValueError(
                f"action {action!r} is out of range: expected an int in [0, {n - 1}] "
                f"(discrete actions are never clipped)"
            )
        return action

    def _act(self, ale_action: ale_py.Action) -> tuple[int, bool]:
        """Repeat the action without reading the screen; (summed reward, game over)."""
        act, game_over = self.ale.act, self.ale.game_over
        reward = 0
        for _ in range(self.frame_skip):
            reward += act(ale_action)
            if game_over():
                return reward, True
        return reward, False

    def _act_and_grab(self, ale_action: ale_py.Action) -> tuple[int, bool, np.ndarray]:
        """Repeat the action, grabbing only the last two frames; (summed reward, game over, max-pooled frame)."""
        act, game_over, grab = self.ale.act, self.ale.game_over, self._grab
        first, second = self._buffers
        last = self.frame_skip - 1
        reward = 0
        over = False
        for i in range(self.frame_skip):
            reward += act(ale_action)
            if i == last:
                grab(second)
            elif i == last - 1:
                grab(first)
            if game_over():
                over = True
                break
        if i == last:
            frame = np.maximum(first, second, out=first) if last else second
        else:
            frame = first
            if i < last - 1:
                grab(frame)
        return reward, over, frame

    def step(self, action: Any) -> tuple[np.ndarray | dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        ale_action = self._actions[self._action_index(action)]
        if self._pixels:
            reward, over, frame = self._act_and_grab(ale_action)
        else:
            (reward, over), frame = self._act(ale_action), None
        lives = self.ale.lives()
        life_loss = lives < self._lives
        self._lives = lives
        self._steps += 1
        terminated = over or (life_loss and self.life_loss_terminal)
        truncated = self.max_episode_steps is not None and self._steps >= self.max_episode_steps
        reward = float(reward)
        return self._observation(frame), reward, terminated, truncated, self._info(life_loss, reward)

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self.ale.getScreenRGB()

    def get_action_meanings(self) -> list[str]:
        """Names of the ALE actions behind the discrete indices (``NOOP``, ``FIRE``, ...)."""
        return [a.name for a in self._actions]


def register_ids() -> None:
    for game in games():
        register(
            "atari",
            game,
            "worldrl.envs.atari:AtariEnv",
            kwargs={"game": game, "max_episode_steps": None},
            max_episode_steps=MAX_EPISODE_STEPS,
        )
