"""The transformer shared by the video predictors: pre-norm blocks, temporal RoPE, and a rolling KV cache.

Every token carries the *time* of the frame it belongs to. Attention rotates
queries and keys by that time (rotary embeddings, RoPE), so scores depend
only on how many frames apart two tokens are: a model trained on 16-frame
clips runs on episodes of any length. Where a token sits inside its frame is
a learned embedding the model adds to its inputs.

Which keys a query sees is a boolean mask per layer that the predictor builds
from the tokens' times and in-frame indices (see :func:`window_mask`). Layer
``l`` looks back ``windows[l]`` frames (:func:`layer_windows`), and the windows
add up to the model's context ``k``: the frame at time ``t`` depends on exactly
the frames ``t-k .. t-1``, however long the episode, and the keys and values
cached for a frame never need recomputing (stacked windows, each frame's
states computed once). The same
function builds the mask for a training clip (keys = the clip) and for a step
against the :class:`FrameCache` (keys = the cached frames), so streaming and
batch scoring compute the same function.

:class:`FrameCache` keeps the keys and values of the last ``capacity`` frames
of every layer in a ring of frame slots: frame ``t`` of batch row ``b`` lives
in slot ``t % capacity``. Keys are stored already rotated, so a slot's
content never changes once written. Rows keep their own times, so each row
of a batch can be at a different point of its own episode and be reset on its
own (:meth:`FrameCache.reset`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EMPTY_TIME = -(2**40)
"""Time of an empty cache slot: farther in the past than any window reaches."""


@dataclass
class TransformerConfig:
    hidden: int = 256
    ffn: int = 1024
    heads: int = 8
    layers: int = 8
    dropout: float = 0.0
    """Dropout on attention weights and after attention and FFN (training only)."""
    rope_base: float = 10_000.0
    """Base of the rotary frequencies over frame time."""

    def __post_init__(self) -> None:
        if self.hidden % self.heads or (self.hidden // self.heads) % 2:
            raise ValueError(f"hidden ({self.hidden}) must split into {self.heads} heads of even size")
        if min(self.hidden, self.ffn, self.heads, self.layers) < 1 or not 0 <= self.dropout < 1:
            raise ValueError("hidden, ffn, heads and layers must be >= 1 and dropout in [0, 1)")


class ConditionalLayerNorm(nn.Module):
    """LayerNorm whose gain and bias are shifted per task id (VideoGPT's conditional norm, as VIPER uses)."""

    def __init__(self, dim: int, num_tasks: int = 0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.task_gain = nn.Embedding(num_tasks, dim) if num_tasks else None
        self.task_bias = nn.Embedding(num_tasks, dim) if num_tasks else None
        if num_tasks:
            nn.init.zeros_(self.task_gain.weight)
            nn.init.zeros_(self.task_bias.weight)

    def forward(self, x: Tensor, task: Tensor | None) -> Tensor:
        x = self.norm(x)
        if task is None or self.task_gain is None:
            return x
        gain, bias = self.task_gain(task)[:, None], self.task_bias(task)[:, None]
        return x * (1 + gain) + bias


def rotary(times: Tensor, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """cos and sin ``[B, 1, L, head_dim]`` for token times ``[B, L]`` (angles in float64: exact for long episodes)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=times.device, dtype=torch.float64) / head_dim)
    angles = times.double()[..., None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)[:, None]
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos.to(x.dtype) + rotated * sin.to(x.dtype)).to(x.dtype)


class FrameCache:
    """Keys and values of the last ``capacity`` frames per layer and batch row (see the module docstring)."""

    def __init__(self, batch: int, capacity: int, tokens_per_frame: int, device: torch.device):
        self.batch, self.capacity, self.tokens_per_frame = batch, capacity, tokens_per_frame
        self.slot_time = torch.full((batch, capacity), EMPTY_TIME, dtype=torch.long, device=device)
        self.keys: list[Tensor | None] = []
        self.values: list[Tensor | None] = []
        self.slot_data: dict[str, Tensor] = {}
        """Per-frame tensors ``[B, capacity, ...]`` a predictor keeps beside the keys and values (TECO: each frame's
        codes and latent), in the same slots: :meth:`put` and :meth:`get`."""
        self.features: Tensor | None = None
        """``[B, D]`` features of each row's latest frame, set by predictors that expose them (reward heads)."""

    def key_times(self) -> Tensor:
        """``[B, capacity * tokens_per_frame]`` time of every cached key (``EMPTY_TIME`` where empty)."""
        return self.slot_time.repeat_interleave(self.tokens_per_frame, dim=1)

    def key_index(self) -> Tensor:
        """``[capacity * tokens_per_frame]`` in-frame index of every cached key."""
        return torch.arange(self.tokens_per_frame, device=self.slot_time.device).repeat(self.capacity)

    def claim(self, times: Tensor) -> Tensor:
        """Mark the slots of frames at ``times`` ``[B]`` as holding those frames; return the slots ``[B]``."""
        slots = times % self.capacity
        self.slot_time[torch.arange(self.batch, device=times.device), slots] = times
        return slots

    def write(self, layer: int, slots: Tensor, start: int, keys: Tensor, values: Tensor) -> None:
        """Store ``keys``/``values`` ``[B, H, n, d]`` at in-frame positions ``start:start+n`` of ``slots`` ``[B]``."""
        while len(self.keys) <= layer:
            self.keys.append(None)
            self.values.append(None)
        if self.keys[layer] is None or self.keys[layer].dtype != keys.dtype:
            b, h, _, d = keys.shape
            shape = (b, h, self.capacity, self.tokens_per_frame, d)
            self.keys[layer] = keys.new_zeros(shape)
            self.values[layer] = values.new_zeros(shape)
        rows = torch.arange(self.batch, device=slots.device)
        end = start + keys.shape[2]
        self.keys[layer][rows, :, slots, start:end] = keys
        self.values[layer][rows, :, slots, start:end] = values

    def read(self, layer: int) -> tuple[Tensor, Tensor]:
        """``[B, H, capacity * tokens_per_frame, d]`` keys and values of ``layer``."""
        k, v = self.keys[layer], self.values[layer]
        b, h, c, n, d = k.shape
        return k.view(b, h, c * n, d), v.view(b, h, c * n, d)

    def put(self, name: str, slots: Tensor, values: Tensor) -> None:
        """Store ``values`` ``[B, ...]`` under ``name`` in the frame slots ``slots`` ``[B]`` (claimed beforehand)."""
        if name not in self.slot_data:
            self.slot_data[name] = values.new_zeros((self.batch, self.capacity, *values.shape[1:]))
        self.slot_data[name][torch.arange(self.batch, device=slots.device), slots] = values

    def get(self, name: str, times: Tensor) -> tuple[Tensor | None, Tensor]:
        """What :meth:`put` stored under ``name`` for the frames at ``times`` ``[B]`` (None if nothing yet), and
        ``[B]`` bool: whether the row's slot still holds that frame (False where it was reset or overwritten)."""
        rows = torch.arange(self.batch, device=times.device)
        slots = times % self.capacity
        held = self.slot_time[rows, slots] == times
        data = self.slot_data.get(name)
        return (None if data is None else data[rows, slots]), held

    def reset(self, rows: Tensor) -> None:
        """Forget everything cached for the batch rows where ``rows`` ``[B]`` is True."""
        self.slot_time[rows] = EMPTY_TIME

    def select(self, rows: Tensor) -> FrameCache:
        """A cache of the batch rows ``rows`` (indices), e.g. to repeat each row for several samples."""
        out = FrameCache(len(rows), self.capacity, self.tokens_per_frame, self.slot_time.device)
        out.slot_time = self.slot_time[rows].clone()
        out.keys = [k[rows].clone() if k is not None else None for k in self.keys]
        out.values = [v[rows].clone() if v is not None else None for v in self.values]
        out.slot_data = {name: data[rows].clone() for name, data in self.slot_data.items()}
        out.features = None if self.features is None else self.features[rows].clone()
        return out


@dataclass
class CacheWrite:
    """Where a forward pass stores its keys and values: ``slots`` ``[B]`` at in-frame positions from ``start``.

    ``frames`` > 1 writes a chunk of consecutive frames (all rows at the same
    times): the tokens are split into ``frames`` equal parts, part ``i`` into
    ``slots + i`` (mod capacity). ``slots`` None only reads the cache: the
    pass's keys are not stored (queries that must not enter the cache, such
    as MaskGIT's masked copy of a frame; they see themselves via ``extra_keys``).
    """

    cache: FrameCache
    slots: Tensor | None = None
    start: int = 0
    frames: int = 1


class Attention(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.heads, self.dropout = config.heads, config.dropout
        self.qkv = nn.Linear(config.hidden, 3 * config.hidden)
        self.proj = nn.Linear(config.hidden, config.hidden)

    def forward(
        self, x: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor, layer: int,
        write: CacheWrite | None, extra_keys: bool,
    ) -> Tensor:
        b, length, dim = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if write is not None:
            cache = write.cache
            per_frame = length // write.frames
            for i in range(write.frames if write.slots is not None else 0):
                part = slice(i * per_frame, (i + 1) * per_frame)
                slots = (write.slots + i) % cache.capacity
                cache.write(layer, slots, write.start, k[:, :, part], v[:, :, part])
            cached_k, cached_v = cache.read(layer)
            if extra_keys:
                k, v = torch.cat([cached_k, k], dim=2), torch.cat([cached_v, v], dim=2)
            else:
                k, v = cached_k, cached_v
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, length, dim))


class Block(nn.Module):
    def __init__(self, config: TransformerConfig, num_tasks: int):
        super().__init__()
        self.norm1 = ConditionalLayerNorm(config.hidden, num_tasks)
        self.attention = Attention(config)
        self.norm2 = ConditionalLayerNorm(config.hidden, num_tasks)
        self.mlp = nn.Sequential(nn.Linear(config.hidden, config.ffn), nn.GELU(), nn.Linear(config.ffn, config.hidden))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, task: Tensor | None, rope, mask, layer, write, extra_keys) -> Tensor:
        x = x + self.dropout(self.attention(self.norm1(x, task), rope, mask, layer, write, extra_keys))
        return x + self.dropout(self.mlp(self.norm2(x, task)))


class Transformer(nn.Module):
    """A stack of pre-norm blocks with task-conditional LayerNorms and temporal RoPE; no embeddings, no head."""

    def __init__(self, config: TransformerConfig, num_tasks: int = 0):
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(Block(config, num_tasks) for _ in range(config.layers))
        self.norm = ConditionalLayerNorm(config.hidden, num_tasks)
        self.apply(_init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith(("proj.weight", "mlp.2.weight")):
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.layers))

    def forward(
        self,
        x: Tensor,
        times: Tensor,
        masks: list[Tensor],
        task: Tensor | None = None,
        write: CacheWrite | None = None,
        extra_keys: bool = False,
    ) -> Tensor:
        """Transform ``x`` ``[B, L, D]`` whose tokens belong to frames at ``times`` ``[B, L]``.

        ``masks[l]`` ``[B or 1, 1, L, K]`` says which keys each token sees in layer ``l``: the
        tokens themselves (no ``write``), the cache after this pass's keys are
        written to it (``write``), or the cache followed by the tokens
        themselves (``write`` and ``extra_keys``).
        """
        rope = rotary(times, self.config.hidden // self.config.heads, self.config.rope_base)
        for layer, block in enumerate(self.blocks):
            x = block(x, task, rope, masks[layer], layer, write, extra_keys)
        return self.norm(x, task)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)


def layer_windows(context: int, layers: int) -> list[int]:
    """Frames each layer looks back: ``context`` split as evenly as possible, earlier layers taking the rest."""
    base, extra = divmod(context, layers)
    return [base + (layer < extra) for layer in range(layers)]


def window_masks(
    windows: list[int], query_times: Tensor, query_index: Tensor, key_times: Tensor, key_index: Tensor, stride: int,
    same_frame: str = "causal",
) -> list[Tensor]:
    """:func:`window_mask` for every layer's window (each distinct window computed once)."""
    masks = {
        w: window_mask(query_times, query_index, key_times, key_index, w, stride, same_frame) for w in set(windows)
    }
    return [masks[w] for w in windows]


def window_mask(
    query_times: Tensor, query_index: Tensor, key_times: Tensor, key_index: Tensor, context: int, stride: int,
    same_frame: str = "causal",
) -> Tensor:
    """Which keys each query sees: ``[B, 1, Lq, Lk]`` bool.

    A query of the frame at time ``t`` sees every key of the ``context``
    frames at ``t - stride, t - 2 * stride, ...`` and, within its own frame,
    the keys at in-frame index ``<=`` its own (``same_frame="causal"``,
    autoregressive) or all of them (``"full"``). Times ``[B, L]``, indices ``[L]``.
    """
    delta = query_times[:, :, None] - key_times[:, None, :]
    past = (delta > 0) & (delta <= context * stride) & (delta % stride == 0)
    same = delta == 0
    if same_frame == "causal":
        same = same & (key_index[None, None, :] <= query_index[None, :, None])
    elif same_frame != "full":
        raise ValueError(f"same_frame must be 'causal' or 'full', got {same_frame!r}")
    return (past | same)[:, None]
