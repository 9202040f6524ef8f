"""Data-parallel helpers: process-group setup from ``torchrun``'s environment, and cross-rank reductions.

A trainer launched by ``torchrun --nproc_per_node=N`` finds ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK`` in its environment; :func:`init_distributed`
joins the process group (NCCL on CUDA, Gloo otherwise) and picks the rank's
device. Without those variables everything here is a no-op on one process,
so the same training code runs with and without DDP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from worldrl.device import resolve_device


@dataclass
class DistributedContext:
    """Where this process stands in a (possibly one-process) data-parallel job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False
    """Whether :func:`init_distributed` created the process group (and so :meth:`close` destroys it)."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, prints and writes checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def init_distributed(device: str | torch.device = "auto") -> DistributedContext:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1, and choose this rank's device.

    On CUDA each rank takes ``cuda:LOCAL_RANK``. A process group that is
    already initialised (by the caller) is used as it is.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not dist.is_initialized():
        return DistributedContext(device=resolve_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=resolved if resolved.type == "cuda" else None)
        owns = True
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, resolved, owns)


def all_reduce(tensor: Tensor, op: str = "mean") -> Tensor:
    """``tensor`` reduced over ranks (``mean``, ``sum``, ``min`` or ``max``) in place; unchanged on one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    ops = {"mean": dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
    dist.all_reduce(tensor, op=ops[op])
    if op == "mean":
        tensor /= dist.get_world_size()
    return tensor


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` on one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` wrapper (or the module itself)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def wrap(module: nn.Module, context: DistributedContext, find_unused_parameters: bool = False) -> nn.Module:
    """``module`` in ``DistributedDataParallel`` when running on several ranks, else unchanged.

    Buffers (codebook EMA statistics) are broadcast from rank 0 at every
    forward, so they stay identical even if a module updates them per rank.
    """
    if not context.enabled:
        return module
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )
