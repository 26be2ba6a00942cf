"""Patient page: metadata, 3-D truth-vs-prediction scene and its controls, scores, downloads."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from tumorscope.app import meshes as case_meshes
from tumorscope.app import tables
from tumorscope.app.caches import stamp
from tumorscope.app.state import Context
from tumorscope.core.data.labels import REGION_NAMES, REGIONS
from tumorscope.core.scoring.metrics import HD95_DEFINITION, METRIC_COLUMNS, METRIC_DOCS
from tumorscope.core.store import CaseRecord, Run
from tumorscope.render import export
from tumorscope.render.layers import CameraPreset, ColourBy, SceneOptions

if TYPE_CHECKING:
    import plotly.graph_objects as go

SYNTHETIC_NOTE = ("Synthetic demo data: this tumour was grown inside the ICBM152 brain "
                  "template by `tumorscope demo-data`; it is not a patient.")
NO_TRUTH_NOTE = ("No ground truth for this case: the prediction is shown alone, without "
                 "scores, errors or distance colouring.")
CAMERA_LABELS: dict[CameraPreset, str] = {"oblique": "oblique", "axial": "axial (from the feet)",
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
    run, case = ctx.run, tables.case_record(ctx.run, ctx.case_id)
    metrics, _ = tables.cohort(run)
    rows = metrics[metrics["case_id"] == case.case_id]
    title, button = st.columns([5, 1], vertical_alignment="bottom")
    title.title(f"Patient {case.case_id}")
    if button.button("Slice viewer", key="btn_to_slices", icon=":material/layers:"):
        ctx.open("slices")
    dice = dice_of(rows)
    stale = tables.stale_scores(run).get(case.case_id)
    if stale:
        st.warning(f"No current score for {case.case_id}: {stale}.", icon=":material/history:")
    _header(case, dice, metrics)
    view, meshes = _scene(run, case, dice)
    _scores(run, case, rows)
    _downloads(case, rows, dice, view, meshes)


def dice_of(rows: pd.DataFrame) -> dict[str, float]:
    """Region -> Dice of one patient's metric rows."""
    return {str(r["region"]): float(r["dice"]) for _, r in rows.iterrows()}


def _header(case: CaseRecord, dice: dict[str, float], metrics: pd.DataFrame) -> None:
    if case.synthetic:
        st.info(SYNTHETIC_NOTE, icon=":material/science:")
    meta = case.metadata
    age = meta.get("age")
    tiles = st.columns(6)
    tiles[0].metric("Grade", meta.get("grade") or "unknown")
    tiles[1].metric("Age", f"{float(age):.0f}" if isinstance(age, int | float) else "unknown")
    tiles[2].metric("Ground truth", "yes" if case.has_truth else "none")
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
    if not case.has_truth:
        st.info(NO_TRUTH_NOTE, icon=":material/info:")


def _controls(case: CaseRecord) -> View3D:
    has_truth = case.has_truth
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


def scene_meshes(run: Run, case: CaseRecord, view: View3D) -> SceneMeshes:
    """Load (from the caches) only what ``view`` shows."""
    shown = view.options
    prediction = None
    if shown.show_prediction:
        prediction = (case_meshes.distance_meshes(run, case)
                      if shown.colour_by == "signed_distance"
                      else case_meshes.surfaces(run, case, "prediction"))
    errors = None
    if shown.show_errors:
        errors = case_meshes.error_meshes_of(run, case, view.error_region)
    return SceneMeshes(
        truth=case_meshes.surfaces(run, case, "truth") if shown.show_truth else None,
        prediction=prediction,
        brain=case_meshes.brain_mesh(run, case) if shown.show_brain else None,
        errors=errors)


def _scene(run: Run, case: CaseRecord, dice: dict[str, float]) -> tuple[View3D, SceneMeshes]:
    plot, controls = st.columns([3, 1])
    with controls:
        view = _controls(case)
    with plot, st.spinner("Building the 3-D surfaces (cached after the first time)…"):
        meshes = scene_meshes(run, case, view)
        figure = scene_figure(
            meshes.truth, meshes.prediction, brain=meshes.brain, errors=meshes.errors,
            dice=dice, options=view.options, revision=f"{run.path}|{case.case_id}")
        # theme=None: Streamlit's theme would repaint the dark scene's legend and tick text.
        st.plotly_chart(figure, key="chart_3d", theme=None, config={"displaylogo": False})
        st.caption("Drag to rotate, scroll to zoom; click a legend entry to hide it. "
                   "Ground truth is the wireframe cage, the prediction solid; the PNG and "
                   "HTML downloads draw this same scene.")
    return view, meshes


def scene_figure(
    truth: Mapping[str, Any] | None,
    prediction: Mapping[str, Any] | None,
    *,
    brain: Any | None = None,
    errors: Mapping[str, Any] | None = None,
    dice: Mapping[str, float] | None = None,
    options: SceneOptions | None = None,
    revision: str = "",
    height_px: int = 640,
) -> go.Figure:
    """The patient page's scene: the layers render's PNG and HTML exports paint too
    (:func:`tumorscope.render.plotly_scene.comparison_figure`), ``height_px`` tall.

    ``revision`` (with the camera preset) keeps the user's rotation across reruns until
    either changes: a toggle or a slider redraws the surfaces, not the view.

    >>> import pyvista as pv
    >>> fig = scene_figure({"ET": pv.Sphere(radius=5.0)}, {"ET": pv.Sphere(radius=4.0)},
    ...                         dice={"ET": 0.8}, options=SceneOptions(truth_opacity=0.7))
    >>> [(t.name, t.opacity) for t in fig.data]
    [('prediction ET · Dice 0.80', 1.0), ('truth ET', 0.7)]
    """
    options = options or SceneOptions()
    from tumorscope.render import plotly_scene

    return plotly_scene.comparison_figure(
        truth, prediction, brain=brain, errors=errors, dice=dice, options=options,
        height_px=height_px, uirevision=f"{revision}|{options.camera}")


def _scores(run: Run, case: CaseRecord, rows: pd.DataFrame) -> None:
    st.subheader("Scores")
    if rows.empty:
        path = run.prediction_path(case.case_id)
        volumes = tables.predicted_volumes_ml(str(path), stamp(path), case.label_convention)
        st.dataframe(pd.DataFrame({"region": list(volumes),
                                   "volume_pred_ml": list(volumes.values())}),
                     hide_index=True, key="df_patient_volumes")
        return
    columns = [c for c in METRIC_COLUMNS if c in rows]
    config = {c: st.column_config.NumberColumn(c, help=METRIC_DOCS.get(c), format="%.3f")
              for c in columns if c != "region"}
    st.dataframe(rows[columns], hide_index=True, column_config=config, key="df_patient")
    st.caption(f"{HD95_DEFINITION}. Hover a column title for its definition.")


def _downloads(case: CaseRecord, rows: pd.DataFrame, dice: dict[str, float], view: View3D,
               meshes: SceneMeshes) -> None:
    st.subheader("Downloads")
    named = export.named_meshes(meshes.truth, meshes.prediction, show=view.options.regions,
                                brain=meshes.brain, errors=meshes.errors)
    case_id = case.case_id
    scene = {"brain": meshes.brain, "errors": meshes.errors, "dice": dice}
    png = st.columns(5)
    png[0].download_button(
        "3D view (PNG)", key="btn_png3d", mime="image/png", file_name=f"{case_id}_3d.png",
        icon=":material/image:", data=lambda: export.scene_png(
            meshes.truth, meshes.prediction, **scene,
            options=replace(view.options, title=case_id, window_size=export.PNG_SIZE_PX)),
        help="The same scene rendered off-screen by render: same layers, opacities, camera.")
    png[1].download_button("Meshes (GLB)", key="btn_glb", mime="model/gltf-binary",
                           file_name=f"{case_id}.glb", icon=":material/deployed_code:",
                           data=lambda: export.meshes_glb(named))
    png[2].download_button("Meshes (HTML)", key="btn_html", mime="text/html",
                           file_name=f"{case_id}.html", icon=":material/public:",
                           data=lambda: export.scene_html(
                               meshes.truth, meshes.prediction, **scene,
                               options=replace(view.options, title=case_id)),
                           help="The same interactive scene as a page that opens offline.")
    png[3].download_button("Meshes (VTP, zip)", key="btn_vtp", mime="application/zip",
                           file_name=f"{case_id}_vtp.zip", icon=":material/folder_zip:",
                           data=lambda: export.meshes_vtp_zip(named))
    png[4].download_button("Scores (CSV)", key="btn_case_csv", mime="text/csv",
                           file_name=f"{case_id}_metrics.csv", icon=":material/download:",
                           data=export.csv_bytes(rows), disabled=rows.empty)
    st.caption("Mesh files hold what the view shows (surfaces above 60,000 triangles are "
               "simplified), in world RAS millimetres.")
