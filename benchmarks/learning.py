"""What the learning benchmarks share: run a ``train-agent`` config, read its evaluation curve, plot curves.

A run goes through :func:`worldrl.training.agent.train_agent` in its own
folder, so an interrupted benchmark resumes where it stopped (the trainer's
exact resume) and a finished run is only read back. The curve is the
``eval/task_return`` scalars the trainer writes to TensorBoard at every
``train.eval_every`` steps: the deterministic policy's mean task return, at
agent steps converted to env frames (``action_repeat`` physics steps each).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any


def fill_defaults(args: Any, quick: dict[str, Any], full: dict[str, Any]) -> Any:
    """Set every argument left ``None`` to its ``--quick`` or full-budget default; returns ``args``."""
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def eval_curve(run: Path, frames_per_step: int) -> list[dict[str, float]]:
    """``[{"frames", "step", "task_return", "task_return_std"}]`` from the run's TensorBoard evaluation scalars."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # Runs resumed before the trainer purged from the step after its checkpoint (not the checkpoint's own)
    # would lose the evaluation at the checkpoint; without the purge, a step evaluated twice keeps the last.
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    events.Reload()
    if "eval/task_return" not in events.Tags()["scalars"]:
        return []
    stds = {e.step: e.value for e in events.Scalars("eval/task_return_std")}
    points = {e.step: e for e in events.Scalars("eval/task_return")}  # a resumed run may log a step twice
    return [{"frames": step * frames_per_step, "step": step, "task_return": points[step].value,
             "task_return_std": stds.get(step, float("nan"))} for step in sorted(points)]


def train_run(config: Mapping[str, Any], out: Path, frames_per_step: int, device: str = "auto") -> dict[str, Any]:
    """Train (or resume, or just read) the run in ``out``; its curve, final metrics and wall-clock seconds.

    ``timing.json`` beside the run marks it finished. Wall-clock seconds are
    :func:`session_seconds`, so a session killed before it finished counts too.
    """
    from worldrl.training.agent import train_agent

    timing_file = out / "timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    if not timing.get("finished"):
        metrics = train_agent(config, out, device=device)
        timing = {"finished": True, "metrics": metrics}
        out.mkdir(parents=True, exist_ok=True)
        timing_file.write_text(json.dumps(timing, indent=1) + "\n")
    wall_s, sessions = session_seconds(out)
    return {"curve": eval_curve(out, frames_per_step), "wall_s": wall_s, "sessions": sessions,
            "final": timing["metrics"]}


def session_seconds(run: Path) -> tuple[float, int]:
    """(wall-clock seconds, sessions) of a run: each session's first to last TensorBoard event, summed.

    Every session (the first and each resume) writes its own event file, so
    a session killed with SIGKILL still counts up to its last logged event;
    the time between sessions does not count.
    """
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    total, sessions = 0.0, 0
    for path in sorted((run / "tb").glob("events.out.tfevents.*")):
        times = [event.wall_time for event in EventFileLoader(str(path)).Load()]
        if times:
            total, sessions = total + max(times) - min(times), sessions + 1
    return total, sessions


def finished_runs(folder: Path, pattern: re.Pattern, names: Collection[str], seed: int
                  ) -> dict[tuple[str, str | None], Path]:
    """(name, tag) -> the finished run (``timing.json`` beside it) with the largest budget of that name and tag.

    ``pattern`` matches a whole folder name with the groups ``name`` (one of
    ``names``), ``budget``, ``seed`` (only ``seed`` counts) and ``tag``
    (optional): each run folder of another invocation's budget or variant.
    """
    best: dict[tuple[str, str | None], tuple[int, Path]] = {}
    for path in folder.iterdir() if folder.is_dir() else ():
        match = pattern.fullmatch(path.name)
        if not match or match["name"] not in names or int(match["seed"]) != seed:
            continue
        key, budget = (match["name"], match["tag"]), int(match["budget"])
        if (path / "timing.json").exists() and (key not in best or budget > best[key][0]):
            best[key] = (budget, path)
    return {key: best[key][1] for key in sorted(best, key=lambda key: (key[0], key[1] or ""))}


def carry_over(result_file: Path, runs: dict[str, Any]) -> list[str]:
    """Add to ``runs`` each run of the earlier ``result_file`` that is not among them; returns their names.

    Run folders live under the git-ignored ``runs/``, so a fresh checkout (or
    another machine) holds none of the runs behind the committed JSON.
    Rewriting it from the local runs alone would drop measured results; a
    carried run keeps its curve and config as measured, with
    ``carried_from`` (the date of the result it came from) and
    ``measured_on`` (that result's machine). A run finished here replaces the
    carried one of the same name.
    """
    if not result_file.is_file():
        return []
    previous = json.loads(result_file.read_text())
    carried = []
    for name, run in previous.get("runs", {}).items():
        if name not in runs:
            runs[name] = {**run, "carried_from": run.get("carried_from", previous.get("date")),
                          "measured_on": run.get("measured_on", previous.get("machine"))}
            carried.append(name)
    return carried


def first_reaching(curve: list[dict[str, float]], target: float) -> int | None:
    """The frames of the first evaluation whose mean task return is at least ``target`` (None: never)."""
    return next((point["frames"] for point in curve if point["task_return"] >= target), None)


LEGEND_INSIDE_MAX = 6
"""Curves a panel's legend may list inside the axes; more go beside them."""


def plot_curves(curves: Mapping[str, list[dict[str, float]]], path: Path, title: str,
                lines: Mapping[str, float] = {}, xlabel: str = "env frames",
                panel: Callable[[str], str] | None = None) -> None:
    """Mean evaluation task return against ``frames`` (labelled ``xlabel``), one line per run, with horizontal
    reference ``lines``. ``panel`` maps a run or line name to its subplot (e.g. the task, whose returns have
    their own scale); by default all share one."""
    from matplotlib.figure import Figure

    panel = panel or (lambda name: title)
    names = list(dict.fromkeys(panel(name) for name in curves))
    long_legend = {panel_name: sum(panel(name) == panel_name for name in curves) > LEGEND_INSIDE_MAX
                   for panel_name in names}
    wide = any(long_legend.values())
    figure = Figure(figsize=((9 if wide else 6) * len(names), 4 + 2 * wide))
    for index, panel_name in enumerate(names):
        axes = figure.add_subplot(1, len(names), index + 1)
        for name, curve in curves.items():
            if curve and panel(name) == panel_name:
                axes.plot([p["frames"] for p in curve], [p["task_return"] for p in curve], marker="o", label=name)
        for name, value in lines.items():
            if panel(name) != panel_name:
                continue
            axes.axhline(value, linestyle="--", linewidth=1, color="gray")
            axes.annotate(name, (0, value), xycoords=("axes fraction", "data"), textcoords="offset points",
                          xytext=(2, 2), fontsize=8, color="gray")
        axes.set_xlabel(xlabel)
        axes.set_ylabel("evaluation task return")
        axes.set_title(panel_name)
        if long_legend[panel_name]:  # inside, a legend this long would hide the curves
            axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
        else:
            axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
