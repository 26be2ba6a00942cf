"""The one config type: presets, YAML files, overrides and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tumorscope.core.config import PRESETS, config_from_dict, load_config
from tumorscope.core.errors import ConfigError


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_round_trip(name: str) -> None:
    cfg = load_config(name)
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
    # every preset names its network: its own blocks' widths, or a library encoder
    assert cfg.model.get("features") or cfg.model.get("encoder") not in (None, "own")


def test_tiny_cpu_is_small_and_default_is_nnunet_like() -> None:
    tiny, default = load_config("tiny-cpu"), load_config("default")
    assert tiny.data.spacing_mm == 2.0 and max(tiny.data.patch_size_vox) <= 64
    assert default.data.patch_size_vox == (128, 128, 128)


def test_yaml_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("data:\n  root: /data/brats\n  patch_size_vox: 64\noptim:\n  lr: 0.1\n")
    cfg = load_config(path, overrides=["optim.lr=0.5", "train.device=cpu", "model.norm=batch"])
    assert cfg.data.root == "/data/brats" and cfg.data.patch_size_vox == (64, 64, 64)
    assert cfg.optim.lr == 0.5 and cfg.train.device == "cpu" and cfg.model == {"norm": "batch"}


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("optim:\n  lrr: 0.1\n", r"unknown key\(s\) \['optim.lrr'\]"),
        ("optimiser:\n  lr: 0.1\n", r"unknown section\(s\) \['optimiser'\]"),
        ("optim:\n  name: rmsprop\n", r"optim.name must be one of \['adam', 'adamw', 'sgd'\], "
                                      r"got 'rmsprop'"),
        ("train:\n  epochs: many\n", r"train.epochs must be an integer >= 1, got 'many'"),
        ("train:\n  overlap: 1.2\n", r"train.overlap must be a number >= 0 and < 1, got 1.2"),
        ("data: [1, 2]\n", "section 'data' must be a mapping"),
        ("data:\n  root: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_names_file_and_fault(tmp_path: Path, text: str, pattern: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_file_and_bad_override() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("nope.yaml")
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("tiny-cpu", overrides=["lr"])
