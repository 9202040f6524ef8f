"""DrQ and DrQ-v2: augmentation, target and temperature updates, RND reward, training on DMC, exact resume."""

import copy
import json

import numpy as np
import pytest
import torch

from worldrl.agents import build_agent
from worldrl.agents.drq_common import random_shift, soft_update
from worldrl.cli import main
from worldrl.exploration import Transition
from worldrl.training.agent import train_agent

ENV = "worldrl/dmc-cartpole_balance-v0"
TINY_AGENT = {"batch_size": 4, "encoder_channels": [8, 8], "feature_dim": 8, "hidden": 16, "frame_stack": 2,
              "rnd_channels": [8], "rnd_hidden": 16}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(agent: str = "drq", steps: int = 36, size: int = 16, **env) -> dict:
    """Two 16x16 cartpole envs with 12-step episodes, a tiny agent, learning after 8 steps."""
    return {
        "agent": {"type": agent, **TINY_AGENT},
        "env": {"id": ENV, "kwargs": {"size": size, "max_episode_steps": 12}, **env},
        "train": {"steps": steps, "num_envs": 2, "random_steps": 8, "replay_capacity": 100, "eval_episodes": 1,
                  "eval_every": 1000, "checkpoint_every": 1000, "log_every": 8},
    }


def test_random_shift_shapes_randomness_and_identity():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    assert random_shift(x, 0) is x
    torch.manual_seed(0)
    shifted = [random_shift(x.repeat(8, 1, 1, 1), 2) for _ in range(2)]
    assert shifted[0].shape == (16, 3, 8, 8)
    assert not torch.equal(shifted[0], shifted[1])
    assert len({tuple(s.flatten().tolist()) for s in shifted[0][::2]}) > 1  # images shift differently
    # every output is a whole-pixel crop of the replicate-padded input
    padded = torch.nn.functional.pad(x[:1], (2, 2, 2, 2), mode="replicate")
    crops = {tuple(padded[0, :, i:i + 8, j:j + 8].flatten().tolist()) for i in range(5) for j in range(5)}
    assert all(tuple(s.flatten().tolist()) in crops for s in shifted[0][::2])


def test_soft_update_moves_targets_by_tau():
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = copy.deepcopy(target)
    soft_update(target, online, 0.005)
    for t, b, o in zip(target.parameters(), before.parameters(), online.parameters()):
        torch.testing.assert_close(t, 0.995 * b + 0.005 * o)


def test_temperature_grows_when_entropy_is_below_target():
    agent = build_agent("drq", TINY_AGENT, (16, 16, 3), 2, "cpu")
    assert agent.temperature.alpha.item() == pytest.approx(0.1)
    low_entropy_log_prob = torch.full((4,), 5.0)  # entropy -5 < target -2
    agent.step("temperature", agent.temperature_loss(low_entropy_log_prob))
    assert agent.temperature.alpha.item() > 0.1
    agent.step("temperature", agent.temperature_loss(torch.full((4,), -20.0)))  # entropy 20 > -2
    agent.step("temperature", agent.temperature_loss(torch.full((4,), -20.0)))
    assert agent.temperature.alpha.item() < 0.1 + 1e-6


def test_rnd_reward_is_added_with_the_weights():
    agent = build_agent("drqv2", {**TINY_AGENT, "rnd": True, "task_weight": 2.0, "rnd_weight": 0.5}, (16, 16, 3), 1,
                        "cpu")
    rng = np.random.default_rng(0)
    batch = {"reward": rng.normal(size=4).astype(np.float32),
             "next_obs": rng.integers(0, 256, (4, 2, 16, 16, 3), dtype=np.uint8)}
    expected_rnd = copy.deepcopy(agent.rnd)(Transition(next_obs=torch.from_numpy(batch["next_obs"][:, -1])),
                                            learn=False)
    reward, metrics = agent.training_reward(batch)
    torch.testing.assert_close(reward, 2.0 * torch.from_numpy(batch["reward"]) + 0.5 * expected_rnd)
    assert metrics["reward/rnd"] == pytest.approx(expected_rnd.mean().item())


@pytest.mark.parametrize("agent", ["drq", "drqv2"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, agent, same_state):
    """20 steps, then 16 more from the checkpoint (mid-episode: the envs replay their actions) == 36 at once."""
    config = tiny_config(agent)
    config["agent"]["rnd"] = True
    whole = train_agent(config, tmp_path / "whole", device="cpu", progress=False)
    first = train_agent({**config, "train": {**config["train"], "steps": 20}}, tmp_path / "split", device="cpu",
                        progress=False)
    assert first["step"] == 20 and first["updates"] > 0
    split = train_agent(config, tmp_path / "split", device="cpu", progress=False)
    assert whole == split
    checkpoints = [torch.load(tmp_path / run / "checkpoint.pt", weights_only=True) for run in ("whole", "split")]
    same_state(checkpoints[0]["agent"], checkpoints[1]["agent"])
    for key in ("episodes", "histories", "returns", "agent_state"):
        same_state(checkpoints[0][key], checkpoints[1][key])
    replays = [np.load(tmp_path / run / "replay_36.npz") for run in ("whole", "split")]
    for key in replays[0].files:
        np.testing.assert_array_equal(replays[0][key], replays[1][key], err_msg=key)
    assert sorted(p.name for p in (tmp_path / "split").glob("replay_*.npz")) == ["replay_36.npz"]


def test_viper_reward_run_reports_task_return(tmp_path, viper_model_dir):
    config = tiny_config("drq", steps=16, size=32, reward="viper", video_model=str(viper_model_dir))
    config["agent"]["bf16"] = True
    metrics = train_agent(config, tmp_path / "viper", device="cpu", progress=False)
    assert metrics["step"] == 16 and metrics["updates"] > 0
    assert np.isfinite(metrics["eval_return"]) and metrics["eval_task_return"] > 0
    assert metrics["eval_return"] != pytest.approx(metrics["eval_task_return"])


def test_train_agent_and_evaluate_commands(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train-agent", "--help"])
    assert exit_info.value.code == 0
    assert "--video-model" in capsys.readouterr().out
    args = ["train-agent", "--agent", "drqv2", "--env", ENV, "--steps", "8", "--logdir", str(tmp_path / "run"),
            "--no-progress", "env.kwargs.size=16", "env.kwargs.max_episode_steps=12", "train.random_steps=4",
            "train.eval_episodes=0", "train.replay_capacity=50", "agent.batch_size=4", "agent.encoder_channels=[8]",
            "agent.hidden=16"]
    assert main(args) == 0
    assert (tmp_path / "run" / "agent.pt").is_file()
    assert main([*args, "agent.hidden=32"]) == 2  # another config in the same folder
    assert "agent.hidden" in capsys.readouterr().err
    result = tmp_path / "eval.json"
    assert main(["evaluate", "--agent", str(tmp_path / "run"), "--episodes", "1", "--json", str(result)]) == 0
    assert json.loads(result.read_text())["length"] == 12


def viper_config(steps: int, video_model, **viper) -> dict:
    """:func:`tiny_config` on 32x32 frames with the VIPER reward of ``video_model`` (options ``viper``)."""
    return tiny_config("drq", steps=steps, size=32, reward="viper", video_model=str(video_model), viper=viper)


def replayed_episodes(replay) -> list[dict[str, np.ndarray]]:
    """Each env's episodes in a replay that has not wrapped around: frames and rewards from a reset frame on."""
    episodes = []
    for env, count in enumerate(replay.count):
        rows = slice(env * replay.ring, env * replay.ring + int(count))
        images, rewards, first = (replay.arrays[key][rows] for key in ("image", "reward", "is_first"))
        starts = [*np.flatnonzero(first), len(first)]
        episodes += [{"image": images[a:b], "reward": rewards[a:b]} for a, b in zip(starts, starts[1:]) if b - a > 1]
    return episodes


def test_viper_training_envs_are_one_batched_wrapper_rewarding_as_relabel(tmp_path, viper_model_dir):
    """Two envs, 30 steps (one episode of 12 each, then 3 steps more): one scorer call of both envs per step, and
    the stored rewards are the offline relabelling of the stored episodes."""
    from worldrl.training.agent import AgentTrainer
    from worldrl.wrappers import VIPERRewardVector, relabel

    config = viper_config(30, viper_model_dir)
    trainer = AgentTrainer(config, tmp_path / "run", device="cpu", progress=False)
    assert isinstance(trainer.envs, VIPERRewardVector) and trainer.envs.num_envs == 2
    scorer, calls = trainer.envs.scorer, []
    observe = scorer.observe
    scorer.observe = lambda codes, rows=None: (calls.append(len(codes)), observe(codes, rows))[1]
    assert trainer.train()["step"] == 30
    assert calls == [2] * 15
    episodes = replayed_episodes(trainer.replay)
    assert [len(e["image"]) for e in episodes] == [13, 4, 13, 4]
    for episode, logp in zip(episodes, relabel(episodes, viper_model_dir, device="cpu")):
        np.testing.assert_allclose(episode["reward"][1:], logp[1:], rtol=1e-4, atol=1e-3)


def test_resumed_viper_run_equals_uninterrupted_run(tmp_path, viper_model_dir, same_state):
    """Normalised VIPER reward with an RND bonus: 20 steps, then 16 more from the checkpoint (mid-episode: the
    replayed frames rebuild the contexts, the statistics and the bonus come back) == 36 at once."""
    config = viper_config(36, viper_model_dir, normalize=True, exploration="rnd")
    whole = train_agent(config, tmp_path / "whole", device="cpu", progress=False)
    train_agent({**config, "train": {**config["train"], "steps": 20}}, tmp_path / "split", device="cpu",
                progress=False)
    split = train_agent(config, tmp_path / "split", device="cpu", progress=False)
    assert whole == split
    checkpoints = [torch.load(tmp_path / run / "checkpoint.pt", weights_only=True) for run in ("whole", "split")]
    assert checkpoints[0]["viper"]["scorer"]["normalizer"] is not None
    for key in ("agent", "viper", "histories", "returns"):
        same_state(checkpoints[0][key], checkpoints[1][key], key)
    replays = [np.load(tmp_path / run / "replay_36.npz") for run in ("whole", "split")]
    for key in replays[0].files:
        np.testing.assert_array_equal(replays[0][key], replays[1][key], err_msg=key)


def test_checkpoint_with_a_viper_reward_per_env_resumes_only_without_their_state(tmp_path, viper_model_dir):
    """A checkpoint of the earlier layout (``scorers``: one per env) resumes exactly when the scorers held nothing;
    with per-env running statistics it fails, saying why."""
    from worldrl.training.common import ConfigMismatchError

    config = viper_config(28, viper_model_dir)
    whole = train_agent(config, tmp_path / "whole", device="cpu", progress=False)
    train_agent({**config, "train": {**config["train"], "steps": 20}}, tmp_path / "split", device="cpu",
                progress=False)
    path = tmp_path / "split" / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["viper"]
    normalizer = {"mean": torch.zeros(()), "var": torch.ones(()), "count": torch.ones(())}
    torch.save({**checkpoint, "scorers": [[{"normalizer": normalizer}]] * 2}, path)
    with pytest.raises(ConfigMismatchError, match="one VIPER reward per env"):
        train_agent(config, tmp_path / "split", device="cpu", progress=False)
    torch.save({**checkpoint, "scorers": [[{"normalizer": None}], [{"normalizer": None}]]}, path)
    assert train_agent(config, tmp_path / "split", device="cpu", progress=False) == whole
