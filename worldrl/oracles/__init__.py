"""Task oracles: the expert policies whose rollouts become VIPER's expert videos.

VIPER trains its video model on videos of "task oracles": agents that see the
low-dimensional state and the task reward, so they can be trained (or
scripted) cheaply, while the videos record only pixels. This package provides
them and one interface to use any policy with the collector.

The policy protocol
-------------------
A policy is a callable ``policy(obs) -> actions`` that maps a *batch* of
observations, exactly as a Gymnasium vector env returns them (an array
``[N, ...]`` or a dict of such arrays), to a batch of actions ``[N, ...]``
(ints for ``Discrete`` spaces, floats for ``Box`` spaces). It may carry an
attribute ``required_obs_type``: ``"pixels+state"`` means it reads
``obs["state"]`` (or a plain state array), so an env that records pixels must
be made with ``obs_type="pixels+state"``; absent or None means any observation
will do. A policy that remembers earlier batches (the scripted oracles
estimate motion from the previous RAM) has a ``reset()`` method to forget them.

- :func:`as_policy` turns ``"random"``, ``"persistent"`` (random actions held
  for a few steps), ``"zero"`` (the do-nothing baseline), an SB3 model, a
  callable, a saved oracle or a scripted oracle name into a policy.
- :func:`load_oracle` loads ``oracle.zip`` (trained by
  :func:`~worldrl.oracles.sac.train_state_oracle`) or ``"scripted:<game>"``
  (:mod:`worldrl.oracles.atari`).
- :func:`evaluate_policy_return` measures a policy's mean episode return.
"""

from worldrl.oracles.policy import (
    PersistentRandomPolicy,
    Policy,
    RandomPolicy,
    SB3Policy,
    ZeroPolicy,
    as_policy,
    evaluate_policy_return,
    load_oracle,
)

__all__ = [
    "PersistentRandomPolicy",
    "Policy",
    "RandomPolicy",
    "SB3Policy",
    "ZeroPolicy",
    "as_policy",
    "evaluate_policy_return",
    "load_oracle",
]
