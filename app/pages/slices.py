"""Slice viewer page: three linked views, window/level, truth/prediction/disagreement overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

from tumorscope.app import lesions as case_lesions
from tumorscope.app import tables
from tumorscope.app import volumes as volumes_cache
from tumorscope.app.caches import stamp
from tumorscope.app.state import POSITION_KEYS, Context, crosshair_case_key
from tumorscope.app.volumes import CaseVolumes
from tumorscope.core.data.labels import LABEL_NAMES, REGION_NAMES, REGIONS
from tumorscope.core.store import CaseRecord, Run
from tumorscope.render import slices, style
from tumorscope.render.export import png_bytes
from tumorscope.render.slices import View

OVERLAY_LABELS = {
    "prediction": "Prediction", "truth": "Ground truth",
    "both": "Truth outline + prediction", "disagreement": "Disagreement (FP red, FN blue)",
    "none": "None",
}
VIEW_SLIDERS: dict[View, tuple[str, str]] = {"axial": ("sl_z", "Axial slice (z, I → S)"),
                "coronal": ("sl_y", "Coronal slice (y, P → A)"),
                "sagittal": ("sl_x", "Sagittal slice (x, L → R)")}
CLICK_KEYS = {view: f"click_{view}" for view in VIEW_SLIDERS}
"""Widget keys of the clickable views; their value is the last click (x, y, width, height px)."""
LESION_PICK_MAX = 300
"""Lesions offered by the slice viewer's picker at most (misses first, then false positives,
larger first): an untrained net's noise makes thousands of specks."""
CONVENTION_NOTE = (
    "Radiological convention: the patient's right is on the image left. Axial is seen from "
    "the feet (anterior up), coronal from the front, sagittal from the patient's left "
    "(anterior left). Volumes are flipped to RAS order from the file's affine "
    "(this file: {codes}); nothing is resampled.")


def render(ctx: Context) -> None:
    assert ctx.run is not None and ctx.case_id is not None
    case = tables.case_record(ctx.run, ctx.case_id)
    images = volumes_cache.modality_paths(case)
    title, button = st.columns([5, 1], vertical_alignment="bottom")
    title.title(f"Slices · {case.case_id}")
    if button.button("Patient 3D", key="btn_to_patient", icon=":material/view_in_ar:"):
        ctx.open("patient")
    if case.synthetic:
        st.caption(":material/science: Synthetic demo data, not a patient.")
    if not images:
        st.warning(f"No images are recorded for {case.case_id} in {ctx.run.cases_path}.")
        return
    pick_modality, pick_lesion = st.columns([2, 3], vertical_alignment="bottom")
    with pick_modality:
        modality = _modality_picker(list(images))
    voxels = volumes_cache.case_volumes(ctx.run, case, modality)
    case_key = crosshair_case_key(ctx.run, case.case_id)
    _reset_on_new_case(case_key, voxels)
    with pick_lesion:
        _lesion_picker(ctx.run, case)
    _follow_clicks(voxels.image.shape)
    _reset_window_on_change(f"{case_key}|{modality}", images[modality])
    _overlay_controls(case)
    _window_controls(images[modality], voxels)
    views = _views(voxels)
    _legend()
    _readout(voxels)
    st.caption(CONVENTION_NOTE.format(codes="".join(voxels.image.source_axcodes)))
    st.download_button(
        "Slices (PNG)", key="btn_slices_png", mime="image/png", icon=":material/image:",
        file_name=f"{case.case_id}_{modality}_x{st.session_state['sl_x']}"
                  f"_y{st.session_state['sl_y']}_z{st.session_state['sl_z']}.png",
        data=lambda: png_bytes(slices.combine_views(views)))


def _modality_picker(options: list[str]) -> str:
    if st.session_state.get("sl_modality") not in options:
        st.session_state["sl_modality"] = "flair" if "flair" in options else options[0]
    st.segmented_control("Modality", options, key="sl_modality", required=True)
    return st.session_state["sl_modality"] or options[0]


def tumour_mask(volumes: CaseVolumes) -> np.ndarray:
    """Whole tumour of the truth, else of the prediction (what 'the tumour' means here)."""
    source = volumes.truth if volumes.truth is not None else volumes.prediction
    return source.data != 0


def _jump(position: tuple[int, int, int]) -> None:
    for key, value in zip(POSITION_KEYS, position, strict=True):
        st.session_state[key] = int(value)


def _reset_on_new_case(case_key: str, volumes: CaseVolumes) -> None:
    """A new patient opens on its largest tumour slices (or the volume's centre)."""
    shape = volumes.image.shape
    inside = all(0 <= int(st.session_state.get(k, -1)) < n
                 for k, n in zip(POSITION_KEYS, shape, strict=True))
    if st.session_state.get("sl_case") == case_key and inside:
        return
    st.session_state["sl_case"] = case_key
    _jump(slices.largest_slices(tumour_mask(volumes)) or slices.centre(shape))


def _follow_clicks(shape: tuple[int, int, int]) -> None:
    """A click on a view moves the crosshair there, and so the other two views' slices.

    Runs before the sliders are drawn (their values can only be set then). Each click is
    taken once, by its time stamp: the component keeps returning its last click.
    """
    for view, key in CLICK_KEYS.items():
        click = st.session_state.get(key)
        seen_key = f"seen_{key}"
        if not click or click.get("unix_time") == st.session_state.get(seen_key):
            continue
        st.session_state[seen_key] = click.get("unix_time")
        if not click.get("width") or not click.get("height"):
            continue
        xyz = tuple(int(st.session_state[k]) for k in POSITION_KEYS)
        _jump(slices.voxel_at(shape, view, xyz, row_frac=click["y"] / click["height"],
                              col_frac=click["x"] / click["width"]))


def _lesion_picker(run: Run, case: CaseRecord) -> None:
    """Jump the crosshair to one of the case's lesions (the same choice as the patient
    page's lesion table: the 3-D view aims at it there)."""
    view = case_lesions.case_view(run, case.case_id,
                                  st.session_state.get(case_lesions.SCORING_KEY))
    if view.scoring is None:
        return
    listed = view.rows.head(LESION_PICK_MAX)
    labels: dict[str | None, str] = {None: "—"}
    labels.update({k: f"{s} · {r} lesion {i} · {v:.2f} mL" for k, s, r, i, v in zip(
        listed["key"], listed["status"], listed["region"], listed["lesion"],
        listed["volume_ml"], strict=True)})
    chosen = case_lesions.chosen(run, case.case_id, view)
    if chosen is not None and chosen.key not in labels:
        labels[chosen.key] = (f"{chosen.status} · {chosen.region} lesion {chosen.lesion} · "
                              f"{chosen.volume_ml:.2f} mL")
    st.session_state["sl_lesion"] = chosen.key if chosen else None
    more = len(view.rows) - min(len(view.rows), LESION_PICK_MAX)
    st.selectbox(
        f"Go to lesion ({view.scoring})", list(labels), key="sl_lesion",
        format_func=labels.__getitem__,
        on_change=lambda: case_lesions.choose(run, case, view,
                                              st.session_state.get("sl_lesion")),
        help="Moves the crosshair to the lesion's centre of mass; misses (FN) first, then "
             "false positives (FP), larger first" + (f"; {more} more are listed on the "
                                                      "Patient 3D page" if more else "") + ".")


def _auto_window(path: Path) -> tuple[float, float]:
    return volumes_cache.auto_window(str(path), stamp(path))


def _set_window(level: float, width: float) -> None:
    st.session_state["sl_level"] = float(level)
    st.session_state["sl_width"] = float(width)


def _reset_window_on_change(key: str, path: Path) -> None:
    if st.session_state.get("sl_window_for") != key:
        st.session_state["sl_window_for"] = key
        _set_window(*_auto_window(path))


def _overlay_controls(case: CaseRecord) -> None:
    options = list(OVERLAY_LABELS) if case.has_truth else ["prediction", "none"]
    if st.session_state.get("sl_overlay") not in options:
        st.session_state["sl_overlay"] = "prediction"
    overlay, drawn, alpha, region = st.columns([3, 2, 2, 2])
    overlay.selectbox("Overlay", options, key="sl_overlay",
                      format_func=OVERLAY_LABELS.__getitem__,
                      help=None if case.has_truth else "No ground truth for this case.")
    chosen = st.session_state["sl_overlay"]
    drawn.segmented_control("Drawn as", ["filled", "outline"], key="sl_style", required=True,
                            disabled=chosen in ("both", "none"))
    alpha.slider("Fill opacity", 0.05, 1.0, step=0.05, key="sl_alpha",
                 disabled=chosen == "none")
    region.selectbox("Disagreement of", REGIONS, key="sl_region",
                     disabled=chosen != "disagreement",
                     format_func=lambda r: f"{r} ({REGION_NAMES[r]})")


def _window_controls(path: Path, volumes: CaseVolumes) -> None:
    low, high = volumes_cache.intensity_range(str(path), stamp(path))
    span = high - low
    step = span / 500.0
    # Keep stored values inside this image's range (a slider outside its range raises).
    st.session_state["sl_level"] = float(np.clip(st.session_state["sl_level"], low, high))
    st.session_state["sl_width"] = float(np.clip(st.session_state["sl_width"], step, span))
    level, width, jump, reset = st.columns([3, 3, 2, 2], vertical_alignment="bottom")
    level.slider("Level (window centre)", low, high, step=step, key="sl_level",
                 format="%.3g")
    width.slider("Window width", step, span, step=step, key="sl_width", format="%.3g")
    target = slices.largest_slices(tumour_mask(volumes))
    jump.button("Largest tumour slice", key="btn_jump", on_click=_jump,
                args=(target,), disabled=target is None, icon=":material/my_location:",
                help="Largest whole-tumour cross-section in each view "
                     "(ground truth if there is one, else the prediction).")
    reset.button("Auto window", key="btn_auto_window", on_click=_set_window,
                 args=_auto_window(path), icon=":material/contrast:",
                 help="0.5-99.5th percentile of the brain's intensities.")


def _views(volumes: CaseVolumes) -> dict[View, np.ndarray]:
    s = st.session_state
    xyz = (int(s["sl_x"]), int(s["sl_y"]), int(s["sl_z"]))
    shape = volumes.image.shape
    images: dict[View, np.ndarray] = {}
    # Images in one row and sliders in the next, so the sliders line up whatever the views'
    # heights (axial is 240 x 240 mm, coronal and sagittal 240 x 155 mm in BraTS).
    columns = st.columns(3)
    slider_columns = st.columns(3)
    for column, slider_column, view in zip(columns, slider_columns, slices.VIEWS,
                                           strict=True):
        images[view] = slices.render_view(
            volumes.image.data, view, xyz, spacing_mm=volumes.image.spacing_mm,
            level=float(s["sl_level"]), width=float(s["sl_width"]),
            truth=volumes.truth.data if volumes.truth is not None else None,
            prediction=volumes.prediction.data, overlay=s["sl_overlay"],
            overlay_style=s["sl_style"] or "filled", alpha=float(s["sl_alpha"]),
            region=s["sl_region"])
        key, label = VIEW_SLIDERS[view]
        axis = slices.AXIS_OF_VIEW[view]
        with column:
            # Clickable (a small component): a click sets the crosshair, see _follow_clicks.
            # PNG level 1: a fast, lossless encoding about a third of the raw size.
            streamlit_image_coordinates(images[view], key=CLICK_KEYS[view], width="stretch",
                                        png_compression_level=1, cursor="crosshair")
            st.caption(f"{view} · click to move the crosshair")
        slider_column.slider(label, 0, shape[axis] - 1, key=key)
    return images


def _chip(colour: style.Colour, text: str) -> str:
    return (f"<span style='display:inline-block;width:0.9em;height:0.9em;"
            f"background:{colour.hex};border-radius:2px;margin:0 0.3em 0 0.9em;"
            f"vertical-align:-0.1em'></span>{text}")


def _legend() -> None:
    overlay = st.session_state["sl_overlay"]
    if overlay == "none":
        return
    if overlay == "disagreement":
        chips = [_chip(style.ERROR_COLOURS[k], style.ERROR_NAMES[k]) for k in ("FP", "FN")]
    else:
        chips = [_chip(c, f"{LABEL_NAMES[v]} ({v})") for v, c in style.LABEL_COLOURS.items()]
        if overlay == "both":
            chips.append(_chip(style.TRUTH_NEUTRAL_COLOUR, "ground-truth outline (fill: "
                                                           "prediction)"))
    chips.append(_chip(style.CROSSHAIR_COLOUR, "crosshair"))
    st.markdown(" ".join(chips), unsafe_allow_html=True)


def _readout(volumes: CaseVolumes) -> None:
    """What lies under the crosshair: voxel, world position, intensity and labels."""
    s = st.session_state
    xyz = (int(s["sl_x"]), int(s["sl_y"]), int(s["sl_z"]))
    world = volumes.image.affine @ np.array([*xyz, 1.0])
    parts = [f"voxel (RAS) {xyz}", "world ({:.1f}, {:.1f}, {:.1f}) mm".format(*world[:3]),
             f"intensity {float(volumes.image.data[xyz]):.3g}",
             f"prediction: {LABEL_NAMES.get(int(volumes.prediction.data[xyz]), '?')}"]
    if volumes.truth is not None:
        parts.append(f"truth: {LABEL_NAMES.get(int(volumes.truth.data[xyz]), '?')}")
    st.caption(" · ".join(parts))
