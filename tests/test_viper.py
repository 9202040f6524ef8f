"""VIPER reward wrappers on a real DMC env with a tiny (random-weight) tokenizer and video model."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from worldrl.models.checkpoint import CheckpointError
from worldrl.wrappers import VIPERReward, VIPERRewardVector, relabel

ENV = "worldrl/dmc-cartpole_balance-v0"
SIZE = 32


def make_env(steps: int = 6, **kwargs):
    return gym.make(ENV, size=SIZE, max_episode_steps=steps, **kwargs)


def frame_bonus(transition):
    """A deterministic stand-in bonus: the mean brightness of the next frame."""
    return transition.next_obs.float().mean((1, 2, 3)) / 255


def run_single(env, episodes: int, seed: int = 0):
    """Rewards, infos and frames of ``episodes`` seeded random episodes."""
    env.action_space.seed(seed)
    rewards, infos, frames = [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        episode_frames, episode_rewards, done = [obs], [], False
        while not done:
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            episode_frames.append(obs)
            episode_rewards.append(reward)
            infos.append(info)
            done = terminated or truncated
        frames.append(np.stack(episode_frames))
        rewards.append(np.array(episode_rewards))
    return rewards, infos, frames


def test_reward_is_next_frame_likelihood_plus_beta_bonus_across_resets(viper_model_dir):
    env = VIPERReward(make_env(), video_model=viper_model_dir, beta=0.5, exploration=frame_bonus, device="cpu")
    rewards, infos, frames = run_single(env, episodes=2)
    scorer = env.scorer
    for episode_rewards, episode_frames in zip(rewards, frames):
        codes = scorer.encode(episode_frames)
        logp = scorer.model.log_prob(codes[None]).frame[0].double().numpy()
        bonus = episode_frames[1:].reshape(len(episode_frames) - 1, -1).mean(1) / 255
        np.testing.assert_allclose(episode_rewards, logp[1:] + 0.5 * bonus, rtol=1e-4, atol=1e-3)
    assert all(set(info) >= {"task_reward", "viper_logp", "expl"} for info in infos)
    assert infos[0]["task_reward"] != pytest.approx(rewards[0][0])


def test_relabel_equals_online_rewards(viper_model_dir):
    env = VIPERReward(make_env(), video_model=viper_model_dir, beta=0.0, device="cpu")
    rewards, _, frames = run_single(env, episodes=2, seed=3)
    relabelled = relabel([{"image": f} for f in frames], viper_model_dir, device="cpu")
    for online, offline in zip(rewards, relabelled):
        assert np.isnan(offline[0])
        np.testing.assert_allclose(online, offline[1:], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_wrapper_matches_relabelling_of_each_episode(viper_model_dir, mode):
    envs = SyncVectorEnv([lambda: make_env(steps=4), lambda: make_env(steps=6)], autoreset_mode=mode)
    envs = VIPERRewardVector(envs, video_model=viper_model_dir, beta=0.0, device="cpu")
    envs.action_space.seed(0)
    obs, _ = envs.reset(seed=0)
    episodes = [[[obs[i]]] for i in range(2)]
    rewards = [[[]] for _ in range(2)]
    ended = np.zeros(2, dtype=bool)
    for _ in range(13):
        obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
        done = terminated | truncated
        for i in range(2):
            if mode == AutoresetMode.NEXT_STEP and ended[i]:  # the reset frame: no reward, new context
                assert reward[i] == 0 and np.isnan(info["viper_logp"][i])
                episodes[i].append([obs[i]])
                rewards[i].append([])
                continue
            frame = info["final_obs"][i] if mode == AutoresetMode.SAME_STEP and done[i] else obs[i]
            episodes[i][-1].append(frame)
            rewards[i][-1].append(reward[i])
            if mode == AutoresetMode.SAME_STEP and done[i]:
                episodes[i].append([obs[i]])
                rewards[i].append([])
        ended = done
    checked = 0
    for i in range(2):
        for frames, online in zip(episodes[i], rewards[i]):
            if len(frames) < 2:
                continue
            offline = relabel([{"image": np.stack(frames)}], viper_model_dir, device="cpu")[0]
            np.testing.assert_allclose(online, offline[1:], rtol=1e-4, atol=1e-3)
            checked += 1
    assert checked >= 4  # at least two complete episodes per env, across autoresets


def test_vector_wrapper_with_masked_resets_and_replayed_context(viper_model_dir):
    """Autoreset off, as train-agent runs it: finished rows restart through ``reset(options={"reset_mask": ...})``
    while the others go on (rewards equal the relabelling of each episode); a second wrapper whose sub-envs replay
    each row's actions since its reset outside it, fed through ``add_context``, then rewards exactly as the first."""

    def make():
        envs = SyncVectorEnv([lambda: make_env(steps=4), lambda: make_env(steps=6)],
                             autoreset_mode=AutoresetMode.DISABLED)
        return VIPERRewardVector(envs, video_model=viper_model_dir, beta=0.0, device="cpu")

    envs = make()
    envs.action_space.seed(0)
    seeds = [0, 1]
    obs, _ = envs.reset(seed=seeds)
    episodes, rewards, actions = [[[obs[i]]] for i in range(2)], [[[]] for _ in range(2)], [[], []]
    for step in range(9):
        action = envs.action_space.sample()
        obs, reward, terminated, truncated, _ = envs.step(action)
        for i in range(2):
            episodes[i][-1].append(obs[i])
            rewards[i][-1].append(reward[i])
            actions[i].append(action[i])
        done = terminated | truncated
        if done.any():
            seeds = [10 + step if done[i] else seeds[i] for i in range(2)]
            obs, _ = envs.reset(seed=[seed if d else None for seed, d in zip(seeds, done)],
                                options={"reset_mask": done})
            for i in np.flatnonzero(done):
                episodes[i].append([obs[i]])
                rewards[i].append([])
                actions[i] = []
    assert [len(a) for a in actions] == [1, 3]
    for i in range(2):
        for frames, online in zip(episodes[i], rewards[i]):
            if len(frames) > 1:
                offline = relabel([{"image": np.stack(frames)}], viper_model_dir, device="cpu")[0]
                np.testing.assert_allclose(online, offline[1:], rtol=1e-4, atol=1e-3)
    other = make()
    current = np.array(other.reset(seed=seeds)[0])
    for t in range(3):
        rows = np.array([len(a) > t for a in actions])
        for i in np.flatnonzero(rows):
            current[i] = other.unwrapped.envs[i].step(actions[i][t])[0]
        other.add_context(current, rows)
    action = envs.action_space.sample()
    np.testing.assert_array_equal(other.step(action)[1], envs.step(action)[1])


def test_shorter_context_than_the_model_recomputes_windows(viper_model_dir):
    env = VIPERReward(make_env(), video_model=viper_model_dir, context=0, beta=0.0, device="cpu")
    rewards, _, frames = run_single(env, episodes=1)
    codes = env.scorer.encode(frames[0])
    unconditional = [float(env.scorer.model.log_prob(codes[t : t + 1][None]).frame[0, 0]) for t in range(1, 7)]
    np.testing.assert_allclose(rewards[0], unconditional, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match=r"context must be in \[0, 3\]"):
        VIPERReward(make_env(), video_model=viper_model_dir, context=4, device="cpu")
    with pytest.raises(ValueError, match="frame stride 1"):
        VIPERReward(make_env(), video_model=viper_model_dir, stride=4, device="cpu")


def test_wrapped_env_passes_gymnasium_and_sb3_checks(viper_model_dir):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    check_env(VIPERReward(make_env(), video_model=viper_model_dir, device="cpu"), skip_render_check=True)
    sb3_check_env(VIPERReward(make_env(), video_model=viper_model_dir, device="cpu"))


@pytest.mark.parametrize("algorithm", ["PPO", "SAC"])
def test_sb3_trains_on_the_viper_reward(viper_model_dir, algorithm):
    import stable_baselines3

    env = VIPERReward(make_env(steps=8), video_model=viper_model_dir, exploration="rnd", device="cpu")
    kwargs = {"n_steps": 16, "batch_size": 8, "n_epochs": 1} if algorithm == "PPO" else {
        "learning_starts": 8, "batch_size": 8, "buffer_size": 100}
    agent = getattr(stable_baselines3, algorithm)("MlpPolicy", env, seed=0, device="cpu", **kwargs)
    agent.learn(total_timesteps=24)
    assert agent.num_timesteps >= 24


def test_gym_make_with_the_viper_reward(viper_model_dir):
    env = gym.make(ENV, size=SIZE, max_episode_steps=4, reward="viper", video_model=str(viper_model_dir),
                   viper={"beta": 0.0, "device": "cpu"})
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert reward == pytest.approx(info["viper_logp"]) and reward < 0
    with pytest.raises(TypeError, match="needs video_model"):
        gym.make(ENV, reward="viper")


def test_errors_name_the_problem(viper_model_dir, tmp_path):
    with pytest.raises(ValueError, match=r"\(48, 48, 3\) but the video model's tokenizer takes \(32, 32, 3\)"):
        VIPERReward(gym.make(ENV, size=48), video_model=viper_model_dir, device="cpu")
    with pytest.raises(TypeError, match="obs_type='pixels'"):
        VIPERReward(gym.make(ENV, obs_type="state"), video_model=viper_model_dir, device="cpu")
    with pytest.raises(TypeError, match="obs_key='pixels'"):
        VIPERReward(make_env(obs_type="pixels+state"), video_model=viper_model_dir, device="cpu")
    env = VIPERReward(make_env(obs_type="pixels+state"), video_model=viper_model_dir, obs_key="pixels", device="cpu")
    env.reset(seed=0)
    assert np.isfinite(env.step(env.action_space.sample())[1])
    with pytest.raises(CheckpointError, match="not found"):
        VIPERReward(make_env(), video_model=tmp_path / "missing", device="cpu")
    (tmp_path / "broken").mkdir()
    with pytest.raises(CheckpointError, match="video_model.json is missing"):
        VIPERReward(make_env(), video_model=tmp_path / "broken", tokenizer=viper_model_dir / "tokenizer", device="cpu")
    with pytest.raises(ValueError, match="no task conditioning"):
        VIPERReward(make_env(), video_model=viper_model_dir, task_id=1, device="cpu")
    with pytest.raises(gym.error.ResetNeeded):
        VIPERReward(make_env(), video_model=viper_model_dir, device="cpu").step(np.zeros(1, dtype=np.float32))


def test_normalized_rewards_and_exploration_bonus(viper_model_dir):
    env = VIPERReward(make_env(), video_model=viper_model_dir, beta=1.0, exploration="rnd", normalize=True,
                      device="cpu")
    rewards, infos, _ = run_single(env, episodes=2)
    assert all(np.isfinite(r).all() for r in rewards)
    assert all(info["expl"] > 0 for info in infos)
    assert float(env.scorer.normalizer.mean) == pytest.approx(np.mean([i["viper_logp"] for i in infos]), rel=1e-3)


@pytest.mark.parametrize("context", [3, 2])
def test_context_frames_are_observed_without_scoring(viper_model_dir, context):
    """``add_context`` (reset frames, a simulator's burn-in) leaves the scorer as ``observe`` does; a shorter
    context scores each frame given exactly its last ``context`` frames."""
    import torch

    from worldrl.wrappers.viper import VIPERScorer

    frames = np.random.default_rng(0).integers(0, 256, (5, 2, SIZE, SIZE, 3), dtype=np.uint8)
    scorers = [VIPERScorer(viper_model_dir, (SIZE, SIZE, 3), num_envs=2, context=context, device="cpu")
               for _ in range(2)]
    codes = [scorers[0].encode(f) for f in frames]
    scorers[0].observe(codes[0])
    scorers[1].add_context(codes[0])
    scorers[0].observe(codes[1], rows=np.array([True, False]))
    scorers[1].add_context(codes[1], rows=np.array([True, False]))
    for t in range(2, 5):
        logp = scorers[0].observe(codes[t])
        np.testing.assert_array_equal(logp, scorers[1].observe(codes[t]))
    seen = torch.stack([codes[0][1], *[c[1] for c in codes[2:]]])[None]  # row 1 skipped frame 1
    expected = float(scorers[0].model.log_prob(seen[:, -(context + 1) :]).frame[0, -1])
    np.testing.assert_allclose(logp[1], expected, rtol=1e-4, atol=1e-4)
