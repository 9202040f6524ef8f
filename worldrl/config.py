"""YAML presets with command-line overrides, turned into typed dataclasses.

A preset is a YAML mapping of sections (``model:``, ``quantizer:``,
``train:`` ...). ``key.sub=value`` overrides replace single entries; values
are parsed as YAML scalars (``train.lr=3e-4`` is a float, ``model.attention=false``
a bool, ``model.channel_mult=[1,2,2]`` a list). :func:`build_dataclass`
checks every key against the dataclass's fields, so a typo is an error that
lists the valid keys instead of a silently ignored setting.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that cannot be used (the message names the key)."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping is a :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` -> ``(["train", "lr"], 0.0003)``."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"expected key=value (e.g. train.lr=3e-4), got {item!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"cannot parse the value of {key!r}: {error}") from error
    if isinstance(parsed, str):
        parsed = _yaml_number(parsed)
    return key.strip().split("."), parsed


def _yaml_number(text: str) -> Any:
    """YAML 1.1 reads ``3e-4`` as a string; read it as the float a user means."""
    try:
        return float(text) if any(c in text for c in "eE.") and not text.isalpha() else text
    except ValueError:
        return text


def apply_overrides(config: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A deep copy of ``config`` with each ``key.sub=value`` applied (intermediate mappings created)."""
    result = copy.deepcopy(dict(config))
    for item in overrides:
        keys, value = parse_override(item)
        node = result
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(keys[: depth + 1])} is a value, not a section: cannot set {item!r}")
            node = child
        node[keys[-1]] = value
    return result


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The preset at ``path`` (or an empty config) with ``overrides`` applied."""
    return apply_overrides(load_yaml(path) if path is not None else {}, overrides)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert YAML values to the field type where that is lossless (lists to tuples, ints to floats)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        if len(options) == 1:
            return _coerce(value, options[0], where)
        return value
    if dataclasses.is_dataclass(annotation) and isinstance(value, Mapping):
        return build_dataclass(annotation, value, where)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(annotation)
        item_type = args[0] if args else Any
        return tuple(_coerce(v, item_type, where) for v in value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, bool, str) and not isinstance(value, annotation):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def build_dataclass(cls: type[T], values: Mapping[str, Any] | None, where: str = "") -> T:
    """``cls(**values)`` with unknown keys rejected (closest names suggested) and YAML values coerced."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [key for key in values if key not in names]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown key {where + '.' if where else ''}{key}{hint}; valid keys: {', '.join(names)}")
    kwargs = {key: _coerce(value, hints[key], f"{where}.{key}" if where else key) for key, value in values.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """A dataclass (nested) as plain YAML/JSON-friendly data: tuples become lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
