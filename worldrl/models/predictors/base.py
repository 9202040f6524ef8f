"""The ``VideoModel`` interface: likelihood, streaming likelihood and sampling of tokenizer codes.

A video model scores and generates the codes ``int64 [B, T, h, w]`` of a
tokenizer (:mod:`worldrl.models.tokenizers`). Everything downstream (the
VIPER reward, the learned simulator, the training loop) uses only this
interface.

**Which context a frame sees** (one definition, used in training, in
:meth:`VideoModel.log_prob` and in streaming): the frame at time ``t`` is
scored given the frames at ``t - s, t - 2s, ..., t - k*s`` that exist (``k``
= ``config.context``, ``s`` = ``config.stride``), i.e. VIPER's
``ln p(x_t | x_{t-k*s}, ..., x_{t-s})``. A frame with none of them (the first
``s`` frames of an episode) is scored unconditionally; ``has_context`` flags
the others. Training clips are ``k + 1`` frames taken every ``s`` frames, so
every context length from 0 to ``k`` is trained.

**How**: attention is block-causal across frames, and layer ``l`` looks back
only ``w_l`` frames, with ``sum(w_l) = k``
(:func:`~worldrl.models.predictors.transformer.layer_windows`): information
reaches a frame from at most ``k`` frames back, so the dependence on the
context is exact, and every frame's keys and values are computed once and
kept in a rolling cache (:class:`~worldrl.models.predictors.transformer.FrameCache`).
:meth:`log_prob` walks an episode in chunks of frames through that cache and
:meth:`step` feeds one frame per call, so both run the same computation and
agree to float precision, and each frame is encoded once: no sliding window
is recomputed (``benchmarks/likelihood_speed.py`` measures the difference).
:meth:`observe` feeds a frame without scoring it, leaving the same state as
:meth:`step` (a simulator's burn-in, a sampling context): MaskGIT and TECO
then skip their multi-pass likelihood estimates, VideoGPT its output head.

Conditioning: ``task`` ``int64 [B]`` for multi-task models (``num_tasks`` > 0;
conditional LayerNorms), ``actions`` ``float [B, T, A]`` for action-conditioned
ones (``action_dim`` > 0): row ``t`` is the action that led to frame ``t``
(row 0 is unused, as in worldrl's episodes). Actions are optional even for an
action-conditioned model: without them it uses a learned "no action"
embedding, which training teaches with ``action_dropout``. Action
conditioning needs ``stride == 1``.

Checkpoints: :meth:`VideoModel.save` writes ``video_model.json`` and
``model.safetensors`` (no pickle) and, given the tokenizer, a copy of it in
``tokenizer/``; :func:`load_video_model` reads any kind back and refuses a
tokenizer whose codebook or latent shape does not match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from worldrl.config import build_dataclass
from worldrl.models.checkpoint import CheckpointError, load_weights, read_model_config, save_model
from worldrl.models.predictors.transformer import EMPTY_TIME, FrameCache, TransformerConfig

CONFIG_FILE = "video_model.json"
TOKENIZER_DIR = "tokenizer"

VIDEO_MODELS: dict[str, type[VideoModel]] = {}


@dataclass
class VideoModelConfig:
    """What every predictor has: the codes it models, its context window and its conditioning."""

    codebook_size: int = 1024
    latent_shape: tuple[int, int] = (8, 8)
    context: int = 15
    """``k``: previous frames a frame is conditioned on (a training clip is ``k + 1`` frames)."""
    stride: int = 1
    """``s``: frames between two context frames (VIPER's RLBench models use 4)."""
    num_tasks: int = 0
    """Task ids for conditional LayerNorms; 0 = single-task."""
    action_dim: int = 0
    """Size of the action vector a frame is conditioned on; 0 = no action conditioning."""
    action_dropout: float = 0.0
    """Training only: probability of replacing a clip's actions by the learned "no action" embedding."""
    transformer: TransformerConfig = field(default_factory=TransformerConfig)

    def __post_init__(self) -> None:
        if isinstance(self.transformer, dict):
            self.transformer = build_dataclass(TransformerConfig, self.transformer, "model.transformer")
        if self.codebook_size < 2 or len(self.latent_shape) != 2 or min(self.latent_shape) < 1:
            raise ValueError(f"need codebook_size >= 2 and a latent_shape (h, w), got {self.codebook_size}, "
                             f"{self.latent_shape}")
        if self.context < 0 or self.stride < 1 or self.num_tasks < 0 or self.action_dim < 0:
            raise ValueError("context, num_tasks and action_dim must be >= 0 and stride >= 1")
        if self.action_dim and self.stride != 1:
            raise ValueError("action conditioning needs stride 1 (a strided frame follows several actions)")
        if not 0 <= self.action_dropout <= 1:
            raise ValueError(f"action_dropout must be in [0, 1], got {self.action_dropout}")

    @property
    def codes_per_frame(self) -> int:
        return self.latent_shape[0] * self.latent_shape[1]

    @property
    def clip_length(self) -> int:
        """Frames of a training clip: the frame and its full context."""
        return self.context + 1


@dataclass
class LogProb:
    """Per-frame log-likelihoods in nats."""

    frame: Tensor
    """``[B, T]``: ``ln p(frame t | its context)``, the sum over its codes."""
    has_context: Tensor
    """``[B, T]`` bool: False for frames scored without any context (the first ``stride`` of an episode)."""
    code: Tensor | None = None
    """``[B, T, h, w]``: each code's share (``per_code=True``), for likelihood heat-maps."""


@dataclass
class StreamState:
    """Streaming state of a batch of episodes: the rolling cache and each row's next frame time.

    :meth:`VideoModel.step` and :meth:`VideoModel.observe` update it in place (and return it).
    """

    cache: FrameCache
    time: Tensor
    """``[B]`` int64: time of the next frame each row will observe (0 right after a reset)."""

    @property
    def batch(self) -> int:
        return self.time.shape[0]


class VideoModel(nn.Module):
    """Base class of the predictors. Subclasses implement :meth:`loss`, :meth:`score_frames` and
    :meth:`generate_frame` (and :meth:`observe_frames` where scoring costs more than caching); everything else
    (validation, chunking, streaming, checkpoints) lives here."""

    kind: ClassVar[str]
    config_class: ClassVar[type[VideoModelConfig]] = VideoModelConfig
    tokens_per_frame: int
    """Cached positions per frame (the subclass's layout)."""
    windows: list[int]
    """Frames each transformer layer looks back (they add up to ``config.context``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            VIDEO_MODELS[cls.kind] = cls

    def __init__(self, config: VideoModelConfig):
        super().__init__()
        self.config = config

    @classmethod
    def from_config(cls, config: VideoModelConfig | dict[str, Any]) -> VideoModel:
        if isinstance(config, dict):
            config = build_dataclass(cls.config_class, config, "model")
        return cls(config)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def latent_shape(self) -> tuple[int, int]:
        return tuple(self.config.latent_shape)

    @property
    def feature_dim(self) -> int:
        """Size of the per-frame features (:meth:`loss_and_features`, :meth:`frame_features`)."""
        return self.config.transformer.hidden

    @property
    def cache_span(self) -> int:
        """Past frames the cache must hold: the widest layer window, in frames."""
        return max(self.windows) * self.config.stride

    # Subclasses -----------------------------------------------------------------------------------------------------
    def loss(self, codes: Tensor, task: Tensor | None = None, actions: Tensor | None = None) -> tuple[Tensor, dict]:
        """Training loss on clips ``[B, L, h, w]`` taken every ``stride`` frames; returns ``(loss, stats)``.

        ``stats`` holds detached scalars, at least ``nats_per_code`` (the
        negative log-likelihood the model maximises, per code).
        """
        loss, stats, _ = self.loss_and_features(codes, task, actions)
        return loss, stats

    def loss_and_features(
        self, codes: Tensor, task: Tensor | None = None, actions: Tensor | None = None
    ) -> tuple[Tensor, dict, Tensor]:
        """:meth:`loss` and the features ``[B, L, D]`` of every clip frame, the inputs of a learned simulator's
        reward and continue heads: the same function of a frame and its context as :meth:`frame_features` gives
        in streaming. Subclasses that compute features also set ``cache.features`` in :meth:`score_frames`
        and :meth:`generate_frame`."""
        raise NotImplementedError(f"the {self.kind} predictor exposes no frame features")

    def score_frames(
        self, cache: FrameCache, codes: Tensor, start: Tensor, task: Tensor | None, actions: Tensor | None
    ) -> Tensor:
        """Per-code log-likelihoods ``[B, C, h, w]`` of ``C`` consecutive frames at times ``start + i`` ``[B]``,
        given what ``cache`` holds; the frames are then added to ``cache``. ``C`` > 1 needs equal ``start``."""
        raise NotImplementedError

    def generate_frame(
        self, cache: FrameCache, time: Tensor, task: Tensor | None, action: Tensor | None,
        temperature: float, top_k: int | None, generator: torch.Generator | None,
    ) -> Tensor:
        """Sample the codes ``[B, h, w]`` of the frame at ``time`` ``[B]`` given ``cache``, and add it to ``cache``."""
        raise NotImplementedError

    def observe_frames(
        self, cache: FrameCache, codes: Tensor, start: Tensor, task: Tensor | None, actions: Tensor | None
    ) -> None:
        """Add ``C`` consecutive frames ``[B, C, h, w]`` at times ``start + i`` to ``cache`` exactly as
        :meth:`score_frames` does, without scoring them. Subclasses override this to skip the scoring work."""
        self.score_frames(cache, codes, start, task, actions)

    # Inputs shared by the predictors -----------------------------------------------------------------------------
    def training_action_drop(self, actions: Tensor | None, batch: int) -> Tensor | None:
        """``[B]`` bool: the clips whose actions training replaces by "no action" (``action_dropout``); else None."""
        if not self.training or actions is None or self.config.action_dropout <= 0:
            return None
        return torch.rand(batch, device=actions.device) < self.config.action_dropout

    def _action_term(
        self, actions: Tensor | None, batch: int, frames: int, drop: Tensor | None = None
    ) -> Tensor | None:
        """``[B, F, 1, D]`` embedding of each frame's action (the "no action" embedding where absent or dropped).

        Uses the subclass's ``action_embed`` (a Linear, None without actions) and ``null_action``.
        """
        if self.action_embed is None:
            return None
        null = self.null_action.expand(batch, frames, -1)
        if actions is None:
            return null[:, :, None]
        embedded = self.action_embed(actions)
        if drop is not None:
            embedded = torch.where(drop[:, None, None], null, embedded)
        return embedded[:, :, None]

    def _token_meta(self, frame_times: Tensor) -> tuple[Tensor, Tensor]:
        """Times ``[B, F * P]`` and in-frame indices ``[F * P]`` of the tokens of the frames at ``frame_times``."""
        per_frame = self.tokens_per_frame
        times = frame_times.repeat_interleave(per_frame, dim=1)
        index = torch.arange(per_frame, device=frame_times.device).repeat(frame_times.shape[1])
        return times, index

    # Likelihood -----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def log_prob(
        self,
        codes: Tensor,
        task: Tensor | None = None,
        actions: Tensor | None = None,
        per_code: bool = False,
        chunk: int = 16,
    ) -> LogProb:
        """Log-likelihood of every frame of episodes ``[B, T, h, w]`` (all starting at time 0), in nats.

        Frames are processed ``chunk`` at a time through the rolling cache;
        the result does not depend on ``chunk`` beyond float rounding.
        """
        codes = self.check_codes(codes, 4)
        batch, length = codes.shape[:2]
        task, actions = self.check_conditioning(task, actions, batch, length)
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        cache = FrameCache(batch, self.cache_span + chunk, self.tokens_per_frame, codes.device)
        scores = []
        for begin in range(0, length, chunk):
            end = min(begin + chunk, length)
            start = torch.full((batch,), begin, dtype=torch.long, device=codes.device)
            part = None if actions is None else actions[:, begin:end]
            scores.append(self.score_frames(cache, codes[:, begin:end], start, task, part).float())
        code = torch.cat(scores, dim=1)
        times = torch.arange(length, device=codes.device).expand(batch, length)
        return LogProb(code.sum((-2, -1)), times >= self.config.stride, code if per_code else None)

    def init_state(self, batch: int, device: torch.device | str | None = None) -> StreamState:
        """An empty streaming state for ``batch`` episodes (every row as if just reset)."""
        device = torch.device(device) if device is not None else self.device
        cache = FrameCache(batch, self.cache_span + 1, self.tokens_per_frame, device)
        return StreamState(cache, torch.zeros(batch, dtype=torch.long, device=device))

    def reset_state(self, state: StreamState, rows: Tensor | None = None) -> StreamState:
        """Start new episodes in the rows where ``rows`` ``[B]`` (bool) is True (all rows if None), in place."""
        if rows is None:
            rows = torch.ones(state.batch, dtype=torch.bool, device=state.time.device)
        rows = torch.as_tensor(rows, dtype=torch.bool, device=state.time.device)
        if rows.shape != (state.batch,):
            raise ValueError(f"rows must be a bool mask of shape [{state.batch}], got {tuple(rows.shape)}")
        state.cache.reset(rows)
        state.time[rows] = 0
        return state

    @torch.no_grad()
    def step(
        self,
        state: StreamState,
        codes: Tensor,
        task: Tensor | None = None,
        action: Tensor | None = None,
        per_code: bool = False,
        rows: Tensor | None = None,
    ) -> tuple[StreamState, Tensor]:
        """Observe the next frame's codes ``[B, h, w]`` of every row; return ``(state, logp)``.

        ``logp`` ``[B]`` (or ``[B, h, w]`` with ``per_code``) is the frame's
        log-likelihood given the row's context, exactly as :meth:`log_prob`
        scores it. ``action`` ``[B, A]`` is the action that led to this frame.
        Rows without context (``state.time < stride`` before the call) are
        scored unconditionally. With ``rows`` (bool ``[B]``), only those rows
        observe a frame; the others stay where they are and get NaN.
        """
        code = self._feed(state, codes, task, action, rows, score=True)
        return state, code if per_code else code.sum((-2, -1))

    @torch.no_grad()
    def observe(
        self,
        state: StreamState,
        codes: Tensor,
        task: Tensor | None = None,
        action: Tensor | None = None,
        rows: Tensor | None = None,
    ) -> StreamState:
        """:meth:`step` without the likelihood: the state ends up exactly as :meth:`step` leaves it (cache,
        features, times), at the cost of caching the frame only. For frames fed as context (a simulator's
        burn-in), where MaskGIT's and TECO's likelihood estimates would cost several extra passes per frame."""
        self._feed(state, codes, task, action, rows, score=False)
        return state

    def _feed(
        self, state: StreamState, codes: Tensor, task: Tensor | None, action: Tensor | None, rows: Tensor | None,
        score: bool,
    ) -> Tensor | None:
        """Add the next frame of the rows ``rows`` (all if None) to ``state``; its per-code scores ``[B, h, w]``
        (NaN in idle rows) if ``score``, else None."""
        codes = self.check_codes(codes, 3)
        if codes.shape[0] != state.batch:
            raise ValueError(f"codes has {codes.shape[0]} rows, the state {state.batch}")
        task, actions = self.check_conditioning(task, None if action is None else action[:, None], state.batch, 1)
        before = state.cache.features
        code = None
        if score:
            code = self.score_frames(state.cache, codes[:, None], state.time, task, actions)[:, 0].float()
        else:
            self.observe_frames(state.cache, codes[:, None], state.time, task, actions)
        if rows is not None:
            rows = torch.as_tensor(rows, dtype=torch.bool, device=state.time.device)
            idle = ~rows
            if before is not None and state.cache.features is not None:
                state.cache.features = torch.where(idle[:, None], before, state.cache.features)
            # An idle row's frame went into the slot of its frame t - capacity, outside every window: empty it.
            state.cache.slot_time[idle, state.time[idle] % state.cache.capacity] = EMPTY_TIME
            if code is not None:
                code[idle] = float("nan")
            state.time += rows.long()
        else:
            state.time += 1
        return code

    # Sampling -------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        context_codes: Tensor,
        num_frames: int,
        task: Tensor | None = None,
        actions: Tensor | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continue ``context_codes`` ``[B, T0, h, w]`` (frames ``stride`` apart; ``T0`` may be 0) by
        ``num_frames`` frames; returns their codes ``[B, num_frames, h, w]``.

        ``actions`` ``[B, T0 + num_frames, A]``: the action that led to each
        context and each generated frame. ``temperature`` 0 takes the most
        likely codes (MaskGIT: greedy), ``top_k`` keeps only the k likeliest.
        """
        codes = self.check_codes(context_codes, 4)
        batch, known = codes.shape[:2]
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if temperature < 0 or (top_k is not None and not 1 <= top_k <= self.codebook_size):
            raise ValueError(
                f"need temperature >= 0 and 1 <= top_k <= {self.codebook_size}, got {temperature}, {top_k}"
            )
        task, actions = self.check_conditioning(task, actions, batch, known + num_frames)
        stride = self.config.stride
        cache = FrameCache(batch, self.cache_span + 1, self.tokens_per_frame, codes.device)
        for i in range(known):
            time = torch.full((batch,), i * stride, dtype=torch.long, device=codes.device)
            action = None if actions is None else actions[:, i : i + 1]
            self.observe_frames(cache, codes[:, i : i + 1], time, task, action)
        frames = []
        for i in range(known, known + num_frames):
            time = torch.full((batch,), i * stride, dtype=torch.long, device=codes.device)
            action = None if actions is None else actions[:, i]
            frames.append(self.generate_frame(cache, time, task, action, temperature, top_k, generator))
        return torch.stack(frames, dim=1)

    @torch.no_grad()
    def sample_step(
        self,
        state: StreamState,
        task: Tensor | None = None,
        action: Tensor | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[StreamState, Tensor]:
        """Imagine the next frame of every row of a streaming state (a learned simulator's step): its codes
        ``[B, h, w]``, which then become part of the row's context. Needs ``stride == 1``."""
        if self.config.stride != 1:
            raise ValueError("sample_step needs a model with stride 1")
        task, actions = self.check_conditioning(task, None if action is None else action[:, None], state.batch, 1)
        codes = self.generate_frame(
            state.cache, state.time, task, None if actions is None else actions[:, 0], temperature, top_k, generator
        )
        state.time += 1
        return state, codes

    def frame_features(self, state: StreamState) -> Tensor:
        """Features ``[B, D]`` of each row's latest frame (observed by :meth:`step` or :meth:`observe`, or imagined
        by :meth:`sample_step`), as :meth:`loss_and_features` computes them in training."""
        if state.cache.features is None:
            raise ValueError(f"no frame features: no frame was observed yet, or the {self.kind} predictor exposes "
                             "none")
        return state.cache.features

    # Validation -----------------------------------------------------------------------------------------------------
    def check_codes(self, codes: Tensor, dims: int) -> Tensor:
        """Codes as int64 on the model's device; shape ``[..., h, w]`` with ``dims`` dims and values in range."""
        codes = torch.as_tensor(codes, device=self.device)
        h, w = self.latent_shape
        shape = "[B, T, h, w]" if dims == 4 else "[B, h, w]"
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise TypeError(f"codes must be an integer tensor {shape}, got {codes.dtype}")
        if codes.dim() != dims or tuple(codes.shape[-2:]) != (h, w):
            raise ValueError(f"codes must be {shape} with (h, w) = ({h}, {w}), got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]"
            )
        return codes.long()

    def check_conditioning(
        self, task: Tensor | None, actions: Tensor | None, batch: int, length: int
    ) -> tuple[Tensor | None, Tensor | None]:
        """``task`` ``[B]`` and ``actions`` ``[B, T, A]`` on the model's device, checked against the config."""
        config = self.config
        if config.num_tasks:
            if task is None:
                raise ValueError(f"this model is conditioned on {config.num_tasks} tasks: pass task ids [B]")
            task = torch.as_tensor(task, device=self.device).long().reshape(-1)
            if task.numel() == 1 and batch > 1:
                task = task.expand(batch)
            if task.shape != (batch,) or int(task.min()) < 0 or int(task.max()) >= config.num_tasks:
                raise ValueError(f"task must be [{batch}] ids in [0, {config.num_tasks}), got {task.tolist()}")
        elif task is not None:
            raise ValueError("this model has no task conditioning (num_tasks = 0); pass task=None")
        if actions is not None:
            if not config.action_dim:
                raise ValueError("this model has no action conditioning (action_dim = 0); pass actions=None")
            actions = torch.as_tensor(actions, device=self.device).float()
            if actions.shape != (batch, length, config.action_dim):
                raise ValueError(
                    f"actions must be [{batch}, {length}, {config.action_dim}], got {tuple(actions.shape)}"
                )
        return task, actions

    # Checkpoints ----------------------------------------------------------------------------------------------------
    def save(self, directory: str | Path, tokenizer: nn.Module | None = None) -> Path:
        """Write ``video_model.json`` and ``model.safetensors`` (atomically) and the tokenizer into ``tokenizer/``."""
        directory = Path(directory)
        if tokenizer is not None:
            check_tokenizer(self, tokenizer, directory)
            tokenizer.save(directory / TOKENIZER_DIR)
        return save_model(self, directory, CONFIG_FILE)


def check_tokenizer(model: VideoModel, tokenizer: Any, where: str | Path = "") -> None:
    """A :class:`CheckpointError` unless the tokenizer's codes are the ones ``model`` models."""
    prefix = f"{where}: " if where else ""
    if tokenizer.codebook_size != model.codebook_size:
        raise CheckpointError(
            f"{prefix}the video model has a codebook of {model.codebook_size} codes but the tokenizer "
            f"{tokenizer.codebook_size}"
        )
    if tuple(tokenizer.latent_shape) != model.latent_shape:
        raise CheckpointError(
            f"{prefix}the video model takes codes of shape (h, w) = {model.latent_shape} but the tokenizer "
            f"makes {tuple(tokenizer.latent_shape)}"
        )


def load_video_model(
    directory: str | Path, device: str | torch.device = "cpu", tokenizer: Any = None
) -> VideoModel:
    """Load a video model saved by :meth:`VideoModel.save` (any kind), in eval mode on ``device``.

    The model is checked against ``tokenizer`` (a tokenizer or its folder)
    when given, else against the copy saved with it, if any: a codebook size
    or latent shape that differs is a :class:`CheckpointError` naming both.
    """
    from worldrl.device import resolve_device
    from worldrl.models.tokenizers import load_tokenizer

    directory = Path(directory)
    _import_kinds()
    kind, config = read_model_config(directory, CONFIG_FILE, "video model", VIDEO_MODELS)
    try:
        model = VIDEO_MODELS[kind].from_config(config)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{directory / CONFIG_FILE}: invalid config ({error})") from error
    if tokenizer is None and (directory / TOKENIZER_DIR).is_dir():
        tokenizer = directory / TOKENIZER_DIR
    if isinstance(tokenizer, (str, Path)):
        tokenizer = load_tokenizer(tokenizer)
    if tokenizer is not None:
        check_tokenizer(model, tokenizer, directory)
    load_weights(model, directory, CONFIG_FILE)
    return model.to(resolve_device(device)).eval()


def _import_kinds() -> None:
    """Import the modules that define the predictor kinds, so that they register themselves."""
    import worldrl.models.predictors  # noqa: F401
