"""VIPER diagnostics: does the likelihood reward tell expert behaviour from worse, and track the task reward?

Every episode of an expert folder and of other folders (policies of graded
quality, each labelled by its folder name) is scored with
:meth:`~worldrl.wrappers.viper.VIPERScorer.relabel`: per agent step
``ln p(x_t | context)`` in nats, per episode the VIPER return (their sum) and
its mean per step (episodes may differ in length). :func:`viper_report`
then gives

1. reward curves (VIPER, fig. 6.5): per group, the mean and a +-1 std band of
   the per-step VIPER and task rewards over time;
2. AUROC of the expert group against each other group and against all of
   them, by VIPER return and by mean per step: the chance that a random expert
   episode scores above a random other one (ties count half);
3. Spearman's rank correlation of VIPER return (and mean per step) with the
   task return over all episodes, and per-group means;
4. per-code heat-maps (App. E.6): ``-ln p`` of each code, nearest-upsampled
   onto its frame, for an expert and a non-expert episode on one colour scale
   (brighter = less likely);

and writes ``report.json``, PNGs and TensorBoard logs (``tb/``) into ``out``.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldrl.atomic import atomic_write, write_json_atomic
from worldrl.data.folder import EpisodeFolder
from worldrl.wrappers.viper import VIPERScorer

EXPERT = "expert"
SCORES = ("return", "mean_per_step")
"""Episode statistics that AUROC and Spearman compare: the VIPER return and its mean per step."""
REPORT_FILE = "report.json"
TENSORBOARD_DIR = "tb"
OVERLAY_ALPHA = 0.6


@dataclass
class ScoredEpisode:
    """One episode's per-step VIPER log-likelihoods and task rewards (steps 1..T)."""

    group: str
    index: int
    file: str
    viper: np.ndarray
    task: np.ndarray

    @property
    def length(self) -> int:
        return len(self.viper)

    @property
    def task_return(self) -> float:
        return float(np.sum(self.task, dtype=np.float64))

    def score(self, kind: str) -> float:
        """The VIPER return (``"return"``) or its mean per step (``"mean_per_step"``)."""
        total = float(np.sum(self.viper, dtype=np.float64))
        return total if kind == "return" else total / max(self.length, 1)


# Statistics -------------------------------------------------------------------------------------------------------
def average_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, tied values sharing their mean rank (as ``scipy.stats.rankdata``)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return ranks


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(a positive scores above a negative), ties counting half: Mann-Whitney's U over ``n_pos * n_neg``."""
    positive, negative = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if not len(positive) or not len(negative):
        raise ValueError(f"AUROC needs scores in both groups, got {len(positive)} and {len(negative)}")
    ranks = average_ranks(np.concatenate([positive, negative]))[: len(positive)]
    u = ranks.sum() - len(positive) * (len(positive) + 1) / 2
    return float(u / (len(positive) * len(negative)))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's of the average ranks (as ``scipy.stats.spearmanr``).

    NaN when either input is constant, where the correlation is undefined.
    """
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"Spearman needs two sequences of equal length >= 2, got {len(x)} and {len(y)}")
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    norm = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry / norm) if norm > 0 else math.nan


def step_curve(rows: Sequence[np.ndarray]) -> dict[str, list]:
    """Mean, std and number of episodes at each step of rows of different lengths (ended episodes drop out)."""
    padded = np.full((len(rows), max(len(row) for row in rows)), np.nan)
    for i, row in enumerate(rows):
        padded[i, : len(row)] = row
    return {
        "mean": np.nanmean(padded, 0).tolist(),
        "std": np.nanstd(padded, 0).tolist(),
        "count": (~np.isnan(padded)).sum(0).tolist(),
    }


def finite_or_none(value: float) -> float | None:
    """``value``, or None where it is NaN or infinite (JSON has neither)."""
    return value if math.isfinite(value) else None


def group_summary(episodes: Sequence[ScoredEpisode]) -> dict[str, float]:
    returns = [e.score("return") for e in episodes]
    return {
        "episodes": len(episodes),
        "mean_length": float(np.mean([e.length for e in episodes])),
        "mean_task_return": float(np.mean([e.task_return for e in episodes])),
        "mean_viper_return": float(np.mean(returns)),
        "std_viper_return": float(np.std(returns)),
        "mean_viper_per_step": float(np.mean([e.score("mean_per_step") for e in episodes])),
    }


def separation(episodes: Sequence[ScoredEpisode], labels: Sequence[str]) -> dict[str, dict]:
    """AUROC of the expert episodes against each other group and against all others, per episode score."""
    out = {}
    for kind in SCORES:
        expert = [e.score(kind) for e in episodes if e.group == EXPERT]
        groups = {label: auroc(expert, [e.score(kind) for e in episodes if e.group == label]) for label in labels}
        out[kind] = {"groups": groups, "all_others": auroc(expert, [e.score(kind) for e in episodes
                                                                  if e.group != EXPERT])}
    return out


def rank_correlation(episodes: Sequence[ScoredEpisode]) -> dict[str, float | None]:
    """Spearman's correlation of each episode score with the task return, over all episodes."""
    task = [e.task_return for e in episodes]
    return {kind: finite_or_none(spearman([e.score(kind) for e in episodes], task)) for kind in SCORES}


# Folders and scoring ----------------------------------------------------------------------------------------------
def open_folder(path: str | Path) -> EpisodeFolder:
    """The dataset folder at ``path``; a clear error when it is missing or holds no episodes."""
    folder = EpisodeFolder(path)
    if not len(folder):
        raise ValueError(f"dataset folder {folder.path} holds no episodes")
    return folder


def group_labels(others: Sequence[str | Path]) -> list[str]:
    """Each other folder's name, made unique (and never ``expert``) by a numeric suffix."""
    taken, labels = {EXPERT}, []
    for path in others:
        base = Path(path).resolve().name or "other"
        label, suffix = base, 2
        while label in taken:
            label, suffix = f"{base}-{suffix}", suffix + 1
        taken.add(label)
        labels.append(label)
    return labels


def spread(count: int, limit: int | None) -> list[int]:
    """``limit`` indices spread evenly over ``range(count)`` (all of them when ``limit`` is None or larger).

    Evenly spread rather than the first ones, because curated folders are sorted best first.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"max_episodes must be >= 1, got {limit}")
    if limit is None or limit >= count:
        return list(range(count))
    return np.linspace(0, count - 1, limit).round().astype(int).tolist()


def score_folder(scorer: VIPERScorer, folder: EpisodeFolder, group: str, indices: Sequence[int],
                 bar: Any = None) -> list[ScoredEpisode]:
    """Relabel episodes ``indices`` of ``folder``; task rewards from ``task_reward`` (else ``reward``)."""
    scored = []
    for index in indices:
        episode = folder[index]
        viper = scorer.relabel(episode["image"])[1:]
        task = episode["task_reward" if "task_reward" in episode else "reward"][1:].astype(np.float64)
        scored.append(ScoredEpisode(group, index, folder.infos[index].file, viper, task))
        if bar is not None:
            bar.update(1)
    return scored


def check_frames(folders: dict[str, EpisodeFolder], frame_shape: Sequence[int]) -> None:
    for folder in folders.values():
        if tuple(folder.infos[0].image_shape) != tuple(frame_shape):
            raise ValueError(f"{folder.path} holds frames of shape {tuple(folder.infos[0].image_shape)} but the "
                             f"video model's tokenizer takes {tuple(frame_shape)}")


# Heat-maps --------------------------------------------------------------------------------------------------------
@torch.no_grad()
def code_surprise(scorer: VIPERScorer, images: np.ndarray) -> np.ndarray:
    """``-ln p`` of every code of every frame of one episode, ``[T+1, h, w]`` in nats (frame 0 has no context)."""
    codes = torch.cat([scorer.encode(images[i : i + 256]) for i in range(0, len(images), 256)])
    task = None if scorer.task is None else scorer.task[:1]
    return -scorer.model.log_prob(codes[None], task, per_code=True).code[0].double().cpu().numpy()


def upsample_nearest(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[..., h, w]`` -> ``[..., height, width]``: each code's value over the pixels it covers."""
    h, w = grid.shape[-2:]
    rows, cols = np.arange(height) * h // height, np.arange(width) * w // width
    return grid[..., rows[:, None], cols]


def heatmap_steps(lengths: Sequence[int], count: int) -> list[int]:
    """``count`` agent steps spread over ``1..min(lengths)``, the same for every episode shown."""
    last = min(lengths)
    if last < 1 or count < 1:
        return []
    return sorted(set(np.linspace(1, last, min(count, last)).round().astype(int).tolist()))


def heatmap_panel(scorer: VIPERScorer, folder: EpisodeFolder, episode: ScoredEpisode,
                  steps: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[N, H, W, C]`` at ``steps`` of ``episode`` and their per-code ``-ln p`` upsampled to ``[N, H, W]``."""
    images = folder[episode.index]["image"]
    surprise = code_surprise(scorer, images)[list(steps)]
    return images[list(steps)], upsample_nearest(surprise, *images.shape[1:3])


# Figures ----------------------------------------------------------------------------------------------------------
def new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def curves_figure(curves: dict[str, dict[str, dict[str, list]]]):
    """Fig. 6.5 left: mean per-step VIPER and task reward of each group over time, with +-1 std bands."""
    figure = new_figure(10, 3.6)
    axes = figure.subplots(1, 2)
    for ax, key, title in zip(axes, ("viper", "task"), ("VIPER reward ln p (nats)", "task reward")):
        for label, curve in curves.items():
            mean, std = np.asarray(curve[key]["mean"]), np.asarray(curve[key]["std"])
            steps = np.arange(1, len(mean) + 1)
            ax.plot(steps, mean, label=label)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
        ax.set(title=title, xlabel="agent step")
    axes[0].legend()
    return figure


def returns_figure(episodes: Sequence[ScoredEpisode], correlation: float | None):
    """Fig. 6.5 right: VIPER return against task return, one point per episode."""
    figure = new_figure(5, 4)
    ax = figure.subplots()
    for label in dict.fromkeys(e.group for e in episodes):
        group = [e for e in episodes if e.group == label]
        ax.scatter([e.task_return for e in group], [e.score("return") for e in group], label=label, s=16)
    rho = "undefined" if correlation is None else f"{correlation:.3f}"
    ax.set(xlabel="task return", ylabel="VIPER return (nats)", title=f"Spearman {rho}")
    ax.legend()
    return figure


def heatmap_figure(panels: Sequence[tuple[str, np.ndarray, np.ndarray]], steps: Sequence[int], vmax: float):
    """One row per step; per episode the frame beside the frame under its per-code ``-ln p`` (shared scale)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    norm = Normalize(0.0, vmax)
    figure = new_figure(2.3 * len(panels) + 1.0, 1.3 * len(steps) + 0.2)
    axes = figure.subplots(len(steps), 2 * len(panels), squeeze=False)
    for column, (title, frames, surprise) in enumerate(panels):
        for row, step in enumerate(steps):
            frame = frames[row].squeeze(-1) if frames.shape[-1] == 1 else frames[row]
            left, right = axes[row, 2 * column], axes[row, 2 * column + 1]
            left.imshow(frame, cmap="gray", interpolation="nearest")
            right.imshow(frame, cmap="gray", interpolation="nearest")
            right.imshow(surprise[row], cmap="inferno", norm=norm, alpha=OVERLAY_ALPHA, interpolation="nearest")
            left.set_title(f"{title} t={step}", fontsize=8)
            right.set_title("-ln p per code", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    figure.colorbar(ScalarMappable(norm, "inferno"), ax=axes, label="-ln p (nats per code)", shrink=0.8)
    return figure


def save_figure(figure, path: Path) -> np.ndarray:
    """Write ``figure`` as a PNG (atomically) and return its pixels ``[H, W, 3]`` uint8 for TensorBoard."""
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    data = buffer.getvalue()
    atomic_write(path, lambda file: file.write(data))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def file_label(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", label)


# TensorBoard ------------------------------------------------------------------------------------------------------
def scalars(report: dict[str, Any]) -> dict[str, float]:
    """The report's scalars by TensorBoard tag (undefined ones left out)."""
    out = {}
    for kind, entry in report["auroc"].items():
        out.update({f"auroc/{kind}/expert_vs_{label}": value for label, value in entry["groups"].items()})
        out[f"auroc/{kind}/expert_vs_all_others"] = entry["all_others"]
    out.update({f"spearman/{kind}": value for kind, value in report["spearman"].items()})
    for label, summary in report["groups"].items():
        out.update({f"groups/{label}/{key}": value for key, value in summary.items() if key != "episodes"})
    return {tag: value for tag, value in out.items() if value is not None}


def write_tensorboard(directory: Path, report: dict[str, Any], images: dict[str, np.ndarray]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(directory))
    try:
        for tag, value in scalars(report).items():
            writer.add_scalar(tag, value, 0)
        for tag, image in images.items():
            writer.add_image(tag, image, 0, dataformats="HWC")
    finally:
        writer.close()


# The report -------------------------------------------------------------------------------------------------------
def viper_report(
    video_model: str | Path,
    expert: str | Path,
    others: Sequence[str | Path],
    out: str | Path,
    *,
    max_episodes: int | None = None,
    task_id: int | None = None,
    device: str | torch.device = "auto",
    heatmaps: int = 4,
    mask_scoreboard: str | None = None,
    command: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score the folders, write ``report.json``, PNGs and ``tb/`` into ``out``, and return the report.

    ``max_episodes`` caps the episodes scored per folder (spread over it);
    ``heatmaps`` is the number of frames per heat-map grid (0: none);
    ``task_id`` and ``mask_scoreboard`` go to :class:`VIPERScorer`.
    """
    from tqdm import tqdm

    if not others:
        raise ValueError("give at least one other dataset folder to compare the expert folder with")
    labels = group_labels(others)
    folders = {EXPERT: open_folder(expert), **{label: open_folder(p) for label, p in zip(labels, others)}}
    frame_shape = folders[EXPERT].infos[0].image_shape
    scorer = VIPERScorer(video_model, frame_shape, 1, task_id=task_id, mask_scoreboard=mask_scoreboard, device=device)
    check_frames(folders, scorer.tokenizer.frame_shape)
    chosen = {label: spread(len(folder), max_episodes) for label, folder in folders.items()}
    with tqdm(total=sum(map(len, chosen.values())), desc="viper-report", unit="ep", disable=not progress) as bar:
        scored = {label: score_folder(scorer, folders[label], label, chosen[label], bar) for label in folders}
    episodes = [e for group in scored.values() for e in group]
    out = Path(out)
    report = {
        "command": command,
        "video_model": str(video_model),
        "device": str(scorer.device),
        "task_id": task_id,
        "max_episodes": max_episodes,
        "out": str(out),
        "folders": {label: str(folder.path) for label, folder in folders.items()},
        "episode_counts": {label: {"scored": len(chosen[label]), "in_folder": len(folder)}
                           for label, folder in folders.items()},
        "groups": {label: group_summary(group) for label, group in scored.items()},
        "auroc": separation(episodes, labels),
        "spearman": rank_correlation(episodes),
        "curves": {label: {key: step_curve([getattr(e, key) for e in group]) for key in ("viper", "task")}
                   for label, group in scored.items()},
        "episodes": [{"group": e.group, "file": e.file, "length": e.length, "task_return": e.task_return,
                      "viper_return": e.score("return"), "viper_mean_per_step": e.score("mean_per_step")}
                     for e in episodes],
        "tensorboard": TENSORBOARD_DIR,
    }
    images = {
        "figures/reward_curves": save_figure(curves_figure(report["curves"]), out / "reward_curves.png"),
        "figures/returns": save_figure(returns_figure(episodes, report["spearman"]["return"]), out / "returns.png"),
    }
    report["heatmaps"] = write_heatmaps(scorer, folders, scored, heatmaps, out, images)
    report["figures"] = ["reward_curves.png", "returns.png", *(h["file"] for h in report["heatmaps"].values())]
    write_tensorboard(out / TENSORBOARD_DIR, report, images)
    write_json_atomic(out / REPORT_FILE, report)
    return report


def write_heatmaps(scorer: VIPERScorer, folders: dict[str, EpisodeFolder], scored: dict[str, list[ScoredEpisode]],
                   count: int, out: Path, images: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """One PNG per other group: ``count`` frames of its first scored episode beside the expert's first one."""
    written = {}
    expert = scored[EXPERT][0]
    for label, group in scored.items():
        steps = [] if label == EXPERT else heatmap_steps([expert.length, group[0].length], count)
        if not steps:
            continue
        expert_frames, expert_surprise = heatmap_panel(scorer, folders[EXPERT], expert, steps)
        frames, surprise = heatmap_panel(scorer, folders[label], group[0], steps)
        vmax = float(max(expert_surprise.max(), surprise.max()))
        figure = heatmap_figure([(EXPERT, expert_frames, expert_surprise), (label, frames, surprise)], steps, vmax)
        name = f"heatmaps_{file_label(label)}.png"
        images[f"heatmaps/{label}"] = save_figure(figure, out / name)
        written[label] = {"file": name, "expert_episode": expert.file, "episode": group[0].file, "steps": steps,
                          "max_surprise": vmax, "mean_surprise_expert": float(expert_surprise.mean()),
                          "mean_surprise": float(surprise.mean())}
    return written


def format_report(report: dict[str, Any]) -> str:
    """A few lines for the terminal: per-group means, AUROC, Spearman and what was written."""
    lines = [f"{'group':<16}{'episodes':>9}{'task return':>13}{'VIPER return':>14}{'VIPER/step':>12}"]
    for label, group in report["groups"].items():
        lines.append(f"{label:<16}{group['episodes']:>9}{group['mean_task_return']:>13.2f}"
                     f"{group['mean_viper_return']:>14.1f}{group['mean_viper_per_step']:>12.2f}")
    for kind, entry in report["auroc"].items():
        pairs = [*entry["groups"].items(), ("all others", entry["all_others"])]
        lines.append(f"AUROC by {kind.replace('_', ' ')}: "
                     + ", ".join(f"expert vs {label} {value:.3f}" for label, value in pairs))
    rho = ", ".join(f"{kind.replace('_', ' ')} {'undefined' if v is None else f'{v:.3f}'}"
                    for kind, v in report["spearman"].items())
    lines.append(f"Spearman(VIPER, task return) over {len(report['episodes'])} episodes: {rho}")
    out = Path(report["out"])
    lines.append(f"wrote {out / REPORT_FILE}, {len(report['figures'])} PNGs and TensorBoard logs in "
                 f"{out / report['tensorboard']}")
    return "\n".join(lines)
