"""Atomic file writes: a file is either complete under its final name or absent.

Every checkpoint, episode and index in worldrl is written here: into a
temporary file in the destination folder, flushed to disk, then renamed over
the destination (``os.replace`` is atomic on POSIX and Windows). A crash or
SIGKILL mid-write leaves at most a hidden ``.*.tmp`` file, never a truncated
file under the real name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None], *, fsync: bool = True) -> Path:
    """Call ``write(file)`` on a temporary binary file, then rename it to ``path``; return ``path``.

    The file gets the permissions a plain ``open(path, "wb")`` would give
    (0666 less the umask), not ``mkstemp``'s private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as file:
            write(file)
            if fsync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, data: Any, indent: int = 1) -> Path:
    """Write ``data`` as JSON (UTF-8, trailing newline) to ``path`` atomically."""
    text = json.dumps(data, indent=indent) + "\n"
    return atomic_write(path, lambda file: file.write(text.encode()))


def copy_atomic(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` to ``dst`` atomically."""
    with open(src, "rb") as source:
        return atomic_write(dst, lambda file: shutil.copyfileobj(source, file))
