"""View-only page: any NIfTI folder or BraTS case opened without a run, in the slice viewer.

Images, and the label map when there is one; no prediction and so no scores. Opened from the
sidebar ("Open: image folder") or with ``streamlit run streamlit_app.py -- --view DIR``.
"""

from __future__ import annotations

import streamlit as st

from tumorscope.app import viewer_data
from tumorscope.app.pages import slices
from tumorscope.app.state import Context
from tumorscope.core.data.cases import MODALITIES
from tumorscope.core.data.view_folder import ViewCase
from tumorscope.core.errors import TumorscopeError

FOLDER_HELP = ("A BraTS dataset or case folder (any layout), any folder of NIfTI files (a "
               "file named *seg*, *label* or *mask* is shown as its label), or one NIfTI file. "
               "Also `streamlit run streamlit_app.py -- --view DIR`.")


def sidebar() -> None:
    """The folder field and, when it holds several, the case picker."""
    st.text_input("Image folder", key="vw_dir", help=FOLDER_HELP)
    cases = _cases()
    if isinstance(cases, str) or len(cases) < 2:
        return
    ids = [c.case_id for c in cases]
    if st.session_state.get("vw_case") not in ids:
        st.session_state["vw_case"] = ids[0]
    st.selectbox("Case", ids, key="vw_case")


def _cases() -> tuple[ViewCase, ...] | str:
    """The folder's cases, or why there are none (a sentence)."""
    folder = str(st.session_state.get("vw_dir") or "").strip()
    if not folder:
        return "Enter an image folder in the sidebar to look at its images."
    try:
        return viewer_data.folder_cases(folder)
    except TumorscopeError as exc:
        return f"Cannot open `{folder}`: {exc.fault}."


def render(ctx: Context) -> None:
    cases = _cases()
    if isinstance(cases, str):
        st.title("Slice viewer")
        st.info(cases, icon=":material/folder_open:")
        return
    case = next((c for c in cases if c.case_id == st.session_state.get("vw_case")), cases[0])
    st.title(f"View · {case.case_id}")
    st.caption(":material/visibility: View only: the images"
               + (" and their label map" if case.label is not None else "")
               + ", no prediction and no scores."
               + (" Synthetic demo data, not a patient." if case.synthetic else ""))
    brats = set(case.images) <= set(MODALITIES)
    image_name = slices.modality_picker(list(case.images), "Modality" if brats else "Image")
    volumes, problem = viewer_data.folder_volumes(case, image_name)
    if problem:
        st.warning(problem, icon=":material/label_off:")
    folder = str(st.session_state.get("vw_dir"))
    case_key = f"view|{folder}|{case.case_id}"
    slices.reset_on_new_case(case_key, volumes)
    slices.viewer(volumes, case_key=f"{case_key}|{image_name}",
                  image_path=case.images[image_name], file_stem=f"{case.case_id}_{image_name}")
