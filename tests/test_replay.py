"""ReplayBuffer: per-env rings, sequence and n-step transition sampling, FIFO, resume, episode_dir.

Every step carries its env and a per-env step counter (in the frame, the state
and the action), so tests can check exactly which stored steps a sample holds.
"""

import json
import tracemalloc

import numpy as np
import pytest

from worldrl.data.episode import load_episode
from worldrl.data.folder import EpisodeFolder
from worldrl.data.replay import ReplayBuffer

SHAPE = (6, 6, 3)


def make_episode(env, first_counter, rewards, terminal):
    """An episode whose step t has counter ``first_counter + t``; ``rewards[t]`` is row t's reward."""
    n = len(rewards)
    counter = first_counter + np.arange(n)
    image = np.zeros((n, *SHAPE), np.uint8)
    image[..., 0] = env
    image[..., 1] = (counter % 256)[:, None, None]
    image[..., 2] = (counter // 256)[:, None, None]
    action = np.stack([counter, np.full(n, env)], 1).astype(np.float32)
    action[0] = 0
    return {
        "image": image,
        "action": action,
        "reward": np.asarray(rewards, np.float32),
        "is_first": np.arange(n) == 0,
        "is_last": np.arange(n) == n - 1,
        "is_terminal": (np.arange(n) == n - 1) & terminal,
        "state": np.stack([np.full(n, env), counter], 1).astype(np.float32),
    }


def env_stream(env, lengths):
    """Episodes of ``lengths`` agent steps (alternately terminated and truncated) and their concatenation."""
    episodes, counter = [], 0
    for i, steps in enumerate(lengths):
        rewards = np.r_[0.0, np.arange(1, steps + 1) + 0.5 * counter]
        episodes.append(make_episode(env, counter, rewards, terminal=i % 2 == 0))
        counter += steps + 1
    stream = {key: np.concatenate([e[key] for e in episodes]) for key in episodes[0]}
    return episodes, stream


def add_lockstep(buffer, streams, steps, start=0):
    for k in range(start, start + steps):
        buffer.add({key: np.stack([s[key][k] for s in streams]) for key in streams[0]})


def filled(num_envs=3, capacity=3000, steps=200, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(capacity, SHAPE, 2, num_envs, state_dim=2, seed=seed, **kwargs)
    data = [env_stream(e, rng.integers(2, 15, size=60)) for e in range(num_envs)]
    add_lockstep(buffer, [stream for _, stream in data], steps)
    return buffer, data


def counters(image):
    return image[..., 0, 0, 1].astype(np.int64) + 256 * image[..., 0, 0, 2].astype(np.int64)


def test_sequence_shapes_and_dtypes():
    buffer, _ = filled()
    batch = buffer.sample_sequences(5, 7)
    assert batch["image"].shape == (5, 7, *SHAPE) and batch["image"].dtype == np.uint8
    assert batch["action"].shape == (5, 7, 2) and batch["action"].dtype == np.float32
    assert batch["reward"].shape == (5, 7) and batch["reward"].dtype == np.float32
    assert batch["state"].shape == (5, 7, 2)
    for key in ("is_first", "is_last", "is_terminal"):
        assert batch[key].shape == (5, 7) and batch[key].dtype == bool


def test_sequences_stay_in_one_env_and_consecutive():
    buffer, _ = filled()
    batch = buffer.sample_sequences(400, 20)
    envs = batch["image"][..., 0, 0, 0]
    assert (envs == envs[:, :1]).all()
    assert set(np.unique(envs[:, 0])) == {0, 1, 2}
    assert (np.diff(counters(batch["image"]), axis=1) == 1).all()
    assert batch["is_first"][:, 1:].any()  # crossing episodes is allowed by default


def test_within_episode_never_crosses_is_first():
    buffer, _ = filled()
    batch = buffer.sample_sequences(400, 10, within_episode=True)
    assert not batch["is_first"][:, 1:].any()
    assert (np.diff(counters(batch["image"]), axis=1) == 1).all()
    with pytest.raises(ValueError, match="no episode has 40 consecutive steps"):
        buffer.sample_sequences(4, 40, within_episode=True)


def test_fifo_never_samples_overwritten_steps():
    buffer, _ = filled(num_envs=2, capacity=100, steps=230)  # rings of 50: each env wrapped 4 times
    assert len(buffer) == 100
    for batch in (buffer.sample_sequences(300, 12), buffer.sample_sequences(300, 3, within_episode=True)):
        steps = counters(batch["image"])
        assert steps.min() >= 230 - 50 and steps.max() < 230  # only the newest 50 steps of each env
        assert (np.diff(steps, axis=1) == 1).all()  # no window runs across the ring's write position
        assert (batch["state"][..., 1] == steps).all()
    transitions = buffer.sample_transitions(300, n_step=3, frame_stack=3)
    assert counters(transitions["obs"]).min() >= 180 and counters(transitions["next_obs"]).max() < 230


def hand_buffer(n_step_steps_after=2):
    """One env: A (3 steps, terminated), B (4 steps, truncated), then ``n_step_steps_after`` frames of C."""
    buffer = ReplayBuffer(100, SHAPE, 2, 1, state_dim=2, seed=0)
    a = make_episode(0, 0, [0, 1, 2, 4], terminal=True)
    b = make_episode(0, 4, [0, 10, 20, 40, 80], terminal=False)
    c = make_episode(0, 9, [0, 7, 7, 7, 7, 7], terminal=True)
    add_lockstep(buffer, [{k: np.concatenate([a[k], b[k], c[k]]) for k in a}], 9 + n_step_steps_after)
    return buffer


def test_n_step_returns_and_discounts_by_hand():
    buffer = hand_buffer()
    batch = buffer.sample_transitions(2000, n_step=3, discount=0.5)
    obs, next_obs = counters(batch["obs"][:, -1]), counters(batch["next_obs"][:, -1])
    # counter of obs -> (return, discount, counter of next obs)
    expected = {
        0: (1 + 0.5 * 2 + 0.25 * 4, 0.0, 3),  # terminal within n: no bootstrap
        1: (2 + 0.5 * 4, 0.0, 3),
        2: (4.0, 0.0, 3),
        4: (10 + 0.5 * 20 + 0.25 * 40, 0.125, 7),
        5: (20 + 0.5 * 40 + 0.25 * 80, 0.125, 8),
        6: (40 + 0.5 * 80, 0.25, 8),  # truncated after 2 steps: bootstrap from the last obs
        7: (80.0, 0.5, 8),
    }
    # 3 and 8 end their episodes; 9 and 10 (episode C) do not have 3 steps stored yet.
    assert set(np.unique(obs)) == set(expected)
    for counter, (ret, disc, nxt) in expected.items():
        rows = obs == counter
        np.testing.assert_allclose(batch["reward"][rows], ret)
        np.testing.assert_allclose(batch["discount"][rows], disc)
        assert (next_obs[rows] == nxt).all()
        assert (batch["action"][rows, 0] == counter + 1).all()  # the action taken at obs
        assert (batch["state"][rows, 1] == counter).all() and (batch["next_state"][rows, 1] == nxt).all()
    assert batch["reward"].dtype == np.float32 and batch["discount"].dtype == np.float32


def test_running_episode_becomes_sampleable_once_n_steps_are_stored():
    buffer = hand_buffer(n_step_steps_after=4)  # C's frames 9..12: only 9 has 3 steps after it
    obs = counters(buffer.sample_transitions(2000, n_step=3, discount=0.5)["obs"][:, -1])
    assert 9 in obs and 10 not in obs


def test_cut_off_episode_is_treated_as_truncation():
    buffer = ReplayBuffer(50, SHAPE, 2, 1, state_dim=2)
    a = make_episode(0, 0, [0, 1, 2, 4, 8], terminal=True)
    b = make_episode(0, 3, [0, 5, 5, 5], terminal=False)
    stream = {k: np.concatenate([a[k][:3], b[k]]) for k in a}  # A resets after 2 steps, never is_last
    add_lockstep(buffer, [stream], 7)
    batch = buffer.sample_transitions(500, n_step=3, discount=0.5)
    obs, next_obs = counters(batch["obs"][:, -1]), counters(batch["next_obs"][:, -1])
    assert 2 not in obs  # its next row starts another episode
    np.testing.assert_allclose(batch["reward"][obs == 0], 1 + 0.5 * 2)
    np.testing.assert_allclose(batch["discount"][obs == 0], 0.25)
    assert (next_obs[obs == 0] == 2).all()


def test_frame_stacking_repeats_the_first_frame_at_episode_start():
    buffer = hand_buffer()
    batch = buffer.sample_transitions(2000, n_step=3, discount=0.5, frame_stack=3)
    assert batch["obs"].shape == (2000, 3, *SHAPE) and batch["next_obs"].shape == (2000, 3, *SHAPE)
    obs, next_obs = counters(batch["obs"]), counters(batch["next_obs"])
    stacks = {
        0: ([0, 0, 0], [1, 2, 3]),
        1: ([0, 0, 1], [1, 2, 3]),
        4: ([4, 4, 4], [5, 6, 7]),  # not A's frames: B starts at 4
        5: ([4, 4, 5], [6, 7, 8]),
        7: ([5, 6, 7], [6, 7, 8]),
    }
    for counter, (want_obs, want_next) in stacks.items():
        rows = obs[:, -1] == counter
        assert rows.any()
        assert (obs[rows] == want_obs).all() and (next_obs[rows] == want_next).all()


def test_frame_stack_history_must_be_held():
    buffer, _ = filled(num_envs=1, capacity=40, steps=300)
    batch = buffer.sample_transitions(500, n_step=1, frame_stack=4)
    low = 300 - 40
    assert counters(batch["obs"]).min() >= low


def test_save_load_resumes_identically(tmp_path):
    buffer, _ = filled()
    buffer.sample_sequences(8, 5)
    path = buffer.save(tmp_path / "replay.npz")
    expected = [buffer.sample_sequences(8, 5), buffer.sample_transitions(16, 3, 0.9, 2)]
    restored = ReplayBuffer(3000, SHAPE, 2, 3, state_dim=2, seed=123)
    restored.load(path)
    got = [restored.sample_sequences(8, 5), restored.sample_transitions(16, 3, 0.9, 2)]
    for want, have in zip(expected, got):
        assert want.keys() == have.keys()
        for key in want:
            np.testing.assert_array_equal(want[key], have[key])
    assert not list(tmp_path.glob(".*.tmp"))


def test_state_dict_round_trip():
    buffer, data = filled()
    state = {**buffer.state_dict(), "arrays": {k: v.copy() for k, v in buffer.state_dict()["arrays"].items()}}
    want = buffer.sample_sequences(4, 6)
    add_lockstep(buffer, [stream for _, stream in data], 30, start=200)  # diverge, then restore
    buffer.load_state_dict(state)
    have = buffer.sample_sequences(4, 6)
    for key in want:
        np.testing.assert_array_equal(want[key], have[key])


def test_loading_twice_does_not_duplicate(tmp_path):
    buffer, _ = filled()
    path = buffer.save(tmp_path / "replay.npz")
    other, _ = filled(seed=7)  # a buffer already holding other data: load replaces it
    other.load(path)
    size, count = len(other), other.count.copy()
    first = other.sample_sequences(4, 4)
    other.load(path)
    assert len(other) == size == len(buffer) and (other.count == count).all()
    np.testing.assert_array_equal(other.sample_sequences(4, 4)["image"], first["image"])


def test_load_streams_into_place_without_a_second_copy(tmp_path):
    buffer = ReplayBuffer(3000, (64, 64, 3), 2, 1)
    path = buffer.save(tmp_path / "replay.npz")
    tracemalloc.start()
    try:
        buffer.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.1 * buffer.nbytes


def test_save_writes_only_the_rows_held(tmp_path):
    buffer, _ = filled(capacity=3000, steps=50)  # 150 of 3000 rows held
    path = buffer.save(tmp_path / "replay.npz")
    frame_bytes = int(np.prod(SHAPE))
    assert path.stat().st_size < 1.2 * 150 * frame_bytes + 100_000
    assert path.stat().st_size < 0.1 * buffer.nbytes


@pytest.mark.parametrize("steps", [50, 400])  # rings of 200 rows partly filled; wrapped around
def test_saved_arrays_restore_every_row(tmp_path, steps):
    buffer, _ = filled(capacity=600, steps=steps)
    path = buffer.save(tmp_path / "replay.npz")
    other, _ = filled(seed=7, capacity=600, steps=150)  # rows beyond the file's must not survive
    other.load(path)
    for key, array in buffer.state_dict()["arrays"].items():
        np.testing.assert_array_equal(other.state_dict()["arrays"][key], array, err_msg=key)
    assert (other.count == buffer.count).all()


def test_loads_files_of_whole_preallocated_arrays(tmp_path):
    """Files written before saves held only the filled rows: every array at full capacity, no layout entry."""
    buffer, _ = filled()
    state = buffer.state_dict()
    meta = {key: value for key, value in state.items() if key != "arrays"}
    meta["count"] = buffer.count.tolist()
    members = {"__meta__": np.frombuffer(json.dumps(meta).encode(), np.uint8), **state["arrays"]}
    np.savez(tmp_path / "old.npz", **members)
    restored = ReplayBuffer(3000, SHAPE, 2, 3, state_dim=2)
    restored.load(tmp_path / "old.npz")
    for key, array in state["arrays"].items():
        np.testing.assert_array_equal(restored.state_dict()["arrays"][key], array)


def test_load_rejects_a_different_configuration(tmp_path):
    buffer, _ = filled()
    path = buffer.save(tmp_path / "replay.npz")
    with pytest.raises(ValueError, match="ring"):
        ReplayBuffer(600, SHAPE, 2, 3, state_dim=2).load(path)


def test_episode_dir_writes_the_finished_episodes(tmp_path):
    buffer, data = filled(num_envs=2, episode_dir=tmp_path / "episodes")
    folder = EpisodeFolder(tmp_path / "episodes")
    assert len(folder) == buffer.episodes_written > 10
    originals = {(e, int(ep["state"][0, 1])): ep for e, (episodes, _) in enumerate(data) for ep in episodes}
    for info in folder.infos:
        episode = load_episode(folder.path / info.file)  # validates the format
        original = originals[(int(episode["state"][0, 0]), int(episode["state"][0, 1]))]
        assert episode.keys() == original.keys()
        for key in original:
            np.testing.assert_array_equal(episode[key], original[key])
    finished = sum(int(stream["is_last"][:200].sum()) for _, stream in data)
    assert len(folder) == finished


def test_add_episode_prefills_from_a_folder(tmp_path):
    folder = EpisodeFolder(tmp_path / "d", create=True)
    episodes = [make_episode(0, 100 * i, np.arange(8.0), terminal=True) for i in range(4)]
    for episode in episodes:
        folder.append(episode)
    buffer = ReplayBuffer(100, SHAPE, 2, 2, state_dim=2)
    assert [buffer.add_episode(episode) for episode in folder] == [0, 1, 0, 1]
    assert len(buffer) == 32
    batch = buffer.sample_sequences(50, 8, within_episode=True)
    assert (counters(batch["image"]) % 100 == np.arange(8)).all()
    long = make_episode(0, 0, np.arange(80.0), terminal=False)
    buffer.add_episode(long, env_id=0)  # longer than the ring of 50: keeps the last 50 steps
    assert buffer.sizes.tolist() == [50, 16]


def test_wrong_adds_raise_naming_the_problem():
    buffer = ReplayBuffer(100, SHAPE, 2, 2, state_dim=2)
    step = {key: np.stack([value[0]] * 2) for key, value in make_episode(0, 0, [0, 1], True).items()}
    with pytest.raises(ValueError, match=r"'action' has shape \(2, 3\), expected \(2, 2\)"):
        buffer.add({**step, "action": np.zeros((2, 3), np.float32)})
    with pytest.raises(ValueError, match="'image' has dtype float32, expected uint8"):
        buffer.add({**step, "image": step["image"].astype(np.float32)})
    with pytest.raises(ValueError, match=r"missing keys \['state'\]"):
        buffer.add({k: v for k, v in step.items() if k != "state"})
    with pytest.raises(ValueError, match="unknown keys"):
        buffer.add({**step, "task_reward": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="is_first=True"):
        buffer.add({**step, "is_first": np.array([True, False])})
    assert len(buffer) == 0  # rejected calls write nothing
    buffer.add(step)
    later = {**{k: v[:1] for k, v in step.items()}, "is_first": np.array([False]), "reward": np.ones(1)}
    buffer.add(later, env_ids=[1])  # one env alone; float64 rewards are cast
    assert buffer.sizes.tolist() == [1, 2]
    with pytest.raises(ValueError, match="env_ids"):
        buffer.add(step, env_ids=[0, 0])


def test_sampling_too_little_data_says_how_much_is_held():
    buffer = ReplayBuffer(100, SHAPE, 2, 2, state_dim=2)
    with pytest.raises(ValueError, match="holds 0 steps"):
        buffer.sample_sequences(2, 4)
    with pytest.raises(ValueError, match="holds 0 steps"):
        buffer.sample_transitions(2)
    add_lockstep(buffer, [env_stream(e, [5])[1] for e in range(2)], 3)
    with pytest.raises(ValueError, match="need 4 consecutive steps of one env; the buffer holds 6 steps, at most 3"):
        buffer.sample_sequences(2, 4)


def test_memory_per_frame_is_close_to_the_frame_size():
    buffer = ReplayBuffer(1000, (64, 64, 3), 6, 4)
    assert buffer.bytes_per_frame_ratio <= 1.1
    assert buffer.arrays["image"].nbytes == 1000 * 64 * 64 * 3  # one copy of each frame
