"""``simulator.json`` in a video model folder: the real env a learned simulator imitates.

``worldrl train-video-model`` writes it from the first dataset folder's
``dataset.json``: the env id and arguments, its frame shape and action space
(JSON, see :func:`space_to_dict`) and the longest episode (the simulator's
default horizon). :class:`~worldrl.envs.simulator.WorldModelVectorEnv`
copies the action space from it, and ``worldrl evaluate`` the real env's
arguments. A DreamerV3 run folder (``worldrl train-agent --agent dreamerv3``)
needs no such file: :func:`read_spec` reads the env from its ``config.yaml``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worldrl.atomic import write_json_atomic

SPEC_FILE = "simulator.json"
SIM_ID = "worldrl/sim-v0"


def space_to_dict(space: spaces.Space) -> dict[str, Any]:
    """A Box or Discrete space as JSON data."""
    if isinstance(space, spaces.Discrete):
        return {"type": "discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        return {"type": "box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": space.low.tolist(), "high": space.high.tolist()}
    raise TypeError(f"a simulator copies Box or Discrete action spaces, not {space}")


def space_from_dict(data: Mapping[str, Any]) -> spaces.Space:
    """The inverse of :func:`space_to_dict`."""
    if data["type"] == "discrete":
        return spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
    dtype = np.dtype(data["dtype"])
    return spaces.Box(np.asarray(data["low"], dtype), np.asarray(data["high"], dtype), tuple(data["shape"]), dtype)


def write_spec(video_model_dir: str | Path, data_folders: Sequence[str | Path]) -> dict[str, Any]:
    """Write ``simulator.json`` for a model trained on ``data_folders`` (the first one's env); returns it.

    The action space comes from making the env once; when that fails (e.g.
    RLBench is not installed) it is left out and the simulator needs ``action_space=``.
    """
    from worldrl.data.folder import EpisodeFolder

    folder = EpisodeFolder(data_folders[0])
    env_id, env_kwargs = folder.metadata.get("env_id"), folder.metadata.get("env_kwargs") or {}
    spec: dict[str, Any] = {"env_id": env_id, "env_kwargs": env_kwargs,
                            "frame_shape": list(folder.image_shape or ()),
                            "horizon": int(folder.lengths.max()) if len(folder) else None, "action_space": None}
    if env_id is not None:
        try:
            env = gym.make(env_id, **env_kwargs)
            spec["action_space"] = space_to_dict(env.action_space)
            env.close()
        except Exception as error:  # noqa: BLE001  (any failure only leaves the space out)
            spec["action_space_error"] = f"{type(error).__name__}: {error}"
    write_json_atomic(Path(video_model_dir) / SPEC_FILE, spec, indent=2)
    return spec


def agent_run(path: str | Path) -> Path | None:
    """The run folder when ``path`` is a ``train-agent`` run (the folder, or its ``agent.pt``), else None."""
    path = Path(path)
    folder = path.parent if path.is_file() and path.suffix == ".pt" else path
    return folder if (folder / "config.yaml").is_file() and (folder / "agent.pt").is_file() else None


def read_spec(video_model_dir: str | Path) -> dict[str, Any]:
    """The folder's ``simulator.json``, or an empty dict when it has none; for a ``train-agent`` run (the
    DreamerV3 backend) the env id and arguments of its ``config.yaml``, and its ``max_episode_steps`` as the
    horizon (the action space comes from the agent's weights, see :mod:`worldrl.envs.simulator_backends`)."""
    run = agent_run(video_model_dir)
    if run is not None:
        from worldrl.config import load_yaml

        env = load_yaml(run / "config.yaml").get("env") or {}
        kwargs = dict(env.get("kwargs") or {})
        return {"env_id": env.get("id"), "env_kwargs": kwargs, "horizon": kwargs.get("max_episode_steps")}
    path = Path(video_model_dir) / SPEC_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def real_env_kwargs(sim_kwargs: Mapping[str, Any], env_id: str) -> dict[str, Any]:
    """Arguments for the real env ``env_id`` of a run trained in the simulator made with ``sim_kwargs``: the
    recorded ones when ``env_id`` is the env the simulator's model was trained on, else none."""
    model = sim_kwargs.get("model")
    spec = read_spec(model) if model is not None else {}
    return dict(spec.get("env_kwargs") or {}) if spec.get("env_id") == env_id else {}


def register_simulator() -> None:
    """Register ``worldrl/sim-v0`` (single env and vector entry point); the module loads only when made."""
    if SIM_ID not in gym.registry:
        gym.register(SIM_ID, entry_point="worldrl.envs.simulator:WorldModelEnv",
                     vector_entry_point="worldrl.envs.simulator:WorldModelVectorEnv")
