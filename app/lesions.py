"""The patient pages' lesions: lesions.csv read once per change (cached), a case's current
lesions, the chosen one, and moving the slice viewer's crosshair onto it.

The chosen lesion is one session key (:data:`LESION_KEY`, a
:attr:`~tumorscope.render.layers.LesionMarker.key`) shared by the patient and slice pages; the
3-D camera follows it on every rerun, the crosshair is moved once, when it is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from tumorscope.app import tables
from tumorscope.app.caches import stamp
from tumorscope.app.state import POSITION_KEYS, crosshair_case_key, set_position
from tumorscope.core.data.cases import MODALITIES
from tumorscope.core.errors import TumorscopeError
from tumorscope.core.store import CaseRecord, Run
from tumorscope.render import lesions as lesion_tables
from tumorscope.render.layers import LESION_STATUSES, LesionMarker

LESION_KEY = "p3d_lesion"
"""Session key of the chosen lesion (``scoring:region:status:id``), or ``None``."""
LESION_CASE_KEY = "p3d_lesion_case"
"""Session key of the patient the chosen lesion belongs to (:func:`crosshair_case_key`)."""
SCORING_KEY = "p3d_lesion_scoring"
"""Session key of the lesion-wise scoring whose lesions the pages list and mark."""
MARKED = ("FN", "FP")
"""Statuses marked in 3-D: what a reader looks for; matches are visible as overlap."""


@dataclass(frozen=True)
class LesionView:
    """One case's lesions of one scoring, as the pages show them (read-only, shared)."""

    scoring: str | None
    scorings: tuple[str, ...]
    rows: pd.DataFrame
    """:func:`~tumorscope.render.lesions.lesion_list` of the scoring: every status."""
    markers: tuple[LesionMarker, ...]
    """Markers of the :data:`MARKED` statuses (the scene keeps the largest of each)."""
    stale: int
    """Rows of this case in lesions.csv that score another prediction or truth: not shown."""
    has_scores: bool
    """Whether the case has current metric rows at all."""
    counts: dict[str, int]
    """Lesions of the scoring per status (every status, 0 when none)."""
    problem: str | None = None
    """Why no lesion is listed when lesions.csv cannot be read (the rest of a page stands)."""

    def marker(self, key: str | None) -> LesionMarker | None:
        """The lesion of ``key`` as a marker (any status), or ``None`` when not listed."""
        if key is None:
            return None
        for marker in self.markers:
            if marker.key == key:
                return marker
        rows = self.rows[self.rows["key"] == key]
        return lesion_tables.markers(rows)[0] if len(rows) else None


@st.cache_resource(show_spinner=False, max_entries=4)
def _run_lesions(run_path: str, mtime_ns: int) -> pd.DataFrame:
    return lesion_tables.lesions_frame(Run(Path(run_path)))


@st.cache_resource(show_spinner=False, max_entries=32)
def _case_view(run_path: str, stamps: tuple[int, ...], case_id: str,
               scoring: str | None) -> LesionView:
    run = Run(Path(run_path))
    metrics, _ = tables.cohort(run)
    split = lesion_tables.case_lesions(_run_lesions(run_path, stamps[-1]), metrics, case_id)
    scorings = tuple(split.scorings())
    chosen = scoring if scoring in scorings else (scorings[0] if scorings else None)
    rows = (lesion_tables.lesion_list(split.current, chosen) if chosen
            else split.current.assign(key=pd.Series(dtype=str)))
    shown = rows[rows["status"].isin(MARKED)]
    counts = rows["status"].value_counts()
    return LesionView(chosen, scorings, rows, tuple(lesion_tables.markers(shown)),
                      split.stale, bool((metrics["case_id"] == case_id).any()),
                      {s: int(counts.get(s, 0)) for s in LESION_STATUSES})


def case_view(run: Run, case_id: str, scoring: str | None) -> LesionView:
    """The current lesions of ``case_id`` in ``scoring`` (else the first scoring present),
    cached until predict or evaluate rewrites the run's tables. A damaged lesions.csv lists
    none and says why (:attr:`LesionView.problem`)."""
    stamps = (*tables.run_stamp(run), stamp(run.lesions_path))
    try:
        return _case_view(str(run.path), stamps, case_id, scoring)
    except TumorscopeError as exc:
        empty = lesion_tables.lesion_list(lesion_tables.typed_frame(), "brats2023")
        return LesionView(None, (), empty, (), 0, False, dict.fromkeys(LESION_STATUSES, 0),
                          problem=str(exc))


@st.cache_data(show_spinner=False, max_entries=64)
def file_grid(path: str, mtime_ns: int) -> tuple[list[list[float]], tuple[int, int, int]]:
    """(affine, shape) of a NIfTI file from its header alone, cached per mtime."""
    import nibabel as nib

    header = nib.load(path).header  # the header only: no voxels are read
    return np.asarray(header.get_best_affine()).tolist(), tuple(
        int(n) for n in header.get_data_shape()[:3])


def crosshair_image(case: CaseRecord) -> Path | None:
    """The image the slice viewer shows (its modality, else the first recorded one)."""
    chosen = st.session_state.get("sl_modality")
    if chosen in case.images:
        return case.images[chosen]
    return next((case.images[m] for m in MODALITIES if m in case.images), None)


def centre_crosshair(run: Run, case: CaseRecord, marker: LesionMarker) -> tuple[int, int, int]:
    """Put the slice viewer's crosshair on ``marker``'s centroid (world mm -> the RAS voxel of
    the image the viewer shows); returns the voxel. Call before the sliders are drawn."""
    path = crosshair_image(case) or case.label
    if path is None:
        return tuple(int(st.session_state.get(k, 0)) for k in POSITION_KEYS)  # type: ignore[return-value]
    affine, shape = file_grid(str(path), stamp(path))
    voxel = lesion_tables.ras_voxel(marker.centroid_mm, np.asarray(affine), shape)
    set_position(voxel)
    st.session_state["sl_case"] = crosshair_case_key(run, case.case_id)
    return voxel


def choose(run: Run, case: CaseRecord, view: LesionView, key: str | None) -> None:
    """Make ``key`` the chosen lesion of ``case``; a lesion (not ``None``) also takes the
    crosshair. Safe in a widget callback (runs before the sliders are drawn)."""
    st.session_state[LESION_KEY] = key
    st.session_state[LESION_CASE_KEY] = crosshair_case_key(run, case.case_id)
    marker = view.marker(key)
    if marker is not None:
        centre_crosshair(run, case, marker)


def chosen(run: Run, case_id: str, view: LesionView) -> LesionMarker | None:
    """The chosen lesion, if it is one of this case's listed lesions (else ``None``)."""
    if st.session_state.get(LESION_CASE_KEY) != crosshair_case_key(run, case_id):
        return None
    return view.marker(st.session_state.get(LESION_KEY))
