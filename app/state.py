"""Session state of the app: defaults set once at the top of each run, page-change requests,
and the :class:`Context` every page is drawn with.

Pages import this module, never ``streamlit_main`` (which imports the pages).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from tumorscope.app.results import Results, initial_results_dir
from tumorscope.core.store import Run
from tumorscope.render import style

# Widget values that must survive a page change. Streamlit drops the state of widgets that a
# rerun does not draw, so these are re-stored each run (the documented keep-alive idiom).
PERSISTENT_PREFIXES = ("ov_", "p3d_", "sl_")
PERSISTENT_KEYS = ("results_dir", "run_name", "case_id")

DEFAULTS: dict[str, Any] = {
    "ov_search": "", "ov_grades": [], "ov_sort": "mean Dice", "ov_order": "worst first",
    "ov_dist": "box", "ov_scoring": "legacy", "ov_hd95": "monai",
    "p3d_regions": ["WT", "TC", "ET"], "p3d_truth": True, "p3d_pred": True,
    "p3d_colour": "region colours",
    "p3d_truth_opacity": style.TRUTH_STYLES["wireframe"].opacity, "p3d_pred_opacity": 1.0,
    "p3d_brain": True, "p3d_errors": False, "p3d_error_region": "WT", "p3d_camera": "oblique",
    "p3d_lesions": True, "p3d_lesion_scoring": "brats2023", "p3d_lesion": None,
    "p3d_lesion_case": None, "p3d_lesion_status": ["FN", "FP", "TP", "ignored"],
    "sl_modality": "flair", "sl_overlay": "prediction", "sl_style": "filled",
    "sl_alpha": style.OVERLAY_OPACITY, "sl_region": "WT",
}

GOTO_KEY = "_goto"

POSITION_KEYS = ("sl_x", "sl_y", "sl_z")
"""The slice viewer's crosshair: RAS voxel indices (its three sliders' keys)."""


def crosshair_case_key(run: Run, case_id: str) -> str:
    """Which patient the crosshair's position belongs to; the slice viewer starts a new one on
    its largest tumour slices, and keeps a position set for this key (e.g. on a lesion)."""
    return f"{run.path}|{case_id}"


def init_state() -> None:
    """Session defaults, set once, before any widget is drawn; keep page widgets alive."""
    if "results_dir" not in st.session_state:
        folder, source = initial_results_dir(sys.argv[1:], os.environ)
        st.session_state["results_dir"] = folder
        st.session_state["results_source"] = source
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    for key in list(st.session_state.keys()):
        if str(key).startswith(PERSISTENT_PREFIXES) or key in PERSISTENT_KEYS:
            st.session_state[key] = st.session_state[key]


def request_page(page: str) -> None:
    """From a widget callback (where switching is not allowed): switch on the next run."""
    st.session_state[GOTO_KEY] = page


def take_page_request() -> str | None:
    """The page a callback asked for, once."""
    return st.session_state.pop(GOTO_KEY, None)


@dataclass
class Context:
    """What every page gets: the results, the chosen run and patient, and the other pages."""

    results: Results
    run: Run | None = None
    case_id: str | None = None
    pages: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    def open(self, page: str) -> None:
        """Switch to another page (ends this run)."""
        st.switch_page(self.pages[page])
