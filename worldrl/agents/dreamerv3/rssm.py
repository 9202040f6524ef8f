"""Recurrent state-space model: a deterministic GRU state ``h`` and ``stoch`` categorical latents ``z`` of ``classes``.

    prior      p(z_t | h_t),          h_t = GRU(h_{t-1}, z_{t-1}, a_t)
    posterior  q(z_t | h_t, e_t),     e_t = encoder(x_t)

``a_t`` is the action that led to ``x_t`` (worldrl's step convention, zero on
``is_first`` rows), so observing needs no shifted action stream. Latents are
sampled with 1% unimix and straight-through gradients. The GRU is DreamerV3's
normalised variant (one bias-free linear map of ``[x, h]``, LayerNorm, update
gate biased by -1). Its input ``x`` is one dense layer of ``[z, a]`` (the 2023
code, ``inputs="joint"``) or, with ``inputs="separate"`` (the 2024 code), one
dense layer each for ``h``, ``z`` and ``a``, concatenated: a low-dimensional
action then weighs as much as the latents instead of being one input in a
thousand. The posterior's linear map of ``[h, e]`` is split so the
embedding half runs once for the whole sequence outside the time loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldrl.agents.dreamerv3.networks import OneHotCategorical, dense, init_weights, unimix_probs

State = dict[str, Tensor]
"""``deter [..., D]``, ``stoch [..., S, C]`` (one-hot samples), ``logits [..., S, C]``."""


def stack_states(states: list[State], dim: int) -> State:
    return {key: torch.stack([s[key] for s in states], dim) for key in states[0]}


class RSSM(nn.Module):
    def __init__(self, embed_dim: int, action_dim: int, deter: int = 512, units: int = 512, stoch: int = 32,
                 classes: int = 32, unimix: float = 0.01, inputs: str = "joint"):
        super().__init__()
        if inputs not in ("joint", "separate"):
            raise ValueError(f"RSSM inputs must be 'joint' or 'separate', got {inputs!r}")
        self.deter_dim, self.stoch_dim, self.classes, self.unimix = deter, stoch, classes, unimix
        self.initial_deter = nn.Parameter(torch.zeros(deter))
        if inputs == "joint":
            self.img_in = dense(stoch * classes + action_dim, units)
        else:
            self.img_in = nn.ModuleList([dense(deter, units), dense(stoch * classes, units), dense(action_dim, units)])
        gru_in = units if inputs == "joint" else 3 * units
        self.gru = nn.Linear(gru_in + deter, 3 * deter, bias=False)
        self.gru_norm = nn.LayerNorm(3 * deter, eps=1e-3)
        self.img_out = dense(deter, units)
        self.img_logits = nn.Linear(units, stoch * classes)
        self.obs_deter = nn.Linear(deter, units, bias=False)
        self.obs_embed = nn.Linear(embed_dim, units, bias=False)
        self.obs_norm = nn.LayerNorm(units, eps=1e-3)
        self.obs_logits = nn.Linear(units, stoch * classes)
        self.apply(init_weights)

    @property
    def feat_dim(self) -> int:
        return self.deter_dim + self.stoch_dim * self.classes

    def feat(self, state: State) -> Tensor:
        """``[h, z]`` flattened: the input of every head, the actor and the critic."""
        return torch.cat([state["deter"], state["stoch"].flatten(-2)], -1)

    def initial(self, batch: int) -> State:
        """Learned initial state: ``h = tanh(w)`` and ``z`` the mode of its prior."""
        deter = torch.tanh(self.initial_deter)[None]
        logits = self._logits(self.img_logits(self.img_out(deter)))
        stoch = F.one_hot(logits.argmax(-1), self.classes).float()
        return {"deter": deter.expand(batch, -1), "stoch": stoch.expand(batch, -1, -1),
                "logits": logits.expand(batch, -1, -1)}

    def _logits(self, x: Tensor) -> Tensor:
        return x.float().unflatten(-1, (self.stoch_dim, self.classes))

    def _sample(self, logits: Tensor, generator: torch.Generator | None, temperature: float = 1.0) -> Tensor:
        """A one-hot latent: sampled (logits divided by ``temperature``), or the mode at ``temperature=0``."""
        if temperature == 0:
            return OneHotCategorical(logits, self.unimix).mode()
        return OneHotCategorical(logits if temperature == 1 else logits / temperature, self.unimix).sample(generator)

    def _gru(self, x: Tensor, deter: Tensor) -> Tensor:
        reset, cand, update = self.gru_norm(self.gru(torch.cat([x, deter], -1))).chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update - 1)
        return update * cand + (1 - update) * deter

    def img_step(self, state: State, action: Tensor, generator: torch.Generator | None = None,
                 temperature: float = 1.0) -> State:
        """Prior state after ``action`` (continuous actions are scaled into ``[-1, 1]``, without gradient);
        ``temperature`` as in :meth:`_sample` (the learned simulator's option)."""
        action = action / action.detach().abs().clamp_min(1.0)
        stoch = state["stoch"].flatten(-2).to(action.dtype)
        if isinstance(self.img_in, nn.ModuleList):
            x = torch.cat([layer(part) for layer, part in zip(self.img_in, (state["deter"], stoch, action))], -1)
        else:
            x = self.img_in(torch.cat([stoch, action], -1))
        deter = self._gru(x, state["deter"])
        logits = self._logits(self.img_logits(self.img_out(deter)))
        return {"deter": deter, "stoch": self._sample(logits, generator, temperature), "logits": logits}

    def obs_step(self, state: State, action: Tensor, embed_proj: Tensor, is_first: Tensor,
                 generator: torch.Generator | None = None, temperature: float = 1.0,
                 initial: State | None = None) -> tuple[State, State]:
        """(posterior, prior) for one step; rows with ``is_first`` restart from :meth:`initial` with a zero action.

        ``embed_proj`` is :meth:`project_embed` of the encoder's output;
        ``initial`` is :meth:`initial` of the batch when the caller already has it (a sequence computes it once).
        """
        keep = (~is_first).float()[:, None]
        init = self.initial(len(is_first)) if initial is None else initial
        state = {key: value * self._expand(keep, value) + init[key] * self._expand(1 - keep, value)
                 for key, value in state.items()}
        prior = self.img_step(state, action * keep, generator, temperature)
        x = F.silu(self.obs_norm(self.obs_deter(prior["deter"]) + embed_proj))
        logits = self._logits(self.obs_logits(x))
        return {"deter": prior["deter"], "stoch": self._sample(logits, generator, temperature), "logits": logits}, prior

    @staticmethod
    def _expand(mask: Tensor, value: Tensor) -> Tensor:
        return mask.reshape(-1, *[1] * (value.ndim - 1))

    def project_embed(self, embed: Tensor) -> Tensor:
        return self.obs_embed(embed)

    def observe(self, embed: Tensor, action: Tensor, is_first: Tensor, state: State | None = None,
                generator: torch.Generator | None = None) -> tuple[State, State]:
        """Posterior and prior states ``[B, T, ...]`` of a batch of sequences ``embed [B, T, E]``."""
        initial = self.initial(embed.shape[0])
        state = initial if state is None else state
        embed_proj = self.project_embed(embed)
        posts, priors = [], []
        for t in range(embed.shape[1]):
            state, prior = self.obs_step(state, action[:, t], embed_proj[:, t], is_first[:, t], generator,
                                         initial=initial)
            posts.append(state)
            priors.append(prior)
        return stack_states(posts, 1), stack_states(priors, 1)

    def imagine(self, policy: Callable[[State], Tensor], start: State, horizon: int,
                generator: torch.Generator | None = None) -> tuple[State, Tensor]:
        """States ``[H+1, N, ...]`` (``start`` first) and actions ``[H, N, A]`` of ``horizon`` imagined steps."""
        states, actions = [start], []
        for _ in range(horizon):
            actions.append(policy(states[-1]))
            states.append(self.img_step(states[-1], actions[-1], generator))
        return stack_states(states, 0), torch.stack(actions, 0)

    def kl_losses(self, post: State, prior: State, free_nats: float) -> tuple[Tensor, Tensor, Tensor]:
        """Dynamics loss ``KL[sg(q) || p]``, representation loss ``KL[q || sg(p)]`` (each summed over the latents
        and clipped below at ``free_nats``) and the raw KL, all ``[...]``."""
        post_probs = unimix_probs(post["logits"], self.unimix)
        prior_probs = unimix_probs(prior["logits"], self.unimix)
        post_log, prior_log = post_probs.log(), prior_probs.log()
        dyn = (post_probs.detach() * (post_log.detach() - prior_log)).sum((-2, -1))
        rep = (post_probs * (post_log - prior_log.detach())).sum((-2, -1))
        return dyn.clamp_min(free_nats), rep.clamp_min(free_nats), rep.detach()
