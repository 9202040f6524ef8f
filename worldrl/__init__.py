"""worldrl: reinforcement learning with video world models.

``import worldrl`` registers the ``worldrl/...`` environment ids with Gymnasium.
"""

from worldrl.envs import make, register_envs, registered_ids

register_envs()

__version__ = "0.1.0"
__all__ = ["make", "registered_ids"]
