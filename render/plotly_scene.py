"""World-mm surfaces as a plotly ``Mesh3d`` scene: the one builder of the browser 3-D views.

The app's in-page comparison view and the exported ``.html`` page both draw through
:func:`mesh_trace` and :func:`scene_figure`, so they share lighting, camera presets (the
directions of :data:`~tumorscope.render.scene.CAMERA_VECTORS`), the dark background and the
R/L, A/P, S/I letters; colours and opacities come from :mod:`~tumorscope.render.style`.
Plotly renders in headless chromium and under Streamlit's AppTest, where a VTK.js view does
not reliably.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pyvista as pv

from tumorscope.core.errors import check_choice

from . import style
from .mesh import as_triangles, is_empty, simplify_to
from .scene import CAMERA_PRESETS, CAMERA_VECTORS, CameraPreset

LIGHTING: dict[str, float] = {"ambient": 0.45, "diffuse": 0.7, "specular": 0.2,
                              "roughness": 0.6}
"""Plotly ``Mesh3d`` lighting of every surface: soft, so translucent layers stay readable."""

EYE_DISTANCE = 1.35
"""Camera distance from the scene centre, in plotly's units of the scene box."""

_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))
_LETTER_OFFSET_MM = 12.0


def plotly_camera(preset: CameraPreset) -> dict[str, Any]:
    """A plotly scene camera looking along one of render's presets (same direction and up).

    >>> plotly_camera("axial")["up"]
    {'x': 0.0, 'y': 1.0, 'z': 0.0}
    >>> plotly_camera("top")
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: camera must be one of [...], got 'top'
    """
    check_choice("camera", preset, CAMERA_PRESETS)
    direction, view_up = CAMERA_VECTORS[preset]
    eye = EYE_DISTANCE * np.asarray(direction) / np.linalg.norm(direction)
    return {"eye": dict(zip("xyz", eye.tolist(), strict=True)),
            "up": dict(zip("xyz", view_up, strict=True)),
            "center": {"x": 0.0, "y": 0.0, "z": 0.0}}


def mesh_trace(
    mesh: pv.PolyData,
    *,
    name: str,
    colour: style.Colour,
    opacity: float,
    intensity: np.ndarray | None = None,
    clim_mm: float = style.DISTANCE_CLIM_MM,
    show_scale: bool = False,
    group: str | None = None,
) -> go.Mesh3d:
    """One world-mm triangle surface as a plotly ``Mesh3d`` with render's lighting.

    With ``intensity`` (one value per point, e.g. ``signed_distance_mm``) the surface is
    coloured by render's diverging distance colormap clipped at ``+-clim_mm`` (a colour bar
    with ``show_scale``), else flat in ``colour``. ``group`` ties legend entries together.

    >>> trace = mesh_trace(pv.Sphere(), name="ET", colour=style.REGION_COLOURS["ET"], opacity=1)
    >>> trace.color, len(trace.i)
    ('#ffd700', 1680)
    """
    surface = as_triangles(mesh)
    points, faces = np.asarray(surface.points), surface.regular_faces
    trace = go.Mesh3d(
        x=points[:, 0], y=points[:, 1], z=points[:, 2],
        i=faces[:, 0], j=faces[:, 1], k=faces[:, 2],
        name=name, showlegend=True, legendgroup=group or name, opacity=opacity,
        flatshading=False, lighting=LIGHTING, hoverinfo="name",
    )
    if intensity is None:
        trace.update(color=colour.hex)
    else:
        trace.update(intensity=intensity, colorscale=style.DISTANCE_CMAP.replace("_r", ""),
                     reversescale=style.DISTANCE_CMAP.endswith("_r"), cmin=-clim_mm,
                     cmax=clim_mm, showscale=show_scale,
                     colorbar={"title": {"text": "distance to<br>truth (mm)"}, "len": 0.5,
                               "thickness": 14, "x": 0.98})
    return trace


def _bounds(meshes: Iterable[pv.PolyData | None]) -> np.ndarray | None:
    """(3, 2) world-mm box around the non-empty ``meshes``; ``None`` when all are empty."""
    boxes = [np.asarray(m.bounds, dtype=float).reshape(3, 2) for m in meshes
             if not is_empty(m)]
    if not boxes:
        return None
    stacked = np.stack(boxes)
    return np.stack([stacked[:, :, 0].min(axis=0), stacked[:, :, 1].max(axis=0)], axis=1)


def _orientation_labels(bounds: np.ndarray) -> list[dict[str, Any]]:
    """R/L, A/P, S/I written just outside the scene's box on each world axis."""
    centre = bounds.mean(axis=1)
    half = (bounds[:, 1] - bounds[:, 0]) / 2.0 + _LETTER_OFFSET_MM
    labels = []
    for axis, letters in enumerate(_AXIS_LETTERS):
        for sign, letter in zip((-1.0, 1.0), letters, strict=True):
            point = centre.copy()
            point[axis] += sign * half[axis]
            labels.append({"x": point[0], "y": point[1], "z": point[2], "text": letter,
                           "showarrow": False,
                           "font": {"size": 18, "color": style.TEXT_COLOUR.hex}})
    return labels


def scene_figure(
    traces: Iterable[go.Mesh3d],
    *,
    frame: Iterable[pv.PolyData | None],
    camera: CameraPreset = "oblique",
    title: str | None = None,
    height_px: int | None = None,
    uirevision: str | None = None,
) -> go.Figure:
    """The dark 3-D scene around ``traces``: no grid, R/L A/P S/I letters, ``camera`` preset.

    ``frame`` are the surfaces whose world-mm box the orientation letters go around (the
    brain when it is drawn, else the tumour). ``uirevision`` keeps a user's rotation across
    redraws until it changes.

    >>> fig = scene_figure([], frame=[pv.Sphere(radius=10.0)], camera="coronal")
    >>> [a.text for a in fig.layout.scene.annotations]
    ['L', 'R', 'P', 'A', 'I', 'S']
    """
    bounds = _bounds(frame)
    # No grid or ticks: world mm ticks on three axes clutter the view; the R/L, A/P, S/I
    # letters say what a person needs (as render's orientation cube does).
    axis_style = {"visible": False, "showspikes": False}
    figure = go.Figure(list(traces))
    figure.update_layout(
        title=title, height=height_px, paper_bgcolor=style.BACKGROUND_COLOUR.hex,
        font={"color": style.TEXT_COLOUR.hex},
        margin={"l": 0, "r": 0, "t": 40 if title else 10, "b": 0},
        legend={"x": 0.01, "y": 0.99, "bgcolor": style.LEGEND_COLOUR.hex,
                "font": {"size": 11}},
        uirevision=uirevision,
        scene={
            "aspectmode": "data",
            "xaxis": axis_style, "yaxis": axis_style, "zaxis": axis_style,
            "camera": plotly_camera(camera),
            "annotations": _orientation_labels(bounds) if bounds is not None else [],
        },
    )
    return figure


def named_figure(
    meshes: Mapping[str, pv.PolyData | None],
    *,
    title: str | None = None,
    camera: CameraPreset = "oblique",
    max_triangles: int | None = None,
) -> go.Figure:
    """A scene of named meshes ("WT", "truth_WT", "FP", "brain", ...) coloured by
    :func:`~tumorscope.render.style.mesh_look`: what the exported ``.html`` page shows.

    Empty meshes are left out; those above ``max_triangles`` are simplified
    (:func:`~tumorscope.render.mesh.simplify_to`).

    >>> fig = named_figure({"ET": pv.Sphere(), "truth_ET": pv.Sphere(radius=0.6)})
    >>> [(t.name, t.color, t.opacity) for t in fig.data]
    [('ET', '#ffd700', 1.0), ('truth_ET', '#ffd700', 0.3)]
    """
    parts = {n: m for n, m in meshes.items() if not is_empty(m)}
    shown = tuple(n.removeprefix(style.TRUTH_PREFIX) for n in parts)
    traces = []
    for name, mesh in parts.items():
        if max_triangles is not None:
            mesh = simplify_to(mesh, max_triangles=max_triangles)
        colour, opacity = style.mesh_look(name, shown)
        traces.append(mesh_trace(mesh, name=name, colour=colour, opacity=opacity))
    frame = [parts["brain"]] if "brain" in parts else list(parts.values())
    return scene_figure(traces, frame=frame, camera=camera, title=title)
