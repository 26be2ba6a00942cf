"""The one configuration type: YAML <-> nested dataclasses, presets, and ``key=value`` overrides.

A config has five sections (``data``, ``model``, ``loss``, ``optim``, ``train``) plus
``augment``; unknown keys are errors naming the key and the file, so a typo never passes
silently. ``model`` is kept as a plain mapping handed to the model builder, which validates
it and stores it in every checkpoint.

>>> cfg = load_config("tiny-cpu", overrides=["optim.lr=0.002", "train.epochs=3"])
>>> cfg.optim.lr, cfg.train.epochs
(0.002, 3)
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .errors import ConfigError, check_choice, yaml_problem

PRESETS: tuple[str, ...] = ("tiny-cpu", "default")


@dataclass
class DataConfig:
    """Where cases come from and how patches are drawn from them."""

    root: str = "demo_data"
    cache_dir: str | None = None
    val_fraction: float = 0.2
    split_seed: int = 0
    spacing_mm: float | None = None  # resample to isotropic spacing; None keeps the source's
    patch_size_vox: tuple[int, int, int] = (128, 128, 128)
    batch_size: int = 2
    foreground_fraction: float = 1 / 3  # share of patches centred on tumour (nnU-Net: 1/3)
    skip_empty: bool = False  # drop training cases without any tumour
    num_workers: int = 0


@dataclass
class LossConfig:
    name: str = "dice_bce"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 3e-4
    weight_decay: float = 1e-5
    momentum: float = 0.99  # SGD only
    schedule: str = "poly"
    warmup_steps: int = 0
    grad_clip: float | None = 12.0


@dataclass
class AugmentConfig:
    """Augmentations applied on the fly, on tensors; probabilities per sample."""

    flip: float = 0.5  # per axis
    rotate_scale: float = 0.2
    max_rotation_deg: float = 15.0
    scale_range: tuple[float, float] = (0.85, 1.15)
    intensity: float = 0.3  # scale/shift per channel
    gamma: float = 0.2
    noise: float = 0.15


@dataclass
class TrainConfig:
    epochs: int = 100
    steps_per_epoch: int = 250
    val_every_epochs: int = 1
    val_cases: int | None = None  # cap on validation cases per evaluation
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # "auto" (bf16 on CUDA, off on CPU), "bf16", "fp16", "off"
    compile: bool = False
    channels_last: bool = True
    ema: float | None = None  # decay of an exponential moving average of weights
    overlap: float = 0.5  # sliding-window overlap at validation and prediction
    sw_batch_size: int = 2
    threads: int | None = None


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=dict)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _coerce(value: Any, hint: Any, key: str, source: str | None) -> Any:
    """Convert a YAML value to the field's type, or raise naming the key."""
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"{key} must not be empty", path=source)
    try:
        if text.startswith("tuple"):
            if not isinstance(value, list | tuple):
                value = [value] * 3 if "int, int, int" in text else [value]
            inner = float if "float" in text else int
            return tuple(inner(v) for v in value)
        if "bool" in text and isinstance(value, str):
            if value.lower() in ("true", "1", "yes", "on"):
                return True
            if value.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(value)
        if "dict" in text:
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
        for kind in (bool, int, float, str):
            if kind.__name__ in text.split("|")[0].strip():
                if kind is int and isinstance(value, float) and not value.is_integer():
                    raise ValueError(value)
                return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} = {value!r} is not a valid {text}", path=source) from None
    return value


def _section(cls: type, values: dict[str, Any], name: str, source: str | None) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"section {name!r} must be a mapping, got {values!r}", path=source)
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {[f'{name}.{k}' for k in unknown]}; "
                          f"{name} takes {sorted(known)}", path=source)
    return cls(**{k: _coerce(v, hints[k], f"{name}.{k}", source) for k, v in values.items()})


SECTIONS = {"data": DataConfig, "loss": LossConfig, "optim": OptimConfig,
            "augment": AugmentConfig, "train": TrainConfig}


def config_from_dict(raw: dict[str, Any], *, source: str | None = None) -> Config:
    """Build and validate a :class:`Config` from nested plain values."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(raw).__name__}",
                          path=source)
    unknown = sorted(set(raw) - set(SECTIONS) - {"model"})
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}; expected "
                          f"{sorted([*SECTIONS, 'model'])}", path=source)
    parts = {name: _section(cls, raw.get(name) or {}, name, source)
             for name, cls in SECTIONS.items()}
    model = raw.get("model") or {}
    if not isinstance(model, dict):
        raise ConfigError(f"section 'model' must be a mapping, got {model!r}", path=source)
    cfg = Config(model=dict(model), **parts)
    _validate(cfg, source)
    return cfg


def _validate(cfg: Config, source: str | None) -> None:
    check_choice("optim.name", cfg.optim.name, ("adam", "adamw", "sgd"), path=source)
    check_choice("optim.schedule", cfg.optim.schedule, ("poly", "cosine", "constant"),
                 path=source)
    check_choice("train.amp", cfg.train.amp, ("auto", "bf16", "fp16", "off"), path=source)
    if not 0 <= cfg.train.overlap < 1:
        raise ConfigError(f"train.overlap must be >= 0 and < 1, got {cfg.train.overlap}",
                          path=source)
    if not 0 < cfg.data.val_fraction < 1:
        raise ConfigError(f"data.val_fraction must be > 0 and < 1, got "
                          f"{cfg.data.val_fraction}", path=source)
    if not 0 <= cfg.data.foreground_fraction <= 1:
        raise ConfigError(f"data.foreground_fraction must be in [0, 1], got "
                          f"{cfg.data.foreground_fraction}", path=source)
    if any(s <= 0 for s in cfg.data.patch_size_vox):
        raise ConfigError(f"data.patch_size_vox must be positive, got "
                          f"{cfg.data.patch_size_vox}", path=source)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (value parsed as YAML) to a raw config mapping."""
    out = _plain(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, text = item.split("=", 1)
        keys = dotted.strip().split(".")
        if len(keys) < 2:
            raise ConfigError(f"override {item!r} must name section.key, e.g. optim.lr=1e-3")
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {k!r} is not a section")
        node[keys[-1]] = yaml.safe_load(text)
    return out


def preset_text(name: str) -> str:
    """The YAML text of a shipped preset."""
    check_choice("preset", name, PRESETS)
    return (importlib.resources.files("tumorscope.core") / "presets" / f"{name}.yaml").read_text()


def load_config(source: str | Path, *, overrides: list[str] | None = None) -> Config:
    """Load a preset name (``tiny-cpu``, ``default``) or a YAML file, then apply overrides."""
    if str(source) in PRESETS:
        text, where = preset_text(str(source)), f"preset {source}"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file not found (presets: {list(PRESETS)})", path=path)
        text, where = path.read_text(), str(path)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({yaml_problem(exc)})", path=where) from None
    return config_from_dict(apply_overrides(raw, overrides or []), source=where)
