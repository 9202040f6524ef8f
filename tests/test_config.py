from dataclasses import dataclass, field

import pytest

from worldrl.config import ConfigError, apply_overrides, build_dataclass, load_config, parse_override, to_dict


@dataclass
class Inner:
    size: int = 4
    levels: tuple[int, ...] = (8, 5)


@dataclass
class Outer:
    lr: float = 1e-4
    name: str = "vq"
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)


def test_overrides_parse_yaml_scalars_and_create_sections():
    assert parse_override("train.lr=3e-4") == (["train", "lr"], 3e-4)
    assert parse_override("model.channel_mult=[1,2,2]") == (["model", "channel_mult"], [1, 2, 2])
    assert parse_override("model.attention=false") == (["model", "attention"], False)
    config = apply_overrides({"train": {"lr": 1.0}}, ["train.lr=2", "model.quantizer.type=fsq"])
    assert config == {"train": {"lr": 2}, "model": {"quantizer": {"type": "fsq"}}}
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.lr")
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"train": 3}, ["train.lr=1"])


def test_build_dataclass_coerces_and_rejects_typos():
    built = build_dataclass(Outer, {"lr": 1, "inner": {"levels": [8, 8, 8]}, "limit": 3})
    assert built.lr == 1.0 and isinstance(built.lr, float) and built.inner.levels == (8, 8, 8)
    assert to_dict(built)["inner"] == {"size": 4, "levels": [8, 8, 8]}
    with pytest.raises(ConfigError, match="did you mean lr"):
        build_dataclass(Outer, {"lrr": 1})
    with pytest.raises(ConfigError, match="expected str"):
        build_dataclass(Outer, {"name": 3})


def test_load_config_reads_file_and_names_missing_one(tmp_path):
    path = tmp_path / "preset.yaml"
    path.write_text("train:\n  steps: 10\n")
    assert load_config(path, ["train.steps=20"]) == {"train": {"steps": 20}}
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
