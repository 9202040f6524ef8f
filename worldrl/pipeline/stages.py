"""Stages that know their outputs: a pipeline skips a stage whose outputs exist and resumes the rest.

A :class:`Stage` is a named function of the :class:`PipelineRun` that returns
a small JSON summary. The runner writes that summary to
``<out>/stages/<name>.json`` last, so the marker exists only when the stage
finished; a stage is done when the marker and its declared outputs exist.
An interrupted stage runs again and its library call resumes (trainers from
their checkpoints, collection up to its episode count).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldrl.atomic import write_json_atomic

STAGES_DIR = "stages"


@dataclass
class PipelineRun:
    """The run folder, the resolved pipeline config and the summaries of the stages done so far."""

    out: Path
    config: dict[str, Any]
    progress: bool = True
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)


@dataclass
class Stage:
    """One step of a pipeline: ``run(pipeline_run)`` writes ``outputs`` (relative to the run folder)."""

    name: str
    description: str
    run: Callable[[PipelineRun], dict[str, Any]]
    outputs: Sequence[str] = ()

    def marker(self, run: PipelineRun) -> Path:
        return run.path(STAGES_DIR, f"{self.name}.json")

    def done(self, run: PipelineRun) -> bool:
        """True when the stage finished before and its outputs are still there."""
        return self.marker(run).is_file() and all(run.path(p).exists() for p in self.outputs)


def run_stages(stages: Sequence[Stage], run: PipelineRun, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the stages in order, skipping those done; return every stage's summary (also in ``run.results``)."""
    for index, stage in enumerate(stages, 1):
        head = f"[{index}/{len(stages)}] {stage.name}: {stage.description}"
        if stage.done(run):
            run.results[stage.name] = json.loads(stage.marker(run).read_text())
            log(f"{head} -- done before, skipped ({stage.marker(run)})")
            continue
        log(f"{head} ...")
        start = time.monotonic()
        summary = {**stage.run(run), "seconds": round(time.monotonic() - start, 1)}
        write_json_atomic(stage.marker(run), summary)
        run.results[stage.name] = summary
        log(f"[{index}/{len(stages)}] {stage.name} finished in {summary['seconds']:.0f} s")
    return run.results


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, mappings recursively (neither is modified)."""
    merged = dict(base)
    for key, value in update.items():
        old = merged.get(key)
        merged[key] = merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return merged
