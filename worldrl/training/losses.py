"""Tokenizer training losses: pixel reconstruction, an optional perceptual distance, the data variance.

Reconstruction losses compare float video in ``[-1, 1]``:

- ``l1``, ``l2``: mean absolute / squared error;
- ``l1+l2``: their sum;
- ``normalized_mse``: mean squared error divided by the variance of the
  training data (VideoGPT), which makes the loss scale-free: 1.0 is the error
  of predicting the mean pixel value.

The perceptual loss needs a feature network, and worldrl never downloads
one: :class:`PerceptualLoss` loads a TorchScript file that the user provides
(for instance VGG16 features traced with ``torch.jit.trace``), which maps
frames ``[N, 3, H, W]`` in ``[-1, 1]`` to a tensor or a list/tuple of
feature maps. The distance is LPIPS without its learned per-channel weights:
features are unit-normalised over channels, then squared differences are
averaged per layer and summed over layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

RECONSTRUCTION_LOSSES = ("l1", "l2", "l1+l2", "normalized_mse")


def check_reconstruction_loss(kind: str) -> None:
    if kind not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"loss.reconstruction must be one of {', '.join(RECONSTRUCTION_LOSSES)}, got {kind!r}")


def reconstruction_loss(
    kind: str, reconstruction: Tensor, target: Tensor, data_variance: float | None = None
) -> Tensor:
    """The ``kind`` loss (see the module docstring) between two float tensors of the same shape, in fp32."""
    check_reconstruction_loss(kind)
    reconstruction, target = reconstruction.float(), target.float()
    if kind == "l1":
        return F.l1_loss(reconstruction, target)
    if kind == "l2":
        return F.mse_loss(reconstruction, target)
    if kind == "l1+l2":
        return F.l1_loss(reconstruction, target) + F.mse_loss(reconstruction, target)
    if data_variance is None or not data_variance > 0:
        raise ValueError(f"normalized_mse needs a positive data variance, got {data_variance}")
    return F.mse_loss(reconstruction, target) / data_variance


def estimate_data_variance(dataset: Sequence[dict[str, Tensor]], samples: int = 256) -> float:
    """Variance of the pixel values (in ``[-1, 1]``) of up to ``samples`` clips spread evenly over ``dataset``.

    Items are dicts with a uint8 ``video``. The same clips are read on every
    call (no randomness), so all ranks of a data-parallel job agree.
    """
    if len(dataset) == 0:
        raise ValueError("cannot estimate the data variance of an empty dataset")
    indices = np.unique(np.linspace(0, len(dataset) - 1, min(samples, len(dataset))).round().astype(np.int64))
    total = total_sq = 0.0
    count = 0
    for index in indices:
        x = dataset[int(index)]["video"].double().div(127.5).sub(1.0)
        total += float(x.sum())
        total_sq += float(x.square().sum())
        count += x.numel()
    mean = total / count
    return max(total_sq / count - mean * mean, 1e-8)


class PerceptualLoss(nn.Module):
    """Feature-space distance under a frozen TorchScript network (see the module docstring)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network.eval()
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device = "cpu") -> PerceptualLoss:
        """Load a TorchScript feature network; a missing or non-TorchScript file is a ValueError naming it."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"train.perceptual_weights: {path} does not exist")
        try:
            network = torch.jit.load(str(path), map_location=device)
        except RuntimeError as error:
            raise ValueError(
                f"train.perceptual_weights: {path} is not a TorchScript module mapping frames [N, 3, H, W] in "
                f"[-1, 1] to feature maps ({error})"
            ) from error
        return cls(network)

    def train(self, mode: bool = True) -> PerceptualLoss:
        """The feature network always stays in eval mode."""
        super().train(mode)
        self.network.eval()
        return self

    def forward(self, reconstruction: Tensor, target: Tensor) -> Tensor:
        """Distance between frames ``[N, C, H, W]`` (one channel is repeated to three), a scalar."""
        if reconstruction.shape[1] == 1:
            reconstruction, target = reconstruction.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1)
        features = self._features(torch.cat([reconstruction, target]))
        loss = reconstruction.new_zeros((), dtype=torch.float32)
        for feature in features:
            fake, real = _unit_channels(feature.float()).chunk(2)
            loss = loss + (fake - real.detach()).square().sum(1).mean()
        return loss

    def _features(self, frames: Tensor) -> list[Tensor]:
        out = self.network(frames)
        features = [out] if isinstance(out, Tensor) else list(out)
        if not features or not all(isinstance(f, Tensor) for f in features):
            raise TypeError("the perceptual network must return a tensor or a list/tuple of tensors")
        return features


def _unit_channels(x: Tensor, eps: float = 1e-10) -> Tensor:
    return x / (x.square().sum(1, keepdim=True).sqrt() + eps)
