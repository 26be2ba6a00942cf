"""The patient page's 3-D view linked to the slice viewer: a click in the scene moves the slice
crosshair there, the crosshair's world position for the scene to mark, and the user's camera
kept across reruns.

Streamlit's plotly chart reports no clicks in 3-D scenes, and it draws a new chart (so a new
camera) whenever the figure changes: a small local script (an ``st.components.v2``
component, nothing fetched) listens to the chart's plotly events in the page instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import streamlit as st

from tumorscope.app import lesions as case_lesions
from tumorscope.app.caches import stamp
from tumorscope.app.state import POSITION_KEYS, crosshair_case_key, set_position
from tumorscope.core.store import CaseRecord, Run
from tumorscope.render.layers import Layer, picked_point
from tumorscope.render.lesions import ras_grid, ras_voxel

LINK_KEY = "scene_link"
"""Session key of the link component: its ``picked`` trigger holds the last click."""

# The user's camera is kept per figure revision (plotly's ``uirevision``: run, case, camera
# preset and the lesion aimed at), in the page, so it survives Streamlit drawing a new chart
# after each control change; a new preset or lesion starts from its own camera.
_JS = """
export default function (component) {
  const { setTriggerValue, data } = component;
  const cameras = (window.__tumorscopeCameras = window.__tumorscopeCameras || {});
  const selector = `.st-key-${data.chart_key} .js-plotly-plot`;
  const revision = (gd) => String((gd.layout || {}).uirevision ?? "");
  const near = (a, b) => ["x", "y", "z"].every((k) => Math.abs(a[k] - b[k]) < 1e-6);
  function restore(gd) {
    // Once the new chart has drawn (never half-way through plotting): back to the user's view.
    const saved = cameras[revision(gd)];
    const scene = gd._fullLayout && gd._fullLayout.scene && gd._fullLayout.scene._scene;
    if (!saved || !scene || !window.Plotly) return;
    const now = scene.getCamera();
    if (near(now.eye, saved.eye) && near(now.center, saved.center) && near(now.up, saved.up)) {
      return;
    }
    window.Plotly.relayout(gd, {"scene.camera": saved});
  }
  function attach(gd) {
    if (gd.__tumorscopeLinked || !gd.on) return;
    gd.__tumorscopeLinked = true;
    gd.on("plotly_afterplot", () => restore(gd));
    restore(gd);
    gd.on("plotly_relayout", (event) => {
      if (event && event["scene.camera"]) cameras[revision(gd)] = event["scene.camera"];
    });
    // Plotly reports a "click" on every frame drawn while a button is down over a surface,
    // so at the start of each rotation too: a click is a press and release in one place.
    let down = null, pending = null;
    gd.addEventListener("pointerdown", (e) => { down = [e.clientX, e.clientY]; pending = null; },
                        true);
    gd.on("plotly_click", (event) => {
      const point = event && event.points && event.points[0];
      const scene = gd._fullLayout && gd._fullLayout.scene;
      if (!down || pending || !point || !scene) return;
      // The camera goes along, so the server can look through what the click hit first.
      const camera = scene._scene && scene._scene.getCamera ? scene._scene.getCamera()
                                                             : scene.camera;
      pending = {
        x: point.x, y: point.y, z: point.z,
        layer: (point.data && point.data.meta) || null, id: point.customdata ?? null,
        eye: camera && camera.eye, aspect: scene.aspectratio,
        ranges: [scene.xaxis.range, scene.yaxis.range, scene.zaxis.range]};
    });
    gd.addEventListener("pointerup", (e) => {
      if (down && pending && Math.hypot(e.clientX - down[0], e.clientY - down[1]) < 5) {
        setTriggerValue("picked", pending);
      }
      down = null;
      pending = null;
    }, true);
  }
  const scan = () => document.querySelectorAll(selector).forEach(attach);
  scan();
  const observer = new MutationObserver(scan);
  observer.observe(document.body, {childList: true, subtree: true});
  return () => observer.disconnect();
}
"""

_component = st.components.v2.component("tumorscope_scene_link", js=_JS)


def link(chart_key: str, on_pick: Callable[[], None]) -> None:
    """Mount the link to the chart drawn with ``key=chart_key`` (after it, on the page);
    ``on_pick`` runs before the next rerun after a click (read it with :func:`picked`)."""
    _component(key=LINK_KEY, data={"chart_key": chart_key}, on_picked_change=on_pick,
               height=0)


def picked() -> dict[str, Any] | None:
    """The click being handled: world ``x``, ``y``, ``z`` (mm), the ``layer`` clicked and
    its ``id`` (a lesion key on a lesion marker), or ``None``."""
    value = (st.session_state.get(LINK_KEY) or {}).get("picked")
    if not isinstance(value, dict):
        return None
    try:
        point = [float(value[k]) for k in "xyz"]
    except (KeyError, TypeError, ValueError):
        return None
    if not all(np.isfinite(point)):
        return None
    return {**value, "x": point[0], "y": point[1], "z": point[2]}


def clicked_mm(layers: Sequence[Layer], pick: Mapping[str, Any]
               ) -> tuple[str | None, tuple[float, float, float]]:
    """(layer, world mm) a click meant: a lesion marker's own centre; on surfaces, the first
    one opaque enough along the line of sight through the point plotly picked
    (:func:`~tumorscope.render.layers.picked_point`: the brain, always in front, is looked
    through); else the picked point itself."""
    from tumorscope.render.plotly_scene import scene_point_mm  # plotly and VTK: only now

    point = (float(pick["x"]), float(pick["y"]), float(pick["z"]))
    layer = pick.get("layer")
    by_name = {la.name: la for la in layers}
    if layer in by_name and by_name[layer].representation == "points":
        return layer, point
    try:
        eye = scene_point_mm(pick["eye"], pick["ranges"], pick["aspect"])
    except (KeyError, TypeError, ValueError):
        return layer, point
    return picked_point(layers, eye, point) or (layer, point)


def _file_grid(case: CaseRecord) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """(NIfTI affine, shape) of the image the slice viewer shows, from its header only."""
    path = case_lesions.crosshair_image(case) or case.label
    if path is None:
        return None
    # The lesions module's header cache: the one the crosshair is centred on lesions with.
    affine, shape = case_lesions.file_grid(str(path), stamp(path))
    return np.asarray(affine, dtype=float), tuple(shape)


def crosshair_mm(run: Run, case: CaseRecord) -> tuple[float, float, float] | None:
    """World position (RAS+ mm) of the slice crosshair when it is set on this patient."""
    s = st.session_state
    if s.get("sl_case") != crosshair_case_key(run, case.case_id):
        return None
    grid = _file_grid(case)
    if grid is None or not all(k in s for k in POSITION_KEYS):
        return None
    ras, _ = ras_grid(*grid)
    voxel = np.array([*(float(s[k]) for k in POSITION_KEYS), 1.0])
    return tuple(float(v) for v in (ras @ voxel)[:3])  # type: ignore[return-value]


def move_crosshair(run: Run, case: CaseRecord,
                   world_mm: Sequence[float]) -> tuple[int, int, int] | None:
    """Put the slice crosshair on the voxel nearest ``world_mm`` (clipped into the image);
    returns it, or ``None`` when the case has no image to place it in."""
    grid = _file_grid(case)
    if grid is None:
        return None
    voxel = ras_voxel(world_mm, *grid)
    set_position(voxel)
    st.session_state["sl_case"] = crosshair_case_key(run, case.case_id)
    return voxel
