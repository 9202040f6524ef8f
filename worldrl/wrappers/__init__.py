"""Gymnasium wrappers that gymnasium itself lacks.

Use gymnasium's own for resizing, grayscale, frame stacking, time limits and
video recording (``gymnasium.wrappers``).
"""

from worldrl.wrappers.action_repeat import ActionRepeat
from worldrl.wrappers.frame_stride import FrameStride
from worldrl.wrappers.scoreboard import ScoreboardMask

__all__ = ["ActionRepeat", "FrameStride", "ScoreboardMask"]
