"""DreamerV3's world model: encoder, RSSM, decoder, two-hot reward head, continue head; one loss.

    L = image_scale * sum_pixels (x_hat - x)^2 + vector_scale * sum (y_hat - symlog y)^2
        - reward_scale * ln p(r) - cont_scale * ln p(c)
        + dyn_scale * max(1, KL[sg(q) || p]) + rep_scale * max(1, KL[q || sg(p)])

averaged over batch and time. Images are read as ``x / 255 - 0.5``; vector
inputs (the replay's ``state`` key) are symlog-squashed before the MLP
encoder and predicted in symlog space. The reward head's output layer starts
at zero, so its first predictions are 0 rather than noise over a range of
e^20.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldrl.agents.dreamerv3.config import WorldModelConfig
from worldrl.agents.dreamerv3.networks import (
    MLP,
    ConvDecoder,
    ConvEncoder,
    OneHotCategorical,
    TwoHot,
    symlog,
    symlog_bins,
)
from worldrl.agents.dreamerv3.rssm import RSSM, State, stack_states


class WorldModel(nn.Module):
    def __init__(self, config: WorldModelConfig, action_dim: int, image_shape: tuple[int, int, int] | None = None,
                 vector_dim: int | None = None):
        super().__init__()
        if image_shape is None and vector_dim is None:
            raise ValueError("the world model needs image_shape, vector_dim or both")
        self.config = config
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.vector_dim = vector_dim
        c = config
        embed_dim = 0
        if image_shape is not None:
            self.image_encoder = ConvEncoder(self.image_shape, c.cnn_depth, c.min_resolution)
            embed_dim += self.image_encoder.out_features
        if vector_dim is not None:
            self.vector_encoder = MLP(vector_dim, None, c.units, c.layers)
            embed_dim += c.units
        self.rssm = RSSM(embed_dim, action_dim, c.deter, c.units, c.stoch, c.classes, c.unimix, c.rssm_inputs)
        feat = self.rssm.feat_dim
        if image_shape is not None:
            self.image_decoder = ConvDecoder(feat, self.image_shape, c.cnn_depth, c.min_resolution)
        if vector_dim is not None:
            self.vector_decoder = MLP(feat, vector_dim, c.units, c.layers)
        self.reward_head = MLP(feat, c.reward_bins, c.units, c.layers, zero_out=True)
        self.cont_head = MLP(feat, 1, c.units, c.layers)
        self.register_buffer("bins", symlog_bins(c.reward_bins), persistent=False)

    def encode(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Embeddings ``[B, T, E]`` of ``image`` (uint8 ``[B, T, H, W, C]``) and/or ``state`` (``[B, T, S]``)."""
        parts = []
        if self.image_shape is not None:
            image = batch["image"]
            parts.append(self.image_encoder(image.flatten(0, 1)).unflatten(0, image.shape[:2]))
        if self.vector_dim is not None:
            parts.append(self.vector_encoder(symlog(batch["state"].float())))
        return torch.cat(parts, -1)

    def reward(self, feat: Tensor) -> TwoHot:
        return TwoHot(self.reward_head(feat), self.bins)

    def cont_logits(self, feat: Tensor) -> Tensor:
        return self.cont_head(feat).squeeze(-1).float()

    def observe(self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None) -> tuple[State, State]:
        """Posterior and prior states ``[B, T, ...]`` of a batch of sequences, from the learned initial state."""
        return self.rssm.observe(self.encode(batch), batch["action"], batch["is_first"], generator=generator)

    @torch.no_grad()
    def open_loop(self, batch: Mapping[str, Tensor], context: int, generator: torch.Generator | None = None) -> Tensor:
        """Decoded frames ``[B, T, H, W, C]`` in ``[-0.5, 0.5]`` of sequences ``[B, T, ...]``: reconstructions of
        the first ``context`` observed steps, then predictions from the replayed actions alone (open loop)."""
        if self.image_shape is None:
            raise ValueError("open-loop video predictions need a world model of images")
        observed = {key: value[:, :context] for key, value in batch.items()}
        post, _ = self.observe(observed, generator)
        state = {key: value[:, -1] for key, value in post.items()}
        imagined = []
        for t in range(context, batch["action"].shape[1]):
            state = self.rssm.img_step(state, batch["action"][:, t], generator)
            imagined.append(state)
        feat = self.rssm.feat(post)
        if imagined:
            feat = torch.cat([feat, self.rssm.feat(stack_states(imagined, 1))], 1)
        return self.image_decoder(feat.flatten(0, 1)).unflatten(0, feat.shape[:2]).float()

    def loss(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], State]:
        """Scalar loss, detached metrics and the posterior states ``[B, T, ...]`` (starts for imagination)."""
        c = self.config
        post, prior = self.observe(batch)
        feat = self.rssm.feat(post)
        terms: dict[str, Tensor] = {}
        if self.image_shape is not None:
            target = batch["image"].float() / 255.0 - 0.5
            recon = self.image_decoder(feat.flatten(0, 1)).unflatten(0, feat.shape[:2]).float()
            terms["image"] = (recon - target).pow(2).sum((-3, -2, -1)) * c.image_scale
        if self.vector_dim is not None:
            target = symlog(batch["state"].float())
            terms["vector"] = (self.vector_decoder(feat).float() - target).pow(2).sum(-1) * c.vector_scale
        terms["reward"] = -self.reward(feat).log_prob(batch["reward"]) * c.reward_scale
        cont = (~batch["is_terminal"]).float()
        terms["cont"] = c.cont_scale * F.binary_cross_entropy_with_logits(self.cont_logits(feat), cont,
                                                                           reduction="none")
        dyn, rep, kl = self.rssm.kl_losses(post, prior, c.free_nats)
        terms["dyn"] = dyn * c.dyn_scale
        terms["rep"] = rep * c.rep_scale
        loss = sum(terms.values()).mean()
        metrics = {f"wm/{key}_loss": value.mean().detach() for key, value in terms.items()}
        metrics.update({"wm/loss": loss.detach(), "wm/kl": kl.mean(),
                        "wm/post_entropy": _entropy(post["logits"], self.rssm.unimix).mean(),
                        "wm/prior_entropy": _entropy(prior["logits"], self.rssm.unimix).mean()})
        return loss, metrics, post


def _entropy(logits: Tensor, unimix: float) -> Tensor:
    """Entropy of the unimix latents, summed over the ``stoch`` distributions."""
    return OneHotCategorical(logits.detach(), unimix).entropy().sum(-1)
