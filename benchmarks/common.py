"""What every benchmark records: the machine it ran on, and paths relative to the repository."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict:
    """Cores, CPU model, and the versions that move the figures (Python, torch, numpy, MuJoCo's GL backend)."""
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def shown(path: str | Path) -> str:
    """``path`` relative to the repository when it is inside it, so result JSONs hold no home folders."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
