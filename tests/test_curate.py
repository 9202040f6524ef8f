import errno
import json
import os

import numpy as np
import pytest

import worldrl.data.folder as folder_module
from worldrl.cli import build_parser, main
from worldrl.data import EpisodeError, EpisodeFolder, load_episode
from worldrl.data.curate import curate, select

RETURNS = [3.0, 10.0, 7.0, 10.0, -1.0, 5.0]


def make_episode(number: int, episode_return: float, task_return: float | None = None, size: int = 4) -> dict:
    """A 3-frame episode whose pixels hold ``number`` and whose rewards sum to ``episode_return``."""
    episode = {
        "image": np.full((3, size, size, 1), number, np.uint8),
        "action": np.zeros((3, 1), np.float32),
        "reward": np.array([0, 0, episode_return], np.float32),
        "is_first": np.array([True, False, False]),
        "is_last": np.array([False, False, True]),
        "is_terminal": np.array([False, False, True]),
    }
    if task_return is not None:
        episode["task_reward"] = np.array([0, 0, task_return], np.float32)
    return episode


def make_source(path, returns=RETURNS, task_returns=None) -> EpisodeFolder:
    """Episode i of the folder has pixel value i and return ``returns[i]``."""
    folder = EpisodeFolder(path, create=True, metadata={"env_id": "worldrl/atari-pong-v0"})
    for i, value in enumerate(returns):
        folder.append(make_episode(i, value, None if task_returns is None else task_returns[i]))
    return folder


def numbers(folder: EpisodeFolder) -> list[int]:
    """Which source episode each file of ``folder`` holds, in file order."""
    return [int(episode["image"][0, 0, 0, 0]) for episode in folder]


def test_top_k_keeps_the_best_renumbered_best_first(tmp_path):
    src = make_source(tmp_path / "src")
    out = curate(src, tmp_path / "out", top_k=3)
    assert [info.file for info in out.infos] == ["episode_000000.npz", "episode_000001.npz", "episode_000002.npz"]
    assert numbers(out) == [1, 3, 2]
    assert out.returns.tolist() == [10.0, 10.0, 7.0]
    index = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert index["env_id"] == "worldrl/atari-pong-v0"
    assert index["curated_from"] == str((tmp_path / "src").resolve())
    assert index["selection"] == {
        "by": "episode_return", "top_k": 3, "best_return": 10.0, "kept": 3, "of": 6, "mode": "link",
    }
    assert index["count"] == 3 and [e["file"] for e in index["episodes"]] == [i.file for i in out.infos]
    assert numbers(EpisodeFolder(tmp_path / "out")) == [1, 3, 2]
    assert len(curate(src, tmp_path / "all", top_k=100)) == 6


def test_return_range_keeps_fractions_of_the_best(tmp_path):
    src = make_source(tmp_path / "src")
    assert numbers(curate(src, tmp_path / "mid", return_range=(0.5, 0.75))) == [2, 5]
    assert numbers(curate(src, tmp_path / "edges", return_range=(0.3, 0.5))) == [5, 0]
    assert [i.episode_return for i in select(src.infos, return_range=(0.0, 1.0))] == [10, 10, 7, 5, 3]
    with pytest.raises(ValueError, match=r"no episode .* within \(0.8, 0.9\)"):
        curate(src, tmp_path / "none", return_range=(0.8, 0.9))
    assert not (tmp_path / "none").exists()


def test_negative_returns_need_a_baseline(tmp_path):
    src = make_source(tmp_path / "src", returns=[-15.0, -5.0, -10.0, -21.0])
    with pytest.raises(ValueError, match="best episode_return -5 is not above the baseline 0"):
        curate(src, tmp_path / "out", return_range=(0.5, 1.0))
    kept = curate(src, tmp_path / "out", return_range=(0.5, 1.0), baseline=-20.0)
    assert numbers(kept) == [1, 2]
    assert kept.metadata["selection"]["baseline"] == -20.0
    assert numbers(curate(src, tmp_path / "top", top_k=1)) == [1]


def test_rank_by_task_return(tmp_path):
    src = make_source(tmp_path / "src", returns=[1.0, 2.0, 3.0], task_returns=[30.0, 20.0, 10.0])
    assert numbers(curate(src, tmp_path / "out", top_k=2, by="task_return")) == [0, 1]
    plain = make_source(tmp_path / "plain", returns=[1.0, 2.0])
    with pytest.raises(ValueError, match="2 episodes have no task_return"):
        curate(plain, tmp_path / "out2", top_k=1, by="task_return")


def test_link_shares_the_file_and_copy_does_not(tmp_path):
    src = make_source(tmp_path / "src")
    linked = curate(src, tmp_path / "linked", top_k=1)
    copied = curate(str(src.path), tmp_path / "copied", top_k=1, mode="copy")
    best = src.path / "episode_000001.npz"
    assert os.path.samefile(best, linked.path / "episode_000000.npz")
    assert os.stat(best).st_nlink == 2
    assert not os.path.samefile(best, copied.path / "episode_000000.npz")
    assert (copied.path / "episode_000000.npz").read_bytes() == best.read_bytes()
    assert not list(copied.path.glob(".*tmp"))


def test_link_falls_back_to_copying(tmp_path, monkeypatch):
    src = make_source(tmp_path / "src")

    def cross_device(a, b):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(folder_module.os, "link", cross_device)
    with pytest.warns(UserWarning, match="cannot hard-link"):
        out = curate(src, tmp_path / "out", top_k=2)
    assert numbers(out) == [1, 3]
    assert not os.path.samefile(src.path / "episode_000001.npz", out.path / "episode_000000.npz")


def test_refuses_a_non_empty_out_folder(tmp_path):
    src = make_source(tmp_path / "src")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        curate(src, tmp_path / "busy", top_k=1)
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]
    with pytest.raises(FileExistsError):
        curate(src, src.path, top_k=1)
    (tmp_path / "empty").mkdir()
    assert len(curate(src, tmp_path / "empty", top_k=1)) == 1
    with pytest.raises(ValueError, match="exactly one of top_k and return_range"):
        curate(src, tmp_path / "both", top_k=1, return_range=(0.5, 1.0))
    with pytest.raises(ValueError, match="mode must be"):
        curate(src, tmp_path / "mode", top_k=1, mode="move")


def test_add_file_checks_the_episode_first(tmp_path):
    folder = make_source(tmp_path / "dst", returns=[1.0])
    other = EpisodeFolder(tmp_path / "big", create=True)
    other.append(make_episode(9, 1.0, size=8))
    with pytest.raises(ValueError, match=r"\(8, 8, 1\).*\(4, 4, 1\)"):
        folder.add_file(other.path / "episode_000000.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(EpisodeError, match="corrupt"):
        folder.add_file(broken, mode="link")
    assert sorted(p.name for p in folder.path.iterdir()) == ["dataset.json", "episode_000000.npz"]
    info = folder.add_file(make_source(tmp_path / "one", returns=[4.0]).path / "episode_000000.npz")
    assert info.file == "episode_000001.npz" and info.episode_return == 4.0
    assert EpisodeFolder(folder.path).returns.tolist() == [1.0, 4.0]
    assert load_episode(folder.path / "episode_000001.npz")["reward"].sum() == 4.0


def test_cli_curates_and_summarises(tmp_path, capsys):
    make_source(tmp_path / "src")
    args = ["curate", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "out")]
    assert main([*args, "--return-range", "0.5", "1", "--copy"]) == 0
    out = capsys.readouterr().out
    assert "kept 4 of 6 episodes (copied)" in out
    assert "episode_return kept: 5 .. 10 (mean 8)" in out and "best 10, mean 5.66667" in out
    assert numbers(EpisodeFolder(tmp_path / "out")) == [1, 3, 2, 5]
    assert main([*args, "--top-k", "2"]) == 1
    assert "not an empty folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--top-k", "2", "--return-range", "0.5", "1"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["curate", "--help"])
    assert "--return-range LO HI" in capsys.readouterr().out
