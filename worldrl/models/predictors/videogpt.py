"""VideoGPT's prior: a GPT over each frame's codes in raster order, frames in time (VIPER's reward model).

Each frame is ``1 + h*w`` positions: a start-of-frame token, then its codes.
Position ``i`` predicts code ``i`` from the frame's earlier codes and every
code of the context frames: block-causal attention, each layer looking back
a few frames so that the windows add up to ``context``
(:func:`~worldrl.models.predictors.transformer.layer_windows`).
The last code's position predicts nothing; it is there so that later frames
see all of this frame. Inputs are code embeddings plus a learned in-frame
position embedding plus the frame's action embedding; time enters through
the rotary embeddings, so episodes may be longer than the training clips.
Task ids condition every LayerNorm (VIPER's multi-task models).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldrl.models.predictors.base import VideoModel, VideoModelConfig
from worldrl.models.predictors.transformer import CacheWrite, FrameCache, Transformer, layer_windows, window_masks


class VideoGPT(VideoModel):
    """Autoregressive prior over tokenizer codes (see the module docstring)."""

    kind = "videogpt"
    config_class = VideoModelConfig

    def __init__(self, config: VideoModelConfig):
        super().__init__(config)
        dim, codes = config.transformer.hidden, config.codes_per_frame
        self.tokens_per_frame = codes + 1
        self.code_embed = nn.Embedding(config.codebook_size, dim)
        self.start_embed = nn.Parameter(torch.randn(dim) * 0.02)
        self.position_embed = nn.Parameter(torch.randn(codes + 1, dim) * 0.02)
        self.action_embed = nn.Linear(config.action_dim, dim) if config.action_dim else None
        self.null_action = nn.Parameter(torch.zeros(dim)) if config.action_dim else None
        self.transformer = Transformer(config.transformer, config.num_tasks)
        self.head = nn.Linear(dim, config.codebook_size)
        self.windows = layer_windows(config.context, config.transformer.layers)
        nn.init.normal_(self.code_embed.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    # Inputs ---------------------------------------------------------------------------------------------------------
    def embed_frames(self, codes: Tensor, actions: Tensor | None, drop: Tensor | None = None) -> Tensor:
        """Codes ``[B, F, h, w]`` -> input tokens ``[B, F * (1 + h*w), D]`` (start token + codes per frame)."""
        batch, frames = codes.shape[:2]
        tokens = self.code_embed(codes.flatten(2))
        start = self.start_embed.expand(batch, frames, 1, -1)
        tokens = torch.cat([start, tokens], dim=2) + self.position_embed
        action = self._action_term(actions, batch, frames, drop)
        if action is not None:
            tokens = tokens + action
        return tokens.flatten(1, 2)

    def _code_logits(self, hidden: Tensor, frames: int) -> Tensor:
        """Hidden states ``[B, F * P, D]`` -> logits ``[B, F, h*w, K]`` of each frame's codes."""
        hidden = hidden.view(hidden.shape[0], frames, self.tokens_per_frame, -1)[:, :, :-1]
        return self.head(hidden).float()

    # Training -------------------------------------------------------------------------------------------------------
    def logits(self, codes: Tensor, task: Tensor | None = None, actions: Tensor | None = None) -> Tensor:
        """Logits ``[B, L, h*w, K]`` of clips ``[B, L, h, w]`` of frames ``stride`` apart, in one masked pass."""
        return self._code_logits(self.clip_hidden(codes, task, actions), codes.shape[1])

    def clip_hidden(self, codes: Tensor, task: Tensor | None = None, actions: Tensor | None = None) -> Tensor:
        """Hidden states ``[B, L * (1 + h*w), D]`` of clips ``[B, L, h, w]`` (the training pass)."""
        batch, frames = codes.shape[:2]
        tokens = self.embed_frames(codes, actions, self.training_action_drop(actions, batch))
        frame_times = torch.arange(frames, device=codes.device).expand(batch, frames) * self.config.stride
        times, index = self._token_meta(frame_times)
        masks = window_masks(self.windows, times[:1], index, times[:1], index, self.config.stride)
        return self.transformer(tokens, times, masks, task)

    def loss_and_features(
        self, codes: Tensor, task: Tensor | None = None, actions: Tensor | None = None
    ) -> tuple[Tensor, dict, Tensor]:
        codes = self.check_codes(codes, 4)
        task, actions = self.check_conditioning(task, actions, codes.shape[0], codes.shape[1])
        hidden = self.clip_hidden(codes, task, actions)
        logits = self._code_logits(hidden, codes.shape[1])
        nll = F.cross_entropy(logits.flatten(0, 2), codes.flatten())
        stats = {"nats_per_code": nll.detach(), "bits_per_code": nll.detach() / math.log(2)}
        return nll, stats, self._frame_features(hidden, codes.shape[1])

    def _frame_features(self, hidden: Tensor, frames: int) -> Tensor:
        """Hidden states ``[B, F * P, D]`` -> ``[B, F, D]``: each frame's last position, which sees the whole frame
        (its codes, its action) and its context."""
        return hidden.view(hidden.shape[0], frames, self.tokens_per_frame, -1)[:, :, -1]

    # Cached scoring and sampling ------------------------------------------------------------------------------------
    def score_frames(
        self, cache: FrameCache, codes: Tensor, start: Tensor, task: Tensor | None, actions: Tensor | None
    ) -> Tensor:
        hidden = self._cache_frames(cache, codes, start, task, actions)
        logp = self._code_logits(hidden, codes.shape[1]).log_softmax(-1)
        return logp.gather(-1, codes.flatten(2)[..., None])[..., 0].view(codes.shape)

    def observe_frames(
        self, cache: FrameCache, codes: Tensor, start: Tensor, task: Tensor | None, actions: Tensor | None
    ) -> None:
        """The pass of :meth:`score_frames` without the output head (a ``codebook_size``-wide matmul per code)."""
        self._cache_frames(cache, codes, start, task, actions)

    def _cache_frames(
        self, cache: FrameCache, codes: Tensor, start: Tensor, task: Tensor | None, actions: Tensor | None
    ) -> Tensor:
        """Run frames ``[B, C, h, w]`` at times ``start + i`` through the transformer, writing them to ``cache``
        and setting its features; return the hidden states ``[B, C * P, D]``."""
        frames = codes.shape[1]
        frame_times = start[:, None] + torch.arange(frames, device=codes.device)
        slots = cache.claim(start)
        for i in range(1, frames):
            cache.claim(start + i)
        times, index = self._token_meta(frame_times)
        masks = window_masks(self.windows, times, index, cache.key_times(), cache.key_index(), self.config.stride)
        hidden = self.transformer(
            self.embed_frames(codes, actions), times, masks, task, write=CacheWrite(cache, slots, frames=frames)
        )
        cache.features = self._frame_features(hidden, frames)[:, -1]
        return hidden

    def generate_frame(
        self, cache: FrameCache, time: Tensor, task: Tensor | None, action: Tensor | None,
        temperature: float, top_k: int | None, generator: torch.Generator | None,
    ) -> Tensor:
        batch = time.shape[0]
        slots = cache.claim(time)
        action_term = self._action_term(None if action is None else action[:, None], batch, 1)
        times = time[:, None]
        token = self.start_embed.expand(batch, 1, -1) + self.position_embed[0]
        codes = []
        for position in range(self.tokens_per_frame):
            if position:
                token = self.code_embed(codes[-1])[:, None] + self.position_embed[position]
            if action_term is not None:
                token = token + action_term[:, 0]
            index = torch.tensor([position], device=time.device)
            masks = window_masks(self.windows, times, index, cache.key_times(), cache.key_index(), self.config.stride)
            hidden = self.transformer(token, times, masks, task, write=CacheWrite(cache, slots, start=position))
            if position < self.tokens_per_frame - 1:
                codes.append(sample_logits(self.head(hidden[:, 0]).float(), temperature, top_k, generator))
            else:
                cache.features = hidden[:, 0]
        return torch.stack(codes, dim=1).view(batch, *self.latent_shape)


def sample_logits(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> Tensor:
    """One index per row of ``logits`` ``[B, K]``: argmax at temperature 0, else softmax sampling (top-k)."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
