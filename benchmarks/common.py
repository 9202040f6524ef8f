"""What every benchmark records: the machine it ran on."""

from __future__ import annotations

import os
import platform

import numpy as np


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
