"""Post-processing: region probabilities to a label map, then label-map clean-ups (pure numpy).

:func:`probabilities_to_labels` is the one place where region probabilities become labels.
:func:`apply_postprocess` then removes predicted components of a region that are smaller
than a volume, and relabels a case's enhancing tumour as necrotic core when there is too
little of it (the trick of the BraTS-winning nnU-Net entries, Isensee et al. 2020/2021).

A component removed from a region leaves that region only, as if the region's own output had
been off there, which keeps the nesting ET ⊂ TC ⊂ WT of the label map (nnU-Net's region-based
post-processing removes components of a region the same way, channel by channel):

- a WT component (labels 1, 2, 4) becomes background (0), all its labels with it;
- a TC component (labels 1, 4) becomes edema (2): still tumour, no longer core;
- an ET component (label 4) becomes necrotic core (1): still core, no longer enhancing,
  which is what the ET-to-NCR relabelling does for a whole case.

Regions are cleaned outer to inner (WT, then TC, then ET), each on what the previous step
left, and the ET-to-NCR rule looks at the ET that remains.

>>> label = np.zeros((6, 6, 6), np.uint8); label[0:3, 0:3, 0:3] = 2; label[5, 5, 5] = 2
>>> out = apply_postprocess(label, spacing_mm=(1, 1, 1),
...                         postprocess=PostProcess(min_component_mm3=(2, 0, 0)))
>>> int((out > 0).sum()), int(out[5, 5, 5])
(27, 0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cc3d
import numpy as np

from tumorscope.core.config import field_spec, option_problem, show
from tumorscope.core.data.labels import REGION_LABELS, REGIONS, check_labels, regions_to_labels
from tumorscope.core.errors import ConfigError, GeometryError, LabelError

SETTINGS: tuple[str, ...] = ("thresholds", "min_component_mm3", "et_to_ncr_below_mm3")
"""The fields of :class:`PostProcess`, as the config's ``postprocess`` section names them."""

RECORD_KEY = "fitted"
"""Key of the config section that records where fitted values came from (not a setting)."""

DEFAULT_THRESHOLDS: tuple[float, float, float] = (0.5, 0.5, 0.5)

REMOVED_BECOMES: dict[str, int] = {"WT": 0, "TC": 2, "ET": 1}
"""The label a removed component of each region takes: the next region out, or background."""

ENHANCING, NECROTIC = 4, 1


def _fmt(values: Sequence[float]) -> str:
    return "/".join(f"{v:g}" for v in values)


@dataclass(frozen=True)
class PostProcess:
    """How region probabilities become the label map written, checked on entry by the rules
    of the config's ``postprocess`` section. The defaults change nothing.

    >>> PostProcess().describe()
    'off (thresholds WT/TC/ET 0.5/0.5/0.5)'
    >>> PostProcess(min_component_mm3=(100, 0, 25), et_to_ncr_below_mm3=200).describe()
    ... # doctest: +NORMALIZE_WHITESPACE
    'thresholds WT/TC/ET 0.5/0.5/0.5, min component WT/TC/ET 100/0/25 mm3,
     ET -> NCR below 200 mm3'
    >>> PostProcess(thresholds=(0.5, 1.5, 0.5))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: postprocess.thresholds must be a list of 3 numbers, ...
    """

    thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS
    """Probability above which a voxel is in WT, TC, ET."""
    min_component_mm3: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Predicted 26-connected components of WT, TC, ET smaller than this are removed; 0: off."""
    et_to_ncr_below_mm3: float = 0.0
    """A case whose predicted ET volume is below this has its ET relabelled NCR; 0: off."""

    def __post_init__(self) -> None:
        for name in SETTINGS:
            value, problem = option_problem(getattr(self, name),
                                            *field_spec(f"postprocess.{name}", required=True))
            if problem is not None:
                raise ConfigError(f"postprocess.{name} {problem}")
            object.__setattr__(self, name, value)

    @property
    def cleans(self) -> bool:
        """Whether any label-map clean-up (component removal, ET relabelling) is on."""
        return any(v > 0 for v in self.min_component_mm3) or self.et_to_ncr_below_mm3 > 0

    @property
    def off(self) -> bool:
        """Whether this is the plain 0.5 threshold with no clean-up."""
        return not self.cleans and self.thresholds == DEFAULT_THRESHOLDS

    def describe(self) -> str:
        """One line for messages and tables."""
        thresholds = f"thresholds {'/'.join(REGIONS)} {_fmt(self.thresholds)}"
        if not self.cleans:
            return f"off ({thresholds})" if self.off else thresholds
        parts = [thresholds]
        if any(v > 0 for v in self.min_component_mm3):
            parts.append(f"min component {'/'.join(REGIONS)} {_fmt(self.min_component_mm3)} mm3")
        if self.et_to_ncr_below_mm3 > 0:
            parts.append(f"ET -> NCR below {self.et_to_ncr_below_mm3:g} mm3")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as the config's ``postprocess`` section holds them."""
        return {"thresholds": list(self.thresholds),
                "min_component_mm3": list(self.min_component_mm3),
                "et_to_ncr_below_mm3": float(self.et_to_ncr_below_mm3)}

    @classmethod
    def from_dict(cls, raw: Any, *, path: str | Path | None = None) -> PostProcess:
        """From a ``postprocess`` section (its :data:`RECORD_KEY` record is ignored; missing
        keys take the defaults); a bad section raises :class:`ConfigError` naming ``path``."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError(f"section 'postprocess' must be a mapping, got {show(raw)}",
                              path=path)
        unknown = sorted(str(k) for k in raw if k not in (*SETTINGS, RECORD_KEY))
        if unknown:
            raise ConfigError(f"unknown key(s) {[f'postprocess.{k}' for k in unknown]}; "
                              f"postprocess takes {sorted([*SETTINGS, RECORD_KEY])}", path=path)
        try:
            return cls(**{k: raw[k] for k in SETTINGS if k in raw})
        except ConfigError as exc:
            raise ConfigError(exc.fault, path=path) from None

    @classmethod
    def from_config(cls, section: Any) -> PostProcess:
        """From a :class:`~tumorscope.core.config.PostprocessConfig` (a config's section)."""
        return cls(**{k: getattr(section, k) for k in SETTINGS})

    def settings(self) -> dict[str, Any]:
        """What a prediction's provenance records of it: ``threshold`` (one number when the
        three are equal) and ``postprocess`` (``"none"`` without clean-up), so predictions
        made before post-processing existed stay current."""
        same = len(set(self.thresholds)) == 1
        return {
            "threshold": self.thresholds[0] if same else list(self.thresholds),
            "postprocess": "none" if not self.cleans else {
                "min_component_mm3": list(self.min_component_mm3),
                "et_to_ncr_below_mm3": float(self.et_to_ncr_below_mm3)},
        }

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> PostProcess | None:
        """Inverse of :meth:`settings` (``None`` when ``settings`` does not hold one)."""
        threshold = settings.get("threshold", DEFAULT_THRESHOLDS[0])
        thresholds = threshold if isinstance(threshold, list | tuple) else [threshold] * 3
        clean = settings.get("postprocess", "none")
        clean = clean if isinstance(clean, Mapping) else {}
        try:
            return cls(thresholds=tuple(thresholds),
                       min_component_mm3=tuple(clean.get("min_component_mm3", (0, 0, 0))),
                       et_to_ncr_below_mm3=clean.get("et_to_ncr_below_mm3", 0.0))
        except (ConfigError, TypeError):
            return None


def probabilities_to_labels(prob_regions: np.ndarray, *,
                            thresholds: Sequence[float]) -> np.ndarray:
    """Region probabilities ``(3, X, Y, Z)`` (WT, TC, ET) -> canonical uint8 label map.

    A voxel is in a region when its probability is above that region's threshold; the
    regions become labels by :func:`~tumorscope.core.data.labels.regions_to_labels` (ET on:
    4, else TC on: 1, else WT on: 2).

    >>> prob = np.array([0.9, 0.6, 0.45]).reshape(3, 1, 1, 1)
    >>> int(probabilities_to_labels(prob, thresholds=(0.5, 0.5, 0.5))[0, 0, 0])
    1
    >>> int(probabilities_to_labels(prob, thresholds=(0.5, 0.5, 0.4))[0, 0, 0])
    4
    """
    prob = np.asarray(prob_regions)
    if prob.ndim != 4 or prob.shape[0] != len(REGIONS):
        raise LabelError(f"region probabilities must have shape (3, X, Y, Z), one channel per "
                         f"region {list(REGIONS)}, got {prob.shape}")
    checked = PostProcess(thresholds=tuple(thresholds)).thresholds
    # One Python float per channel: compared in the array's own precision.
    return regions_to_labels(np.stack([prob[i] > t for i, t in enumerate(checked)]))


def _spacing(spacing_mm: Sequence[float]) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in spacing_mm)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise GeometryError(f"spacing_mm must be 3 positive finite numbers, got {spacing_mm!r}")
    return values  # type: ignore[return-value]


def _check_label_map(label: np.ndarray) -> np.ndarray:
    if label.ndim != 3:
        raise GeometryError(f"a label map must be 3-D (X, Y, Z), got shape {label.shape}")
    if label.dtype == np.uint8:  # one pass, no sort
        present = np.flatnonzero(np.bincount(label.ravel(), minlength=5))
        if any(int(v) not in (0, 1, 2, 4) for v in present):
            check_labels(label)  # names the values
        return label
    check_labels(label)
    return label.astype(np.uint8)


def small_components(mask: np.ndarray, *, below_mm3: float, voxel_mm3: float) -> np.ndarray:
    """The voxels of ``mask``'s 26-connected components whose volume is below ``below_mm3``.

    >>> mask = np.zeros((5, 5, 5), bool); mask[0, 0, 0] = True; mask[2:5, 2:5, 2:5] = True
    >>> int(small_components(mask, below_mm3=8, voxel_mm3=1.0).sum())
    1
    """
    components = cc3d.connected_components(np.asarray(mask, dtype=np.uint8), connectivity=26)
    volumes = np.bincount(components.ravel()) * voxel_mm3
    small = volumes < below_mm3
    small[0] = False  # background
    return small[components]


def apply_postprocess(label: np.ndarray, *, spacing_mm: Sequence[float],
                      postprocess: PostProcess) -> np.ndarray:
    """The clean-ups of ``postprocess`` applied to a canonical label map (0, 1, 2, 4).

    Volumes are in mm³ on the grid of ``spacing_mm``. Returns a uint8 map; the input is never
    changed (it is returned as it is when nothing is to be done). See the module docstring
    for what a removed component becomes. Thresholds play no part here (they act on
    probabilities, :func:`probabilities_to_labels`).
    """
    spacing = _spacing(spacing_mm)
    label = _check_label_map(np.asarray(label))
    if not postprocess.cleans or not label.any():
        return label
    voxel_mm3 = spacing[0] * spacing[1] * spacing[2]
    out = label.copy()
    for region, below in zip(REGIONS, postprocess.min_component_mm3, strict=True):
        if below <= 0:
            continue
        mask = np.isin(out, REGION_LABELS[region])
        if mask.any():
            out[small_components(mask, below_mm3=below, voxel_mm3=voxel_mm3)] = \
                REMOVED_BECOMES[region]
    if postprocess.et_to_ncr_below_mm3 > 0:
        enhancing = out == ENHANCING
        volume = float(np.count_nonzero(enhancing)) * voxel_mm3
        if 0 < volume < postprocess.et_to_ncr_below_mm3:
            out[enhancing] = NECROTIC
    return out
