"""Curated datasets: the best episodes of a folder, or those within a band of the best return.

VIPER-style experiments train video models on expert data and on weaker sets
(e.g. episodes scoring 50-75% of the expert). :func:`curate` builds such a
folder from a larger one without touching the source: episodes are hard-linked
(or copied) into a new folder and renumbered in descending-return order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from worldrl.data.folder import EpisodeFolder, EpisodeInfo

RETURN_KEYS = ("episode_return", "task_return")
MODES = ("link", "copy")


def info_returns(infos: Sequence[EpisodeInfo], by: str = "episode_return") -> np.ndarray:
    """The ``by`` return of each entry; a ValueError names the episodes without one."""
    if by not in RETURN_KEYS:
        raise ValueError(f"by must be one of {RETURN_KEYS}, not {by!r}")
    missing = [info.file for info in infos if getattr(info, by) is None]
    if missing:
        raise ValueError(f"{len(missing)} episodes have no {by} (e.g. {missing[0]}); rank them by episode_return")
    return np.array([getattr(info, by) for info in infos], np.float64)


def select(
    infos: Sequence[EpisodeInfo],
    top_k: int | None = None,
    return_range: tuple[float, float] | None = None,
    by: str = "episode_return",
    baseline: float = 0.0,
) -> list[EpisodeInfo]:
    """The entries :func:`curate` keeps, best first (equal returns in file-name order).

    ``top_k`` keeps the k best (all of them when there are fewer). ``return_range
    = (lo, hi)`` keeps the returns R with ``lo <= (R - baseline) / (best -
    baseline) <= hi``: fractions of the best return measured from
    ``baseline`` (inclusive, with a 1e-9 relative tolerance for rounding). The
    default baseline 0 gives the usual "fraction of the expert return"; for
    games whose returns can be negative pass the random policy's return as
    baseline, the human-normalised-score convention. A best return at or below
    the baseline makes fractions meaningless and raises a ValueError.
    """
    if (top_k is None) == (return_range is None):
        raise ValueError("give exactly one of top_k and return_range")
    if not infos:
        raise ValueError("no episodes to select from")
    returns = info_returns(infos, by)
    order = sorted(range(len(infos)), key=lambda i: (-returns[i], infos[i].file))
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        return [infos[i] for i in order[:top_k]]
    lo, hi = return_range
    if not 0.0 <= lo <= hi:
        raise ValueError(f"return_range needs 0 <= lo <= hi, got ({lo}, {hi})")
    best = float(returns.max())
    scale = best - baseline
    if scale <= 0:
        raise ValueError(
            f"the best {by} {best:g} is not above the baseline {baseline:g}, so fractions of it are meaningless; "
            "pass a baseline below it (e.g. the random policy's return) or use top_k"
        )
    tolerance = 1e-9 * scale
    low, high = baseline + lo * scale - tolerance, baseline + hi * scale + tolerance
    return [infos[i] for i in order if low <= returns[i] <= high]


def curate(
    src: EpisodeFolder | str | Path,
    out: str | Path,
    top_k: int | None = None,
    return_range: tuple[float, float] | None = None,
    mode: str = "link",
    by: str = "episode_return",
    baseline: float = 0.0,
) -> EpisodeFolder:
    """Write the episodes of ``src`` that :func:`select` keeps into the new folder ``out``; return it.

    ``out`` must not exist or be empty (curating never overwrites). Episodes
    become ``episode_000000.npz``, ... best first. ``mode="link"`` hard-links
    them (no extra disk; both folders see one file, which is safe because
    episodes are never edited in place) and copies where the filesystem
    cannot link; ``"copy"`` copies. ``dataset.json`` keeps the source's
    metadata and adds ``curated_from`` and ``selection`` (the rule, the best
    return and how many episodes were kept of how many).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    src = src if isinstance(src, EpisodeFolder) else EpisodeFolder(src)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not an empty folder; curate writes only into a new one")
    kept = select(src.infos, top_k, return_range, by, baseline)
    if not kept:
        best = float(info_returns(src.infos, by).max())
        raise ValueError(
            f"no episode of {src.path} has a {by} within {return_range} of the best {best:g} "
            f"(baseline {baseline:g})"
        )
    rule = {"top_k": top_k} if top_k is not None else {"return_range": list(return_range), "baseline": baseline}
    metadata = {
        **src.metadata,
        "curated_from": str(src.path.resolve()),
        "selection": {
            "by": by,
            **rule,
            "best_return": float(info_returns(src.infos, by).max()),
            "kept": len(kept),
            "of": len(src),
            "mode": mode,
        },
    }
    folder = EpisodeFolder(out, create=True, metadata=metadata)
    for info in kept:
        folder.add_file(src.path / info.file, mode=mode, update_index=False)
    folder.write_index()
    return folder
