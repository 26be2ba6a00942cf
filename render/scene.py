"""The standard truth-vs-prediction 3-D scene of a case, camera presets and off-screen PNGs.

World coordinates are RAS+ mm (nibabel): +x right, +y anterior, +z superior. Axis-aligned
presets follow the radiological convention of 2-D viewers: axial is seen from the feet and
coronal from the front (the patient's left on screen right), sagittal from the patient's
left (anterior on screen left). An annotated cube (R/L, A/P, S/I) shows the orientation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pyvista as pv
from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor, vtkCornerAnnotation

from tumorscope.core.errors import ConfigError, check_choice
from tumorscope.core.labels import REGION_NAMES, REGIONS
from tumorscope.core.nifti import atomic_path

from . import style
from .mesh import DISTANCE_ARRAY, is_empty, signed_distance_mm, simplify

CameraPreset = Literal["axial", "coronal", "sagittal", "oblique"]
ColourBy = Literal["region", "signed_distance"]
Layout = Literal["overlay", "side_by_side"]
TruthStyle = Literal["wireframe", "translucent"]
Focus = Literal["tumour", "brain"]

CAMERA_PRESETS: tuple[str, ...] = get_args(CameraPreset)

PIXELS_RANGE: tuple[int, int] = (16, 8192)
"""Allowed width and height of a rendered image, in pixels: below, VTK draws nothing
useful; above, one frame needs gigabytes and the native renderer aborts."""


def check_pixels(option: str, value: object) -> int:
    """Return ``value`` if it is a whole number of pixels in :data:`PIXELS_RANGE`, else raise
    :class:`ConfigError` naming ``option`` (as the user wrote it), the value and the range.

    >>> check_pixels("--width", 640)
    640
    >>> check_pixels("--width", -5)
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: --width must be a pixel count in 16..8192, got -5
    """
    lo, hi = PIXELS_RANGE
    whole = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if not whole or not lo <= value <= hi:  # type: ignore[operator]
        raise ConfigError(f"{option} must be a pixel count in {lo}..{hi}, "
                          f"got {value!r}")
    return int(value)  # type: ignore[arg-type]


def check_window_size(window_size: object, option: str = "window_size") -> tuple[int, int]:
    """``(width, height)`` checked by :func:`check_pixels`; ``option`` names it in errors.

    >>> check_window_size((1024, 768))
    (1024, 768)
    >>> check_window_size((0, 768))
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: window_size width must be a pixel count in 16..8192, got 0
    """
    try:
        width, height = window_size  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ConfigError(f"{option} must be (width, height) in pixels, got {window_size!r}"
                          ) from None
    return (check_pixels(f"{option} width", width), check_pixels(f"{option} height", height))

# (direction from the focal point to the camera, view-up), in RAS+.
CAMERA_VECTORS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "axial": ((0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    "coronal": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "sagittal": ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "oblique": ((-0.55, 0.7, 0.45), (0.0, 0.0, 1.0)),
}

_DEPTH_FACTOR, _DEPTH_UNITS = 2.0, 200.0


def _add_surface(
    plotter: pv.Plotter,
    mesh: pv.PolyData,
    *,
    colour: style.Colour,
    surface_style: style.SurfaceStyle,
    opacity: float | None = None,
    name: str | None = None,
    depth_layer: int = 0,
    **scalar_kwargs: object,
) -> pv.Actor:
    actor = plotter.add_mesh(
        mesh,
        color=colour.rgb_float if not scalar_kwargs else None,
        style=surface_style.representation,
        opacity=surface_style.opacity if opacity is None else opacity,
        line_width=surface_style.line_width_px,
        smooth_shading=surface_style.smooth_shading,
        name=name,
        specular=0.3,
        specular_power=20,
        **scalar_kwargs,
    )
    if depth_layer:
        # Nested regions share much of their boundary (ET is the rim of TC): pushing the
        # outer surface back in depth lets the inner one win there instead of z-fighting.
        mapper = actor.GetMapper()
        mapper.SetResolveCoincidentTopologyToPolygonOffset()
        mapper.SetRelativeCoincidentTopologyPolygonOffsetParameters(
            _DEPTH_FACTOR * depth_layer, _DEPTH_UNITS * depth_layer)
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


def _legend_row(name: str, dice: Mapping[str, float] | None) -> str:
    text = f"{name}  {REGION_NAMES.get(name, name)}"
    if dice is not None and name in dice:
        value = dice[name]
        text += "   Dice " + ("n/a" if value is None or math.isnan(value) else f"{value:.2f}")
    return text


_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))


def _letter(v: np.ndarray) -> str | None:
    """Anatomical letter of a screen direction, if it is (nearly) along one world axis."""
    axis = int(np.argmax(np.abs(v)))
    if abs(v[axis]) < 0.9 * np.linalg.norm(v):
        return None
    return _AXIS_LETTERS[axis][int(v[axis] > 0)]


def _edge_labels(renderer: pv.Renderer, direction: np.ndarray, view_up: np.ndarray) -> None:
    """R/L, A/P, S/I at the screen edges, as 2-D viewers label slices."""
    right = np.cross(-direction, view_up)
    edges = {5: right, 6: -right, 7: view_up, 4: -view_up}  # vtkCornerAnnotation slots
    annotation = vtkCornerAnnotation()
    for slot, vector in edges.items():
        letter = _letter(vector)
        if letter is None:  # oblique views: the cube says it better
            renderer.remove_actor("orientation_edges", render=False)
            return
        annotation.SetText(slot, letter)
    annotation.SetMaximumFontSize(22)
    annotation.GetTextProperty().SetColor(*style.TEXT_COLOUR.rgb_float)
    annotation.GetTextProperty().BoldOn()
    renderer.add_actor(annotation, reset_camera=False, name="orientation_edges",
                       pickable=False, render=False)


def set_camera(plotter: pv.Plotter, preset: CameraPreset, *, zoom: float = 1.0) -> None:
    """Point every renderer of ``plotter`` along ``preset`` and fit what it shows.

    ``preset`` is one of "axial", "coronal", "sagittal", "oblique" (see the module
    docstring for the conventions); ``zoom`` > 1 moves in after the fit.
    """
    check_choice("camera", preset, CAMERA_PRESETS)
    direction, view_up = CAMERA_VECTORS[preset]
    for renderer in plotter.renderers:
        bounds = np.asarray(renderer.ComputeVisiblePropBounds(), dtype=float)
        if not np.all(np.isfinite(bounds)) or bounds[1] < bounds[0]:
            continue
        centre = bounds.reshape(3, 2).mean(axis=1)
        d = np.asarray(direction) / np.linalg.norm(direction)
        renderer.camera_position = [tuple(centre + 500.0 * d), tuple(centre), view_up]
        _edge_labels(renderer, d, np.asarray(view_up, dtype=float))
        renderer.reset_camera()
        if zoom != 1.0:
            renderer.camera.zoom(zoom)


def comparison_scene(
    truth: Mapping[str, pv.PolyData] | None,
    prediction: Mapping[str, pv.PolyData] | None = None,
    *,
    brain: pv.PolyData | None = None,
    errors: Mapping[str, pv.PolyData] | None = None,
    dice: Mapping[str, float] | None = None,
    show: Iterable[str] = REGIONS,
    colour_by: ColourBy = "region",
    layout: Layout = "overlay",
    truth_style: TruthStyle = "wireframe",
    truth_opacity: float | None = None,
    prediction_opacity: float = 1.0,
    camera: CameraPreset = "oblique",
    focus: Focus = "tumour",
    title: str | None = None,
    distance_clim_mm: float = style.DISTANCE_CLIM_MM,
    window_size: tuple[int, int] = (1024, 768),
    off_screen: bool = True,
) -> pv.Plotter:
    """Build the standard comparison scene of one case; returns the (unshown) plotter.

    ``truth`` and ``prediction`` map mesh names ("WT", "TC", "ET", from
    :func:`~tumorscope.render.mesh.region_meshes` or ``cached_region_meshes``) to world-mm
    surfaces; either may be ``None``. Only names in ``show`` are drawn.

    - ``layout="overlay"``: truth as ``truth_style`` ("wireframe" or "translucent") around
      the solid prediction, in one view. ``"side_by_side"``: truth left, prediction right,
      both drawn alike (solid), cameras linked.
    - Nested regions drawn together are layered: the innermost shown region is solid, outer
      ones translucent so the inner ones stay visible.
    - ``colour_by="signed_distance"``: prediction surfaces coloured by each vertex's signed
      distance to the truth surface of the same region (``RdBu_r``, clipped at
      ``+-distance_clim_mm``; red = prediction outside truth, blue = inside), truth drawn in
      neutral grey, with a scalar bar. Distances already on a mesh are reused.
    - ``brain``: a low-opacity context surface (:func:`~tumorscope.render.mesh.brain_surface`);
      ``focus="tumour"`` frames the tumour (the brain fills the background), ``"brain"``
      the whole brain.
    - ``errors``: ``{"FP": mesh, "FN": mesh}`` from ``error_meshes``, drawn red / blue.
    - ``dice``: region -> Dice, printed in the legend.
    - ``truth_opacity`` replaces the overlay truth style's opacity and ``prediction_opacity``
      scales the prediction's (the app's opacity sliders); outer nested regions stay at
      most as opaque as :func:`~tumorscope.render.style.nested_opacity` allows.

    >>> import numpy as np
    >>> from tumorscope.render.mesh import region_meshes
    >>> lab = np.zeros((30, 30, 30), np.uint8)
    >>> lab[8:22, 8:22, 8:22] = 2; lab[12:18, 12:18, 12:18] = 4
    >>> m = region_meshes(lab, np.eye(4))
    >>> p = comparison_scene(m, m, dice={"WT": 1.0, "TC": 1.0, "ET": 1.0}, camera="axial")
    >>> screenshot(p, window_size=(200, 150)).shape
    (150, 200, 3)
    >>> p.close()
    """
    window_size = check_window_size(window_size)
    shown = tuple(check_choice("shown region", n, style.REGION_COLOURS) for n in show)
    check_choice("colour_by", colour_by, get_args(ColourBy))
    check_choice("layout", layout, get_args(Layout))
    check_choice("truth_style", truth_style, get_args(TruthStyle))
    check_choice("camera", camera, CAMERA_PRESETS)
    check_choice("focus", focus, get_args(Focus))
    for key in errors or {}:
        check_choice("errors key", key, style.ERROR_COLOURS)
    if not distance_clim_mm > 0:
        raise ConfigError(f"distance_clim_mm must be > 0, got {distance_clim_mm}")
    for option, value in (("truth_opacity", truth_opacity),
                          ("prediction_opacity", prediction_opacity)):
        if value is not None and not 0.0 < value <= 1.0:
            raise ConfigError(f"{option} must be in (0, 1], got {value}")
    truth = dict(truth or {})
    prediction = dict(prediction or {})
    by_distance = colour_by == "signed_distance"
    has_tumour = any(not is_empty(m.get(n)) for m in (truth, prediction) for n in shown) or any(
        not is_empty(m) for m in (errors or {}).values())

    side_by_side = layout == "side_by_side"
    plotter = pv.Plotter(off_screen=off_screen, window_size=list(window_size),
                         shape=(1, 2) if side_by_side else (1, 1), border=False)
    plotter.set_background(style.BACKGROUND_COLOUR.rgb_float)
    # No depth peeling: with the EGL/llvmpipe renderer it drops translucent surfaces
    # altogether; VTK's default order-independent translucency blends them well enough.

    def add_brain() -> None:
        if not is_empty(brain):
            actor = _add_surface(plotter, brain, colour=style.BRAIN_COLOUR,
                                 surface_style=style.BRAIN_STYLE)
            # Camera fits ignore props without bounds: with focus="tumour" the brain frames
            # the tumour instead of shrinking it to a dot.
            actor.SetUseBounds(focus == "brain" or not has_tumour)

    distance_mappers: list[pv.DataSetMapper] = []

    def add_prediction() -> None:
        for name in shown:
            mesh = prediction.get(name)
            if is_empty(mesh):
                continue
            opacity = prediction_opacity * style.nested_opacity(
                name, shown, solid=style.PREDICTION_STYLE.opacity)
            if by_distance:
                if DISTANCE_ARRAY not in mesh.point_data:
                    mesh = signed_distance_mm(mesh, truth.get(name, pv.PolyData()))
                actor = _add_surface(
                    plotter, mesh, colour=style.REGION_COLOURS[name],
                    surface_style=style.PREDICTION_STYLE, opacity=opacity,
                    depth_layer=style.nesting_depth(name, shown), scalars=DISTANCE_ARRAY,
                    cmap=style.DISTANCE_CMAP, clim=(-distance_clim_mm, distance_clim_mm),
                    nan_color=style.NAN_COLOUR.rgb_float, show_scalar_bar=False,
                )
                distance_mappers.append(actor.mapper)
            else:
                _add_surface(plotter, mesh, colour=style.REGION_COLOURS[name],
                             surface_style=style.PREDICTION_STYLE, opacity=opacity,
                             depth_layer=style.nesting_depth(name, shown))

    def add_truth(surface_style: style.SurfaceStyle, layered: bool) -> None:
        for name in shown:
            mesh = truth.get(name)
            if is_empty(mesh):
                continue
            if surface_style.representation == "wireframe":
                # A wireframe of 1-mm triangles is a solid smear; a coarser cage reads as one.
                mesh = simplify(mesh, cell_mm=style.WIREFRAME_CELL_MM)
            colour = style.TRUTH_NEUTRAL_COLOUR if by_distance else style.REGION_COLOURS[name]
            if layered:
                opacity = style.nested_opacity(name, shown, solid=surface_style.opacity)
                depth = style.nesting_depth(name, shown)
            else:
                opacity, depth = None, 0
            _add_surface(plotter, mesh, colour=colour, surface_style=surface_style,
                         opacity=opacity, depth_layer=depth)

    def add_errors() -> None:
        for key, mesh in (errors or {}).items():
            if not is_empty(mesh):
                _add_surface(plotter, mesh, colour=style.ERROR_COLOURS[key],
                             surface_style=style.ERROR_STYLE)

    def add_legend(with_truth_key: bool) -> None:
        rows = [[_legend_row(n, dice), style.REGION_COLOURS[n].hex] for n in shown
                if not is_empty(truth.get(n)) or not is_empty(prediction.get(n))]
        rows += [[style.ERROR_NAMES[k], style.ERROR_COLOURS[k].hex]
                 for k, m in (errors or {}).items() if not is_empty(m)]
        if rows:
            w, h = 0.33, 0.02 + 0.045 * len(rows)
            legend = plotter.add_legend(labels=rows, bcolor=style.LEGEND_COLOUR.rgb_float,
                                        border=False, face="rectangle", loc=None, size=(w, h))
            # pyvista's loc="upper right" ignores the box width and pushes text off-screen.
            legend.GetPositionCoordinate().SetValue(1 - w - 0.01, 1 - h - 0.01)
            legend.GetPosition2Coordinate().SetValue(w, h)
        if with_truth_key:
            key = (f"solid: prediction    {truth_style}: ground truth" if not by_distance else
                   f"red: prediction outside truth   blue: inside   grey {truth_style}: truth")
            plotter.add_text(key, position="lower_right", font_size=9,
                             color=style.TEXT_COLOUR.rgb_float)

    def add_distance_bar() -> None:
        if distance_mappers:
            plotter.add_scalar_bar(
                "distance to\ntruth (mm)", mapper=distance_mappers[0], n_labels=5,
                fmt="%+.1f", vertical=True, position_x=0.87, position_y=0.3, width=0.1,
                height=0.45, color=style.TEXT_COLOUR.rgb_float, title_font_size=13,
                label_font_size=12,
            )

    if side_by_side:
        plotter.subplot(0, 0)
        add_brain()
        add_truth(style.PREDICTION_STYLE, layered=True)
        add_legend(with_truth_key=False)
        plotter.add_text("ground truth", position="upper_left", font_size=11,
                         color=style.TEXT_COLOUR.rgb_float)
        _orientation_cube(plotter)
        plotter.subplot(0, 1)
        add_brain()
        add_prediction()
        add_errors()
        add_distance_bar()
        plotter.add_text("prediction", position="upper_left", font_size=11,
                         color=style.TEXT_COLOUR.rgb_float)
        plotter.link_views()
    else:
        add_brain()
        add_prediction()
        truth_surface = style.TRUTH_STYLES[truth_style]
        if truth_opacity is not None:
            truth_surface = dataclasses.replace(truth_surface, opacity=truth_opacity)
        add_truth(truth_surface, layered=truth_style == "translucent")
        add_errors()
        add_distance_bar()
        add_legend(with_truth_key=bool(truth) and bool(prediction))
        _orientation_cube(plotter)
    if title:
        plotter.subplot(0, 0)
        plotter.add_text(title, position="upper_left" if not side_by_side else "lower_left",
                         font_size=11, color=style.TEXT_COLOUR.rgb_float)
    set_camera(plotter, camera)
    return plotter


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
