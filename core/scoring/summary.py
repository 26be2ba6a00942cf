"""The cohort summary of a metrics table (nnU-Net's ``summary.json``): statistics per scoring."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tumorscope.core.data.labels import REGIONS
from tumorscope.core.scoring.distances import HD95_DEFINITIONS
from tumorscope.core.scoring.metrics import METRIC_COLUMNS
from tumorscope.core.scoring.scorings import SCORING_COLUMNS, SCORING_DOCS

__all__ = ["scoring_columns", "stats", "summarise"]

_COUNTS = ("_tp", "_fn", "_fp")


def scoring_columns(scoring: str) -> tuple[str, ...]:
    """The metric columns one scoring fills (legacy: the whole-volume ones).

    >>> scoring_columns("brats2023")[:2]
    ('brats2023_dice', 'brats2023_hd95_mm')
    """
    if scoring == "legacy":
        return tuple(c for c in METRIC_COLUMNS if c != "region")
    return tuple(SCORING_COLUMNS[scoring])


def stats(values: Iterable[float]) -> dict[str, float | int | None]:
    """Mean, std, median, quartiles, min, max and count of the finite ``values``; ``nan``
    (undefined by the scoring's definition) and infinite values are counted apart, in
    ``undefined`` and ``infinite``, as JSON has no number for them.

    >>> s = stats([1.0, 2.0, 3.0, float("nan"), float("inf")])
    >>> s["median"], s["n"], s["undefined"], s["infinite"]
    (2.0, 3, 1, 1)
    """
    all_values = [float(v) for v in values if v is not None]
    finite = np.asarray([v for v in all_values if math.isfinite(v)], dtype=float)
    out: dict[str, float | int | None] = {
        "n": int(finite.size), "undefined": sum(1 for v in all_values if math.isnan(v)),
        "infinite": sum(1 for v in all_values if math.isinf(v))}
    if finite.size == 0:
        return {**out, **dict.fromkeys(("mean", "std", "median", "q25", "q75", "min", "max"))}
    q25, median, q75 = np.percentile(finite, [25, 50, 75])
    return {**out, "mean": float(finite.mean()), "std": float(finite.std()),
            "median": float(median), "q25": float(q25), "q75": float(q75),
            "min": float(finite.min()), "max": float(finite.max())}


def summarise(rows: Sequence[Mapping[str, Any]], *, scorings: Sequence[str], challenge: str,
              not_current: int = 0) -> dict[str, Any]:
    """``summary.json`` of current metric ``rows``: per scoring, region and metric, the
    statistics of :func:`stats` (lesion counts summed as well), with what each scoring and
    HD95 definition is, so the file reads on its own."""
    out: dict[str, Any] = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cases": len({str(r["case_id"]) for r in rows}),
        "not_current": not_current,
        "challenge": challenge,
        "scorings": {s: SCORING_DOCS[s] for s in scorings},
        "hd95_definitions": dict(HD95_DEFINITIONS),
        "metrics": {},
    }
    for scoring in scorings:
        per_region: dict[str, Any] = {}
        for region in REGIONS:
            sel = [r for r in rows if r.get("region") == region]
            entry: dict[str, Any] = {}
            for column in scoring_columns(scoring):
                values = [r.get(column) for r in sel]
                entry[column] = stats(values)
                if column.endswith(_COUNTS):
                    entry[column]["total"] = int(sum(v for v in values if v is not None))
            per_region[region] = entry
        out["metrics"][scoring] = per_region
    return out
