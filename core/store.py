"""Results store: the run directory that is the contract between core, render and the app.

::

    RUN/
      config.yaml              resolved config of the training or prediction (its ``predict``
                               section names the checkpoint and settings of the predictions)
      checkpoints/             best.pt and last.pt, written atomically
      log.csv                  one row per epoch: loss, Dice per region, lr, voxels/s
      cases.json               per case: source files, metadata, and the provenance of its
                               prediction (source and checkpoint hashes, settings)
      predictions/<case>.nii.gz
      metrics.csv              one row per case x region, every metric, the hashes of the
                               prediction and truth it scored, and a status (ok / stale: why)
      meshes/<case>/           render's cache, keyed by content

Nobody else parses these paths: scripts and the app go through :func:`open_runs` and
:class:`Run`. Writers change ``cases.json`` and ``metrics.csv`` one case at a time under the
run's lock file (``filelock``), each write atomic, so concurrent ``predict`` processes and a
``kill -9`` never lose a finished case.

>>> import tempfile
>>> run = Run(Path(tempfile.mkdtemp()))
>>> run.record_case(CaseRecord("A", images={}, label=None))
>>> sorted(run.case_records())
['A']
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from tumorscope.core.data.cases import Case
from tumorscope.core.data.nifti import (
    atomic_write_json,
    atomic_write_text,
    is_temp_file,
    stale_temp_files,
)
from tumorscope.core.data.slice2d import SliceRef
from tumorscope.core.errors import LayoutError, yaml_problem
from tumorscope.core.fingerprint import content_unchanged

log = logging.getLogger(__name__)

MARKERS = ("config.yaml", "predictions", "metrics.csv", "log.csv")
LOCK_TIMEOUT_S = 120.0
TRACK_2D = "2d"
"""``metadata["track"]`` of a 2-D slice's record in cases.json."""

_FRACTION = (0.0, 1.0)
_DISTANCE = (0.0, math.inf)

METRIC_RANGES: dict[str, tuple[float, float]] = {
    "dice": _FRACTION, "jaccard": _FRACTION, "sensitivity": _FRACTION,
    "specificity": _FRACTION, "hd95_monai_mm": _DISTANCE, "hd95_pooled_mm": _DISTANCE,
    "hd95_surfel_mm": _DISTANCE, "volume_truth_ml": _DISTANCE, "volume_pred_ml": _DISTANCE,
    "volume_diff_ml": (-math.inf, math.inf),
    "brats2023_dice": _FRACTION, "brats2023_hd95_mm": _DISTANCE, "brats2023_tp": _DISTANCE,
    "brats2023_fn": _DISTANCE, "brats2023_fp": _DISTANCE,
    "brats2025_rq": _FRACTION, "brats2025_sq_dice": _FRACTION,
    "brats2025_sq_hd95_mm": _DISTANCE, "brats2025_tp": _DISTANCE, "brats2025_fn": _DISTANCE,
    "brats2025_fp": _DISTANCE,
    # 2-D slices: areas, HD95 in pixels where the file records no pixel size, type confidence
    "area_truth_mm2": _DISTANCE, "area_pred_mm2": _DISTANCE, "hd95_px": _DISTANCE,
    "confidence": _FRACTION, "p_meningioma": _FRACTION, "p_glioma": _FRACTION,
    "p_pituitary": _FRACTION,
}
"""What each metric can be; metrics.csv holding anything else is refused by line."""

UNDEFINED_OK = frozenset({"brats2025_rq", "brats2025_sq_dice", "brats2025_sq_hd95_mm"})
"""Metrics the reference leaves NaN in some cases (no lesion in truth nor prediction)."""

INFINITE_OK = frozenset({"brats2025_sq_hd95_mm"})
"""Metrics the reference sets infinite in some cases (lesions, but no matched pair)."""

NUMERIC_METRIC_COLUMNS = tuple(METRIC_RANGES)
"""Columns of metrics.csv that must hold numbers (or be empty)."""

LESION_RANGES: dict[str, tuple[float, float]] = {
    "volume_ml": _DISTANCE, "dice": _FRACTION, "hd95_mm": _DISTANCE,
    "centroid_x_mm": (-math.inf, math.inf), "centroid_y_mm": (-math.inf, math.inf),
    "centroid_z_mm": (-math.inf, math.inf),
}
"""What each number of lesions.csv can be."""

LESION_STATUSES = ("TP", "FN", "FP", "ignored")

STATUS_OK = "ok"


@dataclass(frozen=True)
class CaseRecord:
    """What predict recorded about a case in ``cases.json``.

    ``provenance`` says what produced the prediction: ``sources`` (modality -> content
    fingerprint), ``checkpoint`` (path, sha256) and ``settings`` (overlap, mirroring, threshold,
    post-processing, grid); ``prediction`` is the fingerprint of the written prediction file.
    Both are ``None`` in runs written before provenance was recorded.
    """

    case_id: str
    images: dict[str, Path]
    label: Path | None
    layout: str = "brats2021"
    label_convention: str = "brats2020"
    metadata: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None

    @property
    def synthetic(self) -> bool:
        return bool(self.metadata.get("synthetic", False))

    @property
    def has_truth(self) -> bool:
        return self.label is not None and self.label.is_file()

    @property
    def brain_image(self) -> Path | None:
        """The image the brain context surface is drawn from: T1, else any modality."""
        for modality in ("t1", "t1ce", "t2", "flair"):
            if modality in self.images and self.images[modality].is_file():
                return self.images[modality]
        return None

    @classmethod
    def of_case(cls, case: Case, *, provenance: dict[str, Any] | None,
                prediction: dict[str, Any] | None) -> CaseRecord:
        """The record of a 3-D case's prediction: its files, layout and metadata as found."""
        return cls(case_id=case.case_id,
                   images={m: p.resolve() for m, p in case.images.items()},
                   label=case.label.resolve() if case.label else None,
                   layout=case.layout, label_convention=case.label_convention,
                   metadata=case.metadata, provenance=provenance, prediction=prediction)

    @property
    def is_slice(self) -> bool:
        """A 2-D slice's record (``metadata["track"] == "2d"``), not a 3-D case's."""
        return self.metadata.get("track") == TRACK_2D

    def slice_ref(self) -> SliceRef:
        """The :class:`SliceRef` a 2-D record was predicted from (to read its truth again)."""
        image = self.images["image"]
        mask = self.label if self.label is not None and self.label != image else None
        return SliceRef(self.case_id, self.layout, image, mask_path=mask,  # type: ignore[arg-type]
                        patient_id=self.metadata.get("patient_id"))

    @property
    def checkpoint_sha256(self) -> str | None:
        return ((self.provenance or {}).get("checkpoint") or {}).get("sha256")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "images": {m: str(p) for m, p in self.images.items()},
            "label": str(self.label) if self.label is not None else None,
            "layout": self.layout,
            "label_convention": self.label_convention,
            "metadata": dict(self.metadata),
        }
        if self.provenance is not None:
            out["provenance"] = self.provenance
        if self.prediction is not None:
            out["prediction"] = self.prediction
        return out

    @classmethod
    def from_dict(cls, case_id: str, d: Mapping[str, Any], *,
                  path: Path | None = None) -> CaseRecord:
        """Parse one entry of cases.json; a wrong shape raises :class:`LayoutError`."""
        def bad(what: str) -> LayoutError:
            return LayoutError(f"case {case_id!r}: {what}", path=path)

        if not isinstance(d, Mapping):
            raise bad(f"expected an object, got {type(d).__name__}")
        images = d.get("images") or {}
        if not isinstance(images, Mapping) or not all(
                isinstance(v, str) for v in images.values()):
            raise bad("'images' must map modality names to file paths")
        label = d.get("label")
        if label is not None and not isinstance(label, str):
            raise bad(f"'label' must be a path or null, got {label!r}")
        metadata = d.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise bad("'metadata' must be an object")
        for key in ("provenance", "prediction"):
            if d.get(key) is not None and not isinstance(d[key], Mapping):
                raise bad(f"{key!r} must be an object")
        for key in ("layout", "label_convention"):
            if d.get(key) is not None and not isinstance(d[key], str):
                raise bad(f"{key!r} must be a string")
        return cls(
            case_id=case_id,
            images={str(m): Path(p) for m, p in images.items()},
            label=Path(label) if label else None,
            layout=d.get("layout") or "brats2021",
            label_convention=d.get("label_convention") or "brats2020",
            metadata=dict(metadata),
            provenance=dict(d["provenance"]) if d.get("provenance") else None,
            prediction=dict(d["prediction"]) if d.get("prediction") else None,
        )


@dataclass(frozen=True)
class Run:
    """One run directory. Every accessor tolerates parts that are not there yet."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    # -- paths (the only place they are spelled) --
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint_path(self, which: str = "best") -> Path:
        return self.checkpoint_dir / f"{which}.pt"

    @property
    def log_path(self) -> Path:
        return self.path / "log.csv"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def lesions_path(self) -> Path:
        return self.path / "lesions.csv"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def cases_path(self) -> Path:
        return self.path / "cases.json"

    @property
    def split_path(self) -> Path:
        return self.path / "split.json"

    @property
    def ddp_check_path(self) -> Path:
        return self.path / "ddp_check.json"

    @property
    def lock_path(self) -> Path:
        return self.path / ".run.lock"

    @property
    def predictions_dir(self) -> Path:
        return self.path / "predictions"

    def prediction_path(self, case_id: str) -> Path:
        return self.predictions_dir / f"{case_id}.nii.gz"

    def probabilities_path(self, case_id: str) -> Path:
        return self.predictions_dir / f"{case_id}_prob.nii.gz"

    def tta_variance_path(self, case_id: str) -> Path:
        """The variance of the mirrored passes' probabilities (``predict --mirror`` with
        ``--save-probabilities``): a folder of its own, so it is never listed as a
        prediction (every other ``predictions/*.nii.gz`` but ``*_prob`` is one)."""
        return self.predictions_dir / "tta_variance" / f"{case_id}.nii.gz"

    def mesh_dir(self, case_id: str) -> Path:
        return self.path / "meshes" / case_id

    def owns_checkpoint(self, checkpoint: str | Path) -> bool:
        """Whether ``checkpoint`` is one of this run's own (a training run predicting itself)."""
        try:
            return Path(checkpoint).resolve().parent == self.checkpoint_dir.resolve()
        except OSError:
            return False

    # -- locking --
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock file: one writer of cases.json / metrics.csv at a time."""
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(str(self.lock_path), timeout=LOCK_TIMEOUT_S):
                yield
        except Timeout:
            raise LayoutError(f"run is locked by another process for more than "
                              f"{LOCK_TIMEOUT_S:.0f} s ({self.lock_path.name})",
                              path=self.path) from None

    # -- reading --
    def config(self) -> dict[str, Any] | None:
        """The resolved config as plain values, or ``None`` if the run has none."""
        if not self.config_path.is_file():
            return None
        try:
            raw = yaml.safe_load(self.config_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise LayoutError(f"config.yaml is not valid YAML ({yaml_problem(exc)})",
                              path=self.config_path) from None
        except UnicodeDecodeError:
            raise LayoutError("config.yaml is not a text file", path=self.config_path) from None
        if not isinstance(raw, dict):
            raise LayoutError(f"config.yaml must hold a mapping, got {type(raw).__name__}",
                              path=self.config_path)
        return raw

    def _prediction_files(self) -> list[str]:
        folder = self.predictions_dir
        if not folder.is_dir():
            return []
        return sorted(p.name[: -len(".nii.gz")] for p in folder.glob("*.nii.gz")
                      if not is_temp_file(p.name) and not p.name.startswith(".")
                      and not p.name.endswith("_prob.nii.gz"))

    def case_ids(self, records: Mapping[str, CaseRecord] | None = None) -> list[str]:
        """Cases with a prediction, sorted: those predict recorded in cases.json whose file
        is there (in a run from before records, every prediction file). Temporaries of
        unfinished writes and files predict did not write are never cases. ``records``
        (``case_records()``) may be passed in by a caller that has read them already."""
        files = self._prediction_files()
        records = self.case_records() if records is None else records
        if not records:
            return files
        return [c for c in files if c in records]

    def stray_files(self, records: Mapping[str, CaseRecord] | None = None) -> list[Path]:
        """Files in predictions/ that look like predictions but that predict did not record
        (copied in by hand, left by another tool): never listed as cases, but reported."""
        records = self.case_records() if records is None else records
        if not records:
            return []
        return [self.prediction_path(c) for c in self._prediction_files() if c not in records]

    def cases(self) -> dict[str, dict[str, Any]]:
        """cases.json as plain values: per case ``images``, ``label``, ``layout``,
        ``metadata``, ``provenance``, ``prediction`` (see :class:`CaseRecord`)."""
        return {k: r.to_dict() for k, r in self.case_records().items()}

    def case_records(self) -> dict[str, CaseRecord]:
        """Every case of ``cases.json`` as a :class:`CaseRecord` (checked, shape and types)."""
        if not self.cases_path.is_file():
            return {}
        try:
            raw = json.loads(self.cases_path.read_text())
        except json.JSONDecodeError as exc:
            raise LayoutError(f"cases.json is not valid JSON ({exc})",
                              path=self.cases_path) from None
        except UnicodeDecodeError:
            raise LayoutError("cases.json is not a text file", path=self.cases_path) from None
        if not isinstance(raw, dict):
            raise LayoutError(f"cases.json must map case ids to records, got "
                              f"{type(raw).__name__}", path=self.cases_path)
        return {str(k): CaseRecord.from_dict(str(k), v, path=self.cases_path)
                for k, v in raw.items()}

    def case_record(self, case_id: str) -> CaseRecord:
        """The record of one case; a case predicted without a record gets an empty one."""
        return self.case_records().get(case_id) or CaseRecord(case_id, {}, None)

    def split(self) -> dict[str, list[str]]:
        """Training and validation case ids of a training run ({} if it has none)."""
        if not self.split_path.is_file():
            return {}
        try:
            raw = json.loads(self.split_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LayoutError(f"split.json is not valid JSON ({exc})",
                              path=self.split_path) from None
        if not isinstance(raw, dict) or not all(
                isinstance(v, list) and all(isinstance(i, str) for i in v)
                for v in raw.values()):
            raise LayoutError("split.json must map split names to lists of case ids",
                              path=self.split_path)
        return raw

    def metrics_rows(self) -> list[dict[str, Any]]:
        """Rows of metrics.csv (one per case x region) with numbers parsed, stale ones too.

        A value no metric can take (a Dice outside [0, 1], a negative or infinite distance or
        volume) or a case and region listed twice is a :class:`LayoutError` naming the line:
        such a table was not written by evaluate, and averaging it would mislead.
        """
        rows = _read_csv(self.metrics_path, numeric=NUMERIC_METRIC_COLUMNS,
                         required=("case_id", "region"))
        seen: dict[tuple[str, str], int] = {}
        for line, row in enumerate(rows, start=2):
            key = (str(row["case_id"]), str(row["region"]))
            if key in seen:
                raise LayoutError(f"line {line} repeats case {key[0]} region {key[1]} (first "
                                  f"on line {seen[key]})", path=self.metrics_path)
            seen[key] = line
            dice, jac = row.get("dice"), row.get("jaccard")
            if isinstance(dice, float | int) and isinstance(jac, float | int) and \
                    math.isfinite(jac) and abs(dice - 2 * jac / (1 + jac)) > 1e-3:
                raise LayoutError(f"line {line}: dice {dice} and jaccard {jac} contradict "
                                  f"each other (Jaccard {jac} means Dice "
                                  f"{2 * jac / (1 + jac):.4f}): the table was edited",
                                  path=self.metrics_path)
            _check_ranges(row, METRIC_RANGES, line, self.metrics_path)
        return rows

    def lesion_rows(self) -> list[dict[str, Any]]:
        """Rows of lesions.csv (one per lesion, region and scoring), numbers parsed and
        checked as :meth:`metrics_rows` does; a row names the prediction and truth hashes it
        scored, so a reader matches it to the current metric rows."""
        rows = _read_csv(self.lesions_path, numeric=tuple(LESION_RANGES),
                         required=("case_id", "region", "scoring", "lesion", "status"))
        for line, row in enumerate(rows, start=2):
            if row["status"] not in LESION_STATUSES:
                raise LayoutError(f"line {line}: status {row['status']!r} is not one of "
                                  f"{list(LESION_STATUSES)}", path=self.lesions_path)
            _check_ranges(row, LESION_RANGES, line, self.lesions_path)
        return rows

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Replace summary.json (written by evaluate from the current rows), atomically."""
        atomic_write_json(self.summary_path, dict(summary))

    def predict_claim(self) -> dict[str, Any] | None:
        """The ``predict`` section of config.yaml: the checkpoint (path, sha256) and settings
        the run's predictions are made with, or None when nothing has been predicted."""
        claim = (self.config() or {}).get("predict")
        return claim if isinstance(claim, dict) else None

    @staticmethod
    def model_problem(record: CaseRecord, claim: Mapping[str, Any] | None) -> str | None:
        """Why ``record``'s prediction is not one of the run's model (``claim``, config.yaml's
        ``predict`` section from :meth:`predict_claim`), or None when it is (or the run
        records no model: older runs)."""
        if not claim or not claim.get("checkpoint_sha256") or record.provenance is None:
            return None
        sha = record.checkpoint_sha256
        if sha != claim.get("checkpoint_sha256"):
            return (f"predicted by another checkpoint (sha256 {str(sha)[:12]}) than the run's "
                    f"(sha256 {str(claim['checkpoint_sha256'])[:12]}); run tumorscope "
                    "predict again")
        if "settings" in claim and record.provenance.get("settings") != claim["settings"]:
            return "predicted with other settings than the run's; run tumorscope predict again"
        return None

    @classmethod
    def prediction_problem(cls, record: CaseRecord,
                           claim: Mapping[str, Any] | None) -> str | None:
        """Why the prediction of ``record`` is not a current result of the run: made by
        another model than ``claim`` (:meth:`predict_claim`) names, or from images that have
        changed since."""
        model = cls.model_problem(record, claim)
        if model is not None:
            return model
        for modality, fp in ((record.provenance or {}).get("sources") or {}).items():
            if not content_unchanged(fp):
                return (f"its {modality} image changed since it was predicted; run "
                        "tumorscope predict again")
        return None

    def score_problems(self, rows: list[dict[str, Any]] | None = None,
                       records: Mapping[str, CaseRecord] | None = None) -> dict[str, str]:
        """Per case whose score must not be shown as current, the reason: marked stale by
        evaluate; the prediction gone, changed, or made by another model than the run's;
        its images changed since it was predicted; its ground truth changed since it was
        scored. One ``stat`` per file when nothing moved; content is hashed only for files
        whose stat identity changed."""
        rows = self.metrics_rows() if rows is None else rows
        records = self.case_records() if records is None else records
        claim = self.predict_claim()
        on_disk = set(self.case_ids(records))
        problems: dict[str, str] = {}
        for row in rows:
            case_id = str(row["case_id"])
            if case_id in problems:
                continue
            problem = self._row_problem(row, case_id, records.get(case_id), on_disk, claim)
            if problem is not None:
                problems[case_id] = problem
        return problems

    def _row_problem(self, row: Mapping[str, Any], case_id: str, record: CaseRecord | None,
                     on_disk: set[str], claim: Mapping[str, Any] | None) -> str | None:
        status = row.get("status")
        if status not in (None, STATUS_OK):
            return str(status)
        if case_id not in on_disk:
            return "stale: its prediction is no longer in the run"
        pred = record.prediction if record else None
        if pred is not None and row.get("prediction_sha256") != pred.get("sha256"):
            return ("stale: scored another prediction than the one in the run (run tumorscope "
                    "evaluate)")
        if pred is not None and not content_unchanged(pred, self.prediction_path(case_id)):
            return ("stale: the prediction file changed since predict wrote it (run tumorscope "
                    "predict again)")
        if record is not None:
            problem = self.prediction_problem(record, claim)
            if problem is not None:
                return f"stale: {problem}"
        truth = {"path": row.get("truth_path"), "sha256": row.get("truth_sha256"),
                 "size": row.get("truth_size"), "stat": parse_stat(row.get("truth_stat"))}
        if truth["path"] and truth["sha256"] and not content_unchanged(truth):
            return ("stale: its ground truth changed since it was scored (run tumorscope "
                    "evaluate)")
        return None

    def current_metrics_rows(self) -> list[dict[str, Any]]:
        """Rows of metrics.csv that score the prediction now in the run (nothing stale)."""
        rows = self.metrics_rows()
        problems = self.score_problems(rows)
        return [r for r in rows if str(r["case_id"]) not in problems]

    def dice_by_region(self, case_id: str | None = None) -> dict[str, dict[str, float]]:
        """Current Dice per case and region: ``{case_id: {region: dice}}``."""
        out: dict[str, dict[str, float]] = {}
        for row in self.current_metrics_rows():
            if row.get("dice") is not None and (case_id is None or row["case_id"] == case_id):
                out.setdefault(str(row["case_id"]), {})[str(row["region"])] = float(row["dice"])
        return out

    def log_rows(self) -> list[dict[str, Any]]:
        """Rows of log.csv (one per epoch) with numbers parsed."""
        return _read_csv(self.log_path, numeric=("epoch", "step", "loss", "lr"))

    # -- writing (atomic) --
    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic_write_text(self.config_path, yaml.safe_dump(dict(config), sort_keys=False))

    def write_split(self, split: Mapping[str, list[str]]) -> None:
        atomic_write_json(self.split_path, dict(split))

    def write_cases(self, cases: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace cases.json as a whole (tests and migrations; writers use record_case)."""
        with self.lock():
            atomic_write_json(self.cases_path, {k: dict(v) for k, v in cases.items()})

    def record_case(self, record: CaseRecord) -> None:
        """Add or replace one case's record, atomically and under the run's lock."""
        with self.lock():
            records = self.case_records()
            records[record.case_id] = record
            atomic_write_json(self.cases_path, {k: r.to_dict() for k, r in records.items()})

    def forget_cases(self, case_ids: Iterable[str]) -> list[str]:
        """Remove cases from the run: record, prediction, its maps and score rows.

        Used only when the user asked to replace a run's predictions (``--force`` with
        another model); returns the ids removed.
        """
        ids = set(case_ids)
        if not ids:
            return []
        with self.lock():
            records = self.case_records()
            rows = self.metrics_rows()
            for case_id in ids:
                records.pop(case_id, None)
                for path in (self.prediction_path(case_id), self.probabilities_path(case_id),
                             self.tta_variance_path(case_id)):
                    path.unlink(missing_ok=True)
            atomic_write_json(self.cases_path, {k: r.to_dict() for k, r in records.items()})
            if rows:
                _write_csv(self.metrics_path, [r for r in rows if str(r["case_id"]) not in ids])
            lesions = self.lesion_rows()
            if lesions:
                _write_csv(self.lesions_path,
                           [r for r in lesions if str(r["case_id"]) not in ids])
        return sorted(ids)

    def merge_metrics(self, scored: Mapping[str, list[Mapping[str, Any]]],
                      unscored: Mapping[str, str],
                      lesions: Mapping[str, list[Mapping[str, Any]]] | None = None
                      ) -> list[dict[str, Any]]:
        """Merge one evaluation into metrics.csv (and lesions.csv) and return the table.

        Rows of ``scored`` cases replace that case's rows (status ok); cases of ``unscored``
        (case -> reason) keep their previous rows, marked ``stale: <reason>``; every other
        row stays as it was. ``lesions`` (case -> lesion rows) replaces those cases' lesion
        rows the same way; lesion rows carry the hashes of what they scored, and lesions.csv
        is written before metrics.csv, so an interruption between the two leaves lesion rows
        that no current metric row vouches for, never the reverse. Under the run's lock,
        each file written atomically.
        """
        # What no metric can be is refused before anything is written, as it would be on read.
        for case_id, rows in scored.items():
            for row in rows:
                _check_new(row, METRIC_RANGES, case_id, self.metrics_path)
        for case_id, rows in (lesions or {}).items():
            for row in rows:
                _check_new(row, LESION_RANGES, case_id, self.lesions_path)
        with self.lock():
            if lesions is not None:
                kept = [r for r in self.lesion_rows() if str(r["case_id"]) not in lesions]
                new = [{**r, "case_id": case_id} for case_id, rs in lesions.items() for r in rs]
                order = {"WT": 0, "TC": 1, "ET": 2}
                merged = sorted(kept + new, key=lambda r: (
                    str(r["case_id"]), str(r["scoring"]), order.get(str(r["region"]), 9),
                    str(r["status"]), int(r["lesion"])))
                _write_csv(self.lesions_path, merged)
            old = self.metrics_rows()
            out: list[dict[str, Any]] = []
            for row in old:
                case_id = str(row["case_id"])
                if case_id in scored:
                    continue
                if case_id in unscored:
                    row = {**row, "status": f"stale: {unscored[case_id]}"}
                out.append(row)
            for case_id, rows in scored.items():
                out += [{**r, "case_id": case_id, "status": STATUS_OK} for r in rows]
            order = {"WT": 0, "TC": 1, "ET": 2}
            out.sort(key=lambda r: (str(r["case_id"]), order.get(str(r["region"]), 9)))
            _write_csv(self.metrics_path, out)
            return out

    def write_metrics(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Replace metrics.csv as a whole (tests; evaluate merges through merge_metrics)."""
        _write_csv(self.metrics_path, rows)

    def append_log(self, row: Mapping[str, Any]) -> None:
        """Add one epoch row (rewrites the file atomically; logs are small)."""
        _write_csv(self.log_path, [*self.log_rows(), row])

    def clean_temp_files(self) -> list[Path]:
        """Delete temporaries of writes killed half-way (this host, writer gone)."""
        removed = []
        for folder in (self.path, self.predictions_dir, self.checkpoint_dir):
            for path in stale_temp_files(folder):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
        if removed:
            log.info("removed %d leftover temporary file(s) in %s", len(removed), self.path)
        return removed


def _check_ranges(row: Mapping[str, Any], ranges: Mapping[str, tuple[float, float]],
                  line: int, path: Path) -> None:
    """Refuse, naming the line, a value no metric of ``ranges`` can take."""
    for column, (low, high) in ranges.items():
        value = row.get(column)
        if value is None or (column in UNDEFINED_OK and math.isnan(value)) or (
                column in INFINITE_OK and value == math.inf):
            continue
        if not (math.isfinite(value) and low <= value <= high):
            raise LayoutError(f"line {line}: {column} = {value!r} is impossible "
                              f"(expected {_span(low, high)})", path=path)


def _check_new(row: Mapping[str, Any], ranges: Mapping[str, tuple[float, float]],
               case_id: str, path: Path) -> None:
    try:
        _check_ranges(row, ranges, 0, path)
    except LayoutError as exc:
        raise LayoutError(f"refusing to write case {case_id} region {row.get('region')}: "
                          f"{str(exc).split('line 0: ', 1)[-1]}; nothing was written",
                          path=path) from None


def _span(low: float, high: float) -> str:
    """What a metric's range allows, in words.

    >>> _span(0.0, 1.0), _span(0.0, math.inf), _span(-math.inf, math.inf)
    ('a number in [0, 1]', 'a finite number >= 0', 'a finite number')
    """
    if math.isfinite(low) and math.isfinite(high):
        return f"a number in [{low:g}, {high:g}]"
    return f"a finite number >= {low:g}" if math.isfinite(low) else "a finite number"


def parse_stat(value: Any) -> list[int] | None:
    """``"ino:size:mtime_ns:ctime_ns"`` (how metrics.csv stores a stat identity) as a list."""
    try:
        return [int(v) for v in str(value).split(":")] if value else None
    except ValueError:
        return None


def format_stat(stat: list[int] | None) -> str | None:
    """A stat identity as one CSV cell (see :func:`parse_stat`)."""
    return ":".join(str(v) for v in stat) if stat else None


@functools.lru_cache(maxsize=1 << 16)
def _parse(value: str) -> Any:
    # Cached: ids, regions, statuses and hashes repeat down a table, and each text cell
    # would otherwise raise twice before it is known to be text (1 s of 28,000 lesion rows).
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return {"True": True, "False": False}.get(value, value)


def _read_csv(path: Path, *, numeric: Iterable[str] = (),
              required: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Rows of a CSV written by :func:`_write_csv`; any damage is a :class:`LayoutError`
    naming the file and the line (NUL bytes, binary data, truncated rows, text where a
    number belongs, missing columns)."""
    if not path.is_file():
        return []
    numeric = tuple(numeric)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LayoutError("is not a text CSV file (binary data)", path=path) from None
    if "\x00" in text:
        raise LayoutError("holds NUL bytes: the file is damaged", path=path)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if not header:  # no file content, or the empty header of a table with no row
            return []
        missing = [c for c in required if c not in header]
        if missing:
            raise LayoutError(f"missing column(s) {missing}; found {header}", path=path)
        rows = []
        for cells in reader:
            if not cells:
                continue
            if len(cells) != len(header):
                raise LayoutError(f"line {reader.line_num} has {len(cells)} field(s), the "
                                  f"header {len(header)} (truncated or damaged row)",
                                  path=path)
            row = {k: _parse(v) for k, v in zip(header, cells, strict=True)}
            for key in numeric:
                value = row.get(key)
                if value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, int | float) or (
                        isinstance(value, float) and math.isnan(value)
                        and key not in UNDEFINED_OK):
                    raise LayoutError(f"line {reader.line_num}: {key} = {value!r} is not a "
                                      f"number", path=path)
            rows.append(row)
    except csv.Error as exc:
        raise LayoutError(f"is not a readable CSV file ({exc})", path=path) from None
    return rows


def _write_csv(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    rows = list(rows)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    atomic_write_text(path, buf.getvalue())


def is_run(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in MARKERS)


def open_runs(root: str | Path) -> list[Run]:
    """The runs in ``root``: ``root`` itself if it is a run, else its run sub-folders.

    Raises :class:`LayoutError` naming ``root`` when it is missing or holds no run.
    """
    root = Path(root)
    if not root.is_dir():
        raise LayoutError("results folder does not exist" if not root.exists()
                          else "results path is not a folder", path=root)
    if is_run(root):
        return [Run(root)]
    runs = [Run(p) for p in sorted(root.iterdir()) if is_run(p)]
    if not runs:
        raise LayoutError(
            "no run found: a run folder holds config.yaml, predictions/, metrics.csv or "
            "log.csv (make one with `tumorscope demo` or `tumorscope predict`)", path=root)
    return runs
