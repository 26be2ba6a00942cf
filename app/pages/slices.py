"""Slice viewer page: linked views, zoom, window/level, label and heat overlays, distances.

:func:`render` is the page of a run's case; :func:`viewer` is the viewer itself, shared with
the view-only page (:mod:`tumorscope.app.pages.viewer`), which has no prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

from tumorscope.app import legend, run_b, slice_canvas, tables
from tumorscope.app import lesions as case_lesions
from tumorscope.app import volumes as volumes_cache
from tumorscope.app.caches import stamp
from tumorscope.app.state import (
    MOVES_KEY,
    POSITION_KEYS,
    Context,
    crosshair_case_key,
    keep_alive,
    position_moved,
    set_position,
    shown_path,
)
from tumorscope.app.viewer_data import ViewerVolumes, region_map, run_volumes
from tumorscope.core.data.labels import LABEL_NAMES, REGION_NAMES, REGIONS
from tumorscope.core.errors import TumorscopeError
from tumorscope.core.store import CaseRecord, Run
from tumorscope.render import slices, style
from tumorscope.render.export import png_bytes
from tumorscope.render.slices import View

OVERLAY_LABELS = {
    "prediction": "Prediction", "truth": "Ground truth",
    "both": "Truth outline + prediction", "disagreement": "Disagreement (FP red, FN blue)",
    "probability": "Probability heat map", "variance": "TTA disagreement heat map",
    "ab_outlines": "A and B outlines", "ab_disagreement": "Where A and B disagree",
    "none": "None",
}
HEAT_OVERLAYS = ("probability", "variance")
VIEW_SLIDERS: dict[View, tuple[str, str]] = {"axial": ("sl_z", "Axial slice (z, I → S)"),
                "coronal": ("sl_y", "Coronal slice (y, P → A)"),
                "sagittal": ("sl_x", "Sagittal slice (x, L → R)")}
CLICK_KEYS = {view: f"click_{view}" for view in VIEW_SLIDERS}
"""Widget keys of the clickable views; their value is the last click (x, y, width, height px)."""
LARGE_CLICK_KEYS = {view: f"click_{view}_large" for view in VIEW_SLIDERS}
"""The same in the one-large-view layout: a view of its own (the component sizes its frame
to its first picture's column, and would keep the large frame in the three-view layout)."""
CANVAS_KEYS = {view: f"canvas_{view}" for view in VIEW_SLIDERS}
"""Widget keys of the views drawn in the browser (:mod:`tumorscope.app.slice_canvas`): a
click as in CLICK_KEYS, and the slice the view was stepped to (``slice``, ``slice_event``)."""
LARGE_CANVAS_KEYS = {view: f"canvas_{view}_large" for view in VIEW_SLIDERS}
"""The same in the one-large-view layout (a component of its own, as LARGE_CLICK_KEYS)."""
BROWSER_KEY = "sl_browser"
"""The Fast scroll toggle: views drawn in the browser (True, the default) or on the server."""
CANVAS_FAILED_KEY = "sl_canvas_failed"
"""Why the browser-drawn views could not be served in this session (then the server draws)."""
PORT_KEYS = {view: f"sl_port_{view}" for view in VIEW_SLIDERS}
"""What each view showed when last drawn (a :class:`~tumorscope.render.slices.Viewport` as a
tuple): a click is a fraction of that picture."""
MEASURE_KEY = "sl_measure"
"""The distance measurement: up to two RAS index positions (floats), clicked in order."""
STEP_SHORTCUTS = ("PageDown", "PageUp")
"""Keys that step the first view shown (axial, or the one large view) down and up a slice."""
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
    pick_modality, pick_lesion, pick_b = st.columns([2, 3, 2], vertical_alignment="bottom")
    with pick_modality:
        modality = modality_picker(list(images))
    volumes = run_volumes(ctx.run, case, modality)
    case_key = crosshair_case_key(ctx.run, case.case_id)
    reset_on_new_case(case_key, volumes)
    with pick_lesion:
        _lesion_picker(ctx.run, case)
    with pick_b:
        b = run_b.picker(ctx, case.case_id)
    if b is not None and volumes.prediction is not None:
        try:
            volumes = replace(volumes, prediction_b=run_b.prediction_b(b, volumes.image),
                              names=(ctx.run.name, b.name))
        except TumorscopeError as exc:
            st.error(f"Cannot compare with run {b.name}: {exc}",
                     icon=":material/compare_arrows:")
    viewer(volumes, case_key=f"{case_key}|{modality}", image_path=images[modality],
           file_stem=f"{case.case_id}_{modality}",
           maps_hint=_maps_hint(ctx.run, volumes))


def modality_picker(options: list[str], label: str = "Modality") -> str:
    """The image shown, of ``options`` (modalities, or a folder's image names)."""
    if st.session_state.get("sl_modality") not in options:
        st.session_state["sl_modality"] = "flair" if "flair" in options else options[0]
    st.segmented_control(label, options, key="sl_modality", required=True)
    return st.session_state["sl_modality"] or options[0]


def tumour_mask(volumes: ViewerVolumes) -> np.ndarray | None:
    """Whole tumour of the truth, else of the prediction (what 'the tumour' means here)."""
    source = volumes.truth if volumes.truth is not None else volumes.prediction
    return None if source is None else source.data != 0


def _jump(position: Sequence[int]) -> None:
    set_position(position)


def reset_on_new_case(case_key: str, volumes: ViewerVolumes) -> None:
    """A new patient opens on its largest tumour slices (or the volume's centre)."""
    shape = volumes.image.shape
    inside = all(0 <= int(st.session_state.get(k, -1)) < n
                 for k, n in zip(POSITION_KEYS, shape, strict=True))
    if st.session_state.get("sl_case") == case_key and inside:
        return
    st.session_state["sl_case"] = case_key
    st.session_state[MEASURE_KEY] = []
    mask = tumour_mask(volumes)
    _jump((slices.largest_slices(mask) if mask is not None else None) or slices.centre(shape))


def _port(view: View, shape: Sequence[int]) -> slices.Viewport:
    stored = st.session_state.get(PORT_KEYS[view])
    full = slices.full_viewport(shape, view)
    if not stored or len(stored) != 4:
        return full
    port = slices.Viewport(*(int(v) for v in stored))
    fits = (port.row0 + port.rows <= full.rows and port.col0 + port.cols <= full.cols)
    return port if fits else full


def _follow_clicks(shape: tuple[int, int, int]) -> None:
    """A click on a view moves the crosshair there (and so the other two views' slices), or
    in measure mode marks a point of the distance.

    Runs before the sliders are drawn (their values can only be set then). Each click is
    taken once, by its time stamp: the component keeps returning its last click. The click
    is a fraction of the picture as it was drawn (its viewport, kept per view).
    """
    for view, key in [*CLICK_KEYS.items(), *LARGE_CLICK_KEYS.items(), *CANVAS_KEYS.items(),
                      *LARGE_CANVAS_KEYS.items()]:
        click = st.session_state.get(key)
        seen_key = f"seen_{key}"
        if not click or "unix_time" not in click or \
                click.get("unix_time") == st.session_state.get(seen_key):
            continue
        st.session_state[seen_key] = click.get("unix_time")
        if not click.get("width") or not click.get("height"):
            continue
        xyz = tuple(int(st.session_state[k]) for k in POSITION_KEYS)
        where = {"row_frac": click["y"] / click["height"],
                 "col_frac": click["x"] / click["width"], "port": _port(view, shape)}
        if st.session_state.get("sl_click") == "measure":
            points = list(st.session_state.get(MEASURE_KEY) or [])
            points = (points if len(points) < 2 else []) + [
                slices.point_at(shape, view, xyz, **where)]
            st.session_state[MEASURE_KEY] = points
        else:
            _jump(slices.voxel_at(shape, view, xyz, **where))


def _follow_steps(shape: tuple[int, int, int]) -> None:
    """A browser view stepped to another slice moves its slider there (before the sliders
    are drawn); each step report is taken once, and only if it was made on the crosshair
    as it is (no move since, see MOVES_KEY), on this case, by a view of this layout."""
    s = st.session_state
    keys = LARGE_CANVAS_KEYS if len(_shown_views()) == 1 else CANVAS_KEYS
    for view, key in keys.items():
        value = s.get(key)
        seen_key = f"seen_step_{key}"
        if not value or "slice_event" not in value or value["slice_event"] == s.get(seen_key):
            continue
        s[seen_key] = value["slice_event"]
        if value.get("seq") != s.get(MOVES_KEY, 0) or value.get("case") != s.get("sl_case"):
            continue  # overruled: the view takes Python's slice on its next render
        axis = slices.AXIS_OF_VIEW[view]
        s[POSITION_KEYS[axis]] = int(np.clip(int(value["slice"]), 0, shape[axis] - 1))


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


def _maps_hint(run: Run, volumes: ViewerVolumes) -> str | None:
    """How to get the maps this case has not got, as a command for this run."""
    if volumes.maps.probability is not None and volumes.maps.variance is not None:
        return None
    claim = run.predict_claim() or {}
    # Paths as the pages show them (relative to the working folder, or under ~).
    checkpoint, data = claim.get("checkpoint"), claim.get("input")
    command = (f"tumorscope predict --checkpoint "
               f"{shown_path(checkpoint) if checkpoint else 'CHECKPOINT'} "
               f"--input {shown_path(data) if data else 'DATA'} --out {shown_path(run.path)} "
               "--save-probabilities")
    mirrored = bool((claim.get("settings") or {}).get("mirror_axes"))
    if volumes.maps.probability is None:
        what = "No probability map is saved for this case."
        how = (f"`{command}` writes one" + (" and the TTA variance" if mirrored else "") + ".")
        if not mirrored:
            how += (" Add `--mirror --force` for the TTA disagreement map as well (mirroring "
                    "changes the predictions, so it replaces the run's; or give a new `--out`).")
        return f"{what} {how}"
    return ("No TTA disagreement map: this run was predicted without mirroring. "
            f"`{command} --mirror --force` makes one (mirroring changes the predictions, so "
            "it replaces the run's; or give a new `--out`).")


# --------------------------------------------------------------------------------------------
# the viewer


def viewer(volumes: ViewerVolumes, *, case_key: str, image_path: Path, file_stem: str,
           maps_hint: str | None = None) -> None:
    """The slice viewer over ``volumes``: controls, views, legend and readout.

    ``case_key`` names what is shown (a new one resets the window); ``maps_hint`` says how
    to get the maps a prediction lacks.
    """
    _reset_window_on_change(case_key, image_path)
    _overlay_controls(volumes, maps_hint)
    _window_controls(image_path, volumes)
    _layout_controls()
    _slice_views(volumes, file_stem=file_stem)


@st.fragment
def _slice_views(volumes: ViewerVolumes, *, file_stem: str) -> None:
    """The views with their sliders, legend and readout: a fragment, so a slice change or a
    click redraws only this, not the page and the controls around it."""
    keep_alive(POSITION_KEYS)  # the one-view layout leaves two sliders undrawn
    _follow_steps(volumes.image.shape)
    _follow_clicks(volumes.image.shape)
    views = _views(volumes)
    _legend(volumes)
    _readout(volumes)
    _measure_readout(volumes)
    st.caption(CONVENTION_NOTE.format(codes="".join(volumes.image.source_axcodes)))
    s = st.session_state
    st.download_button(
        "Slices (PNG)", key="btn_slices_png", mime="image/png", icon=":material/image:",
        file_name=f"{file_stem}_x{s['sl_x']}_y{s['sl_y']}_z{s['sl_z']}.png",
        data=lambda: png_bytes(slices.combine_views(views())))


def _auto_window(path: Path) -> tuple[float, float]:
    return volumes_cache.auto_window(str(path), stamp(path))


def _set_window(level: float, width: float) -> None:
    st.session_state["sl_level"] = float(level)
    st.session_state["sl_width"] = float(width)


def _reset_window_on_change(key: str, path: Path) -> None:
    if st.session_state.get("sl_window_for") != key:
        st.session_state["sl_window_for"] = key
        _set_window(*_auto_window(path))


def _overlay_options(volumes: ViewerVolumes) -> list[str]:
    has_truth, has_pred = volumes.truth is not None, volumes.prediction is not None
    options: list[str] = list(slices.AB_OVERLAYS) if volumes.prediction_b is not None else []
    if has_pred:
        options += ["prediction", "truth", "both", "disagreement"] if has_truth \
            else ["prediction"]
    elif has_truth:
        options.append("truth")
    options += [k for k in HEAT_OVERLAYS if volumes.maps.path(k) is not None]
    return [*options, "none"]


def _overlay_controls(volumes: ViewerVolumes, maps_hint: str | None) -> None:
    options = _overlay_options(volumes)
    if st.session_state.get("sl_overlay") not in options:
        st.session_state["sl_overlay"] = options[0]
    overlay, drawn, alpha, region = st.columns([3, 2, 2, 2])
    overlay.selectbox("Overlay", options, key="sl_overlay",
                      format_func=OVERLAY_LABELS.__getitem__,
                      help=None if volumes.truth is not None else "No ground truth here.")
    chosen = st.session_state["sl_overlay"]
    heat = chosen in HEAT_OVERLAYS
    drawn.segmented_control("Drawn as", ["filled", "outline"], key="sl_style", required=True,
                            disabled=chosen in ("both", "none", "ab_outlines") or heat)
    alpha.slider("Fill opacity", 0.05, 1.0, step=0.05, key="sl_alpha",
                 disabled=chosen in ("none", "ab_outlines") or heat)
    region.selectbox("Region", REGIONS, key="sl_region",
                     disabled=chosen not in ("disagreement", *slices.AB_OVERLAYS,
                                             *HEAT_OVERLAYS),
                     format_func=lambda r: f"{r} ({REGION_NAMES[r]})",
                     help="Whose disagreement, probability or TTA disagreement is shown.")
    if heat:
        region_index = REGIONS.index(st.session_state["sl_region"])
        made_at = volumes.maps.thresholds[region_index]
        if st.session_state.get("sl_threshold_for") != st.session_state["sl_region"]:
            st.session_state["sl_threshold_for"] = st.session_state["sl_region"]
            st.session_state["sl_threshold"] = float(np.clip(made_at, 0.01, 0.99))
        st.slider("Threshold (dashed outline: probability above it)", 0.01, 0.99, step=0.01,
                  key="sl_threshold",
                  help=f"The prediction was made at {made_at:g} for this region (before any "
                       "post-processing); move it to see what another threshold would keep.")
    if maps_hint:
        st.caption(f":material/info: {maps_hint}")


def _window_controls(path: Path, volumes: ViewerVolumes) -> None:
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
    mask = tumour_mask(volumes)
    target = slices.largest_slices(mask) if mask is not None else None
    jump.button("Largest tumour slice", key="btn_jump", on_click=_jump,
                args=(target,), disabled=target is None, icon=":material/my_location:",
                help="Largest whole-tumour cross-section in each view "
                     "(ground truth if there is one, else the prediction).")
    reset.button("Auto window", key="btn_auto_window", on_click=_set_window,
                 args=_auto_window(path), icon=":material/contrast:",
                 help="0.5-99.5th percentile of the brain's intensities.")


def _layout_controls() -> None:
    layout, which, zoom, click, cross, browser = st.columns([2, 2, 3, 2.6, 1.4, 1.6],
                                                            vertical_alignment="bottom")
    layout.segmented_control("Layout", ["three", "one"], key="sl_layout", required=True,
                             format_func={"three": "3 views", "one": "1 large"}.__getitem__)
    which.selectbox("Large view", slices.VIEWS, key="sl_big_view",
                    disabled=st.session_state.get("sl_layout") != "one")
    zoom.select_slider("Zoom", slices.ZOOMS, key="sl_zoom", format_func=lambda z: f"{z:g}×",
                       help="Each view shows 1/zoom of its plane, centred on the crosshair "
                            "(as far as the edges allow): click to move the centre.")
    click.segmented_control("Clicks", ["crosshair", "measure"], key="sl_click", required=True,
                            format_func={"crosshair": "move crosshair",
                                         "measure": "measure mm"}.__getitem__,
                            help="Measure: click two points (in any view) for their distance "
                                 "in mm, from the image's affine; a third click starts over.")
    cross.toggle("Crosshair", key="sl_crosshair")
    browser.toggle("Fast scroll", key=BROWSER_KEY,
                   help="Views drawn in the browser from the volume, sent once: the mouse "
                        "wheel and the arrow keys on a view step through its slices with no "
                        "wait for the server (the sliders follow). Off, or with a heat map "
                        "or while measuring, the server draws each picture.")


def _step(key: str, delta: int, size: int) -> None:
    st.session_state[key] = int(np.clip(int(st.session_state[key]) + delta, 0, size - 1))
    position_moved()


def _shown_views() -> tuple[View, ...]:
    if st.session_state.get("sl_layout") == "one":
        return (st.session_state.get("sl_big_view") or "axial",)
    return slices.VIEWS


def _heat(volumes: ViewerVolumes) -> tuple[slices.HeatLayer | None, np.ndarray | None]:
    """The heat layer and the probability outlined at the threshold, for the chosen region."""
    kind = st.session_state["sl_overlay"]
    if kind not in HEAT_OVERLAYS:
        return None, None
    k = REGIONS.index(st.session_state["sl_region"])
    heat = region_map(volumes.maps, kind, volumes.image).data[..., k]
    probability = heat if kind == "probability" else None
    if kind == "variance" and volumes.maps.probability is not None:
        probability = region_map(volumes.maps, "probability", volumes.image).data[..., k]
    return slices.HeatLayer(heat, "variance" if kind == "variance" else "probability"), \
        probability


def _in_browser(heat: slices.HeatLayer | None, ports: dict[View, slices.Viewport],
                sizes: dict[View, tuple[int, int]]) -> bool:
    """Whether the views are drawn in the browser: unless turned off (or not servable here),
    for every overlay but the heat maps, not while a distance is measured or shown (its
    marks are drawn on the server), and not when a view (its ``ports`` part of the plane,
    drawn ``sizes`` pixels large) is smaller than its voxels (the server smooths those; the
    browser samples nearest-neighbour only)."""
    s = st.session_state
    if not s.get(BROWSER_KEY, True) or s.get(CANVAS_FAILED_KEY) or heat is not None:
        return False
    if s.get("sl_click") == "measure" or s.get(MEASURE_KEY):
        return False
    return all(sizes[v][1] >= port.cols and sizes[v][0] >= port.rows
               for v, port in ports.items())


def _views(volumes: ViewerVolumes) -> Callable[[], dict[View, np.ndarray]]:
    """Draw the views with their sliders; returns what draws them as pictures (the PNG
    download, made only when asked for)."""
    s = st.session_state
    xyz = (int(s["sl_x"]), int(s["sl_y"]), int(s["sl_z"]))
    shape = volumes.image.shape
    shown = _shown_views()
    one = len(shown) == 1
    zoom = float(s.get("sl_zoom") or 1.0)
    try:
        heat, probability = _heat(volumes)
    except TumorscopeError as exc:
        st.warning(f"Cannot show the heat map: {exc}", icon=":material/report:")
        heat, probability = None, None
    measure = s.get(MEASURE_KEY) or []
    distance = _distance_text(volumes, measure)
    labels = {"truth": volumes.truth.data if volumes.truth is not None else None,
              "prediction": volumes.prediction.data if volumes.prediction is not None
              else None,
              "prediction_b": (volumes.prediction_b.data if volumes.prediction_b is not None
                               else None)}
    overlay = dict(overlay=s["sl_overlay"] if heat is None else "none",
                   overlay_style=s["sl_style"] or "filled", alpha=float(s["sl_alpha"]),
                   region=s["sl_region"])
    display_px = slices.LARGE_DISPLAY_PX if one else slices.DISPLAY_PX
    crosshair = bool(s.get("sl_crosshair", True))

    def picture(view: View) -> np.ndarray:
        return slices.render_view(
            volumes.image.data, view, xyz, spacing_mm=volumes.image.spacing_mm,
            level=float(s["sl_level"]), width=float(s["sl_width"]), **labels, **overlay,
            crosshair=crosshair, display_px=display_px, zoom=zoom, heat=heat,
            probability=probability, threshold=float(s.get("sl_threshold", 0.5)),
            measure=tuple(measure), measure_text=distance)

    # What each view shows at zoom (render_view's part of the plane) and how large.
    ports = {view: slices.viewport(shape, view, xyz, zoom) for view in shown}
    sizes = {view: slices.view_size(shape, volumes.image.spacing_mm, view, display_px)
             for view in shown}
    browser = _in_browser(heat, ports, sizes)
    # Images in one row and sliders in the next, so the sliders line up whatever the views'
    # heights (axial is 240 x 240 mm, coronal and sagittal 240 x 155 mm in BraTS).
    columns = st.columns([3, 1] if one else 3)
    slider_columns = st.columns([3, 1] if one else 3)
    for i, view in enumerate(shown):
        port = ports[view]
        s[PORT_KEYS[view]] = (port.row0, port.col0, port.rows, port.cols)
        key, label = VIEW_SLIDERS[view]
        axis = slices.AXIS_OF_VIEW[view]
        with columns[i]:
            if browser:
                try:
                    slice_canvas.slice_canvas(
                        view=view, case=str(s.get("sl_case")), image=volumes.image.data,
                        xyz=xyz, port=port, size=sizes[view],
                        seq=int(s.get(MOVES_KEY, 0)), level=float(s["sl_level"]),
                        width=float(s["sl_width"]), **labels, **overlay, crosshair=crosshair,
                        display_px=display_px,
                        key=(LARGE_CANVAS_KEYS if one else CANVAS_KEYS)[view])
                except OSError as exc:
                    # The blobs cannot be written (a read-only or full cache folder): the
                    # server draws the pictures for the rest of the session.
                    s[CANVAS_FAILED_KEY] = (f"Fast scroll is off: cannot write to "
                                            f"{slice_canvas.served_dir()} ({exc.strerror or exc})")
                    browser = False
            if not browser:
                # Clickable (a small component): a click sets the crosshair, see
                # _follow_clicks. PNG level 1: a fast, lossless encoding about a third of
                # the raw size.
                streamlit_image_coordinates(picture(view), width="stretch",
                                            key=(LARGE_CLICK_KEYS if one else CLICK_KEYS)[view],
                                            png_compression_level=1, cursor="crosshair")
            caption = f"{view} · click to " + ("measure" if s.get("sl_click") == "measure"
                                               else "move the crosshair")
            if browser:
                caption += " · wheel or arrow keys: step"
            elif s.get(CANVAS_FAILED_KEY) and i == 0:
                st.warning(s[CANVAS_FAILED_KEY], icon=":material/speed:")
            if zoom > 1:
                caption += f" · {zoom:g}× around the crosshair"
            st.caption(caption)
        with (columns[1] if one else slider_columns[i]):
            _slice_stepper(view, key, label, shape[axis], shortcuts=i == 0)
    if heat is not None and probability is not None:
        _threshold_counts(shown, probability, xyz)
    return lambda: {view: picture(view) for view in shown}


def _slice_stepper(view: View, key: str, label: str, size: int, *, shortcuts: bool) -> None:
    """A slice's slider and -/+ buttons; the first view's buttons answer Page Down/Up."""
    st.slider(label, 0, size - 1, key=key, on_change=position_moved)
    down, up = st.columns(2)
    down.button("", key=f"btn_{view}_down", icon=":material/remove:", on_click=_step,
                args=(key, -1, size), width="stretch", help=f"{view}: one slice down",
                shortcut=STEP_SHORTCUTS[0] if shortcuts else None)
    up.button("", key=f"btn_{view}_up", icon=":material/add:", on_click=_step,
              args=(key, 1, size), width="stretch", help=f"{view}: one slice up",
              shortcut=STEP_SHORTCUTS[1] if shortcuts else None)


def _threshold_counts(shown: Sequence[View], probability: np.ndarray,
                      xyz: Sequence[int]) -> None:
    """How many voxels of each slice shown the dashed outline encloses (p > threshold)."""
    s = st.session_state
    threshold = float(s["sl_threshold"])
    counts = []
    for view in shown:
        plane = slices.slice_2d(probability, view, int(xyz[slices.AXIS_OF_VIEW[view]]))
        counts.append(f"{view} {int(np.count_nonzero(plane > threshold)):,}")
    st.caption(f"{s['sl_region']} p > {threshold:.2f} (dashed outline), voxels of the slice: "
               + " · ".join(counts))


def _distance_text(volumes: ViewerVolumes, measure: Sequence[Sequence[float]]) -> str:
    if len(measure) != 2:
        return ""
    return f"{slices.distance_mm(volumes.image.affine, measure[0], measure[1]):.1f} mm"


def _legend(volumes: ViewerVolumes) -> None:
    overlay = st.session_state["sl_overlay"]
    region = st.session_state["sl_region"]
    name_a, name_b = volumes.names or ("A", "B")
    if overlay in HEAT_OVERLAYS:
        chips = [legend.ramp("probability 0 → 1" if overlay == "probability" else
                             "TTA disagreement 0 → 1 (2 × std of the mirrored passes)")]
        if volumes.maps.probability is not None:
            threshold = float(st.session_state["sl_threshold"])
            chips.append(legend.swatch(style.PREDICTION_OUTLINE_COLOUR,
                                       f"{region} p > {threshold:.2f} (dashed)"))
        if volumes.truth is not None:
            chips.append(legend.swatch(style.TRUTH_OUTLINE_COLOUR,
                                       f"ground truth {region} (solid)"))
    elif overlay == "disagreement":
        chips = [legend.swatch(style.ERROR_COLOURS[k], style.ERROR_NAMES[k])
                 for k in ("FP", "FN")]
    elif overlay == "ab_outlines":
        chips = [legend.line(style.RUN_COLOURS["A"], f"{region} of A: {name_a}"),
                 legend.line(style.RUN_COLOURS["B"], f"{region} of B: {name_b} (over A where "
                                                     "they coincide)")]
    elif overlay == "ab_disagreement":
        chips = [legend.swatch(style.REGION_COLOURS[region], f"{region}: both"),
                 legend.swatch(style.ERROR_COLOURS["A_only"], f"only A: {name_a}"),
                 legend.swatch(style.ERROR_COLOURS["B_only"], f"only B: {name_b}")]
    elif overlay == "none":
        chips = []
    else:
        chips = [legend.swatch(c, f"{LABEL_NAMES[v]} ({v})")
                 for v, c in style.LABEL_COLOURS.items()]
        if overlay == "both":
            chips.append(legend.swatch(style.TRUTH_NEUTRAL_COLOUR,
                                       "ground-truth outline (fill: prediction)"))
    if overlay in slices.AB_OVERLAYS and volumes.truth is not None:
        chips.append(legend.line(style.TRUTH_NEUTRAL_COLOUR, f"ground truth {region}"))
    if st.session_state.get("sl_crosshair", True):
        chips.append(legend.swatch(style.CROSSHAIR_COLOUR, "crosshair"))
    if chips:
        st.markdown(" ".join(chips), unsafe_allow_html=True)


def _readout(volumes: ViewerVolumes) -> None:
    """What lies under the crosshair: voxel, world position, intensity and labels."""
    s = st.session_state
    xyz = (int(s["sl_x"]), int(s["sl_y"]), int(s["sl_z"]))
    world = volumes.image.affine @ np.array([*xyz, 1.0])
    parts = [f"voxel (RAS) {xyz}", "world ({:.1f}, {:.1f}, {:.1f}) mm".format(*world[:3]),
             f"intensity {float(volumes.image.data[xyz]):.3g}"]
    if volumes.prediction is not None:
        parts.append(f"prediction: {LABEL_NAMES.get(int(volumes.prediction.data[xyz]), '?')}")
    if volumes.truth is not None:
        parts.append(f"truth: {LABEL_NAMES.get(int(volumes.truth.data[xyz]), '?')}")
    if s["sl_overlay"] in HEAT_OVERLAYS:
        region = s["sl_region"]
        # Only the maps the views read already: each is ~100 MB for a BraTS case.
        shown = HEAT_OVERLAYS if s["sl_overlay"] == "variance" else ("probability",)
        for kind in shown:
            if volumes.maps.path(kind) is None:
                continue
            try:
                value = float(region_map(volumes.maps, kind, volumes.image)
                              .data[(*xyz, REGIONS.index(region))])
            except TumorscopeError:  # said above the views already
                continue
            parts.append(f"{region} {'p' if kind == 'probability' else 'TTA variance'} "
                         f"{value:.3g}")
    st.caption(" · ".join(parts))


def _measure_readout(volumes: ViewerVolumes) -> None:
    points = st.session_state.get(MEASURE_KEY) or []
    if not points:
        if st.session_state.get("sl_click") == "measure":
            st.caption(":material/straighten: Click the first point of the distance.")
        return
    where = " → ".join("({:.1f}, {:.1f}, {:.1f})".format(*p) for p in points)
    text, clear = st.columns([5, 1], vertical_alignment="center")
    if len(points) == 1:
        text.caption(f":material/straighten: From voxel {where}: click the second point.")
    else:
        text.markdown(f":material/straighten: **Distance {_distance_text(volumes, points)}** "
                      f"between voxels (RAS) {where}, in world mm from the image's affine "
                      f"(voxel {' × '.join(f'{v:g}' for v in volumes.image.spacing_mm)} mm).")
    clear.button("Clear distance", key="btn_clear_measure", icon=":material/close:",
                 on_click=lambda: st.session_state.update({MEASURE_KEY: ()}))
