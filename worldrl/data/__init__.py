"""Rollout data: the episode format, dataset folders, video clip datasets, collectors and replay."""

from worldrl.data.episode import (
    Episode,
    EpisodeBuilder,
    EpisodeError,
    episode_return,
    load_episode,
    save_episode,
    validate_episode,
)
from worldrl.data.folder import EpisodeFolder, EpisodeInfo

__all__ = [
    "Episode",
    "EpisodeBuilder",
    "EpisodeError",
    "EpisodeFolder",
    "EpisodeInfo",
    "episode_return",
    "load_episode",
    "save_episode",
    "validate_episode",
]
