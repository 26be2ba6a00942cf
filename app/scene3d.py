"""The in-page 3-D comparison scene: render's plotly ``Mesh3d`` traces, arranged as the overlay.

Plotly renders in headless chromium and under AppTest (see FACTS.md), where a VTK.js view
does not reliably. Traces, lighting, camera presets and colours come from
:mod:`tumorscope.render.plotly_scene` and :mod:`tumorscope.render.style`, so this view,
render's off-screen PNG and the exported files show the same tumour the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
import plotly.graph_objects as go

from tumorscope.core.labels import REGION_NAMES, REGIONS
from tumorscope.render import style
from tumorscope.render.mesh import DISTANCE_ARRAY, is_empty
from tumorscope.render.plotly_scene import mesh_trace, scene_figure
from tumorscope.render.scene import CameraPreset

ColourBy = Literal["region", "signed_distance"]


def _distances(mesh: Any, clim_mm: float) -> np.ndarray:
    """Per-point signed distances; NaN (no truth surface of that region) reads as 'outside'."""
    values = np.asarray(mesh.point_data[DISTANCE_ARRAY], dtype=np.float32)
    return np.where(np.isfinite(values), values, clim_mm)


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
    camera: CameraPreset = "oblique",
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

    >>> import pyvista as pv
    >>> fig = comparison_figure({"ET": pv.Sphere(radius=5.0)}, {"ET": pv.Sphere(radius=4.0)},
    ...                         dice={"ET": 0.8})
    >>> [(t.name, t.opacity) for t in fig.data]
    [('prediction ET (enhancing tumour) · Dice 0.80', 1.0), ('truth ET', 0.3)]
    """
    shown = tuple(r for r in REGIONS if r in set(show))
    by_distance = colour_by == "signed_distance"
    traces: list[go.Mesh3d] = []
    if not is_empty(brain):
        traces.append(mesh_trace(brain, name="brain", colour=style.BRAIN_COLOUR,
                                 opacity=max(style.BRAIN_STYLE.opacity, 0.1)))
    scale_shown = False
    for region in shown:
        mesh = (prediction or {}).get(region)
        if is_empty(mesh):
            continue
        opacity = prediction_opacity * style.nested_opacity(region, shown)
        intensity = None
        if by_distance and DISTANCE_ARRAY in mesh.point_data:
            intensity = _distances(mesh, style.DISTANCE_CLIM_MM)
        traces.append(mesh_trace(
            mesh, name=f"prediction {region} ({REGION_NAMES[region]}){_dice_text(dice, region)}",
            colour=style.REGION_COLOURS[region], opacity=opacity, intensity=intensity,
            show_scale=intensity is not None and not scale_shown, group=f"pred-{region}"))
        scale_shown = scale_shown or intensity is not None
    for region in shown:
        mesh = (truth or {}).get(region)
        if is_empty(mesh):
            continue
        colour = style.TRUTH_NEUTRAL_COLOUR if by_distance else style.REGION_COLOURS[region]
        traces.append(mesh_trace(mesh, name=f"truth {region}", colour=colour,
                                 opacity=truth_opacity, group=f"truth-{region}"))
    for key, mesh in (errors or {}).items():
        if not is_empty(mesh):
            traces.append(mesh_trace(mesh, name=style.ERROR_NAMES[key],
                                     colour=style.ERROR_COLOURS[key], opacity=1.0))

    tumour = [m for src in (truth, prediction) for r, m in (src or {}).items() if r in shown]
    frame = [brain] if not is_empty(brain) else [*tumour, *(errors or {}).values()]
    return scene_figure(traces, frame=frame, camera=camera, height_px=height_px,
                        uirevision=f"{revision}|{camera}")


def _dice_text(dice: Mapping[str, float] | None, region: str) -> str:
    if not dice or region not in dice:
        return ""
    value = dice[region]
    return "" if value is None or math.isnan(value) else f" · Dice {value:.2f}"
