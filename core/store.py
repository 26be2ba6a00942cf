"""Results store: the run directory that is the contract between core, render and the app.

::

    RUN/
      config.yaml              resolved config of the training or prediction
      checkpoints/             best.pt and last.pt, written atomically
      log.csv                  one row per epoch: loss, Dice per region, lr, voxels/s
      cases.json               per case: source files, layout, metadata (written by predict)
      predictions/<case>.nii.gz
      metrics.csv              one row per case x region, every metric, plus case metadata
      meshes/<case>/           render's cache, keyed by the source files

Nobody else parses these paths: scripts and the app go through :func:`open_runs` and
:class:`Run`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import LayoutError, yaml_problem
from .nifti import atomic_write_json, atomic_write_text

MARKERS = ("config.yaml", "predictions", "metrics.csv", "log.csv")


@dataclass(frozen=True)
class CaseRecord:
    """What predict recorded about a case in ``cases.json``: its source files and metadata."""

    case_id: str
    images: dict[str, Path]
    label: Path | None
    layout: str = "brats2021"
    label_convention: str = "brats2020"
    metadata: dict[str, Any] = field(default_factory=dict)

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
    def from_dict(cls, case_id: str, d: Mapping[str, Any]) -> CaseRecord:
        return cls(
            case_id=case_id,
            images={m: Path(p) for m, p in (d.get("images") or {}).items()},
            label=Path(d["label"]) if d.get("label") else None,
            layout=d.get("layout", "brats2021"),
            label_convention=d.get("label_convention", "brats2020"),
            metadata=dict(d.get("metadata") or {}),
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
    def cases_path(self) -> Path:
        return self.path / "cases.json"

    @property
    def split_path(self) -> Path:
        return self.path / "split.json"

    @property
    def ddp_check_path(self) -> Path:
        return self.path / "ddp_check.json"

    @property
    def predictions_dir(self) -> Path:
        return self.path / "predictions"

    def prediction_path(self, case_id: str) -> Path:
        return self.predictions_dir / f"{case_id}.nii.gz"

    def probabilities_path(self, case_id: str) -> Path:
        return self.predictions_dir / f"{case_id}_prob.nii.gz"

    def mesh_dir(self, case_id: str) -> Path:
        return self.path / "meshes" / case_id

    # -- reading --
    def config(self) -> dict[str, Any] | None:
        """The resolved config as plain values, or ``None`` if the run has none."""
        if not self.config_path.is_file():
            return None
        try:
            return yaml.safe_load(self.config_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise LayoutError(f"config.yaml is not valid YAML ({yaml_problem(exc)})",
                              path=self.config_path) from None

    def case_ids(self) -> list[str]:
        """Cases with a prediction, sorted."""
        folder = self.predictions_dir
        if not folder.is_dir():
            return []
        return sorted(p.name[: -len(".nii.gz")] for p in folder.glob("*.nii.gz")
                      if not p.name.endswith("_prob.nii.gz"))

    def cases(self) -> dict[str, dict[str, Any]]:
        """Per case: ``images`` (modality -> path), ``label`` (path or None), ``layout``,
        ``metadata``, as recorded by predict."""
        if not self.cases_path.is_file():
            return {}
        try:
            return json.loads(self.cases_path.read_text())
        except json.JSONDecodeError as exc:
            raise LayoutError(f"cases.json is not valid JSON ({exc})",
                              path=self.cases_path) from None

    def case_records(self) -> dict[str, CaseRecord]:
        """Every case of ``cases.json`` as a :class:`CaseRecord`."""
        return {k: CaseRecord.from_dict(k, v) for k, v in self.cases().items()}

    def case_record(self, case_id: str) -> CaseRecord:
        """The record of one case; a case predicted without a record gets an empty one."""
        info = self.cases().get(case_id)
        return CaseRecord.from_dict(case_id, info or {})

    def split(self) -> dict[str, list[str]]:
        """Training and validation case ids of a training run ({} if it has none)."""
        if not self.split_path.is_file():
            return {}
        try:
            return json.loads(self.split_path.read_text())
        except json.JSONDecodeError as exc:
            raise LayoutError(f"split.json is not valid JSON ({exc})",
                              path=self.split_path) from None

    def dice_by_region(self, case_id: str | None = None) -> dict[str, dict[str, float]]:
        """Dice per case and region from metrics.csv: ``{case_id: {region: dice}}``."""
        out: dict[str, dict[str, float]] = {}
        for row in self.metrics_rows():
            if row.get("dice") is not None and (case_id is None or row["case_id"] == case_id):
                out.setdefault(str(row["case_id"]), {})[str(row["region"])] = float(row["dice"])
        return out

    def metrics_rows(self) -> list[dict[str, Any]]:
        """Rows of metrics.csv (one per case x region) with numbers parsed."""
        return _read_csv(self.metrics_path)

    def log_rows(self) -> list[dict[str, Any]]:
        """Rows of log.csv (one per epoch) with numbers parsed."""
        return _read_csv(self.log_path)

    # -- writing (atomic) --
    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic_write_text(self.config_path, yaml.safe_dump(dict(config), sort_keys=False))

    def write_split(self, split: Mapping[str, list[str]]) -> None:
        atomic_write_json(self.split_path, dict(split))

    def write_cases(self, cases: Mapping[str, Mapping[str, Any]]) -> None:
        atomic_write_json(self.cases_path, {k: dict(v) for k, v in cases.items()})

    def write_metrics(self, rows: Iterable[Mapping[str, Any]]) -> None:
        _write_csv(self.metrics_path, rows)

    def append_log(self, row: Mapping[str, Any]) -> None:
        """Add one epoch row (rewrites the file atomically; logs are small)."""
        _write_csv(self.log_path, [*self.log_rows(), row])


def _parse(value: str) -> Any:
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


def _read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(fh)]


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
