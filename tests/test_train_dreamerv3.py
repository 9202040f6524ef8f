"""DreamerV3 through ``worldrl train-agent``: DMC and Atari runs, VIPER with Plan2Explore, exact resume, evaluation."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from worldrl.agents import build_agent
from worldrl.cli import main
from worldrl.config import load_config
from worldrl.training.agent import train_agent

PRESET = Path(__file__).resolve().parents[1] / "configs" / "agents" / "dreamerv3_cpu.yaml"
DMC = "worldrl/dmc-cartpole_balance-v0"
PONG = "worldrl/atari-pong-v0"
TINY = ["env.kwargs.size=32", "env.kwargs.max_episode_steps=12", "train.num_envs=2", "train.random_steps=16",
        "train.replay_capacity=100", "train.eval_episodes=1", "train.eval_every=1000", "train.checkpoint_every=1000",
        "train.log_every=8", "train.video_every=8", "train.train_ratio=32", "agent.batch_size=4",
        "agent.batch_length=8"]
"""The CPU preset on two 32x32 envs with 12-step episodes: 4 x 8 sequences, one update per env step after 16."""


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(env: str = DMC, steps: int = 24, *overrides: str) -> dict:
    return load_config(PRESET, [f"env.id={env}", f"train.steps={steps}", *TINY, *overrides])


def scalars(run: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]} | {
        tag: [] for tag in events.Tags()["images"]}


def test_dmc_run_logs_losses_train_ratio_and_open_loop_video_then_evaluates(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train-agent", "--config", str(PRESET), "--env", DMC, "--steps", "24", "--logdir", str(run),
            "--no-progress", *TINY]
    assert main(args) == 0
    assert "24 env steps, 10 updates" in capsys.readouterr().out
    logged = scalars(run)
    assert logged["perf/train_ratio"][-1] == pytest.approx(32.0)  # 1 update of 4 x 8 per env step
    for tag in ("train/wm/loss", "train/wm/image_loss", "train/behavior/actor_loss", "perf/policy_fps",
                "perf/train_fps", "eval/task_return", "video/open_loop", "video/open_loop_clip"):
        assert tag in logged, tag
    assert all(np.isfinite(logged["train/wm/loss"]))
    result = tmp_path / "eval.json"
    assert main(["evaluate", "--agent", str(run), "--episodes", "2", "--json", str(result)]) == 0
    first = json.loads(result.read_text())
    assert first["length"] == 12 and first["task_return"] > 0
    assert main(["evaluate", "--agent", str(run / "agent.pt"), "--episodes", "2", "--json", str(result)]) == 0
    assert json.loads(result.read_text())["task_return"] == first["task_return"]  # seeded: evaluation repeats


def test_viper_reward_with_plan2explore(tmp_path, viper_model_dir, capsys):
    run = tmp_path / "viper"
    args = ["train-agent", "--config", str(PRESET), "--env", DMC, "--steps", "20", "--logdir", str(run),
            "--reward", "viper", "--video-model", str(viper_model_dir), "--plan2explore", "--no-progress", *TINY]
    assert main(args) == 0
    agent = yaml.safe_load((run / "config.yaml").read_text())["agent"]
    assert agent["behavior"]["disagreement_weight"] == 1 and agent["behavior"]["reward_weight"] == 1
    logged = scalars(run)
    assert {"train/plan2explore/loss", "train/behavior/disagreement_return", "train/behavior/reward_return"} <= set(
        logged)
    assert logged["eval/return"][-1] != pytest.approx(logged["eval/task_return"][-1])  # trained on VIPER's reward
    capsys.readouterr()
    drq = ["train-agent", "--agent", "drq", "--env", DMC, "--logdir", str(tmp_path / "drq"), "--plan2explore"]
    assert main(drq) == 2
    assert "--plan2explore" in capsys.readouterr().err


def test_discrete_atari_actions_are_one_hot_in_the_replay(tmp_path):
    metrics = train_agent(tiny_config(PONG, 20, "train.checkpoint_every=10"), tmp_path / "pong", device="cpu",
                          progress=False)
    assert metrics["step"] == 20 and metrics["updates"] == 6 and metrics["eval_length"] == 12
    replay = np.load(tmp_path / "pong" / "replay_20.npz")
    action, first = replay["action"], replay["is_first"]
    held = replay["pos"] > 0
    assert action.shape[1] == 6
    np.testing.assert_array_equal(action[held].sum(1), 1.0)
    assert set(np.unique(action)) == {0.0, 1.0} and not action[first].any()
    assert len(np.unique(action[held].argmax(1))) > 1
    with pytest.raises(ValueError, match="continuous"):
        train_agent({**tiny_config(PONG), "agent": {"type": "drq"}}, tmp_path / "drq", device="cpu", progress=False)


def test_random_actions_taken_feed_the_recurrent_state():
    """Before learning starts the trainer takes random actions; the RSSM's next input must be those."""
    config = dict(tiny_config(PONG)["agent"])
    agent = build_agent(config.pop("type"), config, (32, 32, 3), 6, "cpu", discrete=True)
    obs = {"image": np.zeros((2, 32, 32, 3), np.uint8), "is_first": np.ones(2, bool)}
    chosen, state = agent.act(obs, None, explore=True)
    taken = np.eye(6, dtype=np.float32)[[(chosen[0].argmax() + 1) % 6, 0]]
    assert torch.equal(agent.took(state, taken)["action"], torch.from_numpy(taken))
    assert torch.equal(agent.took(state, taken)["latent"]["deter"], state["latent"]["deter"])


def test_resumed_run_equals_uninterrupted_run(tmp_path, split_run_equals_whole):
    """20 steps, then 8 more from the checkpoint (mid-episode: envs replay their actions, the latents are restored)
    equal 28 at once; the first part's extra evaluations and videos change nothing."""
    config = tiny_config(DMC, 28, "agent.behavior.disagreement_weight=1")
    checkpoints = split_run_equals_whole(config, tmp_path)
    assert isinstance(checkpoints[0]["agent_state"]["latent"]["deter"], torch.Tensor)
