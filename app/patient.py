"""Patient page: metadata, 3-D truth-vs-prediction scene and its controls, scores, downloads."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from tumorscope.app import data, exports
from tumorscope.core.data.labels import REGION_NAMES, REGIONS
from tumorscope.core.scoring.metrics import HD95_DEFINITION, METRIC_COLUMNS, METRIC_DOCS
from tumorscope.render.layers import ColourBy, SceneOptions

if TYPE_CHECKING:
    from tumorscope.app.streamlit_main import Context

SYNTHETIC_NOTE = ("Synthetic demo data: this tumour was grown inside the ICBM152 brain "
                  "template by `tumorscope demo-data`; it is not a patient.")
NO_TRUTH_NOTE = ("No ground truth for this case: the prediction is shown alone, without "
                 "scores, errors or distance colouring.")
CAMERA_LABELS = {"oblique": "oblique", "axial": "axial (from the feet)",
                 "coronal": "coronal (from the front)",
                 "sagittal": "sagittal (from the patient's left)"}
COLOURINGS: dict[str, ColourBy] = {"region colours": "region",
                                    "signed distance to truth": "signed_distance"}


@dataclass(frozen=True)
class View3D:
    """The 3-D view's settings, read from the widgets once per rerun: the scene's options
    (what the page, its PNG and its HTML all draw) and whose FP/FN voxels to load."""

    options: SceneOptions
    error_region: str


def render(ctx: Context) -> None:
    assert ctx.run is not None and ctx.case_id is not None
    pat = data.patient(ctx.run, ctx.case_id)
    metrics, _ = data.cohort(ctx.run)
    rows = metrics[metrics["case_id"] == pat.case_id]
    title, button = st.columns([5, 1], vertical_alignment="bottom")
    title.title(f"Patient {pat.case_id}")
    if button.button("Slice viewer", key="btn_to_slices", icon=":material/layers:"):
        ctx.open("slices")
    dice = dice_of(rows)
    stale = data.stale_scores(ctx.run).get(pat.case_id)
    if stale:
        st.warning(f"No current score for {pat.case_id}: {stale}.", icon=":material/history:")
    _header(pat, dice, metrics)
    view, meshes = _scene(pat, dice)
    _scores(pat, rows)
    _downloads(pat, rows, dice, view, meshes)


def dice_of(rows: pd.DataFrame) -> dict[str, float]:
    """Region -> Dice of one patient's metric rows."""
    return {str(r["region"]): float(r["dice"]) for _, r in rows.iterrows()}


def _header(pat: data.Patient, dice: dict[str, float], metrics: pd.DataFrame) -> None:
    if pat.synthetic:
        st.info(SYNTHETIC_NOTE, icon=":material/science:")
    meta = pat.metadata
    age = meta.get("age")
    tiles = st.columns(6)
    tiles[0].metric("Grade", meta.get("grade") or "unknown")
    tiles[1].metric("Age", f"{float(age):.0f}" if isinstance(age, int | float) else "unknown")
    tiles[2].metric("Ground truth", "yes" if pat.has_truth else "none")
    for tile, region in zip(tiles[3:], REGIONS, strict=True):
        value = dice.get(region)
        if value is None or math.isnan(value):
            tile.metric(f"Dice {region}", "n/a", help=REGION_NAMES[region])
            continue
        cohort_mean = metrics.loc[metrics["region"] == region, "dice"].mean()
        delta = round(value - cohort_mean, 3)
        tile.metric(f"Dice {region}", f"{value:.3f}",
                    delta=f"{delta:+.3f} vs cohort" if delta else None,
                    help=f"{REGION_NAMES[region]}; the change is against the cohort mean "
                         f"({cohort_mean:.3f})")
    if not pat.has_truth:
        st.info(NO_TRUTH_NOTE, icon=":material/info:")


def _controls(pat: data.Patient) -> View3D:
    has_truth = pat.has_truth
    st.pills("Regions", REGIONS, selection_mode="multi", key="p3d_regions",
             help="WT whole tumour, TC tumour core, ET enhancing tumour (nested).")
    left, right = st.columns(2)
    left.toggle("Ground truth", key="p3d_truth", disabled=not has_truth)
    right.toggle("Prediction", key="p3d_pred")
    st.radio("Colour the prediction by", list(COLOURINGS), key="p3d_colour",
             disabled=not has_truth,
             help="Signed distance of each prediction vertex to the truth surface: red where "
                  "the prediction lies outside the truth, blue inside (±5 mm).")
    st.slider("Truth opacity", 0.05, 1.0, step=0.05, key="p3d_truth_opacity",
              disabled=not has_truth)
    st.slider("Prediction opacity", 0.1, 1.0, step=0.05, key="p3d_pred_opacity")
    st.toggle("Brain surface", key="p3d_brain", help="Faint brain surface for context.")
    st.toggle("FP / FN voxels", key="p3d_errors", disabled=not has_truth,
              help="False positives red, false negatives blue, for one region.")
    if st.session_state["p3d_errors"] and has_truth:
        st.selectbox("FP / FN of region", REGIONS, key="p3d_error_region")
    st.selectbox("View from", list(CAMERA_LABELS), key="p3d_camera",
                 format_func=CAMERA_LABELS.__getitem__,
                 help="Axial and coronal follow the radiological convention: the patient's "
                      "left on screen right. The PNG download uses the same preset.")
    s = st.session_state
    options = SceneOptions(
        regions=tuple(r for r in REGIONS if r in (s["p3d_regions"] or [])),
        show_truth=bool(s["p3d_truth"]) and has_truth, show_prediction=bool(s["p3d_pred"]),
        colour_by=COLOURINGS[s["p3d_colour"]] if has_truth else "region",
        show_errors=bool(s["p3d_errors"]) and has_truth, show_brain=bool(s["p3d_brain"]),
        truth_opacity=float(s["p3d_truth_opacity"]),
        prediction_opacity=float(s["p3d_pred_opacity"]), camera=s["p3d_camera"])
    return View3D(options=options, error_region=s["p3d_error_region"])


@dataclass(frozen=True)
class SceneMeshes:
    """The meshes one view draws (``None`` for what is switched off)."""

    truth: dict[str, Any] | None
    prediction: dict[str, Any] | None
    brain: Any | None
    errors: dict[str, Any] | None


def scene_meshes(pat: data.Patient, view: View3D) -> SceneMeshes:
    """Load (from the caches) only what ``view`` shows."""
    shown = view.options
    prediction = None
    if shown.show_prediction:
        prediction = (data.distance_meshes(pat) if shown.colour_by == "signed_distance"
                      else data.prediction_meshes(pat))
    return SceneMeshes(
        truth=data.truth_meshes(pat) if shown.show_truth else None,
        prediction=prediction,
        brain=data.brain_mesh(pat) if shown.show_brain else None,
        errors=data.error_meshes_of(pat, view.error_region) if shown.show_errors else None)


def _scene(pat: data.Patient, dice: dict[str, float]) -> tuple[View3D, SceneMeshes]:
    from tumorscope.app.scene3d import comparison_figure

    plot, controls = st.columns([3, 1])
    with controls:
        view = _controls(pat)
    with plot, st.spinner("Building the 3-D surfaces (cached after the first time)…"):
        meshes = scene_meshes(pat, view)
        figure = comparison_figure(
            meshes.truth, meshes.prediction, brain=meshes.brain, errors=meshes.errors,
            dice=dice, options=view.options, revision=f"{pat.run.path}|{pat.case_id}")
        # theme=None: Streamlit's theme would repaint the dark scene's legend and tick text.
        st.plotly_chart(figure, key="chart_3d", theme=None, config={"displaylogo": False})
        st.caption("Drag to rotate, scroll to zoom; click a legend entry to hide it. "
                   "Ground truth is the wireframe cage, the prediction solid; the PNG and "
                   "HTML downloads draw this same scene.")
    return view, meshes


def _scores(pat: data.Patient, rows: pd.DataFrame) -> None:
    st.subheader("Scores")
    if rows.empty:
        volumes = data.predicted_volumes_ml(str(pat.prediction_path),
                                            data.stamp(pat.prediction_path), pat.convention)
        st.dataframe(pd.DataFrame({"region": list(volumes),
                                   "volume_pred_ml": list(volumes.values())}),
                     hide_index=True, key="df_patient_volumes")
        return
    columns = [c for c in METRIC_COLUMNS if c in rows]
    config = {c: st.column_config.NumberColumn(c, help=METRIC_DOCS.get(c), format="%.3f")
              for c in columns if c != "region"}
    st.dataframe(rows[columns], hide_index=True, column_config=config, key="df_patient")
    st.caption(f"{HD95_DEFINITION}. Hover a column title for its definition.")


def _downloads(pat: data.Patient, rows: pd.DataFrame, dice: dict[str, float], view: View3D,
               meshes: SceneMeshes) -> None:
    st.subheader("Downloads")
    named = exports.named_meshes(meshes.truth, meshes.prediction, show=view.options.regions,
                                 brain=meshes.brain, errors=meshes.errors)
    case = pat.case_id
    scene = {"brain": meshes.brain, "errors": meshes.errors, "dice": dice}
    png = st.columns(5)
    png[0].download_button(
        "3D view (PNG)", key="btn_png3d", mime="image/png", file_name=f"{case}_3d.png",
        icon=":material/image:", data=lambda: exports.scene_png(
            meshes.truth, meshes.prediction, **scene,
            options=replace(view.options, title=case, window_size=exports.PNG_SIZE_PX)),
        help="The same scene rendered off-screen by render: same layers, opacities, camera.")
    png[1].download_button("Meshes (GLB)", key="btn_glb", mime="model/gltf-binary",
                           file_name=f"{case}.glb", icon=":material/deployed_code:",
                           data=lambda: exports.meshes_glb(named))
    png[2].download_button("Meshes (HTML)", key="btn_html", mime="text/html",
                           file_name=f"{case}.html", icon=":material/public:",
                           data=lambda: exports.scene_html(
                               meshes.truth, meshes.prediction, **scene,
                               options=replace(view.options, title=case)),
                           help="The same interactive scene as a page that opens offline.")
    png[3].download_button("Meshes (VTP, zip)", key="btn_vtp", mime="application/zip",
                           file_name=f"{case}_vtp.zip", icon=":material/folder_zip:",
                           data=lambda: exports.meshes_vtp_zip(named))
    png[4].download_button("Scores (CSV)", key="btn_case_csv", mime="text/csv",
                           file_name=f"{case}_metrics.csv", icon=":material/download:",
                           data=exports.csv_bytes(rows), disabled=rows.empty)
    st.caption("Mesh files hold what the view shows (surfaces above 60,000 triangles are "
               "simplified), in world RAS millimetres.")
