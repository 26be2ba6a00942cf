"""Patient page: metadata, 3-D truth-vs-prediction scene and its controls, the case's lesions
(choosing one aims the camera and the slice crosshair at it), scores, downloads."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from tumorscope.app import legend, run_b, scene_link, tables
from tumorscope.app import lesions as case_lesions
from tumorscope.app import meshes as case_meshes
from tumorscope.app.caches import stamp
from tumorscope.app.lesions import LesionView
from tumorscope.app.state import Context
from tumorscope.core.data.labels import REGION_NAMES, REGIONS
from tumorscope.core.errors import GeometryError
from tumorscope.core.scoring.distances import HD95_DEFINITIONS
from tumorscope.core.scoring.metrics import METRIC_COLUMNS, METRIC_DOCS
from tumorscope.core.scoring.scorings import LESION_COLUMNS, SCORING_COLUMNS, SCORING_DOCS
from tumorscope.core.store import CaseRecord, Run
from tumorscope.render import export, style
from tumorscope.render.cohort import metric_title
from tumorscope.render.layers import (
    LESION_STATUSES,
    CameraPreset,
    ColourBy,
    LesionMarker,
    SceneOptions,
    scene_layers,
)
from tumorscope.render.lesions import SCORING_HD95, frame_radius_mm

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
LESION_TABLE_PREFIX = "lesion_table"
"""Key prefix of the lesion table (its key also names the case, scoring and a counter, so a
new patient or a cleared choice starts with nothing selected)."""
LESION_TABLE_MAX_PX = 360
LESION_TABLE_MAX_ROWS = 500
"""Rows the lesion table shows at most (misses first, then larger lesions): an untrained
net's noise makes thousands of specks; all are in the CSV download."""


@dataclass(frozen=True)
class View3D:
    """The 3-D view's settings, read from the widgets once per rerun: the scene's options
    (what the page, its PNG and its HTML all draw), whose FP/FN voxels to load, and the
    lesion markers it draws."""

    options: SceneOptions
    error_region: str
    lesions: tuple[LesionMarker, ...] = ()
    run_b: run_b.RunB | None = None
    """The run compared with this one (A/B view), or ``None``."""
    show_differences: bool = False
    """A/B: draw the voxels only A and only B predict (of ``error_region``)."""
    show_fp_fn: bool = False
    """Draw the FP/FN voxels of ``error_region`` (``options.show_errors`` is set for
    these or the A/B differences)."""


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
    lesions = case_lesions.case_view(run, case.case_id,
                                     st.session_state.get(case_lesions.SCORING_KEY))
    _take_table_choice(run, case, lesions)
    _header(case, dice, metrics)
    view, meshes = _scene(ctx, case, dice, lesions)
    _lesions(ctx, case, lesions)
    _scores(run, case, rows, lesions.scoring)
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


def _controls(ctx: Context, case: CaseRecord, lesions: LesionView,
              chosen: LesionMarker | None) -> View3D:
    has_truth = case.has_truth
    b = run_b.picker(ctx, case.case_id)
    st.pills("Regions", REGIONS, selection_mode="multi", key="p3d_regions",
             help="WT whole tumour, TC tumour core, ET enhancing tumour (nested).")
    # One per row: side by side in this narrow column the labels were cut ("Ground t…").
    st.toggle("Ground truth (wireframe)", key="p3d_truth", disabled=not has_truth,
              help="The truth as a cage of lines in its region's paler colour.")
    st.toggle("A and B agree (solid)" if b else "Prediction (solid)", key="p3d_pred",
              help="Where both runs predict the region." if b else None)
    if b is not None:
        st.toggle("Only A / only B voxels", key="p3d_ab_diff",
                  help="Orange: what only run A predicts; violet: only run B, for the region "
                       "chosen below.")
    st.radio("Colour the prediction by", list(COLOURINGS), key="p3d_colour",
             disabled=not has_truth or b is not None,
             help="Signed distance of each prediction vertex to the truth surface: red where "
                  "the prediction lies outside the truth, blue inside (±5 mm).")
    st.slider("Truth opacity", 0.05, 1.0, step=0.05, key="p3d_truth_opacity",
              disabled=not has_truth)
    st.slider("Prediction opacity", 0.1, 1.0, step=0.05, key="p3d_pred_opacity")
    st.toggle("Brain surface", key="p3d_brain", help="Faint brain surface for context.")
    st.toggle("FP / FN voxels", key="p3d_errors", disabled=not has_truth,
              help="False positives red, false negatives blue, for one region.")
    differences = b is not None and bool(st.session_state.get("p3d_ab_diff"))
    fp_fn = bool(st.session_state["p3d_errors"]) and has_truth
    if (st.session_state["p3d_errors"] and has_truth) or differences:
        st.selectbox("FP / FN of region" if b is None else "FP / FN, only A / only B of region",
                     REGIONS, key="p3d_error_region")
    st.toggle("FN / FP lesion markers", key="p3d_lesions", disabled=not lesions.markers,
              help="A marker at the centre of each missed (FN, blue diamond) and "
                   "false-positive (FP, red square) lesion of the chosen lesion-wise scoring; "
                   "hover one for its id, volume and Dice."
                   + ("" if lesions.markers else " This case has none listed."))
    st.selectbox("View from", list(CAMERA_LABELS), key="p3d_camera",
                 format_func=CAMERA_LABELS.__getitem__,
                 help="Axial and coronal follow the radiological convention: the patient's "
                      "left on screen right. The PNG download uses the same preset.")
    s = st.session_state
    marked = lesions.markers
    if chosen is not None and chosen not in marked:
        marked = (*marked, chosen)  # a chosen TP or ignored lesion: ringed, not marked
    options = SceneOptions(
        regions=tuple(r for r in REGIONS if r in (s["p3d_regions"] or [])),
        show_truth=bool(s["p3d_truth"]) and has_truth, show_prediction=bool(s["p3d_pred"]),
        colour_by=COLOURINGS[s["p3d_colour"]] if has_truth and b is None else "region",
        show_errors=fp_fn or differences, show_brain=bool(s["p3d_brain"]),
        truth_opacity=float(s["p3d_truth_opacity"]),
        prediction_opacity=float(s["p3d_pred_opacity"]), camera=s["p3d_camera"],
        show_lesions=bool(s["p3d_lesions"]),
        selected_lesion=chosen.key if chosen else None,
        target_mm=chosen.centroid_mm if chosen else None,
        target_radius_mm=frame_radius_mm(chosen.volume_ml) if chosen else 20.0,
        prediction_name="A and B agree" if b else "prediction",
        run_names=(ctx.run.name, b.name) if b and ctx.run else None)
    return View3D(options=options, error_region=s["p3d_error_region"], lesions=marked,
                  run_b=b, show_differences=differences, show_fp_fn=fp_fn)


@dataclass(frozen=True)
class SceneMeshes:
    """The meshes one view draws (``None`` for what is switched off)."""

    truth: dict[str, Any] | None
    prediction: dict[str, Any] | None
    brain: Any | None
    errors: dict[str, Any] | None


def scene_meshes(run: Run, case: CaseRecord, view: View3D) -> SceneMeshes:
    """Load (from the caches) only what ``view`` shows; with a run B, the solid surfaces
    are where A and B agree, and the differences join the FP/FN voxels."""
    shown = view.options
    b = view.run_b
    prediction = None
    if shown.show_prediction:
        prediction = (case_meshes.agreement_surfaces(run, case, b.run, b.case) if b
                      else case_meshes.distance_meshes(run, case)
                      if shown.colour_by == "signed_distance"
                      else case_meshes.surfaces(run, case, "prediction"))
    errors = None
    if view.show_fp_fn:
        errors = case_meshes.error_meshes_of(run, case, view.error_region)
    if b is not None and view.show_differences:
        errors = {**(errors or {}), **case_meshes.difference_meshes_of(
            run, case, b.run, b.case, view.error_region)}
    return SceneMeshes(
        truth=case_meshes.surfaces(run, case, "truth") if shown.show_truth else None,
        prediction=prediction,
        brain=case_meshes.brain_mesh(run, case) if shown.show_brain else None,
        errors=errors)


def _scene(ctx: Context, case: CaseRecord, dice: dict[str, float],
           lesions: LesionView) -> tuple[View3D, SceneMeshes]:
    assert ctx.run is not None
    run = ctx.run
    plot, controls = st.columns([3, 1])
    with controls:
        view = _controls(ctx, case, lesions, case_lesions.chosen(run, case.case_id, lesions))
    if view.run_b is not None:
        dice = {}  # the solid surfaces are the agreement, not A: A's Dice would mislabel them
    with plot, st.spinner("Building the 3-D surfaces (cached after the first time)…"):
        try:
            meshes = scene_meshes(run, case, view)
        except GeometryError as exc:
            st.error(f"Cannot compare with run {view.run_b.name if view.run_b else 'B'}: "
                     f"{exc}", icon=":material/compare_arrows:")
            view = replace(view, run_b=None, show_differences=False, options=replace(
                view.options, prediction_name="prediction", run_names=None,
                show_errors=view.show_fp_fn))
            meshes = scene_meshes(run, case, view)
        if view.run_b is not None:
            _ab_line(run, view.run_b)
        _take_click(run, case, meshes, dice, view)
        view = replace(view, options=replace(
            view.options, crosshair_mm=scene_link.crosshair_mm(run, case)))
        figure = scene_figure(
            meshes.truth, meshes.prediction, brain=meshes.brain, errors=meshes.errors,
            dice=dice, lesions=view.lesions, options=view.options,
            revision=f"{run.path}|{case.case_id}")
        # theme=None: Streamlit's theme would repaint the dark scene's legend and tick text.
        st.plotly_chart(figure, key="chart_3d", theme=None, config={"displaylogo": False})
        scene_link.link("chart_3d", on_pick=lambda: None)
        _crosshair_line(view.options)
        st.caption("Drag to rotate, scroll to zoom; click a legend entry to hide it; click "
                   "the tumour (or a lesion marker) to put the slice crosshair there. "
                   "Ground truth is the wireframe cage, the prediction solid; the PNG and "
                   "HTML downloads draw this same scene.")
    return view, meshes


def ab_dice_text(name_a: str, dice_a: Mapping[str, float], name_b: str,
                 dice_b: Mapping[str, float]) -> str:
    """One line of both runs' Dice per region against the truth.

    >>> ab_dice_text("m1", {"WT": 0.9}, "m2", {"WT": 0.85, "ET": float("nan")})
    'Dice against the truth · A (m1): WT 0.900, TC n/a, ET n/a · B (m2): WT 0.850, TC n/a, ET n/a'
    """
    def one(dice: Mapping[str, float]) -> str:
        return ", ".join(f"{r} {dice[r]:.3f}" if r in dice and not math.isnan(dice[r])
                         else f"{r} n/a" for r in REGIONS)
    return (f"Dice against the truth · A ({name_a}): {one(dice_a)} · "
            f"B ({name_b}): {one(dice_b)}")


def _ab_line(run: Run, b: run_b.RunB) -> None:
    rows_a, rows_b = (tables.cohort(r)[0] for r in (run, b.run))
    case_id = b.case.case_id
    text = ab_dice_text(run.name, dice_of(rows_a[rows_a["case_id"] == case_id]), b.name,
                        dice_of(rows_b[rows_b["case_id"] == case_id]))
    chips = " ".join(legend.swatch(style.ERROR_COLOURS[key], label) for key, label in (
        ("A_only", f"only A: {run.name}"), ("B_only", f"only B: {b.name}")))
    st.markdown(f"**A/B view** {chips} · solid: where both predict the region",
                unsafe_allow_html=True)
    st.caption(text)


def _take_click(run: Run, case: CaseRecord, meshes: SceneMeshes, dice: dict[str, float],
                view: View3D) -> None:
    """A click in the scene (last rerun) moves the slice crosshair to what it hit, before
    the scene is drawn again with the crosshair there. The click was on the scene of these
    same options: a click changes no widget."""
    pick = scene_link.picked()
    if pick is None:
        return
    layers = scene_layers(meshes.truth, meshes.prediction, brain=meshes.brain,
                          errors=meshes.errors, dice=dice, lesions=view.lesions,
                          options=view.options)
    _, point = scene_link.clicked_mm(layers, pick)
    scene_link.move_crosshair(run, case, point)


def _crosshair_line(options: SceneOptions) -> None:
    if options.crosshair_mm is None:
        return
    voxel = tuple(int(st.session_state[k]) for k in ("sl_x", "sl_y", "sl_z"))
    st.markdown(f":blue-background[**Slice crosshair**] at voxel {voxel}, world "
                "({:.1f}, {:.1f}, {:.1f}) mm: the cyan lines in 3-D, where the slice "
                "viewer's three planes cross.".format(*options.crosshair_mm))


# --------------------------------------------------------------------------------------------
# lesions


def lesion_table_key(case_id: str, scoring: str | None) -> str:
    """Key of the lesion table of one patient and scoring (and clear counter)."""
    return f"{LESION_TABLE_PREFIX}|{case_id}|{scoring}|{st.session_state.get('_lesion_gen', 0)}"


def _selected_rows(key: str) -> list[int]:
    selection = st.session_state.get(key)
    try:
        return [int(r) for r in selection["selection"]["rows"]]  # type: ignore[index]
    except (KeyError, TypeError):
        return []


def _take_table_choice(run: Run, case: CaseRecord, lesions: LesionView) -> None:
    """A row clicked in the lesion table (last rerun) becomes the chosen lesion: before the
    scene is drawn, so the camera turns to it in this run, and the crosshair moves to it."""
    key = lesion_table_key(case.case_id, lesions.scoring)
    if key not in st.session_state:
        # Not drawn last run (another page, patient or scoring): nothing was clicked, and
        # the choice made elsewhere (the slice viewer's picker) stands.
        st.session_state["_lesion_seen"] = (key, ())
        return
    rows = _selected_rows(key)
    seen = st.session_state.get("_lesion_seen")
    if seen == (key, tuple(rows)):
        return
    st.session_state["_lesion_seen"] = (key, tuple(rows))
    listed_key, order = st.session_state.get("_lesion_rows", (None, []))
    if rows and listed_key == key and rows[0] < len(order):
        case_lesions.choose(run, case, lesions, order[rows[0]])
    elif not rows and seen is not None and seen[0] == key:
        case_lesions.choose(run, case, lesions, None)  # the row was unticked


def _clear_choice(run: Run, case: CaseRecord, lesions: LesionView) -> None:
    case_lesions.choose(run, case, lesions, None)
    st.session_state["_lesion_gen"] = st.session_state.get("_lesion_gen", 0) + 1


def lesion_frame(rows: pd.DataFrame, scoring: str) -> pd.DataFrame:
    """The lesion table as shown: status (a one-item list, drawn as a coloured pill),
    region, id, volume, Dice and HD95 (titled with the scoring's definition), matches and
    the centroid in world mm."""
    centroid = [f"({x:.1f}, {y:.1f}, {z:.1f})" for x, y, z in zip(
        rows["centroid_x_mm"], rows["centroid_y_mm"], rows["centroid_z_mm"], strict=True)]
    return pd.DataFrame({
        "status": [[str(v)] for v in rows["status"]], "region": rows["region"].tolist(),
        "lesion": rows["lesion"].astype(int).tolist(),
        "volume (mL)": rows["volume_ml"].tolist(), "Dice": rows["dice"].tolist(),
        hd95_title(scoring): rows["hd95_mm"].tolist(),
        "matched": rows["matched"].tolist(), "centroid (mm)": centroid})


def hd95_title(scoring: str) -> str:
    """The lesion table's HD95 column, named by the scoring's definition.

    >>> hd95_title("brats2023")
    'HD95 (surfel, mm)'
    """
    return f"HD95 ({SCORING_HD95[scoring]}, mm)"


def _lesion_config(scoring: str) -> dict[str, Any]:
    return {
        "status": st.column_config.MultiselectColumn(
            "status", options=list(LESION_STATUSES),
            color=[style.LESION_STATUS_COLOURS[s].hex for s in LESION_STATUSES],
            help=LESION_COLUMNS["status"]),
        "lesion": st.column_config.NumberColumn("lesion", format="%d",
                                                help=LESION_COLUMNS["lesion"]),
        "volume (mL)": st.column_config.NumberColumn(format="%.3f",
                                                     help=LESION_COLUMNS["volume_ml"]),
        "Dice": st.column_config.NumberColumn(format="%.3f", help=LESION_COLUMNS["dice"]),
        hd95_title(scoring): st.column_config.NumberColumn(
            format="%.1f", help=f"{HD95_DEFINITIONS[SCORING_HD95[scoring]]}. "
                                f"{LESION_COLUMNS['hd95_mm']}"),
        "matched": st.column_config.TextColumn(help=LESION_COLUMNS["matched"]),
        "centroid (mm)": st.column_config.TextColumn(
            help="Centre of mass, world x, y, z in mm (the truth's NIfTI affine)."),
    }


def _lesions(ctx: Context, case: CaseRecord, lesions: LesionView) -> None:
    assert ctx.run is not None
    run = ctx.run
    st.subheader("Lesions")
    if lesions.problem:
        st.warning(f"Cannot list this case's lesions: {lesions.problem}",
                   icon=":material/report:")
        return
    if lesions.stale:
        st.warning(f"{lesions.stale} lesion row(s) of {case.case_id} in "
                   f"{run.lesions_path.name} score another prediction or ground truth than "
                   "its current scores: they are stale and not shown. Run `tumorscope "
                   "evaluate` to list its lesions again.", icon=":material/history:")
    if lesions.scoring is None:
        if not lesions.stale:
            st.caption("No lesion-wise scores for this case"
                       + ("" if lesions.has_scores else " (it has no current score)")
                       + ": `tumorscope evaluate RUN --scoring brats2023 brats2025` lists "
                         "each lesion in lesions.csv.")
        return
    scoring = lesions.scoring
    st.session_state[case_lesions.SCORING_KEY] = scoring
    pick, statuses = st.columns([2, 3], vertical_alignment="bottom")
    pick.segmented_control("Lesions as scored by", list(lesions.scorings),
                           key=case_lesions.SCORING_KEY, required=True,
                           help="; ".join(SCORING_DOCS[s] for s in lesions.scorings))
    present = [s for s, n in lesions.counts.items() if n]
    kept = [s for s in st.session_state.get("p3d_lesion_status") or [] if s in LESION_STATUSES]
    st.session_state["p3d_lesion_status"] = kept
    statuses.pills("Status", list(LESION_STATUSES), selection_mode="multi",
                   key="p3d_lesion_status",
                   format_func=lambda s: f"{s} ({lesions.counts[s]})",
                   help="TP matched, FN missed, FP false positive, ignored: below the "
                        "challenge's volume threshold (not counted).")
    chosen_statuses = st.session_state["p3d_lesion_status"] or present
    matching = lesions.rows[lesions.rows["status"].isin(chosen_statuses)]
    rows = matching.head(LESION_TABLE_MAX_ROWS)
    key = lesion_table_key(case.case_id, scoring)
    st.session_state["_lesion_rows"] = (key, rows["key"].tolist())
    st.dataframe(lesion_frame(rows, scoring), key=key, on_select="rerun",
                 selection_mode="single-row", hide_index=True,
                 column_config=_lesion_config(scoring),
                 height=min(38 + 35 * max(len(rows), 1), LESION_TABLE_MAX_PX))
    chosen = case_lesions.chosen(run, case.case_id, lesions)
    listed, download = st.columns([5, 1], vertical_alignment="center")
    more = (f" (the first {len(rows)} of {len(matching)} of these statuses: misses first, "
            "then larger lesions)" if len(rows) < len(matching) else "")
    listed.caption(f"{len(rows)} of {len(lesions.rows)} lesions listed{more}. Tick a row to "
                   "aim the 3-D view at that lesion and put the slice viewer's crosshair on it.")
    download.download_button(
        "Lesions (CSV)", key="btn_lesions_csv", mime="text/csv", icon=":material/download:",
        file_name=f"{case.case_id}_lesions_{scoring}.csv",
        data=lambda: export.csv_bytes(lesions.rows.drop(columns=["key"])))
    if chosen is None:
        return
    text, to_slices, clear = st.columns([5, 1, 1], vertical_alignment="center")
    x, y, z = chosen.centroid_mm
    voxel = tuple(int(st.session_state.get(k, 0)) for k in ("sl_x", "sl_y", "sl_z"))
    text.markdown(f"**Centred on** {style.LESION_STATUS_NAMES[chosen.status]} · "
                  f"{chosen.region} lesion {chosen.lesion} · {chosen.volume_ml:.3f} mL, at "
                  f"({x:.1f}, {y:.1f}, {z:.1f}) mm; slice crosshair at voxel {voxel}")
    if to_slices.button("Slice viewer", key="btn_lesion_slices", icon=":material/layers:"):
        ctx.open("slices")
    clear.button("Clear", key="btn_lesion_clear", icon=":material/close:",
                 on_click=_clear_choice, args=(run, case, lesions))


def scene_figure(
    truth: Mapping[str, Any] | None,
    prediction: Mapping[str, Any] | None,
    *,
    brain: Any | None = None,
    errors: Mapping[str, Any] | None = None,
    dice: Mapping[str, float] | None = None,
    lesions: Sequence[LesionMarker] | None = None,
    options: SceneOptions | None = None,
    revision: str = "",
    height_px: int = 640,
) -> go.Figure:
    """The patient page's scene: the layers render's PNG and HTML exports paint too
    (:func:`tumorscope.render.plotly_scene.comparison_figure`), ``height_px`` tall, with
    ``lesions`` marked.

    ``revision`` (with the camera preset and the lesion aimed at) keeps the user's rotation
    across reruns until one changes: a toggle or a slider redraws the surfaces, not the
    view; choosing a lesion turns the camera to it.

    >>> import pyvista as pv
    >>> fig = scene_figure({"ET": pv.Sphere(radius=5.0)}, {"ET": pv.Sphere(radius=4.0)},
    ...                         dice={"ET": 0.8}, options=SceneOptions(truth_opacity=0.7))
    >>> [(t.name, t.opacity) for t in fig.data]
    [('prediction ET · Dice 0.80', 1.0), ('truth ET', 0.7)]
    """
    options = options or SceneOptions()
    from tumorscope.render import plotly_scene

    return plotly_scene.comparison_figure(
        truth, prediction, brain=brain, errors=errors, dice=dice, lesions=lesions,
        options=options, height_px=height_px,
        uirevision=f"{revision}|{options.camera}|{options.selected_lesion}")


def _scores(run: Run, case: CaseRecord, rows: pd.DataFrame, scoring: str | None) -> None:
    st.subheader("Scores")
    if rows.empty:
        path = run.prediction_path(case.case_id)
        volumes = tables.predicted_volumes_ml(str(path), stamp(path), case.label_convention)
        st.dataframe(pd.DataFrame({"region": list(volumes),
                                   "volume_pred_ml": list(volumes.values())}),
                     hide_index=True, key="df_patient_volumes", column_config={
                         "volume_pred_ml": st.column_config.NumberColumn(
                             metric_title("volume_pred_ml"), format="%.1f",
                             help=METRIC_DOCS.get("volume_pred_ml"))})
        return
    lesion_wise = SCORING_COLUMNS.get(scoring or "", {})
    columns = [c for c in (*METRIC_COLUMNS, *lesion_wise) if c in rows]
    docs = {**METRIC_DOCS, **lesion_wise}
    # Titled as the overview titles them (metric_title), keys kept for the CSV download.
    config = {c: st.column_config.NumberColumn(
                  metric_title(c), help=docs.get(c),
                  format="%d" if c.endswith(("_tp", "_fn", "_fp"))
                  else "%.1f" if c.endswith(("_mm", "_ml")) else "%.3f")
              for c in columns if c != "region"}
    st.dataframe(rows[columns], hide_index=True, column_config=config, key="df_patient")
    st.caption("Each HD95 column is named by its definition: "
               + "; ".join(f"{d}: {name}" for d, name in HD95_DEFINITIONS.items())
               + (f"; {scoring}_* columns are {SCORING_DOCS[scoring]}" if lesion_wise else "")
               + ". Hover a column title for its definition.")


def scene_png(meshes: SceneMeshes, dice: Mapping[str, float], view: View3D,
              options: SceneOptions) -> bytes:
    """The page's scene (same layers, lesion markers and aim) painted off-screen by VTK."""
    from tumorscope.render.scene import comparison_scene, screenshot

    plotter = comparison_scene(meshes.truth, meshes.prediction, brain=meshes.brain,
                               errors=meshes.errors, dice=dice, lesions=view.lesions,
                               options=options)
    try:
        return export.png_bytes(screenshot(plotter))
    finally:
        plotter.close()


def scene_html(meshes: SceneMeshes, dice: Mapping[str, float], view: View3D,
               options: SceneOptions) -> bytes:
    """The page's interactive scene as a page that opens offline (surfaces simplified)."""
    from tumorscope.render.plotly_scene import comparison_figure

    figure = comparison_figure(meshes.truth, meshes.prediction, brain=meshes.brain,
                               errors=meshes.errors, dice=dice, lesions=view.lesions,
                               options=options, max_triangles=export.HTML_MAX_TRIANGLES)
    return export.page_html(figure).encode("utf-8")


def _downloads(case: CaseRecord, rows: pd.DataFrame, dice: dict[str, float], view: View3D,
               meshes: SceneMeshes) -> None:
    st.subheader("Downloads")
    named = export.named_meshes(meshes.truth, meshes.prediction, show=view.options.regions,
                                brain=meshes.brain, errors=meshes.errors)
    case_id = case.case_id
    png = st.columns(5)
    png[0].download_button(
        "3D view (PNG)", key="btn_png3d", mime="image/png", file_name=f"{case_id}_3d.png",
        icon=":material/image:", data=lambda: scene_png(
            meshes, dice, view,
            replace(view.options, title=case_id, window_size=export.PNG_SIZE_PX)),
        help="The same scene rendered off-screen by render: same layers, opacities, camera, "
             "lesion markers.")
    png[1].download_button("Meshes (GLB)", key="btn_glb", mime="model/gltf-binary",
                           file_name=f"{case_id}.glb", icon=":material/deployed_code:",
                           data=lambda: export.meshes_glb(named))
    png[2].download_button("Meshes (HTML)", key="btn_html", mime="text/html",
                           file_name=f"{case_id}.html", icon=":material/public:",
                           data=lambda: scene_html(meshes, dice, view,
                                                   replace(view.options, title=case_id)),
                           help="The same interactive scene as a page that opens offline.")
    png[3].download_button("Meshes (VTP, zip)", key="btn_vtp", mime="application/zip",
                           file_name=f"{case_id}_vtp.zip", icon=":material/folder_zip:",
                           data=lambda: export.meshes_vtp_zip(named))
    png[4].download_button("Scores (CSV)", key="btn_case_csv", mime="text/csv",
                           file_name=f"{case_id}_metrics.csv", icon=":material/download:",
                           data=export.csv_bytes(rows), disabled=rows.empty)
    ab = (f" A/B view: the region meshes (WT, TC, ET) are where {view.options.run_names[0]} "
          f"and {view.options.run_names[1]} agree; A_only and B_only what one of them alone "
          "predicts." if view.run_b is not None and view.options.run_names else "")
    st.caption("Mesh files hold what the view shows (surfaces above 60,000 triangles are "
               "simplified), in world RAS millimetres." + ab)
