"""Session state of the app: defaults set once at the top of each run, page-change requests,
and the :class:`Context` every page is drawn with.

Pages import this module, never ``streamlit_main`` (which imports the pages).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from tumorscope.app.results import Results, initial_results_dir
from tumorscope.core.store import Run
from tumorscope.render import style

# Widget values that must survive a page change. Streamlit drops the state of widgets that a
# rerun does not draw, so these are re-stored each run (the documented keep-alive idiom).
PERSISTENT_PREFIXES = ("ov_", "p3d_", "sl_", "vw_")
PERSISTENT_KEYS = ("results_dir", "run_name", "case_id", "ab_run")

DEFAULTS: dict[str, Any] = {
    "ov_search": "", "ov_grades": [], "ov_sort": "mean Dice", "ov_order": "worst first",
    "ov_dist": "box", "ov_scoring": "legacy", "ov_hd95": "monai",
    "p3d_regions": ["WT", "TC", "ET"], "p3d_truth": True, "p3d_pred": True,
    "p3d_colour": "region colours",
    "p3d_truth_opacity": style.TRUTH_STYLES["wireframe"].opacity, "p3d_pred_opacity": 1.0,
    "p3d_brain": True, "p3d_errors": False, "p3d_ab_diff": True, "p3d_error_region": "WT",
    "p3d_camera": "oblique",
    "p3d_lesions": True, "p3d_lesion_scoring": "brats2023", "p3d_lesion": None,
    "p3d_lesion_case": None, "p3d_lesion_status": ["FN", "FP", "TP", "ignored"],
    "sl_modality": "flair", "sl_overlay": "prediction", "sl_style": "filled",
    "sl_alpha": style.OVERLAY_OPACITY, "sl_region": "WT", "sl_threshold": 0.5,
    "sl_layout": "three", "sl_big_view": "axial", "sl_zoom": 1.0, "sl_click": "crosshair",
    "sl_crosshair": True, "sl_measure": (), "sl_browser": True,
    "vw_source": "results", "vw_dir": "", "vw_case": None,
}

GOTO_KEY = "_goto"

POSITION_KEYS = ("sl_x", "sl_y", "sl_z")
"""The slice viewer's crosshair: RAS voxel indices (its three sliders' keys)."""
MOVES_KEY = "sl_moves"
"""How many times the crosshair was moved by anything but a browser-drawn view's own steps:
such a view takes Python's slice when this changes, and drops a step report made before."""


def set_position(xyz: Sequence[int]) -> None:
    """Move the slice viewer's crosshair to the RAS voxel ``xyz`` (every writer but a view's
    own steps goes through here, so the browser-drawn views follow it)."""
    for key, value in zip(POSITION_KEYS, xyz, strict=True):
        st.session_state[key] = int(value)
    position_moved()


def position_moved() -> None:
    """Count a move of the crosshair (a slider's callback calls it; see MOVES_KEY)."""
    st.session_state[MOVES_KEY] = int(st.session_state.get(MOVES_KEY, 0)) + 1


def crosshair_case_key(run: Run, case_id: str) -> str:
    """Which patient the crosshair's position belongs to; the slice viewer starts a new one on
    its largest tumour slices, and keeps a position set for this key (e.g. on a lesion)."""
    return f"{run.path}|{case_id}"


def view_arg(argv: list[str]) -> str | None:
    """The value of ``--view DIR`` or ``--view=DIR`` in ``argv`` (as ``--results`` is read).

    >>> view_arg(["--results", "R", "--view", "scans/"]), view_arg(["--view=S"]), view_arg([])
    ('scans/', 'S', None)
    """
    for i, arg in enumerate(argv):
        if arg == "--view" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--view="):
            return arg.split("=", 1)[1]
    return None


def shown_path(path: str | Path) -> str:
    """A folder as the pages name it: relative to the working directory when inside it, else
    under ``~`` when in the home folder, else as it is (no machine's layout on screen).

    >>> shown_path(Path.cwd() / "runs" / "demo"), shown_path("runs")
    ('runs/demo', 'runs')
    >>> shown_path(Path.home() / "results") == str(Path("~") / "results")
    True
    """
    given = Path(path).expanduser()
    if not given.is_absolute():
        return str(Path(path))
    for base, shown in ((Path.cwd(), None), (Path.home(), Path("~"))):
        try:
            rest = given.relative_to(base)
        except ValueError:
            continue
        return str(shown / rest if shown else rest) if str(rest) != "." else str(shown or ".")
    return str(given)


def init_state() -> None:
    """Session defaults, set once, before any widget is drawn; keep page widgets alive."""
    if "results_dir" not in st.session_state:
        folder, source = initial_results_dir(sys.argv[1:], os.environ)
        st.session_state["results_dir"] = folder
        st.session_state["results_source"] = source
        view_dir = view_arg(sys.argv[1:])
        if view_dir:  # `-- --view DIR`: open the view-only viewer on DIR
            st.session_state["vw_source"], st.session_state["vw_dir"] = "folder", view_dir
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    keep_alive()


def keep_alive(keys: Iterable[str] | None = None) -> None:
    """Re-store the widget values that must survive a run that does not draw their widgets
    (default: every persistent key). A fragment that may leave some of its widgets undrawn
    calls it with their keys before drawing any: its reruns skip :func:`init_state`."""
    names = [k for k in st.session_state.keys()
             if str(k).startswith(PERSISTENT_PREFIXES) or k in PERSISTENT_KEYS] \
        if keys is None else [k for k in keys if k in st.session_state]
    for key in names:
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
