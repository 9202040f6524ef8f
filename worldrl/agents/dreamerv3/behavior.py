"""DreamerV3's actor-critic, learned in imagination from every posterior state of a replay batch.

For each reward term k (the reward head; Plan2Explore's disagreement) a
critic v_k, a slow EMA copy of it and a return normaliser S_k:

    R_t = r_{t+1} + gamma c_{t+1} ((1 - lambda) v(s_{t+1}) + lambda R_{t+1}),   R_H = v(s_H)
    critic:  -ln p_v(sg R_t | s_t) - slow_reg * ln p_v(sg v_slow(s_t) | s_t)
    actor:   A_t = sum_k w_k / sum(w) * (R^k_t - v_k(s_t)) / max(1, S_k)
             reinforce: -sg(A_t) ln pi(a_t | s_t);  backprop: -A_t (through the dynamics)
             minus entropy * H[pi(. | s_t)]

with S the EMA (decay 0.99) of the 5th-95th percentile range of the returns,
each step weighted by the cumulative predicted continuation ``prod gamma c``.
One critic per reward term, each normalised separately, is how DreamerV3's
code combines task and exploration rewards: weights then compare terms of
very different scales (VIPER log-likelihoods, ensemble variances) on equal
footing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from worldrl.agents.dreamerv3.config import BehaviorConfig
from worldrl.agents.dreamerv3.networks import MLP, Normal, OneHotCategorical, TwoHot, symlog_bins
from worldrl.agents.dreamerv3.rssm import RSSM, State

RewardFn = Callable[[Tensor, Tensor], dict[str, Tensor]]
"""``(feat [H+1, N, F], actions [H, N, A]) -> {term: reward [H, N]}`` (reward t is for the step s_t -> s_{t+1})."""


class Actor(nn.Module):
    """Policy over features: unimix one-hot for discrete actions, a Gaussian with tanh mean and bounded std else."""

    def __init__(self, feat_dim: int, action_dim: int, discrete: bool, config: BehaviorConfig):
        super().__init__()
        self.discrete, self.config = discrete, config
        self.net = MLP(feat_dim, action_dim * (1 if discrete else 2), config.units, config.layers)

    def forward(self, feat: Tensor) -> OneHotCategorical | Normal:
        out = self.net(feat).float()
        if self.discrete:
            return OneHotCategorical(out, self.config.unimix)
        mean, std = out.chunk(2, -1)
        low, high = self.config.min_std, self.config.max_std
        return Normal(torch.tanh(mean), (high - low) * torch.sigmoid(std + 2.0) + low)


class Critic(nn.Module):
    """Two-hot value head (output layer zero-initialised) with a slow EMA copy for its regulariser."""

    def __init__(self, feat_dim: int, config: BehaviorConfig):
        super().__init__()
        self.net = MLP(feat_dim, config.critic_bins, config.units, config.layers, zero_out=True)
        self.slow = copy.deepcopy(self.net).requires_grad_(False)
        self.register_buffer("bins", symlog_bins(config.critic_bins), persistent=False)

    def forward(self, feat: Tensor) -> TwoHot:
        return TwoHot(self.net(feat), self.bins)

    @torch.no_grad()
    def slow_value(self, feat: Tensor) -> Tensor:
        return TwoHot(self.slow(feat), self.bins).mean

    @torch.no_grad()
    def update_slow(self, fraction: float) -> None:
        for slow, fast in zip(self.slow.parameters(), self.net.parameters()):
            slow.lerp_(fast, fraction)


class ReturnNormalizer(nn.Module):
    """EMA of the ``low``-``high`` percentiles of the returns; the scale is ``max(1, high - low)``."""

    def __init__(self, decay: float = 0.99, low: float = 0.05, high: float = 0.95):
        super().__init__()
        self.decay, self.quantiles = decay, (low, high)
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))

    @torch.no_grad()
    def forward(self, returns: Tensor) -> Tensor:
        """Update with a batch of returns and give the current scale."""
        q = torch.quantile(returns.detach().float().flatten(), torch.tensor(self.quantiles, device=returns.device))
        self.low.lerp_(q[0], 1 - self.decay)
        self.high.lerp_(q[1], 1 - self.decay)
        return self.scale

    @property
    def scale(self) -> Tensor:
        return (self.high - self.low).clamp_min(1.0)


def lambda_returns(reward: Tensor, value: Tensor, discount: Tensor, lam: float) -> Tensor:
    """``R_t = r_t + d_t ((1 - lam) v_{t+1} + lam R_{t+1})`` with ``R_H = v_H``; ``reward``/``discount`` ``[H, N]``
    are those of the step t -> t+1 and ``value`` is ``[H+1, N]``. Returns ``[H, N]``."""
    interm = reward + discount * (1 - lam) * value[1:]
    returns, last = [], value[-1]
    for t in reversed(range(reward.shape[0])):
        last = interm[t] + discount[t] * lam * last
        returns.append(last)
    return torch.stack(returns[::-1])


class ActorCritic(nn.Module):
    def __init__(self, feat_dim: int, action_dim: int, discrete: bool, config: BehaviorConfig,
                 reward_weights: dict[str, float]):
        super().__init__()
        self.config, self.discrete = config, discrete
        if config.actor_grad not in ("auto", "reinforce", "backprop"):
            raise ValueError(f"behavior.actor_grad must be auto, reinforce or backprop, got {config.actor_grad!r}")
        if discrete and config.actor_grad == "backprop":
            raise ValueError("behavior.actor_grad=backprop needs continuous actions; discrete ones use reinforce")
        self.reinforce = discrete or config.actor_grad == "reinforce"
        self.reward_weights = {key: w for key, w in reward_weights.items() if w}
        if not self.reward_weights:
            raise ValueError("every reward weight is 0: the actor would have nothing to maximise")
        self.actor = Actor(feat_dim, action_dim, discrete, config)
        self.critics = nn.ModuleDict({key: Critic(feat_dim, config) for key in self.reward_weights})
        self.normalizers = nn.ModuleDict({
            key: ReturnNormalizer(config.return_decay, config.return_low, config.return_high)
            for key in self.reward_weights})
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def imagine(self, rssm: RSSM, start: State, generator: torch.Generator | None = None) -> tuple[State, Tensor]:
        """Imagined states ``[H+1, N, ...]`` and actions ``[H, N, A]``; the actor sees stop-gradient features."""
        return rssm.imagine(lambda s: self.actor(rssm.feat(s).detach()).sample(generator), start,
                            self.config.horizon, generator)

    def loss(self, rssm: RSSM, cont_logits: Callable[[Tensor], Tensor], rewards: RewardFn, start: State,
             start_cont: Tensor, generator: torch.Generator | None = None
             ) -> tuple[Tensor, Tensor, dict[str, Tensor], Tensor]:
        """Actor loss, critic loss (sum over terms), metrics and the imagined features ``[H+1, N, F]``.

        ``start`` are posterior states ``[N, ...]`` (detached here), ``start_cont``
        ``[N]`` whether each start is non-terminal. Imagination only carries
        gradients for the backprop actor gradient.
        """
        c = self.config
        start = {key: value.detach() for key, value in start.items()}
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.reinforce):
            traj, actions = self.imagine(rssm, start, generator)
            feat = rssm.feat(traj)
            cont = torch.cat([start_cont[None].float(), (cont_logits(feat[1:]) > 0).float()])
            discount = c.discount * cont
            terms = rewards(feat, actions)
            advantage, term_returns = 0.0, {}
            total = sum(self.reward_weights.values())
            for key, weight in self.reward_weights.items():
                value = self.critics[key](feat).mean
                returns = lambda_returns(terms[key], value, discount[1:], c.lam)
                scale = self.normalizers[key](returns)
                advantage = advantage + weight / total * (returns - value[:-1]) / scale
                term_returns[key] = returns
        weight = (torch.cumprod(discount, 0) / c.discount).detach()[:-1]
        policy = self.actor(feat[:-1].detach())
        entropy = policy.entropy()
        if self.reinforce:
            actor_loss = -policy.log_prob(actions.detach()) * advantage.detach()
        else:
            actor_loss = -advantage
        actor_loss = ((actor_loss - c.entropy * entropy) * weight).mean()
        critic_loss, metrics = 0.0, {}
        inputs = feat[:-1].detach()
        for key, returns in term_returns.items():
            critic = self.critics[key]
            dist = critic(inputs)
            loss = -dist.log_prob(returns.detach()) - c.slow_reg * dist.log_prob(critic.slow_value(inputs))
            critic_loss = critic_loss + (loss * weight).mean()
            metrics.update({f"behavior/{key}_return": returns.mean().detach(),
                            f"behavior/{key}_reward": terms[key].mean().detach(),
                            f"behavior/{key}_return_scale": self.normalizers[key].scale.clone(),
                            f"behavior/{key}_critic_loss": (loss * weight).mean().detach()})
        metrics.update({"behavior/actor_loss": actor_loss.detach(), "behavior/entropy": entropy.mean().detach(),
                        "behavior/advantage": advantage.mean().detach(), "behavior/cont": cont.mean()})
        return actor_loss, critic_loss, metrics, feat

    def update_slow(self) -> None:
        """Count an update; every ``slow_critic_every`` updates move the slow critics toward the critics."""
        self.updates += 1
        if int(self.updates) % self.config.slow_critic_every == 0:
            for critic in self.critics.values():
                critic.update_slow(self.config.slow_critic_fraction)
