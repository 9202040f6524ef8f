import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import worldrl.data.clips as clips_module
from worldrl.data import EpisodeFolder
from worldrl.data.clips import VideoClipDataset, is_val_episode
from worldrl.wrappers.scoreboard import scaled_regions


def make_episode(number: int, frames: int, size: int = 8, channels: int = 3, task_id: int | None = None) -> dict:
    """An episode whose pixels say which it is: channel 0 holds ``number``, channel 1 the frame index t.

    Action row t is ``[t, number]`` (row 0 zeros, as the format requires) so clips can be checked exactly.
    """
    t = np.arange(frames)
    image = np.zeros((frames, size, size, channels), np.uint8)
    image[..., 0] = number
    if channels > 1:
        image[..., 1] = t[:, None, None]
    action = np.stack([t, np.full(frames, number)], axis=1).astype(np.float32)
    action[0] = 0
    episode = {
        "image": image,
        "action": action,
        "reward": np.ones(frames, np.float32),
        "is_first": t == 0,
        "is_last": t == frames - 1,
        "is_terminal": np.zeros(frames, bool),
    }
    if task_id is not None:
        episode["task_id"] = np.full(frames, task_id, np.int32)
    return episode


def make_folder(path, lengths, **kwargs) -> EpisodeFolder:
    """A folder whose episode i has ``lengths[i]`` frames and number i + 1."""
    folder = EpisodeFolder(path, create=True)
    for i, frames in enumerate(lengths):
        folder.append(make_episode(i + 1, frames, **kwargs))
    return folder


def test_clips_stay_in_one_episode_at_the_stride(tmp_path):
    lengths = [10, 3, 7, 20]
    folder = make_folder(tmp_path, lengths)
    data = VideoClipDataset(folder, clip_length=3, stride=2, split="all")
    span = 5
    assert data.span == span
    assert data.skipped_episodes == 1
    assert len(data) == sum(n - span + 1 for n in lengths if n >= span) == 6 + 3 + 16
    seen = set()
    for i in range(len(data)):
        video = data[i]["video"]
        assert video.dtype == torch.uint8 and video.shape == (3, 3, 8, 8)
        numbers, times = video[:, 0].unique(), video[:, 1, 0, 0]
        assert len(numbers) == 1
        number, start = int(numbers[0]), int(times[0])
        assert times.tolist() == [start, start + 2, start + 4]
        assert start + 4 < lengths[number - 1]
        seen.add((number, start))
    expected = {(e + 1, t) for e, n in enumerate(lengths) if n >= span for t in range(n - span + 1)}
    assert seen == expected
    assert torch.equal(data[-1]["video"], data[len(data) - 1]["video"])
    with pytest.raises(IndexError):
        data[len(data)]


def test_actions_are_the_ones_that_led_to_each_frame(tmp_path):
    folder = make_folder(tmp_path, [9])
    data = VideoClipDataset(folder, clip_length=3, stride=3, split="all", with_actions=True)
    assert len(data) == 3
    first, last = data[0]["actions"], data[2]["actions"]
    assert first.dtype == torch.float32 and first.shape == (3, 2)
    assert first.tolist() == [[0, 0], [3, 1], [6, 1]]
    assert last.tolist() == [[2, 1], [5, 1], [8, 1]]
    assert "task_id" not in data[0]


def test_task_ids_from_episodes_or_the_folder_mapping(tmp_path):
    tagged = EpisodeFolder(tmp_path / "tagged", create=True)
    tagged.append(make_episode(1, 4, task_id=7))
    untagged = EpisodeFolder(tmp_path / "untagged", create=True)
    untagged.append(make_episode(2, 4))
    data = VideoClipDataset([tagged, untagged], 2, split="all", with_task_id=True, task_ids={str(untagged.path): 3})
    items = [data[i] for i in range(len(data))]
    assert all(item["task_id"].dtype == torch.int64 and item["task_id"].shape == () for item in items)
    ids = {(int(item["video"][0, 0, 0, 0]), int(item["task_id"])) for item in items}
    assert ids == {(1, 7), (2, 3)}
    with pytest.raises(ValueError, match="has no task_id"):
        VideoClipDataset([tagged, untagged], 2, split="all", with_task_id=True)
    with pytest.raises(ValueError, match="has task_id 7, but task_ids gives its folder 5"):
        VideoClipDataset(tagged, 2, split="all", with_task_id=True, task_ids={tagged: 5})


def test_split_is_deterministic_disjoint_and_stable(tmp_path):
    folder = make_folder(tmp_path, [3] * 200, size=2, channels=2)
    train = VideoClipDataset(folder, 2, split="train", val_fraction=0.2)
    val = VideoClipDataset(folder, 2, split="val", val_fraction=0.2)
    assert set(train.paths).isdisjoint(val.paths)
    assert sorted(train.paths + val.paths) == sorted(str(folder.path / i.file) for i in folder.infos)
    assert 20 <= len(val.paths) <= 60
    assert VideoClipDataset(folder, 2, split="val", val_fraction=0.2).paths == val.paths
    assert VideoClipDataset(folder, 2, split="val", val_fraction=0.2, split_seed=1).paths != val.paths
    for i in range(50):
        folder.append(make_episode(201 + i, 3, size=2, channels=2))
    grown = VideoClipDataset(folder, 2, split="val", val_fraction=0.2)
    assert grown.paths[: len(val.paths)] == val.paths
    assert set(grown.paths) - set(val.paths) == {
        str(folder.path / i.file) for i in folder.infos[200:] if is_val_episode(i.file, 0.2)
    }


def test_scoreboard_mask_zeroes_only_the_scaled_region(tmp_path):
    folder = make_folder(tmp_path, [4], size=16)
    plain = VideoClipDataset(folder, 2, split="all")[0]["video"]
    masked = VideoClipDataset(folder, 2, split="all", mask_scoreboard="space_invaders")[0]["video"]
    expected = plain.clone()
    for rows, cols in scaled_regions("space_invaders", 16, 16):
        expected[:, :, rows, cols] = 0
    assert torch.equal(masked, expected)
    assert (masked[:, 0, 0, 0] == 0).all() and (masked[:, 0, 0, 7] == 1).all() and (masked[:, 0, 8, :] == 1).all()
    with pytest.raises(ValueError, match="no scoreboard region"):
        VideoClipDataset(folder, 2, split="all", mask_scoreboard="no_such_game")


def test_mixed_frame_shapes_name_the_folders(tmp_path):
    rgb = make_folder(tmp_path / "rgb", [4])
    gray = make_folder(tmp_path / "gray", [4], channels=1)
    with pytest.raises(ValueError, match=r"different frame shapes.*rgb.*\(8, 8, 3\).*gray.*\(8, 8, 1\)"):
        VideoClipDataset([rgb, str(gray.path)], 2, split="all")


def test_bad_arguments_and_empty_datasets_raise(tmp_path):
    folder = make_folder(tmp_path, [3])
    with pytest.raises(ValueError, match="no clips of 4 frames.*1 too short"):
        VideoClipDataset(folder, 4, split="all")
    with pytest.raises(ValueError, match="split must be one of"):
        VideoClipDataset(folder, 2, split="test")
    with pytest.raises(ValueError, match="clip_length and stride"):
        VideoClipDataset(folder, 2, stride=0)
    with pytest.raises(FileNotFoundError):
        VideoClipDataset(tmp_path / "missing", 2)


def test_sequential_access_reads_each_episode_once(tmp_path, monkeypatch):
    folder = make_folder(tmp_path, [6, 6, 6])
    reads, load = [], clips_module.load_episode

    def counting_load(path, keys=None):
        reads.append((path, keys))
        return load(path, keys=keys)

    monkeypatch.setattr(clips_module, "load_episode", counting_load)
    data = VideoClipDataset(folder, 2, split="all", with_actions=True)
    for i in range(len(data)):
        data[i]
    assert [p for p, _ in reads] == data.paths
    assert all(keys == ("image", "action") for _, keys in reads)
    uncached = VideoClipDataset(folder, 2, split="all", cache_episodes=0)
    reads.clear()
    for i in range(len(uncached)):
        uncached[i]
    assert len(reads) == len(uncached) and all(keys == ("image",) for _, keys in reads)


def test_dataloader_workers_give_the_same_items(tmp_path):
    folder = make_folder(tmp_path, [5, 8, 6, 7], task_id=2)
    data = VideoClipDataset(folder, 3, split="all", with_actions=True, with_task_id=True)
    data[len(data) - 1]
    serial = list(DataLoader(data, batch_size=4, num_workers=0))
    parallel = list(DataLoader(data, batch_size=4, num_workers=2))
    assert len(serial) == len(parallel) == -(-len(data) // 4)
    for a, b in zip(serial, parallel):
        assert a.keys() == b.keys() == {"video", "actions", "task_id"}
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_dataset_pickles_small_without_frames(tmp_path):
    many = make_folder(tmp_path, [3] * 200, size=2, channels=2)
    data = VideoClipDataset(many, 2, split="all", with_actions=True)
    for i in range(len(data)):
        data[i]
    blob = pickle.dumps(data)
    assert len(blob) < 100_000
    restored = pickle.loads(blob)
    assert len(restored) == len(data) == 400
    assert torch.equal(restored[123]["video"], data[123]["video"])
