"""Gymnasium wrappers that gymnasium itself lacks.

:class:`VIPERReward` (one env) and :class:`VIPERRewardVector` (a vector env)
replace the reward by the likelihood of the next frame under a video model.

Use gymnasium's own for resizing, grayscale, frame stacking, time limits and
video recording (``gymnasium.wrappers``).
"""

from worldrl.wrappers.action_repeat import ActionRepeat
from worldrl.wrappers.frame_stride import FrameStride
from worldrl.wrappers.scoreboard import ScoreboardMask
from worldrl.wrappers.viper import VIPERReward, VIPERRewardVector, VIPERScorer, relabel

__all__ = [
    "ActionRepeat", "FrameStride", "ScoreboardMask", "VIPERReward", "VIPERRewardVector", "VIPERScorer", "relabel",
]
