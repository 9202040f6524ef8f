"""Pipelines of stages that call the library (no subprocesses) and skip what is done: ``worldrl demo``, ``pipeline``.

:mod:`.stages` has the :class:`Stage` abstraction and the runner,
:mod:`.viper` the stages of VIPER's pipeline on one task, :mod:`.suite` the
pipeline on several tasks of a suite with one task-conditioned video model,
:mod:`.report` the one-page Markdown report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from worldrl.pipeline.report import write_report
from worldrl.pipeline.stages import PipelineRun, Stage, merge, run_stages
from worldrl.pipeline.suite import load_suite_config, run_suite, suite_stages
from worldrl.pipeline.viper import load_pipeline_config, viper_stages

__all__ = ["PipelineRun", "Stage", "load_pipeline_config", "load_suite_config", "merge", "run_pipeline", "run_stages",
           "run_suite", "suite_stages", "viper_stages"]


def run_pipeline(out: str | Path, config: dict[str, Any], stages: Sequence[Stage] | None = None,
                 progress: bool = True, log: Callable[[str], None] = print) -> PipelineRun:
    """Run (or resume) ``stages`` (default: :func:`viper_stages`) in ``out`` and write ``REPORT.md``.

    ``config["threads"]`` sets torch's threads: 1 by default, since on a busy
    machine more threads than free cores make small models many times slower.
    """
    import torch

    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    run = PipelineRun(Path(out), config, progress)
    run_stages(viper_stages() if stages is None else stages, run, log)
    write_report(run)
    return run
