"""A 3-D comparison scene described once: its options and the ordered layers both painters draw."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from tumorscope.core.data.labels import REGIONS
from tumorscope.core.errors import ConfigError, check_choice

from . import style

# Plain data and rules only: VTK, PyVista and plotly are imported by the painters
# (render.scene, render.plotly_scene), and by the mesh operations this module calls lazily.

ColourBy = Literal["region", "signed_distance"]
CameraPreset = Literal["axial", "coronal", "sagittal", "oblique"]
Layout = Literal["overlay", "side_by_side"]
TruthStyle = Literal["wireframe", "translucent"]
Focus = Literal["tumour", "brain"]
Role = Literal["truth", "prediction", "brain", "error"]

CAMERA_PRESETS: tuple[str, ...] = get_args(CameraPreset)

# (direction from the focal point to the camera, view-up), in RAS+ (see render.scene).
CAMERA_VECTORS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "axial": ((0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    "coronal": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "sagittal": ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "oblique": ((-0.55, 0.7, 0.45), (0.0, 0.0, 1.0)),
}

PIXELS_RANGE: tuple[int, int] = (16, 8192)
"""Allowed width and height of a rendered image, in pixels: below, VTK draws nothing
useful; above, one frame needs gigabytes and the native renderer aborts."""

NESTED_OFFSET_MM: float = 0.2
"""Inward nudge of a surface per region drawn inside it. ET is the rim of TC, so their
surfaces coincide over much of the tumour and z-fight in stripes (VTK and WebGL alike);
moving the outer one a fifth of a voxel in lets the inner one show in its own colour there,
with no visible change of shape."""

DISTANCE_TITLE = "distance to\ntruth (mm)"
"""Title (two lines) of the colour bar of prediction surfaces coloured by signed distance."""

_INSIDE: dict[str, tuple[str, ...]] = {"WT": ("TC", "ET"), "TC": ("ET",), "ET": ()}

TRUTH_PREFIX = "truth_"
"""Named mesh sets (exports) call ground-truth surfaces ``truth_WT`` ... beside ``WT``."""


AXIS_LETTERS: tuple[tuple[str, str], ...] = (("L", "R"), ("P", "A"), ("I", "S"))
"""The (negative, positive) end of each RAS+ world axis, as anatomical letters."""


def _letter(vector: np.ndarray) -> str | None:
    """Anatomical letter of a screen direction, if it is (nearly) along one world axis."""
    axis = int(np.argmax(np.abs(vector)))
    if abs(vector[axis]) < 0.9 * np.linalg.norm(vector):
        return None
    return AXIS_LETTERS[axis][int(vector[axis] > 0)]


def edge_letters(preset: CameraPreset) -> dict[str, str] | None:
    """R/L, A/P, S/I at the screen's "left", "right", "top" and "bottom" edges along
    ``preset``, as 2-D viewers label slices; ``None`` for oblique views (no axis per edge).

    >>> edge_letters("axial")
    {'right': 'L', 'left': 'R', 'top': 'A', 'bottom': 'P'}
    >>> edge_letters("oblique") is None
    True
    """
    check_choice("camera", preset, CAMERA_PRESETS)
    direction, view_up = (np.asarray(v, dtype=float) for v in CAMERA_VECTORS[preset])
    right = np.cross(-direction / np.linalg.norm(direction), view_up)
    letters = {edge: _letter(v) for edge, v in
               (("right", right), ("left", -right), ("top", view_up), ("bottom", -view_up))}
    if any(letter is None for letter in letters.values()):
        return None
    return letters  # type: ignore[return-value]


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


def _check_opacity(option: str, value: object) -> float:
    number = isinstance(value, int | float | np.floating) and not isinstance(value, bool)
    if not number or not 0.0 < value <= 1.0:  # type: ignore[operator]
        raise ConfigError(f"{option} must be in (0, 1], got {value}")
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class SceneOptions:
    """Everything a person chooses about a comparison scene, checked on entry.

    ``regions`` are drawn ("WT", "TC", "ET", kept in that order); the ``show_*`` switches
    leave out whole kinds of surface. ``colour_by="signed_distance"`` colours the prediction
    by its distance to the truth of the same region (red outside, blue inside, clipped at
    ``+-distance_clim_mm``). ``layout="overlay"`` draws truth (``truth_style``) around the
    solid prediction in one view, ``"side_by_side"`` truth left and prediction right, both
    solid. ``truth_opacity`` replaces the truth style's opacity (``None`` keeps it);
    ``prediction_opacity`` scales the prediction's. ``camera`` and ``focus`` (frame the
    tumour, or the whole brain) aim the view; ``title``, ``legend`` and ``window_size``
    (pixels, the PNG's) finish it.

    >>> SceneOptions(regions=["ET", "WT"]).regions
    ('WT', 'ET')
    >>> SceneOptions(truth_opacity=0)
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: truth_opacity must be in (0, 1], got 0
    >>> SceneOptions(colour_by="dice")
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: colour_by must be one of [...], got 'dice'
    """

    regions: tuple[str, ...] = REGIONS
    show_truth: bool = True
    show_prediction: bool = True
    show_brain: bool = True
    show_errors: bool = True
    colour_by: ColourBy = "region"
    layout: Layout = "overlay"
    truth_style: TruthStyle = "wireframe"
    truth_opacity: float | None = None
    prediction_opacity: float = 1.0
    camera: CameraPreset = "oblique"
    focus: Focus = "tumour"
    distance_clim_mm: float = style.DISTANCE_CLIM_MM
    title: str | None = None
    legend: bool = True
    window_size: tuple[int, int] = (1024, 768)

    def __post_init__(self) -> None:
        # Frozen: normalised values go in through object.__setattr__, once, here.
        regions = (self.regions,) if isinstance(self.regions, str) else tuple(self.regions)
        for name in regions:
            check_choice("shown region", name, REGIONS)
        object.__setattr__(self, "regions", tuple(r for r in REGIONS if r in regions))
        check_choice("colour_by", self.colour_by, get_args(ColourBy))
        check_choice("layout", self.layout, get_args(Layout))
        check_choice("truth_style", self.truth_style, get_args(TruthStyle))
        check_choice("camera", self.camera, CAMERA_PRESETS)
        check_choice("focus", self.focus, get_args(Focus))
        if self.truth_opacity is not None:
            object.__setattr__(self, "truth_opacity",
                               _check_opacity("truth_opacity", self.truth_opacity))
        object.__setattr__(self, "prediction_opacity",
                           _check_opacity("prediction_opacity", self.prediction_opacity))
        clim = self.distance_clim_mm
        if isinstance(clim, bool) or not isinstance(clim, int | float) \
                or not (math.isfinite(clim) and clim > 0):
            raise ConfigError(f"distance_clim_mm must be > 0, got {clim}")
        object.__setattr__(self, "window_size", check_window_size(self.window_size))
        for flag in ("show_truth", "show_prediction", "show_brain", "show_errors", "legend"):
            if not isinstance(getattr(self, flag), bool | np.bool_):
                raise ConfigError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
            object.__setattr__(self, flag, bool(getattr(self, flag)))
        if self.title is not None and not isinstance(self.title, str):
            raise ConfigError(f"title must be text, got {self.title!r}")


@dataclass(frozen=True, kw_only=True, eq=False)
class Layer:
    """One surface of a scene as every painter draws it.

    ``mesh`` is the world-mm surface exactly as drawn (a wireframe already simplified, a
    nested surface already nudged, distances already on it); ``colour`` applies unless
    ``scalars`` names a point array coloured by ``colormap`` (a matplotlib name) over
    ``clim``. ``representation`` is "surface" or "wireframe" (edges only, ``line_width_px``).
    ``colour_bar`` is the title of the colour bar this layer's scalars get (one per scene).
    ``legend`` is its legend entry (``None``: none); ``panel`` the view it is in (0, or 1 for
    the right view of a side-by-side scene); ``fit`` whether the camera frames it.
    """

    name: str
    role: Role
    region: str | None
    mesh: Any = field(repr=False)
    colour: style.Colour
    opacity: float
    representation: style.Representation = "surface"
    line_width_px: float = 1.0
    scalars: str | None = None
    colormap: str | None = None
    clim: tuple[float, float] | None = None
    colour_bar: str | None = None
    legend: str | None = None
    panel: int = 0
    fit: bool = True


def nested_opacity(name: str, shown: tuple[str, ...], *, solid: float = 1.0) -> float:
    """Opacity of ``name`` drawn with ``shown``: ``solid`` unless a region inside it is shown.

    Outer regions hide the inner ones otherwise (TC inside WT, ET inside TC).

    >>> nested_opacity("WT", ("WT", "ET")), nested_opacity("WT", ("WT",))
    (0.3, 1.0)
    >>> nested_opacity("ET", ("WT", "TC", "ET"))
    1.0
    """
    if any(inner in shown for inner in _INSIDE.get(name, ())):
        return min(solid, style.NESTED_OPACITY[name])
    return solid


def nesting_depth(name: str, shown: tuple[str, ...]) -> int:
    """How many of the ``shown`` regions lie inside ``name`` (0 for the innermost or a label).

    >>> nesting_depth("WT", ("WT", "TC", "ET")), nesting_depth("TC", ("WT", "TC"))
    (2, 0)
    """
    return sum(inner in shown for inner in _INSIDE.get(name, ()))


def _nudged(mesh: Any, offset_mm: float) -> Any:
    """A copy of ``mesh`` moved ``offset_mm`` along its outward point normals (< 0: inward)."""
    if offset_mm == 0 or mesh.n_points == 0:
        return mesh
    normals = (mesh.point_data["Normals"] if "Normals" in mesh.point_data
               else mesh.point_normals)
    out = mesh.copy(deep=True)  # a shallow copy would move the caller's (cached) points
    out.points = np.asarray(mesh.points) + offset_mm * np.asarray(normals)
    return out


def _dice_text(dice: Mapping[str, float] | None, region: str) -> str:
    value = (dice or {}).get(region)
    return "" if value is None or math.isnan(value) else f" · Dice {value:.2f}"


def scene_layers(
    truth: Mapping[str, Any] | None,
    prediction: Mapping[str, Any] | None = None,
    *,
    brain: Any | None = None,
    errors: Mapping[str, Any] | None = None,
    dice: Mapping[str, float] | None = None,
    options: SceneOptions | None = None,
) -> tuple[Layer, ...]:
    """The ordered layers of the standard comparison scene of one case.

    ``truth`` and ``prediction`` map "WT", "TC", "ET" to world-mm surfaces (either may be
    ``None``); ``brain`` is a context surface, ``errors`` ``{"FP": mesh, "FN": mesh}``,
    ``dice`` region -> Dice for the legend. Empty meshes are left out. The rules:

    - Order, which both painters keep: brain, (side by side: truth, then the prediction
      view's brain), prediction (outer regions first), truth, errors.
    - The prediction is solid in its region's colour; a region drawn with one nested inside
      it (TC in WT, ET in TC; in the truth or the prediction) is see-through
      (:func:`nested_opacity`) and nudged inwards (:data:`NESTED_OFFSET_MM`) so the inner
      region wins where their walls coincide, instead of z-fighting.
    - Truth is a wireframe cage (simplified to ``WIREFRAME_CELL_MM``) or, with
      ``truth_style="translucent"``, a see-through surface layered like the prediction: a
      truth region never looks like the solid prediction of the same region.
    - ``colour_by="signed_distance"``: the prediction carries ``signed_distance_mm`` to the
      truth of its region (computed here if missing), coloured ``DISTANCE_CMAP``; points
      with no truth surface to measure to (that region is absent from the truth) read as
      ``+distance_clim_mm``: all of it lies outside the truth. Truth is neutral grey.
    - The brain is faint and framed by the camera only with ``focus="brain"`` (or when
      there is no tumour), so by default the view fills with the tumour.

    >>> import pyvista as pv
    >>> ball = pv.Sphere(radius=8.0)
    >>> layers = scene_layers({"ET": ball}, {"ET": ball}, dice={"ET": 0.8})
    >>> [(la.name, la.representation, la.opacity, la.colour.hex) for la in layers]
    [('prediction ET', 'surface', 1.0, '#ffd700'), ('truth ET', 'wireframe', 0.55, '#ffd700')]
    >>> layers[0].legend
    'prediction ET · Dice 0.80'
    """
    from .mesh import DISTANCE_ARRAY, is_empty, signed_distance_mm, simplify

    options = options or SceneOptions()
    for key in errors or {}:
        check_choice("errors key", key, style.ERROR_COLOURS)
    shown = options.regions
    truth_all = {n: m for n, m in (truth or {}).items() if n in shown and not is_empty(m)}
    drawn_truth = truth_all if options.show_truth else {}
    drawn_pred = {n: m for n, m in (prediction or {}).items()
                  if n in shown and not is_empty(m)} if options.show_prediction else {}
    drawn_errors = {k: m for k, m in (errors or {}).items()
                    if not is_empty(m)} if options.show_errors else {}
    brain = brain if options.show_brain and not is_empty(brain) else None
    by_distance = options.colour_by == "signed_distance"
    side_by_side = options.layout == "side_by_side"
    has_tumour = bool(drawn_truth or drawn_pred or drawn_errors)
    # Nesting counts the regions drawn, not those asked for: a WT with no TC or ET in this
    # case (truth or prediction) has nothing inside it to see through to, so it stays solid.
    present = tuple(n for n in shown if n in drawn_truth or n in drawn_pred)
    clim = options.distance_clim_mm
    layers: list[Layer] = []

    def add_brain(panel: int) -> None:
        if brain is not None:
            layers.append(Layer(
                name="brain" if panel == 0 else "brain (prediction view)", role="brain",
                region=None, mesh=brain, colour=style.BRAIN_COLOUR,
                opacity=style.BRAIN_STYLE.opacity, legend="brain", panel=panel,
                fit=options.focus == "brain" or not has_tumour))

    def add_prediction(panel: int) -> None:
        for name in shown:
            mesh = drawn_pred.get(name)
            if mesh is None:
                continue
            scalars: dict[str, Any] = {}
            if by_distance:
                if DISTANCE_ARRAY not in mesh.point_data:
                    # No truth of this region: an empty reference gives NaN distances.
                    reference = truth_all.get(name, type(mesh)())
                    mesh = signed_distance_mm(mesh, reference)
                values = np.asarray(mesh.point_data[DISTANCE_ARRAY], dtype=np.float32)
                if not np.isfinite(values).all():
                    mesh = mesh.copy(deep=True)
                    mesh.point_data[DISTANCE_ARRAY] = np.where(np.isfinite(values), values,
                                                               np.float32(clim))
                first_bar = not any(la.colour_bar for la in layers)
                scalars = {"scalars": DISTANCE_ARRAY, "colormap": style.DISTANCE_CMAP,
                           "clim": (-clim, clim),
                           "colour_bar": DISTANCE_TITLE if first_bar else None}
            layers.append(Layer(
                name=f"prediction {name}", role="prediction", region=name,
                mesh=_nudged(mesh, -NESTED_OFFSET_MM * nesting_depth(name, present)),
                colour=style.REGION_COLOURS[name],
                opacity=options.prediction_opacity * nested_opacity(
                    name, present, solid=style.PREDICTION_STYLE.opacity),
                legend=f"prediction {name}{_dice_text(dice, name)}",
                panel=panel, **scalars))

    def add_truth(surface: style.SurfaceStyle, panel: int) -> None:
        for name in shown:
            mesh = drawn_truth.get(name)
            if mesh is None:
                continue
            if surface.representation == "wireframe":
                # A wireframe of 1-mm triangles is a solid smear; a coarser cage reads as one.
                mesh = simplify(mesh, cell_mm=style.WIREFRAME_CELL_MM)
                opacity = surface.opacity
            else:
                mesh = _nudged(mesh, -NESTED_OFFSET_MM * nesting_depth(name, present))
                opacity = nested_opacity(name, present, solid=surface.opacity)
            layers.append(Layer(
                name=f"truth {name}", role="truth", region=name, mesh=mesh,
                colour=style.TRUTH_NEUTRAL_COLOUR if by_distance else style.REGION_COLOURS[name],
                opacity=opacity, representation=surface.representation,
                line_width_px=surface.line_width_px,
                legend=f"truth {name}",
                panel=panel))

    def add_errors(panel: int) -> None:
        for key, mesh in drawn_errors.items():
            layers.append(Layer(
                name=key, role="error", region=None, mesh=mesh,
                colour=style.ERROR_COLOURS[key], opacity=style.ERROR_STYLE.opacity,
                legend=style.ERROR_NAMES[key], panel=panel))

    if side_by_side:
        add_brain(0)
        add_truth(style.PREDICTION_STYLE, 0)
        add_brain(1)
        add_prediction(1)
        add_errors(1)
    else:
        truth_surface = style.TRUTH_STYLES[options.truth_style]
        if options.truth_opacity is not None:
            truth_surface = style.SurfaceStyle(truth_surface.representation,
                                               options.truth_opacity,
                                               truth_surface.line_width_px)
        add_brain(0)
        add_prediction(0)
        add_truth(truth_surface, 0)
        add_errors(0)
    return tuple(layers)


def panel_titles(options: SceneOptions) -> tuple[str | None, ...]:
    """One title per view: none for an overlay, "ground truth" / "prediction" side by side.

    >>> panel_titles(SceneOptions(layout="side_by_side"))
    ('ground truth', 'prediction')
    """
    return ("ground truth", "prediction") if options.layout == "side_by_side" else (None,)


def key_text(layers: tuple[Layer, ...], options: SceneOptions) -> str | None:
    """The line that tells truth from prediction in an overlay of both, else ``None``.

    >>> key_text((), SceneOptions()) is None
    True
    """
    roles = {layer.role for layer in layers}
    if options.layout == "side_by_side" or not {"truth", "prediction"} <= roles:
        return None
    if options.colour_by == "signed_distance":
        return (f"prediction: red outside the truth, blue inside · grey {options.truth_style}:"
                " ground truth")
    return f"solid: prediction · {options.truth_style}: ground truth"


def named_layers(meshes: Mapping[str, Any]) -> tuple[Layer, ...]:
    """Layers of a named mesh set as mesh files (GLB, the meshes' HTML page) draw it.

    Names: "WT", "TC", "ET", "label_1"... (solid in their colour, an outer region
    see-through when one inside it is present), ``truth_<region>`` (the region's colour,
    translucent: a mesh file holds surfaces, not wireframes), "FP" / "FN" (error colours),
    "brain" (faint) and anything else (neutral grey, solid). Each mesh is kept as given; empty
    ones are left out.

    >>> import pyvista as pv
    >>> looks = named_layers({"WT": pv.Sphere(), "truth_ET": pv.Sphere(), "FP": pv.Sphere()})
    >>> [(la.name, la.role, la.colour.hex, la.opacity) for la in looks]
    [('WT', 'prediction', '#2eb84c', 0.3), ('truth_ET', 'truth', '#ffd700', 0.3), \
('FP', 'error', '#e61e1e', 1.0)]
    """
    from .mesh import is_empty

    parts = {n: m for n, m in meshes.items() if not is_empty(m)}
    shown = tuple(n.removeprefix(TRUTH_PREFIX) for n in parts)
    layers = []
    for name, mesh in parts.items():
        key = name.removeprefix(TRUTH_PREFIX)
        region = key if key in REGIONS else None
        role: Role = "prediction"
        if name == "brain":
            role, colour, opacity = "brain", style.BRAIN_COLOUR, style.BRAIN_STYLE.opacity
        elif name.startswith(TRUTH_PREFIX) and _has_colour(key):
            role, colour = "truth", style.region_colour(key)
            opacity = style.TRUTH_STYLES["translucent"].opacity
        elif key in style.ERROR_COLOURS:
            role, colour, opacity = "error", style.ERROR_COLOURS[key], style.ERROR_STYLE.opacity
        elif _has_colour(key):
            colour = style.region_colour(key)
            opacity = nested_opacity(key, shown, solid=style.PREDICTION_STYLE.opacity)
        else:
            colour, opacity = style.TRUTH_NEUTRAL_COLOUR, 1.0
        layers.append(Layer(name=name, role=role, region=region, mesh=mesh, colour=colour,
                            opacity=opacity, legend=name))
    return tuple(layers)


def _has_colour(name: str) -> bool:
    try:
        style.region_colour(name)
    except KeyError:
        return False
    return True
