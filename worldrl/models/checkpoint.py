"""Model folders shared by tokenizers and video models: a JSON file naming the kind and config, and safetensors weights.

Both are written atomically and read without unpickling anything; every
problem (a missing file, a corrupt config, an unknown kind, weights that do
not fit the config) is a :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from worldrl.atomic import atomic_write, write_json_atomic
from worldrl.config import to_dict

WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not fit what the caller asked for."""


def save_model(model: nn.Module, directory: str | Path, config_file: str) -> Path:
    """Write ``config_file`` (kind and config) and ``model.safetensors`` of ``model`` into ``directory``."""
    from safetensors.torch import save

    directory = Path(directory)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_FILE, lambda file: file.write(save(state)))
    write_json_atomic(
        directory / config_file,
        {"format_version": FORMAT_VERSION, "kind": model.kind, "config": to_dict(model.config)},
        indent=2,
    )
    return directory


def read_model_config(directory: str | Path, config_file: str, what: str, registry: dict[str, Any]) -> tuple[str, Any]:
    """``(kind, config)`` of the model folder ``directory``, after checking both files exist and the kind is known."""
    directory = Path(directory)
    for file in (directory / config_file, directory / WEIGHTS_FILE):
        if not file.is_file():
            raise CheckpointError(f"not a {what} checkpoint: {file} is missing")
    path = directory / config_file
    try:
        meta = json.loads(path.read_text())
        kind, config = meta["kind"], meta["config"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: corrupt {what} config ({error})") from error
    if kind not in registry:
        raise CheckpointError(f"{path}: unknown {what} kind {kind!r}; known: {', '.join(sorted(registry))}")
    return kind, config


def load_weights(model: nn.Module, directory: str | Path, config_file: str) -> None:
    """Load ``model.safetensors`` from ``directory`` into ``model``; it must fit exactly."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights_file, where = Path(directory) / WEIGHTS_FILE, Path(directory) / config_file
    try:
        state = load_file(weights_file)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights_file}: corrupt or truncated weights ({error})") from error
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise CheckpointError(f"{weights_file} does not match the {model.kind} config in {where}: {error}") from error
    if missing or unexpected:
        raise CheckpointError(
            f"{weights_file} does not match the {model.kind} config in {where}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def build_from_section(registry: dict[str, type], section: dict[str, Any]) -> Any:
    """A model from a preset's ``model:`` section: ``type`` names the kind in ``registry``, the rest is its config."""
    section = dict(section)
    kind = section.pop("type", None)
    if kind not in registry:
        raise ValueError(f"model.type must be one of {', '.join(sorted(registry))}, got {kind!r}")
    return registry[kind].from_config(section)
