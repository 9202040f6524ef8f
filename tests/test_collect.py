import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from worldrl.data import EpisodeFolder, load_episode
from worldrl.data.collect import collect


def random_continuous(num_envs: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return lambda obs: rng.uniform(-1, 1, (num_envs, dim)).astype(np.float32)


def test_dmc_collection_with_state(tmp_path):
    folder = collect(
        "worldrl/dmc-cartpole_balance-v0", random_continuous(2, 1), 2, tmp_path,
        num_envs=2, env_kwargs={"obs_type": "pixels+state", "size": 32}, progress=False,
    )
    assert len(folder) == 2 and sorted(os.listdir(tmp_path))[:2] == ["dataset.json", "episode_000000.npz"]
    episode = folder[0]
    assert episode["image"].shape == (501, 32, 32, 3) and episode["state"].shape == (501, 5)
    assert episode["is_first"][0] and episode["is_last"][-1] and not episode["is_terminal"].any()
    assert not episode["action"][0].any() and episode["action"][1:].any()
    np.testing.assert_allclose(episode["reward"].sum(), folder.infos[0].episode_return, rtol=1e-5)
    reopened = EpisodeFolder(tmp_path)
    assert reopened.metadata["env_id"] == "worldrl/dmc-cartpole_balance-v0"
    assert reopened.metadata["env_kwargs"] == {"obs_type": "pixels+state", "size": 32}


def test_atari_collection_one_hot_actions_and_continued_numbering(tmp_path):
    rng = np.random.default_rng(0)
    kwargs = {"max_episode_steps": 60, "size": 32}
    policy = lambda obs: rng.integers(0, 6, size=2)  # noqa: E731
    collect("worldrl/atari-pong-v0", policy, 2, tmp_path, num_envs=2, env_kwargs=kwargs, progress=False)
    first = EpisodeFolder(tmp_path)[0]
    folder = collect("worldrl/atari-pong-v0", policy, 1, tmp_path, num_envs=2, env_kwargs=kwargs, progress=False)
    assert [i.file for i in folder.infos] == [f"episode_00000{i}.npz" for i in range(3)]
    np.testing.assert_array_equal(EpisodeFolder(tmp_path)[0]["image"], first["image"])  # not overwritten
    assert first["action"].shape == (61, 6) and (first["action"][1:].sum(axis=1) == 1).all()
    assert [c["first"] for c in folder.metadata["collections"]] == [0, 2]
    # The second run drew new seeds: its episode is not a copy of the first run's.
    assert not np.array_equal(folder[2]["image"][:30], first["image"][:30])


def test_folder_refuses_other_env(tmp_path):
    collect("worldrl/atari-pong-v0", lambda o: np.zeros(1, int), 1, tmp_path,
            env_kwargs={"max_episode_steps": 5}, progress=False)
    with pytest.raises(ValueError, match="env_id"):
        collect("worldrl/atari-breakout-v0", lambda o: np.zeros(1, int), 1, tmp_path, progress=False)


def test_sigkill_loses_at_most_the_episode_in_progress(tmp_path):
    script = textwrap.dedent(f"""
        import numpy as np
        from worldrl.data.collect import collect
        rng = np.random.default_rng(0)
        collect("worldrl/atari-pong-v0", lambda obs: rng.integers(0, 6, size=1), 1000, {str(tmp_path)!r},
                env_kwargs={{"max_episode_steps": 40, "size": 32}}, progress=False)
    """)
    process = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 90
    while len([f for f in os.listdir(tmp_path) if f.startswith("episode_")]) < 3:
        assert process.poll() is None, "collector exited early"
        assert time.monotonic() < deadline, "collector wrote no episodes"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = sorted(f for f in os.listdir(tmp_path) if f.startswith("episode_"))
    for name in finished:
        assert len(load_episode(tmp_path / name)["image"]) == 41  # complete and valid
    folder = EpisodeFolder(tmp_path)
    assert len(folder) == len(finished) >= 3
    resumed = collect("worldrl/atari-pong-v0", lambda obs: np.zeros(1, int), 1, tmp_path,
                      env_kwargs={"max_episode_steps": 40, "size": 32}, progress=False)
    assert resumed.infos[-1].file == f"episode_{len(finished):06d}.npz"


def test_policy_without_pixels_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="pixels"):
        collect("worldrl/dmc-cartpole_balance-v0", random_continuous(1, 1), 1, tmp_path,
                env_kwargs={"obs_type": "state"}, progress=False)
