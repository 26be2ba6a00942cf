"""The VTK painter of a comparison scene's layers: camera presets and off-screen PNGs.

World coordinates are RAS+ mm (nibabel): +x right, +y anterior, +z superior. Axis-aligned
presets follow the radiological convention of 2-D viewers: axial is seen from the feet and
coronal from the front (the patient's left on screen right), sagittal from the patient's
left (anterior on screen left). An annotated cube (R/L, A/P, S/I) shows the orientation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyvista as pv
from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor, vtkCornerAnnotation

from tumorscope.core.data.nifti import atomic_path
from tumorscope.core.errors import ConfigError, check_choice

from . import style
from .layers import (
    CAMERA_PRESETS,
    CAMERA_VECTORS,
    CameraPreset,
    Layer,
    LesionMarker,
    SceneOptions,
    check_pixels,  # noqa: F401  (re-exported: the CLI checks --width/--height with it)
    check_window_size,
    edge_letters,
    key_text,
    panel_titles,
    scene_layers,
    target_box,
)

POINT_SCALE = 1.5
"""VTK point sprites of a layer's ``point_size_px`` look smaller than plotly's markers of the
same size (plotly's size is the symbol's width plus its outline): scaled up to match."""


def _add_layer(plotter: pv.Plotter, layer: Layer) -> pv.Actor:
    if layer.representation == "points":
        # Markers: every point a lit sphere of the layer's colour (plotly adds its symbol).
        actor = plotter.add_mesh(layer.mesh, color=layer.colour.rgb_float, style="points",
                                 point_size=layer.point_size_px * POINT_SCALE,
                                 render_points_as_spheres=True, opacity=layer.opacity,
                                 name=layer.name)
        actor.SetUseBounds(layer.fit)
        if layer.label:
            # Over everything (no depth test), so a point inside a solid surface is found.
            plotter.add_point_labels(
                np.asarray(layer.mesh.points, dtype=float)[:1], [layer.label],
                always_visible=True, show_points=False, font_size=14,
                text_color=style.TEXT_COLOUR.rgb_float, shape_color=style.LEGEND_COLOUR.rgb_float,
                shape_opacity=0.85, name=f"{layer.name} label", reset_camera=False)
        return actor
    scalars: dict[str, object] = {}
    if layer.scalars is not None:
        scalars = {"scalars": layer.scalars, "cmap": layer.colormap, "clim": layer.clim,
                   "show_scalar_bar": False}
    actor = plotter.add_mesh(
        layer.mesh,
        color=None if scalars else layer.colour.rgb_float,
        style=layer.representation,
        opacity=layer.opacity,
        line_width=layer.line_width_px,
        smooth_shading=layer.representation == "surface",
        name=layer.name,
        specular=0.3,
        specular_power=20,
        **scalars,
    )
    # Camera fits ignore props without bounds: with focus="tumour" the brain frames the
    # tumour instead of shrinking it to a dot.
    actor.SetUseBounds(layer.fit)
    return actor


def _orientation_cube(plotter: pv.Plotter) -> None:
    cube = vtkAnnotatedCubeActor()
    for face, text in (("XPlus", "R"), ("XMinus", "L"), ("YPlus", "A"), ("YMinus", "P"),
                       ("ZPlus", "S"), ("ZMinus", "I")):
        getattr(cube, f"Set{face}FaceText")(text)
    cube.SetFaceTextScale(0.6)
    # Upright "I" in the axial preset (seen from the feet, anterior up).
    cube.SetZFaceTextRotation(90)
    cube.GetCubeProperty().SetColor(0.32, 0.34, 0.40)
    cube.GetTextEdgesProperty().SetColor(0.8, 0.8, 0.8)
    cube.GetTextEdgesProperty().SetLineWidth(1.5)
    for side in ("XPlus", "XMinus", "YPlus", "YMinus", "ZPlus", "ZMinus"):
        getattr(cube, f"Get{side}FaceProperty")().SetColor(1.0, 1.0, 1.0)
    widget = plotter.add_orientation_widget(cube)
    widget.SetViewport(0.0, 0.0, 0.16, 0.22)


def _edge_labels(renderer: pv.Renderer, preset: CameraPreset) -> None:
    """R/L, A/P, S/I at the screen edges (:func:`~tumorscope.render.layers.edge_letters`)."""
    letters = edge_letters(preset)
    if letters is None:  # oblique views: the cube says it better
        renderer.remove_actor("orientation_edges", render=False)
        return
    annotation = vtkCornerAnnotation()
    slots = {"right": 5, "left": 6, "top": 7, "bottom": 4}  # vtkCornerAnnotation edges
    for edge, letter in letters.items():
        annotation.SetText(slots[edge], letter)
    annotation.SetMaximumFontSize(22)
    annotation.GetTextProperty().SetColor(*style.TEXT_COLOUR.rgb_float)
    annotation.GetTextProperty().BoldOn()
    renderer.add_actor(annotation, reset_camera=False, name="orientation_edges",
                       pickable=False, render=False)


def set_camera(plotter: pv.Plotter, preset: CameraPreset, *, zoom: float = 1.0,
               bounds: np.ndarray | None = None) -> None:
    """Point every renderer of ``plotter`` along ``preset`` and fit what they show.

    ``preset`` is one of "axial", "coronal", "sagittal", "oblique" (see the module
    docstring for the conventions); ``zoom`` > 1 moves in after the fit. Views side by side
    share one camera (linked), so all are fitted to the union of what they show, or to
    ``bounds`` ((3, 2) world mm, e.g. around a chosen lesion) when given.
    """
    check_choice("camera", preset, CAMERA_PRESETS)
    direction, view_up = CAMERA_VECTORS[preset]
    if bounds is not None:
        union = np.asarray(bounds, dtype=float).reshape(3, 2)
    else:
        boxes = [np.asarray(r.ComputeVisiblePropBounds(), dtype=float).reshape(3, 2)
                 for r in plotter.renderers]
        boxes = [b for b in boxes if np.all(np.isfinite(b)) and np.all(b[:, 1] >= b[:, 0])]
        if not boxes:
            return
        union = np.stack([np.min([b[:, 0] for b in boxes], axis=0),
                          np.max([b[:, 1] for b in boxes], axis=0)], axis=1)
    centre = union.mean(axis=1)
    d = np.asarray(direction) / np.linalg.norm(direction)
    for renderer in plotter.renderers:
        renderer.camera_position = [tuple(centre + 500.0 * d), tuple(centre), view_up]
        _edge_labels(renderer, preset)
        renderer.reset_camera(bounds=tuple(union.ravel()))
        if zoom != 1.0:
            renderer.camera.zoom(zoom)


def _add_legend(plotter: pv.Plotter, layers: list[Layer]) -> None:
    # A line swatch for wireframes, a square for surfaces: as plotly's legend draws them.
    glyphs = {"wireframe": "line", "points": "circle"}
    rows = [[layer.legend, layer.colour.hex, glyphs.get(layer.representation, "rectangle")]
            for layer in layers if layer.legend]
    if not rows:
        return
    width = min(0.5, 0.05 + 0.0095 * max(len(r[0]) for r in rows))
    height = 0.015 + 0.032 * len(rows)
    legend = plotter.add_legend(labels=rows, bcolor=style.LEGEND_COLOUR.rgb_float,
                                border=False, loc=None, size=(width, height))
    # pyvista's loc="upper right" ignores the box width and pushes text off-screen.
    legend.GetPositionCoordinate().SetValue(1 - width - 0.01, 1 - height - 0.01)
    legend.GetPosition2Coordinate().SetValue(width, height)


def paint_layers(
    layers: tuple[Layer, ...],
    options: SceneOptions | None = None,
    *,
    off_screen: bool = True,
) -> pv.Plotter:
    """The VTK painter: ``layers`` (from :func:`~tumorscope.render.layers.scene_layers`) in a
    plotter of ``options.window_size``, aimed along ``options.camera``; returns it unshown.

    Each layer becomes one actor named after it, with the layer's colour, opacity,
    representation (points as spheres) and scalars; each view gets a legend of its layers
    (``options.legend``), an orientation cube and its title; the first layer with a colour
    bar gets a scalar bar. ``options.target_mm`` aims the camera at that point.
    """
    options = options or SceneOptions()
    titles = panel_titles(options)
    plotter = pv.Plotter(off_screen=off_screen, window_size=list(options.window_size),
                         shape=(1, len(titles)), border=False)
    plotter.set_background(style.BACKGROUND_COLOUR.rgb_float)
    # No depth peeling: with the EGL/llvmpipe renderer it drops translucent surfaces
    # altogether; VTK's default order-independent translucency blends them well enough.
    text = style.TEXT_COLOUR.rgb_float
    for panel, panel_title in enumerate(titles):
        plotter.subplot(0, panel)
        mine = [layer for layer in layers if layer.panel == panel]
        for layer in mine:
            actor = _add_layer(plotter, layer)
            if layer.colour_bar:
                plotter.add_scalar_bar(
                    layer.colour_bar, mapper=actor.mapper,
                    n_labels=5, fmt="%+.1f", vertical=True, position_x=0.87, position_y=0.12,
                    width=0.1, height=0.45, color=text, title_font_size=13,
                    label_font_size=12)
        if options.legend:
            _add_legend(plotter, mine)
        if panel_title:
            plotter.add_text(panel_title, position="upper_left", font_size=11, color=text)
        _orientation_cube(plotter)
    key = key_text(layers, options)
    if key:
        plotter.add_text(key, position="lower_right", font_size=9, color=text)
    if options.title:
        plotter.subplot(0, 0)
        plotter.add_text(options.title, position="upper_left" if len(titles) == 1
                         else "lower_left", font_size=11, color=text)
    if len(titles) > 1:
        plotter.link_views()
    set_camera(plotter, options.camera, bounds=target_box(options))
    return plotter


def comparison_scene(
    truth: Mapping[str, pv.PolyData] | None,
    prediction: Mapping[str, pv.PolyData] | None = None,
    *,
    brain: pv.PolyData | None = None,
    errors: Mapping[str, pv.PolyData] | None = None,
    dice: Mapping[str, float] | None = None,
    lesions: Sequence[LesionMarker] | None = None,
    options: SceneOptions | None = None,
    off_screen: bool = True,
) -> pv.Plotter:
    """The standard comparison scene of one case, painted by VTK; returns the unshown plotter.

    ``truth`` and ``prediction`` map "WT", "TC", "ET" (from
    :func:`~tumorscope.render.mesh.region_meshes` or the run's mesh cache) to world-mm
    surfaces, either may be ``None``; ``brain`` is a context surface
    (:func:`~tumorscope.render.mesh.brain_surface`), ``errors`` ``{"FP": mesh, "FN": mesh}``
    from ``error_meshes``, ``dice`` region -> Dice for the legend, ``lesions`` the case's
    :class:`~tumorscope.render.layers.LesionMarker` list. What is drawn and how is
    :func:`~tumorscope.render.layers.scene_layers` of ``options``
    (:class:`~tumorscope.render.layers.SceneOptions`): the plotly painter draws the same.

    >>> import numpy as np
    >>> from tumorscope.render.mesh import region_meshes
    >>> lab = np.zeros((30, 30, 30), np.uint8)
    >>> lab[8:22, 8:22, 8:22] = 2; lab[12:18, 12:18, 12:18] = 4
    >>> m = region_meshes(lab, np.eye(4))
    >>> p = comparison_scene(m, m, dice={"WT": 1.0, "TC": 1.0, "ET": 1.0},
    ...                      options=SceneOptions(camera="axial"))
    >>> screenshot(p, window_size=(200, 150)).shape
    (150, 200, 3)
    >>> p.close()
    """
    options = options or SceneOptions()
    layers = scene_layers(truth, prediction, brain=brain, errors=errors, dice=dice,
                          lesions=lesions, options=options)
    return paint_layers(layers, options, off_screen=off_screen)


def screenshot(
    plotter: pv.Plotter,
    *,
    camera: CameraPreset | None = None,
    window_size: tuple[int, int] | None = None,
    transparent_background: bool = False,
) -> np.ndarray:
    """Render ``plotter`` off-screen: ``(H, W, 3)`` uint8, or ``(H, W, 4)`` RGBA if transparent.

    ``camera`` re-aims every view along a preset first (``None`` keeps the current camera);
    ``window_size`` is ``(width, height)`` in pixels. With ``transparent_background`` the
    background pixels have alpha 0.
    """
    if camera is not None:
        set_camera(plotter, camera)
    if window_size is not None:
        plotter.window_size = list(check_window_size(window_size))
    image = plotter.screenshot(transparent_background=transparent_background,
                               return_img=True)
    return np.asarray(image)


def save_png(
    path: str | Path,
    source: np.ndarray | pv.Plotter,
    *,
    camera: CameraPreset | None = None,
    window_size: tuple[int, int] | None = None,
    transparent_background: bool = False,
) -> Path:
    """Write an image array ``(H, W, 3|4)`` uint8, or a screenshot of a plotter, to a PNG.

    The file is written atomically (never a half-written PNG for the app to read).
    Screenshot options apply only when ``source`` is a plotter.
    """
    from PIL import Image

    if isinstance(source, pv.Plotter):
        source = screenshot(source, camera=camera, window_size=window_size,
                            transparent_background=transparent_background)
    image = np.asarray(source)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ConfigError(
            f"expected a (H, W, 3 or 4) uint8 image, got {image.dtype} of shape {image.shape}")
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path
