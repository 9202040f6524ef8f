"""VIPER's pipeline on one task, as stages: oracle, expert and random data, tokenizer, video model, reward, agent.

Each stage calls the library function behind the ``worldrl`` command of the
same name, with the settings of a pipeline config (``configs/pipeline/demo.yaml``):

====================  =============================================================  ============================
stage                 what                                                           command
====================  =============================================================  ============================
``train-oracle``      SAC on the state                                               ``worldrl train-oracle``
``collect-oracle``    oracle episodes (pixels and state)                             ``worldrl collect``
``collect-random``    random-policy episodes                                         ``worldrl collect``
``curate``            the top-k oracle episodes become the expert videos             ``worldrl curate``
``train-tokenizer``   VQ-GAN on the expert videos                                    ``worldrl train-tokenizer``
``train-video-model`` VideoGPT prior on their codes                                  ``worldrl train-video-model``
``viper-report``      AUROC of expert vs random episodes, Spearman with task return  ``worldrl viper-report``
``train-agent``       DrQ (or DreamerV3) on the VIPER reward only                    ``worldrl train-agent``
``evaluate``          task return of the agent, the oracle and a random policy       ``worldrl evaluate``
====================  =============================================================  ============================

Folders under the run folder: ``oracle/``, ``data/{oracle,random,expert}/``,
``tokenizer/``, ``video/``, ``report/``, ``agent/``, each trainer's
TensorBoard logs in its ``tb/``, stage summaries in ``stages/`` and the
one-page ``REPORT.md``.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from worldrl.config import ConfigError, load_config, load_yaml
from worldrl.pipeline.stages import PipelineRun, Stage, merge

DEFAULT_CONFIG = "configs/pipeline/demo.yaml"
SECTIONS = ("env", "seed", "device", "threads", "oracle", "data", "tokenizer", "video", "report", "agent", "evaluate")
REPO_ROOT = Path(__file__).resolve().parents[2]
EVAL_SEED_OFFSET = 10_000
"""Evaluation episodes (agent, oracle and random policy alike) reset with seeds ``seed + 10000 + i``."""


def find_preset(path: str | Path) -> Path:
    """``path`` as given, or relative to the worldrl checkout (``configs/...`` from any working folder)."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    return REPO_ROOT / path


def check_sections(config: dict[str, Any], sections: Sequence[str]) -> dict[str, Any]:
    """``config`` unchanged when it has exactly ``sections``; a :class:`ConfigError` naming the odd ones otherwise."""
    unknown = sorted(set(config) - set(sections))
    missing = sorted(set(sections) - set(config))
    if unknown or missing:
        raise ConfigError(f"pipeline config: unknown sections {unknown}, missing {missing}; sections: "
                          f"{', '.join(sections)}")
    return config


def load_pipeline_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The pipeline preset (default: the demo's) with ``key.sub=value`` overrides; unknown sections are errors."""
    return check_sections(load_config(find_preset(path or DEFAULT_CONFIG), overrides), SECTIONS)


def preset_config(section: dict[str, Any]) -> dict[str, Any]:
    """A stage's training config: its ``preset`` file with its ``config`` mapping merged over it."""
    return merge(load_yaml(find_preset(section["preset"])), section.get("config") or {})


# Stages -------------------------------------------------------------------------------------------------------------
# Each takes the PipelineRun of one task (its env in ``config["env"]``, its folders under ``out``); the multi-task
# pipeline (:mod:`.suite`) passes the shared models' paths and task ids through the optional arguments.
def train_oracle(run: PipelineRun) -> dict[str, Any]:
    from worldrl.oracles.sac import train_state_oracle

    cfg = run.config["oracle"]
    info = train_state_oracle(run.config["env"], cfg["steps"], run.path("oracle"), seed=run.config["seed"],
                              eval_episodes=cfg["eval_episodes"], checkpoint_every=cfg["steps"],
                              device=run.config["device"], progress=run.progress)
    return {"steps": info["steps"], "return_mean": info["eval"]["mean"], "return_std": info["eval"]["std"],
            "train_time_s": info["train_time_s"]}


def collect_episodes(run: PipelineRun, policy: Any, folder: str, episodes: int, seed: int) -> dict[str, Any]:
    """Top ``data/<folder>`` up to ``episodes`` episodes of ``policy`` (a rerun after an interruption adds the rest)."""
    from worldrl.data import EpisodeFolder
    from worldrl.data.collect import collect, policy_for_env
    from worldrl.data.folder import INDEX_FILE

    cfg, out = run.config["data"], run.path("data", folder)
    have = len(EpisodeFolder(out)) if (out / INDEX_FILE).is_file() else 0
    if have < episodes:
        env_kwargs = dict(cfg.get("env_kwargs") or {})  # e.g. Atari's mask_scoreboard
        if cfg.get("max_episode_steps"):
            env_kwargs["max_episode_steps"] = cfg["max_episode_steps"]
        made, env_kwargs = policy_for_env(run.config["env"], policy, env_kwargs, seed=seed)
        collect(run.config["env"], made, episodes - have, out, num_envs=cfg["num_envs"], seed=seed,
                env_kwargs=env_kwargs, policy_name=str(policy), progress=run.progress)
    returns = EpisodeFolder(out).returns
    return {"episodes": len(returns), "return_mean": float(returns.mean()), "return_std": float(returns.std())}


def collect_oracle(run: PipelineRun) -> dict[str, Any]:
    cfg = run.config["data"]
    return collect_episodes(run, str(run.path("oracle")), "oracle", cfg["oracle_episodes"], run.config["seed"])


def collect_random(run: PipelineRun) -> dict[str, Any]:
    cfg = run.config["data"]
    return collect_episodes(run, "random", "random", cfg["random_episodes"], run.config["seed"] + 1)


def curate_expert(run: PipelineRun) -> dict[str, Any]:
    from worldrl.data.curate import curate

    out = run.path("data", "expert")
    if out.exists():  # left by an interrupted run: curating is cheap, start again
        shutil.rmtree(out)
    kept = curate(run.path("data", "oracle"), out, top_k=run.config["data"]["top_k"]).returns
    return {"episodes": len(kept), "return_min": float(kept.min()), "return_mean": float(kept.mean())}


def train_tokenizer(run: PipelineRun, experts: Sequence[Path] | None = None) -> dict[str, Any]:
    """The tokenizer on ``experts`` (default: this run's ``data/expert``), into ``tokenizer/``."""
    from worldrl.training.tokenizer import train_tokenizer as train

    experts = [run.path("data", "expert")] if experts is None else list(experts)
    metrics = train(preset_config(run.config["tokenizer"]), experts, run.path("tokenizer"),
                    device=run.config["device"], progress=run.progress)
    return {key: metrics[key] for key in ("step", "eval_split", "val_psnr", "val_ssim", "val_usage")}


def train_video_model(run: PipelineRun, experts: Sequence[Path] | None = None,
                      task_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """The video model on the codes of ``experts`` (default: ``data/expert``), folder ``i`` as task ``task_ids[i]``."""
    from worldrl.training.video_model import train_video_model as train

    config = preset_config(run.config["video"])
    if task_ids is not None:
        config = merge(config, {"train": {"task_ids": list(task_ids)}})
    experts = [run.path("data", "expert")] if experts is None else list(experts)
    metrics = train(config, run.path("tokenizer", "tokenizer"), experts, run.path("video"),
                    device=run.config["device"], progress=run.progress)
    return {key: metrics[key] for key in ("step", "eval_split", "val_bits_per_code", "val_frame_log_likelihood")}


def report(run: PipelineRun, video_model: Path | None = None, task_id: int | None = None) -> dict[str, Any]:
    """Score ``data/expert`` and ``data/random`` under ``video_model`` (default: ``video/video_model``)."""
    from worldrl.diagnostics.viper_report import format_report, viper_report

    cfg = run.config["report"]
    video_model = run.path("video", "video_model") if video_model is None else video_model
    result = viper_report(video_model, run.path("data", "expert"), [run.path("data", "random")],
                          run.path("report"), max_episodes=cfg.get("max_episodes"), heatmaps=cfg["heatmaps"],
                          task_id=task_id, device=run.config["device"], progress=run.progress)
    print(format_report(result))
    auroc = {kind: entry["all_others"] for kind, entry in result["auroc"].items()}
    return {"auroc": auroc, "spearman": result["spearman"], "groups": result["groups"], "figures": result["figures"]}


def agent_config(run: PipelineRun, video_model: Path | None = None, task_id: int | None = None) -> dict[str, Any]:
    """The agent preset on the run's env with the VIPER reward of ``video_model`` (default: ``video/video_model``).

    ``task_id`` is the task the reward is conditioned on, for a multi-task video model.
    """
    video_model = run.path("video", "video_model") if video_model is None else video_model
    env = {"id": run.config["env"], "reward": "viper", "video_model": str(video_model)}
    if task_id is not None:
        env["viper"] = {"task_id": task_id}
    viper = {"env": env, "train": {"seed": run.config["seed"]}}
    return merge(merge(load_yaml(find_preset(run.config["agent"]["preset"])), viper),
                 run.config["agent"].get("config") or {})


def train_agent(run: PipelineRun, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The agent of ``config`` (default: :func:`agent_config`), into ``agent/``."""
    from worldrl.training.agent import train_agent as train

    config = agent_config(run) if config is None else config
    metrics = train(config, run.path("agent"), device=run.config["device"], progress=run.progress)
    return {key: metrics[key] for key in ("step", "updates", "episodes")}


def evaluate(run: PipelineRun, oracle: dict[str, Any] | None = None) -> dict[str, Any]:
    """Task return of the agent and of a random policy on the same seeds, beside the oracle's.

    ``oracle`` is the oracle stage's summary (``return_mean``, ``return_std``); default: ``train-oracle``'s.
    """
    import gymnasium as gym
    import numpy as np
    from tqdm import tqdm

    from worldrl.oracles import evaluate_policy_return
    from worldrl.training.agent import evaluate_agent, load_agent

    episodes, seed = run.config["evaluate"]["episodes"], run.config["seed"] + EVAL_SEED_OFFSET
    agent, config = load_agent(run.path("agent"), run.config["device"])
    env = gym.make(config["env"]["id"], **config["env"]["kwargs"])
    returns = [evaluate_agent(agent, env, 1, seed + i)["task_return"]
               for i in tqdm(range(episodes), desc="evaluate agent", unit="ep", disable=not run.progress)]
    env.close()
    rand = evaluate_policy_return(run.config["env"], "random", episodes, seed, {"obs_type": "state"})
    oracle = run.results["train-oracle"] if oracle is None else oracle
    return {"episodes": episodes, "seed": seed,
            "agent": {"mean": float(np.mean(returns)), "std": float(np.std(returns))},
            "random": {"mean": rand["mean"], "std": rand["std"]},
            "oracle": {"mean": oracle["return_mean"], "std": oracle["return_std"]}}


def viper_stages() -> list[Stage]:
    """The single-task VIPER pipeline, in order (see the module docstring)."""
    return [
        Stage("train-oracle", "SAC task oracle on the state", train_oracle, ("oracle/oracle.zip",)),
        Stage("collect-oracle", "oracle episodes", collect_oracle, ("data/oracle/dataset.json",)),
        Stage("collect-random", "random-policy episodes", collect_random, ("data/random/dataset.json",)),
        Stage("curate", "top-k oracle episodes as expert videos", curate_expert, ("data/expert/dataset.json",)),
        Stage("train-tokenizer", "VQ-GAN on the expert videos", train_tokenizer, ("tokenizer/tokenizer",)),
        Stage("train-video-model", "VideoGPT prior on the expert codes", train_video_model, ("video/video_model",)),
        Stage("viper-report", "VIPER reward: expert vs random AUROC, correlation", report, ("report/report.json",)),
        Stage("train-agent", "agent on the VIPER reward alone", train_agent, ("agent/agent.pt",)),
        Stage("evaluate", "task return: agent vs oracle vs random policy", evaluate),
    ]
