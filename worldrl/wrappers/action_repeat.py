"""Repeat each action k times, summing rewards, for any env."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym


class ActionRepeat(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Apply the same action ``repeat`` times; the reward is the sum, the observation the last one.

    Stops early when the episode ends. ``info["task_reward"]``, when the env
    reports it, is summed the same way. worldrl's DMC and Atari envs repeat
    internally (so they render once per agent step); use this for other envs.
    """

    def __init__(self, env: gym.Env, repeat: int):
        if not isinstance(repeat, int) or repeat < 1:
            raise ValueError(f"repeat must be a positive int, got {repeat!r}")
        gym.utils.RecordConstructorArgs.__init__(self, repeat=repeat)
        super().__init__(env)
        self.repeat = repeat

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        total, task_total = 0.0, 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            task_total += float(info.get("task_reward", 0.0))
            if terminated or truncated:
                break
        if "task_reward" in info:
            info = {**info, "task_reward": task_total}
        return obs, total, terminated, truncated, info
