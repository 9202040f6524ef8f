import gymnasium as gym
import pytest

import worldrl
from worldrl.envs.registration import closest_ids


def test_suites_register_their_ids():
    for suite, example in [
        ("dmc", "worldrl/dmc-cartpole_balance-v0"),
        ("atari", "worldrl/atari-pong-v0"),
        ("manip", "worldrl/manip-reach_site-v0"),
        ("rlbench", "worldrl/rlbench-reach_target-v0"),
    ]:
        assert example in worldrl.registered_ids(suite)
    assert len(worldrl.registered_ids()) > 180  # 51 DMC + 108 Atari + Jaco + RLBench


def test_reimport_is_harmless():
    before = worldrl.registered_ids()
    worldrl.register_envs()
    assert worldrl.registered_ids() == before


@pytest.mark.parametrize(
    "typo, expected",
    [
        ("worldrl/dmc-cartpole_balanc-v0", "worldrl/dmc-cartpole_balance-v0"),
        ("dmc-walker_walk", "worldrl/dmc-walker_walk-v0"),
        ("worldrl/atari-Pong-v0", "worldrl/atari-pong-v0"),
        ("worldrl/dmc-cartpole-v0", "worldrl/dmc-cartpole_balance-v0"),
    ],
)
def test_unknown_id_lists_closest_ids(typo, expected):
    assert expected in closest_ids(typo)
    with pytest.raises(gym.error.NameNotFound, match=expected.replace("/", ".")):
        worldrl.make(typo)


def test_gym_make_also_suggests():
    with pytest.raises(gym.error.NameNotFound, match="dmc-cartpole_balance"):
        gym.make("worldrl/dmc-cartpole_balanc-v0")


def test_unknown_keyword_names_argument_and_allowed_ones():
    with pytest.raises(TypeError, match=r"'sise' \(did you mean 'size'\?\).*allowed arguments:.*obs_type"):
        gym.make("worldrl/dmc-cartpole_balance-v0", sise=64)
    with pytest.raises(TypeError, match="'masked'.*mask_scoreboard"):
        gym.make("worldrl/atari-pong-v0", masked=True)


def test_make_passes_kwargs():
    env = worldrl.make("worldrl/dmc-cartpole_balance-v0", obs_type="state")
    assert env.observation_space.shape == (5,)
