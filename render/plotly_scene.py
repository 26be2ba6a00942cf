"""The plotly painter of a comparison scene's layers: the app's in-page 3-D view and HTML pages.

It paints the same :class:`~tumorscope.render.layers.Layer` list as the VTK painter
(:mod:`tumorscope.render.scene`): surfaces as ``Mesh3d``, wireframes as ``Scatter3d`` lines,
the same colours, opacities and colormap, and a camera that frames the same layers along the
same presets. Plotly renders in headless chromium and under Streamlit's AppTest, where a
VTK.js view does not reliably.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pyvista as pv

from tumorscope.core.errors import check_choice

from . import style
from .layers import (
    AXIS_LETTERS,
    CAMERA_PRESETS,
    CAMERA_VECTORS,
    CameraPreset,
    Layer,
    LesionMarker,
    SceneOptions,
    key_text,
    named_layers,
    panel_titles,
    scene_layers,
    target_box,
)
from .mesh import as_triangles, is_empty, simplify_to

LIGHTING: dict[str, float] = {"ambient": 0.45, "diffuse": 0.7, "specular": 0.2,
                              "roughness": 0.6}
"""Plotly ``Mesh3d`` lighting of every surface: soft, so translucent layers stay readable."""

EYE_DISTANCE = 1.35
"""Camera distance from the scene centre, in plotly's units of the scene box, when there is
nothing to frame."""

# VTK's reset_camera puts the bounding sphere (radius r) in a 30-degree view angle at
# r / sin(15 deg); plotly's perspective is 45 degrees. This distance (in r) shows the same
# field of view at the focal point, so both painters frame a scene alike.
FIT_DISTANCE = 1.0 / (math.cos(math.radians(15.0)) * math.tan(math.radians(22.5)))

# Letters sit this far outside the framed box (plus a fifth of its size), clear of the
# surfaces even where an axis points half towards the camera.
_LETTER_OFFSET_MM = 8.0
_LETTER_OFFSET_SHARE = 0.1


def _box(meshes: Iterable[Any]) -> np.ndarray | None:
    """(3, 2) world-mm box around the non-empty ``meshes``; ``None`` when all are empty."""
    boxes = [np.asarray(m.bounds, dtype=float).reshape(3, 2) for m in meshes
             if not is_empty(m)]
    if not boxes:
        return None
    stacked = np.stack(boxes)
    return np.stack([stacked[:, :, 0].min(axis=0), stacked[:, :, 1].max(axis=0)], axis=1)


def plotly_camera(
    preset: CameraPreset, *, scene_box: np.ndarray | None = None,
    fit_box: np.ndarray | None = None,
) -> dict[str, Any]:
    """A plotly scene camera looking along one of render's presets (same direction and up).

    With ``scene_box`` (the (3, 2) world-mm axis ranges of the scene) and ``fit_box`` (what
    to frame) the camera looks at the centre of ``fit_box`` from where VTK's camera fit
    would put it; without, from :data:`EYE_DISTANCE` at the scene's centre.

    >>> plotly_camera("axial")["up"]
    {'x': 0.0, 'y': 1.0, 'z': 0.0}
    >>> box = np.array([[0.0, 100.0], [0.0, 100.0], [0.0, 100.0]])
    >>> plotly_camera("coronal", scene_box=box, fit_box=box)["eye"]["y"] > 1
    True
    >>> plotly_camera("top")
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: camera must be one of [...], got 'top'
    """
    check_choice("camera", preset, CAMERA_PRESETS)
    direction, view_up = CAMERA_VECTORS[preset]
    d = np.asarray(direction) / np.linalg.norm(direction)
    centre, eye = np.zeros(3), EYE_DISTANCE * d
    if scene_box is not None and fit_box is not None:
        # With aspectmode "manual" and aspect ratios proportional to the axis ranges,
        # plotly's scene units are world mm divided by the largest range.
        scale = float(np.ptp(scene_box, axis=1).max()) or 1.0
        centre = (fit_box.mean(axis=1) - scene_box.mean(axis=1)) / scale
        radius = max(float(np.linalg.norm(np.ptp(fit_box, axis=1))) / 2.0 / scale, 1e-3)
        eye = centre + FIT_DISTANCE * radius * d
    return {"eye": dict(zip("xyz", eye.tolist(), strict=True)),
            "up": dict(zip("xyz", view_up, strict=True)),
            "center": dict(zip("xyz", centre.tolist(), strict=True))}


def scene_point_mm(units: Mapping[str, float], ranges: Sequence[Sequence[float]],
                   aspect: Mapping[str, float]) -> np.ndarray:
    """World mm of a point in a plotly scene's camera units (its ``eye`` or ``center``),
    given the scene's axis ``ranges`` and ``aspectratio``: :func:`plotly_camera` inverted.

    >>> box = np.array([[0.0, 100.0], [0.0, 50.0], [0.0, 100.0]])
    >>> eye = plotly_camera("coronal", scene_box=box, fit_box=box)["eye"]
    >>> scene_point_mm(eye, box, {"x": 1.0, "y": 0.5, "z": 1.0}).round(1).tolist()
    [50.0, 212.5, 50.0]
    """
    box = np.asarray(ranges, dtype=float).reshape(3, 2)
    ratio = np.array([float(aspect[a]) for a in "xyz"])
    at = np.array([float(units[a]) for a in "xyz"])
    return box.mean(axis=1) + at * np.ptp(box, axis=1) / ratio


def _colourscale(cmap: str) -> list[list[Any]]:
    """A matplotlib colormap as a plotly colourscale (21 stops): VTK paints the same map."""
    from matplotlib import colormaps

    colours = colormaps[cmap](np.linspace(0.0, 1.0, 21))
    return [[float(t), "rgb({:.0f},{:.0f},{:.0f})".format(*(255 * c[:3]))]
            for t, c in zip(np.linspace(0.0, 1.0, 21), colours, strict=True)]


def _edges(mesh: pv.PolyData) -> np.ndarray:
    """(E, 2) point indices of the unique triangle edges of ``mesh``, or of its line
    segments when it holds lines (the crosshair's arms)."""
    if mesh.n_lines and not len(mesh.faces):
        return np.asarray(mesh.lines).reshape(-1, 3)[:, 1:]
    faces = as_triangles(mesh).regular_faces.reshape(-1, 3)
    pairs = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(pairs, axis=1), axis=0)


def layer_trace(layer: Layer, *, scene: str = "scene", max_triangles: int | None = None,
                show_legend: bool = True) -> go.Mesh3d | go.Scatter3d:
    """One layer as a plotly trace: a lit ``Mesh3d`` surface, ``Scatter3d`` lines for a
    wireframe, or ``Scatter3d`` markers (with their hover text, and the layer's ``ids`` as
    ``customdata``: what a click reports) for points; ``meta`` holds the layer's name.
    Surfaces above ``max_triangles`` are simplified
    (:func:`~tumorscope.render.mesh.simplify_to`).

    >>> from tumorscope.render.layers import Layer
    >>> et = Layer(name="ET", role="prediction", region="ET", mesh=pv.Sphere(),
    ...            colour=style.REGION_COLOURS["ET"], opacity=1.0, legend="ET")
    >>> trace = layer_trace(et)
    >>> trace.color, len(trace.i), trace.meta
    ('#ffd700', 1680, 'ET')
    """
    common = {"name": layer.legend or layer.name, "legendgroup": layer.name,
              "showlegend": show_legend and layer.legend is not None, "opacity": layer.opacity,
              "hoverinfo": "name", "meta": layer.name, "scene": scene}
    mesh = layer.mesh
    if layer.representation == "points":
        x, y, z = np.asarray(mesh.points, dtype=float).T
        open_symbol = (layer.symbol or "").endswith("-open")
        marker = {"size": layer.point_size_px, "color": layer.colour.hex,
                  "symbol": layer.symbol or "circle",
                  "line": {"color": (layer.colour if open_symbol
                                     else style.MARKER_OUTLINE_COLOUR).hex,
                           "width": 3 if open_symbol else 1}}
        return go.Scatter3d(x=x, y=y, z=z, mode="markers", marker=marker,
                            text=list(layer.hover or ()), customdata=list(layer.ids or ()),
                            **{**common, "hoverinfo": "text" if layer.hover else "name"})
    if layer.representation == "wireframe":
        points, edges = np.asarray(mesh.points), _edges(mesh)
        # One polyline with a NaN gap after every edge: plotly breaks the line there.
        segments = np.full((len(edges), 3, 3), np.nan)
        segments[:, :2] = points[edges]
        x, y, z = segments.reshape(-1, 3).T
        return go.Scatter3d(x=x, y=y, z=z, mode="lines", connectgaps=False,
                            line={"color": layer.colour.hex, "width": layer.line_width_px},
                            **common)
    if max_triangles is not None:
        simplified = simplify_to(mesh, max_triangles=max_triangles)
        if layer.scalars is not None and simplified is not mesh:
            # simplify_to drops point arrays, but keeps a subset of the input points: each
            # takes its own value back.
            from scipy.spatial import cKDTree

            _, index = cKDTree(np.asarray(mesh.points)).query(np.asarray(simplified.points))
            values = np.asarray(mesh.point_data[layer.scalars])[index]
            simplified.point_data[layer.scalars] = values
        mesh = simplified
    surface = as_triangles(mesh)
    points, faces = np.asarray(surface.points), surface.regular_faces.reshape(-1, 3)
    trace = go.Mesh3d(x=points[:, 0], y=points[:, 1], z=points[:, 2], i=faces[:, 0],
                      j=faces[:, 1], k=faces[:, 2], flatshading=False, lighting=LIGHTING,
                      **common)
    if layer.scalars is None:
        trace.update(color=layer.colour.hex)
    else:
        low, high = layer.clim or (None, None)
        trace.update(intensity=np.asarray(surface.point_data[layer.scalars]),
                     colorscale=_colourscale(layer.colormap or "viridis"), cmin=low,
                     cmax=high, showscale=layer.colour_bar is not None)
        if layer.colour_bar:
            trace.update(colorbar={"title": {"text": layer.colour_bar.replace("\n", "<br>")},
                                   "len": 0.45, "y": 0.35, "thickness": 14, "x": 0.98})
    return trace


def _letter_offset_mm(box: np.ndarray) -> float:
    return _LETTER_OFFSET_MM + _LETTER_OFFSET_SHARE * float(np.ptp(box, axis=1).max())


def view_axis(preset: CameraPreset) -> int | None:
    """The world axis a preset looks along (axial: 2), ``None`` for oblique views.

    >>> view_axis("coronal"), view_axis("oblique")
    (1, None)
    """
    direction = np.abs(np.asarray(CAMERA_VECTORS[preset][0], dtype=float))
    axis = int(np.argmax(direction))
    return axis if direction[axis] > 0.99 * np.linalg.norm(direction) else None


def _orientation_labels(box: np.ndarray, preset: CameraPreset) -> list[dict[str, Any]]:
    """R/L, A/P, S/I just outside ``box`` on each world axis. In the scene, they turn with
    it, so they stay right however the user rotates; the pair along an axis-aligned
    preset's view axis is left out (seen end on, its two letters would sit on one spot)."""
    centre = box.mean(axis=1)
    half = np.ptp(box, axis=1) / 2.0
    # Outside the box, but inside the framed ball (the camera fits the box's bounding
    # sphere to the view): further out, a small tumour's letters left the picture.
    inside = 0.85 * float(np.linalg.norm(np.ptp(box, axis=1))) / 2.0
    half = np.minimum(half + _letter_offset_mm(box), np.maximum(half, inside))
    skip = view_axis(preset)
    labels = []
    for axis, letters in enumerate(AXIS_LETTERS):
        if axis == skip:
            continue
        for sign, letter in zip((-1.0, 1.0), letters, strict=True):
            point = centre.copy()
            point[axis] += sign * half[axis]
            labels.append({"x": point[0], "y": point[1], "z": point[2],
                           "text": f"<b>{letter}</b>", "showarrow": False,
                           "font": {"size": 18, "color": style.TEXT_COLOUR.hex}})
    return labels


def _pinned_label(layer: Layer) -> dict[str, Any]:
    """A layer's ``label`` as a scene annotation: an arrow onto its first point, drawn over
    the surfaces (plotly paints annotations above the WebGL scene)."""
    x, y, z = np.asarray(layer.mesh.points, dtype=float)[0]
    return {"x": x, "y": y, "z": z, "text": layer.label, "showarrow": True, "arrowhead": 2,
            "arrowwidth": 2, "arrowcolor": layer.colour.hex, "ax": 50, "ay": -50,
            "font": {"size": 13, "color": style.TEXT_COLOUR.hex},
            "bgcolor": style.LEGEND_COLOUR.hex, "bordercolor": layer.colour.hex}


def layers_figure(
    layers: Iterable[Layer],
    options: SceneOptions | None = None,
    *,
    height_px: int | None = None,
    uirevision: str | None = None,
    max_triangles: int | None = None,
) -> go.Figure:
    """The plotly painter: ``layers`` in a dark 3-D scene (one per view), no grid, R/L A/P
    S/I letters around what the camera frames, aimed along ``options.camera``, the legend
    in a row under the scene (never over it).

    ``uirevision`` keeps a user's rotation across redraws until it changes;
    ``max_triangles`` simplifies surfaces above it (exported pages stay light). With
    ``options.target_mm`` the camera looks at that point, framing ``target_radius_mm``.

    >>> from tumorscope.render.layers import scene_layers
    >>> layers = scene_layers({"WT": pv.Sphere(radius=10.0)}, {"WT": pv.Sphere(radius=9.0)})
    >>> fig = layers_figure(layers, SceneOptions(camera="coronal"))
    >>> [(t.type, t.meta, t.opacity) for t in fig.data]
    [('mesh3d', 'prediction WT', 1.0), ('scatter3d', 'truth WT', 0.55)]
    >>> [a.text for a in fig.layout.scene.annotations]  # seen from the front: no A/P
    ['<b>L</b>', '<b>R</b>', '<b>I</b>', '<b>S</b>']
    """
    layers = tuple(layers)
    options = options or SceneOptions()
    titles = panel_titles(options)
    width = 1.0 / len(titles)
    figure = go.Figure()
    annotations: list[dict[str, Any]] = []
    # No grid or ticks: world mm ticks on three axes clutter the view; the R/L, A/P, S/I
    # letters say what a person needs (as the VTK painter's orientation cube does).
    axis_style = {"visible": False, "showspikes": False}
    # One box and one framing for every view (as VTK's linked side-by-side cameras): views
    # side by side show the same place at the same scale.
    all_box = _box(layer.mesh for layer in layers)
    fit_box = _box(layer.mesh for layer in layers if layer.fit)
    aim = target_box(options)
    if aim is not None:
        fit_box = aim
        all_box = aim if all_box is None else np.stack(
            [np.minimum(all_box[:, 0], aim[:, 0]), np.maximum(all_box[:, 1], aim[:, 1])],
            axis=1)
    for panel, panel_title in enumerate(titles):
        scene = "scene" if panel == 0 else f"scene{panel + 1}"
        mine = [layer for layer in layers if layer.panel == panel]
        for layer in mine:
            figure.add_trace(layer_trace(layer, scene=scene, max_triangles=max_triangles,
                                         show_legend=options.legend))
        scene_layout: dict[str, Any] = {
            "domain": {"x": [panel * width, (panel + 1) * width], "y": [0.0, 1.0]},
            "xaxis": axis_style, "yaxis": axis_style, "zaxis": axis_style,
            "aspectmode": "data", "camera": plotly_camera(options.camera)}
        if all_box is not None and fit_box is not None:
            # Explicit ranges (padded so the letters stay inside: plotly hides annotations
            # outside them) make scene units known, so the camera can frame ``fit_box``.
            box = all_box + np.array([-1.0, 1.0]) * (_letter_offset_mm(fit_box) + 4.0)
            extent = np.ptp(box, axis=1)
            scene_layout.update(
                aspectmode="manual",
                aspectratio=dict(zip("xyz", (extent / extent.max()).tolist(), strict=True)),
                camera=plotly_camera(options.camera, scene_box=box, fit_box=fit_box))
            scene_layout["annotations"] = _orientation_labels(fit_box, options.camera)
            pinned = [_pinned_label(layer) for layer in mine if layer.label]
            if pinned:
                scene_layout["annotations"] = [*scene_layout.get("annotations", []), *pinned]
            for axis, (low, high) in zip("xyz", box.tolist(), strict=True):
                scene_layout[f"{axis}axis"] = {**axis_style, "range": [low, high],
                                               "autorange": False}
        figure.update_layout({scene: scene_layout})
        if panel_title:
            annotations.append({"text": panel_title, "x": panel * width + 0.01, "y": 0.99,
                                "xref": "paper", "yref": "paper", "showarrow": False,
                                "xanchor": "left", "yanchor": "top", "font": {"size": 14}})
    key = key_text(layers, options)
    if key:
        annotations.append({"text": key, "x": 0.99, "y": 0.01, "xref": "paper",
                            "yref": "paper", "showarrow": False, "xanchor": "right",
                            "yanchor": "bottom", "font": {"size": 12}})
    figure.update_layout(
        title=options.title, height=height_px, paper_bgcolor=style.BACKGROUND_COLOUR.hex,
        font={"color": style.TEXT_COLOUR.hex}, showlegend=options.legend,
        margin={"l": 0, "r": 0, "t": 40 if options.title else 10, "b": 0},
        # In rows under the scene: over it, the legend hid a quarter of the tumour.
        legend={"orientation": "h", "x": 0.0, "xanchor": "left", "y": 0.0,
                "yanchor": "top", "bgcolor": style.LEGEND_COLOUR.hex, "font": {"size": 11}},
        uirevision=uirevision, annotations=annotations)
    return figure


def comparison_figure(
    truth: Mapping[str, pv.PolyData] | None,
    prediction: Mapping[str, pv.PolyData] | None = None,
    *,
    brain: pv.PolyData | None = None,
    errors: Mapping[str, pv.PolyData] | None = None,
    dice: Mapping[str, float] | None = None,
    lesions: Sequence[LesionMarker] | None = None,
    options: SceneOptions | None = None,
    height_px: int | None = None,
    uirevision: str | None = None,
    max_triangles: int | None = None,
) -> go.Figure:
    """The standard comparison scene of one case, painted by plotly: the same
    :func:`~tumorscope.render.layers.scene_layers` as
    :func:`~tumorscope.render.scene.comparison_scene` paints with VTK, ``lesions`` marked.

    >>> fig = comparison_figure({"ET": pv.Sphere(radius=5.0)}, {"ET": pv.Sphere(radius=4.0)},
    ...                         dice={"ET": 0.8})
    >>> [(t.name, t.opacity) for t in fig.data]
    [('prediction ET · Dice 0.80', 1.0), ('truth ET', 0.55)]
    """
    layers = scene_layers(truth, prediction, brain=brain, errors=errors, dice=dice,
                          lesions=lesions, options=options)
    return layers_figure(layers, options, height_px=height_px, uirevision=uirevision,
                         max_triangles=max_triangles)


def named_figure(
    meshes: Mapping[str, pv.PolyData | None],
    *,
    title: str | None = None,
    camera: CameraPreset = "oblique",
    max_triangles: int | None = None,
) -> go.Figure:
    """A page of named meshes ("WT", "truth_WT", "FP", "brain", ...) as mesh files draw them
    (:func:`~tumorscope.render.layers.named_layers`): what an exported ``.html`` of meshes
    shows. Empty meshes are left out; those above ``max_triangles`` are simplified.

    >>> fig = named_figure({"ET": pv.Sphere(), "truth_ET": pv.Sphere(radius=0.6)})
    >>> [(t.name, t.color, t.opacity) for t in fig.data]
    [('ET', '#ffd700', 1.0), ('truth_ET', '#ffeb80', 0.3)]
    """
    options = SceneOptions(camera=camera, title=title)
    return layers_figure(named_layers(meshes), options, max_triangles=max_triangles)
