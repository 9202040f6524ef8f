"""Exploration bonuses: intrinsic rewards for the transitions an agent sees, as ``nn.Module`` s with ``state_dict``.

VIPER adds ``beta * r_expl`` to the likelihood reward (beta 0 makes the
policy collapse into the likeliest frames). A bonus sees a batch of
:class:`Transition` s, returns one intrinsic reward per transition and, when
``learn`` is True, takes one online training step on them (the bonus is
computed *before* the step, so a transition is rewarded for how novel it was
when it happened). Bonuses normalise their raw novelty by a running standard
deviation (:class:`RunningMeanStd`), so ``beta = 1`` means "as large as a
typical novelty", whatever the network.

The optimizer is part of the module: its state travels in ``state_dict()``
(as the ``_extra_state`` entry), so a saved and reloaded bonus continues
training exactly as the original would (save with ``torch.save``; the entry
is nested Python data, not a flat tensor map).

Any callable ``bonus(transition) -> [B]`` can stand in for one (the VIPER
wrapper's ``exploration=`` accepts it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from worldrl.device import resolve_device


@dataclass
class Transition:
    """A batch of transitions ``(x_t, a_t, x_{t+1})``; the fields a bonus does not need may be None."""

    next_obs: Tensor
    """``uint8 [B, H, W, C]``: the frame the action led to (the one VIPER scores)."""
    obs: Tensor | None = None
    """``uint8 [B, H, W, C]``: the frame the action was taken in."""
    action: Tensor | None = None
    """``float [B, A]`` (one-hot for discrete actions)."""
    features: Tensor | None = None
    """``float [B, F]``: tokenizer embedding of ``obs`` (the quantized codes' vectors, flattened)."""
    next_features: Tensor | None = None
    """``float [B, F]``: tokenizer embedding of ``next_obs``."""


def check_tensor(value: Any, name: str, shape: tuple[int | None, ...], dtype: torch.dtype | None = None) -> Tensor:
    """``value`` if it is a tensor of this shape (None: any size) and dtype (None: any float), else ValueError."""
    expected = f"{dtype or 'float'} [{', '.join('B' if n is None else str(n) for n in shape)}]"
    if not isinstance(value, Tensor):
        raise ValueError(f"{name}: expected a tensor {expected}, got {type(value).__name__}")
    dtype_ok = value.dtype == dtype if dtype is not None else value.is_floating_point()
    shape_ok = value.ndim == len(shape) and all(n is None or n == m for n, m in zip(shape, value.shape))
    if not (dtype_ok and shape_ok):
        raise ValueError(f"{name}: expected {expected}, got {value.dtype} {list(value.shape)}")
    return value


class RunningMeanStd(nn.Module):
    """Running mean and variance of a scalar stream (parallel Welford update), kept in the ``state_dict``.

    The statistics are float64, so bonuses keep this module on the CPU (MPS has no float64).
    """

    def __init__(self, epsilon: float = 1e-4):
        super().__init__()
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("var", torch.ones((), dtype=torch.float64))
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    @torch.no_grad()
    def update(self, values: Tensor) -> None:
        values = values.detach().to(self.mean.device, torch.float64).flatten()
        if not values.numel():
            return
        batch_mean, batch_var, batch_count = values.mean(), values.var(unbiased=False), values.numel()
        delta, total = batch_mean - self.mean, self.count + batch_count
        self.mean += delta * batch_count / total
        self.var.copy_((self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total)
                       / total)
        self.count.copy_(total)

    @property
    def std(self) -> Tensor:
        return self.var.sqrt().clamp_min(1e-8)


class ExplorationBonus(nn.Module):
    """Base class: subclasses implement :meth:`novelty` (raw, per transition) and :meth:`loss` (to learn it)."""

    def __init__(self, normalize: bool = True, device: str | torch.device = "auto"):
        super().__init__()
        self.normalize = normalize
        self.device = resolve_device(device)
        """Where subclasses put their networks and inputs (the running stats stay on the CPU)."""
        self.stats = RunningMeanStd()
        self.optimizer: torch.optim.Optimizer | None = None

    def novelty(self, transition: Transition) -> Tensor:
        """Raw novelty ``[B]`` (no gradient needed)."""
        raise NotImplementedError

    def loss(self, transition: Transition) -> Tensor:
        """Scalar training loss of the bonus's networks on these transitions."""
        raise NotImplementedError

    def forward(self, transition: Transition, learn: bool = True) -> Tensor:
        """Intrinsic reward ``[B]`` (float32, on the CPU), normalised by the running std of the novelty."""
        with torch.no_grad():
            raw = self.novelty(transition).float().cpu()
        if self.normalize:
            self.stats.update(raw)
            reward = raw / self.stats.std.to(raw)
        else:
            reward = raw
        if learn and self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
            self.loss(transition).backward()
            self.optimizer.step()
        return reward

    def get_extra_state(self) -> dict[str, Any]:
        """The optimizer's state (moments, step counts), stored in ``state_dict()`` beside the weights."""
        return {"optimizer": None if self.optimizer is None else self.optimizer.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Load the optimizer's state, copied (as ``load_state_dict`` copies weights) so no tensor is shared."""
        if self.optimizer is not None and state.get("optimizer") is not None:
            self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
