"""Ensemble disagreement (Plan2Explore, Sekar et al. 2020), VIPER's exploration bonus with DreamerV3.

``K`` one-step models predict the next frame's features from the current
features and the action. Where they were trained they agree; elsewhere their
random initialisations show, so the variance of their predictions is the
novelty (epistemic, not noise: unlike a prediction error it does not stay
high on transitions that are merely unpredictable).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from worldrl.exploration.base import ExplorationBonus, Transition, check_tensor


class EnsembleLinear(nn.Module):
    """``K`` independent linear layers as one batched matmul: ``[K, B, in] -> [K, B, out]``."""

    def __init__(self, members: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default initialisation, drawn per member
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class Disagreement(ExplorationBonus):
    """Novelty of ``(features, action) -> next_features``: variance across an ensemble, averaged over features.

    Each member is an MLP (``layers`` hidden layers of ``hidden`` units, ELU); all members see the whole batch
    (no bootstrap masks: as in Plan2Explore, their diversity comes from the independent initialisations).
    The loss is the sum over members of each member's MSE to ``next_features``. Plan2Explore uses 10 members.
    """

    def __init__(
        self,
        feature_dim: int,
        action_dim: int,
        members: int = 10,
        hidden: int = 256,
        layers: int = 2,
        lr: float = 3e-4,
        normalize: bool = True,
        device: str | torch.device = "auto",
    ):
        super().__init__(normalize, device)
        self.feature_dim, self.action_dim, self.members = feature_dim, action_dim, members
        sizes = [feature_dim + action_dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for size_in, size_out in zip(sizes, sizes[1:]):
            blocks += [EnsembleLinear(members, size_in, size_out), nn.ELU()]
        self.ensemble = nn.Sequential(*blocks, EnsembleLinear(members, sizes[-1], feature_dim)).to(self.device)
        self.optimizer = torch.optim.Adam(self.ensemble.parameters(), lr=lr)

    def predict(self, transition: Transition) -> Tensor:
        """Every member's prediction of the next features, ``[K, B, F]``."""
        features = check_tensor(transition.features, "Disagreement features", (None, self.feature_dim))
        action = check_tensor(transition.action, "Disagreement action", (features.shape[0], self.action_dim))
        x = torch.cat([features, action.to(features.dtype)], dim=1).to(self.device, torch.float32)
        return self.ensemble(x.expand(self.members, -1, -1))

    def novelty(self, transition: Transition) -> Tensor:
        return self.predict(transition).var(dim=0, unbiased=False).mean(dim=1)

    def loss(self, transition: Transition) -> Tensor:
        prediction = self.predict(transition)
        target = check_tensor(transition.next_features, "Disagreement next_features", prediction.shape[1:])
        return (prediction - target.to(self.device, torch.float32)).pow(2).mean(dim=(1, 2)).sum()
