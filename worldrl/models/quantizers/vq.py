"""Vector quantization (VQ-VAE): replace each feature vector by its nearest codebook entry.

VideoGPT's recipe by default: the codebook follows exponential moving averages
of the features assigned to each code (Laplace-smoothed cluster sizes), is
initialised from the first training batch's encoder outputs, and codes whose
EMA usage falls below a threshold are restarted from recent encoder outputs;
commitment weight 0.25. With ``ema_decay=None`` the codebook is a parameter
learned through the codebook loss ``||sg(z) - e||^2``. With ``l2_normalize``
features and codes are compared as unit vectors (ViT-VQGAN, TECO), which
raises codebook use; the quantized output is then the unit code.

Everything a resume needs (codebook, EMA statistics, recent encoder outputs,
the initialised flag) lives in the state dict. Under DDP the statistics are
all-reduced before the update and data-dependent codebook writes (init,
restarts) are broadcast from rank 0, so replicas stay identical.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from worldrl.models.quantizers.base import Quantizer, QuantizerOutput, channels_first, channels_last

if TYPE_CHECKING:
    from worldrl.models.quantizers import QuantizerConfig


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _sample_rows(x: Tensor, n: int) -> Tensor:
    """``n`` random rows of ``x``: without replacement when it has enough rows, else with."""
    if x.shape[0] >= n:
        return x[torch.randperm(x.shape[0], device=x.device)[:n]]
    return x[torch.randint(x.shape[0], (n,), device=x.device)]


class VectorQuantizer(Quantizer):
    """Nearest-code VQ; ``stats["dead_codes"]`` is the fraction of codes whose EMA usage is below the threshold."""

    def __init__(
        self,
        codebook_size: int = 1024,
        dim: int = 64,
        beta: float = 0.25,
        ema_decay: float | None = 0.99,
        l2_normalize: bool = False,
        restart_dead_codes: bool = True,
        dead_code_threshold: float = 1.0,
        init_from_data: bool = True,
        eps: float = 1e-5,
        recent_size: int | None = None,
        track_usage: bool = True,
    ):
        super().__init__(codebook_size, dim, track_usage)
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in (0, 1) or be None, got {ema_decay}")
        self.beta = beta
        self.ema_decay = ema_decay
        self.l2_normalize = l2_normalize
        self.restart_dead_codes = restart_dead_codes
        self.dead_code_threshold = float(dead_code_threshold)
        self.eps = eps
        codebook = torch.randn(codebook_size, dim)
        if l2_normalize:
            codebook = F.normalize(codebook, dim=1)
        if ema_decay is None:
            self.codebook = nn.Parameter(codebook)
        else:
            self.register_buffer("codebook", codebook)
            self.register_buffer("embed_sum", codebook.clone())
        # EMA of the number of vectors assigned to each code per batch: the EMA denominator and the dead-code test.
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("initialized", torch.tensor(not init_from_data))
        if restart_dead_codes:
            # A ring of recent encoder outputs (a random subset of each training batch) to restart dead codes from.
            size = recent_size or min(max(2 * codebook_size, 1024), 16384)
            self.register_buffer("recent", torch.zeros(size, dim))
            self.register_buffer("recent_count", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, config: QuantizerConfig) -> VectorQuantizer:
        return cls(
            config.codebook_size,
            config.dim,
            beta=config.beta,
            ema_decay=config.ema_decay,
            l2_normalize=config.l2_normalize,
            restart_dead_codes=config.restart_dead_codes,
            dead_code_threshold=config.dead_code_threshold,
            init_from_data=config.init_from_data,
        )

    def codes(self) -> Tensor:
        """The codebook ``[K, D]`` as the lookup sees it (unit rows with ``l2_normalize``)."""
        return F.normalize(self.codebook, dim=1) if self.l2_normalize else self.codebook

    def _lookup(self, indices: Tensor) -> Tensor:
        # Gather before normalising, so autograd saves no reference to the codebook that restarts write in place.
        codes = self.codebook[indices]
        return F.normalize(codes, dim=-1) if self.l2_normalize else codes

    def quantize(self, z: Tensor) -> QuantizerOutput:
        flat = channels_last(z).reshape(-1, self.dim)
        if self.l2_normalize:
            flat = F.normalize(flat, dim=1)
        if self.training and not self.initialized:
            self._init_codebook(flat.detach())
        with torch.no_grad():
            codes = self.codes()
            # argmin_k ||z - e_k||^2 = argmin_k ||e_k||^2 - 2 z.e_k: ||z||^2 is the same for every k.
            distances = torch.addmm(codes.square().sum(1), flat, codes.t(), alpha=-2.0)
            indices = distances.argmin(1)
        q = self._lookup(indices)
        loss = self.beta * F.mse_loss(flat, q.detach())
        if self.ema_decay is None:
            loss = loss + F.mse_loss(q, flat.detach())
        quantized = flat + (q - flat).detach()
        if self.training:
            dead = self._update(flat.detach(), indices)
        else:
            dead = (self.cluster_size < self.dead_code_threshold).float().mean()
        spatial = (z.shape[0], *z.shape[2:])
        return QuantizerOutput(
            quantized=channels_first(quantized.view(*spatial, self.dim)),
            indices=indices.view(spatial),
            loss=loss,
            stats={"dead_codes": dead},
        )

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        self.check_indices(indices)
        return channels_first(self._lookup(indices.long()).detach())

    @torch.no_grad()
    def _init_codebook(self, flat: Tensor) -> None:
        """Codebook := random encoder outputs plus tiny noise (which separates duplicates)."""
        codes = _sample_rows(flat, self.codebook_size)
        codes = codes + 1e-3 * flat.std(correction=0) * torch.randn_like(codes)
        if self.l2_normalize:
            codes = F.normalize(codes, dim=1)
        if _distributed():
            dist.broadcast(codes, 0)
        self.codebook.copy_(codes)
        self.cluster_size.fill_(1.0)
        if self.ema_decay is not None:
            self.embed_sum.copy_(codes)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, flat: Tensor, indices: Tensor) -> Tensor:
        """One training step: EMA statistics (and codebook, with EMA), then dead-code restarts.

        Returns the fraction of codes that were dead before the restarts.
        """
        counts = torch.bincount(indices, minlength=self.codebook_size).float()
        if self.ema_decay is None:
            totals = counts.unsqueeze(1)
        else:
            sums = torch.zeros_like(self.codebook).index_add_(0, indices, flat)
            totals = torch.cat([counts.unsqueeze(1), sums], 1)
        if _distributed():
            dist.all_reduce(totals)
        decay = 0.99 if self.ema_decay is None else self.ema_decay
        self.cluster_size.lerp_(totals[:, 0], 1 - decay)
        if self.ema_decay is not None:
            self.embed_sum.lerp_(totals[:, 1:], 1 - decay)
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n
            self.codebook.copy_(self.embed_sum / smoothed.unsqueeze(1))
        dead = self.cluster_size < self.dead_code_threshold
        if self.restart_dead_codes:
            self._remember(flat)
            self._restart(dead)
        return dead.float().mean()

    def _remember(self, flat: Tensor) -> None:
        size = self.recent.shape[0]
        rows = _sample_rows(flat, min(flat.shape[0], max(size // 4, 1)))
        positions = (self.recent_count + torch.arange(rows.shape[0], device=rows.device)) % size
        self.recent[positions] = rows
        self.recent_count += rows.shape[0]

    def _restart(self, dead: Tensor) -> None:
        """Move dead codes onto random recent encoder outputs and give them a fresh EMA count at the threshold."""
        n, filled = torch.stack([dead.sum(), self.recent_count.clamp(max=self.recent.shape[0])]).tolist()
        if n == 0:
            return
        new = _sample_rows(self.recent[:filled], n)
        if _distributed():
            dist.broadcast(new, 0)
        self.codebook[dead] = new
        self.cluster_size[dead] = self.dead_code_threshold
        if self.ema_decay is not None:
            self.embed_sum[dead] = new * self.dead_code_threshold
