import io
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from test_train_video_model import one_thread, save_tokenizer, tiny  # noqa: F401  (one_thread: autouse)

from worldrl.cli import main
from worldrl.data import EpisodeFolder
from worldrl.data.collect import collect
from worldrl.envs.simulator import WorldModelEnv, WorldModelVectorEnv
from worldrl.models.predictors import load_video_model
from worldrl.models.reward_heads import load_heads
from worldrl.models.tokenizers import load_tokenizer
from worldrl.training import train_video_model
from worldrl.training.agent import AgentTrainer, train_agent

SIM = "worldrl/sim-v0"
REAL = "worldrl/dmc-cartpole_balance-v0"


def random_episodes(path, count: int, size: int = 32):
    rng = np.random.default_rng(0)
    collect(REAL, lambda obs: rng.uniform(-1, 1, size=(1, 1)), count, path,
            env_kwargs={"max_episode_steps": 24, "size": size}, progress=False)
    return path


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Four random 32x32 cartpole episodes and a tiny action-conditioned VideoGPT with reward and continue heads
    trained on them for 300 steps (about 5 s)."""
    root = tmp_path_factory.mktemp("sim")
    data = random_episodes(root / "data", 4)
    config = tiny("model.action_dim=1", "train.steps=300", "train.log_every=100", "train.sample_every=0",
                  "train.eval_every=1000", "train.checkpoint_every=1000", "train.val_fraction=0", "heads.reward=true",
                  "heads.continue=true", "heads.units=32", "heads.layers=1")
    train_video_model(config, save_tokenizer(root / "tokenizer"), [str(data)], root / "run", "cpu", progress=False)
    return {"model": str(root / "run" / "video_model"), "start_frames": str(data), "device": "cpu"}


def test_check_env_spaces_and_render(sim):
    env = gym.make(SIM, **sim)
    assert env.observation_space == gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)
    assert env.action_space == gym.make(REAL, size=32).action_space
    obs, _ = env.reset(seed=0)
    assert np.array_equal(env.render(), obs)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert np.array_equal(env.render(), obs) and {"task_reward", "continue"} <= set(info)
    check_env(env.unwrapped, skip_render_check=False)
    sb3_check_env(env.unwrapped, warn=False)
    codes = gym.make(SIM, obs_type="codes", **sim)
    obs, _ = codes.reset(seed=0)
    assert obs.shape == (4, 4) and obs.dtype == np.int64


def test_reward_head_beats_a_constant_on_real_episodes(sim):
    model, tokenizer, heads = load_video_model(sim["model"]), load_tokenizer(f"{sim['model']}/tokenizer"), load_heads(
        sim["model"])
    episodes = list(EpisodeFolder(sim["start_frames"]))
    rewards = np.concatenate([episode["reward"][1:] for episode in episodes])
    errors = []
    for episode in episodes:
        codes = tokenizer.encode(torch.as_tensor(episode["image"])[None])[0]
        state, predicted = model.init_state(1), []
        for t in range(len(codes)):
            model.step(state, codes[t : t + 1], action=torch.as_tensor(episode["action"][t : t + 1]))
            with torch.no_grad():
                reward, cont = heads(model.frame_features(state))
            predicted.append(float(reward[0]))
            assert 0.9 < float(cont[0]) <= 1.0  # no real frame is terminal
        errors.append(np.abs(np.array(predicted[1:]) - episode["reward"][1:]))
    assert np.concatenate(errors).mean() < 0.8 * np.abs(rewards - np.median(rewards)).mean()


def test_vector_env_steps_all_rows_in_one_call_and_equals_single_envs(sim):
    envs = gym.make_vec(SIM, num_envs=3, vectorization_mode="vector_entry_point", temperature=0, obs_type="codes",
                        **sim)
    assert isinstance(envs, WorldModelVectorEnv)
    calls = {"sample_step": 0, "decode": 0}
    for obj, name in ((envs.model, "sample_step"), (envs.tokenizer, "decode")):
        original = getattr(obj, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        setattr(obj, name, counted)
    actions = np.random.default_rng(0).uniform(-1, 1, (6, 3, 1)).astype(np.float32)
    obs, _ = envs.reset(seed=5)
    batched = [obs]
    rewards = []
    for action in actions:
        obs, reward, *_ = envs.step(action)
        batched.append(obs)
        rewards.append(reward)
    assert calls == {"sample_step": 6, "decode": 7}  # render_mode rgb_array decodes every reset and step
    for row in range(3):
        env = WorldModelEnv(temperature=0, obs_type="codes", **sim)
        single = [env.reset(seed=5 + row)[0]]
        single_rewards = []
        for action in actions:
            obs, reward, *_ = env.step(action[row])
            single.append(obs)
            single_rewards.append(reward)
        assert all(np.array_equal(a[row], b) for a, b in zip(batched, single))
        np.testing.assert_allclose([r[row] for r in rewards], single_rewards, atol=1e-4)


def test_burn_in_frames_come_from_the_dataset(sim):
    tokenizer = load_tokenizer(f"{sim['model']}/tokenizer")
    images = [episode["image"] for episode in EpisodeFolder(sim["start_frames"])]
    first = tokenizer.encode(torch.as_tensor(np.stack([i[:1] for i in images])))[:, 0].numpy()
    every = tokenizer.encode(torch.as_tensor(np.concatenate(images))[None])[0].numpy()
    env = WorldModelEnv(start="first", burn_in=1, obs_type="codes", **sim)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        assert any(np.array_equal(obs, codes) for codes in first)
    env = WorldModelEnv(burn_in=3, obs_type="codes", **sim)
    starts = [env.reset(seed=seed)[0] for seed in range(3)]
    assert all(any(np.array_equal(obs, codes) for codes in every) for obs in starts)


def test_horizon_truncates_and_finished_rows_reset_inside_the_batch(sim):
    envs = WorldModelVectorEnv(2, horizon=4, terminate=False, **sim)
    envs.reset(seed=0)
    for step in range(1, 5):
        _, reward, terminated, truncated, _ = envs.step(np.zeros((2, 1), np.float32))
        assert not terminated.any() and truncated.all() == (step == 4)
    _, reward, terminated, truncated, info = envs.step(np.zeros((2, 1), np.float32))  # the autoreset step
    assert (reward == 0).all() and not (terminated | truncated).any() and (envs.steps == 0).all()
    envs.steps[1] = -2  # rows apart: only row 0 truncates next
    for _ in range(4):
        _, _, _, truncated, _ = envs.step(np.zeros((2, 1), np.float32))
    assert truncated.tolist() == [True, False]
    envs.step(np.zeros((2, 1), np.float32))
    assert envs.steps.tolist() == [0, 3]


def test_continue_head_terminates(sim):
    env = WorldModelEnv(**sim)
    torch.nn.init.constant_(env.vector.heads.cont.out.bias, -20.0)
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(np.zeros(1, np.float32))
    assert terminated and not truncated and info["continue"] < 0.01
    env = WorldModelEnv(terminate=False, **sim)
    torch.nn.init.constant_(env.vector.heads.cont.out.bias, -20.0)
    env.reset(seed=0)
    assert not env.step(np.zeros(1, np.float32))[2]


def test_viper_reward_inside_the_simulator(sim, viper_model_dir):
    envs = gym.make_vec(SIM, num_envs=2, vectorization_mode="vector_entry_point", reward="head+viper",
                        weights={"head": 0.0, "viper": 2.0}, viper_model=str(viper_model_dir), **sim)
    envs.reset(seed=0)
    _, reward, _, _, info = envs.step(np.zeros((2, 1), np.float32))
    assert np.isfinite(info["viper_logp"]).all() and info["viper_logp"].max() < 0
    np.testing.assert_allclose(reward, 2.0 * info["viper_logp"], rtol=1e-6)
    with pytest.raises(ValueError, match="needs viper_model"):
        WorldModelVectorEnv(1, reward="viper", **sim)


def test_errors_name_the_problem(sim, viper_model_dir, tmp_path):
    with pytest.raises(TypeError, match="needs model="):
        gym.make(SIM)
    with pytest.raises(ValueError, match="no action conditioning"):
        WorldModelEnv(model=str(viper_model_dir), start_frames=sim["start_frames"], device="cpu")
    small = random_episodes(tmp_path / "small", 1, size=16)
    with pytest.raises(ValueError, match=r"\(16, 16, 3\) but the model's tokenizer takes \(32, 32, 3\)"):
        WorldModelEnv(model=sim["model"], start_frames=str(small), device="cpu")
    with pytest.raises(ValueError, match="actions must be finite"):
        env = WorldModelEnv(**sim)
        env.reset(seed=0)
        env.step(np.array([np.nan], np.float32))


def train_in_simulator_and_evaluate(env_args: dict, tmp_path: Path) -> tuple[Path, dict]:
    """A tiny DrQ run of 12 steps inside ``worldrl/sim-v0`` made with ``env_args``, then one episode of it in the
    real env (``worldrl evaluate``); the run folder and the evaluation."""
    run = tmp_path / "run"
    args = ["train-agent", "--agent", "drq", "--env", SIM, "--steps", "12", "--logdir", str(run), "--no-progress",
            "--device", "cpu", *[f"--env-arg={key}={value}" for key, value in env_args.items()],
            "--env-arg=horizon=6", "train.random_steps=4", "train.eval_episodes=1", "train.replay_capacity=50",
            "agent.batch_size=4", "agent.encoder_channels=[8]", "agent.feature_dim=8", "agent.hidden=16",
            "agent.frame_stack=2"]
    assert main(args) == 0 and (run / "agent.pt").is_file()
    result = tmp_path / "eval.json"
    assert main(["evaluate", "--agent", str(run), "--env", REAL, "--episodes", "1", "--device", "cpu",
                 "--json", str(result)]) == 0
    return run, json.loads(result.read_text())


def test_agent_trains_in_the_simulator_and_evaluates_in_the_real_env(sim, tmp_path):
    _, evaluation = train_in_simulator_and_evaluate(sim, tmp_path)
    assert evaluation["env"] == REAL and evaluation["length"] == 24  # the recorded real env: 32x32, 24 steps


def test_sb3_ppo_trains_inside_the_simulator_on_the_reward_head(sim):
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    heads = load_heads(sim["model"])  # loaded apart from the env's, to score the imagined frames independently
    tokenizer = load_tokenizer(f"{sim['model']}/tokenizer")
    with torch.no_grad():
        real = torch.as_tensor(np.concatenate([episode["image"] for episode in EpisodeFolder(sim["start_frames"])]))
        starts = tokenizer.decode(tokenizer.encode(real[None]))[0].numpy()  # every possible reset observation

    class Record(gym.Wrapper):
        def __init__(self, env):
            super().__init__(env)
            self.head, self.reset_obs = [], []

        def reset(self, **kwargs):
            obs, info = self.env.reset(**kwargs)
            self.reset_obs.append(obs)
            return obs, info

        def step(self, action):
            result = self.env.step(action)
            vector = self.env.unwrapped.vector
            with torch.no_grad():
                self.head.append(float(heads(vector.model.frame_features(vector.state))[0][0]))
            return result

    class Rewards(BaseCallback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def _on_step(self):
            self.seen.append(float(self.locals["rewards"][0]))
            return True

    env = Record(gym.make(SIM, reward="head", horizon=5, **sim))
    callback = Rewards()
    agent = PPO("MlpPolicy", env, n_steps=16, batch_size=8, n_epochs=1, device="cpu", seed=0,
                policy_kwargs={"net_arch": [16]})
    agent.learn(total_timesteps=32, callback=callback)
    assert agent.num_timesteps == 32 and len(callback.seen) == 32 == len(env.head)
    np.testing.assert_allclose(callback.seen, env.head, rtol=1e-5, atol=1e-6)
    assert np.std(callback.seen) > 0  # the head's varying rewards, not a constant
    monitor = agent.get_env().envs[0]
    assert monitor.get_episode_lengths() == [5] * 6  # truncated at the horizon, then reset
    assert len(env.reset_obs) == 7 and all((obs[None] == starts).all(axis=(1, 2, 3)).any() for obs in env.reset_obs)


def test_state_dict_round_trip_continues_exactly_with_sampling(sim, viper_model_dir):
    """A saved env (through a weights_only checkpoint) loaded into another one steps as the original: frames,
    rewards (head and VIPER), terminations, autoresets, at temperature 1."""
    make = lambda seed: WorldModelVectorEnv(3, horizon=3, reward="head+viper", viper_model=str(viper_model_dir),  # noqa: E731
                                            seed=seed, temperature=1.0, **sim)
    actions = np.random.default_rng(0).uniform(-1, 1, (9, 3, 1)).astype(np.float32)
    original = make(0)
    original.reset(seed=[3, 4, 5])
    for action in actions[:2]:
        original.step(action)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    def rollout(env):
        return [env.step(action) for action in actions[2:]]

    expected = rollout(original)
    loaded = make(1)
    loaded.reset(seed=7)
    loaded.load_state_dict(state)
    original.load_state_dict(state)  # the state is not aliased: loading it twice repeats
    for got in (rollout(loaded), rollout(original)):
        for (obs, reward, terminated, truncated, info), (obs0, reward0, terminated0, truncated0, info0) in zip(
                got, expected):
            assert np.array_equal(obs, obs0) and np.array_equal(reward, reward0)
            assert np.array_equal(terminated, terminated0) and np.array_equal(truncated, truncated0)
            np.testing.assert_array_equal(info["viper_logp"], info0["viper_logp"])
    assert any(step[3].any() for step in expected)  # the rows truncated and restarted inside the window
    other = make(1)
    other.reset(seed=[3, 4, 5])
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(rollout(other), expected))  # sampling matters
    with pytest.raises(ValueError, match="saved state is of 3 rows"):
        WorldModelVectorEnv(2, **sim).load_state_dict(state)


def sim_agent_config(sim, steps: int) -> dict:
    """DrQ in three batched simulator envs with 4-step episodes (resets inside the run), learning after 9 steps."""
    return {
        "agent": {"type": "drq", "batch_size": 4, "encoder_channels": [8], "feature_dim": 8, "hidden": 16,
                  "frame_stack": 2},
        "env": {"id": SIM, "kwargs": {**sim, "horizon": 4}},
        "train": {"steps": steps, "num_envs": 3, "random_steps": 9, "replay_capacity": 60, "eval_episodes": 1,
                  "eval_every": 1000, "checkpoint_every": 1000, "log_every": 9},
    }


def test_train_agent_steps_all_simulator_envs_in_one_model_call(sim, tmp_path):
    trainer = AgentTrainer(sim_agent_config(sim, 12), tmp_path / "run", device="cpu", progress=False)
    assert isinstance(trainer.envs, WorldModelVectorEnv) and trainer.envs.num_envs == 3
    assert trainer.envs.autoreset_mode == AutoresetMode.DISABLED
    calls = []
    model = trainer.envs.model
    original = model.sample_step
    model.sample_step = lambda state, *args, **kwargs: (calls.append(state.batch), original(state, *args, **kwargs))[1]
    assert trainer.train()["step"] == 12
    assert calls == [3] * 4  # one call of all three rows per env step
    assert trainer.episodes.tolist() == [1, 1, 1]  # truncated at the horizon of 4 and reset by the trainer


def test_resumed_simulator_run_equals_uninterrupted_run(sim, tmp_path, same_state):
    """15 steps (mid-episode), then 12 more from the checkpoint's env state == 27 at once, with sampling."""
    whole = train_agent(sim_agent_config(sim, 27), tmp_path / "whole", device="cpu", progress=False)
    first = train_agent(sim_agent_config(sim, 15), tmp_path / "split", device="cpu", progress=False)
    assert first["step"] == 15 and first["updates"] > 0
    checkpoint = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert checkpoint["env_state"]["env"]["steps"].tolist() == [1, 1, 1] and not any(map(len, checkpoint["histories"]))
    split = train_agent(sim_agent_config(sim, 27), tmp_path / "split", device="cpu", progress=False)
    assert whole == split
    checkpoints = [torch.load(tmp_path / run / "checkpoint.pt", weights_only=True) for run in ("whole", "split")]
    for key in ("agent", "episodes", "returns", "agent_state", "env_state"):
        same_state(checkpoints[0][key], checkpoints[1][key])
    replays = [np.load(tmp_path / run / "replay_27.npz") for run in ("whole", "split")]
    for key in replays[0].files:
        np.testing.assert_array_equal(replays[0][key], replays[1][key], err_msg=key)
