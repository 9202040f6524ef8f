"""Random Network Distillation (Burda et al. 2018), VIPER's exploration bonus with DrQ.

A predictor network is trained online to match a fixed, randomly initialised
target network on the frames the agent reaches; its error stays high on
frames unlike those seen so far, which is the novelty.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from worldrl.exploration.base import ExplorationBonus, Transition, check_tensor


def rnd_network(obs_shape: tuple[int, ...], channels: tuple[int, ...], hidden: int, embed_dim: int) -> nn.Sequential:
    """CNN (3x3 stride-2 convs, LeakyReLU) then an MLP ``hidden x hidden`` to an ``embed_dim`` embedding.

    3x3 stride 2 with padding 1 (as DrQ's encoder, Table E.4) halves each side per layer, so any frame size works,
    from 16x16 test frames up (the Nature-DQN 8x8/4x4 stack of the RND paper needs at least 36x36).
    Weights are orthogonal and biases zero, as in the RND paper: with PyTorch's default initialisation the
    embeddings of different frames share a large common part, which the predictor learns first, and novel frames
    then score barely above familiar ones.
    """
    height, width, in_channels = obs_shape
    layers: list[nn.Module] = []
    for out_channels in channels:
        layers += [nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), nn.LeakyReLU()]
        in_channels, height, width = out_channels, (height + 1) // 2, (width + 1) // 2
    network = nn.Sequential(
        *layers,
        nn.Flatten(),
        nn.Linear(in_channels * height * width, hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, embed_dim),
    )
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(module.weight)
            nn.init.zeros_(module.bias)
    return network


class RND(ExplorationBonus):
    """Novelty of ``next_obs`` (uint8 ``[B, H, W, C]``): squared error of a trained predictor against a random target.

    Frames are scaled to ``[-1, 1]`` (a fixed map, rather than the RND paper's running per-pixel
    normalisation, so the target's features never drift). Defaults follow VIPER: CNN 32-64-64,
    MLP 512x512, Adam lr 3e-4. Target and predictor share the architecture but not the weights;
    only the predictor is trained.
    """

    def __init__(
        self,
        obs_shape: tuple[int, int, int],
        channels: tuple[int, ...] = (32, 64, 64),
        hidden: int = 512,
        embed_dim: int = 512,
        lr: float = 3e-4,
        normalize: bool = True,
        device: str | torch.device = "auto",
    ):
        super().__init__(normalize, device)
        self.obs_shape = tuple(obs_shape)
        if len(self.obs_shape) != 3:
            raise ValueError(f"RND: obs_shape must be (H, W, C), got {obs_shape}")
        self.target = rnd_network(self.obs_shape, channels, hidden, embed_dim).to(self.device).requires_grad_(False)
        self.predictor = rnd_network(self.obs_shape, channels, hidden, embed_dim).to(self.device)
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=lr)

    def _errors(self, transition: Transition) -> Tensor:
        """Per-transition mean squared error ``[B]`` between predictor and target embeddings."""
        frames = check_tensor(transition.next_obs, "RND next_obs", (None, *self.obs_shape), torch.uint8)
        x = frames.to(self.device).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        with torch.no_grad():
            target = self.target(x)
        return (self.predictor(x) - target).pow(2).mean(dim=1)

    def novelty(self, transition: Transition) -> Tensor:
        return self._errors(transition)

    def loss(self, transition: Transition) -> Tensor:
        return self._errors(transition).mean()
