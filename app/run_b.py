"""Run B of a patient's A/B views: the other runs that predicted this patient, the one chosen
(one choice shared by the patient page, the slice viewer and the compare page), and its
prediction on run A's grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from tumorscope.app import tables
from tumorscope.app import volumes as volumes_cache
from tumorscope.app.caches import stamp
from tumorscope.app.state import Context
from tumorscope.core.data.geometry import RasVolume
from tumorscope.core.errors import GeometryError
from tumorscope.core.store import CaseRecord, Run

AB_KEY = "ab_run"
"""Session key (and the pickers' widget key) of run B's name; :data:`NONE` for no A/B."""
NONE = "(none)"


@dataclass(frozen=True)
class RunB:
    """The run compared with the page's run (A) on one patient, and its record of it."""

    run: Run
    case: CaseRecord

    @property
    def name(self) -> str:
        return self.run.name


def candidates(ctx: Context, case_id: str) -> list[Run]:
    """Runs other than the page's that hold a 3-D prediction of ``case_id``."""
    found = []
    for run in ctx.results.runs:
        if ctx.run is not None and run.path == ctx.run.path:
            continue
        record = tables.run_cases(run).get(case_id)
        if record is not None and not record.is_slice and run.prediction_path(case_id).is_file():
            found.append(run)
    return found


def chosen(ctx: Context, case_id: str) -> RunB | None:
    """Run B as chosen, when it still predicts ``case_id``; ``None`` for no A/B view."""
    name = st.session_state.get(AB_KEY)
    if not name or name == NONE:
        return None
    run = next((r for r in candidates(ctx, case_id) if r.name == name), None)
    return None if run is None else RunB(run, tables.case_record(run, case_id))


def picker(ctx: Context, case_id: str) -> RunB | None:
    """The "Compare with run B" box (only when another run predicted this patient)."""
    names = [r.name for r in candidates(ctx, case_id)]
    if not names:
        return None
    options = [NONE, *names]
    if st.session_state.get(AB_KEY) not in options:
        st.session_state[AB_KEY] = NONE
    st.selectbox("Compare with run B", options, key=AB_KEY,
                 help="Another run that predicted this patient: the views then show where "
                      "the two predictions agree, and what only A or only B predicts.")
    return chosen(ctx, case_id)


def prediction_b(b: RunB, image: RasVolume) -> RasVolume:
    """Run B's prediction of the patient, checked to lie on ``image``'s grid (run A's)."""
    path = b.run.prediction_path(b.case.case_id)
    volume = volumes_cache.load_label(str(path), stamp(path), b.case.label_convention)
    if volume.shape != image.shape or not np.allclose(volume.affine, image.affine, atol=1e-3):
        raise GeometryError(f"run B's prediction has shape {volume.shape} and another grid "
                            f"than run A's image {image.shape}; expected the same grid",
                            path=path)
    return volume
