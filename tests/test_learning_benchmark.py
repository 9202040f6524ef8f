"""Benchmark helpers: the evaluation curve and wall-clock of a run killed and resumed (`learning.py`), and a trained
agent against random actions (`agent_vs_random.py`)."""

import sys
import time
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from learning import eval_curve, session_seconds  # noqa: E402


def test_killed_and_resumed_run_keeps_every_evaluation_and_counts_each_session(tmp_path):
    """Session 1 evaluates at steps 10 and 20 and dies at 25; session 2 resumes from step 20, as an older trainer
    did (purging from the checkpoint's step), and evaluates at 30. Each session ran 100 and 50 s."""
    start = time.time()
    first = SummaryWriter(str(tmp_path / "tb"))
    for step in (10, 20):
        first.add_scalar("eval/task_return", step, step, walltime=start + 5 * step)
        first.add_scalar("eval/task_return_std", 1.0, step, walltime=start + 5 * step)
    first.add_scalar("train/loss", 1.0, 25, walltime=start + 100)
    first.close()
    second = SummaryWriter(str(tmp_path / "tb"), purge_step=20)
    second.add_scalar("train/loss", 1.0, 22, walltime=start + 25)
    second.add_scalar("eval/task_return", 30, 30, walltime=start + 50)
    second.close()

    curve = eval_curve(tmp_path, frames_per_step=4)
    assert [(point["step"], point["frames"], point["task_return"]) for point in curve] == [
        (10, 40, 10), (20, 80, 20), (30, 120, 30)]
    seconds, sessions = session_seconds(tmp_path)
    assert sessions == 2 and abs(seconds - 150) < 5  # the two sessions' spans; the gap between them does not count


def test_agent_vs_random_compares_a_trained_run_with_random_actions_on_the_same_seeds(tmp_path, monkeypatch):
    import json

    import agent_vs_random

    from worldrl.config import load_config
    from worldrl.training.agent import train_agent

    preset = Path(__file__).resolve().parents[1] / "configs" / "agents" / "dreamerv3_cpu.yaml"
    config = load_config(preset, ["env.id=worldrl/dmc-cartpole_balance-v0", "env.kwargs.obs_type=state",
                                  "env.kwargs.max_episode_steps=12", "train.steps=16", "train.random_steps=8",
                                  "train.eval_episodes=0", "agent.batch_size=2", "agent.batch_length=4"])
    train_agent(config, tmp_path / "run", device="cpu", progress=False)
    out = tmp_path / "vs.json"
    monkeypatch.setattr(agent_vs_random.torch, "set_num_threads", lambda threads: None)  # keep the session's
    monkeypatch.setattr(sys, "argv", ["agent_vs_random.py", "--agent", str(tmp_path / "run"), "--episodes", "3",
                                      "--device", "cpu", "--out", str(out)])
    assert agent_vs_random.main() == 0
    result = json.loads(out.read_text())
    assert result["episodes"] == 3 and len(result["random"]["returns"]) == 3
    assert result["trained"]["length"] == 12
    assert result["difference"] == result["trained"]["task_return"] - result["random"]["task_return"]


def test_drq_learning_set_overrides_only_the_variant_it_trains(monkeypatch):
    import drq_learning

    monkeypatch.setattr(sys, "argv", ["drq_learning.py", "--only", "task", "--set", "agent.n_step=3", "--tag", "n3"])
    config, repeat = drq_learning.run_config(drq_learning.parse_args(), "task")
    assert config["agent"]["n_step"] == 3 and repeat == 8
    monkeypatch.setattr(sys, "argv", ["drq_learning.py", "--only", "task"])
    assert drq_learning.run_config(drq_learning.parse_args(), "task")[0]["agent"].get("n_step", 1) == 1


@pytest.mark.parametrize(("frames", "capacity"), [(100_000, 12_500), (300_000, 12_500), (40_000, 5_000)])
def test_drq_learning_replay_holds_the_latest_100k_frames(monkeypatch, frames, capacity):
    import drq_learning

    monkeypatch.setattr(sys, "argv", ["drq_learning.py", "--only", "task", "--task-frames", str(frames)])
    config, repeat = drq_learning.run_config(drq_learning.parse_args(), "task")
    assert repeat == 8 and config["train"]["steps"] == frames // 8
    assert config["train"]["replay_capacity"] == capacity


def test_drq_learning_viper_summary_reports_when_the_target_is_first_reached():
    import drq_learning

    curve = [{"frames": 10_000 * i, "task_return": r} for i, r in enumerate([300, 690, 710, 400, 980], 1)]
    summary = drq_learning.viper_summary(curve, oracle=1000.0)
    assert summary["frames_to_target"] == 30_000 and summary["met"]
    assert summary["best_return"] == 980 and summary["fraction_of_oracle_final"] == 0.98
    missed = drq_learning.viper_summary(curve[:2], oracle=1000.0)
    assert missed["frames_to_target"] is None and not missed["met"]
    assert missed["fraction_of_oracle_best"] == 0.69


@pytest.mark.parametrize(("oracle_kwargs", "frame_skip", "expected"), [({}, 1, 2), ({}, 4, 8),
                                                                         ({"action_repeat": 8}, 1, 8)])
def test_viper_action_repeat_is_the_expert_oracles_times_the_video_models_frame_skip(
        tmp_path, oracle_kwargs, frame_skip, expected):
    import json

    import drq_learning
    import yaml

    run = tmp_path / "sac10000"
    (run / "oracle").mkdir(parents=True)
    (run / "oracle" / "oracle.json").write_text(json.dumps(
        {"env_kwargs": oracle_kwargs, "steps": 10000, "eval": {"mean": 800.0, "std": 5.0}}))
    video_run = run / "ep125" / "tok300" / "video1500"
    (video_run / "video_model").mkdir(parents=True)
    (video_run / "config.yaml").write_text(yaml.safe_dump({"train": {"frame_skip": frame_skip}}))
    assert drq_learning.viper_action_repeat(video_run / "video_model") == expected
    assert drq_learning.video_model_oracle(video_run / "video_model")["action_repeat"] == oracle_kwargs.get(
        "action_repeat", 2)


def test_viper_policy_scores_plays_each_policy_on_the_same_seeds(tmp_path, monkeypatch, viper_model_dir):
    import json

    import numpy as np
    import viper_policy_scores

    out = tmp_path / "scores.json"
    monkeypatch.setattr(sys, "argv", ["viper_policy_scores.py", "--video-model", str(viper_model_dir), "--size", "32",
                                      "--policies", "zero", "push", "hang", "--episodes", "2", "--max-steps", "60",
                                      "--per-frame", "--out", str(out)])
    assert viper_policy_scores.main() == 0
    result = json.loads(out.read_text())
    zero, push = result["policies"]["zero"], result["policies"]["push"]
    assert [e["seed"] for e in zero["episodes"]] == [e["seed"] for e in push["episodes"]] == [100, 101]
    assert zero["task_return_mean"] > push["task_return_mean"]
    assert max(e["max_abs_cart_x"] for e in zero["episodes"]) < 0.5 < min(e["max_abs_cart_x"] for e in push["episodes"])
    assert all(e["viper_logp_per_frame"] < 0 for e in zero["episodes"] + push["episodes"])
    hang = result["policies"]["hang"]  # the pole hangs at rest: the task pays nothing and nothing moves
    assert hang["task_return_mean"] < 1.0 and max(e["max_abs_cart_x"] for e in hang["episodes"]) < 0.01
    assert hang["upright_fraction_mean"] == 0.0 and hang["viper_logp_upright_mean"] is None
    assert zero["upright_fraction_mean"] > 0.3  # the pole starts near upright and swings back up without friction
    episodes = [(episode, 60) for episode in zero["episodes"]] + [(episode, 59) for episode in hang["episodes"]]
    for episode, steps in episodes:  # hang spends its first step setting the pole down
        frames = episode["frames"]
        assert {len(values) for values in frames.values()} == {steps}
        assert max(frames["abs_action"]) == 0.0
        assert np.isclose(sum(frames["task_reward"]), episode["task_return"], atol=0.01)
        assert np.isclose(np.mean(frames["viper_logp"]), episode["viper_logp_per_frame"], atol=1e-3)
        upright = np.asarray(frames["pole_cos"]) > viper_policy_scores.UPRIGHT_COS
        assert np.isclose(upright.mean(), episode["upright_fraction"], atol=0.02)  # cosines rounded
    assert max(push["episodes"][0]["frames"]["abs_action"]) == 1.0


@pytest.mark.parametrize(("repeat", "noise", "expected"), [(2, 0.0, ("sac10000", "ep500")),
                                                          (8, 0.0, ("sac10000_ar8", "ep125")),
                                                          (8, 0.3, ("sac10000_ar8", "ep125_noise0.3"))])
def test_viper_reward_quality_names_its_folders_for_the_action_repeat_and_the_expert_noise(
        tmp_path, repeat, noise, expected):
    from dataclasses import replace

    import viper_reward_quality as vrq

    budget = replace(vrq.MODES["default"], action_repeat=repeat, expert_noise=noise)
    base, data = vrq.task_folders("cartpole_balance", budget, tmp_path)
    assert (base, data) == (tmp_path / "cartpole_balance" / expected[0], tmp_path / "cartpole_balance" / expected[0] /
                            expected[1])


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_viper_reward_quality_records_expert_videos_with_the_expert_noise(tmp_path, monkeypatch, noise):
    from dataclasses import replace

    import numpy as np
    import viper_reward_quality as vrq

    import worldrl.oracles

    oracle = lambda obs: np.full(1, 0.5, dtype=np.float32)  # noqa: E731
    monkeypatch.setattr(worldrl.oracles, "as_policy", lambda name, space, **kwargs: oracle)
    recorded = []

    class Recorded(Exception):
        pass

    def record(task, policy, *args, **kwargs):
        recorded.append(policy)
        raise Recorded

    monkeypatch.setattr(vrq, "record", record)
    with pytest.raises(Recorded):
        vrq.experts("cartpole_balance", tmp_path / "oracle", replace(vrq.MODES["quick"], expert_noise=noise), tmp_path)
    actions = np.stack([recorded[0](None) for _ in range(200)])
    assert np.all((-1 <= actions) & (actions <= 1))
    if noise == 0:
        assert recorded[0] is oracle
    else:
        assert 0.2 < actions.std() < 0.4 and abs(np.median(actions) - 0.5) < 0.1


def test_benchmark_results_name_paths_inside_the_repository_relative_to_it(tmp_path):
    from common import ROOT, shown

    assert shown(ROOT / "runs" / "bench_drq_learning" / ".." / "x") == str(Path("runs") / "x")
    assert shown(tmp_path / "run") == str((tmp_path / "run").resolve())


def test_plot_curves_moves_a_long_legend_beside_the_axes(tmp_path):
    from learning import LEGEND_INSIDE_MAX, plot_curves
    from matplotlib.image import imread

    def curves(count: int) -> dict:
        return {f"run{i}": [{"frames": 1000, "task_return": i}, {"frames": 2000, "task_return": 2 * i}]
                for i in range(count)}

    plot_curves(curves(2), tmp_path / "few.png", "few", {"oracle": 5.0})
    plot_curves(curves(LEGEND_INSIDE_MAX + 1), tmp_path / "many.png", "many", {"oracle": 5.0})
    few, many = imread(tmp_path / "few.png"), imread(tmp_path / "many.png")
    assert many.shape[1] > few.shape[1] and many.shape[0] > few.shape[0]
