"""DreamerV3 (Hafner et al. 2023) with Plan2Explore, in PyTorch; see :mod:`.agent` for the entry point."""

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
