"""DreamerV3 (Hafner et al. 2023) with Plan2Explore, in PyTorch; see :mod:`.agent` for the entry point.

Modules: :mod:`.networks` (symlog, LayerNorm+SiLU blocks, two-hot and unimix
categorical), :mod:`.rssm`, :mod:`.world_model`, :mod:`.behavior`
(actor-critic in imagination), :mod:`.plan2explore`, :mod:`.agent`, and
:mod:`.config` (presets in ``configs/agents/dreamerv3*.yaml``).

Where this follows VIPER's Table E.3 rather than the DreamerV3 paper, or
differs from both (each is a config value unless said otherwise):

- Discount 0.995 (Table E.3), not DreamerV3's 0.997 (``1 - 1/333``).
- World-model Adam: lr 1e-4, eps 1e-6, global-norm clip 100 (Table E.3); the
  paper's code uses eps 1e-8 and clip 1000. Actor and critic: DreamerV3's lr
  3e-5, eps 1e-5, clip 100 (Table E.3 lists a single lr, 1e-4).
- KL scales are DreamerV3's dynamics 0.5 / representation 0.1 with 1 free
  nat (summed over the 32 latents before clipping). Table E.3's "KL balance
  0.667" (DreamerV2's form) would be ``dyn_scale=0.667, rep_scale=0.333``.
- Slow critic: EMA of 2% after every update (DreamerV3's code). Table E.3's
  "target update every 50" would be ``slow_critic_every=50,
  slow_critic_fraction=1``.
- Plan2Explore: 10 members (Table E.3; DreamerV3's code uses 8). The
  disagreement of ``(s_t, a_t)`` rewards the step ``s_t -> s_{t+1}``, aligned
  with the reward head's prediction at ``s_{t+1}``; DreamerV3's code uses the
  disagreement of ``(s_{t+1}, a_{t+1})`` there, one step late. Transitions into
  a new episode are left out of the ensemble's loss. As in DreamerV3's
  ``Explore`` behaviour each reward term has its own critic and return
  normaliser; unlike it, one policy serves both acting and evaluation (as in
  VIPER) instead of separate task and exploration policies.
- Every replay batch starts from the learned initial state; DreamerV3's code
  carries the previous batch's last posterior into the next, which with
  uniformly sampled windows belongs to an unrelated sequence.
- worldrl's replay stores at row t the action that *led to* observation t,
  so observing needs no shifted action stream (the JAX code stores the action
  taken *at* t and shifts it); the model is the same.
- Continuous actions are clipped to ``[-1, 1]`` in :meth:`.DreamerV3.act`
  (DreamerV3 clips in its env wrapper); the env's action space must be
  normalised to ``[-1, 1]`` (DMC's is).
- Image sizes must be 4 times a power of two (64 -> 4 stages, 32 -> 3), with
  4x4 stride-2 convolutions down to 4x4, as the paper's ``minres``.
- The CPU preset shrinks every size (including 8 latents of 8 classes); the
  Atari preset takes CNN depth 96 and 1024-unit RSSM MLPs from DreamerV3's XL
  size, which Table E.3 does not list.
- Two choices of the 2024 rewrite are options, off by default (the 2023
  code's behaviour): ``behavior.actor_grad=reinforce`` takes the score-function
  gradient for continuous actions too (default ``auto``: backprop through the
  dynamics for continuous actions), and ``world_model.rssm_inputs=separate``
  gives ``h``, ``z`` and the action a dense layer each before the GRU (default
  ``joint``: one layer of ``[z, a]``, where a 1-D action is one input among
  hundreds).
- No ``torch.compile``: on a 2-core CPU it made the CPU preset's world-model
  update 1.1x faster after 2 minutes of compiling (the convolutions dominate),
  and the actor and critic losses, differentiated separately from one
  imagined graph, would need it kept alive. ``bf16`` switches on bf16
  autocast (losses and distributions stay float32).
"""

from worldrl.agents.dreamerv3.agent import DreamerV3
from worldrl.agents.dreamerv3.config import (
    BehaviorConfig,
    DreamerV3Config,
    OptimizerConfig,
    Plan2ExploreConfig,
    WorldModelConfig,
    load_dreamerv3_config,
)

__all__ = [
    "BehaviorConfig",
    "DreamerV3",
    "DreamerV3Config",
    "OptimizerConfig",
    "Plan2ExploreConfig",
    "WorldModelConfig",
    "load_dreamerv3_config",
]
