"""``worldrl train-agent`` on vector observations: DreamerV3 on DMC states, exact resume, pixel-only agents' errors,
and a replay without frames."""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from worldrl.agents import build_agent
from worldrl.cli import main
from worldrl.config import ConfigError, load_config
from worldrl.data.replay import ReplayBuffer
from worldrl.training.agent import build_env_agent, train_agent

PRESET = Path(__file__).resolve().parents[1] / "configs" / "agents" / "dreamerv3_cpu.yaml"
DMC = "worldrl/dmc-cartpole_balance-v0"
TINY = ["env.kwargs.obs_type=state", "env.kwargs.max_episode_steps=12", "train.num_envs=2", "train.random_steps=16",
        "train.replay_capacity=100", "train.eval_episodes=1", "train.eval_every=1000", "train.checkpoint_every=1000",
        "train.log_every=8", "train.video_every=8", "train.train_ratio=32", "agent.batch_size=4",
        "agent.batch_length=8"]
"""The CPU preset on two cartpole envs observing 5-entry states, 12-step episodes: one 4 x 8 update per env step
after 16."""

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(steps: int, *overrides: str) -> dict:
    return load_config(PRESET, [f"env.id={DMC}", f"train.steps={steps}", *TINY, *overrides])


def test_dreamerv3_trains_on_states_evaluates_and_checkpoints(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train-agent", "--config", str(PRESET), "--env", DMC, "--env-arg", "obs_type=state", "--steps", "24",
            "--logdir", str(run), "--no-progress", *TINY[1:]]
    assert main(args) == 0
    assert "24 env steps, 10 updates" in capsys.readouterr().out
    assert {"checkpoint.pt", "agent.pt", "replay_24.npz"} <= {path.name for path in run.iterdir()}
    replay = np.load(run / "replay_24.npz")
    assert "image" not in replay.files and replay["state"].shape == (24 + 2 + 2, 5)  # 2 resets per env
    result = tmp_path / "eval.json"
    assert main(["evaluate", "--agent", str(run), "--episodes", "1", "--json", str(result)]) == 0
    assert json.loads(result.read_text())["length"] == 12


def test_resumed_state_run_equals_uninterrupted_run(tmp_path, split_run_equals_whole):
    """20 steps, then 8 more from the checkpoint (mid-episode) equal 28 at once, as from pixels."""
    split_run_equals_whole(tiny_config(28), tmp_path)


def test_pixel_only_agents_and_viper_reject_vector_observations(tmp_path, capsys):
    config = tiny_config(8)
    for agent in ("drq", "drqv2"):
        with pytest.raises(ConfigError, match=rf"{agent} needs uint8 \[H, W, C\] frames; the env observes Box.*"
                                              "vector observations: dreamerv3"):
            train_agent({**config, "agent": {"type": agent}}, tmp_path / agent, device="cpu", progress=False)
    assert main(["train-agent", "--agent", "drq", "--env", DMC, "--env-arg", "obs_type=state", "--logdir",
                 str(tmp_path / "cli"), "--no-progress"]) == 2
    assert "drq needs uint8 [H, W, C] frames" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="needs uint8"):
        build_agent("drq", {}, None, 1, "cpu", vector_dim=5)
    viper = {**config, "env": {**config["env"], "reward": "viper", "video_model": str(tmp_path / "model")}}
    with pytest.raises(ConfigError, match=r"env.reward=viper scores uint8 \[H, W, C\] frames.*obs_type=pixels"):
        train_agent(viper, tmp_path / "viper", device="cpu", progress=False)
    env = gym.make(DMC, obs_type="pixels+state", size=16)
    with pytest.raises(ConfigError, match="Dict.*obs_type=state"):
        build_env_agent("dreamerv3", config["agent"], env, "cpu")
    env.close()


def state_stream(env: int, steps: int) -> dict[str, np.ndarray]:
    """Episodes of 5 steps (first row is_first, last is_last) whose state holds the env and the step."""
    t = np.arange(steps)
    return {"state": np.stack([np.full(steps, env), t], 1).astype(np.float32),
            "action": np.stack([t, -t], 1).astype(np.float32), "reward": t.astype(np.float32),
            "is_first": t % 5 == 0, "is_last": t % 5 == 4, "is_terminal": t % 10 == 9}


def test_replay_without_images_stores_states_samples_saves_and_loads(tmp_path):
    buffer = ReplayBuffer(100, None, 2, 2, state_dim=2, seed=0)
    assert "image" not in buffer.arrays
    streams = [state_stream(env, 30) for env in range(2)]
    for k in range(30):
        buffer.add({key: np.stack([s[key][k] for s in streams]) for key in streams[0]})
    batch = buffer.sample_sequences(8, 6)
    assert batch.keys() == {"state", "action", "reward", "is_first", "is_last", "is_terminal"}
    assert batch["state"].shape == (8, 6, 2)
    np.testing.assert_array_equal(np.diff(batch["state"][..., 1], axis=1), 1.0)  # consecutive steps of one env
    assert (batch["state"][..., :1] == batch["state"][:, :1, :1]).all()
    path = buffer.save(tmp_path / "replay.npz")
    restored = ReplayBuffer(100, None, 2, 2, state_dim=2)
    restored.load(path)
    for key, array in buffer.state_dict()["arrays"].items():
        np.testing.assert_array_equal(restored.state_dict()["arrays"][key], array, err_msg=key)
    again = restored.sample_sequences(4, 3)  # the sampling generator is restored too
    for key, array in buffer.sample_sequences(4, 3).items():
        np.testing.assert_array_equal(again[key], array, err_msg=key)
    with pytest.raises(ValueError, match="does not fit"):
        ReplayBuffer(100, (4, 4, 3), 2, 2, state_dim=2).load(path)
    with pytest.raises(ValueError, match="stores no images"):
        buffer.sample_transitions(4)
    with pytest.raises(ValueError, match="image_shape, state_dim or both"):
        ReplayBuffer(100, None, 2)
    with pytest.raises(ValueError, match="episode_dir needs image_shape"):
        ReplayBuffer(100, None, 2, state_dim=2, episode_dir=tmp_path / "episodes")


def test_resumed_run_keeps_the_evaluation_logged_at_its_checkpoint(tmp_path):
    """TensorBoard purges only what a killed session logged after its checkpoint, not the evaluation before it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, every = tmp_path / "run", ["train.eval_every=8", "train.checkpoint_every=8"]
    train_agent(tiny_config(16, *every), run, device="cpu", progress=False)
    train_agent(tiny_config(24, *every), run, device="cpu", progress=False)
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    assert [event.step for event in events.Scalars("eval/task_return")] == [8, 16, 24]
