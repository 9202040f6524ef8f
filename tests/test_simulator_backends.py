"""``worldrl/sim-v0`` backends beyond VideoGPT: a DreamerV3 run's world model, and an action-conditioned TECO."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from test_simulator import REAL, SIM, random_episodes, train_in_simulator_and_evaluate
from test_train_video_model import one_thread, save_tokenizer  # noqa: F401  (one_thread: autouse)

from worldrl.cli import main
from worldrl.config import load_config
from worldrl.envs.simulator import WorldModelEnv, WorldModelVectorEnv
from worldrl.training import train_video_model
from worldrl.training.agent import load_agent

DREAMER = ["env.kwargs.size=32", "env.kwargs.max_episode_steps=12", "train.random_steps=16",
           "train.replay_capacity=100", "train.eval_episodes=1", "train.eval_every=1000", "train.checkpoint_every=1000",
           "train.log_every=1000", "train.video_every=0", "train.train_ratio=32", "agent.batch_size=4",
           "agent.batch_length=8", "agent.world_model.deter=32", "agent.world_model.units=32",
           "agent.world_model.cnn_depth=4", "agent.world_model.reward_bins=31", "agent.behavior.units=16",
           "agent.behavior.critic_bins=31", "agent.behavior.horizon=4"]
"""The CPU preset shrunk further (GRU 32, CNN depth 4, 31 bins) on 32x32 cartpole with 12-step episodes."""
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TECO = ["model.codebook_size=16", "model.latent_shape=[4,4]", "model.context=3", "model.embed_dim=8",
        "model.depths=[16]", "model.encoder_blocks=0", "model.decoder_blocks=1", "model.quantizer.codebook_size=16",
        "model.quantizer.dim=8", "model.downsample=2", "model.transformer.hidden=32", "model.transformer.ffn=64",
        "model.transformer.heads=2", "model.transformer.layers=2", "model.prior.hidden=32", "model.prior.ffn=64",
        "model.prior.heads=2", "model.prior.layers=1", "model.sample_steps=2", "model.revise_rounds=0",
        "model.action_dim=1", "train.batch_size=4", "train.steps=20", "train.log_every=10", "train.sample_every=0",
        "train.eval_every=1000", "train.checkpoint_every=1000", "train.val_fraction=0", "heads.reward=true",
        "heads.continue=true", "heads.units=16", "heads.layers=1"]
"""A TECO on the 4x4 codes of the test tokenizer (z 4x4, one 2x2 temporal token map), with both heads."""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return random_episodes(tmp_path_factory.mktemp("starts") / "data", 3)


@pytest.fixture(scope="module")
def dreamer(tmp_path_factory, data):
    """A DreamerV3 run of 40 steps on 32x32 cartpole (about 3 s) and the simulator's arguments for it."""
    run = tmp_path_factory.mktemp("dreamer") / "run"
    args = ["train-agent", "--config", str(CONFIGS / "agents" / "dreamerv3_cpu.yaml"), "--env", REAL, "--steps", "40",
            "--logdir", str(run), "--no-progress", "--device", "cpu", *DREAMER]
    assert main(args) == 0
    return {"model": str(run), "start_frames": str(data), "device": "cpu"}


def test_dreamer_simulator_spaces_check_env_and_render(dreamer):
    env = gym.make(SIM, **dreamer)
    assert env.observation_space == gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)
    assert env.action_space == gym.make(REAL, size=32).action_space  # read from the weights, no env made
    assert env.unwrapped.vector.horizon == 12  # the run's max_episode_steps
    obs, _ = env.reset(seed=0)
    assert np.array_equal(env.render(), obs)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert np.array_equal(env.render(), obs) and 0 <= info["continue"] <= 1 and info["task_reward"] == reward
    check_env(env.unwrapped, skip_render_check=False)
    same = WorldModelEnv(model=f"{dreamer['model']}/agent.pt", start_frames=dreamer["start_frames"], device="cpu")
    assert np.array_equal(same.reset(seed=0)[0], env.reset(seed=0)[0])  # agent.pt names the same run


def test_dreamer_vector_env_steps_all_rows_at_once_and_equals_single_envs(dreamer):
    """At temperature 0 (latent modes) a row equals the single env of its seed, frames up to rounding."""
    envs = gym.make_vec(SIM, num_envs=3, vectorization_mode="vector_entry_point", temperature=0, terminate=False,
                        **dreamer)
    assert isinstance(envs, WorldModelVectorEnv)
    batched, rewards, calls = [envs.reset(seed=5)[0]], [], []
    img_step = envs.model.rssm.img_step
    envs.model.rssm.img_step = lambda state, *args: calls.append(len(state["deter"])) or img_step(state, *args)
    actions = np.random.default_rng(0).uniform(-1, 1, (6, 3, 1)).astype(np.float32)
    for action in actions:
        obs, reward, *_ = envs.step(action)
        batched.append(obs)
        rewards.append(reward)
    assert calls == [3] * 6
    for row in range(3):
        env = WorldModelEnv(temperature=0, terminate=False, **dreamer)
        single, single_rewards = [env.reset(seed=5 + row)[0]], []
        for action in actions:
            obs, reward, *_ = env.step(action[row])
            single.append(obs)
            single_rewards.append(reward)
        assert all(np.abs(a[row].astype(int) - b).max() <= 1 for a, b in zip(batched, single))
        np.testing.assert_allclose([r[row] for r in rewards], single_rewards, rtol=1e-4, atol=1e-6)


def test_dreamer_rewards_continues_and_frames_are_the_heads_predictions(dreamer):
    agent, _ = load_agent(dreamer["model"], "cpu")  # loaded apart from the env's, through train-agent's loader
    model = agent.world_model.eval()
    env = WorldModelEnv(temperature=0, terminate=False, **dreamer)
    env.reset(seed=1)
    rewards = []
    for action in np.linspace(-1, 1, 5, dtype=np.float32)[:, None]:
        before = {key: value.clone() for key, value in env.vector.state.items()}
        obs, reward, _, _, info = env.step(action)
        with torch.no_grad():
            state = model.rssm.img_step(before, torch.as_tensor(action[None]), temperature=0)
            feat = model.rssm.feat(state)
            image = ((model.image_decoder(feat) + 0.5) * 255).clamp(0, 255)[0].numpy()
            assert reward == pytest.approx(float(model.reward(feat).mean[0]), rel=1e-5, abs=1e-7)
            assert info["continue"] == pytest.approx(float(torch.sigmoid(model.cont_logits(feat))[0]), rel=1e-5)
        assert np.abs(obs - image).max() <= 0.5 + 1e-3
        rewards.append(reward)
    assert np.std(rewards) > 0


def test_dreamer_viper_reward_action_bounds_and_errors(dreamer, viper_model_dir):
    envs = WorldModelVectorEnv(2, reward="viper", viper_model=str(viper_model_dir), **dreamer)
    envs.reset(seed=0)
    _, reward, _, _, info = envs.step(np.zeros((2, 1), np.float32))
    assert np.isfinite(info["viper_logp"]).all() and np.isfinite(info["task_reward"]).all()
    np.testing.assert_allclose(reward, info["viper_logp"], rtol=1e-6)
    wide = WorldModelEnv(temperature=0, action_space=gym.spaces.Box(-2, 2, (1,), np.float32), **dreamer)
    unit = WorldModelEnv(temperature=0, **dreamer)
    wide.reset(seed=0), unit.reset(seed=0)
    wide.vector.backend.state = {key: value.clone() for key, value in unit.vector.state.items()}
    assert wide.step(np.array([2.0], np.float32))[1] == pytest.approx(unit.step(np.array([1.0], np.float32))[1])
    with pytest.raises(ValueError, match="obs_type='codes' needs a video model on tokenizer codes"):
        WorldModelEnv(obs_type="codes", **dreamer)
    with pytest.raises(ValueError, match="top_k= applies to video models"):
        WorldModelEnv(top_k=4, **dreamer)


def test_agent_trains_in_the_dreamer_simulator_and_evaluates_in_the_real_env(dreamer, tmp_path):
    run, evaluation = train_in_simulator_and_evaluate(dreamer, tmp_path)
    assert evaluation["length"] == 12  # the DreamerV3 run's real env: 32x32, 12 steps
    with pytest.raises(ValueError, match="a 'drq' agent has no world model"):
        WorldModelEnv(model=str(run), start_frames=dreamer["start_frames"], device="cpu")


def test_teco_with_actions_and_heads_is_a_simulator(data, tmp_path):
    config = load_config(CONFIGS / "video" / "teco_cpu.yaml", TECO)
    train_video_model(config, save_tokenizer(tmp_path / "tokenizer"), [str(data)], tmp_path / "run", "cpu",
                      progress=False)
    sim = {"model": str(tmp_path / "run" / "video_model"), "start_frames": str(data), "device": "cpu"}
    env = gym.make(SIM, terminate=False, **sim)
    assert env.action_space == gym.make(REAL, size=32).action_space
    env.reset(seed=0)
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs.shape == (32, 32, 3) and np.isfinite(reward) and 0 <= info["continue"] <= 1
    check_env(env.unwrapped, skip_render_check=False)
    envs = WorldModelVectorEnv(2, obs_type="codes", **sim)
    obs, _ = envs.reset(seed=0)
    obs, reward, *_ = envs.step(np.zeros((2, 1), np.float32))
    assert obs.shape == (2, 4, 4) and obs.dtype == np.int64 and reward.shape == (2,)
