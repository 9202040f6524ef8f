"""Fixed-length video clips from dataset folders, streamed from disk, for training video models.

A clip of length L at stride s starting at frame t holds frames
``t, t+s, ..., t+(L-1)s`` of one episode; clips never cross an episode
boundary. Every valid start of every episode is one item, so an epoch visits
each (episode, start) once. The index is one cumulative sum over episodes,
never a list of pairs, and frames are read per item, so memory stays flat in
the number of episodes.
"""

from __future__ import annotations

import os
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from worldrl.data.episode import load_episode
from worldrl.data.folder import EpisodeFolder

SPLITS = ("train", "val", "all")
FolderLike = EpisodeFolder | str | Path


def _folder_path(folder: FolderLike) -> Path:
    return Path(folder.path if isinstance(folder, EpisodeFolder) else folder).resolve()


def is_val_episode(file: str, val_fraction: float, split_seed: int = 0) -> bool:
    """Whether the episode named ``file`` belongs to the validation split.

    The decision hashes only the file name and the seed (CRC-32, stable across
    runs and machines), so adding episodes never moves existing ones between
    splits. Each episode goes to val with probability ``val_fraction``: the
    val share is ``val_fraction`` on average, not exactly. Same-named episodes
    in different folders (``episode_000000.npz`` ...) land in the same split.
    """
    return zlib.crc32(f"{split_seed}:{file}".encode()) / 2**32 < val_fraction


class VideoClipDataset(Dataset):
    """Clips of ``clip_length`` frames at frame stride ``stride`` from one or more dataset folders.

    Each item is a dict:

    - ``video``: uint8 tensor ``[L, C, H, W]``, channels first and left as
      uint8 (4x smaller to move between workers; the model converts to float
      and normalises);
    - ``actions`` (``with_actions``): float32 ``[L, A]``; ``actions[j]`` is the
      episode's action row at frame ``t + j*s``, the action taken just before
      that frame and so the one that led to it (zeros when that frame is an
      episode's first). With ``s > 1`` the other ``s-1`` actions between two
      clip frames are dropped. A model predicting frame ``j+1`` from frames
      ``<= j`` conditions on ``actions[j+1]``;
    - ``task_id`` (``with_task_id``): int64 scalar tensor, the episode's own
      ``task_id`` or else ``task_ids[folder]``.

    ``split`` picks episodes by :func:`is_val_episode` ("all" keeps every
    one). Episodes with fewer than ``(L-1)*s + 1`` frames are skipped and
    counted in ``skipped_episodes``. ``mask_scoreboard`` names an Atari game
    whose score area (scaled to the frame size) is zeroed in every frame.

    Only the needed members of one episode are read per item. The last
    ``cache_episodes`` episodes read are kept per process (created lazily and
    dropped on fork and pickling, so ``DataLoader`` workers each get their
    own), which makes sequential access decompress each episode once; shuffled
    access decompresses the ``image`` member of one episode per item.
    """

    def __init__(
        self,
        folders: FolderLike | Sequence[FolderLike],
        clip_length: int,
        stride: int = 1,
        split: str = "train",
        val_fraction: float = 0.05,
        split_seed: int = 0,
        with_actions: bool = False,
        with_task_id: bool = False,
        mask_scoreboard: str | None = None,
        task_ids: Mapping[FolderLike, int] | None = None,
        cache_episodes: int = 1,
    ):
        if clip_length < 1 or stride < 1:
            raise ValueError(f"clip_length and stride must be >= 1, got clip_length={clip_length}, stride={stride}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        if not 0.0 <= val_fraction <= 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1], got {val_fraction}")
        if cache_episodes < 0:
            raise ValueError(f"cache_episodes must be >= 0, got {cache_episodes}")
        if isinstance(folders, (EpisodeFolder, str, Path)):
            folders = [folders]
        folders = [f if isinstance(f, EpisodeFolder) else EpisodeFolder(f) for f in folders]
        if not folders:
            raise ValueError("VideoClipDataset needs at least one dataset folder")
        self.clip_length, self.stride, self.split = clip_length, stride, split
        self.with_actions, self.with_task_id = with_actions, with_task_id
        self.cache_episodes = cache_episodes
        self.image_shape = self._common_shape(folders)
        self.regions: list[tuple[slice, slice]] = []
        if mask_scoreboard is not None:
            from worldrl.wrappers.scoreboard import scaled_regions

            self.regions = scaled_regions(mask_scoreboard, self.image_shape[0], self.image_shape[1])
        folder_task_ids = {_folder_path(k): int(v) for k, v in (task_ids or {}).items()}

        span = self.span
        paths: list[str] = []
        starts: list[int] = []
        ids: list[int] = []
        self.skipped_episodes = 0
        for folder in folders:
            fallback = folder_task_ids.get(_folder_path(folder))
            for info in folder.infos:
                if split != "all" and is_val_episode(info.file, val_fraction, split_seed) != (split == "val"):
                    continue
                if info.length + 1 < span:
                    self.skipped_episodes += 1
                    continue
                paths.append(str(folder.path / info.file))
                starts.append(info.length + 1 - span + 1)
                if with_task_id:
                    ids.append(self._task_id(folder, info.file, info.task_id, fallback))
        self.paths = paths
        self._ends = np.cumsum(np.asarray(starts, np.int64))
        self._task_ids = np.asarray(ids, np.int64)
        self._keys = ("image", "action") if with_actions else ("image",)
        self._cache: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self._cache_pid = os.getpid()
        if len(self) == 0:
            raise ValueError(
                f"no clips of {clip_length} frames at stride {stride} (span {span}) in split {split!r} of "
                f"{', '.join(str(f.path) for f in folders)}: {len(paths)} usable episodes, "
                f"{self.skipped_episodes} too short"
            )

    @staticmethod
    def _common_shape(folders: list[EpisodeFolder]) -> tuple[int, ...]:
        shapes = {f.path: f.image_shape for f in folders if f.image_shape is not None}
        if not shapes:
            raise ValueError(f"no episodes in {', '.join(str(f.path) for f in folders)}")
        if len(set(shapes.values())) > 1:
            raise ValueError(
                "dataset folders have different frame shapes: "
                + ", ".join(f"{path}: {shape}" for path, shape in shapes.items())
            )
        return next(iter(shapes.values()))

    @staticmethod
    def _task_id(folder: EpisodeFolder, file: str, own: int | None, fallback: int | None) -> int:
        if own is None and fallback is None:
            raise ValueError(
                f"{folder.path / file} has no task_id; pass task_ids={{folder: id}} for episodes recorded without one"
            )
        if own is not None and fallback is not None and own != fallback:
            raise ValueError(f"{folder.path / file} has task_id {own}, but task_ids gives its folder {fallback}")
        return own if own is not None else fallback

    @property
    def span(self) -> int:
        """Frames one clip covers in its episode: ``(clip_length - 1) * stride + 1``."""
        return (self.clip_length - 1) * self.stride + 1

    @property
    def num_episodes(self) -> int:
        """Episodes that contribute clips (after the split and skipping short ones)."""
        return len(self.paths)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def locate(self, index: int) -> tuple[int, int]:
        """The (episode number in :attr:`paths`, start frame) of item ``index``."""
        index = int(index)
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError(f"clip index {index} out of range for {size} clips")
        episode = int(np.searchsorted(self._ends, index, side="right"))
        first = int(self._ends[episode - 1]) if episode else 0
        return episode, index - first

    def _load(self, path: str) -> dict[str, np.ndarray]:
        if self._cache_pid != os.getpid():
            self._cache, self._cache_pid = OrderedDict(), os.getpid()
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        episode = load_episode(path, keys=self._keys)
        if self.cache_episodes:
            self._cache[path] = episode
            while len(self._cache) > self.cache_episodes:
                self._cache.popitem(last=False)
        return episode

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        episode_index, start = self.locate(index)
        episode = self._load(self.paths[episode_index])
        frames = slice(start, start + self.span, self.stride)
        video = np.ascontiguousarray(episode["image"][frames].transpose(0, 3, 1, 2))
        for rows, cols in self.regions:
            video[:, :, rows, cols] = 0
        item = {"video": torch.from_numpy(video)}
        if self.with_actions:
            item["actions"] = torch.from_numpy(np.array(episode["action"][frames], np.float32))
        if self.with_task_id:
            item["task_id"] = torch.tensor(self._task_ids[episode_index], dtype=torch.int64)
        return item

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        return state
