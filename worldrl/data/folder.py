"""A dataset folder: episode files plus ``dataset.json``, loaded lazily.

Layout::

    DIR/episode_000000.npz
    DIR/episode_000001.npz
    DIR/dataset.json   {"env_id", "env_kwargs", "count", "episodes": [{"file", "length", "return", ...}]}

``length`` is the number of agent steps T (the file holds T+1 frames).
The index in ``dataset.json`` is a cache: it is rebuilt from the files when it
is missing or disagrees with them (reading only each file's ``reward`` member
and the ``image`` header, never the frames). Appending continues the
numbering and never overwrites; the episode file is written before the index,
both atomically, so a crash loses at most the episode being written.
"""

from __future__ import annotations

import errno
import json
import os
import re
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from worldrl.atomic import copy_atomic, write_json_atomic
from worldrl.data.episode import Episode, EpisodeError, episode_return, load_episode, save_episode

INDEX_FILE = "dataset.json"
DERIVED_KEYS = ("count", "frames", "mean_return", "episodes")
EPISODE_PATTERN = re.compile(r"^episode_(\d{6,})\.npz$")
# Errors of os.link that mean "this filesystem cannot hard-link here", not "the source is missing".
LINK_UNSUPPORTED = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


@dataclass(frozen=True)
class EpisodeInfo:
    """Index entry of one episode: enough to sample clips and rank returns without loading frames."""

    file: str
    length: int
    image_shape: tuple[int, ...]
    episode_return: float
    task_return: float | None = None
    task_id: int | None = None


def _image_shape(path: Path) -> tuple[int, ...]:
    """Shape of the ``image`` member from its .npy header, without decompressing the frames."""
    with zipfile.ZipFile(path) as archive, archive.open("image.npy") as member:
        major, _ = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, _ = read_header(member)
    return tuple(shape)


def read_info(path: Path) -> EpisodeInfo:
    """Index one episode file (raises :class:`EpisodeError` if it is corrupt)."""
    try:
        shape = _image_shape(path)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError) as error:
        raise EpisodeError(f"{path}: corrupt or truncated episode file ({error})") from error
    keys = ("reward", "task_reward", "task_id")
    with np.load(path, allow_pickle=False) as data:
        present = [k for k in keys if k in data.files]
    episode = load_episode(path, keys=tuple(present))
    if "reward" not in episode:
        raise EpisodeError(f"{path}: not an episode (no 'reward')")
    task_return = episode_return(episode, "task_reward") if "task_reward" in episode else None
    task_id = int(episode["task_id"][0]) if "task_id" in episode else None
    return EpisodeInfo(path.name, shape[0] - 1, shape[1:], episode_return(episode), task_return, task_id)


class EpisodeFolder:
    """The episodes of one folder, indexed but not loaded.

    ``folder[i]`` loads episode i; ``folder.infos`` lists lengths and returns.
    Corrupt or truncated files are skipped with a warning naming them.
    Episodes whose frames differ in shape from the others raise a ValueError.
    """

    def __init__(self, path: str | Path, create: bool = False, metadata: Mapping[str, Any] | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            if not create:
                raise FileNotFoundError(f"dataset folder {self.path} does not exist")
            self.path.mkdir(parents=True)
        index = self._read_index()
        self.metadata: dict[str, Any] = {k: v for k, v in index.items() if k not in DERIVED_KEYS}
        if metadata:
            self._check_metadata(metadata)
            self.metadata.update(metadata)
        self.infos: list[EpisodeInfo] = self._reconcile(index.get("episodes", []))
        self._check_shapes()

    def _read_index(self) -> dict[str, Any]:
        path = self.path / INDEX_FILE
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            warnings.warn(f"{path} is unreadable ({error}); rebuilding the index from the episode files")
            return {}

    def _check_metadata(self, metadata: Mapping[str, Any]) -> None:
        for key, value in metadata.items():
            if key in self.metadata and self.metadata[key] != value:
                raise ValueError(
                    f"{self.path} holds episodes with {key}={self.metadata[key]!r}, not {value!r}; "
                    "use another folder"
                )

    def _reconcile(self, cached: list[dict[str, Any]]) -> list[EpisodeInfo]:
        by_file = {entry["file"]: entry for entry in cached}
        infos = []
        for file in sorted(f.name for f in self.path.iterdir() if EPISODE_PATTERN.match(f.name)):
            entry = by_file.get(file)
            if entry is not None:
                infos.append(EpisodeInfo(**{**entry, "image_shape": tuple(entry["image_shape"])}))
                continue
            try:
                infos.append(read_info(self.path / file))
            except EpisodeError as error:
                warnings.warn(f"skipping {error}")
        return infos

    def _check_shapes(self) -> None:
        shapes = {info.image_shape for info in self.infos}
        if len(shapes) > 1:
            examples = {shape: next(i.file for i in self.infos if i.image_shape == shape) for shape in shapes}
            raise ValueError(
                f"{self.path} mixes frame shapes: "
                + ", ".join(f"{shape} (e.g. {file})" for shape, file in examples.items())
            )

    def __len__(self) -> int:
        return len(self.infos)

    def __getitem__(self, index: int) -> Episode:
        return load_episode(self.path / self.infos[index].file)

    def __iter__(self) -> Iterator[Episode]:
        return (self[i] for i in range(len(self)))

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        return self.infos[0].image_shape if self.infos else None

    @property
    def returns(self) -> np.ndarray:
        return np.array([info.episode_return for info in self.infos], np.float64)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([info.length for info in self.infos], np.int64)

    def next_file(self) -> str:
        """The next unused ``episode_NNNNNN.npz`` (numbering continues after any file present)."""
        numbers = [int(m.group(1)) for f in os.listdir(self.path) if (m := EPISODE_PATTERN.match(f))]
        return f"episode_{max(numbers, default=-1) + 1:06d}.npz"

    def append(self, episode: Episode) -> EpisodeInfo:
        """Write ``episode`` as the next file, then update the index; returns its entry."""
        shape = tuple(episode["image"].shape[1:])
        if self.infos and shape != self.image_shape:
            raise ValueError(f"{self.path}: episode frames are {shape}, the folder's are {self.image_shape}")
        path = save_episode(self.path / self.next_file(), episode)
        info = EpisodeInfo(
            path.name,
            len(episode["image"]) - 1,
            shape,
            episode_return(episode),
            episode_return(episode, "task_reward") if "task_reward" in episode else None,
            int(episode["task_id"][0]) if "task_id" in episode else None,
        )
        self.infos.append(info)
        self.write_index()
        return info

    def add_file(self, src_path: str | Path, mode: str = "copy", update_index: bool = True) -> EpisodeInfo:
        """Add an existing episode file as the next file (``mode`` "copy" or "link"); returns its entry.

        The file is indexed (``reward`` and the ``image`` header only) before
        anything is written, so a corrupt file raises :class:`EpisodeError` and
        leaves the folder unchanged. ``"link"`` makes a hard link, so both
        names share one copy on disk (episodes are never edited in place); where
        the filesystem cannot hard-link (another filesystem, or none supported)
        it warns and copies. Copies are atomic like :func:`save_episode`.
        ``update_index=False`` skips rewriting ``dataset.json``, for callers
        adding many files who call :meth:`write_index` once at the end.
        """
        if mode not in ("copy", "link"):
            raise ValueError(f"mode must be 'copy' or 'link', not {mode!r}")
        src_path = Path(src_path)
        info = read_info(src_path)
        if self.infos and info.image_shape != self.image_shape:
            raise ValueError(
                f"{src_path}: episode frames are {info.image_shape}, the folder {self.path}'s are {self.image_shape}"
            )
        dst = self.path / self.next_file()
        if mode == "link":
            try:
                os.link(src_path, dst)
            except OSError as error:
                if error.errno not in LINK_UNSUPPORTED:
                    raise
                warnings.warn(f"cannot hard-link episodes into {self.path} ({error.strerror}); copying them instead")
                mode = "copy"
        if mode == "copy":
            copy_atomic(src_path, dst)
        info = replace(info, file=dst.name)
        self.infos.append(info)
        if update_index:
            self.write_index()
        return info

    def write_index(self) -> None:
        returns = self.returns
        write_json_atomic(
            self.path / INDEX_FILE,
            {
                **self.metadata,
                "count": len(self.infos),
                "frames": int(self.lengths.sum() + len(self.infos)),
                "mean_return": float(returns.mean()) if len(returns) else None,
                "episodes": [asdict(info) for info in self.infos],
            },
        )
