"""Replay for agents in vector envs: one preallocated ring per env, in the episode format's step convention.

Layout. ``capacity`` steps are split into ``num_envs`` rings of ``capacity //
num_envs`` rows, one per env, stored as consecutive blocks of one flat array
per key (``image`` is ``[capacity, H, W, C]`` uint8; a buffer of vector
observations, ``image_shape=None``, stores ``state`` instead). The k-th step an env ever
added lives at row ``env * ring + k % ring``, so the rows an env still holds
are exactly its stream indices ``[count - size, count)``. A sequence or
transition drawn from that range stays inside one env and never touches
overwritten rows by construction: no per-step env id, no chunk table to keep
consistent with the ring, nothing to scan. Vector envs step in lockstep, so
equal rings lose no capacity; the price is that an env slot left idle keeps its
share. (DreamerV3's chunked replay shares one pool between streams instead,
which pays off when streams produce data at very different rates.)

Step convention (see :mod:`worldrl.data.episode`): row t holds observation t
and the action and reward that led to it; an episode starts with an
``is_first`` row whose action and reward are zeros. Each frame is stored once:
a transition's ``next_obs`` is a later row of the same ring. Every row also
stores ``pos`` (int32, steps since its episode's ``is_first``), so the start
of row t's episode is ``t - pos[t]`` and every validity check below is O(1)
per sample, vectorised over the batch.

Stream rules checked by :meth:`ReplayBuffer.add`: an env's first step, and the
step after an ``is_last`` one, must have ``is_first``; ``is_terminal`` implies
``is_last``. An ``is_first`` arriving before ``is_last`` (an env reset without
finishing, e.g. after resuming a run) cuts the open episode off: transitions
treat the cut as a truncation, and the cut episode is not written to
``episode_dir``.

Sampling happens in the caller's process with numpy fancy indexing, with no
DataLoader workers holding their own copies of the data (DrQ-v2's replay
loader keeps episodes per worker, and its memory grows with them).
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from worldrl.atomic import atomic_write
from worldrl.data.episode import DTYPES, validate_episode
from worldrl.data.folder import EpisodeFolder

POS_KEY = "pos"
META_MEMBER = "__meta__"
FORMAT_VERSION = 1
READ_CHUNK_BYTES = 1 << 20
HELD_LAYOUT = "held_rows"
"""Saved files hold each ring's first ``size`` rows, env after env (the ``layout`` entry of their metadata)."""
REJECTION_ROUNDS = 8

Spec = tuple[tuple[int, ...], np.dtype]


def _dtype_error(key: str, got: np.dtype, want: np.dtype) -> str | None:
    """Why an array of dtype ``got`` may not be stored as ``want`` (None if it may).

    Frames (uint8) and flags (bool) must match exactly, since casting them
    silently hides bugs (float frames in [0, 1] would wrap to zeros). Float
    keys accept any integer or float input (vector envs return float64
    rewards); integer keys accept integers.
    """
    if want == np.uint8 or want == np.bool_:
        return None if got == want else f"'{key}' has dtype {got}, expected {want}"
    allowed = "fiu" if want.kind == "f" else "iu"
    if got.kind in allowed:
        return None
    return f"'{key}' has dtype {got}, expected {want} (or a {'real number' if want.kind == 'f' else 'integer'} dtype)"


class ReplayBuffer:
    """FIFO replay of ``capacity`` steps from ``num_envs`` parallel envs (one ring of ``capacity // num_envs`` each).

    Stores ``image`` ``[H, W, C]`` uint8 (unless ``image_shape`` is None),
    ``action`` ``[action_dim]`` float32 (one-hot for discrete actions),
    ``reward`` float32, ``is_first``, ``is_last``, ``is_terminal``; ``state``
    ``[state_dim]`` when ``state_dim`` is given (at least one of the two
    observations is needed); and each of ``extra_keys`` (a name, or a mapping from name to
    per-step shape; float32 unless the episode format fixes the dtype, e.g.
    ``task_id`` int32). ``seed`` seeds the sampling generator, which is part of
    the saved state. With ``episode_dir`` every episode finished through
    :meth:`add` is also written there with :meth:`EpisodeFolder.append`
    (synchronously, in the episode format), so any agent's replay doubles as a
    video-model dataset (episodes hold frames: it needs ``image_shape``).
    """

    def __init__(
        self,
        capacity: int,
        image_shape: tuple[int, int, int] | None,
        action_dim: int,
        num_envs: int = 1,
        *,
        state_dim: int | None = None,
        state_dtype: np.dtype | type = np.float32,
        extra_keys: Mapping[str, tuple[int, ...]] | Iterable[str] = (),
        seed: int | None = None,
        episode_dir: str | Path | None = None,
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if capacity < num_envs:
            raise ValueError(f"capacity {capacity} is smaller than num_envs {num_envs}; each env needs its own ring")
        if image_shape is None and state_dim is None:
            raise ValueError("the buffer needs an observation: image_shape, state_dim or both")
        if image_shape is not None and len(tuple(image_shape)) != 3:
            raise ValueError(f"image_shape must be (H, W, C), got {image_shape}")
        if image_shape is None and episode_dir is not None:
            raise ValueError("episode_dir needs image_shape: episodes are written with their frames")
        if action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        self.num_envs = int(num_envs)
        self.ring = int(capacity) // self.num_envs
        self.capacity = self.ring * self.num_envs
        self.specs: dict[str, Spec] = {}
        if image_shape is not None:
            self.specs["image"] = (tuple(int(d) for d in image_shape), np.dtype(np.uint8))
        self.specs.update({
            "action": ((int(action_dim),), np.dtype(np.float32)),
            "reward": ((), np.dtype(np.float32)),
            "is_first": ((), np.dtype(bool)),
            "is_last": ((), np.dtype(bool)),
            "is_terminal": ((), np.dtype(bool)),
        })
        if state_dim is not None:
            self.specs["state"] = ((int(state_dim),), np.dtype(state_dtype))
        extras = extra_keys.items() if isinstance(extra_keys, Mapping) else ((k, ()) for k in extra_keys)
        for key, shape in extras:
            if key in self.specs or key in (POS_KEY, META_MEMBER, "image", "state"):
                raise ValueError(f"extra key '{key}' clashes with a key the buffer stores itself")
            self.specs[key] = (tuple(int(d) for d in shape), np.dtype(DTYPES.get(key, np.float32)))
        # np.zeros maps zero pages lazily: memory is committed as rows are written.
        self.arrays = {key: np.zeros((self.capacity, *shape), dtype) for key, (shape, dtype) in self.specs.items()}
        self.pos = np.zeros(self.capacity, np.int32)
        self.count = np.zeros(self.num_envs, np.int64)
        self.rng = np.random.default_rng(seed)
        self.folder = EpisodeFolder(episode_dir, create=True) if episode_dir is not None else None
        self.episodes_written = 0

    # ----------------------------------------------------------------- sizes

    def __len__(self) -> int:
        """Steps held (over all envs)."""
        return int(self.sizes.sum())

    @property
    def sizes(self) -> np.ndarray:
        """Steps held per env, ``[num_envs]``."""
        return np.minimum(self.count, self.ring)

    @property
    def nbytes(self) -> int:
        """Bytes of all preallocated arrays (what the buffer holds once full)."""
        return sum(a.nbytes for a in self.arrays.values()) + self.pos.nbytes

    @property
    def bytes_per_frame_ratio(self) -> float:
        """:attr:`nbytes` per stored step divided by the bytes of one frame (1.0 would be frames only)."""
        if "image" not in self.specs:
            raise ValueError("bytes_per_frame_ratio: the buffer stores no frames (image_shape=None)")
        return self.nbytes / (self.capacity * int(np.prod(self.specs["image"][0])))

    def _rows(self, env: np.ndarray | int, t: np.ndarray | int) -> np.ndarray:
        """Flat rows of stream indices ``t`` of envs ``env`` (broadcast)."""
        return np.asarray(env) * self.ring + np.asarray(t) % self.ring

    def _describe(self) -> str:
        sizes = self.sizes
        return (f"the buffer holds {int(sizes.sum())} steps, at most {int(sizes.max())} of one env "
                f"({self.num_envs} envs, rings of {self.ring})")

    # ---------------------------------------------------------------- adding

    def _check_arrays(self, data: Mapping[str, Any], length: int, where: str, strict: bool) -> dict[str, np.ndarray]:
        """The stored keys of ``data`` as arrays of ``[length, *shape]``; raises naming the key that does not fit."""
        missing = [k for k in self.specs if k not in data]
        if missing:
            raise ValueError(f"{where}: missing keys {missing}; the buffer stores {list(self.specs)}")
        if strict:
            unknown = [k for k in data if k not in self.specs]
            if unknown:
                raise ValueError(f"{where}: unknown keys {unknown}; the buffer stores {list(self.specs)} "
                                 "(declare others with extra_keys)")
        arrays = {}
        for key, (shape, dtype) in self.specs.items():
            value = np.asarray(data[key])
            if value.shape != (length, *shape):
                raise ValueError(f"{where}: '{key}' has shape {value.shape}, expected {(length, *shape)}")
            error = _dtype_error(key, value.dtype, dtype)
            if error:
                raise ValueError(f"{where}: {error}")
            arrays[key] = value
        if (arrays["is_terminal"] & ~arrays["is_last"]).any():
            raise ValueError(f"{where}: 'is_terminal' is set on a step without 'is_last'")
        return arrays

    def _open(self, env: np.ndarray) -> np.ndarray:
        """Whether each env's stream is inside an episode (it has steps and the newest is not is_last)."""
        newest = self._rows(env, self.count[env] - 1)
        return (self.count[env] > 0) & ~self.arrays["is_last"][newest]

    def add(self, step: Mapping[str, Any], env_ids: Iterable[int] | np.ndarray | None = None) -> None:
        """Append one step for each of N envs: every value has a leading env axis ``[N, ...]``.

        ``env_ids`` names the N envs (default: all, in order), so envs that
        step at different times may add separately. Everything is checked
        before anything is written, so a rejected call leaves the buffer as it
        was. With ``episode_dir``, envs whose step is ``is_last`` have their
        episode written.
        """
        envs = np.arange(self.num_envs) if env_ids is None else np.asarray(env_ids, np.int64).reshape(-1)
        if len(envs) and (envs.min() < 0 or envs.max() >= self.num_envs):
            raise ValueError(f"add(): env_ids {envs.tolist()} outside [0, {self.num_envs})")
        if len(np.unique(envs)) != len(envs):
            raise ValueError(f"add(): env_ids {envs.tolist()} repeat an env (one step per env per call)")
        values = self._check_arrays(step, len(envs), "add()", strict=True)
        first = values["is_first"]
        need_first = ~self._open(envs) & ~first
        if need_first.any():
            raise ValueError(f"add(): env {envs[need_first].tolist()} must start an episode with is_first=True "
                             "(its previous step was is_last, or it has none)")
        newest = self._rows(envs, self.count[envs] - 1)
        pos = np.where(first, 0, self.pos[newest] + 1)
        rows = self._rows(envs, self.count[envs])
        for key, value in values.items():
            self.arrays[key][rows] = value
        self.pos[rows] = pos
        self.count[envs] += 1
        if self.folder is not None:
            for env in envs[values["is_last"]]:
                self._write_episode(int(env))

    def add_episode(self, episode: Mapping[str, np.ndarray], env_id: int | None = None) -> int:
        """Append a whole episode (episode format, e.g. from an :class:`EpisodeFolder`) to one env's ring.

        ``env_id`` defaults to the env holding the fewest steps among those not
        inside an episode, which spreads prefilled episodes over the rings.
        Keys the buffer does not store are ignored; an episode longer than a
        ring keeps its last ``ring`` steps. Episodes added here are not written
        to ``episode_dir`` (they usually come from disk already). Returns the env.
        """
        validate_episode(episode)
        length = len(episode["image"])
        values = self._check_arrays(episode, length, "add_episode()", strict=False)
        if not values["is_last"][-1] or values["is_last"][:-1].any():
            raise ValueError("add_episode(): 'is_last' must be true at the last step only")
        free = np.flatnonzero(~self._open(np.arange(self.num_envs)))
        if env_id is None:
            if not len(free):
                raise ValueError("add_episode(): every env is inside an episode; finish them or pass env_id")
            env = int(free[np.argmin(self.count[free])])
        else:
            env = int(env_id)
            if not 0 <= env < self.num_envs:
                raise ValueError(f"add_episode(): env_id {env} outside [0, {self.num_envs})")
            if env not in free:
                raise ValueError(f"add_episode(): env {env} is inside an episode; an episode must start after is_last")
        keep = min(length, self.ring)
        rows = self._rows(env, self.count[env] + np.arange(length - keep, length))
        for key, value in values.items():
            self.arrays[key][rows] = value[length - keep:]
        self.pos[rows] = np.arange(length - keep, length)
        self.count[env] += length
        return env

    def _write_episode(self, env: int) -> None:
        """Write the episode that just ended in ``env`` to ``episode_dir``, gathered from the ring."""
        end = int(self.count[env]) - 1
        start = end - int(self.pos[self._rows(env, end)])
        if start < self.count[env] - self.sizes[env]:
            warnings.warn(f"episode of {end - start + 1} frames in env {env} is longer than its ring "
                          f"({self.ring} steps), so its start was overwritten; not written to {self.folder.path}")
            return
        rows = self._rows(env, np.arange(start, end + 1))
        self.folder.append({key: array[rows] for key, array in self.arrays.items()})
        self.episodes_written += 1

    # -------------------------------------------------------------- sampling

    def _draw(self, n: int, weights: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` (env, stream index) pairs uniform over the first ``weights[e]`` held indices of each env."""
        cum = np.cumsum(weights)
        index = rng.integers(cum[-1], size=n)
        env = np.searchsorted(cum, index, side="right")
        t = self.count[env] - self.sizes[env] + index - (cum[env] - weights[env])
        return env, t

    def _draw_valid(
        self,
        n: int,
        weights: np.ndarray,
        valid: Callable[[np.ndarray, np.ndarray], np.ndarray],
        rng: np.random.Generator,
        error: str,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` pairs uniform over the candidates of :meth:`_draw` for which ``valid`` holds.

        Rejection sampling (a few vectorised rounds) covers the usual case
        where nearly all candidates are valid; if valid ones are rare, every
        candidate is checked at once (one vectorised pass) and drawn from.
        """
        envs, ts, need = [], [], n
        for _ in range(REJECTION_ROUNDS):
            env, t = self._draw(need + need // 4 + 8, weights, rng)
            ok = valid(env, t)
            envs.append(env[ok][:need])
            ts.append(t[ok][:need])
            need -= len(envs[-1])
            if not need:
                return np.concatenate(envs), np.concatenate(ts)
        total = int(weights.sum())
        env = np.repeat(np.arange(self.num_envs), weights)
        t = (np.arange(total) - np.repeat(np.cumsum(weights) - weights, weights)
             + np.repeat(self.count - self.sizes, weights))
        ok = np.flatnonzero(valid(env, t))
        if not len(ok):
            raise ValueError(error)
        pick = ok[rng.integers(len(ok), size=need)]
        return np.concatenate([*envs, env[pick]]), np.concatenate([*ts, t[pick]])

    def sample_sequences(
        self, batch: int, length: int, rng: np.random.Generator | None = None, within_episode: bool = False
    ) -> dict[str, np.ndarray]:
        """``batch`` windows of ``length`` consecutive steps of one env, each key as ``[batch, length, ...]``.

        Windows are uniform over all windows of held steps. As in DreamerV3
        they may run from one episode into the next (``is_first`` marks where
        the new one starts, and the world model resets its state there), which
        keeps every step equally likely, episode ends included; they never mix
        envs or include overwritten rows. ``within_episode=True`` keeps only
        windows inside one episode. ``rng`` defaults to the buffer's own
        generator (part of the saved state).
        """
        if batch < 1 or length < 1:
            raise ValueError(f"sample_sequences(): batch and length must be >= 1, got {batch} and {length}")
        rng = self.rng if rng is None else rng
        weights = np.maximum(self.sizes - length + 1, 0)
        if not weights.any():
            raise ValueError(f"sample_sequences(): need {length} consecutive steps of one env; {self._describe()}")
        if within_episode:
            env, t = self._draw_valid(
                batch, weights, lambda e, s: self.pos[self._rows(e, s + length - 1)] >= length - 1, rng,
                f"sample_sequences(): no episode has {length} consecutive steps held; {self._describe()}",
            )
        else:
            env, t = self._draw(batch, weights, rng)
        rows = self._rows(env[:, None], t[:, None] + np.arange(length))
        return {key: np.take(array, rows, axis=0) for key, array in self.arrays.items()}

    def _transition_plan(
        self, env: np.ndarray, t: np.ndarray, n_step: int, frame_stack: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For obs rows ``t``: validity, steps m to the bootstrap obs, whether it is terminal, episode start.

        m is ``n_step``, or fewer when the episode ends first (an ``is_last``
        at t+m, or an ``is_first`` at t+m+1 for a cut-off episode). A candidate
        is valid when m >= 1, all of t..t+m is held (an episode still running
        needs its n steps stored) and its ``frame_stack`` frames, clamped at the
        episode start, are held.
        """
        newest = self.count[env] - 1
        ahead = t[:, None] + np.arange(1, n_step + 1)
        held = ahead <= newest[:, None]
        rows = self._rows(env[:, None], np.minimum(ahead, newest[:, None]))
        ends = self.arrays["is_last"][rows] & held
        cut = self.arrays["is_first"][rows] & held
        never = n_step + 1
        m_end = np.where(ends.any(1), ends.argmax(1) + 1, never)
        m_cut = np.where(cut.any(1), cut.argmax(1), never)
        m = np.minimum(np.minimum(m_end, m_cut), n_step)
        start = t - self.pos[self._rows(env, t)]
        oldest = self.count[env] - self.sizes[env]
        ok = (m >= 1) & (t + m <= newest) & (np.maximum(t - frame_stack + 1, start) >= oldest)
        terminal = self.arrays["is_terminal"][self._rows(env, t + m)] & ok
        return ok, m, terminal, start

    def sample_transitions(
        self,
        batch: int,
        n_step: int = 1,
        discount: float = 0.99,
        frame_stack: int = 1,
        rng: np.random.Generator | None = None,
    ) -> dict[str, np.ndarray]:
        """``batch`` n-step transitions (DrQ, DrQ-v2), uniform over the valid observation rows.

        Returns ``obs`` and ``next_obs`` uint8 ``[batch, frame_stack, H, W, C]``
        (oldest frame first; frames before the episode start repeat its first
        frame), ``action`` ``[batch, A]`` (the action taken at obs),
        ``reward`` float32, the discounted sum of the next m rewards, and
        ``discount`` float32, ``discount**m``, or 0 when the episode
        terminated at step m; plus ``state`` and ``next_state`` when states are
        stored. m is ``n_step`` unless the episode ends sooner: then the
        return stops there and ``next_obs`` is the episode's last observation,
        with discount 0 only if it terminated (a truncation still bootstraps).
        Windows never cross an episode boundary.
        """
        if "image" not in self.arrays:
            raise ValueError("sample_transitions(): transitions stack frames, but the buffer stores no images "
                             "(image_shape=None); sample_sequences() takes vector observations")
        if batch < 1 or n_step < 1 or frame_stack < 1:
            raise ValueError(f"sample_transitions(): batch, n_step and frame_stack must be >= 1, "
                             f"got {batch}, {n_step}, {frame_stack}")
        if not 0.0 <= discount <= 1.0:
            raise ValueError(f"sample_transitions(): discount must be in [0, 1], got {discount}")
        rng = self.rng if rng is None else rng
        weights = np.maximum(self.sizes - 1, 0)
        if not weights.any():
            raise ValueError(f"sample_transitions(): need 2 steps of one env; {self._describe()}")
        env, t = self._draw_valid(
            batch, weights, lambda e, s: self._transition_plan(e, s, n_step, frame_stack)[0], rng,
            f"sample_transitions(): no step has its next {n_step} steps (or its episode's end) and "
            f"{frame_stack - 1} earlier frames (or its episode's start) held; {self._describe()}",
        )
        _, m, terminal, start = self._transition_plan(env, t, n_step, frame_stack)
        offsets = np.arange(1 - frame_stack, 1)

        def frames(last: np.ndarray) -> np.ndarray:
            rows = self._rows(env[:, None], np.maximum(last[:, None] + offsets, start[:, None]))
            return np.take(self.arrays["image"], rows, axis=0)

        steps = np.arange(1, n_step + 1)
        reward_rows = self._rows(env[:, None], np.minimum(t[:, None] + steps, (t + m)[:, None]))
        weights_n = np.where(steps <= m[:, None], discount ** (steps - 1.0), 0.0)
        result = {
            "obs": frames(t),
            "action": self.arrays["action"][self._rows(env, t + 1)],
            "reward": (self.arrays["reward"][reward_rows] * weights_n).sum(1).astype(np.float32),
            "discount": np.where(terminal, 0.0, discount ** m.astype(np.float64)).astype(np.float32),
            "next_obs": frames(t + m),
        }
        if "state" in self.arrays:
            result["state"] = self.arrays["state"][self._rows(env, t)]
            result["next_state"] = self.arrays["state"][self._rows(env, t + m)]
        return result

    # ----------------------------------------------------------------- state

    def _config(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "num_envs": self.num_envs,
            "ring": self.ring,
            "specs": {key: [list(shape), dtype.str] for key, (shape, dtype) in self.specs.items()},
        }

    def _check_config(self, config: Mapping[str, Any], source: str) -> None:
        ours = self._config()
        diff = [f"{k}: saved {config.get(k)!r}, this buffer {v!r}" for k, v in ours.items() if config.get(k) != v]
        if diff:
            raise ValueError(f"{source} does not fit this buffer ({'; '.join(diff)})")

    def _all_arrays(self) -> dict[str, np.ndarray]:
        return {**self.arrays, POS_KEY: self.pos}

    def state_dict(self) -> dict[str, Any]:
        """The full state: config, per-env step counts, sampling rng state and the arrays.

        The arrays are the live storage, not copies (a copy would double the
        memory); :meth:`save` writes them, and :meth:`load_state_dict` copies
        from them, so take a copy only if you keep the dict while adding.
        """
        return {
            "config": self._config(),
            "count": self.count.copy(),
            "rng": self.rng.bit_generator.state,
            "episodes_written": self.episodes_written,
            "arrays": self._all_arrays(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state`` by copying into the preallocated arrays (restoring twice gives the same buffer)."""
        self._check_config(state["config"], "state dict")
        ours = self._all_arrays()
        arrays = state["arrays"]
        for key, target in ours.items():
            if key not in arrays:
                raise ValueError(f"state dict: missing array '{key}'")
            source = np.asarray(arrays[key])
            if source.shape != target.shape or source.dtype != target.dtype:
                raise ValueError(f"state dict: '{key}' is {source.dtype}{list(source.shape)}, "
                                 f"the buffer's is {target.dtype}{list(target.shape)}")
        count = np.asarray(state["count"], np.int64)
        if count.shape != self.count.shape or (count < 0).any():
            raise ValueError(f"state dict: 'count' must be {self.num_envs} non-negative step counts, got {count}")
        for key, target in ours.items():
            np.copyto(target, arrays[key])
        self._restore_counters(count, state["rng"], state.get("episodes_written", 0))

    def _restore_counters(self, count: np.ndarray, rng_state: Mapping[str, Any], episodes_written: int) -> None:
        self.count[:] = count
        self.rng.bit_generator.state = dict(rng_state)
        self.episodes_written = int(episodes_written)

    def save(self, path: str | Path) -> Path:
        """Write the state to ``path``, one uncompressed ``.npz``, atomically (a temp file, then ``os.replace``).

        Only the rows the envs hold are written (each ring's first ``size`` rows,
        env after env), so a checkpoint early in a run is small, and nothing is
        copied on the way: each ring's slice streams into the archive.
        """
        path = Path(path)
        meta = {key: value for key, value in self.state_dict().items() if key != "arrays"}
        meta["count"] = self.count.tolist()
        meta["layout"] = HELD_LAYOUT
        slices = [slice(env * self.ring, env * self.ring + int(size)) for env, size in enumerate(self.sizes)]

        def write(file: Any) -> None:
            # Stored, not deflated: load() streams members into place.
            with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                _write_npy(archive, META_MEMBER, [np.frombuffer(json.dumps(meta).encode(), np.uint8)])
                for key, array in self._all_arrays().items():
                    _write_npy(archive, key, [array[rows] for rows in slices])

        return atomic_write(path, write)

    def load(self, path: str | Path) -> None:
        """Restore a :meth:`save` file, streaming each array into the preallocated storage in small chunks.

        Peak extra memory is about two 1 MiB chunks (zipfile's read buffers),
        never a second copy of the buffer. Loading replaces the contents (it does not append), so loading
        twice gives the same buffer. If reading fails part-way the buffer is
        left empty rather than half old, half new.
        """
        path = Path(path)
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as error:
            raise ValueError(f"{path}: not a replay buffer file ({error})") from error
        with archive:
            names = set(archive.namelist())
            if f"{META_MEMBER}.npy" not in names:
                raise ValueError(f"{path}: not a replay buffer file (no {META_MEMBER})")
            with archive.open(f"{META_MEMBER}.npy") as f:
                meta = json.loads(np.lib.format.read_array(f, allow_pickle=False).tobytes())
            self._check_config(meta["config"], str(path))
            targets = self._all_arrays()
            missing = [key for key in targets if f"{key}.npy" not in names]
            if missing:
                raise ValueError(f"{path}: missing arrays {missing}")
            count = np.asarray(meta["count"], np.int64)
            held = meta.get("layout") == HELD_LAYOUT  # else the whole preallocated arrays (files before it)
            sizes = np.minimum(count, self.ring) if held else np.full(self.num_envs, self.ring)
            old_sizes = self.sizes.copy()
            try:
                for key, target in targets.items():
                    rings = [target[env * self.ring:(env + 1) * self.ring] for env in range(self.num_envs)]
                    with archive.open(f"{key}.npy") as f:
                        _read_into(f, [ring[:size] for ring, size in zip(rings, sizes)], f"{path}: '{key}'")
                    for ring, size, old in zip(rings, sizes, old_sizes):
                        ring[size:old] = 0  # rows this buffer held before, beyond the file's
            except BaseException:
                self.count[:] = 0
                raise
        self._restore_counters(count, meta["rng"], meta.get("episodes_written", 0))


def _write_npy(archive: zipfile.ZipFile, name: str, parts: list[np.ndarray]) -> None:
    """Write the concatenation of ``parts`` (C-contiguous, same dtype and trailing shape) as ``name.npy``."""
    first = parts[0]
    header = {"descr": np.lib.format.dtype_to_descr(first.dtype), "fortran_order": False,
              "shape": (sum(len(part) for part in parts), *first.shape[1:])}
    with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_2_0(f, header)
        for part in parts:
            f.write(memoryview(np.ascontiguousarray(part).reshape(-1).view(np.uint8)))


def _read_into(f: Any, targets: list[np.ndarray], name: str) -> None:
    """Read one ``.npy`` stream into ``targets`` in order (their rows, concatenated, are the array) chunk by chunk."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"{name}: unsupported .npy format version {version}")
    first = targets[0]
    expected = (sum(len(target) for target in targets), *first.shape[1:])
    if tuple(shape) != expected or dtype != first.dtype or (fortran and first.ndim > 1):
        raise ValueError(f"{name} is {dtype}{list(shape)}, the buffer expects {first.dtype}{list(expected)}")
    for target in targets:
        view = memoryview(target.reshape(-1).view(np.uint8))
        done = 0
        while done < len(view):
            got = f.readinto(view[done:done + READ_CHUNK_BYTES])
            if not got:
                raise ValueError(f"{name} is truncated ({done} of {len(view)} bytes of a ring)")
            done += got
