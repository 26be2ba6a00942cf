"""The in-page 3-D comparison scene: plotly ``Mesh3d`` traces of render's world-mm meshes.

Plotly renders in headless chromium and under AppTest (see FACTS.md), where a VTK.js view
does not reliably; colours, nesting opacities and camera presets come from render, so this
view, render's off-screen PNG and the exported files show the same tumour the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
import plotly.graph_objects as go

from tumorscope.core.labels import REGION_NAMES, REGIONS
from tumorscope.render import style
from tumorscope.render.mesh import DISTANCE_ARRAY
from tumorscope.render.scene import CAMERA_VECTORS

ColourBy = Literal["region", "signed_distance"]

_LIGHTING = {"ambient": 0.45, "diffuse": 0.7, "specular": 0.2, "roughness": 0.6}
_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))
_EYE_DISTANCE = 1.35


def plotly_camera(preset: str) -> dict[str, Any]:
    """A plotly scene camera looking along one of render's presets (same direction and up).

    >>> plotly_camera("axial")["up"]
    {'x': 0.0, 'y': 1.0, 'z': 0.0}
    """
    direction, view_up = CAMERA_VECTORS[preset]
    eye = _EYE_DISTANCE * np.asarray(direction) / np.linalg.norm(direction)
    return {"eye": dict(zip("xyz", eye.tolist(), strict=True)),
            "up": dict(zip("xyz", view_up, strict=True)),
            "center": {"x": 0.0, "y": 0.0, "z": 0.0}}


def _nonempty(mesh: Any) -> bool:
    return mesh is not None and mesh.n_points > 0


def mesh_trace(mesh: Any, *, name: str, colour: str, opacity: float,
               intensity: np.ndarray | None = None, clim_mm: float = style.DISTANCE_CLIM_MM,
               show_scale: bool = False, group: str | None = None) -> go.Mesh3d:
    """One triangle surface (``pyvista.PolyData`` in world mm) as a plotly ``Mesh3d``.

    With ``intensity`` (one value per point) the surface is coloured by render's diverging
    distance colormap clipped at ``+-clim_mm``, else in the flat ``colour``.
    """
    surface = mesh if mesh.is_all_triangles else mesh.triangulate()
    points, faces = np.asarray(surface.points), surface.regular_faces
    trace = go.Mesh3d(
        x=points[:, 0], y=points[:, 1], z=points[:, 2],
        i=faces[:, 0], j=faces[:, 1], k=faces[:, 2],
        name=name, showlegend=True, legendgroup=group or name, opacity=opacity,
        flatshading=False, lighting=_LIGHTING, hoverinfo="name",
    )
    if intensity is None:
        trace.update(color=colour)
    else:
        trace.update(intensity=intensity, colorscale=style.DISTANCE_CMAP.replace("_r", ""),
                     reversescale=style.DISTANCE_CMAP.endswith("_r"), cmin=-clim_mm,
                     cmax=clim_mm, showscale=show_scale,
                     colorbar={"title": {"text": "distance to<br>truth (mm)"}, "len": 0.5,
                               "thickness": 14, "x": 0.98})
    return trace


def _distances(mesh: Any, clim_mm: float) -> np.ndarray:
    """Per-point signed distances; NaN (no truth surface of that region) reads as 'outside'."""
    values = np.asarray(mesh.point_data[DISTANCE_ARRAY], dtype=np.float32)
    return np.where(np.isfinite(values), values, clim_mm)


def _bounds(meshes: Iterable[Any]) -> np.ndarray | None:
    boxes = [np.asarray(m.bounds, dtype=float).reshape(3, 2) for m in meshes if _nonempty(m)]
    if not boxes:
        return None
    stacked = np.stack(boxes)
    return np.stack([stacked[:, :, 0].min(axis=0), stacked[:, :, 1].max(axis=0)], axis=1)


def _orientation_labels(bounds: np.ndarray) -> list[dict[str, Any]]:
    """R/L, A/P, S/I written just outside the scene's box on each world axis."""
    centre = bounds.mean(axis=1)
    half = (bounds[:, 1] - bounds[:, 0]) / 2.0 + 12.0  # mm outside the box
    labels = []
    for axis, letters in enumerate(_AXIS_LETTERS):
        for sign, letter in zip((-1.0, 1.0), letters, strict=True):
            point = centre.copy()
            point[axis] += sign * half[axis]
            labels.append({"x": point[0], "y": point[1], "z": point[2], "text": letter,
                           "showarrow": False,
                           "font": {"size": 18, "color": style.TEXT_COLOUR.hex}})
    return labels


def comparison_figure(
    truth: Mapping[str, Any] | None,
    prediction: Mapping[str, Any] | None,
    *,
    show: Iterable[str] = REGIONS,
    colour_by: ColourBy = "region",
    truth_opacity: float = style.TRUTH_STYLES["translucent"].opacity,
    prediction_opacity: float = style.PREDICTION_STYLE.opacity,
    brain: Any | None = None,
    errors: Mapping[str, Any] | None = None,
    dice: Mapping[str, float] | None = None,
    camera: str = "oblique",
    revision: str = "",
    height_px: int = 640,
) -> go.Figure:
    """Truth (translucent) around the solid prediction, as render's overlay scene draws them.

    ``truth`` / ``prediction`` map "WT", "TC", "ET" to world-mm surfaces (either may be
    ``None``); only names in ``show`` are drawn. Nested regions shown together are layered
    (outer ones see-through) with render's :func:`~tumorscope.render.style.nested_opacity`,
    scaled by the opacity sliders. ``colour_by="signed_distance"`` colours the prediction by
    its ``signed_distance_mm`` point array (red outside the truth, blue inside) and draws the
    truth neutral grey. ``errors`` ({"FP", "FN"} surfaces) are drawn red / blue, ``brain``
    as faint context. ``revision`` keeps the user's rotation across reruns until it changes.
    """
    shown = tuple(r for r in REGIONS if r in set(show))
    by_distance = colour_by == "signed_distance"
    traces: list[go.Mesh3d] = []
    if _nonempty(brain):
        traces.append(mesh_trace(brain, name="brain", colour=style.BRAIN_COLOUR.hex,
                                 opacity=max(style.BRAIN_STYLE.opacity, 0.1)))
    scale_shown = False
    for region in shown:
        mesh = (prediction or {}).get(region)
        if not _nonempty(mesh):
            continue
        opacity = prediction_opacity * style.nested_opacity(region, shown)
        intensity = None
        if by_distance and DISTANCE_ARRAY in mesh.point_data:
            intensity = _distances(mesh, style.DISTANCE_CLIM_MM)
        traces.append(mesh_trace(
            mesh, name=f"prediction {region} ({REGION_NAMES[region]}){_dice_text(dice, region)}",
            colour=style.REGION_COLOURS[region].hex, opacity=opacity, intensity=intensity,
            show_scale=intensity is not None and not scale_shown, group=f"pred-{region}"))
        scale_shown = scale_shown or intensity is not None
    for region in shown:
        mesh = (truth or {}).get(region)
        if not _nonempty(mesh):
            continue
        colour = style.TRUTH_NEUTRAL_COLOUR if by_distance else style.REGION_COLOURS[region]
        traces.append(mesh_trace(mesh, name=f"truth {region}", colour=colour.hex,
                                 opacity=truth_opacity, group=f"truth-{region}"))
    for key, mesh in (errors or {}).items():
        if _nonempty(mesh):
            traces.append(mesh_trace(mesh, name=style.ERROR_NAMES[key],
                                     colour=style.ERROR_COLOURS[key].hex, opacity=1.0))

    figure = go.Figure(traces)
    tumour = [m for src in (truth, prediction) for r, m in (src or {}).items() if r in shown]
    bounds = _bounds([*tumour, *(errors or {}).values()]) if not _nonempty(brain) else (
        _bounds([brain]))
    # No grid or ticks: world mm ticks on three axes clutter the view; the R/L, A/P, S/I
    # letters say what a person needs (as render's orientation cube does).
    axis_style = {"visible": False, "showspikes": False}
    figure.update_layout(
        height=height_px, paper_bgcolor=style.BACKGROUND_COLOUR.hex,
        font={"color": style.TEXT_COLOUR.hex}, margin={"l": 0, "r": 0, "t": 10, "b": 0},
        legend={"x": 0.01, "y": 0.99, "bgcolor": style.LEGEND_COLOUR.hex,
                "font": {"size": 11}},
        uirevision=f"{revision}|{camera}",
        scene={
            "aspectmode": "data",
            "xaxis": axis_style, "yaxis": axis_style, "zaxis": axis_style,
            "camera": plotly_camera(camera),
            "annotations": _orientation_labels(bounds) if bounds is not None else [],
        },
    )
    return figure


def _dice_text(dice: Mapping[str, float] | None, region: str) -> str:
    if not dice or region not in dice:
        return ""
    value = dice[region]
    return "" if value is None or math.isnan(value) else f" · Dice {value:.2f}"
