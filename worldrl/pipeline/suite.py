"""VIPER's pipeline on several tasks of one suite with one task-conditioned video model: ``worldrl pipeline``.

VIPER trains a single tokenizer and a single video model per suite (DMC,
Atari, RLBench), conditioned on a task id, and one agent per task on that
task's VIPER reward. The stages reuse the single-task functions of
:mod:`.viper`, each task's on a :class:`PipelineRun` rooted at
``tasks/<task>/`` with the task's env (:func:`task_run`):

1. per task: ``<task>/oracle`` (DMC: SAC on the state; Atari: the scripted RAM
   oracle, evaluated; RLBench: motion-planner demos, which need CoppeliaSim),
   ``<task>/collect-oracle``, ``<task>/collect-random``, ``<task>/curate``;
2. ``train-tokenizer`` on every task's expert videos;
3. ``train-video-model`` with ``model.num_tasks = len(tasks)``, task ``i``'s
   expert folder labelled ``i`` (``train.task_ids``);
4. per task: ``<task>/viper-report`` and ``<task>/train-agent`` with the reward
   conditioned on task ``i`` (``env.viper.task_id``), ``<task>/evaluate``;
5. ``REPORT.md``: one row per task.

Presets are ``configs/pipeline/suite_<suite>_<preset>.yaml``; a stage whose
outputs exist is skipped, so running again resumes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from worldrl.config import ConfigError, load_config
from worldrl.pipeline.report import REPORT_FILE, gap_closed, number, plus_minus, stage_table
from worldrl.pipeline.stages import PipelineRun, Stage, merge, run_stages
from worldrl.pipeline.viper import (
    REPO_ROOT,
    SECTIONS,
    agent_config,
    check_sections,
    collect_oracle,
    collect_random,
    curate_expert,
    evaluate,
    report,
    train_agent,
    train_oracle,
    train_tokenizer,
    train_video_model,
)

SUITES = ("dmc", "atari", "rlbench")
PRESETS = ("paper", "small")
SUITE_SECTIONS = ("suite", "tasks", *(s for s in SECTIONS if s != "env"))
TASKS_DIR = "tasks"
VIDEO_MODEL = ("video", "video_model")
TaskStep = Callable[[PipelineRun, PipelineRun], dict[str, Any]]
"""A per-task stage body: ``step(run, task_view)`` with the suite's run and the task's (:func:`task_run`)."""


def preset_path(suite: str, preset: str) -> Path:
    """``configs/pipeline/suite_<suite>_<preset>.yaml`` in the worldrl checkout."""
    return REPO_ROOT / "configs" / "pipeline" / f"suite_{suite}_{preset}.yaml"


def env_id(suite: str, task: str) -> str:
    """The registered env id of ``task`` in ``suite`` (``worldrl/dmc-cartpole_balance-v0``)."""
    return f"worldrl/{suite}-{task}-v0"


def suite_tasks(suite: str) -> list[str]:
    """Every task registered for ``suite`` (Atari: every installed game)."""
    import gymnasium as gym

    import worldrl.envs  # noqa: F401  (registers the ids)

    prefix = f"worldrl/{suite}-"
    return sorted(name[len(prefix):-3] for name in gym.registry if name.startswith(prefix) and name.endswith("-v0"))


def check_tasks(suite: str, tasks: Sequence[str]) -> list[str]:
    """``tasks`` as a list; a :class:`ConfigError` for none, duplicates, unknown tasks or Atari games without oracle."""
    tasks = list(tasks)
    if not tasks:
        raise ConfigError(f"no tasks given for the {suite} suite")
    duplicates = sorted({t for t in tasks if tasks.count(t) > 1})
    if duplicates:
        raise ConfigError(f"tasks given more than once: {', '.join(duplicates)}")
    known = suite_tasks(suite)
    for task in tasks:
        if task not in known:
            close = difflib.get_close_matches(task, known, n=5, cutoff=0.5)
            hint = f" Closest: {', '.join(close)}." if close else ""
            listing = "" if suite == "atari" else f" Tasks: {', '.join(known)}."
            raise ConfigError(f"unknown {suite} task {task!r} (no env {env_id(suite, task)}).{hint}{listing}")
    if suite == "atari":
        from worldrl.oracles.atari import ORACLES

        missing = [t for t in tasks if t not in ORACLES]
        if missing:
            raise ConfigError(f"no scripted Atari oracle for {', '.join(missing)}: the suite's expert videos come from "
                              f"the scripted RAM oracles, which exist for {', '.join(sorted(ORACLES))}")
    return tasks


def load_suite_config(suite: str, preset: str = "small", tasks: Sequence[str] | None = None,
                      overrides: Sequence[str] = (), path: str | Path | None = None) -> dict[str, Any]:
    """The suite preset (or the file at ``path``) with ``overrides``, ``tasks`` if given, and ``num_tasks`` set.

    ``video.config.model.num_tasks`` becomes the number of tasks: one video model conditioned on every task.
    """
    if suite not in SUITES:
        raise ConfigError(f"unknown suite {suite!r}; suites: {', '.join(SUITES)}")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    config = check_sections(load_config(path or preset_path(suite, preset), overrides), SUITE_SECTIONS)
    if config["suite"] != suite:
        raise ConfigError(f"the preset is for the {config['suite']!r} suite, not {suite!r}")
    config["tasks"] = check_tasks(suite, config["tasks"] if tasks is None else tasks)
    config["video"] = merge(config["video"], {"config": {"model": {"num_tasks": len(config["tasks"])}}})
    return config


def task_run(run: PipelineRun, task: str) -> PipelineRun:
    """The run of one task for the single-task stage functions: folder ``tasks/<task>``, the task's env."""
    config = {**run.config, "env": env_id(run.config["suite"], task)}
    return PipelineRun(run.path(TASKS_DIR, task), config, run.progress)


# Oracles of the suites ----------------------------------------------------------------------------------------------
def scripted_oracle(view: PipelineRun) -> dict[str, Any]:
    """Atari: evaluate the game's scripted RAM oracle and write ``oracle/oracle.json`` naming it for the collector."""
    from worldrl.atomic import write_json_atomic
    from worldrl.oracles import evaluate_policy_return

    game = view.config["env"].split("-", 1)[1].rsplit("-v", 1)[0]
    name, cfg = f"scripted:{game}", view.config["oracle"]
    result = evaluate_policy_return(view.config["env"], name, cfg["eval_episodes"], view.config["seed"],
                                    {"obs_type": "state"})
    write_json_atomic(view.path("oracle", "oracle.json"),
                      {"env_id": view.config["env"], "policy": name, "required_obs_type": "pixels+state",
                       "seed": view.config["seed"], "eval": {"episodes": cfg["eval_episodes"], **result}})
    return {"policy": name, "steps": 0, "return_mean": result["mean"], "return_std": result["std"]}


def rlbench_demos(view: PipelineRun) -> dict[str, Any]:
    """RLBench: VIPER's expert videos are motion-planner demos, which need CoppeliaSim, PyRep and RLBench."""
    from worldrl.envs.rlbench import RLBenchUnavailableError, missing_requirements

    missing = missing_requirements()
    if missing:
        raise RLBenchUnavailableError(missing, f"The rlbench suite records {view.config['env']}'s expert videos in "
                                               "the simulator.")
    raise NotImplementedError("recording RLBench motion-planner demos is not implemented yet: collect the demos into "
                              f"{view.path('data', 'oracle')} and {view.path('data', 'random')} with `worldrl collect` "
                              "and run again")


ORACLE_STAGES: dict[str, tuple[str, Callable[[PipelineRun], dict[str, Any]], tuple[str, ...]]] = {
    "dmc": ("SAC task oracle on the state", train_oracle, ("oracle/oracle.zip",)),
    "atari": ("scripted RAM oracle, evaluated", scripted_oracle, ("oracle/oracle.json",)),
    "rlbench": ("motion-planner demos (CoppeliaSim)", rlbench_demos, ("oracle",)),
}


# Stages -------------------------------------------------------------------------------------------------------------
def task_stage(task: str, name: str, description: str, step: TaskStep, outputs: Sequence[str] = ()) -> Stage:
    """Stage ``<task>/<name>``: ``step`` on the suite's run and the task's, outputs under ``tasks/<task>``."""
    return Stage(f"{task}/{name}", f"{task}: {description}", lambda run: step(run, task_run(run, task)),
                 tuple(f"{TASKS_DIR}/{task}/{output}" for output in outputs))


def data_stages(suite: str, task: str) -> list[Stage]:
    """The task's oracle, its oracle and random episodes and its expert videos."""
    description, oracle, outputs = ORACLE_STAGES[suite]
    return [
        task_stage(task, "oracle", description, lambda run, view: oracle(view), outputs),
        task_stage(task, "collect-oracle", "oracle episodes", lambda run, view: collect_oracle(view),
                   ("data/oracle/dataset.json",)),
        task_stage(task, "collect-random", "random-policy episodes", lambda run, view: collect_random(view),
                   ("data/random/dataset.json",)),
        task_stage(task, "curate", "top-k oracle episodes as expert videos", lambda run, view: curate_expert(view),
                   ("data/expert/dataset.json",)),
    ]


def agent_stages(task: str, task_id: int) -> list[Stage]:
    """The task's VIPER report, its agent on the reward conditioned on ``task_id``, and its evaluation."""
    def viper_report(run: PipelineRun, view: PipelineRun) -> dict[str, Any]:
        return {"task_id": task_id, **report(view, run.path(*VIDEO_MODEL), task_id)}

    def agent(run: PipelineRun, view: PipelineRun) -> dict[str, Any]:
        return train_agent(view, agent_config(view, run.path(*VIDEO_MODEL), task_id))

    def evaluation(run: PipelineRun, view: PipelineRun) -> dict[str, Any]:
        return evaluate(view, run.results[f"{task}/oracle"])

    return [
        task_stage(task, "viper-report", "VIPER reward: expert vs random AUROC, correlation", viper_report,
                   ("report/report.json",)),
        task_stage(task, "train-agent", "agent on the task's VIPER reward alone", agent, ("agent/agent.pt",)),
        task_stage(task, "evaluate", "task return: agent vs oracle vs random policy", evaluation),
    ]


def expert_folders(run: PipelineRun) -> list[Path]:
    return [run.path(TASKS_DIR, task, "data", "expert") for task in run.config["tasks"]]


def suite_stages(config: dict[str, Any]) -> list[Stage]:
    """Every stage of the suite's pipeline, in order (see the module docstring)."""
    suite, tasks = config["suite"], config["tasks"]
    shared = [
        Stage("train-tokenizer", f"VQ-GAN on the expert videos of {len(tasks)} tasks",
              lambda run: train_tokenizer(run, expert_folders(run)), ("tokenizer/tokenizer",)),
        Stage("train-video-model", f"VideoGPT prior conditioned on {len(tasks)} tasks",
              lambda run: train_video_model(run, expert_folders(run), range(len(tasks))), ("video/video_model",)),
    ]
    return ([s for task in tasks for s in data_stages(suite, task)] + shared
            + [s for i, task in enumerate(tasks) for s in agent_stages(task, i)])


# Report -------------------------------------------------------------------------------------------------------------
def task_row(run: PipelineRun, task_id: int, task: str) -> str:
    rep, ev = run.results[f"{task}/viper-report"], run.results[f"{task}/evaluate"]
    return (f"| {task} | {task_id} | {rep['groups']['expert']['episodes']} / {rep['groups']['random']['episodes']} "
            f"| {number(rep['auroc']['mean_per_step'])} | {number(rep['spearman']['mean_per_step'])} "
            f"| {plus_minus(ev['agent'])} | {plus_minus(ev['oracle'])} | {plus_minus(ev['random'])} "
            f"| {gap_closed(ev):.0%} |")


def suite_markdown(run: PipelineRun) -> str:
    """The one-page report: a row per task (reward quality, returns), the shared models, stage times, files."""
    r, config, tasks = run.results, run.config, run.config["tasks"]
    tok, vid = r["train-tokenizer"], r["train-video-model"]
    first = tasks[0]
    lines = [
        f"# VIPER pipeline on the {config['suite']} suite: {len(tasks)} tasks, one video model", "",
        f"One tokenizer and one video model conditioned on the task id serve every task; each agent learns from "
        f"its task's VIPER reward alone. Task returns over {r[f'{first}/evaluate']['episodes']} evaluation "
        "episodes; AUROC of expert vs random episodes and Spearman correlation of VIPER and task return, both by "
        "mean reward per step; gap: (agent - random) / (oracle - random).", "",
        "| task | id | expert / random episodes | AUROC | Spearman | agent | oracle | random | gap |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(task_row(run, i, task) for i, task in enumerate(tasks)), "",
        "Budgets short of the paper's (Tables E.1-E.4, preset `paper`) train every model less: the returns are "
        "what the budget achieves, not what VIPER achieves.", "",
        "## Models", "",
        f"- Tokenizer: {tok['step']} steps, PSNR {tok['val_psnr']:.1f} dB, SSIM {tok['val_ssim']:.3f}, codebook "
        f"usage {tok['val_usage']:.0%} ({tok['eval_split']} split).",
        f"- Video model ({len(tasks)} tasks): {vid['step']} steps, {vid['val_bits_per_code']:.2f} bits per code, "
        f"{vid['val_frame_log_likelihood']:.1f} nats per frame ({vid['eval_split']} split).", "",
        "## Stages", "", *stage_table(r), "",
        "## Files", "",
        "- shared: `tokenizer/tokenizer`, `video/video_model`, TensorBoard logs in `tokenizer/tb`, `video/tb`",
        "- per task under `tasks/<task>/`: `oracle/`, `data/{oracle,random,expert}`, `report/` (report.json, "
        "figures, tb), `agent/` (agent.pt, tb)",
        "- stage summaries: `stages/*.json`, `stages/<task>/*.json`", "",
    ]
    return "\n".join(lines)


def write_suite_report(run: PipelineRun) -> Path:
    path = run.path(REPORT_FILE)
    path.write_text(suite_markdown(run))
    return path


def run_suite(out: str | Path, config: dict[str, Any], progress: bool = True,
              log: Callable[[str], None] = print) -> PipelineRun:
    """Run (or resume) the suite's stages in ``out`` and write ``REPORT.md``; ``config["threads"]`` as in the demo."""
    import torch

    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    run = PipelineRun(Path(out), config, progress)
    run_stages(suite_stages(config), run, log)
    write_suite_report(run)
    return run


def suite_locations(run: PipelineRun) -> str:
    """The closing lines: the report, TensorBoard, the shared models and the task folders."""
    out = run.out
    return "\n".join([
        f"report:      {out / REPORT_FILE}",
        f"TensorBoard: tensorboard --logdir {out}",
        f"models:      {out / 'tokenizer' / 'tokenizer'}, {out.joinpath(*VIDEO_MODEL)}",
        f"tasks:       {', '.join(str(out / TASKS_DIR / task) for task in run.config['tasks'])}",
    ])
