"""Fitting post-processing and mirroring TTA on a training run's validation split, recorded in it.

The run's ``best.pt`` predicts its validation cases with post-processing off into
``RUN/postprocess_off/`` (a run of its own, so those predictions are reused while the
checkpoint and the cases are unchanged). A greedy search in nnU-Net's manner then tries,
region by region (WT, TC, ET), a grid of minimum component volumes, then a grid of volumes
below which a case's enhancing tumour becomes necrotic core, keeping a candidate only when it
strictly raises the objective over those cases (ties keep the simpler setting).

The same cases are also predicted with mirroring TTA (all three axes, what ``--mirror on``
does) into ``RUN/postprocess_off_mirror/`` and searched the same way; mirroring is chosen
only when its post-processed objective is strictly above the unmirrored one's (it costs 8
passes a window), and the post-processing recorded is the one fitted on the predictions
``predict`` will make.

The choice is written into the run's ``config.yaml`` ``postprocess`` section with a
``fitted`` record (checkpoint sha256, validation cases and their truth hashes, objective,
before, after, ``mirror`` and ``mirror_scores``, date), under the run's lock; ``predict``
applies it to that checkpoint only.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tumorscope.core.config import Config, config_from_dict
from tumorscope.core.data.geometry import conform_to
from tumorscope.core.data.labels import REGION_LABELS, REGIONS
from tumorscope.core.data.nifti import read_label
from tumorscope.core.data.preprocess import default_cache_dir
from tumorscope.core.errors import LayoutError, TumorscopeError, check_choice
from tumorscope.core.fingerprint import fingerprint
from tumorscope.core.models.checkpoints import autocast_dtype, resolve_device
from tumorscope.core.prediction.postprocess import RECORD_KEY, PostProcess, apply_postprocess
from tumorscope.core.prediction.predict import (
    PredictReport,
    fitted_mirror,
    inference_settings,
    predict_run,
)
from tumorscope.core.scoring.lesions import lesion_wise_region
from tumorscope.core.scoring.metrics import dice
from tumorscope.core.store import CaseRecord, Run

log = logging.getLogger(__name__)

OBJECTIVES: dict[str, str] = {
    "brats2023": "BraTS 2023 lesion-wise Dice (gli), mean of WT/TC/ET",
    "legacy": "whole-volume Dice, mean of WT/TC/ET",
}
"""What the fit maximises, by name."""

# Up to 8 mL: a scanner's false positive (a bright patch of cortex or choroid plexus) can be
# a few millilitres, and the validation cases decide whether removing that much pays.
MIN_COMPONENT_GRID_MM3: tuple[float, ...] = (10, 25, 50, 100, 200, 500, 1000, 2000, 4000,
                                             8000)
ET_TO_NCR_GRID_MM3: tuple[float, ...] = (25, 50, 100, 200, 300, 500, 1000, 2000)
SEARCH_VERSION = 5
"""Bumped whenever the search (grids, order, objectives) changes: a recorded fit is redone.
2: mirroring TTA is chosen too; 3: the mirrored predictions get a post-processing search
of their own; 4: the grid reaches 8 mL; 5: a region's clean-up must not lower that region's
own score."""

UNPROCESSED_DIR = "postprocess_off"
"""Sub-run of a training run holding best.pt's predictions with post-processing off."""

MIRRORED_DIR = "postprocess_off_mirror"
"""Its sibling: best.pt's predictions with post-processing off and mirroring TTA on."""

CROP_MARGIN_VOX = 5
"""Margin kept around prediction and truth when scoring: beyond the 2023 code's 3-voxel
dilation and the 1-voxel surfaces, so a cropped score equals the full one."""

_EPS = 1e-9


@dataclass(frozen=True)
class ScoredCase:
    """A case to score candidates on: canonical label maps (cropped), and its voxel size."""

    case_id: str
    prediction: np.ndarray
    truth: np.ndarray
    spacing_mm: tuple[float, float, float]


@dataclass(frozen=True)
class RegionFit:
    region: str
    before: float
    after: float
    min_component_mm3: float


@dataclass(frozen=True)
class FitResult:
    """What a fit chose and why: the objective over the validation cases before and after
    the chosen post-processing, of the predictions ``predict`` will make (mirrored when
    ``mirror``)."""

    postprocess: PostProcess
    objective: str
    before: float
    after: float
    regions: tuple[RegionFit, ...]
    case_ids: tuple[str, ...]
    checkpoint: Path
    checkpoint_sha256: str
    recorded_in: Path | None = None
    fitted_at: str = ""
    tried: int = 0
    reused: bool = False
    """The run's recorded fit was still current (same checkpoint, cases, truth, objective)."""
    skipped: tuple[str, ...] = ()
    """Validation cases that could not be predicted or read, one line each."""
    truth_sha256: dict[str, str] = field(default_factory=dict)
    """Content hash of each validation case's ground truth the fit scored against."""
    mirror: bool = False
    """Whether ``predict --mirror auto`` mirrors with this checkpoint."""
    mirror_searched: bool = False
    """Whether mirroring was tried (``mirror_search``); without, ``mirror`` is False."""
    mirror_scores: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Mirroring "off" / "on" -> the objective (before, after) of those predictions, each
    after the post-processing fitted on them (each setting gets its own search: one fitted
    on the other's predictions would be unfair to it); only "off" when not tried."""

    def record(self) -> dict[str, Any]:
        """The ``fitted`` record of the config's ``postprocess`` section."""
        scores = {k: {"before": round(b, 6), "after": round(a, 6)}
                  for k, (b, a) in (self.mirror_scores or {"off": (self.before, self.after)}
                                    ).items()}
        return {
            "checkpoint": str(self.checkpoint), "checkpoint_sha256": self.checkpoint_sha256,
            "val_case_ids": list(self.case_ids), "truth_sha256": dict(self.truth_sha256),
            "objective": self.objective, "before": round(self.before, 6),
            "after": round(self.after, 6),
            "regions": {r.region: {"before": round(r.before, 6), "after": round(r.after, 6)}
                        for r in self.regions},
            "mirror": bool(self.mirror), "mirror_searched": bool(self.mirror_searched),
            "mirror_scores": scores,
            "search_version": SEARCH_VERSION, "fitted_at": self.fitted_at,
        }

    def mirror_line(self) -> str:
        """``mirroring TTA: on (validation objective 0.8123 -> 0.8164)``: without mirroring,
        then with it, both post-processed."""
        if not self.mirror_searched or "on" not in self.mirror_scores:
            return "mirroring TTA: off (not tried on the validation cases)"
        return (f"mirroring TTA: {'on' if self.mirror else 'off'} (validation objective "
                f"{self.mirror_scores['off'][1]:.4f} -> {self.mirror_scores['on'][1]:.4f})")

    def lines(self) -> list[str]:
        """The before/after table, for the command line."""
        pp = self.postprocess
        how = "recorded fit, unchanged since " + self.fitted_at if self.reused else \
            f"{self.tried} candidate(s) tried"
        out = [f"post-processing of {self.checkpoint.name} (sha256 "
               f"{self.checkpoint_sha256[:12]}) on {len(self.case_ids)} validation case(s), "
               f"objective {self.objective}: {OBJECTIVES[self.objective]} ({how})",
               f"{'region':<8}{'before':>9}{'after':>9}   chosen"]
        for r in self.regions:
            chosen = (f"min component {r.min_component_mm3:g} mm3" if r.min_component_mm3
                      else "no component removal")
            if r.region == "ET" and pp.et_to_ncr_below_mm3:
                chosen += f", ET -> NCR below {pp.et_to_ncr_below_mm3:g} mm3"
            out.append(f"{r.region:<8}{r.before:>9.4f}{r.after:>9.4f}   {chosen}")
        out.append(f"{'mean':<8}{self.before:>9.4f}{self.after:>9.4f}   {pp.describe()}")
        if self.mirror_searched and "on" in self.mirror_scores:
            rows = ((False, *self.mirror_scores["off"]), (True, *self.mirror_scores["on"]))
            out.append("mirroring TTA (all 3 axes), the same cases, each with the "
                       "post-processing fitted on it:")
            for on, before, after in rows:
                mark = "   chosen" if on == self.mirror else ""
                out.append(f"{'on' if on else 'off':<8}{before:>9.4f}{after:>9.4f}{mark}")
        for line in self.skipped:
            out.append(f"skipped {line}")
        return out


# ---------------------------------------------------------------- scoring candidates

def crop_pair(prediction: np.ndarray, truth: np.ndarray, *,
              margin: int = CROP_MARGIN_VOX) -> tuple[np.ndarray, np.ndarray]:
    """Both label maps cut to the box of what either holds, ``margin`` voxels wider (an
    empty pair becomes one background voxel each)."""
    nonzero = np.asarray(prediction != 0) | np.asarray(truth != 0)
    if not nonzero.any():
        empty = np.zeros((1, 1, 1), np.uint8)
        return empty, empty.copy()
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(nonzero.any(axis=other))
        box.append(slice(max(int(hit[0]) - margin, 0),
                         min(int(hit[-1]) + 1 + margin, nonzero.shape[axis])))
    sl = tuple(box)
    return np.ascontiguousarray(prediction[sl]), np.ascontiguousarray(truth[sl])


def _key(mask: np.ndarray) -> bytes:
    return hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).digest()


class _Scorer:
    """The objective of a :class:`PostProcess` over cases; a region's score is reused
    whenever its predicted mask is the same as one already scored."""

    def __init__(self, cases: Sequence[ScoredCase], objective: str) -> None:
        self.cases, self.objective = list(cases), objective
        self.truth = [{r: np.isin(c.truth, REGION_LABELS[r]) for r in REGIONS}
                      for c in self.cases]
        self.memo: dict[tuple[int, str, bytes], float] = {}

    def region_score(self, i: int, region: str, mask: np.ndarray) -> float:
        key = (i, region, _key(mask))
        if key not in self.memo:
            truth = self.truth[i][region]
            if self.objective == "legacy":
                self.memo[key] = dice(mask, truth)
            else:
                self.memo[key] = lesion_wise_region(
                    mask, truth, spacing_mm=self.cases[i].spacing_mm, challenge="gli",
                    region=region).dice
        return self.memo[key]

    def __call__(self, postprocess: PostProcess) -> tuple[float, tuple[float, ...]]:
        per_region: dict[str, list[float]] = {r: [] for r in REGIONS}
        for i, case in enumerate(self.cases):
            label = apply_postprocess(case.prediction, spacing_mm=case.spacing_mm,
                                      postprocess=postprocess)
            for region in REGIONS:
                per_region[region].append(
                    self.region_score(i, region, np.isin(label, REGION_LABELS[region])))
        means = tuple(float(np.mean(v)) for v in per_region.values())
        return float(np.mean(means)), means


def score_cases(cases: Sequence[ScoredCase], *, objective: str,
                postprocess: PostProcess | None = None) -> tuple[float, tuple[float, ...]]:
    """``(mean, (WT, TC, ET))`` of ``objective`` over ``cases`` after ``postprocess``."""
    check_choice("objective", objective, OBJECTIVES)
    if not cases:
        raise TumorscopeError("no case to score")
    return _Scorer(cases, objective)(postprocess or PostProcess())


def search_postprocess(
    cases: Sequence[ScoredCase],
    *,
    objective: str = "brats2023",
    base: PostProcess | None = None,
    min_component_grid_mm3: Iterable[float] = MIN_COMPONENT_GRID_MM3,
    et_to_ncr_grid_mm3: Iterable[float] = ET_TO_NCR_GRID_MM3,
) -> tuple[PostProcess, tuple[float, float], tuple[RegionFit, ...], int]:
    """Greedy search over ``cases`` (predictions made without clean-up).

    Starting from ``base``'s thresholds with no clean-up, each region in turn (WT, TC, ET)
    tries every minimum component volume of the grid, the others held at what was chosen
    so far; then the ET-to-NCR volumes. A candidate replaces the current choice only when it
    raises the mean objective by more than 1e-9 without lowering the score of the region it
    cleans (ET for ET-to-NCR), and grids are tried smallest first, so a tie keeps the
    simpler (smaller, or no) setting. The guard matters because removing a TC component
    removes the enhancing tumour inside it too: without it, the TC step could buy ET's gain
    (fewer false-positive ET specks) with TC's loss, and delete small real cores on new
    scans, where ET's own step would have relabelled only the specks. Returns ``(chosen,
    (before, after), per-region detail, candidates tried)``.
    """
    check_choice("objective", objective, OBJECTIVES)
    if not cases:
        raise TumorscopeError("no validation case to fit post-processing on")
    score = _Scorer(cases, objective)
    current = PostProcess(thresholds=(base or PostProcess()).thresholds)
    best, regions_before = score(current)
    before, tried, regions = best, 1, regions_before

    def better(total: float, means: tuple[float, ...], index: int) -> bool:
        return total > best + _EPS and means[index] >= regions[index] - _EPS

    grid = sorted({float(v) for v in min_component_grid_mm3 if v > 0})
    for index in range(len(REGIONS)):
        chosen = current
        for volume in grid:
            sizes = list(current.min_component_mm3)
            sizes[index] = volume
            candidate = replace(current, min_component_mm3=tuple(sizes))
            total, means = score(candidate)
            tried += 1
            if better(total, means, index):
                best, chosen, regions = total, candidate, means
        current = chosen
    chosen = current
    for volume in sorted({float(v) for v in et_to_ncr_grid_mm3 if v > 0}):
        candidate = replace(current, et_to_ncr_below_mm3=volume)
        total, means = score(candidate)
        tried += 1
        if better(total, means, REGIONS.index("ET")):
            best, chosen, regions = total, candidate, means
    after, regions_after = score(chosen)
    detail = tuple(RegionFit(r, b, a, chosen.min_component_mm3[i])
                   for i, (r, b, a) in enumerate(zip(REGIONS, regions_before, regions_after,
                                                     strict=True)))
    return chosen, (before, after), detail, tried


# ---------------------------------------------------------------- reading a run's cases

def read_scored_case(run: Run, record: CaseRecord) -> ScoredCase:
    """A predicted case of ``run`` with its truth, on the truth's grid, cropped."""
    if record.label is None:
        raise LayoutError(f"case {record.case_id} has no label file recorded", path=run.path)
    truth = read_label(record.label, convention=record.label_convention)
    pred_path = run.prediction_path(record.case_id)
    pred = read_label(pred_path, convention=record.label_convention)
    pred_data = conform_to(pred.data, pred.affine, truth.data.shape, truth.affine,
                           path=pred_path, ref_path=record.label)
    p, t = crop_pair(pred_data, truth.data)
    return ScoredCase(record.case_id, p, t, tuple(float(s) for s in truth.spacing_mm))


def read_scored_cases(run: Run, case_ids: Sequence[str]
                      ) -> tuple[list[ScoredCase], dict[str, str], list[str]]:
    """``(cases, truth sha256 per case, skipped lines)`` for the ``case_ids`` predicted in
    ``run``; a case that cannot be read is skipped, named."""
    records = run.case_records()
    cases, shas, skipped = [], {}, []
    for case_id in case_ids:
        record = records.get(case_id)
        if record is None or not run.prediction_path(case_id).is_file():
            skipped.append(f"{case_id}: not predicted in {run.path}")
            continue
        try:
            cases.append(read_scored_case(run, record))
            shas[case_id] = fingerprint(record.label)["sha256"]  # type: ignore[arg-type]
        except TumorscopeError as exc:
            skipped.append(f"{case_id}: {exc}")
    return cases, shas, skipped


# ---------------------------------------------------------------- a run's fit

def _run_config(run: Run) -> Config:
    raw = run.config()
    if raw is None:
        raise LayoutError("is not a training run (no config.yaml)", path=run.path)
    return config_from_dict(raw, source=str(run.config_path))


def predict_unprocessed(run: Run, case_ids: Sequence[str], *, data_dir: str | Path,
                        cache_dir: str | Path | None = None, device: str = "auto",
                        progress: bool = False, mirror: bool = False) -> PredictReport:
    """Predict ``case_ids`` with the run's best.pt and post-processing off (the configured
    thresholds, no clean-up) into ``RUN/postprocess_off/`` (with ``mirror``, mirroring TTA
    on, into ``RUN/postprocess_off_mirror/``), reusing what is current there; predictions of
    an earlier best.pt or other settings there are replaced."""
    cfg = _run_config(run)
    checkpoint = run.checkpoint_path("best")
    if not checkpoint.is_file():
        raise LayoutError("has no checkpoints/best.pt (train it first)", path=run.path)
    base = PostProcess(thresholds=cfg.postprocess.thresholds)
    scratch = Run(run.path / (MIRRORED_DIR if mirror else UNPROCESSED_DIR))
    claim = scratch.predict_claim() if scratch.config_path.is_file() else None
    expected = inference_settings(
        cfg, overlap=cfg.train.overlap, mirror=mirror,
        autocast=autocast_dtype(cfg.train.amp, resolve_device(device)), postprocess=base)
    stale = bool(claim) and (
        claim.get("checkpoint_sha256") != fingerprint(checkpoint)["sha256"]
        or claim.get("settings") != expected)
    return predict_run(checkpoint, data_dir, scratch.path, case_ids=case_ids,
                       cache_dir=cache_dir or cfg.data.cache_dir or default_cache_dir(),
                       device=device, force=stale, progress=progress, postprocess=base,
                       mirror=mirror)


def recorded_fit(run: Run) -> tuple[PostProcess, dict[str, Any]] | None:
    """The post-processing a run's config.yaml records as fitted, with its record."""
    section = (run.config() or {}).get("postprocess")
    fitted = section.get(RECORD_KEY) if isinstance(section, dict) else None
    if not isinstance(fitted, dict):
        return None
    return PostProcess.from_dict(section, path=run.config_path), fitted


def _reusable(recorded: tuple[PostProcess, dict[str, Any]] | None, *, sha256: str,
              case_ids: Sequence[str], truth: dict[str, str], objective: str,
              base: PostProcess, reports: Sequence[PredictReport],
              mirror_search: bool) -> bool:
    if recorded is None or any(r.predicted or r.failed for r in reports):
        return False
    post, fitted = recorded
    mirrored = (fitted.get("mirror_scores") or {}).get("on") if isinstance(
        fitted.get("mirror_scores"), dict) else None
    return (fitted.get("checkpoint_sha256") == sha256
            and fitted.get("val_case_ids") == list(case_ids)
            and fitted.get("truth_sha256") == truth and fitted.get("objective") == objective
            and fitted.get("search_version") == SEARCH_VERSION
            and post.thresholds == base.thresholds
            and isinstance(fitted.get("regions"), dict)
            and isinstance(fitted.get("mirror"), bool)
            # A fit that skipped mirroring is redone when mirroring is to be tried, and the
            # other way round (then the record says it was not tried).
            and bool(fitted.get("mirror_searched")) == mirror_search
            and (not mirror_search or isinstance(mirrored, dict)))


def _from_record(post: PostProcess, fitted: dict[str, Any], *, checkpoint: Path, run: Run,
                 case_ids: Sequence[str]) -> FitResult:
    regions = tuple(RegionFit(r, float(fitted["regions"][r]["before"]),
                              float(fitted["regions"][r]["after"]),
                              post.min_component_mm3[i]) for i, r in enumerate(REGIONS))
    scores = fitted.get("mirror_scores") or {}
    return FitResult(post, str(fitted["objective"]), float(fitted["before"]),
                     float(fitted["after"]), regions, tuple(case_ids), checkpoint,
                     str(fitted["checkpoint_sha256"]), run.config_path,
                     str(fitted.get("fitted_at", "")), 0, reused=True,
                     truth_sha256=dict(fitted.get("truth_sha256") or {}),
                     mirror=bool(fitted.get("mirror")),
                     mirror_searched=bool(fitted.get("mirror_searched")),
                     mirror_scores={k: (float(v["before"]), float(v["after"]))
                                    for k, v in scores.items()})


def record_fit(run: Run, result: FitResult) -> None:
    """Write ``result`` into the run's config.yaml ``postprocess`` section (its settings and
    the ``fitted`` record), under the run's lock, atomically; the rest stays as it is."""
    with run.lock():
        raw = run.config() or {}
        raw["postprocess"] = {**result.postprocess.to_dict(),
                              RECORD_KEY: result.record()}
        run.write_config(raw)


def _predicted_cases(report: PredictReport, val: Sequence[str], data: Path
                     ) -> tuple[dict[str, ScoredCase], dict[str, str], list[str]]:
    """The validation cases ``report``'s run holds readable, their truth hashes, and one
    line per case that could not be predicted or read."""
    missing = sorted(set(val) - set(report.reused) - set(report.predicted))
    skipped = [*report.failed, *(f"{c}: not found in {data}" for c in missing
                                 if not any(f.startswith(f"{c}:") for f in report.failed))]
    cases, truth, unreadable = read_scored_cases(report.run, [c for c in val
                                                              if c not in missing])
    skipped += [line for line in unreadable if line not in skipped]
    return {c.case_id: c for c in cases}, truth, skipped


def fit_postprocess(run_dir: str | Path, *, objective: str = "brats2023",
                    data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                    device: str = "auto", progress: bool = False, refit: bool = False,
                    mirror_search: bool = True,
                    say: Callable[[str], None] = log.info) -> FitResult:
    """Fit post-processing and mirroring TTA for the run's best.pt on its validation split
    and record both.

    ``data_dir`` holds the cases (default: the run's ``data.root``). The validation cases
    are predicted with post-processing off into ``RUN/postprocess_off/`` (reused while
    current); the search is :func:`search_postprocess`. With ``mirror_search`` (default) they
    are also predicted mirrored into ``RUN/postprocess_off_mirror/`` (8 passes a window, so
    about 8 times the time) and searched alike, and mirroring (with the post-processing
    fitted on the mirrored predictions) is chosen when it strictly raises the post-processed
    objective; without it,
    mirroring is recorded off, not tried. A recorded fit whose checkpoint, cases, truth,
    objective, search and mirror search are all unchanged is returned as it is (``reused``)
    unless ``refit``. Raises :class:`TumorscopeError` when no validation case can be scored.
    """
    check_choice("objective", objective, OBJECTIVES)
    run = Run(Path(run_dir))
    cfg = _run_config(run)
    val = run.split().get("val")
    if not val:
        raise LayoutError("has no validation cases (split.json lists none): post-processing "
                          "is fitted on a training run's validation split", path=run.path)
    checkpoint = run.checkpoint_path("best")
    data = Path(data_dir) if data_dir is not None else Path(cfg.data.root)
    say(f"post-processing: the {len(val)} validation case(s) predicted without it, in "
        f"{run.path / UNPROCESSED_DIR} (current predictions reused)")
    report = predict_unprocessed(run, val, data_dir=data, cache_dir=cache_dir, device=device,
                                 progress=progress)
    plain, truth, skipped = _predicted_cases(report, val, data)
    reports = [report]
    mirrored: dict[str, ScoredCase] = {}
    if mirror_search:
        say(f"mirroring TTA: the same case(s) predicted mirrored on all 3 axes, in "
            f"{run.path / MIRRORED_DIR} (current predictions reused)")
        t0 = time.perf_counter()
        mreport = predict_unprocessed(run, val, data_dir=data, cache_dir=cache_dir,
                                      device=device, progress=progress, mirror=True)
        log.info("mirrored validation predictions: %d predicted, %d reused in %.1f s",
                 len(mreport.predicted), len(mreport.reused), time.perf_counter() - t0)
        reports.append(mreport)
        mirrored, _, mskipped = _predicted_cases(mreport, val, data)
        skipped += [f"{line} (mirrored)" for line in mskipped]
    # Both sets are scored on the same cases, or the comparison would not be one.
    ids = [c for c in val if c in plain and (not mirror_search or c in mirrored)]
    if not ids:
        raise TumorscopeError(f"no validation case could be scored ({'; '.join(skipped[:3])})",
                              path=run.path)
    cases = [plain[c] for c in ids]
    truth = {c: truth[c] for c in ids}
    sha = fingerprint(checkpoint)["sha256"]
    base = PostProcess(thresholds=cfg.postprocess.thresholds)
    recorded = recorded_fit(run)
    if not refit and not skipped and _reusable(recorded, sha256=sha, case_ids=ids,
                                               truth=truth, objective=objective, base=base,
                                               reports=reports, mirror_search=mirror_search):
        assert recorded is not None
        return _from_record(*recorded, checkpoint=checkpoint, run=run, case_ids=ids)
    t0 = time.perf_counter()
    chosen, (before, after), detail, tried = search_postprocess(cases, objective=objective,
                                                                base=base)
    log.info("post-processing search: %d candidates in %.1f s", tried,
             time.perf_counter() - t0)
    mirror, scores = False, {"off": (before, after)}
    if mirror_search:
        # The mirrored predictions get a search of their own: the choice is between the two
        # final predictions predict would make, each with the post-processing fitted on it.
        mcases = [mirrored[c] for c in ids]
        mchosen, (m_before, m_after), mdetail, mtried = search_postprocess(
            mcases, objective=objective, base=base)
        scores["on"] = (m_before, m_after)
        tried += mtried
        mirror = m_after > after + _EPS
        if mirror:
            chosen, before, after, detail = mchosen, m_before, m_after, mdetail
    result = FitResult(chosen, objective, before, after, detail, tuple(ids), checkpoint, sha,
                       run.config_path, time.strftime("%Y-%m-%dT%H:%M:%S%z"), tried,
                       skipped=tuple(skipped), truth_sha256=truth, mirror=mirror,
                       mirror_searched=mirror_search, mirror_scores=scores)
    record_fit(run, result)
    return result


def compare_postprocess(before: Run, after: Run, case_ids: Sequence[str]) -> list[str]:
    """A table of both objectives per region on ``case_ids``, scored from the predictions
    of ``before`` (without post-processing) and of ``after`` (with it)."""
    scored = {}
    for name, run in (("before", before), ("after", after)):
        cases, _, skipped = read_scored_cases(run, case_ids)
        if skipped or not cases:
            raise TumorscopeError(f"cannot compare post-processing: {'; '.join(skipped[:3])}",
                                  path=run.path)
        scored[name] = {o: score_cases(cases, objective=o) for o in OBJECTIVES}
    lines = [f"{'region':<8}{'Dice before':>13}{'after':>8}{'lesion-wise before':>20}"
             f"{'after':>8}"]
    for i, region in enumerate([*REGIONS, "mean"]):
        def value(name: str, objective: str, i: int = i) -> float:
            total, per_region = scored[name][objective]
            return total if i == len(REGIONS) else per_region[i]

        lines.append(f"{region:<8}{value('before', 'legacy'):>13.4f}"
                     f"{value('after', 'legacy'):>8.4f}{value('before', 'brats2023'):>20.4f}"
                     f"{value('after', 'brats2023'):>8.4f}")
    return lines


def describe_recorded(run_dir: str | Path) -> str:
    """One line: the post-processing the run records as fitted, and whether it applies to
    its best.pt now."""
    run = Run(Path(run_dir))
    recorded = recorded_fit(run)
    if recorded is None:
        return (f"{run.path}: no post-processing fitted (fit it with tumorscope postprocess "
                f"{run.path} --fit)")
    post, fitted = recorded
    best = run.checkpoint_path("best")
    if not best.is_file():
        state = "the run has no checkpoints/best.pt for it to apply to"
    elif fingerprint(best)["sha256"] == fitted.get("checkpoint_sha256"):
        state = "applies to its best.pt"
    else:
        state = "best.pt has changed since, so it is not applied: fit again"
    choice = fitted_mirror(fitted)
    mirroring = "mirroring TTA not tried" if choice is None else \
        f"mirroring TTA {'on' if choice.on else 'off'} ({choice.why})"
    return (f"{run.config_path}: {post.describe()}; {mirroring}; fitted "
            f"{fitted.get('fitted_at', '?')} on "
            f"{len(fitted.get('val_case_ids') or [])} validation case(s), objective "
            f"{fitted.get('objective', '?')} {fitted.get('before', '?')} -> "
            f"{fitted.get('after', '?')}; {state}")
