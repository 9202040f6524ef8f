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
from worldrl.data.replay import ReplayBuffer

__all__ = [
    "Episode",
    "EpisodeBuilder",
    "EpisodeError",
    "EpisodeFolder",
    "EpisodeInfo",
    "ReplayBuffer",
    "VideoClipDataset",
    "episode_return",
    "load_episode",
    "save_episode",
    "validate_episode",
]


def __getattr__(name: str):
    """``VideoClipDataset`` imports torch; load it on first use so the data layer stays light."""
    if name == "VideoClipDataset":
        from worldrl.data.clips import VideoClipDataset

        return VideoClipDataset
    raise AttributeError(f"module 'worldrl.data' has no attribute {name!r}")
