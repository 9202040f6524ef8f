"""Lookup-free quantization (MAGVIT-v2, Yu et al., 2023): each of log2(K) channels becomes its sign.

The code of ``z`` is ``sign(z_i)`` per channel (``-1`` for ``z_i <= 0``) and
its index ``sum_i 2^i [z_i > 0]``; no codebook to look up, so K can be large.
Loss: commitment ``0.25 ||z - sg(q)||^2`` plus an entropy penalty
``E[H(q(z))] - H[E(q(z))]`` that makes each assignment confident and the
codebook as a whole used evenly (without it MAGVIT-v2 uses 22% of its codes).

``q(z)`` is the soft assignment ``softmax_c(-inv_temperature ||z - c||^2)``
over the codes ``c in {-1, 1}^D``. It factorises over channels:
``P(c_i = 1) = sigmoid(4 inv_temperature z_i)``, so the per-sample entropy is
a sum of binary entropies, exactly. The codebook entropy ``H[E(q(z))]`` of the
batch-mean distribution is computed exactly for up to ``2^max_exact_bits``
codes without materialising ``[N, K]``: split the bits in two halves A and B,
then ``E_n[q_n(a) q_n(b)] = Q_A^T Q_B / N`` with ``Q_A`` of shape
``[N, 2^|A|]``. Beyond that the channels are split into groups of at most
``max_exact_bits`` and the groups' exact entropies are summed: an upper bound
of the joint entropy that ignores dependence between groups.

The penalty weight is annealed linearly from ``entropy_weight_start`` to
``entropy_weight`` over ``entropy_anneal_steps`` training forwards, counted in
the ``step`` buffer (so it resumes with the state dict).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from worldrl.models.quantizers.base import Quantizer, QuantizerOutput, channels_first, channels_last

if TYPE_CHECKING:
    from worldrl.models.quantizers import QuantizerConfig


def _code_probs(logits: Tensor) -> Tensor:
    """Per-bit logits ``[N, m]`` -> probabilities ``[N, 2^m]`` of the codes of those m independent bits."""
    m = logits.shape[1]
    bits = (torch.arange(2**m, device=logits.device).unsqueeze(1) >> torch.arange(m, device=logits.device)) & 1
    bits = bits.to(logits.dtype)
    return (F.logsigmoid(logits) @ bits.t() + F.logsigmoid(-logits) @ (1 - bits).t()).exp()


def _entropy(probs: Tensor) -> Tensor:
    return -(probs * probs.clamp_min(1e-12).log()).sum()


class LFQ(Quantizer):
    """Sign quantization of ``log2(codebook_size)`` channels with MAGVIT-v2's annealed entropy penalty."""

    def __init__(
        self,
        codebook_size: int = 2**16,
        beta: float = 0.25,
        entropy_weight: float = 0.1,
        entropy_weight_start: float = 0.3,
        entropy_anneal_steps: int = 2000,
        inv_temperature: float = 1.0,
        max_exact_bits: int = 16,
        track_usage: bool = True,
    ):
        if codebook_size < 2 or codebook_size & (codebook_size - 1):
            raise ValueError(f"LFQ needs a power-of-two codebook_size, got {codebook_size}")
        bits = codebook_size.bit_length() - 1
        super().__init__(codebook_size, bits, track_usage)
        self.beta = beta
        self.entropy_weight = entropy_weight
        self.entropy_weight_start = entropy_weight_start
        self.entropy_anneal_steps = entropy_anneal_steps
        self.inv_temperature = inv_temperature
        # Channel ranges [start, end) whose codebook entropies are exact: one range when K <= 2^max_exact_bits.
        groups = -(-bits // max_exact_bits)
        bounds = [round(i * bits / groups) for i in range(groups + 1)]
        self.groups = list(zip(bounds[:-1], bounds[1:]))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("powers", 2 ** torch.arange(bits), persistent=False)

    @classmethod
    def from_config(cls, config: QuantizerConfig) -> LFQ:
        return cls(
            config.codebook_size,
            beta=config.beta,
            entropy_weight=config.entropy_weight,
            entropy_weight_start=config.entropy_weight_start,
            entropy_anneal_steps=config.entropy_anneal_steps,
        )

    def current_entropy_weight(self) -> Tensor:
        """The entropy-penalty weight at the current training step (linear annealing)."""
        progress = (self.step.float() / max(self.entropy_anneal_steps, 1)).clamp(max=1.0)
        return self.entropy_weight_start + (self.entropy_weight - self.entropy_weight_start) * progress

    def entropy_terms(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(E[H(q(z))], H[E(q(z))])`` in nats over the vectors of ``z`` ``[B, D, *S]``; penalty = first - second."""
        logits = 4 * self.inv_temperature * channels_last(z).reshape(-1, self.dim).float()
        per_sample = -(torch.sigmoid(logits) * F.logsigmoid(logits) + torch.sigmoid(-logits) * F.logsigmoid(-logits))
        codebook = logits.new_zeros(())
        for start, end in self.groups:
            half = (start + end) // 2
            low, high = _code_probs(logits[:, start:half]), _code_probs(logits[:, half:end])
            codebook = codebook + _entropy(low.t() @ high / logits.shape[0])
        return per_sample.sum(1).mean(), codebook

    def quantize(self, z: Tensor) -> QuantizerOutput:
        flat = channels_last(z)
        positive = flat > 0
        q = positive.to(flat.dtype) * 2 - 1
        indices = (positive.long() * self.powers).sum(-1)
        per_sample, codebook = self.entropy_terms(z)
        weight = self.current_entropy_weight()
        loss = self.beta * F.mse_loss(flat, q) + weight * (per_sample - codebook)
        if self.training:
            self.step += 1
        stats = {
            "entropy_per_sample": per_sample.detach(),
            "codebook_entropy": codebook.detach(),
            "entropy_weight": weight.detach(),
        }
        return QuantizerOutput(
            quantized=channels_first(flat + (q - flat).detach()), indices=indices, loss=loss, stats=stats
        )

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        self.check_indices(indices)
        bits = (indices.long().unsqueeze(-1) >> torch.arange(self.dim, device=indices.device)) & 1
        return channels_first(bits.float() * 2 - 1)
