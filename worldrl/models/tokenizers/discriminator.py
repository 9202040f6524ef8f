"""PatchGAN discriminator (pix2pix) and the VQ-GAN adversarial losses.

The discriminator scores overlapping patches of single frames ``[N, C, H, W]``
(the training loop folds time into the batch). Its hidden layers use
GroupNorm rather than pix2pix's BatchNorm: BatchNorm's batch statistics
differ between real and fake halves, between DDP ranks and collapse at
batch 1, while GroupNorm behaves the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class DiscriminatorConfig:
    channels: int = 64
    """Channels of the first layer; doubled per layer up to 8x."""
    num_layers: int = 3
    """Strided layers after the first (3 gives 70x70 receptive fields at 256 px, pix2pix's default)."""


def _groups(channels: int, limit: int = 32) -> int:
    return max(g for g in range(1, min(limit, channels) + 1) if channels % g == 0)


class PatchGAN(nn.Module):
    """Maps frames ``[N, C, H, W]`` in ``[-1, 1]`` to patch logits ``[N, 1, h, w]``."""

    def __init__(self, in_channels: int = 3, config: DiscriminatorConfig | None = None):
        super().__init__()
        config = config or DiscriminatorConfig()
        if config.channels < 1 or config.num_layers < 1:
            raise ValueError(f"discriminator channels and num_layers must be >= 1, got {config}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, config.channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        channels = config.channels
        for n in range(1, config.num_layers + 1):
            out = config.channels * min(2**n, 8)
            stride = 2 if n < config.num_layers else 1
            layers += [
                nn.Conv2d(channels, out, 4, stride, 1, bias=False),
                nn.GroupNorm(_groups(out), out),
                nn.LeakyReLU(0.2),
            ]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, frames: Tensor) -> Tensor:
        return self.net(frames)


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Discriminator hinge loss: push real logits above 1 and fake ones below -1."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_loss(logits_fake: Tensor) -> Tensor:
    """The tokenizer's adversarial loss: raise the discriminator's logits on its reconstructions."""
    return -logits_fake.mean()


def adaptive_weight(rec_loss: Tensor, g_loss: Tensor, last_layer_weight: Tensor, max_weight: float = 1e4) -> Tensor:
    """VQ-GAN's balance: ||d rec / d W|| / (||d g / d W|| + 1e-4) at the decoder's last layer ``W``, detached.

    Scales the GAN loss so that its gradient at the output layer is as large
    as the reconstruction loss's, whatever their raw magnitudes.
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer_weight, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer_weight, retain_graph=True)[0]
    weight = rec_grad.norm() / (g_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()
