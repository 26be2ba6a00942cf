"""The 3-D view's surfaces: render's mesh cache (:mod:`tumorscope.render.mesh_cache`) kept in
memory per file and mtime (``st.cache_resource``), simplified for the browser; distances
and FP/FN surfaces made on demand.

Render is imported inside the loaders, so the overview page starts without loading VTK.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from tumorscope.app.caches import stamp
from tumorscope.app.volumes import load_label
from tumorscope.core.data.labels import REGIONS
from tumorscope.core.errors import GeometryError
from tumorscope.core.store import CaseRecord, Run

if TYPE_CHECKING:
    from tumorscope.render.mesh_cache import MeshSource

DISPLAY_MAX_TRIANGLES = 60_000
"""Meshes above this are simplified for the browser; a trained model's WT is ~20-60k."""


@st.cache_resource(show_spinner=False, max_entries=36)
def _surfaces(run_path: str, source: MeshSource, path: str, mtime_ns: int, convention: str,
              _case: CaseRecord) -> dict[str, Any] | None:
    from tumorscope.render.mesh_cache import case_surfaces

    # Simplified surfaces are cached on disk as well: after a restart, reopening a case
    # reads them instead of reading and simplifying the full ones.
    return case_surfaces(Run(Path(run_path)), _case, source,
                         max_triangles=DISPLAY_MAX_TRIANGLES)


def surfaces(run: Run, case: CaseRecord, source: MeshSource) -> dict[str, Any] | None:
    """WT/TC/ET surfaces of the truth or the prediction, or ``{"brain"}``, of one case
    (simplified for display); ``None`` when the case has no such file."""
    from tumorscope.render.mesh_cache import source_path

    path = source_path(run, case, source)
    if path is None:
        return None
    return _surfaces(str(run.path), source, str(path), stamp(path), case.label_convention,
                     case)


def brain_mesh(run: Run, case: CaseRecord) -> Any | None:
    """Outer brain surface of the T1 (else first) image, or ``None`` without an image."""
    return (surfaces(run, case, "brain") or {}).get("brain")


@st.cache_resource(show_spinner=False, max_entries=24)
def _distance(pred_key: tuple[str, int], truth_key: tuple[str, int], region: str,
              _pred: Any, _truth: Any) -> Any:
    from tumorscope.render.mesh import signed_distance_mm

    return signed_distance_mm(_pred, _truth)


def distance_meshes(run: Run, case: CaseRecord) -> dict[str, Any]:
    """Prediction surfaces carrying ``signed_distance_mm`` to the truth surface per region."""
    truth = surfaces(run, case, "truth")
    if truth is None or case.label is None:
        return {}
    pred = surfaces(run, case, "prediction") or {}
    prediction_path = run.prediction_path(case.case_id)
    pred_key = (str(prediction_path), stamp(prediction_path))
    truth_key = (str(case.label), stamp(case.label))
    return {r: _distance(pred_key, truth_key, r, pred[r], truth[r]) for r in REGIONS
            if r in pred}


AB_NAMES = ("run A's prediction", "run B's prediction")


def _label_key(path: Path) -> tuple[str, int]:
    return str(path), stamp(path)


def _pair(a_key: tuple[str, int], b_key: tuple[str, int], conventions: tuple[str, str],
          what: tuple[str, str] = AB_NAMES) -> tuple[Any, Any]:
    """Two label maps read (cached) and checked to share a grid, named ``what`` if not."""
    a = load_label(*a_key, conventions[0])  # type: ignore[arg-type]
    b = load_label(*b_key, conventions[1])  # type: ignore[arg-type]
    if a.shape != b.shape:
        raise GeometryError(f"{what[0]} has shape {a.shape} but {what[1]} {b.shape}",
                            path=a_key[0])
    return a, b


@st.cache_resource(show_spinner=False, max_entries=12)
def _agreement(a_key: tuple[str, int], b_key: tuple[str, int],
               conventions: tuple[str, str]) -> dict[str, Any]:
    from tumorscope.core.data.labels import agreement_label
    from tumorscope.render.mesh import region_meshes, simplify_to

    a, b = _pair(a_key, b_key, conventions)
    meshes = region_meshes(agreement_label(a.data, b.data), a.affine)
    return {name: simplify_to(mesh, max_triangles=DISPLAY_MAX_TRIANGLES)
            for name, mesh in meshes.items()}


@st.cache_resource(show_spinner=False, max_entries=24)
def _differences(a_key: tuple[str, int], b_key: tuple[str, int],
                 conventions: tuple[str, str], region: str, *,
                 keys: tuple[str, str] = ("A_only", "B_only"),
                 what: tuple[str, str] = AB_NAMES) -> dict[str, Any]:
    """Voxels of ``region`` in the first map only and in the second only: a prediction's
    FP/FN against its truth, or what only run A / only run B predicts."""
    from tumorscope.render.mesh import difference_meshes, simplify_to

    a, b = _pair(a_key, b_key, conventions, what)
    meshes = difference_meshes(a.data, b.data, a.affine, name=region, keys=keys, what=what)
    return {name: simplify_to(mesh, max_triangles=DISPLAY_MAX_TRIANGLES)
            for name, mesh in meshes.items()}


def agreement_surfaces(run_a: Run, case_a: CaseRecord, run_b: Run,
                       case_b: CaseRecord) -> dict[str, Any]:
    """WT/TC/ET surfaces of where runs A and B both predict the region (for display)."""
    return _agreement(_label_key(run_a.prediction_path(case_a.case_id)),
                      _label_key(run_b.prediction_path(case_b.case_id)),
                      (case_a.label_convention, case_b.label_convention))


def difference_meshes_of(run_a: Run, case_a: CaseRecord, run_b: Run, case_b: CaseRecord,
                         region: str) -> dict[str, Any]:
    """Surfaces of the voxels of ``region`` only run A predicts and only run B predicts,
    ``{"A_only", "B_only"}``."""
    return _differences(_label_key(run_a.prediction_path(case_a.case_id)),
                        _label_key(run_b.prediction_path(case_b.case_id)),
                        (case_a.label_convention, case_b.label_convention), region)


def error_meshes_of(run: Run, case: CaseRecord, region: str) -> dict[str, Any]:
    """False-positive / false-negative voxel surfaces of one region; empty without truth."""
    if not case.has_truth or case.label is None:
        return {}
    return _differences(_label_key(run.prediction_path(case.case_id)), _label_key(case.label),
                        (case.label_convention, case.label_convention), region,
                        keys=("FP", "FN"), what=("prediction", "the ground truth"))
