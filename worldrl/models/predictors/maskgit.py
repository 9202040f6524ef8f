"""MaskGIT within each frame, autoregressive over frames (the masked-token predictor VIPER compares against).

A frame's ``N = h*w`` codes are predicted all at once from a partly masked
copy of the frame, given the context frames. The transformer sees two
streams of ``N`` tokens per frame, both at the frame's time:

- the *clean* frame (its codes): attends to its whole own clean frame and to
  the clean frames within each layer's window; these are the keys and values
  kept in the :class:`~worldrl.models.predictors.transformer.FrameCache`;
- the *masked* copy (codes, or a learned [MASK] embedding where masked):
  attends to itself and to the clean frames within each layer's window, never
  to its own clean frame; it only ever queries the cache, and the head reads
  its outputs.

Windows add up to ``context`` as in VideoGPT, so frame ``t`` depends on
exactly frames ``t-k .. t-1``. Training runs both streams of a clip in one
pass and masks ``ceil(cos(pi r / 2) * N)`` codes per frame (``r ~ U(0, 1)``),
cross-entropy on the masked codes.

**Likelihood** (:meth:`MaskGIT.score_frames`, the reward). MaskGIT has no
exact joint likelihood; this module scores a frame as the likelihood of
greedy-order chunked decoding. Starting from the all-masked frame, it runs
``likelihood_steps`` passes following the cosine schedule; each pass reveals
the true codes at the still-masked positions where the model is most
confident (highest maximum probability, as greedy decoding picks them) and
adds their log-probabilities, the codes of one pass scored independently.
The order depends only on the codes already revealed, never on the codes
being scored, so the estimate is the exact log-likelihood of a proper
distribution (that decoding procedure with independent sampling within a
pass), not a bound on MaskGIT's. The choice of positions is discrete, so
float rounding can flip a near-tie and change the estimate slightly. Cost per
frame: ``likelihood_steps`` masked passes plus one clean pass to cache it;
:meth:`~worldrl.models.predictors.base.VideoModel.observe` (context only)
runs the clean pass alone.

**Sampling** (:meth:`MaskGIT.generate_frame`): ``sample_steps`` MaskGIT steps
(sample every masked code, keep the most confident, cosine schedule, Gumbel
noise on the confidences annealed to 0; temperature 0 is greedy), then
optionally TECO's revise rounds: split the codes at random into
``revise_chunks`` groups and regenerate each group given the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldrl.models.predictors.base import VideoModel, VideoModelConfig
from worldrl.models.predictors.transformer import CacheWrite, FrameCache, Transformer, layer_windows, window_masks
from worldrl.models.predictors.videogpt import sample_logits


@dataclass
class MaskGITConfig(VideoModelConfig):
    sample_steps: int = 8
    """MaskGIT decoding steps per generated frame."""
    likelihood_steps: int = 8
    """Passes of the likelihood estimate per scored frame (see the module docstring)."""
    confidence_temperature: float = 4.5
    """Scale of the Gumbel noise on the confidences at the first sampling step (annealed linearly to 0)."""
    revise_rounds: int = 0
    """TECO's revise rounds after the draft: each regenerates every code once, a group at a time."""
    revise_chunks: int = 2
    """Groups a revise round splits the codes into (2: regenerate half of them given the other half)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.sample_steps, self.likelihood_steps, self.revise_chunks) < 1 or self.revise_rounds < 0:
            raise ValueError("sample_steps, likelihood_steps and revise_chunks must be >= 1, revise_rounds >= 0")
        if self.confidence_temperature < 0:
            raise ValueError(f"confidence_temperature must be >= 0, got {self.confidence_temperature}")


class MaskGIT(VideoModel):
    """Spatial MaskGIT per frame, autoregressive over frames (see the module docstring)."""

    kind = "maskgit"
    config_class = MaskGITConfig
    config: MaskGITConfig

    def __init__(self, config: MaskGITConfig):
        super().__init__(config)
        dim, codes = config.transformer.hidden, config.codes_per_frame
        self.tokens_per_frame = codes
        self.code_embed = nn.Embedding(config.codebook_size, dim)
        self.mask_embed = nn.Parameter(torch.randn(dim) * 0.02)
        self.position_embed = nn.Parameter(torch.randn(codes, dim) * 0.02)
        self.action_embed = nn.Linear(config.action_dim, dim) if config.action_dim else None
        self.null_action = nn.Parameter(torch.zeros(dim)) if config.action_dim else None
        self.transformer = Transformer(config.transformer, config.num_tasks)
        self.head = nn.Linear(dim, config.codebook_size)
        self.windows = layer_windows(config.context, config.transformer.layers)
        nn.init.normal_(self.code_embed.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    # Inputs and masks -----------------------------------------------------------------------------------------------
    def embed_frames(self, codes: Tensor, action: Tensor | None, masked: Tensor | None = None) -> Tensor:
        """Codes ``[B, F, N]`` -> tokens ``[B, F * N, D]``, [MASK] where ``masked`` ``[B, F, N]``;
        ``action`` is :meth:`_action_term`'s ``[B, F, 1, D]``."""
        tokens = self.code_embed(codes)
        if masked is not None:
            tokens = torch.where(masked[..., None], self.mask_embed, tokens)
        tokens = tokens + self.position_embed
        if action is not None:
            tokens = tokens + action
        return tokens.flatten(1, 2)

    def _masks(
        self, q_times: Tensor, q_index: Tensor, q_masked: Tensor, k_times: Tensor, k_index: Tensor, k_masked: Tensor
    ) -> list[Tensor]:
        """Per-layer masks over both streams (``*_masked`` ``[L]`` flags the masked stream's tokens).

        Within a frame a token sees its own stream only; across frames it sees
        the clean tokens within the layer's window.
        """
        same = q_times[:, :, None] == k_times[:, None, :]
        stream = torch.where(same, q_masked[:, None] == k_masked[None, :], ~k_masked[None, :])[:, None]
        masks = window_masks(self.windows, q_times, q_index, k_times, k_index, self.config.stride, same_frame="full")
        return [mask & stream for mask in masks]

    def _logits(self, hidden: Tensor, frames: int) -> Tensor:
        """Masked-stream hidden states ``[B, F * N, D]`` -> logits ``[B, F, N, K]``."""
        return self.head(hidden).float().view(hidden.shape[0], frames, self.tokens_per_frame, -1)

    # Training -------------------------------------------------------------------------------------------------------
    def logits(
        self, codes: Tensor, masked: Tensor, task: Tensor | None = None, actions: Tensor | None = None
    ) -> Tensor:
        """Logits ``[B, L, N, K]`` of clips ``[B, L, h, w]`` (frames ``stride`` apart) whose codes are masked where
        ``masked`` ``[B, L, N]``, in one pass over the clean and masked streams."""
        frames = codes.shape[1]
        return self._logits(self.clip_hidden(codes, masked, task, actions)[:, frames * self.tokens_per_frame :], frames)

    def clip_hidden(
        self, codes: Tensor, masked: Tensor, task: Tensor | None = None, actions: Tensor | None = None
    ) -> Tensor:
        """Hidden states ``[B, 2 * L * N, D]`` of both streams of clips ``[B, L, h, w]`` (clean stream first)."""
        batch, frames = codes.shape[:2]
        action = self._action_term(actions, batch, frames, self.training_action_drop(actions, batch))
        flat = codes.flatten(2)
        tokens = torch.cat([self.embed_frames(flat, action), self.embed_frames(flat, action, masked)], dim=1)
        frame_times = torch.arange(frames, device=codes.device).expand(batch, frames) * self.config.stride
        times, index = self._token_meta(frame_times)
        times, index = times.repeat(1, 2), index.repeat(2)
        stream = torch.arange(times.shape[1], device=codes.device) >= frames * self.tokens_per_frame
        masks = self._masks(times[:1], index, stream, times[:1], index, stream)
        return self.transformer(tokens, times, masks, task)

    def loss_and_features(
        self, codes: Tensor, task: Tensor | None = None, actions: Tensor | None = None
    ) -> tuple[Tensor, dict, Tensor]:
        codes = self.check_codes(codes, 4)
        task, actions = self.check_conditioning(task, actions, codes.shape[0], codes.shape[1])
        frames = codes.shape[1]
        masked = self.random_mask(codes.shape[0], frames)
        hidden = self.clip_hidden(codes, masked, task, actions)
        split = frames * self.tokens_per_frame
        logits = self._logits(hidden[:, split:], frames)
        nll = F.cross_entropy(logits[masked], codes.flatten(2)[masked])
        stats = {"nats_per_code": nll.detach(), "bits_per_code": nll.detach() / math.log(2)}
        return nll, stats, self._frame_features(hidden[:, :split], frames)

    def _frame_features(self, clean: Tensor, frames: int) -> Tensor:
        """Clean-stream hidden states ``[B, F * N, D]`` -> ``[B, F, D]``: the mean over each frame's tokens."""
        return clean.view(clean.shape[0], frames, self.tokens_per_frame, -1).mean(2)

    def random_mask(self, batch: int, frames: int) -> Tensor:
        """``[B, F, N]`` training mask (:func:`random_mask`)."""
        return random_mask(batch, frames, self.tokens_per_frame, self.device)

    # Cached scoring and sampling ------------------------------------------------------------------------------------
    def _observe(
        self, cache: FrameCache, codes: Tensor, start: Tensor, task: Tensor | None, action: Tensor | None
    ) -> None:
        """Add the clean frames ``[B, F, N]`` at times ``start + i`` to ``cache`` (one pass)."""
        frames = codes.shape[1]
        slots = cache.claim(start)
        for i in range(1, frames):
            cache.claim(start + i)
        times, index = self._token_meta(start[:, None] + torch.arange(frames, device=codes.device))
        masks = window_masks(
            self.windows, times, index, cache.key_times(), cache.key_index(), self.config.stride, same_frame="full"
        )
        hidden = self.transformer(
            self.embed_frames(codes, action), times, masks, task, CacheWrite(cache, slots, frames=frames)
        )
        cache.features = self._frame_features(hidden, frames)[:, -1]

    def _masked_logits(
        self, cache: FrameCache, codes: Tensor, masked: Tensor, frame_times: Tensor, task: Tensor | None,
        action: Tensor | None,
    ) -> Tensor:
        """Logits ``[B, F, N, K]`` of frames ``[B, F, N]`` at ``frame_times`` ``[B, F]`` masked where ``masked``,
        given the clean frames in ``cache`` (which this does not change)."""
        frames = codes.shape[1]
        times, index = self._token_meta(frame_times)
        own = torch.ones_like(index, dtype=torch.bool)
        write, keys = None, (times, index, own)
        if cache.keys:  # else nothing was cached yet: the frame sees only itself
            write = CacheWrite(cache)
            keys = (
                torch.cat([cache.key_times(), times], dim=1),
                torch.cat([cache.key_index(), index]),
                torch.cat([torch.zeros_like(cache.key_index(), dtype=torch.bool), own]),
            )
        masks = self._masks(times, index, own, *keys)
        tokens = self.embed_frames(codes, action, masked)
        return self._logits(self.transformer(tokens, times, masks, task, write, extra_keys=write is not None), frames)

    def score_frames(
        self, cache: FrameCache, codes: Tensor, start: Tensor, task: Tensor | None, actions: Tensor | None
    ) -> Tensor:
        batch, frames = codes.shape[:2]
        flat = codes.flatten(2)
        action = self._action_term(actions, batch, frames)
        self._observe(cache, flat, start, task, action)
        frame_times = start[:, None] + torch.arange(frames, device=codes.device)
        steps = self.config.likelihood_steps
        logp = greedy_order_log_prob(
            lambda masked: self._masked_logits(cache, flat, masked, frame_times, task, action), flat, steps
        )
        return logp.view(codes.shape)

    def observe_frames(
        self, cache: FrameCache, codes: Tensor, start: Tensor, task: Tensor | None, actions: Tensor | None
    ) -> None:
        """The clean pass of :meth:`score_frames` only: ``likelihood_steps`` masked passes fewer per frame."""
        batch, frames = codes.shape[:2]
        self._observe(cache, codes.flatten(2), start, task, self._action_term(actions, batch, frames))

    def generate_frame(
        self, cache: FrameCache, time: Tensor, task: Tensor | None, action: Tensor | None,
        temperature: float, top_k: int | None, generator: torch.Generator | None,
    ) -> Tensor:
        batch, n = time.shape[0], self.tokens_per_frame
        action = self._action_term(None if action is None else action[:, None], batch, 1)
        config = self.config

        def logits_of(codes: Tensor, masked: Tensor) -> Tensor:
            return self._masked_logits(cache, codes, masked, time[:, None], task, action)

        codes = draft(logits_of, (batch, 1, n), time.device, config.sample_steps, config.confidence_temperature,
                      temperature, top_k, generator)
        codes = revise(logits_of, codes, config.revise_rounds, config.revise_chunks, temperature, top_k, generator)
        self._observe(cache, codes, time, task, action)
        return codes.view(batch, *self.latent_shape)


def mask_schedule(tokens: int, steps: int) -> list[int]:
    """Codes still masked after each decoding step: ``floor(cos(pi/2 * s/steps) * tokens)``, at least one fewer
    per step, ending at 0 (fewer than ``steps`` steps when ``tokens < steps``)."""
    remaining, schedule = tokens, []
    for step in range(1, steps + 1):
        if remaining == 0:
            break
        remaining = max(0, min(remaining - 1, math.floor(tokens * math.cos(math.pi / 2 * step / steps))))
        schedule.append(remaining)
    return schedule


def least_confident(confidence: Tensor, count: int) -> Tensor:
    """Bool mask, True at the ``count`` lowest values of ``confidence`` along its last dim."""
    lowest = confidence.argsort(-1)[..., :count]
    return torch.zeros_like(confidence, dtype=torch.bool).scatter_(-1, lowest, True)


def gumbel_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard Gumbel noise shaped like ``x``."""
    uniform = torch.rand(x.shape, device=x.device, generator=generator).clamp_min(1e-20)
    return -torch.log(-torch.log(uniform))


def random_mask(batch: int, frames: int, tokens: int, device: torch.device) -> Tensor:
    """``[B, F, N]`` training mask: ``ceil(cos(pi r / 2) * N)`` random codes per frame, ``r ~ U(0, 1)``."""
    ratio = torch.cos(math.pi / 2 * torch.rand(batch, frames, device=device))
    count = (ratio * tokens).ceil().clamp(1, tokens)
    rank = torch.rand(batch, frames, tokens, device=device).argsort(-1).argsort(-1)
    return rank < count[..., None]


def greedy_order_log_prob(logits_of: Callable[[Tensor], Tensor], codes: Tensor, steps: int) -> Tensor:
    """The likelihood estimate of the module docstring: log-probabilities ``[..., N]`` of ``codes`` ``[..., N]``
    revealed in ``steps`` greedy-order passes; ``logits_of(masked)`` gives the logits ``[..., N, K]`` of
    ``codes`` masked where ``masked``."""
    masked = torch.ones_like(codes, dtype=torch.bool)
    logp = torch.zeros(codes.shape, device=codes.device)
    for remaining in mask_schedule(codes.shape[-1], steps):
        logits = logits_of(masked).log_softmax(-1)
        confidence = logits.amax(-1).masked_fill(~masked, math.inf)
        reveal = masked & ~least_confident(confidence, remaining)
        logp = torch.where(reveal, logits.gather(-1, codes[..., None])[..., 0], logp)
        masked = masked & ~reveal
    return logp


def draft(
    logits_of: Callable[[Tensor, Tensor], Tensor], shape: tuple[int, ...], device: torch.device, steps: int,
    confidence_temperature: float, temperature: float, top_k: int | None, generator: torch.Generator | None,
) -> Tensor:
    """MaskGIT decoding of codes ``shape`` (``[..., N]``) from all masked in ``steps`` steps (module docstring);
    ``logits_of(codes, masked)`` gives the logits ``[..., N, K]`` of ``codes`` masked where ``masked``."""
    codes = torch.zeros(shape, dtype=torch.long, device=device)
    masked = torch.ones_like(codes, dtype=torch.bool)
    schedule = mask_schedule(shape[-1], steps)
    for step, remaining in enumerate(schedule):
        logits = logits_of(codes, masked)
        sampled = sample_logits(logits.flatten(0, -2), temperature, top_k, generator).view_as(codes)
        confidence = logits.log_softmax(-1).gather(-1, sampled[..., None])[..., 0]
        scale = confidence_temperature * (1 - step / len(schedule)) if temperature > 0 else 0.0
        if scale:
            confidence = confidence + scale * gumbel_like(confidence, generator)
        keep_masked = least_confident(confidence.masked_fill(~masked, math.inf), remaining)
        codes = torch.where(masked & ~keep_masked, sampled, codes)
        masked = keep_masked
    return codes


def revise(
    logits_of: Callable[[Tensor, Tensor], Tensor], codes: Tensor, rounds: int, chunks: int, temperature: float,
    top_k: int | None, generator: torch.Generator | None,
) -> Tensor:
    """TECO's revise rounds on drafted codes ``[..., N]``: regenerate each random group of ``chunks`` given the
    others (greedy decoding splits the positions by index instead, so that it stays deterministic)."""
    for _ in range(rounds):
        rank = torch.arange(codes.shape[-1], device=codes.device).expand_as(codes)
        if temperature > 0:
            rank = torch.rand(codes.shape, device=codes.device, generator=generator).argsort(-1).argsort(-1)
        group = rank % chunks
        for chunk in range(chunks):
            masked = group == chunk
            logits = logits_of(codes, masked)
            sampled = sample_logits(logits.flatten(0, -2), temperature, top_k, generator).view_as(codes)
            codes = torch.where(masked, sampled, codes)
    return codes
