import json
import os

import pytest

from worldrl.cli import main
from worldrl.config import ConfigError
from worldrl.pipeline import PipelineRun, Stage, load_pipeline_config, merge, run_pipeline, run_stages
from worldrl.pipeline.viper import agent_config, find_preset, preset_config, viper_stages

TINY = [
    "oracle.steps=200", "oracle.eval_episodes=1",
    "data.oracle_episodes=2", "data.random_episodes=2", "data.top_k=1", "data.max_episode_steps=12",
    "tokenizer.config.train.steps=2", "tokenizer.config.train.batch_size=4", "tokenizer.config.train.eval_batches=1",
    "video.config.train.steps=2", "video.config.train.batch_size=2", "video.config.train.eval_batches=1",
    "agent.config.train.steps=40", "agent.config.train.random_steps=20", "agent.config.agent.batch_size=8",
    "agent.config.env.kwargs.max_episode_steps=10", "evaluate.episodes=1", "report.heatmaps=2", "device=cpu",
]


def fake_stage(name, calls, outputs=("out.txt",), fail=False):
    def run(pipeline_run):
        calls.append(name)
        if fail:
            raise RuntimeError("interrupted")
        for output in outputs:
            pipeline_run.path(output).write_text(name)
        return {"value": len(calls)}

    return Stage(name, f"fake {name}", run, outputs)


def test_stages_run_once_then_skip(tmp_path):
    calls, log = [], []
    stages = [fake_stage("a", calls, ("a.txt",)), fake_stage("b", calls, ("b.txt",))]
    results = run_stages(stages, PipelineRun(tmp_path, {}), log.append)
    assert calls == ["a", "b"] and results["b"]["value"] == 2
    assert json.loads((tmp_path / "stages" / "a.json").read_text())["value"] == 1
    again = PipelineRun(tmp_path, {})
    run_stages(stages, again, log.append)
    assert calls == ["a", "b"] and again.results["b"]["value"] == 2  # summaries read back from the markers
    assert sum("skipped" in line for line in log) == 2


def test_stage_reruns_when_an_output_is_gone_or_it_was_interrupted(tmp_path):
    calls = []
    run_stages([fake_stage("a", calls, ("a.txt",))], PipelineRun(tmp_path, {}), lambda _: None)
    (tmp_path / "a.txt").unlink()
    run_stages([fake_stage("a", calls, ("a.txt",))], PipelineRun(tmp_path, {}), lambda _: None)
    assert calls == ["a", "a"]
    with pytest.raises(RuntimeError):
        run_stages([fake_stage("b", calls, fail=True)], PipelineRun(tmp_path, {}), lambda _: None)
    assert not (tmp_path / "stages" / "b.json").exists()
    assert not fake_stage("b", calls).done(PipelineRun(tmp_path, {}))


def test_merge_is_deep_and_copies():
    base = {"train": {"steps": 10, "lr": 1.0}, "model": {"a": 1}}
    merged = merge(base, {"train": {"steps": 3}, "extra": [1]})
    assert merged == {"train": {"steps": 3, "lr": 1.0}, "model": {"a": 1}, "extra": [1]}
    assert base["train"]["steps"] == 10


def test_demo_config_overrides_reach_the_stage_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # presets resolve from the checkout, not the working folder
    config = load_pipeline_config(None, ["agent.config.train.steps=7", "tokenizer.config.train.steps=3",
                                         "data.top_k=2"])
    assert config["data"]["top_k"] == 2
    tokenizer = preset_config(config["tokenizer"])
    assert tokenizer["train"]["steps"] == 3 and tokenizer["model"]["type"] == "vqgan"
    agent = agent_config(PipelineRun(tmp_path / "run", config))
    assert agent["train"]["steps"] == 7 and agent["agent"]["type"] == "drq"
    assert agent["env"]["reward"] == "viper" and agent["env"]["video_model"].endswith(os.path.join("video",
                                                                                                 "video_model"))
    assert find_preset("configs/video/cpu.yaml").is_file()


def test_demo_config_errors_name_the_section():
    with pytest.raises(ConfigError, match="unknown sections \\['oracel'\\]"):
        load_pipeline_config(None, ["oracel.steps=3"])


def test_demo_list_and_bad_override(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == [s.name for s in viper_stages()]
    assert "done" not in out.split()
    assert main(["demo", "--out", str(tmp_path), "nonsense.x=1"]) == 2
    assert "unknown sections" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_demo_pipeline_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    result = run_pipeline(out, load_pipeline_config(None, TINY), progress=False)
    assert set(result.results) == {s.name for s in viper_stages()}
    evaluation = result.results["evaluate"]
    assert {"agent", "oracle", "random"} <= set(evaluation)
    report = (out / "REPORT.md").read_text()
    assert "AUROC" in report and "![reward_curves.png](report/reward_curves.png)" in report
    for path in ("report/reward_curves.png", "agent/agent.pt", "video/video_model", "tokenizer/tokenizer",
                 "agent/tb", "oracle/oracle.zip"):
        assert (out / path).exists(), path
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--no-progress", *TINY]) == 0
    printed = capsys.readouterr().out
    assert printed.count("done before, skipped") == len(viper_stages())
    assert "REPORT.md" in printed and "tensorboard --logdir" in printed
