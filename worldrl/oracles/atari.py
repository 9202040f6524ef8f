"""Scripted Atari task oracles that read the console RAM (``obs_type="state"``).

They play from a few RAM bytes: positions of ball and paddle, and for Pong
the ball's velocity. We located them by stepping each game with random
actions, finding ball and paddle in the rendered frame by colour and
correlating their pixel positions (and the ball's frame-to-frame motion)
with every RAM byte: positions correlate 0.999-1.000 with the chosen bytes,
Pong's velocity bytes 0.97. The addresses agree with the AtariARI RAM
annotations (Anand et al., 2019). Values below are in RAM units.

Returns are mean +- standard deviation over 20 episodes of the registered
env's defaults (sticky actions 0.25, frame skip 4, up to 30 no-ops), measured
with :func:`~worldrl.oracles.policy.evaluate_policy_return` and seed 0, random
play for comparison; see each oracle's docstring.

The paddles of Pong and Breakout follow ALE's paddle controller with a lag:
one agent step of pushing moves the paddle's resting position by about 20
units, about the paddle's length, so the oracles cannot place the paddle
exactly. They push when the predicted resting position (position plus
``COAST`` times the last step's motion) is more than ``DEAD`` units off the
target, and wait otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from worldrl.oracles.policy import state_batch

RAM_SIZE = 128


def _signed(values: np.ndarray) -> np.ndarray:
    return np.where(values > 127, values - 256, values)


def _reflect(value: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold a straight-line position back into [low, high] as bounces off both walls do."""
    span = high - low
    folded = np.mod(value - low, 2 * span)
    return low + np.where(folded > span, 2 * span - folded, folded)


class RamOracle:
    """Base class: a batch of RAM observations [N, 128] (or a dict holding them as ``"state"``) -> action indices [N].

    Subclasses name the actions they use in ``ACTIONS``; the indices are
    looked up in ``action_meanings`` (``env.unwrapped.get_action_meanings()``),
    so an oracle works with the minimal or the full action set. An oracle
    remembers the previous batch to estimate motion; if the batch size changes
    (or after :meth:`reset`) the first step sees no motion.
    """

    game: str = ""
    ACTIONS: tuple[str, ...] = ()
    required_obs_type = "pixels+state"
    COAST = 0.8  # the paddle keeps moving by about this times its last step's motion

    def __init__(self, action_meanings: Sequence[str]):
        self.action_meanings = list(action_meanings)
        missing = [name for name in self.ACTIONS if name not in self.action_meanings]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs the actions {missing}, which are not among {self.action_meanings}"
            )
        self._index = {name: self.action_meanings.index(name) for name in self.ACTIONS}
        self._previous: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the previous batch (call between unrelated runs)."""
        self._previous = None

    def __call__(self, obs: Any) -> np.ndarray:
        ram = state_batch(obs)
        if ram.ndim != 2 or ram.shape[1] != RAM_SIZE:
            raise ValueError(
                f"{type(self).__name__} expects a batch of {RAM_SIZE}-byte RAM states [N, {RAM_SIZE}], "
                f"got shape {ram.shape}; make the env with obs_type='state' or 'pixels+state'"
            )
        ram = ram.astype(np.int32)
        previous = self._previous if self._previous is not None and self._previous.shape == ram.shape else ram
        self._previous = ram
        return self.act(ram, previous).astype(np.int64)

    def act(self, ram: np.ndarray, previous: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _move(
        self, position: np.ndarray, previous: np.ndarray, target: np.ndarray, dead: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Masks (decrease, increase) of the paddle coordinate, from its predicted resting position."""
        error = target - (position + self.COAST * (position - previous))
        return error < -dead, error > dead

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.action_meanings})"


class PongOracle(RamOracle):
    """Pong: meet the ball where it will cross the paddle's column, hitting it off-centre.

    RAM: ball x 49, ball y 54, ball velocity x 58 (negated, int8) and y 56
    (int8) per frame, player paddle top 51. The ball's predicted crossing of
    the paddle column (x 188) folds off the walls (y 44..206). The paddle aims
    ``OFFSET`` units past that point in the ball's vertical direction, so the
    ball meets the paddle off-centre and leaves at a steeper angle: the
    computer misses about 5% of centred returns and 30-50% of edge returns,
    but edge targets also make the oracle miss more (offsets 4, 8 and 10 did
    worse than 6 over 8 episodes). ``RIGHT`` moves the paddle up, ``LEFT`` down.

    Return over 20 episodes: +10.8 +- 8.1, 17 of them won (episodes of
    8,245-15,076 steps: long rallies); random play: -20.1 +- 1.1. The oracle
    returns about 97% of the balls; its points come from the computer's misses.
    """

    game = "pong"
    ACTIONS = ("NOOP", "RIGHT", "LEFT")
    BALL_X, BALL_Y, BALL_VX, BALL_VY, PADDLE = 49, 54, 58, 56, 51
    PADDLE_X, TOP, BOTTOM = 188, 44, 206
    CENTRE = 7  # ball y minus paddle top when the ball meets the paddle's middle (hits span -2..16)
    OFFSET = 6
    DEAD = 9
    REST = 125

    def act(self, ram: np.ndarray, previous: np.ndarray) -> np.ndarray:
        x, y, paddle = ram[:, self.BALL_X], ram[:, self.BALL_Y], ram[:, self.PADDLE]
        vx, vy = -_signed(ram[:, self.BALL_VX]), _signed(ram[:, self.BALL_VY])
        incoming = (x > 0) & (y > 0) & (vx > 0)
        frames = (self.PADDLE_X - x) / np.maximum(vx, 1)
        crossing = _reflect(y + vy * frames, self.TOP, self.BOTTOM)
        target = np.where(incoming, crossing + self.OFFSET * np.sign(vy), self.REST) - self.CENTRE
        up, down = self._move(paddle, previous[:, self.PADDLE], target, self.DEAD)
        index = self._index
        return np.where(up, index["RIGHT"], np.where(down, index["LEFT"], index["NOOP"]))


class BreakoutOracle(RamOracle):
    """Breakout: ``FIRE`` to serve, then catch the ball where it will come down.

    RAM: ball x 99, ball y 101 (0 while no ball is in play), paddle x 72
    (the paddle's centre is at ball x = paddle + 9; hits span +1..+17). The
    ball's motion is the change since the previous step; its landing x at the
    paddle's row (y 177) folds off the side walls (x 57..199). While the ball
    rises the paddle follows it.

    Return over 20 uncapped episodes: 176.3 +- 101.5 (episodes of 903-2302
    steps; random play: 1.15 +- 1.19).
    """

    game = "breakout"
    ACTIONS = ("NOOP", "FIRE", "RIGHT", "LEFT")
    BALL_X, BALL_Y, PADDLE = 99, 101, 72
    PADDLE_CENTRE, PADDLE_Y, LEFT_WALL, RIGHT_WALL = 9, 177, 57, 199
    DEAD = 9
    COAST = 0.5

    def act(self, ram: np.ndarray, previous: np.ndarray) -> np.ndarray:
        x, y = ram[:, self.BALL_X], ram[:, self.BALL_Y]
        dx, dy = x - previous[:, self.BALL_X], y - previous[:, self.BALL_Y]
        seen = (y > 0) & (previous[:, self.BALL_Y] > 0) & (np.abs(dx) <= 16) & (np.abs(dy) <= 20)
        falling = seen & (dy > 0) & (y < self.PADDLE_Y)
        steps = (self.PADDLE_Y - y) / np.where(falling, dy, 1)
        landing = _reflect(x + dx * steps, self.LEFT_WALL, self.RIGHT_WALL)
        target = np.where(falling, landing, x)
        paddle = ram[:, self.PADDLE] + self.PADDLE_CENTRE
        left, right = self._move(paddle, previous[:, self.PADDLE] + self.PADDLE_CENTRE, target, self.DEAD)
        index = self._index
        action = np.where(left, index["LEFT"], np.where(right, index["RIGHT"], index["NOOP"]))
        return np.where(y == 0, index["FIRE"], action)


class FreewayOracle(RamOracle):
    """Freeway: always ``UP``; the chicken is knocked back by cars but never dies.

    Return over 20 episodes: 21.5 +- 1.3 (random play: 0.0).
    """

    game = "freeway"
    ACTIONS = ("UP",)

    def act(self, ram: np.ndarray, previous: np.ndarray) -> np.ndarray:
        return np.full(len(ram), self._index["UP"])


ORACLES: dict[str, type[RamOracle]] = {cls.game: cls for cls in (PongOracle, BreakoutOracle, FreewayOracle)}


def scripted_oracle(game: str, action_meanings: Sequence[str] | None = None) -> RamOracle:
    """The scripted oracle of ``game`` (``pong``, ``breakout``, ``freeway``).

    ``action_meanings`` defaults to the game's minimal action set, the one the
    registered ``worldrl/atari-<game>-v0`` ids use.
    """
    if game not in ORACLES:
        raise ValueError(f"no scripted oracle for {game!r}; available: {', '.join(sorted(ORACLES))}")
    if action_meanings is None:
        from worldrl.envs.atari import AtariEnv

        action_meanings = AtariEnv(game, obs_type="state").get_action_meanings()
    return ORACLES[game](action_meanings)
