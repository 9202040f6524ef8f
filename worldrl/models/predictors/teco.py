"""TECO: a temporally consistent video transformer on the frame tokenizer's codes (Yan et al., ch. 3, App. B.14).

Per frame ``x_t`` (the tokenizer's codes, embedded):

- **encoder** ``z_t = E(x_t, x_{t-s})``: a CNN on the channel concatenation of the embeddings of the frame and
  of the previous one (zeros for a frame without one), quantised with an l2-normalised VQ codebook;
- **temporal transformer** ``h_t = ConvT(Transformer(Conv(z_{<t})))``: a strided conv turns ``z_{t-s}`` plus
  the embedding of the action that led to ``x_t`` into the tokens of time ``t`` (a learned start token when
  there is no previous frame), the shared transformer runs frame-causally over time, and a transposed conv
  brings its outputs back to ``z``'s resolution;
- **decoder** ``p(x_t | z_t, h_t)``: a CNN on ``concat(z_t, h_t)`` giving logits over the tokenizer's codes;
- **prior** ``p(z_t | h_t)``: a spatial MaskGIT over ``z_t``'s code indices, each token the sum of its code's
  (or [MASK]'s) embedding and a projection of ``h_t`` there (channel concatenation, then a linear map).

Loss ``L_VQ + L_recon + L_prior``; with DropLoss the decoder and prior see only a random subset of each clip's
frames (``round((1 - drop_loss) * L)``, at least one, drawn per clip), the encoder and transformer all of them.

**First frames.** A frame without a previous frame (the first ``s`` of an episode, the first of a training clip)
is encoded against zeros. As in the paper, the temporal transformer gets its encoding unquantised (l2-normalised
only), so later frames see it without loss; its decoder and prior use the quantised ``z``, so that a first
frame, too, has a likelihood and can be sampled without context.

**Which context a frame sees** (the :mod:`~worldrl.models.predictors.base` definition). Frame ``t`` depends on
``x_{t-s}`` through ``z_t`` and the tokens of time ``t``, and on older frames through the transformer, whose
layer windows add up to ``context - 2``: the oldest token it reaches holds ``z_{t-(k-1)s}``, which was encoded
against ``x_{t-ks}``. So frame ``t`` depends on exactly the ``k`` frames ``t-s .. t-ks`` (``context >= 2``).
Streaming keeps the transformer's keys and values in the
:class:`~worldrl.models.predictors.transformer.FrameCache` and each frame's codes and transformer-input latent
in its per-slot data (the next frame's encoder and tokens need them); the convolutions are per frame.

**Likelihood** (:meth:`TECO.score_frames`). The marginal ``p(x_t | context) = sum_z p(z | h_t) p(x_t | z, h_t)``
is intractable; the score is its single-latent estimate ``ln p(x_t | z_t, h_t) + ln q(z_t | h_t)`` at the
encoder's deterministic latent ``z_t`` of the observed frame, with ``q`` the prior's greedy-order estimate
(:func:`~worldrl.models.predictors.maskgit.greedy_order_log_prob`, a proper distribution over ``z``). Since
``q`` and the decoder are normalised, this lower-bounds the likelihood of the model with prior ``q``.
``score_prior=False`` keeps only the decoder term (a reconstruction score, not a likelihood). A per-code map
spreads each latent code's prior term evenly over the tokenizer codes it covers. Frames fed as context only
(:meth:`~worldrl.models.predictors.base.VideoModel.observe`) skip the decoder and the prior.

**Sampling** (:meth:`TECO.generate_frame`): MaskGIT in ``z``-space (``sample_steps`` chunks, then
``revise_rounds`` revise rounds), the decoder's argmax (or a sample, ``decoder_sampling``) gives the codes,
and the generated frame is re-encoded and cached exactly as an observed frame would be, so an imagined frame
is context like an observed one (``sample_step`` then ``step`` agrees with ``log_prob``).

**Features** for a learned simulator's reward heads (:meth:`TECO.loss_and_features`, ``frame_features``): the
mean of ``z_t`` over positions and the mean output of the frame's temporal tokens (``h_t`` before the
transposed conv), computed for every clip frame whatever DropLoss keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldrl.config import build_dataclass
from worldrl.models.predictors.base import VideoModel
from worldrl.models.predictors.maskgit import (
    MaskGITConfig,
    draft,
    greedy_order_log_prob,
    random_mask,
    revise,
)
from worldrl.models.predictors.transformer import (
    CacheWrite,
    FrameCache,
    Transformer,
    TransformerConfig,
    layer_windows,
    window_masks,
)
from worldrl.models.predictors.videogpt import sample_logits
from worldrl.models.quantizers import QuantizerConfig, build_quantizer
from worldrl.models.tokenizers.vqgan import ResBlock, group_norm


def _teco_quantizer() -> QuantizerConfig:
    return QuantizerConfig(codebook_size=1024, dim=32, l2_normalize=True)


def _teco_prior() -> TransformerConfig:
    return TransformerConfig(hidden=512, ffn=2048, heads=8, layers=8)


@dataclass
class TECOConfig(MaskGITConfig):
    """TECO on top of the MaskGIT settings (which here apply to the prior over ``z``); ``transformer`` is the
    temporal transformer. Defaults: Table B.14, DMLab."""

    embed_dim: int = 64
    """Channels of the embedding of a tokenizer code (the encoder takes two frames' worth)."""
    depths: tuple[int, ...] = (256, 512)
    """Encoder channels per resolution, high to low (each further entry halves the resolution); the decoder
    mirrors them."""
    encoder_blocks: int = 2
    """Residual blocks per resolution in the encoder."""
    decoder_blocks: int = 4
    """Residual blocks per resolution in the decoder."""
    quantizer: QuantizerConfig = field(default_factory=_teco_quantizer)
    """The VQ of ``z`` (type vq; TECO: 1024 codes of dim 32, l2-normalised)."""
    downsample: int = 8
    """Stride of the conv before the temporal transformer (and of the transposed conv after it)."""
    prior: TransformerConfig = field(default_factory=_teco_prior)
    """The spatial MaskGIT prior's transformer."""
    drop_loss: float = 0.9
    """DropLoss rate: share of a training clip's frames without decoder and prior losses."""
    score_prior: bool = True
    """Add the prior's estimate of ``ln p(z_t | h_t)`` to a frame's score (else only the decoder's term)."""
    decoder_sampling: bool = False
    """Sample the decoded codes (with the sampling temperature and top-k) instead of taking the argmax."""
    revise_rounds: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.quantizer, dict):
            self.quantizer = build_dataclass(QuantizerConfig, self.quantizer, "model.quantizer")
        if isinstance(self.prior, dict):
            self.prior = build_dataclass(TransformerConfig, self.prior, "model.prior")
        if self.quantizer.type != "vq":
            raise ValueError(f"TECO quantises z with VQ (model.quantizer.type vq), got {self.quantizer.type!r}")
        if self.context < 2:
            raise ValueError(f"TECO needs context >= 2 (see the module docstring), got {self.context}")
        if not self.depths or min(*self.depths, self.embed_dim, self.downsample) < 1:
            raise ValueError("depths, embed_dim and downsample must be positive")
        if min(self.encoder_blocks, self.decoder_blocks) < 0 or not 0 <= self.drop_loss < 1:
            raise ValueError("encoder_blocks and decoder_blocks must be >= 0 and drop_loss in [0, 1)")
        factor = self.latent_factor * self.downsample
        if any(size % factor for size in self.latent_shape):
            raise ValueError(
                f"latent_shape {tuple(self.latent_shape)} must be divisible by 2 ** (len(depths) - 1) * downsample "
                f"= {factor}"
            )

    @property
    def latent_factor(self) -> int:
        """Downsampling from the tokenizer's codes to ``z``."""
        return 2 ** (len(self.depths) - 1)


def _encoder(in_channels: int, depths: tuple[int, ...], blocks: int, out_channels: int) -> nn.Sequential:
    """Residual CNN: ``blocks`` blocks per depth, a stride-2 conv between depths, then a 1x1 conv."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, depths[0], 3, padding=1)]
    for i, depth in enumerate(depths):
        channels = depths[max(i - 1, 0)]
        if i:
            layers.append(nn.Conv2d(channels, channels, 3, stride=2, padding=1))
        layers += [ResBlock(channels if j == 0 else depth, depth, 32, 0.0) for j in range(blocks)]
        if not blocks and channels != depth:
            layers.append(nn.Conv2d(channels, depth, 1))
    layers += [group_norm(depths[-1], 32), nn.SiLU(), nn.Conv2d(depths[-1], out_channels, 1)]
    return nn.Sequential(*layers)


def _decoder(in_channels: int, depths: tuple[int, ...], blocks: int, out_channels: int) -> nn.Sequential:
    """The mirror of :func:`_encoder`: from the lowest resolution up, nearest upsampling between depths."""
    reverse = depths[::-1]
    layers: list[nn.Module] = [nn.Conv2d(in_channels, reverse[0], 3, padding=1)]
    for i, depth in enumerate(reverse):
        channels = reverse[max(i - 1, 0)]
        if i:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels, channels, 3, padding=1)]
        layers += [ResBlock(channels if j == 0 else depth, depth, 32, 0.0) for j in range(blocks)]
        if not blocks and channels != depth:
            layers.append(nn.Conv2d(channels, depth, 1))
    layers += [group_norm(reverse[-1], 32), nn.SiLU(), nn.Conv2d(reverse[-1], out_channels, 1)]
    return nn.Sequential(*layers)


@dataclass
class Encoded:
    """The encoder's output for a batch of frames ``[N, ...]``."""

    quantized: Tensor
    """``[N, D, zh, zw]``: ``z`` as the decoder sees it."""
    indices: Tensor
    """``[N, zh, zw]``: ``z``'s code indices, which the prior models."""
    latent: Tensor
    """``[N, D, zh, zw]``: what the temporal transformer gets (unquantised for frames without a previous one)."""
    loss: Tensor
    stats: dict[str, Tensor]


class TECO(VideoModel):
    """Temporally consistent video transformer (see the module docstring)."""

    kind = "teco"
    config_class = TECOConfig
    config: TECOConfig

    def __init__(self, config: TECOConfig):
        super().__init__(config)
        temporal, prior, vq = config.transformer, config.prior, config.quantizer
        h, w = config.latent_shape
        self.z_shape = (h // config.latent_factor, w // config.latent_factor)
        self.grid = (self.z_shape[0] // config.downsample, self.z_shape[1] // config.downsample)
        self.tokens_per_frame = self.grid[0] * self.grid[1]
        self.windows = layer_windows(config.context - 2, temporal.layers)
        self.code_embed = nn.Embedding(config.codebook_size, config.embed_dim)
        self.encoder = _encoder(2 * config.embed_dim, config.depths, config.encoder_blocks, vq.dim)
        self.quantizer = build_quantizer(vq)
        self.down = nn.Conv2d(vq.dim, temporal.hidden, config.downsample, stride=config.downsample)
        self.start_embed = nn.Parameter(torch.randn(self.tokens_per_frame, temporal.hidden) * 0.02)
        self.position_embed = nn.Parameter(torch.randn(self.tokens_per_frame, temporal.hidden) * 0.02)
        self.action_embed = nn.Linear(config.action_dim, temporal.hidden) if config.action_dim else None
        self.null_action = nn.Parameter(torch.zeros(temporal.hidden)) if config.action_dim else None
        self.transformer = Transformer(temporal, config.num_tasks)
        self.up = nn.ConvTranspose2d(temporal.hidden, config.depths[-1], config.downsample, stride=config.downsample)
        self.decoder = _decoder(vq.dim + config.depths[-1], config.depths, config.decoder_blocks, config.codebook_size)
        latents = self.z_shape[0] * self.z_shape[1]
        self.prior_code_embed = nn.Embedding(vq.codebook_size, prior.hidden)
        self.prior_mask_embed = nn.Parameter(torch.randn(prior.hidden) * 0.02)
        self.prior_position_embed = nn.Parameter(torch.randn(latents, prior.hidden) * 0.02)
        self.prior_context = nn.Linear(config.depths[-1], prior.hidden)
        self.prior = Transformer(prior, config.num_tasks)
        self.prior_head = nn.Linear(prior.hidden, vq.codebook_size)
        nn.init.normal_(self.code_embed.weight, std=0.02)
        nn.init.normal_(self.prior_code_embed.weight, std=0.02)

    @property
    def feature_dim(self) -> int:
        """A frame's features: its mean latent ``z_t`` and the mean output of its temporal tokens."""
        return self.config.quantizer.dim + self.config.transformer.hidden

    @property
    def cache_span(self) -> int:
        """The widest window plus the previous frame, whose codes and latent the next frame needs."""
        return (max(self.windows) + 1) * self.config.stride

    # Components -----------------------------------------------------------------------------------------------------
    def encode(self, codes: Tensor, previous: Tensor, has_previous: Tensor) -> Encoded:
        """Frames ``[N, h, w]`` against their previous frames ``[N, h, w]`` (ignored where ``has_previous`` ``[N]``
        is False)."""
        current = self.code_embed(codes)
        before = self.code_embed(previous) * has_previous[:, None, None, None]
        features = self.encoder(torch.cat([current, before], dim=-1).permute(0, 3, 1, 2))
        out = self.quantizer(features)
        continuous = F.normalize(features, dim=1) if self.config.quantizer.l2_normalize else features
        latent = torch.where(has_previous[:, None, None, None], out.quantized, continuous.to(out.quantized.dtype))
        return Encoded(out.quantized, out.indices, latent, out.loss, out.stats)

    def temporal_tokens(self, previous: Tensor, has_previous: Tensor, action: Tensor | None) -> Tensor:
        """Tokens ``[B, F * P, D]`` of frames whose previous latents are ``previous`` ``[B, F, D_z, zh, zw]``
        (the start token where ``has_previous`` ``[B, F]`` is False); ``action`` is ``[B, F, 1, D]``."""
        batch, frames = previous.shape[:2]
        tokens = self.down(previous.flatten(0, 1)).flatten(2).transpose(1, 2)
        tokens = tokens.reshape(batch, frames, self.tokens_per_frame, -1)
        tokens = torch.where(has_previous[..., None, None], tokens, self.start_embed) + self.position_embed
        if action is not None:
            tokens = tokens + action
        return tokens.flatten(1, 2)

    def context_maps(self, hidden: Tensor) -> Tensor:
        """Transformer outputs ``[N, P, D]`` of ``N`` frames -> ``h`` ``[N, C, zh, zw]``."""
        maps = hidden.transpose(1, 2).reshape(hidden.shape[0], -1, *self.grid)
        return self.up(maps)

    def decoder_logits(self, quantized: Tensor, context: Tensor) -> Tensor:
        """Logits ``[N, h, w, K]`` of the tokenizer's codes from ``z`` ``[N, D_z, zh, zw]`` and ``h``."""
        return self.decoder(torch.cat([quantized, context.to(quantized.dtype)], dim=1)).permute(0, 2, 3, 1).float()

    def prior_inputs(self, context: Tensor) -> Tensor:
        """``h`` ``[N, C, zh, zw]`` -> its share ``[N, zh*zw, D]`` of the prior's input tokens."""
        return self.prior_context(context.flatten(2).transpose(1, 2)) + self.prior_position_embed

    def prior_logits(self, indices: Tensor, masked: Tensor, inputs: Tensor, task: Tensor | None) -> Tensor:
        """Logits ``[N, zh*zw, K_z]`` of ``z``'s codes ``[N, zh*zw]`` masked where ``masked``, given
        :meth:`prior_inputs`; ``task`` is ``[N]``."""
        tokens = torch.where(masked[..., None], self.prior_mask_embed, self.prior_code_embed(indices)) + inputs
        times = torch.zeros(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        hidden = self.prior(tokens, times, [None] * self.config.prior.layers, task)
        return self.prior_head(hidden).float()

    # Training -------------------------------------------------------------------------------------------------------
    def loss_and_features(
        self, codes: Tensor, task: Tensor | None = None, actions: Tensor | None = None
    ) -> tuple[Tensor, dict, Tensor]:
        codes = self.check_codes(codes, 4)
        batch, frames = codes.shape[:2]
        task, actions = self.check_conditioning(task, actions, batch, frames)
        has_previous = (torch.arange(frames, device=codes.device) > 0).expand(batch, frames)
        previous = torch.cat([torch.zeros_like(codes[:, :1]), codes[:, :-1]], dim=1)
        encoded = self.encode(codes.flatten(0, 1), previous.flatten(0, 1), has_previous.flatten())
        latent = encoded.latent.unflatten(0, (batch, frames))
        action = self._action_term(actions, batch, frames, self.training_action_drop(actions, batch))
        tokens = self.temporal_tokens(torch.cat([latent[:, :1], latent[:, :-1]], dim=1), has_previous, action)
        frame_times = torch.arange(frames, device=codes.device).expand(batch, frames) * self.config.stride
        times, index = self._token_meta(frame_times)
        masks = window_masks(self.windows, times[:1], index, times[:1], index, self.config.stride, "full")
        hidden = self.transformer(tokens, times, masks, task).view(batch, frames, self.tokens_per_frame, -1)
        keep = self.kept_frames(batch, frames, codes.device)
        rows = torch.arange(batch, device=codes.device)[:, None]
        context = self.context_maps(hidden[rows, keep].flatten(0, 1))
        quantized = encoded.quantized.unflatten(0, (batch, frames))[rows, keep].flatten(0, 1)
        target = codes[rows, keep].flatten(0, 1)
        recon = F.cross_entropy(self.decoder_logits(quantized, context).flatten(0, 2), target.flatten())
        indices = encoded.indices.unflatten(0, (batch, frames))[rows, keep].flatten(0, 1).flatten(1)
        masked = random_mask(indices.shape[0], 1, indices.shape[1], codes.device)[:, 0]
        frame_task = None if task is None else task.repeat_interleave(keep.shape[1])
        logits = self.prior_logits(indices, masked, self.prior_inputs(context), frame_task)
        prior = F.cross_entropy(logits[masked], indices[masked])
        nats = (recon + prior * indices.shape[1] / self.config.codes_per_frame).detach()
        stats = {
            "nats_per_code": nats, "bits_per_code": nats / math.log(2), "recon_loss": recon.detach(),
            "prior_loss": prior.detach(), "vq_loss": encoded.loss.detach(), **encoded.stats,
        }
        features = self._features(encoded.quantized.unflatten(0, (batch, frames)), hidden)
        return encoded.loss + recon + prior, stats, features

    @staticmethod
    def _features(quantized: Tensor, hidden: Tensor) -> Tensor:
        """``z`` ``[B, F, D_z, zh, zw]`` and temporal outputs ``[B, F, P, D]`` -> features ``[B, F, D_z + D]``."""
        return torch.cat([quantized.mean((-2, -1)), hidden.mean(2).to(quantized.dtype)], dim=-1)

    def kept_frames(self, batch: int, frames: int, device: torch.device) -> Tensor:
        """``[B, n]`` sorted clip indices that get decoder and prior losses: DropLoss in training, all in eval."""
        if not self.training or self.config.drop_loss == 0:
            return torch.arange(frames, device=device).expand(batch, frames)
        keep = max(1, round((1 - self.config.drop_loss) * frames))
        return torch.rand(batch, frames, device=device).argsort(-1)[:, :keep].sort(-1).values

    # Cached scoring and sampling ------------------------------------------------------------------------------------
    def _previous(self, cache: FrameCache, name: str, chunk: Tensor, start: Tensor) -> tuple[Tensor, Tensor]:
        """For each frame of a chunk ``[B, C, ...]`` at times ``start + i``: what is stored under ``name`` for the
        frame ``stride`` earlier (from the chunk itself or ``cache``), and whether that frame exists ``[B, C]``."""
        stride, frames = self.config.stride, chunk.shape[1]
        values, held = [], []
        for i in range(min(stride, frames)):
            value, present = cache.get(name, start - stride + i)
            values.append(torch.zeros_like(chunk[:, 0]) if value is None else value.to(chunk.dtype))
            held.append(present)
        values, held = torch.stack(values, 1), torch.stack(held, 1)
        if frames > stride:
            values = torch.cat([values, chunk[:, : frames - stride]], dim=1)
            held = torch.cat([held, held.new_ones(chunk.shape[0], frames - stride)], dim=1)
        return values, held

    def _temporal(
        self, cache: FrameCache, previous_latent: Tensor, has_previous: Tensor, start: Tensor, task: Tensor | None,
        action: Tensor | None,
    ) -> Tensor:
        """Temporal tokens of the frames at ``start + i`` through ``cache`` (keys and values written) -> their
        outputs ``[B, C, P, D]``."""
        batch, frames = previous_latent.shape[:2]
        slots = cache.claim(start)
        for i in range(1, frames):
            cache.claim(start + i)
        times, index = self._token_meta(start[:, None] + torch.arange(frames, device=start.device))
        masks = window_masks(
            self.windows, times, index, cache.key_times(), cache.key_index(), self.config.stride, same_frame="full"
        )
        tokens = self.temporal_tokens(previous_latent, has_previous, action)
        hidden = self.transformer(tokens, times, masks, task, CacheWrite(cache, slots, frames=frames))
        return hidden.view(batch, frames, self.tokens_per_frame, -1)

    def _store(self, cache: FrameCache, codes: Tensor, latent: Tensor, start: Tensor) -> None:
        """Keep each frame's codes ``[B, C, h, w]`` and transformer-input latent for the frames after it."""
        for i in range(codes.shape[1]):
            slots = (start + i) % cache.capacity
            cache.put("codes", slots, codes[:, i])
            cache.put("latent", slots, latent[:, i])

    def score_frames(
        self, cache: FrameCache, codes: Tensor, start: Tensor, task: Tensor | None, actions: Tensor | None
    ) -> Tensor:
        frames = codes.shape[1]
        encoded, hidden = self._cache_frames(cache, codes, start, task, actions)
        context = self.context_maps(hidden.flatten(0, 1))
        logp = self.decoder_logits(encoded.quantized, context).log_softmax(-1)
        logp = logp.gather(-1, codes.flatten(0, 1)[..., None])[..., 0]
        if self.config.score_prior:
            logp = logp + self._spread(self._prior_log_prob(encoded.indices, context, task, frames))
        return logp.view(codes.shape)

    def observe_frames(
        self, cache: FrameCache, codes: Tensor, start: Tensor, task: Tensor | None, actions: Tensor | None
    ) -> None:
        """Encoder and temporal transformer only: no decoder pass and no ``likelihood_steps`` prior passes."""
        self._cache_frames(cache, codes, start, task, actions)

    def _cache_frames(
        self, cache: FrameCache, codes: Tensor, start: Tensor, task: Tensor | None, actions: Tensor | None
    ) -> tuple[Encoded, Tensor]:
        """Encode frames ``[B, C, h, w]`` at times ``start + i`` and run them through the temporal transformer,
        writing keys, values, codes, latents and features to ``cache``; return the encoding and the temporal
        outputs ``[B, C, P, D]``."""
        batch, frames = codes.shape[:2]
        previous, has_previous = self._previous(cache, "codes", codes, start)
        encoded = self.encode(codes.flatten(0, 1), previous.flatten(0, 1), has_previous.flatten())
        latent = encoded.latent.unflatten(0, (batch, frames))
        previous_latent, _ = self._previous(cache, "latent", latent, start)
        action = self._action_term(actions, batch, frames)
        hidden = self._temporal(cache, previous_latent, has_previous, start, task, action)
        self._store(cache, codes, latent, start)
        cache.features = self._features(encoded.quantized.unflatten(0, (batch, frames)), hidden)[:, -1]
        return encoded, hidden

    def _prior_log_prob(self, indices: Tensor, context: Tensor, task: Tensor | None, frames: int) -> Tensor:
        """The prior's greedy-order estimate of ``ln p`` of each of ``z``'s codes ``[N, zh, zw]``."""
        flat, inputs = indices.flatten(1), self.prior_inputs(context)
        task = None if task is None else task.repeat_interleave(frames)
        logp = greedy_order_log_prob(
            lambda masked: self.prior_logits(flat, masked, inputs, task), flat, self.config.likelihood_steps
        )
        return logp.view(indices.shape)

    def _spread(self, latent_logp: Tensor) -> Tensor:
        """``[N, zh, zw]`` per-latent-code terms -> ``[N, h, w]``, each split evenly over the codes it covers."""
        factor = self.config.latent_factor
        spread = latent_logp.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)
        return spread / factor**2

    def generate_frame(
        self, cache: FrameCache, time: Tensor, task: Tensor | None, action: Tensor | None,
        temperature: float, top_k: int | None, generator: torch.Generator | None,
    ) -> Tensor:
        batch, config = time.shape[0], self.config
        shape = (batch, 1, *self.latent_shape)
        empty = torch.zeros(shape, dtype=torch.long, device=time.device)
        previous, has_previous = self._previous(cache, "codes", empty, time)
        empty = torch.zeros(batch, 1, config.quantizer.dim, *self.z_shape, device=time.device)
        previous_latent, _ = self._previous(cache, "latent", empty, time)
        action_term = self._action_term(None if action is None else action[:, None], batch, 1)
        hidden = self._temporal(cache, previous_latent, has_previous, time, task, action_term)
        context = self.context_maps(hidden.flatten(0, 1))
        inputs = self.prior_inputs(context)

        def logits_of(indices: Tensor, masked: Tensor) -> Tensor:
            return self.prior_logits(indices, masked, inputs, task)

        latents = self.z_shape[0] * self.z_shape[1]
        indices = draft(logits_of, (batch, latents), time.device, config.sample_steps, config.confidence_temperature,
                        temperature, top_k, generator)
        indices = revise(logits_of, indices, config.revise_rounds, config.revise_chunks, temperature, top_k,
                         generator)
        quantized = self.quantizer.indices_to_codes(indices.view(batch, *self.z_shape)).to(context.dtype)
        logits = self.decoder_logits(quantized, context)
        if config.decoder_sampling:
            codes = sample_logits(logits.flatten(0, 2), temperature, top_k, generator).view(batch, *self.latent_shape)
        else:
            codes = logits.argmax(-1)
        encoded = self.encode(codes, previous[:, 0], has_previous[:, 0])
        self._store(cache, codes[:, None], encoded.latent[:, None], time)
        cache.features = self._features(encoded.quantized[:, None], hidden)[:, -1]
        return codes
