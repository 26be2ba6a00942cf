"""Scoring a run's predictions against ground truth into the run's metrics table.

Scores are merged per case, never thrown away: a case that cannot be scored now keeps its
previous rows, marked stale with the reason, and an evaluation that can score nothing
leaves ``metrics.csv`` as it was and says why. Every row names the content hashes of the
prediction and the truth it scored, so a reader can tell a current score from an old one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tumorscope.core.data.cases import discover
from tumorscope.core.data.geometry import conform_to
from tumorscope.core.data.nifti import read_label
from tumorscope.core.errors import LayoutError, TumorscopeError, check_choice
from tumorscope.core.fingerprint import fingerprint
from tumorscope.core.scoring.lesions import CHALLENGES, Challenge
from tumorscope.core.scoring.scorings import SCORINGS, Scoring, check_scorings, score_case
from tumorscope.core.scoring.summary import summarise
from tumorscope.core.store import STATUS_OK, Run, format_stat, parse_stat

METADATA_COLUMNS = ("grade", "age", "synthetic")
SCORING_VERSION = 2
"""Bumped whenever a metric's definition changes, so stored rows are scored again
(2: every HD95 definition, lesion-wise scorings, lesions.csv)."""


class Ranks(Protocol):
    """The processes an evaluation shares its cases with, as
    :class:`tumorscope.core.distributed.DistInfo` gives them (scoring needs no torch, so it
    is handed one rather than importing it)."""

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    @property
    def main(self) -> bool: ...

    def shard(self, items: Sequence[Any]) -> list[Any]: ...

    def gather(self, obj: Any) -> list[Any]: ...

    def barrier(self) -> None: ...


@dataclass
class EvaluateReport:
    """What one evaluation did: rows of the whole table, and per case what happened."""

    rows: list[dict[str, Any]]
    scored: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    unscored: dict[str, str] = field(default_factory=dict)
    no_truth: list[str] = field(default_factory=list)
    scorings: tuple[str, ...] = ("legacy",)
    challenge: str = "gli"
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def current_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("status") == STATUS_OK]

    @property
    def skipped(self) -> list[str]:
        """One line per case that has ground truth but could not be scored."""
        return [f"{case_id}: {reason}" for case_id, reason in self.unscored.items()
                if case_id not in self.no_truth]


def _truth_sources(run: Run, labels_dir: str | Path | None
                   ) -> tuple[dict[str, tuple[Path, str, dict[str, Any]]], str]:
    truth: dict[str, tuple[Path, str, dict[str, Any]]] = {}
    if labels_dir is not None:
        for case in discover(labels_dir):
            if case.label is not None:
                truth[case.case_id] = (case.label, case.label_convention, case.metadata)
        return truth, f"no label file for it in {labels_dir}"
    for case_id, record in run.case_records().items():
        if record.label is not None:
            truth[case_id] = (record.label, record.label_convention, record.metadata)
    return truth, "no label file recorded for it at prediction (give --labels DIR)"


def _truth_keys(fp: dict[str, Any]) -> dict[str, Any]:
    """The columns that say which ground truth a row scored (and let a reader check it)."""
    return {"truth_sha256": fp["sha256"], "truth_path": fp["path"], "truth_size": fp["size"],
            "truth_stat": format_stat(fp["stat"])}


def _truth_fingerprint(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The truth fingerprint stored in a case's rows, so an unchanged label is not re-hashed."""
    if not rows:
        return None
    row = rows[0]
    return {"path": row.get("truth_path"), "stat": parse_stat(row.get("truth_stat")),
            "sha256": row.get("truth_sha256")}


def _lesion_rows(found: Sequence[dict[str, Any]], affine: np.ndarray,
                 keys: dict[str, Any]) -> list[dict[str, Any]]:
    """Lesion rows with centroids placed in world mm by the truth's affine."""
    out = []
    for row in found:
        row = dict(row)
        x, y, z = (affine @ np.array([*row.pop("centroid_vox"), 1.0]))[:3]
        out.append({**row, "centroid_x_mm": round(float(x), 3),
                    "centroid_y_mm": round(float(y), 3), "centroid_z_mm": round(float(z), 3),
                    "prediction_sha256": keys["prediction_sha256"],
                    "truth_sha256": keys["truth_sha256"]})
    return out


def _reusable(previous: list[dict[str, Any]], lesions: list[dict[str, Any]], *,
              pred_sha: str, truth_sha: str, scoring_key: str, challenge: str) -> bool:
    """True when a case's stored rows scored this prediction and truth the way asked now
    (and every lesion row they list is still in lesions.csv)."""
    if not previous or not all(
            r.get("prediction_sha256") == pred_sha and r.get("truth_sha256") == truth_sha
            and r.get("scoring_version") == SCORING_VERSION and r.get("scorings") == scoring_key
            and r.get("challenge") == challenge for r in previous):
        return False
    listed = sum(1 for r in lesions if r.get("prediction_sha256") == pred_sha
                 and r.get("truth_sha256") == truth_sha)
    return listed == previous[0].get("lesions_listed", 0)


def evaluate_run(run: Run, labels_dir: str | Path | None = None, *,
                 scorings: Sequence[Scoring] = SCORINGS, challenge: Challenge = "gli",
                 progress: bool = True, on_case: Callable[[str, str], None] | None = None,
                 ranks: Ranks | None = None) -> EvaluateReport:
    """Score the run's predictions into ``metrics.csv``, ``lesions.csv`` and ``summary.json``.

    ``metrics.csv`` has one row per case x region with the legacy columns (every HD95
    definition among them) and each lesion-wise scoring's columns (``brats2023_*``,
    ``brats2025_*``); ``lesions.csv`` one row per lesion; ``summary.json`` the statistics of
    the current rows per scoring (:mod:`.summary`). ``scorings`` picks the lesion-wise
    scorings (legacy is always computed); ``challenge`` the BraTS 2023 sub-challenge.

    Ground truth comes from ``labels_dir`` (any BraTS layout) or, by default, from the
    label files recorded in the run's ``cases.json``. A prediction stored in another voxel
    order of the truth's world grid is reoriented; another grid is refused for that case.
    Rows whose prediction and truth are unchanged (content hashes) and that were scored the
    same way are kept as they are.

    Raises :class:`LayoutError` naming the run when there is no prediction, or when no
    prediction could be scored (the tables are then left untouched).

    ``on_case(case_id, what)`` is told of each case as it is scored, reused or skipped.
    With ``ranks`` (under torchrun) rank r scores the run's sorted cases ``r::world_size``
    and merges them into the tables under the run's lock; once every rank has, rank 0
    writes ``summary.json`` from the merged tables, and every rank returns the report of
    all of them, the same as one process scoring every case would give.
    """
    from tqdm import tqdm

    chosen = check_scorings(scorings)
    check_choice("challenge", challenge, tuple(CHALLENGES))
    scoring_key = " ".join(chosen)

    records = run.case_records()
    ids = run.case_ids(records)
    if not ids:
        raise LayoutError(f"no prediction found in {run.predictions_dir} (run tumorscope "
                          "predict first)", path=run.path)
    truth, no_truth = _truth_sources(run, labels_dir)
    old_rows: dict[str, list[dict[str, Any]]] = {}
    for row in run.metrics_rows():  # a damaged table is refused here, before any work
        old_rows.setdefault(str(row["case_id"]), []).append(row)
    problems = run.score_problems([r for rs in old_rows.values() for r in rs], records)
    old_lesions: dict[str, list[dict[str, Any]]] = {}
    for row in run.lesion_rows():
        old_lesions.setdefault(str(row["case_id"]), []).append(row)
    claim = run.predict_claim()

    scored: dict[str, list[dict[str, Any]]] = {}
    lesions: dict[str, list[dict[str, Any]]] = {}
    reused: list[str] = []
    unscored: dict[str, str] = {}
    no_truth_ids: list[str] = []
    mine = ranks.shard(ids) if ranks is not None else ids
    main = ranks is None or ranks.main

    def tell(case_id: str, what: str) -> None:
        if on_case is not None:
            on_case(case_id, what)

    def score(case_id: str) -> str:
        """Score one case into ``scored`` / ``reused`` / ``unscored``; what happened."""
        if case_id not in truth:
            unscored[case_id] = no_truth
            no_truth_ids.append(case_id)
            return "no ground truth"
        label_path, convention, meta = truth[case_id]
        pred_path = run.prediction_path(case_id)
        record = records.get(case_id)
        stale = run.prediction_problem(record, claim) if record is not None else None
        if stale is not None:
            unscored[case_id] = stale
            return f"not scored ({stale})"
        try:
            pred_fp = fingerprint(pred_path, record.prediction if record else None)
            if record is not None and record.prediction is not None and \
                    pred_fp["sha256"] != record.prediction.get("sha256"):
                unscored[case_id] = ("its prediction file is not the one tumorscope predict "
                                     "wrote (changed by hand?); run tumorscope predict again")
                return f"not scored ({unscored[case_id]})"
            previous = old_rows.get(case_id, [])
            truth_fp = fingerprint(label_path, _truth_fingerprint(previous))
            if case_id not in problems and _reusable(
                    previous, old_lesions.get(case_id, []), pred_sha=pred_fp["sha256"],
                    truth_sha=truth_fp["sha256"], scoring_key=scoring_key,
                    challenge=challenge):
                scored[case_id] = [{**r, **_truth_keys(truth_fp)} for r in previous]
                reused.append(case_id)
                return "unchanged"
            gt = read_label(label_path, convention=convention)
            pr = read_label(pred_path, convention=convention)
            pred = conform_to(pr.data, pr.affine, gt.data.shape, gt.affine, path=pred_path,
                              ref_path=label_path)
            scores = score_case(pred, gt.data, spacing_mm=gt.spacing_mm, scorings=chosen,
                                challenge=challenge)
        except TumorscopeError as exc:
            unscored[case_id] = str(exc)
            return f"not scored ({exc})"
        extra = {k: meta.get(k) for k in METADATA_COLUMNS}
        keys = {"prediction_sha256": pred_fp["sha256"], **_truth_keys(truth_fp),
                "scoring_version": SCORING_VERSION, "scorings": scoring_key,
                "challenge": challenge, "lesions_listed": len(scores.lesions)}
        scored[case_id] = [{"case_id": case_id, **row, **extra, **keys} for row in scores.rows]
        lesions[case_id] = _lesion_rows(scores.lesions, gt.affine, keys)
        return "scored"

    for case_id in tqdm(mine, desc="evaluate", unit="case", disable=not (progress and main)):
        tell(case_id, score(case_id))
    # Rows of cases whose prediction has left the run stay, marked, rather than vanish
    # (rank 0 marks them: one writer per case).
    if main:
        for case_id in old_rows:
            if case_id not in scored and case_id not in unscored and case_id not in ids:
                unscored[case_id] = "its prediction is no longer in the run"
    group = ranks if ranks is not None and ranks.world_size > 1 else None
    everyone = _everyone(group, ids, scored, reused, unscored, no_truth_ids) \
        if group is not None else (set(scored), reused, unscored, no_truth_ids)
    if not everyone[0]:  # decided on all the ranks' cases, so every rank stops alike
        reasons = "; ".join(f"{c}: {r}" for c, r in list(everyone[2].items())[:3])
        raise LayoutError(f"no prediction could be scored ({reasons}); metrics.csv left as "
                          "it was", path=run.path)
    # Cases no longer scorable keep no lesion rows: their metric rows say stale, and a lesion
    # list shown without a current score would mislead.
    for case_id in unscored:
        if case_id in old_lesions:
            lesions[case_id] = []
    rows = run.merge_metrics(scored, unscored, lesions)
    if group is not None:
        group.barrier()  # every rank's cases are in the tables: the summary is of them all
        rows = run.metrics_rows()
    current = [r for r in rows if r.get("status") == STATUS_OK]
    stale_cases = {str(r["case_id"]) for r in rows if r.get("status") != STATUS_OK}
    summary = summarise(current, scorings=chosen, challenge=challenge,
                        not_current=len(stale_cases))
    if main:
        run.write_summary(summary)
    all_scored, all_reused, all_unscored, all_no_truth = everyone
    return EvaluateReport(rows, sorted(set(all_scored) - set(all_reused)), all_reused,
                          all_unscored, all_no_truth, chosen, challenge, summary)


def _everyone(ranks: Ranks, ids: list[str], scored: dict[str, Any], reused: list[str],
              unscored: dict[str, str], no_truth: list[str]
              ) -> tuple[set[str], list[str], dict[str, str], list[str]]:
    """Every rank's scored ids, reused ids, unscored cases and cases without truth, listed
    in case order as one process would list them (a collective: every rank calls it)."""
    shares = ranks.gather((sorted(scored), reused, unscored, no_truth))
    position = {case_id: i for i, case_id in enumerate(ids)}

    def ordered(items: list[str]) -> list[str]:
        return sorted(items, key=lambda c: position.get(c, len(ids)))

    merged = {c: why for share in shares for c, why in share[2].items()}
    # Cases gone from the run (rank 0's, not in ids) keep their order, after the others.
    return ({c for share in shares for c in share[0]},
            ordered([c for share in shares for c in share[1]]),
            {c: merged[c] for c in ordered(list(merged))},
            ordered([c for share in shares for c in share[3]]))
