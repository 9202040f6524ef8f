"""Reconstruction metrics of videos in ``[-1, 1]``: per-frame PSNR and SSIM (torchmetrics).

Both take float video ``[B, C, T, H, W]`` (or frames ``[N, C, H, W]``),
clamp the reconstruction to the data range, and return one value per frame
so that callers can average over any number of batches and ranks exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

DATA_RANGE = 2.0
"""Width of the value range ``[-1, 1]``."""


def fold_time(video: Tensor) -> Tensor:
    """Video ``[B, C, T, H, W]`` -> frames ``[B*T, C, H, W]`` (frames ``[N, C, H, W]`` pass through)."""
    if video.dim() == 4:
        return video
    b, c, t, h, w = video.shape
    return video.transpose(1, 2).reshape(b * t, c, h, w)


def psnr_per_frame(reconstruction: Tensor, target: Tensor) -> Tensor:
    """PSNR in dB of each frame, ``[N]`` (``N = B*T``)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    preds, target = fold_time(reconstruction).float().clamp(-1, 1), fold_time(target).float()
    return peak_signal_noise_ratio(preds, target, data_range=DATA_RANGE, reduction="none", dim=(1, 2, 3))


def ssim_per_frame(reconstruction: Tensor, target: Tensor) -> Tensor:
    """SSIM (11x11 Gaussian window) of each frame, ``[N]``; frames must be at least 11 pixels on each side."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    preds, target = fold_time(reconstruction).float().clamp(-1, 1), fold_time(target).float()
    return structural_similarity_index_measure(preds, target, data_range=DATA_RANGE, reduction="none")


@torch.no_grad()
def psnr(reconstruction: Tensor, target: Tensor) -> Tensor:
    """Mean per-frame PSNR (a scalar tensor)."""
    return psnr_per_frame(reconstruction, target).mean()


@torch.no_grad()
def ssim(reconstruction: Tensor, target: Tensor) -> Tensor:
    """Mean per-frame SSIM (a scalar tensor)."""
    return ssim_per_frame(reconstruction, target).mean()
