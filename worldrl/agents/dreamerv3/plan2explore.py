"""Plan2Explore (Sekar et al. 2020) inside DreamerV3: ensemble disagreement as an imagined reward.

``members`` one-step models map ``(h_t, z_t, a_{t+1})`` to the next latent
(``z_{t+1}`` by default, DreamerV3's ``disag_target``), trained with MSE on
posterior states of replay batches (transitions into a new episode are
masked out). In imagination the reward of the step ``s_t -> s_{t+1}`` under
action ``a_t`` is the standard deviation across members, averaged over the
predicted dimensions: high where the ensemble has not been trained, falling
as it agrees. Members share one batched matmul per layer
(:class:`~worldrl.exploration.disagreement.EnsembleLinear`) and, as DreamerV3's
heads, use LayerNorm (one gain and offset per member) and SiLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldrl.agents.dreamerv3.config import Plan2ExploreConfig
from worldrl.agents.dreamerv3.rssm import RSSM, State
from worldrl.exploration.disagreement import EnsembleLinear


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dimension of ``[K, N, D]`` with a gain and an offset per member."""

    def __init__(self, members: int, features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, features))
        self.bias = nn.Parameter(torch.zeros(members, 1, features))

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, x.shape[-1:], eps=1e-3) * self.weight + self.bias


class Plan2Explore(nn.Module):
    def __init__(self, rssm: RSSM, action_dim: int, config: Plan2ExploreConfig):
        super().__init__()
        if config.target not in ("stoch", "deter", "feat"):
            raise ValueError(f"plan2explore.target must be stoch, deter or feat, got {config.target!r}")
        self.config, self.deter_dim = config, rssm.deter_dim
        sizes = {"stoch": rssm.feat_dim - rssm.deter_dim, "deter": rssm.deter_dim, "feat": rssm.feat_dim}
        dims = [rssm.feat_dim + action_dim] + [config.units] * config.layers
        layers: list[nn.Module] = []
        for size_in, size_out in zip(dims, dims[1:]):
            layers += [EnsembleLinear(config.members, size_in, size_out), EnsembleLayerNorm(config.members, size_out),
                       nn.SiLU()]
        self.net = nn.Sequential(*layers, EnsembleLinear(config.members, dims[-1], sizes[config.target]))

    def target(self, feat: Tensor) -> Tensor:
        """The part of ``[h, z]`` the ensemble predicts."""
        if self.config.target == "stoch":
            return feat[..., self.deter_dim:]
        return feat[..., :self.deter_dim] if self.config.target == "deter" else feat

    def predict(self, feat: Tensor, action: Tensor) -> Tensor:
        """Every member's prediction ``[K, ..., D]`` for inputs ``[..., F]`` and ``[..., A]``."""
        x = torch.cat([feat, action.to(feat.dtype)], -1)
        out = self.net(x.reshape(1, -1, x.shape[-1]).expand(self.config.members, -1, -1))
        return out.reshape(self.config.members, *x.shape[:-1], -1)

    def loss(self, post: State, action: Tensor, is_first: Tensor, rssm: RSSM) -> tuple[Tensor, dict[str, Tensor]]:
        """Sum over members of the MSE (summed over dimensions) of ``z_{t+1}`` from ``(h_t, z_t, a_{t+1})``."""
        feat = rssm.feat({key: value.detach() for key, value in post.items()})
        prediction = self.predict(feat[:, :-1], action[:, 1:]).float()
        error = (prediction - self.target(feat[:, 1:]).float()).pow(2).sum(-1)
        valid = (~is_first[:, 1:]).float()
        loss = (error * valid).sum((1, 2)).div(valid.sum().clamp_min(1.0)).sum()
        return loss, {"plan2explore/loss": loss.detach() / self.config.members}

    def reward(self, feat: Tensor, actions: Tensor) -> Tensor:
        """Disagreement ``[H, N]`` of the imagined steps ``(feat[t], actions[t]) -> feat[t+1]``."""
        return self.predict(feat[:-1], actions).float().std(0, unbiased=False).mean(-1)
