import json

import pytest
import torch

from worldrl.cli import main
from worldrl.config import ConfigError
from worldrl.pipeline.suite import PRESETS, SUITES, load_suite_config, preset_path, run_suite, suite_stages
from worldrl.pipeline.viper import find_preset

torch.set_num_threads(1)

TASKS = ["cartpole_balance", "reacher_easy"]
TINY = [
    "oracle.steps=200", "oracle.eval_episodes=1",
    "data.oracle_episodes=2", "data.random_episodes=2", "data.top_k=2", "data.max_episode_steps=20",
    "tokenizer.config.train.steps=2", "tokenizer.config.train.batch_size=4", "tokenizer.config.train.eval_batches=1",
    "video.config.train.steps=2", "video.config.train.batch_size=2", "video.config.train.eval_batches=1",
    "agent.config.train.steps=40", "agent.config.train.random_steps=20", "agent.config.agent.batch_size=8",
    "agent.config.env.kwargs.max_episode_steps=10", "evaluate.episodes=1", "report.heatmaps=2", "device=cpu",
]


def test_help_describes_the_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pipeline", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--suite" in text and "--tasks" in text and "--preset" in text and "num_tasks" in text


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_suite_preset_loads_and_names_existing_presets(suite, preset):
    config = load_suite_config(suite, preset)
    assert preset_path(suite, preset).is_file() and config["suite"] == suite and config["tasks"]
    for section in ("tokenizer", "video", "agent"):
        assert find_preset(config[section]["preset"]).is_file(), config[section]["preset"]
    assert config["video"]["config"]["model"]["num_tasks"] == len(config["tasks"])
    if preset == "paper":
        assert "cpu" not in config["tokenizer"]["preset"] + config["video"]["preset"] + config["agent"]["preset"]


def test_tasks_replace_the_presets_and_set_num_tasks():
    config = load_suite_config("dmc", "small", ["walker_walk", "cheetah_run", "finger_spin"], ["oracle.steps=7"])
    assert config["tasks"] == ["walker_walk", "cheetah_run", "finger_spin"] and config["oracle"]["steps"] == 7
    assert config["video"]["config"]["model"]["num_tasks"] == 3
    names = [stage.name for stage in suite_stages(config)]
    assert names.count("train-video-model") == 1 and "finger_spin/evaluate" in names


def test_unknown_task_suite_or_game_without_oracle_is_a_clear_error(capsys):
    with pytest.raises(ConfigError, match="unknown dmc task 'cartpole_balanc'.*Closest: cartpole_balance"):
        load_suite_config("dmc", "small", ["cartpole_balanc"])
    with pytest.raises(ConfigError, match="unknown suite 'procgen'"):
        load_suite_config("procgen")
    with pytest.raises(ConfigError, match="no scripted Atari oracle for ms_pacman.*breakout, freeway, pong"):
        load_suite_config("atari", "small", ["pong", "ms_pacman"])
    assert main(["pipeline", "--suite", "dmc", "--tasks", "nope_task", "--list"]) == 2
    assert "unknown dmc task 'nope_task'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pipeline", "--suite", "procgen"])


def test_rlbench_suite_stops_with_the_coppeliasim_message(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COPPELIASIM_ROOT", raising=False)
    assert main(["pipeline", "--suite", "rlbench", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "CoppeliaSim" in err and "COPPELIASIM_ROOT" in err and "pip install" in err


def test_list_and_overrides_after_tasks(tmp_path, capsys):
    args = ["pipeline", "--suite", "dmc", "--out", str(tmp_path), "--list", "--tasks", *TASKS, "oracle.steps=5"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["cartpole_balance/oracle", "to"] and len(lines) == 4 * 2 + 2 + 3 * 2


def test_tiny_dmc_suite_runs_and_resumes(tmp_path, capsys):  # about 20 s on a busy core
    from worldrl.models.predictors import load_video_model
    from worldrl.training.agent import load_agent

    out = tmp_path / "suite"
    config = load_suite_config("dmc", "small", TASKS, TINY)
    result = run_suite(out, config, progress=False)
    stages = suite_stages(config)
    assert set(result.results) == {s.name for s in stages}
    assert all(stage.marker(result).is_file() for stage in stages)
    model = load_video_model(out / "video" / "video_model", "cpu")
    assert model.config.num_tasks == 2
    for i, task in enumerate(TASKS):
        assert json.loads((out / "tasks" / task / "report" / "report.json").read_text())["task_id"] == i
        assert json.loads((out / "stages" / task / "viper-report.json").read_text())["task_id"] == i
        _, agent_config = load_agent(out / "tasks" / task / "agent", "cpu")
        assert agent_config["env"]["viper"]["task_id"] == i and agent_config["env"]["reward"] == "viper"
    report = (out / "REPORT.md").read_text()
    assert all(f"| {task} | {i} |" in report for i, task in enumerate(TASKS))
    capsys.readouterr()
    assert main(["pipeline", "--suite", "dmc", "--out", str(out), "--no-progress", "--tasks", *TASKS, *TINY]) == 0
    printed = capsys.readouterr().out
    assert printed.count("done before, skipped") == len(stages)
    assert "REPORT.md" in printed and "cartpole_balance: task return" in printed
