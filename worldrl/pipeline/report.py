"""The one-page Markdown report of a pipeline run and the closing "where everything is" lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worldrl.pipeline.stages import PipelineRun

REPORT_FILE = "REPORT.md"
LOCATIONS = {
    "TensorBoard logs": ("oracle/tb", "tokenizer/tb", "video/tb", "report/tb", "agent/tb"),
    "checkpoints": ("oracle/oracle.zip", "tokenizer/tokenizer", "video/video_model", "agent/agent.pt"),
    "datasets": ("data/oracle", "data/expert", "data/random"),
}


def plus_minus(entry: dict[str, float]) -> str:
    """``mean ± std`` with one decimal."""
    return f"{entry['mean']:.1f} ± {entry['std']:.1f}"


def number(value: float | None, spec: str = ".3f") -> str:
    """``value`` formatted, or ``undefined`` for None (an AUROC or correlation that has no value)."""
    return "undefined" if value is None else format(value, spec)


def gap_closed(evaluation: dict[str, Any]) -> float:
    """(agent - random) / (oracle - random) of the mean task returns."""
    low, high = evaluation["random"]["mean"], evaluation["oracle"]["mean"]
    return (evaluation["agent"]["mean"] - low) / (high - low) if high != low else float("nan")


def stage_table(results: dict[str, dict[str, Any]]) -> list[str]:
    rows = ["| stage | seconds |", "| --- | ---: |"]
    rows += [f"| {name} | {summary.get('seconds', 0):.0f} |" for name, summary in results.items()]
    rows.append(f"| total | {sum(s.get('seconds', 0) for s in results.values()):.0f} |")
    return rows


def markdown(run: PipelineRun) -> str:
    """The report's text: returns, reward quality, model quality, figures, stage times and file locations."""
    r, config = run.results, run.config
    ev, rep, tok, vid = r["evaluate"], r["viper-report"], r["train-tokenizer"], r["train-video-model"]
    agent_steps = r["train-agent"]["step"]
    lines = [
        f"# VIPER pipeline on {config['env']}", "",
        f"Task return over {ev['episodes']} evaluation episodes (seeds from {ev['seed']}):", "",
        "| policy | task return |", "| --- | ---: |",
        f"| oracle (SAC on the state, {r['train-oracle']['steps']} steps) | {plus_minus(ev['oracle'])} |",
        f"| agent ({agent_steps} env steps on the VIPER reward alone) | {plus_minus(ev['agent'])} |",
        f"| random policy | {plus_minus(ev['random'])} |", "",
        f"The agent closed {gap_closed(ev):.0%} of the gap between the random policy's return and the oracle's "
        "(negative: below the random policy).", "",
        "The agent never sees the task reward: it learns from the log-likelihood of its frames under the video "
        "model. Short CPU budgets train every model far less than the paper (Tables E.1-E.4), so the agent's "
        "return is what this budget achieves, not what VIPER achieves.", "",
        "## VIPER reward", "",
        f"Expert ({rep['groups']['expert']['episodes']} episodes) vs random "
        f"({rep['groups']['random']['episodes']}) episodes, AUROC by mean reward per step "
        f"{number(rep['auroc']['mean_per_step'])}, by VIPER return {number(rep['auroc']['return'])}; "
        f"Spearman correlation of VIPER and task return {number(rep['spearman']['mean_per_step'])} (per step), "
        f"{number(rep['spearman']['return'])} (return).", "",
        *(f"![{name}](report/{name})" for name in rep["figures"]), "",
        "## Models", "",
        f"- Tokenizer: {tok['step']} steps, PSNR {tok['val_psnr']:.1f} dB, SSIM {tok['val_ssim']:.3f}, codebook "
        f"usage {tok['val_usage']:.0%} ({tok['eval_split']} split).",
        f"- Video model: {vid['step']} steps, {vid['val_bits_per_code']:.2f} bits per code, "
        f"{vid['val_frame_log_likelihood']:.1f} nats per frame ({vid['eval_split']} split).",
        f"- Data (episodes cut at {config['data'].get('max_episode_steps') or 'the full'} steps): "
        f"{r['collect-oracle']['episodes']} oracle episodes (return {r['collect-oracle']['return_mean']:.1f}), "
        f"top {r['curate']['episodes']} kept as expert videos, {r['collect-random']['episodes']} random episodes "
        f"(return {r['collect-random']['return_mean']:.1f}).", "",
        "## Stages", "", *stage_table(r), "",
        "## Files", "",
        *(f"- {kind}: {', '.join(f'`{p}`' for p in paths)}" for kind, paths in LOCATIONS.items()),
        "- stage summaries: `stages/*.json`; VIPER report: `report/report.json`", "",
    ]
    return "\n".join(lines)


def write_report(run: PipelineRun) -> Path:
    path = run.path(REPORT_FILE)
    path.write_text(markdown(run))
    return path


def where_everything_is(run: PipelineRun) -> str:
    """The closing lines: the report, TensorBoard and the checkpoints, as paths under the run folder."""
    out = run.out
    return "\n".join([
        f"report:      {out / REPORT_FILE} (figures in {out / 'report'})",
        f"TensorBoard: tensorboard --logdir {out}",
        f"checkpoints: {', '.join(str(out / p) for p in LOCATIONS['checkpoints'])}",
        f"datasets:    {', '.join(str(out / p) for p in LOCATIONS['datasets'])}",
    ])
