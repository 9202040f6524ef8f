"""Task oracles: the policy protocol, scripted Atari RAM oracles, SAC state oracles and ``worldrl train-oracle``."""

import json

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import SAC

from worldrl.cli import build_parser, main
from worldrl.envs.atari import AtariEnv
from worldrl.oracles import RandomPolicy, SB3Policy, ZeroPolicy, as_policy, evaluate_policy_return, load_oracle
from worldrl.oracles.atari import BreakoutOracle, FreewayOracle, PongOracle, scripted_oracle

CARTPOLE = "worldrl/dmc-cartpole_balance-v0"


def reward_sum(game, policy, steps, seed=0):
    """Total reward of ``steps`` agent steps (across game overs) with sticky actions, as the env defaults."""
    env = AtariEnv(game, obs_type="state")
    obs, _ = env.reset(seed=seed)
    total = 0.0
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(int(policy(obs[None])[0]))
        total += reward
        if terminated or truncated:
            obs, _ = env.reset()
    return total


def test_pong_oracle_wins_points_random_loses_them():
    oracle = reward_sum("pong", scripted_oracle("pong"), 1500)
    random = reward_sum("pong", as_policy("random", gym.spaces.Discrete(6), seed=0), 1500)
    assert random < -5
    assert oracle > 0 and oracle > random + 10


def test_breakout_oracle_beats_random_on_capped_episodes():
    breakout = "worldrl/atari-breakout-v0"
    oracle = evaluate_policy_return(breakout, "scripted:breakout", episodes=2, max_episode_steps=1000)
    random = evaluate_policy_return(breakout, "random", episodes=2, max_episode_steps=1000)
    assert len(oracle["returns"]) == len(random["returns"]) == 2
    assert max(oracle["lengths"]) <= 1000
    assert oracle["mean"] > 10 and oracle["mean"] > 5 * max(random["mean"], 1.0)


def test_freeway_oracle_crosses_the_road():
    assert reward_sum("freeway", scripted_oracle("freeway"), 600) >= 4


def test_oracles_find_their_actions_by_name():
    full = AtariEnv("pong", full_action_space=True).get_action_meanings()
    oracle = PongOracle(full)
    ram = np.zeros((3, 128), np.uint8)
    ram[:, 51] = [20, 118, 200]  # paddle far above, at, far below its resting target
    actions = oracle({"pixels": np.zeros((3, 8, 8, 3), np.uint8), "state": ram})
    assert [full[a] for a in actions] == ["LEFT", "NOOP", "RIGHT"]
    assert oracle.required_obs_type == "pixels+state"
    with pytest.raises(ValueError, match=r"needs the actions \['FIRE'\]"):
        BreakoutOracle(["NOOP", "RIGHT", "LEFT"])


def test_breakout_oracle_fires_without_a_ball():
    oracle = scripted_oracle("breakout")
    assert oracle.action_meanings[oracle(np.zeros((2, 128), np.uint8))[0]] == "FIRE"


def test_oracle_input_errors():
    with pytest.raises(ValueError, match="obs_type='pixels\\+state'"):
        scripted_oracle("pong")({"pixels": np.zeros((1, 64, 64, 3), np.uint8)})
    with pytest.raises(ValueError, match=r"\[N, 128\].*got shape \(64, 64, 3\)"):
        scripted_oracle("pong")(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="no scripted oracle for 'tetris'.*breakout, freeway, pong"):
        load_oracle("scripted:tetris")
    with pytest.raises(ValueError, match="minimal action set"):
        load_oracle("scripted:pong", action_space=gym.spaces.Discrete(18))


def test_as_policy_random_is_seeded_and_batched():
    space = gym.spaces.Box(-1, 1, (2,), np.float32)
    obs = {"state": np.zeros((5, 3))}
    a, b = as_policy("random", space, seed=1)(obs), as_policy("random", space, seed=1)(obs)
    assert a.shape == (5, 2) and np.array_equal(a, b) and all(x in space for x in a)
    assert isinstance(as_policy("random", gym.spaces.Discrete(4)), RandomPolicy)
    assert as_policy("random", gym.spaces.Discrete(4))(np.zeros((3, 7))).shape == (3,)
    with pytest.raises(ValueError, match="action_space"):
        as_policy("random")


def test_zero_policy_does_nothing_within_the_action_bounds():
    obs = np.zeros((3, 5))
    assert np.array_equal(as_policy("zero", gym.spaces.Box(-1, 1, (2,), np.float32))(obs), np.zeros((3, 2)))
    assert np.array_equal(ZeroPolicy(gym.spaces.Box(0.5, 2.0, (1,), np.float32))(obs), np.full((3, 1), 0.5))
    assert np.array_equal(ZeroPolicy(gym.spaces.Discrete(4, start=1))(obs), [1, 1, 1])
    with pytest.raises(ValueError, match="Box or Discrete"):
        ZeroPolicy(gym.spaces.MultiBinary(3))


def test_doing_nothing_outscores_random_actions_on_cartpole_balance():
    """cartpole_balance pays for small controls and starts upright: the baseline a VIPER agent must beat."""
    kwargs = {"obs_type": "state"}
    zero = evaluate_policy_return("worldrl/dmc-cartpole_balance-v0", "zero", 2, 0, kwargs, max_episode_steps=100)
    random = evaluate_policy_return("worldrl/dmc-cartpole_balance-v0", "random", 2, 0, kwargs, max_episode_steps=100)
    assert zero["mean"] > random["mean"] + 10 and zero["std"] < 5


def test_as_policy_callable_and_errors():
    def policy(obs):
        return np.zeros(len(obs), int)

    assert as_policy(policy) is policy
    assert isinstance(as_policy("scripted:freeway"), FreewayOracle)
    with pytest.raises(TypeError, match="cannot make a policy from int"):
        as_policy(42)
    with pytest.raises(FileNotFoundError, match="no oracle at"):
        as_policy("/no/such/oracle")


def test_as_policy_sb3_model_reads_the_state_of_a_dict():
    env = gym.make(CARTPOLE, obs_type="state")
    model = SAC("MlpPolicy", env, learning_starts=0, buffer_size=100, seed=0, device="cpu")
    policy = as_policy(model)
    assert isinstance(policy, SB3Policy) and policy.required_obs_type == "pixels+state"
    state = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    actions = policy({"pixels": np.zeros((3, 64, 64, 3), np.uint8), "state": state})
    assert actions.shape == (3, 1)
    assert np.allclose(actions, model.predict(state, deterministic=True)[0])
    assert np.allclose(policy(state), actions)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny SAC oracle (300 steps) and its output folder."""
    out = tmp_path_factory.mktemp("oracle")
    info = train_state_oracle_quietly(out, steps=300)
    return out, info


def train_state_oracle_quietly(out, steps, seed=0):
    from worldrl.oracles.sac import train_state_oracle

    return train_state_oracle(
        CARTPOLE, steps, out, seed=seed, learning_starts=100, checkpoint_every=100, eval_episodes=2, progress=False
    )


def test_sac_oracle_writes_model_info_logs_and_checkpoint(trained):
    out, info = trained
    assert (out / "oracle.zip").is_file() and json.loads((out / "oracle.json").read_text()) == info
    assert info["env_id"] == CARTPOLE and info["steps"] == 300 and info["seed"] == 0
    assert info["eval"]["episodes"] == 2 and len(info["eval"]["returns"]) == 2
    assert info["eval"]["mean"] == pytest.approx(np.mean(info["eval"]["returns"]))
    assert 0 <= info["eval"]["mean"] <= 500 and info["train_time_s"] > 0
    assert info["hyperparameters"]["learning_starts"] == 100 and info["hyperparameters"]["batch_size"] == 256
    assert list((out / "tb").rglob("events.out.tfevents*"))
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert latest["num_timesteps"] == 300
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest.json", "model_300.zip", "replay_300.pkl"]
    assert not list(out.rglob("*.tmp"))


def test_load_oracle_round_trip(trained):
    out, info = trained
    policy = load_oracle(out)
    assert isinstance(policy, SB3Policy) and policy.metadata == info
    assert policy.required_obs_type == "pixels+state"
    model = SAC.load(out / "oracle.zip", device="cpu")
    state = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    actions = policy({"pixels": np.zeros((4, 64, 64, 3), np.uint8), "state": state})
    assert actions.shape == (4, 1) and np.allclose(actions, model.predict(state, deterministic=True)[0])
    assert np.allclose(as_policy(str(out / "oracle.zip"))(state), actions)
    with pytest.raises(ValueError, match="acts in Box"):
        load_oracle(out, action_space=gym.spaces.Box(-1, 1, (2,)))


def test_sac_oracle_resumes_from_its_checkpoint(trained, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "resume"
    shutil.copytree(trained[0], out)
    learned = []
    original = SAC.learn

    def spy(self, total_timesteps, **kwargs):
        learned.append((self.num_timesteps, total_timesteps, kwargs["reset_num_timesteps"]))
        return original(self, total_timesteps, **kwargs)

    monkeypatch.setattr(SAC, "learn", spy)
    info = train_state_oracle_quietly(out, steps=350)
    assert learned == [(300, 50, False)]  # continued from step 300, 50 new steps
    assert info["steps"] == 350 and SAC.load(out / "oracle.zip", device="cpu").num_timesteps == 350
    assert info["train_time_s"] > trained[1]["train_time_s"]
    assert info["hyperparameters"]["buffer_size"] == 300  # the checkpoint's, kept on resume
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["num_timesteps"] == 350
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest.json", "model_350.zip", "replay_350.pkl"]
    with pytest.raises(ValueError, match="holds a checkpoint of"):
        train_state_oracle_quietly(out, steps=400, seed=1)


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train-oracle", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: worldrl train-oracle" in out and "--eval-episodes" in out and "scripted" in out


def test_cli_atari_reports_the_scripted_oracle(tmp_path, capsys):
    args = ["--env", "worldrl/atari-pong-v0", "--eval-episodes", "1", "--max-episode-steps", "300",
            "--out", str(tmp_path)]
    assert main(["train-oracle", *args]) == 0
    captured = capsys.readouterr()
    assert "scripted from the console RAM" in captured.err and "--policy scripted:pong" in captured.out
    info = json.loads((tmp_path / "oracle.json").read_text())
    assert info["policy"] == "scripted:pong" and len(info["eval"]["returns"]) == 1
    assert isinstance(load_oracle(tmp_path), PongOracle)
    assert main(["train-oracle", "--env", "worldrl/atari-tetris-v0"]) == 2
    assert "no scripted oracle for 'tetris'" in capsys.readouterr().err


def test_cli_errors(capsys):
    assert main(["train-oracle", "--env", CARTPOLE]) == 2
    assert "--out is required" in capsys.readouterr().err
    assert main(["train-oracle", "--env", "worldrl/dmc-cartpole_balanse-v0", "--out", "x"]) == 2
    assert "closest: worldrl/dmc-cartpole_balance-v0" in capsys.readouterr().err
