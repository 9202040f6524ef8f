import json
import warnings

import numpy as np
import pytest

import worldrl.data.folder as folder_module
from worldrl.data import EpisodeBuilder, EpisodeError, EpisodeFolder, load_episode, save_episode


def make_episode(steps: int = 5, shape=(8, 8, 3), value: int = 0, discrete: bool = False, task_id=None):
    builder = EpisodeBuilder(4, discrete=discrete, task_id=task_id)
    builder.add_reset({"pixels": np.full(shape, value, np.uint8), "state": np.zeros(2, np.float32)})
    for t in range(steps):
        action = t % 4 if discrete else np.full(4, t, np.float32)
        obs = {"pixels": np.full(shape, value + t + 1, np.uint8), "state": np.full(2, t, np.float32)}
        builder.add_step(action, obs, reward=1.0 + value, terminated=t == steps - 1, info={"task_reward": 2.0})
    return builder.episode()


def test_builder_follows_the_format():
    episode = make_episode(discrete=True, task_id=3)
    assert episode["image"].shape == (6, 8, 8, 3) and episode["image"].dtype == np.uint8
    assert episode["action"].shape == (6, 4) and not episode["action"][0].any()
    np.testing.assert_array_equal(episode["action"][1:].argmax(1), [0, 1, 2, 3, 0])
    assert episode["reward"][0] == 0 and episode["reward"][1:].tolist() == [1.0] * 5
    assert episode["task_reward"][1:].tolist() == [2.0] * 5
    assert episode["is_first"].tolist() == [True] + [False] * 5
    assert episode["is_last"].tolist() == [False] * 5 + [True]
    assert episode["is_terminal"].tolist() == [False] * 5 + [True]
    assert episode["task_id"].tolist() == [3] * 6 and episode["state"].shape == (6, 2)


def test_round_trip(tmp_path):
    episode = make_episode()
    save_episode(tmp_path / "ep.npz", episode)
    loaded = load_episode(tmp_path / "ep.npz")
    assert loaded.keys() == episode.keys()
    for key in episode:
        np.testing.assert_array_equal(loaded[key], episode[key])
        assert loaded[key].dtype == episode[key].dtype
    assert list(tmp_path.iterdir()) == [tmp_path / "ep.npz"]  # no temporary file left behind
    assert set(load_episode(tmp_path / "ep.npz", keys=("reward",))) == {"reward"}


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda e: e.pop("reward"), "missing keys"),
        (lambda e: e.update(image=e["image"].astype(np.float32)), "'image' has dtype float32"),
        (lambda e: e.update(reward=e["reward"][:-1]), "'reward' has 5 entries"),
        (lambda e: e.update(image=e["image"][..., 0]), r"\[T\+1, H, W, C\]"),
    ],
)
def test_invalid_episodes_are_refused_by_name(tmp_path, change, match):
    episode = make_episode()
    change(episode)
    with pytest.raises(EpisodeError, match=match):
        save_episode(tmp_path / "bad.npz", episode)
    assert not list(tmp_path.iterdir())


def test_truncated_file_raises_naming_it(tmp_path):
    path = save_episode(tmp_path / "ep.npz", make_episode())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(EpisodeError, match="ep.npz.*corrupt or truncated"):
        load_episode(path)


def test_folder_appends_and_indexes(tmp_path):
    folder = EpisodeFolder(tmp_path / "data", create=True, metadata={"env_id": "worldrl/x-v0"})
    for value in range(3):
        folder.append(make_episode(steps=4 + value, value=value))
    index = json.loads((tmp_path / "data" / "dataset.json").read_text())
    assert index["count"] == 3 and index["env_id"] == "worldrl/x-v0" and index["frames"] == 5 + 6 + 7
    assert [e["length"] for e in index["episodes"]] == [4, 5, 6]
    reopened = EpisodeFolder(tmp_path / "data")
    np.testing.assert_array_equal(reopened.returns, [4.0, 10.0, 18.0])
    np.testing.assert_array_equal(reopened[2]["image"][1], np.full((8, 8, 3), 3, np.uint8))
    with pytest.raises(ValueError, match="env_id"):
        EpisodeFolder(tmp_path / "data", metadata={"env_id": "worldrl/y-v0"})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EpisodeFolder(tmp_path / "missing")


def test_folder_is_lazy(tmp_path, monkeypatch):
    folder = EpisodeFolder(tmp_path, create=True)
    for _ in range(3):
        folder.append(make_episode())
    loads = []
    monkeypatch.setattr(folder_module, "load_episode", lambda *a, **k: loads.append(a))
    reopened = EpisodeFolder(tmp_path)  # the index answers; no episode file is read
    assert len(reopened) == 3 and reopened.lengths.tolist() == [5, 5, 5] and loads == []


def test_index_rebuilt_from_files_without_reading_frames(tmp_path):
    folder = EpisodeFolder(tmp_path, create=True)
    folder.append(make_episode(steps=7))
    (tmp_path / "dataset.json").unlink()
    info = EpisodeFolder(tmp_path).infos[0]
    assert (info.length, info.image_shape, info.episode_return, info.task_return) == (7, (8, 8, 3), 7.0, 14.0)


def test_corrupt_file_is_skipped_with_a_warning(tmp_path):
    folder = EpisodeFolder(tmp_path, create=True)
    folder.append(make_episode())
    folder.append(make_episode())
    (tmp_path / "episode_000002.npz").write_bytes(b"not a zip")
    path = tmp_path / "episode_000001.npz"
    path.write_bytes(path.read_bytes()[:100])
    (tmp_path / "dataset.json").write_text("{ truncated")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reopened = EpisodeFolder(tmp_path)
    messages = " ".join(str(w.message) for w in caught)
    assert "episode_000001.npz" in messages and "episode_000002.npz" in messages
    assert [i.file for i in reopened.infos] == ["episode_000000.npz"]
    assert reopened.next_file() == "episode_000003.npz"  # never reuses a name


def test_mixed_frame_shapes_raise(tmp_path):
    folder = EpisodeFolder(tmp_path, create=True)
    folder.append(make_episode(shape=(8, 8, 3)))
    with pytest.raises(ValueError, match=r"\(16, 16, 3\).*\(8, 8, 3\)"):
        folder.append(make_episode(shape=(16, 16, 3)))
    save_episode(tmp_path / "episode_000001.npz", make_episode(shape=(16, 16, 3)))
    with pytest.raises(ValueError, match="mixes frame shapes"):
        EpisodeFolder(tmp_path)
