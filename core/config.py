"""The one configuration type: YAML <-> nested dataclasses, presets, and ``key=value`` overrides.

A config has five sections (``data``, ``model``, ``loss``, ``optim``, ``train``) plus
``augment`` and ``postprocess`` (how predicted probabilities become labels); unknown keys
are errors naming the key and the file, so a typo never passes silently. Every field of a
section carries its :class:`Rule` (bounds, choices or a pattern) in its dataclass metadata,
and :func:`validate` is the one place they are checked: a config is validated as a whole
before any work starts, and an error names the key as written (``train.epochs``), the
value found and what is allowed. ``model`` is kept as a plain mapping handed to the model
builder and ``loss.options`` as the options of the named loss; both are checked beside the
model code (:mod:`tumorscope.core.models.checks`, which needs torch; this
module does not), by training and prediction before a case is read.

>>> cfg = load_config("tiny-cpu", overrides=["optim.lr=0.002", "train.epochs=3"])
>>> cfg.optim.lr, cfg.train.epochs
(0.002, 3)
>>> load_config("tiny-cpu", overrides=["train.epochs=0"])
Traceback (most recent call last):
...
tumorscope.core.errors.ConfigError: train.epochs must be an integer >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import re
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from tumorscope.core.errors import ConfigError, check_choice, yaml_problem

PRESETS: tuple[str, ...] = ("tiny-cpu", "default", "tiny-2d", "figshare-2d", "lgg-2d")

SPACING_MM_RANGE: tuple[float, float] = (0.25, 10.0)
"""Allowed target spacing in mm: finer grids explode memory, coarser ones lose the tumour."""
MAX_SEED = 2**32 - 1
MAX_PATCH_VOX = 1024
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?|mps"
DEVICE_TEXT = "auto, cpu, cuda, cuda:N or mps"


# ---------------------------------------------------------------- rules

@dataclass(frozen=True)
class Rule:
    """What a value may be beyond its type: numeric bounds (each element of a tuple), a
    choice, a regular expression, or non-empty text.

    >>> Rule(ge=1).allowed(Kind(int))
    'an integer >= 1'
    >>> Rule(gt=0, lt=1).allowed(Kind(float, optional=True))
    'a number > 0 and < 1, or null'
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    pattern_text: str = ""
    unit: str = ""
    nonempty: bool = False

    def bounds(self) -> str:
        parts = [f"{op} {_number(v)}" for op, v in
                 ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le))
                 if v is not None]
        text = " and ".join(parts)
        return f"{text} {self.unit}" if text and self.unit else text

    def within(self, value: float) -> bool:
        return ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.lt is None or value < self.lt)
                and (self.le is None or value <= self.le))

    def allowed(self, kind: Kind) -> str:
        """What is allowed, in words, for a value of ``kind`` under this rule."""
        bounds = self.bounds()
        if kind.base is tuple:
            noun = "integers" if kind.item is int else "numbers"
            text = f"a list of {kind.length} {noun}" + (f", each {bounds}" if bounds else "")
        elif kind.base is bool:
            text = "true or false"
        elif kind.base is int:
            text = "an integer" + (f" {bounds}" if bounds else "")
        elif kind.base is float:
            text = "a number" + (f" {bounds}" if bounds else "")
        elif kind.base is dict:
            text = "a mapping of option: value"
        elif self.choices is not None:
            text = f"one of {list(self.choices)}"
        elif self.pattern is not None:
            text = self.pattern_text or f"text matching {self.pattern!r}"
        else:
            text = "a non-empty string" if self.nonempty else "a string"
        return f"{text}, or null" if kind.optional else text


@dataclass(frozen=True)
class Kind:
    """The type of a config field: ``base`` is bool, int, float, str, dict or tuple (of
    ``length`` values of type ``item``); ``optional`` when null is allowed."""

    base: type
    optional: bool = False
    item: type | None = None
    length: int = 0

    @classmethod
    def of(cls, hint: Any) -> Kind:
        optional = False
        if get_origin(hint) in (types.UnionType, typing.Union):
            args = [a for a in get_args(hint) if a is not type(None)]
            optional = len(args) < len(get_args(hint))
            hint = args[0]
        origin = get_origin(hint)
        if origin is tuple:
            args = get_args(hint)
            return cls(tuple, optional, args[0], len(args))
        if origin is dict or hint is dict:
            return cls(dict, optional)
        return cls(hint, optional)


class _Refused(Exception):
    """A value that does not satisfy its kind and rule; ``str()`` says what is allowed."""


_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def show(value: Any) -> str:
    """A value as the user wrote it in YAML: ``true``, ``null``, ``'text'``, ``[2, 3]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


def _scalar(value: Any, base: type, rule: Rule) -> Any:
    """``value`` converted to ``base``; raises _Refused. Booleans are never numbers and
    numbers never booleans; numeric text (YAML reads ``1e-3`` as text) is a number."""
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise _Refused
    if base is str:
        if isinstance(value, bool) and rule.choices is not None:
            # YAML 1.1 reads a bare off/on as a boolean: train.amp=off means "off".
            word = "on" if value else "off"
            if word in rule.choices:
                return word
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise _Refused
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Refused
    try:
        if base is int:
            if isinstance(value, int):
                return value
            number = float(value)
            if not number.is_integer():
                raise _Refused
            return int(number)
        number = float(value)
    except (ValueError, OverflowError):
        raise _Refused from None
    if not math.isfinite(number):
        raise _Refused
    return number


def _checked(value: Any, kind: Kind, rule: Rule) -> Any:
    """``value`` converted to ``kind`` and checked against ``rule``; raises _Refused."""
    if value is None:
        if kind.optional:
            return None
        raise _Refused
    if kind.base is dict:
        if not isinstance(value, Mapping):
            raise _Refused
        return dict(value)
    if kind.base is tuple:
        if kind.length == 3 and kind.item is int and not isinstance(value, list | tuple):
            value = [value] * 3  # patch_size_vox: 64 means (64, 64, 64)
        if not isinstance(value, list | tuple) or len(value) != kind.length:
            raise _Refused
        items = tuple(_scalar(v, kind.item or float, rule) for v in value)
        if not all(rule.within(v) for v in items):
            raise _Refused
        return items
    out = _scalar(value, kind.base, rule)
    if kind.base in (int, float) and not rule.within(out):
        raise _Refused
    if kind.base is str:
        if rule.choices is not None and out not in rule.choices:
            raise _Refused
        if rule.pattern is not None and not re.fullmatch(rule.pattern, out):
            raise _Refused
        if rule.nonempty and not out.strip():
            raise _Refused
    return out


def option_problem(value: Any, kind: Kind, rule: Rule) -> tuple[Any, str | None]:
    """``(converted value, None)``, or ``(None, "must be <allowed>, got <value>")``.

    >>> option_problem("0", Kind(float), Rule(gt=0))
    (None, "must be a number > 0, got '0'")
    """
    try:
        return _checked(value, kind, rule), None
    except _Refused:
        return None, f"must be {rule.allowed(kind)}, got {show(value)}"


def _rule(default: Any, **rule: Any) -> Any:
    return field(default=default, metadata={"rule": Rule(**rule)})


def _probability(default: float) -> Any:
    return _rule(default, ge=0, le=1)


# ---------------------------------------------------------------- the sections

BIAS_CORRECTIONS: tuple[str, ...] = ("off", "white_matter")
"""What ``data.bias_correction`` may be (:mod:`tumorscope.core.data.bias`)."""


@dataclass
class DataConfig:
    """Where cases come from and how patches are drawn from them."""

    root: str = _rule("demo_data", nonempty=True)
    cache_dir: str | None = _rule(None, nonempty=True)
    val_fraction: float = _rule(0.2, gt=0, lt=1)
    # cases set aside before training, for one honest score at the end (the demo: 0.2)
    test_fraction: float = _rule(0.0, ge=0, lt=1)
    split_seed: int = _rule(0, ge=0, le=MAX_SEED)
    # k-fold cross-validation: the non-test cases (patients, in 2-D) in ``folds`` parts,
    # part ``fold`` (1-based) validates; null: one split by val_fraction
    folds: int | None = _rule(None, ge=2, le=100)
    # a user's split (CSV of split + patient/case/slice, or a split.json); wins over the rest
    split_file: str | None = _rule(None, nonempty=True)
    fold: int | None = _rule(None, ge=1, le=100)
    # resample to isotropic spacing; None keeps the source's
    spacing_mm: float | None = _rule(None, ge=SPACING_MM_RANGE[0], le=SPACING_MM_RANGE[1],
                                     unit="mm")
    patch_size_vox: tuple[int, int, int] = _rule((128, 128, 128), ge=1, le=MAX_PATCH_VOX)
    # divide out the coil's bias field (estimated on white matter) before the z-score
    # (:mod:`tumorscope.core.data.bias`); "off" for data already corrected (N4)
    bias_correction: str = _rule("off", choices=BIAS_CORRECTIONS)
    # 2-D slice datasets: every slice is resized to this square size (figshare's are 512)
    slice_size_px: int = _rule(256, ge=16, le=MAX_PATCH_VOX, unit="pixels")
    batch_size: int = _rule(2, ge=1)
    # share of patches centred on tumour (nnU-Net: 1/3)
    foreground_fraction: float = _probability(1 / 3)
    skip_empty: bool = _rule(False)  # drop training cases without any tumour
    num_workers: int = _rule(0, ge=0)


@dataclass
class LossConfig:
    """A loss of :mod:`tumorscope.core.models.losses` by name, with its keyword options; or,
    with ``terms`` (``{dice: 1, focal: 0.5}``), a weighted sum of losses, ``name`` unused and
    ``options`` then mapping each term to its own options (``{focal: {gamma: 2}}``)."""

    name: str = _rule("dice_bce", nonempty=True)  # the loss module checks the name
    options: dict[str, Any] = field(default_factory=dict, metadata={"rule": Rule()})
    # loss name: weight; the loss module checks them (names, weights >= 0)
    terms: dict[str, float] = field(default_factory=dict, metadata={"rule": Rule()})
    class_weight: float = _rule(1.0, ge=0)  # of the cross-entropy when model.classes > 0


@dataclass
class OptimConfig:
    name: str = _rule("adamw", choices=("adam", "adamw", "sgd"))
    lr: float = _rule(3e-4, gt=0)
    weight_decay: float = _rule(1e-5, ge=0)
    momentum: float = _rule(0.99, gt=0, lt=1)  # SGD only (Nesterov needs > 0)
    schedule: str = _rule("poly", choices=("poly", "cosine", "constant"))
    warmup_steps: int = _rule(0, ge=0)
    grad_clip: float | None = _rule(12.0, gt=0)  # null: no clipping


@dataclass
class AugmentConfig:
    """Augmentations applied on the fly, on tensors (:mod:`tumorscope.core.training.augment`):
    what real scans differ by. Probabilities are per sample; ranges are ``[min, max]`` drawn
    uniformly, per sample and (for intensities) per channel, on z-scored images."""

    flip: float = _probability(0.5)  # per axis
    rotate_scale: float = _probability(0.2)  # rotation about every axis, with scaling
    max_rotation_deg: float = _rule(15.0, ge=0, le=180)  # about each axis
    scale_range: tuple[float, float] = _rule((0.85, 1.15), gt=0, le=10)
    anisotropic_scale: float = _probability(0.0)  # share of scaled samples scaled per axis
    elastic: float = _probability(0.0)  # smooth random displacement (24 mm control grid)
    elastic_vox: float = _rule(2.0, ge=0, le=32, unit="voxels")  # its std at control points
    intensity: float = _probability(0.3)  # contrast (scale) and brightness (shift)
    intensity_scale: tuple[float, float] = _rule((0.8, 1.2), gt=0, le=10)
    intensity_shift: float = _rule(0.2, ge=0, le=10)  # +- in z-score units
    # a random increasing intensity curve per channel (MONAI's RandHistogramShift)
    remap: float = _probability(0.0)
    remap_strength: float = _rule(0.5, ge=0, le=1)  # 0: identity, 1: random control points
    gamma: float = _probability(0.2)
    gamma_range: tuple[float, float] = _rule((0.7, 1.5), gt=0, le=10)
    bias_field: float = _probability(0.0)  # smooth multiplicative field (coil sensitivity)
    bias_field_strength: float = _rule(0.3, ge=0, le=2)  # most std of its logarithm
    # share of the field's log-variance common to all channels: one coil records a session's
    # sequences, so a bright patch is bright in all of them (0: each channel its own field)
    bias_field_shared: float = _rule(0.0, ge=0, le=1)
    blur: float = _probability(0.0)  # Gaussian blur, its sigma drawn per axis
    blur_sigma_vox: tuple[float, float] = _rule((0.5, 1.0), ge=0, le=8, unit="voxels")
    sharpen: float = _probability(0.0)  # unsharp mask (sigma 1 voxel), never with blur
    sharpen_amount: tuple[float, float] = _rule((0.2, 1.0), ge=0, le=5)
    low_resolution: float = _probability(0.0)  # per channel: thick slices, a random axis
    low_resolution_factor: tuple[float, float] = _rule((1.5, 3.0), ge=1, le=8)
    noise: float = _probability(0.15)  # additive Gaussian
    noise_sigma: float = _rule(0.1, ge=0, le=10)  # most std, z-score units


AUGMENT_RANGES: tuple[str, ...] = ("scale_range", "intensity_scale", "gamma_range",
                                   "blur_sigma_vox", "sharpen_amount", "low_resolution_factor")
"""The ``augment`` fields that are ``[min, max]`` ranges (min <= max is checked)."""


@dataclass
class TrainConfig:
    epochs: int = _rule(100, ge=1)
    steps_per_epoch: int = _rule(250, ge=1)
    val_every_epochs: int = _rule(1, ge=1)
    val_cases: int | None = _rule(None, ge=1)  # cap on validation cases per evaluation
    seed: int = _rule(0, ge=0, le=MAX_SEED)
    device: str = _rule("auto", pattern=DEVICE_PATTERN, pattern_text=DEVICE_TEXT)
    # "auto" (bf16 on CUDA, off on CPU), "bf16", "fp16", "off"
    amp: str = _rule("auto", choices=("auto", "bf16", "fp16", "off"))
    compile: bool = _rule(False)
    channels_last: bool = _rule(True)
    ema: float | None = _rule(None, gt=0, lt=1)  # decay of a moving average of weights
    overlap: float = _rule(0.5, ge=0, lt=1)  # sliding-window overlap (validation, prediction)
    sw_batch_size: int = _rule(2, ge=1)
    threads: int | None = _rule(None, ge=1)


@dataclass
class PostprocessConfig:
    """How predicted region probabilities become the label map written (no-op defaults);
    ``tumorscope postprocess RUN --fit`` chooses them on the validation split and records
    ``fitted`` (the checkpoint's sha256, the cases, the objective): fitted values apply only
    to the checkpoint they were fitted for. Changing them never changes training."""

    thresholds: tuple[float, float, float] = _rule((0.5, 0.5, 0.5), gt=0, lt=1)  # WT, TC, ET
    # predicted components (26-connected) of each region smaller than this are removed; 0: off
    min_component_mm3: tuple[float, float, float] = _rule((0.0, 0.0, 0.0), ge=0, unit="mm3")
    # a case whose predicted ET volume is below this has its ET relabelled necrotic core; 0: off
    et_to_ncr_below_mm3: float = _rule(0.0, ge=0, unit="mm3")
    fitted: dict[str, Any] | None = _rule(None)  # provenance of a fit (written by the fit)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=dict)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


RECORD_SECTION = "predict"
"""Section of a run's config.yaml written by predict (checkpoint, settings); not read back."""

SECTIONS = {"data": DataConfig, "loss": LossConfig, "optim": OptimConfig,
            "augment": AugmentConfig, "train": TrainConfig, "postprocess": PostprocessConfig}
SECTION_LIST = "data, model, ..."
"""The sections of a config file, as messages name them."""


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def field_spec(dotted: str, *, required: bool = False) -> tuple[Kind, Rule]:
    """The kind and rule of the config field ``section.key`` (``required``: null refused),
    for checking a command-line flag that sets the same value.

    >>> kind, rule = field_spec("train.overlap")
    >>> rule.allowed(kind)
    'a number >= 0 and < 1'
    """
    section, _, name = dotted.partition(".")
    cls = SECTIONS[section]
    spec = {f.name: f for f in fields(cls)}[name]
    kind = Kind.of(get_type_hints(cls)[name])
    if required:
        kind = dataclasses.replace(kind, optional=False)
    return kind, spec.metadata.get("rule", Rule())


def rules() -> dict[str, str]:
    """Every config key with what it allows, in words (for docs and error messages).

    >>> rules()["train.epochs"]
    'an integer >= 1'
    """
    out = {}
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            kind, rule = field_spec(f"{section}.{f.name}")
            out[f"{section}.{f.name}"] = rule.allowed(kind)
    return out


# ---------------------------------------------------------------- building and checking

class _Where:
    """Which file to name in an error: none for a key given as an override."""

    def __init__(self, source: str | None, overridden: Collection[str]) -> None:
        self.source, self.overridden = source, tuple(overridden)

    def error(self, key: str, fault: str) -> ConfigError:
        given = any(key == o or key.startswith(o + ".") for o in self.overridden)
        return ConfigError(fault, path=None if given else self.source)


def _section(cls: type, values: Any, name: str, where: _Where) -> Any:
    if not isinstance(values, dict):
        raise where.error(name, f"section {name!r} must be a mapping, got {show(values)}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(str(k) for k in set(values) - set(known))
    if unknown:
        raise where.error(f"{name}.{unknown[0]}",
                          f"unknown key(s) {[f'{name}.{k}' for k in unknown]}; "
                          f"{name} takes {sorted(known)}")
    return cls(**values)


def _what(value: Any) -> str:
    """A value that should have been a mapping, in words: ``a list``, ``42``, ``'text'``."""
    if isinstance(value, list | tuple):
        return "a list"
    return show(value)


def _check_shape(raw: Any, where: _Where) -> dict[str, Any]:
    """``raw`` without its record section, once it is a mapping of known sections each of
    which is a mapping (or empty); raises :class:`ConfigError` naming the file otherwise."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections ({SECTION_LIST}), got "
                          f"{_what(raw)}", path=where.source)
    # A run's config.yaml also records what predict used; it is a record, not a setting,
    # so a run's config can be given to `train --config` as it is.
    raw = {k: v for k, v in raw.items() if k != RECORD_SECTION}
    unknown = sorted(str(k) for k in set(raw) - set(SECTIONS) - {"model"})
    if unknown:
        raise where.error(unknown[0], f"unknown section(s) {unknown}; expected "
                          f"{sorted([*SECTIONS, 'model'])}")
    for name in ("data", "model", "loss", "optim", "augment", "train", "postprocess"):
        value = raw.get(name)
        if value is not None and not isinstance(value, dict):
            raise where.error(name, f"section {name!r} must be a mapping, got {_what(value)}")
    return raw


def config_from_dict(raw: dict[str, Any], *, source: str | None = None,
                     overridden: Collection[str] = ()) -> Config:
    """Build and validate a :class:`Config` from nested plain values.

    ``source`` (a file, a preset) is named in errors, except for the keys listed in
    ``overridden`` (given on the command line), whose errors name only the key.
    """
    where = _Where(source, overridden)
    raw = _check_shape(raw, where)
    parts = {name: _section(cls, {} if raw.get(name) is None else raw[name], name, where)
             for name, cls in SECTIONS.items()}
    model = {} if raw.get("model") is None else raw["model"]
    cfg = Config(model=dict(model), **parts)
    _validate(cfg, where)
    return cfg


def validate(cfg: Config, *, source: str | None = None) -> Config:
    """Check every value of ``cfg`` (and normalise it: lists to tuples, numeric text to
    numbers) by the rules of its fields; return ``cfg``. The model and loss options are
    checked by :func:`tumorscope.core.models.checks.check_model_and_loss` (they need the
    model code, which needs torch; this module does not).

    Raises :class:`ConfigError` naming the first bad key, its value and what is allowed.
    Cheap and free of side effects beyond the normalisation: nothing is read or written.
    """
    _validate(cfg, _Where(source, ()))
    return cfg


def _validate(cfg: Config, where: _Where) -> None:
    for name, cls in SECTIONS.items():
        section = getattr(cfg, name)
        if not isinstance(section, cls):
            raise where.error(name, f"section {name!r} must be a {cls.__name__}, got "
                                    f"{type(section).__name__}")
        hints = get_type_hints(cls)
        for f in fields(cls):
            key = f"{name}.{f.name}"
            value = getattr(section, f.name)
            checked, problem = option_problem(value, Kind.of(hints[f.name]),
                                              f.metadata.get("rule", Rule()))
            if problem is not None:
                raise where.error(key, f"{key} {problem}")
            setattr(section, f.name, checked)
    if cfg.data.val_fraction + cfg.data.test_fraction >= 1:
        raise where.error("data.test_fraction", (
            f"data.val_fraction + data.test_fraction must be < 1 (cases are left to train "
            f"on), got {cfg.data.val_fraction} + {cfg.data.test_fraction}"))
    for name in AUGMENT_RANGES:
        low, high = getattr(cfg.augment, name)
        if low > high:
            raise where.error(f"augment.{name}", f"augment.{name} must be [min, max] "
                              f"with min <= max, got {show(getattr(cfg.augment, name))}")


# ---------------------------------------------------------------- overrides and loading

def _override_parts(item: str) -> tuple[list[str], str]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    dotted, text = item.split("=", 1)
    keys = dotted.strip().split(".")
    if len(keys) < 2 or not all(keys):
        raise ConfigError(f"override {item!r} must name section.key, e.g. optim.lr=1e-3")
    return keys, text


def override_keys(overrides: list[str]) -> list[str]:
    """The dotted keys that ``section.key=value`` overrides set.

    >>> override_keys(["optim.lr=1e-3", "model.features=[8, 16]"])
    ['optim.lr', 'model.features']
    """
    return [".".join(_override_parts(item)[0]) for item in overrides]


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (value parsed as YAML) to a raw config mapping."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections ({SECTION_LIST}), got "
                          f"{_what(raw)}")
    out = _plain(raw)
    for item in overrides:
        keys, text = _override_parts(item)
        node = out
        for k in keys[:-1]:
            if node.get(k) is None:
                node[k] = {}
            node = node[k]
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {k!r} is not a section")
        try:
            node[keys[-1]] = parse_yaml(text)
        except DuplicateKeyError as exc:
            raise ConfigError(f"override {item!r}: key {exc.key!r} is given twice in the "
                              "value: keep one") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value {text!r} is not valid YAML "
                              f"({yaml_problem(exc)}); quote text, write lists as [a, b]"
                              ) from None
    return out


class DuplicateKeyError(yaml.YAMLError):
    """A mapping in YAML text gives one key twice (plain YAML keeps the last silently)."""

    def __init__(self, key: str, first_line: int, line: int) -> None:
        self.key, self.first_line, self.line = key, first_line, line
        where = (f"on line {line}" if line == first_line
                 else f"at lines {first_line} and {line}")
        super().__init__(f"key {key!r} is given twice, {where}: keep one")


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe YAML loader, refusing a mapping that gives a key twice (YAML 1.1 keeps the
    last value silently, so ``batch_size: 2`` then ``batch_size: 3`` would train with 3)."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._check_unique(node, (), set())
        return super().construct_document(node)

    def _check_unique(self, node: yaml.Node, where: tuple[str, ...], seen: set[int]) -> None:
        if id(node) in seen:  # an alias: checked where its anchor is
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._check_unique(item, (*where[:-1], f"{where[-1]}[{i}]") if where
                                   else (f"[{i}]",), seen)
            return
        if not isinstance(node, yaml.MappingNode):
            return
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self._check_unique(value_node, where, seen)
                continue
            key = None
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node)
                try:
                    hash(key)
                except TypeError:
                    key = None
            line = key_node.start_mark.line + 1
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            if key is not None:
                if key in first:
                    raise DuplicateKeyError(".".join((*where, name)), first[key], line)
                first[key] = line
            self._check_unique(value_node, (*where, name), seen)


def parse_yaml(text: str) -> Any:
    r"""YAML text as plain values (safe loader, so no Python objects), refusing a key given
    twice in one mapping with :class:`DuplicateKeyError`.

    >>> parse_yaml("data:\n  batch_size: 2\n  batch_size: 3\n")
    Traceback (most recent call last):
    ...
    tumorscope.core.config.DuplicateKeyError: key 'data.batch_size' is given twice, ...
    """
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


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
        try:
            text, where = path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError:
            raise ConfigError("not a YAML text file (it is not UTF-8 text)", path=path) from None
    try:
        raw = parse_yaml(text)
    except DuplicateKeyError as exc:
        raise ConfigError(str(exc), path=where) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({yaml_problem(exc)})", path=where) from None
    if raw is None and not _has_content(text):
        raise ConfigError(f"the config file is empty (start from a preset: "
                          f"{', '.join(PRESETS)})", path=where)
    overrides = overrides or []
    # The file's own shape first, so that a fault in it is blamed on the file, not on the
    # override (``--data`` sets data.root) that would otherwise meet it first.
    raw = _check_shape(raw, _Where(where, ()))
    return config_from_dict(apply_overrides(raw, overrides), source=where,
                            overridden=override_keys(overrides))


def _has_content(text: str) -> bool:
    """Whether YAML text holds anything but blank lines, comments and document markers."""
    return any(line.strip() and not line.lstrip().startswith("#")
               and line.strip() not in ("---", "...") for line in text.splitlines())
