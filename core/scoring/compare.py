"""Two runs' scores side by side: paired per case and region, B minus A, a Wilcoxon
signed-rank test and a bootstrap confidence interval of the mean difference per region.

Only current scores are paired: a row whose ``status`` is not ``ok`` (stale: another
prediction, model, image or truth than the run holds now) is left out and counted. A case is
the same case in both runs only when both scored it against the same ground truth (the rows'
``truth_sha256``); a case scored in one run only is listed, never silently dropped.

Values that are not finite never enter a mean, a test or an interval: a difference with an
infinite HD95 (BraTS 2025 gives a lesion with no match an infinite distance) or with an
undefined score (NaN: BraTS 2025 when neither truth nor prediction has a lesion) has no
number to average. Such a pair stays in the paired table, with why it is excluded, and is
counted per region (``n_excluded``).

>>> rows_a = [{"case_id": c, "region": "WT", "dice": d, "status": "ok"}
...           for c, d in (("x", 0.6), ("y", 0.7), ("z", 0.5))]
>>> rows_b = [{**r, "dice": r["dice"] + 0.1} for r in rows_a]
>>> cmp = compare_rows(rows_a, rows_b, n_resamples=200)
>>> s = cmp.summary("legacy", "WT")
>>> s.n, round(s.mean_difference, 3), s.b_better, s.p_value
(3, 0.1, 3, 0.25)
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from tumorscope.core.data.labels import REGIONS
from tumorscope.core.errors import ConfigError, TumorscopeError, check_choice
from tumorscope.core.scoring.distances import HD95_DEFINITIONS, HD95Definition, hd95_column
from tumorscope.core.scoring.scorings import LESION_HD95, SCORINGS, Scoring
from tumorscope.core.store import STATUS_OK, Run

__all__ = [
    "METRICS",
    "MIN_TEST_PAIRS",
    "Comparison",
    "Metric",
    "Pair",
    "RegionSummary",
    "Unpaired",
    "bootstrap_ci",
    "compare_rows",
    "compare_runs",
    "metric_column",
    "pair_records",
    "pairs_csv",
    "report_lines",
    "run_rows",
    "scoring_metrics",
    "wilcoxon_p",
]

Metric = Literal["dice", "hd95", "jaccard", "sensitivity", "specificity", "rq"]
METRICS: tuple[str, ...] = get_args(Metric)

_COLUMNS: dict[str, dict[str, str]] = {
    "legacy": {"dice": "dice", "jaccard": "jaccard", "sensitivity": "sensitivity",
               "specificity": "specificity"},  # its hd95 column depends on the definition
    "brats2023": {"dice": "brats2023_dice", "hd95": "brats2023_hd95_mm"},
    "brats2025": {"dice": "brats2025_sq_dice", "hd95": "brats2025_sq_hd95_mm",
                  "rq": "brats2025_rq"},
}
LOWER_IS_BETTER = frozenset({"hd95"})
MIN_TEST_PAIRS = 2
"""Fewer pairs than this get no p-value and no interval: one difference has no spread."""
MAX_RESAMPLES = 10_000_000
_BOOTSTRAP_CELLS = 1_000_000  # resampled values drawn at a time, so memory stays small


def scoring_metrics(scoring: Scoring) -> tuple[str, ...]:
    """The metrics of :data:`METRICS` that ``scoring`` has, in that order.

    >>> scoring_metrics("legacy"), scoring_metrics("brats2025")
    (('dice', 'hd95', 'jaccard', 'sensitivity', 'specificity'), ('dice', 'hd95', 'rq'))
    """
    check_choice("scoring", scoring, SCORINGS)
    offered = {*_COLUMNS[scoring], *(("hd95",) if scoring == "legacy" else ())}
    return tuple(m for m in METRICS if m in offered)


def metric_column(metric: Metric, *, scoring: Scoring = "legacy",
                  hd95: HD95Definition = "monai") -> str:
    """The metrics.csv column of ``metric`` in ``scoring`` (``hd95`` names legacy's HD95).

    >>> metric_column("dice"), metric_column("hd95", hd95="surfel")
    ('dice', 'hd95_surfel_mm')
    >>> metric_column("dice", scoring="brats2025"), metric_column("hd95", scoring="brats2023")
    ('brats2025_sq_dice', 'brats2023_hd95_mm')
    """
    check_choice("metric", metric, METRICS)
    check_choice("scoring", scoring, SCORINGS)
    if scoring == "legacy" and metric == "hd95":
        return hd95_column(hd95)
    columns = _COLUMNS[scoring]
    if metric not in columns:
        raise ConfigError(f"metric {metric!r} is not a {scoring} score: {scoring} offers "
                          f"{list(scoring_metrics(scoring))}")
    return columns[metric]


@dataclass(frozen=True)
class Pair:
    """One case and region scored by both runs, in one scoring."""

    case_id: str
    region: str
    scoring: str
    column: str
    """The metrics.csv column compared (``dice``, ``hd95_monai_mm``, ``brats2025_rq`` ...)."""
    a: float | None
    b: float | None
    dice_a: float | None
    dice_b: float | None
    hd95_a: float | None
    hd95_b: float | None
    """The scoring's Dice and HD95 beside the compared metric, to read a pair by."""
    volume_truth_ml: float | None
    excluded: str | None = None
    """Why the pair is not in the statistics (a value missing, infinite or NaN), or None."""
    higher_is_better: bool = True

    @property
    def difference(self) -> float | None:
        """B minus A, or None for an excluded pair."""
        if self.excluded is not None or self.a is None or self.b is None:
            return None
        return self.b - self.a

    @property
    def better(self) -> str | None:
        """``"A"``, ``"B"`` or ``"tie"`` by the metric's direction; None when excluded."""
        d = self.difference
        if d is None:
            return None
        if d == 0:
            return "tie"
        return "B" if (d > 0) == self.higher_is_better else "A"


@dataclass(frozen=True)
class RegionSummary:
    """The paired statistics of one scoring and region over its included pairs."""

    scoring: str
    region: str
    column: str
    n: int
    n_excluded: int
    mean_a: float | None
    mean_b: float | None
    mean_difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    test: str
    """How ``p_value`` was obtained, or why there is none."""
    b_better: int
    a_better: int
    ties: int


@dataclass(frozen=True)
class Unpaired:
    """A case with a current score in one run and none in the other."""

    case_id: str
    scored_in: str
    """``"A"`` or ``"B"``."""
    reason: str


@dataclass(frozen=True)
class Comparison:
    """Run B against run A: every pair, the summary per scoring and region, and what was
    left out."""

    name_a: str
    name_b: str
    metric: str
    scorings: tuple[str, ...]
    hd95: str
    columns: tuple[tuple[str, str], ...]
    """(scoring, metrics.csv column) compared."""
    higher_is_better: bool
    pairs: tuple[Pair, ...]
    summaries: tuple[RegionSummary, ...]
    unpaired: tuple[Unpaired, ...]
    stale_rows_a: int
    stale_rows_b: int
    stale_cases_a: int
    stale_cases_b: int
    n_resamples: int
    confidence: float
    seed: int

    @property
    def shared_cases(self) -> tuple[str, ...]:
        return tuple(sorted({p.case_id for p in self.pairs}))

    @property
    def only_a(self) -> tuple[Unpaired, ...]:
        return tuple(u for u in self.unpaired if u.scored_in == "A")

    @property
    def only_b(self) -> tuple[Unpaired, ...]:
        return tuple(u for u in self.unpaired if u.scored_in == "B")

    def summary(self, scoring: str, region: str) -> RegionSummary:
        for s in self.summaries:
            if s.scoring == scoring and s.region == region:
                return s
        raise KeyError((scoring, region))


# --------------------------------------------------------------------------------------------
# statistics


def wilcoxon_p(differences: Sequence[float]) -> tuple[float | None, str]:
    """Two-sided Wilcoxon signed-rank p-value of paired ``differences`` and how it was had.

    Fewer than :data:`MIN_TEST_PAIRS` differences: no p-value (None). All differences zero:
    p = 1 (the runs agree on every pair; scipy would divide by zero). Otherwise
    ``scipy.stats.wilcoxon`` with its defaults: zero differences dropped (``wilcox``), the
    exact distribution for small samples without ties, the normal approximation else.

    >>> wilcoxon_p([0.1, 0.2, 0.3])[0], wilcoxon_p([0.0, 0.0])[0], wilcoxon_p([0.1])[0]
    (0.25, 1.0, None)
    """
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    if d.size and not np.all(np.isfinite(d)):
        raise ValueError("differences must be finite (exclude the pairs that are not)")
    if d.size < MIN_TEST_PAIRS:
        return None, f"not tested: {d.size} pair(s), the test needs {MIN_TEST_PAIRS} or more"
    if not np.any(d != 0):
        return 1.0, "all differences are zero: p = 1, no evidence of a difference"
    return float(stats.wilcoxon(d).pvalue), "two-sided Wilcoxon signed-rank (scipy)"


def bootstrap_ci(differences: Sequence[float], *, n_resamples: int = 10_000,
                 confidence: float = 0.95, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``differences``, the same for the same
    ``seed``; None for fewer than :data:`MIN_TEST_PAIRS` values.

    >>> low, high = bootstrap_ci([0.1, 0.2, 0.3, 0.4], n_resamples=1000, seed=1)
    >>> low <= 0.25 <= high, bootstrap_ci([0.1, 0.2, 0.3, 0.4], n_resamples=1000, seed=1)[0] == low
    (True, True)
    """
    _check_resampling(n_resamples, confidence, seed)
    d = np.asarray(differences, dtype=float)
    if d.size and not np.all(np.isfinite(d)):
        raise ValueError("differences must be finite (exclude the pairs that are not)")
    if d.size < MIN_TEST_PAIRS:
        return None
    mean = float(d.mean())
    if np.all(d == d[0]):  # every resample has this mean; rounding could put it outside
        return mean, mean
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    step = max(1, _BOOTSTRAP_CELLS // d.size)
    for start in range(0, n_resamples, step):
        stop = min(start + step, n_resamples)
        means[start:stop] = d[rng.integers(0, d.size, size=(stop - start, d.size))].mean(1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def _check_resampling(n_resamples: int, confidence: float, seed: int) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or \
            not 1 <= n_resamples <= MAX_RESAMPLES:
        raise ConfigError(f"resamples must be an integer in 1..{MAX_RESAMPLES}, got "
                          f"{n_resamples!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, float | int) or \
            not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be a number in (0, 1), got {confidence!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")


# --------------------------------------------------------------------------------------------
# pairing


def run_rows(run: Run) -> list[dict[str, Any]]:
    """Every row of the run's metrics.csv, its ``status`` the store's verdict now: ``ok``, or
    why the score is not current (see :meth:`Run.score_problems`)."""
    rows = run.metrics_rows()
    problems = run.score_problems(rows)
    return [{**r, "status": problems.get(str(r["case_id"]), STATUS_OK)} for r in rows]


def compare_runs(run_a: Run, run_b: Run, *, metric: Metric = "dice",
                 scorings: Sequence[Scoring] = ("legacy",), hd95: HD95Definition | None = None,
                 n_resamples: int = 10_000, confidence: float = 0.95,
                 seed: int = 0) -> Comparison:
    """:func:`compare_rows` of two runs' metrics (stale rows counted and left out), each run
    named by its folder."""
    return compare_rows(run_rows(run_a), run_rows(run_b), name_a=str(run_a.path),
                        name_b=str(run_b.path), metric=metric, scorings=scorings, hd95=hd95,
                        n_resamples=n_resamples, confidence=confidence, seed=seed)


def _is_current(row: Mapping[str, Any]) -> bool:
    return row.get("status") in (None, STATUS_OK)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _problem(value: float | None) -> str | None:
    if value is None:
        return "no value"
    if math.isnan(value):
        return "undefined (NaN)"
    if math.isinf(value):
        return "infinite"
    return None


def _by_case(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Mapping[str, Any]]]:
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        out.setdefault(str(row["case_id"]), {})[str(row["region"])] = row
    return out


def _check_options(metric: str, scorings: Sequence[str], hd95: str | None
                   ) -> tuple[tuple[str, ...], str]:
    check_choice("metric", metric, METRICS)
    if isinstance(scorings, str):
        scorings = [scorings]
    if not scorings:
        raise ConfigError(f"scoring must name at least one of {list(SCORINGS)}, got none")
    for scoring in scorings:
        check_choice("scoring", scoring, SCORINGS)
    chosen = tuple(s for s in SCORINGS if s in scorings)
    if hd95 is not None:
        check_choice("HD95 definition", hd95, tuple(HD95_DEFINITIONS))
        if "legacy" not in chosen and all(LESION_HD95[s] != hd95 for s in chosen):
            raise ConfigError(
                f"HD95 definition {hd95!r} chooses legacy's HD95, and scoring "
                f"{', '.join(chosen)} measures HD95 its own way ("
                + ", ".join(f"{s}: {LESION_HD95[s]}" for s in chosen)
                + "); add scoring legacy or leave the definition out")
    for scoring in chosen:  # an impossible metric of a scoring is refused before any work
        metric_column(metric, scoring=scoring, hd95=hd95 or "monai")  # type: ignore[arg-type]
    return chosen, hd95 or "monai"


def compare_rows(rows_a: Iterable[Mapping[str, Any]], rows_b: Iterable[Mapping[str, Any]], *,
                 name_a: str = "A", name_b: str = "B", metric: Metric = "dice",
                 scorings: Sequence[Scoring] = ("legacy",), hd95: HD95Definition | None = None,
                 n_resamples: int = 10_000, confidence: float = 0.95,
                 seed: int = 0) -> Comparison:
    """Run B's scores against run A's over the cases both scored (metrics.csv rows, one per
    case and region, with a ``status``; those not ``ok`` are counted and left out).

    ``metric`` in each of ``scorings`` (``hd95``: legacy's HD95 definition, default monai;
    the lesion-wise scorings measure HD95 their own way, named in the column). Per scoring
    and region: the pairs, their mean A, mean B and mean difference B - A over the pairs
    whose both values are finite, a two-sided Wilcoxon signed-rank p-value
    (:func:`wilcoxon_p`) and a seeded percentile bootstrap interval of the mean difference
    (:func:`bootstrap_ci`, ``n_resamples`` resamples at ``confidence``).

    Refused with a :class:`TumorscopeError` naming both runs: no case current in both, or a
    case scored against different ground truths (different ``truth_sha256``: not the same
    case). A metric a scoring has not got, or a run that lacks that scoring's scores, is a
    :class:`ConfigError`.
    """
    chosen, definition = _check_options(metric, scorings, hd95)
    _check_resampling(n_resamples, confidence, seed)
    rows_a, rows_b = list(rows_a), list(rows_b)
    current_a = _by_case(r for r in rows_a if _is_current(r))
    current_b = _by_case(r for r in rows_b if _is_current(r))
    stale_a = [r for r in rows_a if not _is_current(r)]
    stale_b = [r for r in rows_b if not _is_current(r)]
    shared = sorted(set(current_a) & set(current_b))
    if not shared:
        raise TumorscopeError(
            f"runs {name_a} (A) and {name_b} (B) share no scored case: A has current scores "
            f"for {len(current_a)} case(s), B for {len(current_b)} ({len(stale_a)} and "
            f"{len(stale_b)} stale row(s) left out); compare needs cases scored in both "
            "(run tumorscope evaluate on each)")
    _check_same_truth(shared, current_a, current_b, name_a, name_b)
    higher = metric not in LOWER_IS_BETTER
    columns = tuple((s, metric_column(metric, scoring=s, hd95=definition))  # type: ignore[arg-type]
                    for s in chosen)
    for scoring, column in columns:
        for name, current in ((name_a, current_a), (name_b, current_b)):
            if not any(_number(row.get(column)) is not None
                       for case in shared for row in current[case].values()):
                raise ConfigError(
                    f"run {name} has no {column} score for the cases compared ({scoring} "
                    f"was not computed): run tumorscope evaluate {name} --scoring {scoring}")
    pairs = tuple(_pairs(shared, current_a, current_b, columns, definition, higher))
    summaries = tuple(_summary(scoring, column, region, [p for p in pairs
                                                         if p.scoring == scoring
                                                         and p.region == region],
                               n_resamples=n_resamples, confidence=confidence, seed=seed)
                      for scoring, column in columns
                      for region in _regions(p.region for p in pairs))
    return Comparison(
        name_a=name_a, name_b=name_b, metric=metric, scorings=chosen, hd95=definition,
        columns=columns, higher_is_better=higher, pairs=pairs, summaries=summaries,
        unpaired=(*_unpaired(current_a, current_b, stale_b, "A", "B"),
                  *_unpaired(current_b, current_a, stale_a, "B", "A")),
        stale_rows_a=len(stale_a), stale_rows_b=len(stale_b),
        stale_cases_a=len({str(r["case_id"]) for r in stale_a}),
        stale_cases_b=len({str(r["case_id"]) for r in stale_b}),
        n_resamples=n_resamples, confidence=float(confidence), seed=seed)


def _regions(regions: Iterable[str]) -> list[str]:
    """WT, TC, ET first (the challenge's order), then any other region named in the rows."""
    present = set(regions)
    return [r for r in REGIONS if r in present] + sorted(present - set(REGIONS))


def _check_same_truth(shared: Sequence[str], current_a: Mapping[str, Mapping[str, Any]],
                      current_b: Mapping[str, Mapping[str, Any]], name_a: str,
                      name_b: str) -> None:
    """Refuse cases whose two scores were measured against different ground truths; rows
    that name no truth hash (runs from before hashes) cannot be checked and are kept."""
    differ = []
    for case in shared:
        truth_a = {r.get("truth_sha256") for r in current_a[case].values()} - {None, ""}
        truth_b = {r.get("truth_sha256") for r in current_b[case].values()} - {None, ""}
        if truth_a and truth_b and truth_a != truth_b:
            differ.append((case, sorted(truth_a)[0], sorted(truth_b)[0]))
    if differ:
        case, sha_a, sha_b = differ[0]
        more = f" (and {len(differ) - 1} more case(s))" if len(differ) > 1 else ""
        raise TumorscopeError(
            f"runs {name_a} (A) and {name_b} (B) scored case {case} against different ground "
            f"truths (truth sha256 {str(sha_a)[:12]} in A, {str(sha_b)[:12]} in B){more}: "
            "not the same case; evaluate both against the same labels "
            "(tumorscope evaluate RUN --labels DIR)")


def _pairs(shared: Sequence[str], current_a: Mapping[str, Mapping[str, Mapping[str, Any]]],
           current_b: Mapping[str, Mapping[str, Mapping[str, Any]]],
           columns: Sequence[tuple[str, str]], definition: str,
           higher: bool) -> Iterable[Pair]:
    for scoring, column in columns:
        dice_column = metric_column("dice", scoring=scoring)  # type: ignore[arg-type]
        hd95_of = metric_column("hd95", scoring=scoring, hd95=definition)  # type: ignore[arg-type]
        for case in shared:
            rows_a, rows_b = current_a[case], current_b[case]
            for region in _regions([*rows_a, *rows_b]):
                row_a, row_b = rows_a.get(region, {}), rows_b.get(region, {})
                a, b = _number(row_a.get(column)), _number(row_b.get(column))
                problems = []
                for side, value, row in (("A", a, row_a), ("B", b, row_b)):
                    why = _problem(value) if row else f"no {region} row"
                    if why is not None:
                        problems.append(f"{side}: {why}")
                yield Pair(
                    case_id=case, region=region, scoring=scoring, column=column, a=a, b=b,
                    dice_a=_number(row_a.get(dice_column)),
                    dice_b=_number(row_b.get(dice_column)),
                    hd95_a=_number(row_a.get(hd95_of)), hd95_b=_number(row_b.get(hd95_of)),
                    volume_truth_ml=_number((row_a or row_b).get("volume_truth_ml")),
                    excluded="; ".join(problems) or None, higher_is_better=higher)


def _summary(scoring: str, column: str, region: str, pairs: Sequence[Pair], *,
             n_resamples: int, confidence: float, seed: int) -> RegionSummary:
    used = [p for p in pairs if p.excluded is None]
    a = np.asarray([p.a for p in used], dtype=float)
    b = np.asarray([p.b for p in used], dtype=float)
    d = b - a
    p_value, test = wilcoxon_p(d)
    ci = bootstrap_ci(d, n_resamples=n_resamples, confidence=confidence, seed=seed)
    better = [p.better for p in used]
    return RegionSummary(
        scoring=scoring, region=region, column=column, n=len(used),
        n_excluded=len(pairs) - len(used),
        mean_a=float(a.mean()) if used else None, mean_b=float(b.mean()) if used else None,
        mean_difference=float(d.mean()) if used else None,
        ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None,
        p_value=p_value, test=test, b_better=better.count("B"), a_better=better.count("A"),
        ties=better.count("tie"))


def _unpaired(mine: Mapping[str, Any], theirs: Mapping[str, Any],
              their_stale: Sequence[Mapping[str, Any]], side: str,
              other: str) -> list[Unpaired]:
    stale = {str(r["case_id"]): str(r.get("status")) for r in their_stale}
    return [Unpaired(case, side, f"not current in {other}: {stale[case]}"
                     if case in stale else f"not scored in {other}")
            for case in sorted(set(mine) - set(theirs))]


# --------------------------------------------------------------------------------------------
# output


def pair_records(comparison: Comparison) -> list[dict[str, Any]]:
    """The paired table, one dict per pair: what the CSV and the app's table hold."""
    return [{"case_id": p.case_id, "region": p.region, "scoring": p.scoring,
             "column": p.column, "A": p.a, "B": p.b, "B_minus_A": p.difference,
             "better": p.better, "dice_A": p.dice_a, "dice_B": p.dice_b,
             "hd95_A": p.hd95_a, "hd95_B": p.hd95_b, "volume_truth_ml": p.volume_truth_ml,
             "excluded": p.excluded or ""} for p in comparison.pairs]


def pairs_csv(comparison: Comparison) -> str:
    """The paired table as CSV text: empty cells for no value, ``inf`` and ``nan`` written
    as such (``excluded`` says why such a pair is not in the statistics)."""
    records = pair_records(comparison)
    buf = io.StringIO()
    columns = list(records[0]) if records else ["case_id", "region"]
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else repr(v) if isinstance(v, float) else v
                         for k, v in record.items()})
    return buf.getvalue()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report_lines(comparison: Comparison) -> list[str]:
    """The comparison as text: what was compared and left out, then per scoring the table
    of n, mean A, mean B, mean difference, its interval and the Wilcoxon p per region."""
    c = comparison
    direction = "higher" if c.higher_is_better else "lower"
    lines = [f"A: {c.name_a}", f"B: {c.name_b}",
             f"{len(c.shared_cases)} case(s) scored in both; difference = B - A ({direction} "
             f"{c.metric} is better); {c.confidence:.0%} bootstrap interval of the mean "
             f"({c.n_resamples} resamples, seed {c.seed}); Wilcoxon signed-rank, two-sided"]
    if c.stale_rows_a or c.stale_rows_b:
        lines.append(f"left out, not current: {c.stale_rows_a} row(s) of {c.stale_cases_a} "
                     f"case(s) in A, {c.stale_rows_b} row(s) of {c.stale_cases_b} case(s) in B")
    for side, unpaired in (("A", c.only_a), ("B", c.only_b)):
        if unpaired:
            listed = ", ".join(f"{u.case_id} ({u.reason})" for u in unpaired[:5])
            more = f" ... (+{len(unpaired) - 5} more)" if len(unpaired) > 5 else ""
            lines.append(f"only in {side}: {len(unpaired)} case(s): {listed}{more}")
    for scoring, column in c.columns:
        definition = (c.hd95 if scoring == "legacy" else LESION_HD95[scoring])
        named = f", {HD95_DEFINITIONS[definition]}" if c.metric == "hd95" else ""
        lines.append(f"{scoring}: {column}{named}")
        lines.append(f"{'region':<8}{'n':>5}{'mean A':>10}{'mean B':>10}{'B - A':>10}"
                     f"{f'{c.confidence:.0%} CI':>22}{'p':>9}{'B/A/tie':>11}"
                     f"{'excluded':>10}")
        for s in (s for s in c.summaries if s.scoring == scoring):
            interval = ("-" if s.ci_low is None
                        else f"[{s.ci_low:+.4f}, {s.ci_high:+.4f}]")
            lines.append(f"{s.region:<8}{s.n:>5}{_fmt(s.mean_a, '.4f'):>10}"
                         f"{_fmt(s.mean_b, '.4f'):>10}{_fmt(s.mean_difference, '+.4f'):>10}"
                         f"{interval:>22}{_fmt(s.p_value, '.4f'):>9}"
                         f"{f'{s.b_better}/{s.a_better}/{s.ties}':>11}{s.n_excluded:>10}")
        # Why a region has no p-value, or p = 1 by definition, said once under its table.
        lines += [f"    {s.region}: {s.test}" for s in c.summaries
                  if s.scoring == scoring and (s.p_value is None or s.test.startswith("all"))]
    excluded = sum(1 for p in c.pairs if p.excluded)
    if excluded:
        lines.append(f"{excluded} pair(s) excluded from the statistics (a value missing, "
                     "infinite or undefined): listed with why in the paired table")
    return lines
