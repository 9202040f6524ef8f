"""What every trainer shares: the run folder, exact resume, the NaN guard and logging helpers.

A run folder holds ``config.yaml`` (the resolved config), ``checkpoint.pt``
(only tensors, dicts, lists, numbers and strings, so ``torch.load(...,
weights_only=True)`` reads it) and TensorBoard logs in ``tb/``.
:class:`RunTrainer` implements reading, comparing and writing them, RNG
restore, the finite-loss check and gradient clipping; a trainer subclasses
it and adds its model, data and step. :class:`ClipBatches` makes the data
order a pure function of the step, which is what makes resuming exact.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import random
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import yaml
from torch import Tensor, nn
from torch.utils.data import Sampler

from worldrl.atomic import atomic_write
from worldrl.config import ConfigError, build_dataclass, to_dict
from worldrl.training.distributed import DistributedContext, all_gather_objects, all_reduce, barrier, init_distributed

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.yaml"
TENSORBOARD_DIR = "tb"
BASE_RESUMABLE_KEYS = frozenset(
    {"steps", "log_every", "eval_every", "checkpoint_every", "eval_batches", "num_workers", "find_unused_parameters"}
)
"""``train.*`` keys every trainer lets differ between a checkpoint and the run resuming it."""


class NonFiniteLossError(FloatingPointError):
    """A loss term or gradient norm became NaN or infinite; training stopped before applying that step."""


class ConfigMismatchError(ValueError):
    """The run folder holds a checkpoint made with another config."""


def config_differences(
    old: Mapping[str, Any], new: Mapping[str, Any], resumable: frozenset[str] = BASE_RESUMABLE_KEYS
) -> list[str]:
    """``key: old -> new`` for every entry that differs, leaving out the ``train.*`` keys in ``resumable``."""
    a, b = _flatten(old), _flatten(new)
    return [
        f"{key}: {a.get(key, '<unset>')!r} -> {b.get(key, '<unset>')!r}"
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key) and not (key.startswith("train.") and key[6:] in resumable)
    ]


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class ClipBatches(Sampler[list[int]]):
    """An endless stream of one rank's batches of clip indices, which can start at any batch.

    Epoch ``e`` is a permutation of the dataset drawn from ``(seed, e)``,
    padded by wrapping to a multiple of ``world_size`` and dealt out like
    ``DistributedSampler``: rank ``r`` takes every ``world_size``-th index
    from ``r``. Batches run on across epoch ends, so batch ``k`` is a pure
    function of ``k``: a run resumed at step ``k`` sees the batches an
    uninterrupted run would.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0):
        if size < 1 or batch_size < 1:
            raise ValueError(f"need a non-empty dataset and batch_size >= 1, got {size} and {batch_size}")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size, self.start = rank, world_size, start
        self.per_rank = math.ceil(size / world_size)

    def epoch_order(self, epoch: int) -> np.ndarray:
        order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        order = np.resize(order, self.per_rank * self.world_size)
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        epoch, offset = divmod(self.start * self.batch_size, self.per_rank)
        order = self.epoch_order(epoch)
        batch: list[int] = []
        while True:
            take = min(self.batch_size - len(batch), self.per_rank - offset)
            batch.extend(order[offset : offset + take].tolist())
            offset += take
            if len(batch) == self.batch_size:
                yield batch
                batch = []
            if offset == self.per_rank:
                epoch, offset = epoch + 1, 0
                order = self.epoch_order(epoch)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(device: torch.device) -> dict[str, Any]:
    """The RNG states of torch (CPU and ``device``), numpy and Python, as tensors, numbers and lists only."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss,
                  "cached_gaussian": cached},
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    numpy = state["numpy"]
    np.random.set_state(
        ("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"])
    )
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))


def eval_indices(size: int, total: int, rank: int, world_size: int) -> tuple[np.ndarray, Tensor]:
    """This rank's share of ``total`` items spread evenly over a split of ``size``, and a 0/1 weight per item.

    Every rank gets the same number of items (so collective calls line up);
    the padding items have weight 0.
    """
    indices = np.unique(np.linspace(0, size - 1, min(size, total)).round().astype(np.int64))
    per_rank = math.ceil(len(indices) / world_size)
    mine = indices[rank::world_size]
    weights = torch.ones(per_rank)
    weights[len(mine) :] = 0
    mine = np.resize(mine, per_rank) if len(mine) else np.resize(indices, per_rank)
    return mine, weights


def differing_tensors(modules: Mapping[str, nn.Module | None]) -> list[str]:
    """Names (``prefix + key``) of the state tensors that are not bit-identical on all ranks (``[]`` on one).

    Parameters must never differ under DDP; some buffers may, by design
    (VQ's ring of each rank's recent encoder outputs).
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return []
    digests = {}
    for prefix, module in modules.items():
        for key, value in (module.state_dict() if module is not None else {}).items():
            data = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            digests[prefix + key] = hashlib.sha256(data).hexdigest()
    gathered = all_gather_objects(digests)
    return sorted(key for key in digests if len({d.get(key) for d in gathered}) > 1)


def log_video_comparison(
    writer: Any, tag: str, name: str, real: Tensor, fake: Tensor, step: int, count: int = 8
) -> None:
    """Real clips above generated ones (float ``[B, C, T, H, W]`` in ``[-1, 1]``) in TensorBoard.

    ``<tag>/<name>``: first frames; for clips of several frames also
    ``<tag>/<name>_video`` (needs moviepy) or else ``<tag>/<name>_clip``, the
    first clip's frames as a strip.
    """
    real = real[:count].detach().float().add(1).div(2).clamp(0, 1).cpu()
    fake = fake[:count].detach().float().add(1).div(2).clamp(0, 1).cpu()
    first_frames = torch.cat([torch.cat(list(real[:, :, 0]), dim=-1), torch.cat(list(fake[:, :, 0]), dim=-1)], -2)
    writer.add_image(f"{tag}/{name}", first_frames, step)
    if real.shape[2] == 1:
        return
    if importlib.util.find_spec("moviepy") is not None:
        side_by_side = torch.cat([real, fake], dim=-1).transpose(1, 2)
        writer.add_video(f"{tag}/{name}_video", side_by_side, step, fps=4)
    else:
        strip = torch.cat([torch.cat(list(real[0].unbind(1)), -1), torch.cat(list(fake[0].unbind(1)), -1)], -2)
        writer.add_image(f"{tag}/{name}_clip", strip, step)


def resolve_model(config: Mapping[str, Any], sections: Sequence[str], kinds: Mapping[str, type]) -> dict[str, Any]:
    """The ``model`` section with every default filled in (``type`` picks the class in ``kinds``, whose
    ``config_class`` it builds); sections not in ``sections`` are errors."""
    unknown = sorted(set(config) - set(sections))
    if unknown:
        raise ConfigError(f"unknown config section {unknown[0]!r}; sections: {', '.join(sections)}")
    model = dict(config.get("model") or {})
    kind = model.pop("type", None)
    if kind not in kinds:
        raise ConfigError(f"model.type must be one of {', '.join(sorted(kinds))}, got {kind!r}")
    return {"type": kind, **to_dict(build_dataclass(kinds[kind].config_class, model, "model"))}


def local_batch(batch_size: int, context: DistributedContext) -> int:
    """This rank's share of the global ``train.batch_size``, which the ranks must split evenly."""
    if batch_size % context.world_size:
        raise ConfigError(
            f"train.batch_size ({batch_size}) must be divisible by the number of ranks ({context.world_size})"
        )
    return batch_size // context.world_size


class RunTrainer:
    """Base of the trainers: run folder, checkpoint reading and writing, RNG restore, NaN guard, clipping.

    A subclass sets ``out``, ``context``, ``device``, ``config`` (resolved),
    ``train_config`` (with ``seed``, ``bf16``, ``grad_clip``), ``step``,
    ``saved_step`` and ``writer``, and implements :meth:`checkpoint_state`
    and :meth:`export` (the exportable model folder).
    """

    what: ClassVar[str] = "model"
    """Named in error messages ("not a worldrl <what> training checkpoint")."""
    checkpoint_format: ClassVar[int] = 1
    resumable_keys: ClassVar[frozenset[str]] = BASE_RESUMABLE_KEYS

    out: Path
    context: DistributedContext
    device: torch.device
    config: dict[str, Any]
    train_config: Any
    step: int
    saved_step: int | None
    writer: Any = None

    def _open_run(
        self, config: dict[str, Any], out: str | Path, device: str | torch.device, progress: bool,
        context: DistributedContext | None,
    ) -> None:
        """Set the resolved ``config``, the run folder, the process group (joined unless given) and its device;
        only rank 0 shows progress."""
        self.context = context or init_distributed(device)
        self.device = self.context.device
        self.config = config
        self.out = Path(out)
        self.progress = progress and self.context.is_main

    # Subclasses -----------------------------------------------------------------------------------------------------
    def checkpoint_state(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        """What ``checkpoint.pt`` holds besides ``format``, ``step``, ``config``, ``rng`` and ``world_size``."""
        raise NotImplementedError

    def export(self) -> None:
        """Write the exportable model folder (rank 0, at every checkpoint)."""
        raise NotImplementedError

    # Run folder -----------------------------------------------------------------------------------------------------
    def _write_config(self) -> None:
        """``config.yaml``: at the start, and with every checkpoint (a ``--force`` change shows from its first)."""
        text = yaml.safe_dump(self.config, sort_keys=False)
        atomic_write(self.out / CONFIG_FILE, lambda file: file.write(text.encode()))

    def _read_checkpoint(self, force: bool) -> dict[str, Any] | None:
        """The checkpoint in the run folder (None if there is none); another config is an error unless ``force``."""
        path = self.out / CHECKPOINT_FILE
        if not path.is_file():
            return None
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"{path} is not a readable training checkpoint ({error})") from error
        if not isinstance(checkpoint, dict) or checkpoint.get("format") != self.checkpoint_format:
            raise ValueError(
                f"{path} is not a worldrl {self.what} training checkpoint (format {self.checkpoint_format})"
            )
        differences = config_differences(checkpoint["config"], self.config, self.resumable_keys)
        if differences and not force:
            raise ConfigMismatchError(
                f"{self.out} holds a run with another config ({'; '.join(differences)}); use the same config to "
                "resume, another --out for a new run, or --force to resume with the new config"
            )
        return checkpoint

    def _open_writer(self, checkpoint: Mapping[str, Any] | None) -> None:
        """Rank 0: write ``config.yaml`` (unless a forced resume changed it) and open TensorBoard."""
        if not self.context.is_main:
            return
        from torch.utils.tensorboard import SummaryWriter

        if checkpoint is None or not config_differences(checkpoint["config"], self.config, self.resumable_keys):
            self._write_config()
        # TensorBoard drops what a killed session logged after its last checkpoint; what it logged at the
        # checkpoint's step (evaluations included) came before the save, so it stays.
        self.writer = SummaryWriter(str(self.out / TENSORBOARD_DIR), purge_step=self.step + 1 if self.step else None)

    def _restore_rng(self, states: list[dict[str, Any]]) -> None:
        """Continue this rank's RNG states; from a checkpoint of another world size, reseed (and say so)."""
        if len(states) == self.context.world_size:
            set_rng_state(states[self.context.rank], self.device)
            return
        seed_everything(self.train_config.seed + self.step + self.context.rank)
        if self.context.is_main:
            print(
                f"note: the checkpoint was written by {len(states)} ranks, this run has {self.context.world_size}: "
                "random states and data order are not continued exactly",
                file=sys.stderr,
            )

    def save(self) -> None:
        """Write ``checkpoint.pt``, ``config.yaml`` and the exported model (rank 0; every rank takes part)."""
        rng = all_gather_objects(rng_state(self.device))
        if self.context.is_main:
            state = {
                "format": self.checkpoint_format,
                "step": self.step,
                "config": self.config,
                **self.checkpoint_state(rng),
                "rng": rng,
                "world_size": self.context.world_size,
            }
            atomic_write(self.out / CHECKPOINT_FILE, lambda file: torch.save(state, file))
            self._write_config()
            self.export()
        barrier()
        self.saved_step = self.step

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    # Steps ----------------------------------------------------------------------------------------------------------
    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.train_config.bf16)

    def _check_finite(self, terms: Mapping[str, Tensor]) -> None:
        """Raise :class:`NonFiniteLossError` if any term is NaN or infinite on any rank (all ranks raise together)."""
        values = torch.stack([t.detach().float().reshape(()) for t in terms.values()])
        finite = all_reduce(torch.isfinite(values).float(), "min")
        if bool(finite.all()):
            return
        pairs = zip(zip(terms, values.tolist()), finite.tolist())
        bad = [f"{name} = {value:g}" for (name, value), ok in pairs if not ok]
        self._stop(f"non-finite loss at step {self.step + 1}: {', '.join(bad)}")

    def _clip(self, model: nn.Module, name: str) -> Tensor:
        """Clip the gradient norm to ``train.grad_clip`` (if set); a non-finite norm stops training."""
        limit = self.train_config.grad_clip or math.inf
        norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], limit)
        if not bool(torch.isfinite(norm)):
            self._stop(f"non-finite gradient norm of the {name} at step {self.step + 1}: {float(norm):g}")
        return norm

    def _stop(self, message: str) -> None:
        where = (
            f"the last good checkpoint ({self.out / CHECKPOINT_FILE}, step {self.saved_step}) is unchanged"
            if self.saved_step is not None
            else "no checkpoint was written"
        )
        raise NonFiniteLossError(f"{message}; training stopped, {where}")

    def _mean_over_ranks(self, sums: Mapping[str, float], count: int) -> dict[str, float]:
        """Means of logged sums over ``count`` steps, averaged over the ranks."""
        keys = sorted(sums)
        means = torch.tensor([sums[k] / count for k in keys], dtype=torch.float64, device=self.device)
        return dict(zip(keys, all_reduce(means).tolist()))
