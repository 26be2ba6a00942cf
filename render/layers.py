"""A 3-D comparison scene described once: its options and the ordered layers both painters draw."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
Role = Literal["truth", "prediction", "brain", "error", "lesion", "crosshair"]
LesionStatus = Literal["TP", "FN", "FP", "ignored"]
LESION_STATUSES: tuple[str, ...] = get_args(LesionStatus)

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

SHARED_WALL_MM: float = 1.0
"""Faces of a surface whose corners all lie this close to a region drawn inside it are left
out. ET is the rim of TC, so their surfaces coincide over much of the tumour; smoothed apart
by up to a voxel, they cross each other there and z-fight in stripes (VTK and WebGL alike,
whatever small nudge one gets). Drawing only the inner one where they meet cannot fight."""

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
class LesionMarker:
    """One lesion of a lesion-wise scoring, marked in the scene at its centroid.

    ``centroid_mm`` is world RAS+ mm (as ``lesions.csv`` stores it); ``status`` TP, FN, FP or
    ignored; ``lesion`` its id in the scoring (a ground-truth lesion, or the predicted
    component of an FP); ``dice`` and ``hd95_mm`` its scores (``None`` when not given).

    >>> m = LesionMarker(scoring="brats2023", region="WT", lesion=3, status="FN",
    ...                  centroid_mm=(10.0, -4.5, 20.0), volume_ml=0.42, dice=0.0)
    >>> m.key, m.hover
    ('brats2023:WT:FN:3', 'WT lesion 3 · FN · 0.42 mL · Dice 0.00')
    """

    scoring: str
    region: str
    lesion: int
    status: LesionStatus
    centroid_mm: tuple[float, float, float]
    volume_ml: float
    dice: float | None = None
    hd95_mm: float | None = None

    def __post_init__(self) -> None:
        check_choice("lesion status", self.status, LESION_STATUSES)
        check_choice("lesion region", self.region, REGIONS)
        centroid = tuple(float(v) for v in self.centroid_mm)
        if len(centroid) != 3 or not all(math.isfinite(v) for v in centroid):
            raise ConfigError(f"centroid_mm must be three finite numbers (x, y, z mm), "
                              f"got {self.centroid_mm!r}")
        object.__setattr__(self, "centroid_mm", centroid)

    @property
    def key(self) -> str:
        """``scoring:region:status:id``: one lesion of one case, as pages remember it."""
        return f"{self.scoring}:{self.region}:{self.status}:{self.lesion}"

    @property
    def hover(self) -> str:
        """What a pointer over its marker reads: id, status, volume, Dice."""
        dice = "" if self.dice is None or math.isnan(self.dice) else f" · Dice {self.dice:.2f}"
        return (f"{self.region} lesion {self.lesion} · {self.status} · "
                f"{self.volume_ml:.2f} mL{dice}")


def _check_point(option: str, value: object) -> tuple[float, float, float] | None:
    if value is None:
        return None
    try:
        point = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        point = ()
    if len(point) != 3 or not all(math.isfinite(v) for v in point):
        raise ConfigError(f"{option} must be three finite numbers (x, y, z mm) or None, "
                          f"got {value!r}")
    return point  # type: ignore[return-value]


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
    tumour, or the whole brain) aim the view; ``target_mm`` (a world point, e.g. a lesion's
    centroid) overrides the focus: the camera then looks at it along ``camera``, framing a
    ball of ``target_radius_mm``. ``show_lesions`` marks the lesions given to
    :func:`scene_layers` whose status is in ``lesion_statuses``; ``selected_lesion`` (a
    :attr:`LesionMarker.key`) rings that one. ``crosshair_mm`` (world mm, the slice
    viewer's crosshair) is marked by three short cyan arms. ``title``, ``legend`` and
    ``window_size`` (pixels, the PNG's) finish it. A/B views of two runs pass
    ``prediction_name`` (the legend's word for the solid surfaces, e.g. "A and B agree")
    and ``run_names`` (the legend of the "A_only" / "B_only" difference surfaces).

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
    target_mm: tuple[float, float, float] | None = None
    target_radius_mm: float = 20.0
    show_lesions: bool = True
    lesion_statuses: tuple[str, ...] = ("FN", "FP")
    selected_lesion: str | None = None
    crosshair_mm: tuple[float, float, float] | None = None
    distance_clim_mm: float = style.DISTANCE_CLIM_MM
    title: str | None = None
    legend: bool = True
    window_size: tuple[int, int] = (1024, 768)
    prediction_name: str = "prediction"
    run_names: tuple[str, str] | None = None

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
        object.__setattr__(self, "target_mm", _check_point("target_mm", self.target_mm))
        object.__setattr__(self, "crosshair_mm",
                           _check_point("crosshair_mm", self.crosshair_mm))
        radius = self.target_radius_mm
        if isinstance(radius, bool) or not isinstance(radius, int | float) \
                or not (math.isfinite(radius) and radius > 0):
            raise ConfigError(f"target_radius_mm must be > 0, got {radius}")
        statuses = ((self.lesion_statuses,) if isinstance(self.lesion_statuses, str)
                    else tuple(self.lesion_statuses))
        for status in statuses:
            check_choice("lesion status", status, LESION_STATUSES)
        object.__setattr__(self, "lesion_statuses",
                           tuple(s for s in LESION_STATUSES if s in statuses))
        if self.selected_lesion is not None and not isinstance(self.selected_lesion, str):
            raise ConfigError(f"selected_lesion must be a lesion key or None, "
                              f"got {self.selected_lesion!r}")
        for flag in ("show_truth", "show_prediction", "show_brain", "show_errors",
                     "show_lesions", "legend"):
            if not isinstance(getattr(self, flag), bool | np.bool_):
                raise ConfigError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
            object.__setattr__(self, flag, bool(getattr(self, flag)))
        if self.title is not None and not isinstance(self.title, str):
            raise ConfigError(f"title must be text, got {self.title!r}")
        if not isinstance(self.prediction_name, str) or not self.prediction_name:
            raise ConfigError(f"prediction_name must be text, got {self.prediction_name!r}")
        if self.run_names is not None:
            names = tuple(self.run_names)
            if len(names) != 2 or not all(isinstance(n, str) and n for n in names):
                raise ConfigError(f"run_names must be two names (run A, run B), got "
                                  f"{self.run_names!r}")
            object.__setattr__(self, "run_names", names)

    def error_legend(self, key: str) -> str:
        """Legend of an error or difference surface: "false positive", "only in run A
        (model_a)".

        >>> SceneOptions(run_names=("m1", "m2")).error_legend("B_only")
        'only in run B (m2)'
        """
        name = style.ERROR_NAMES[key]
        if self.run_names is not None and key in ("A_only", "B_only"):
            name += f" ({self.run_names[0] if key == 'A_only' else self.run_names[1]})"
        return name


@dataclass(frozen=True, kw_only=True, eq=False)
class Layer:
    """One surface of a scene as every painter draws it.

    ``mesh`` is the world-mm surface exactly as drawn (a wireframe already simplified, a
    nested surface already nudged, distances already on it); ``colour`` applies unless
    ``scalars`` names a point array coloured by ``colormap`` (a matplotlib name) over
    ``clim``. ``representation`` is "surface", "wireframe" (edges only, ``line_width_px``)
    or "points" (one marker per point of ``mesh``, ``point_size_px`` wide, plotly's
    ``symbol``, with ``hover`` text and ``ids`` (what a click on it picks: lesion keys) per
    point: lesion centroids). A "wireframe" mesh of line cells draws those lines (the
    crosshair's arms). ``label`` is a text pinned
    to the first point and drawn over everything, so a point inside a solid surface is
    still found (the chosen lesion).
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
    point_size_px: float = style.LESION_MARKER_PX
    symbol: str | None = None
    hover: tuple[str, ...] | None = None
    ids: tuple[str, ...] | None = None
    label: str | None = None
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


def without_shared_walls(mesh: Any, inner: Sequence[Any], *,
                         within_mm: float = SHARED_WALL_MM) -> Any:
    """``mesh`` less the faces whose corners all lie within ``within_mm`` of a vertex of an
    ``inner`` surface (where that one is drawn in its own colour); ``mesh`` itself when none
    does. The points the kept faces use stay where they are, with their point arrays. When
    every face is shared, the whole of ``mesh`` moved ``within_mm`` inwards instead.

    >>> import pyvista as pv
    >>> cap = pv.Sphere(radius=10.0).clip("z", value=5.0, invert=False)  # the top of it
    >>> kept = without_shared_walls(pv.Sphere(radius=10.0), [cap])
    >>> kept.n_cells < pv.Sphere(radius=10.0).n_cells, bool(kept.bounds[5] < 6.0)
    (True, True)
    """
    import pyvista as pv
    from scipy.spatial import cKDTree

    from .mesh import as_triangles, is_empty

    others = [np.asarray(m.points, dtype=float) for m in inner if not is_empty(m)]
    if not others or is_empty(mesh):
        return mesh
    surface = as_triangles(mesh)
    points = np.asarray(surface.points, dtype=float)
    near = cKDTree(np.concatenate(others)).query(points, distance_upper_bound=within_mm)[0]
    faces = surface.regular_faces.reshape(-1, 3)
    shared = (near[faces] <= within_mm).all(axis=1)
    if not shared.any():
        return mesh
    kept = faces[~shared]
    if not len(kept):
        # All of its wall is the inner one's: drawn whole a voxel behind it, so it still
        # shows when the inner region is hidden (a legend click) and never fights it.
        normals = (surface.point_data["Normals"] if "Normals" in surface.point_data
                   else surface.point_normals)
        behind = surface.copy(deep=True)  # never move the caller's (cached) points
        behind.points = points - within_mm * np.asarray(normals)
        return behind
    # Only the points the kept faces use (WebGL picking misreads a mesh with spare ones),
    # each with its point arrays.
    used, index = np.unique(kept, return_inverse=True)
    out = pv.PolyData(points[used], faces=np.column_stack(
        [np.full(len(kept), 3), index.reshape(kept.shape)]).ravel())
    for name in surface.point_data:
        out.point_data[name] = np.asarray(surface.point_data[name])[used]
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
    lesions: Sequence[LesionMarker] | None = None,
    options: SceneOptions | None = None,
) -> tuple[Layer, ...]:
    """The ordered layers of the standard comparison scene of one case.

    ``truth`` and ``prediction`` map "WT", "TC", "ET" to world-mm surfaces (either may be
    ``None``); ``brain`` is a context surface, ``errors`` ``{"FP": mesh, "FN": mesh}`` (or
    two runs' ``{"A_only": mesh, "B_only": mesh}``),
    ``dice`` region -> Dice for the legend, ``lesions`` the case's lesions of one
    lesion-wise scoring. Empty meshes are left out. The rules:

    - Order, which both painters keep: brain, (side by side: truth, then the prediction
      view's brain), prediction (outer regions first), truth, errors, lesion markers.
    - Lesions of the shown regions whose status is in ``options.lesion_statuses`` are one
      marker layer per status (``lesions FN``, ``lesions FP``: its colour and symbol, hover
      text per lesion), the largest :data:`~tumorscope.render.style.MAX_LESION_MARKERS`
      of each; ``options.selected_lesion`` adds a ring around that one (``selected
      lesion``). Markers never move the camera's framing; side by side, FP markers are in
      the prediction view and the others in the truth view.
    - The prediction is solid in its region's colour; a region drawn with one nested inside
      it (TC in WT, ET in TC; in the truth or the prediction) is see-through
      (:func:`nested_opacity`), and where their walls coincide only the inner one is drawn
      (:func:`without_shared_walls`), so they never z-fight.
    - Truth is a wireframe cage (simplified to ``WIREFRAME_CELL_MM``) or, with
      ``truth_style="translucent"``, a see-through surface layered like the prediction, in
      its region's paler ``TRUTH_COLOURS``: a truth region never looks like the solid
      prediction of the same region.
    - ``options.crosshair_mm`` adds the ``crosshair`` (in each view side by side): the
      three axis-aligned cyan lines where the slice viewer's planes cross, across all that
      is drawn (so they stick out of a solid tumour that would hide a point), never framed
      by the camera.
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
    [('prediction ET', 'surface', 1.0, '#ffd700'), ('truth ET', 'wireframe', 0.55, '#ffeb80')]
    >>> layers[0].legend
    'prediction ET · Dice 0.80'
    >>> miss = LesionMarker(scoring="brats2023", region="ET", lesion=2, status="FN",
    ...                     centroid_mm=(30.0, 0.0, 0.0), volume_ml=0.1, dice=0.0)
    >>> marks = scene_layers(None, None, lesions=[miss])
    >>> [(la.name, la.representation, la.colour.hex, la.hover, la.fit) for la in marks]
    [('lesions FN', 'points', '#1e64f0', ('ET lesion 2 · FN · 0.10 mL · Dice 0.00',), False)]
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

    def inside(name: str, drawn: Mapping[str, Any]) -> list[Any]:
        return [drawn[n] for n in _INSIDE.get(name, ()) if n in drawn]
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
            mesh = without_shared_walls(mesh, inside(name, drawn_pred))
            layers.append(Layer(
                name=f"prediction {name}", role="prediction", region=name, mesh=mesh,
                colour=style.REGION_COLOURS[name],
                opacity=options.prediction_opacity * nested_opacity(
                    name, present, solid=style.PREDICTION_STYLE.opacity),
                legend=f"{options.prediction_name} {name}{_dice_text(dice, name)}",
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
                mesh = without_shared_walls(mesh, inside(name, drawn_truth))
                opacity = nested_opacity(name, present, solid=surface.opacity)
            layers.append(Layer(
                name=f"truth {name}", role="truth", region=name, mesh=mesh,
                colour=style.TRUTH_NEUTRAL_COLOUR if by_distance else style.TRUTH_COLOURS[name],
                opacity=opacity, representation=surface.representation,
                line_width_px=surface.line_width_px,
                legend=f"truth {name}",
                panel=panel))

    def add_errors(panel: int) -> None:
        for key, mesh in drawn_errors.items():
            layers.append(Layer(
                name=key, role="error", region=None, mesh=mesh,
                colour=style.ERROR_COLOURS[key], opacity=style.ERROR_STYLE.opacity,
                legend=options.error_legend(key), panel=panel))

    def add_lesions(side_by_side: bool) -> None:
        import pyvista as pv

        marked = [m for m in lesions or () if m.region in shown] if options.show_lesions \
            else []
        for status in options.lesion_statuses:
            mine = sorted((m for m in marked if m.status == status),
                          key=lambda m: -m.volume_ml)
            if not mine:
                continue
            drawn = mine[:style.MAX_LESION_MARKERS]
            more = (f", largest {len(drawn)} shown" if len(drawn) < len(mine) else "")
            layers.append(Layer(
                name=f"lesions {status}", role="lesion", region=None,
                mesh=pv.PolyData(np.array([m.centroid_mm for m in drawn], dtype=float)),
                colour=style.LESION_STATUS_COLOURS[status], opacity=1.0,
                representation="points", symbol=style.LESION_MARKER_SYMBOLS[status],
                hover=tuple(m.hover for m in drawn), ids=tuple(m.key for m in drawn),
                legend=f"{style.LESION_STATUS_NAMES[status]} · {len(mine)}{more}",
                panel=1 if side_by_side and status == "FP" else 0, fit=False))
        chosen = [m for m in lesions or () if m.key == options.selected_lesion]
        if chosen and options.show_lesions:
            (m,) = chosen[:1]
            layers.append(Layer(
                name="selected lesion", role="lesion", region=None,
                mesh=pv.PolyData(np.array([m.centroid_mm], dtype=float)),
                colour=style.SELECTED_LESION_COLOUR, opacity=1.0, representation="points",
                point_size_px=style.SELECTED_LESION_PX, symbol="circle-open",
                hover=(f"selected: {m.hover}",), ids=(m.key,),
                label=f"{m.region} lesion {m.lesion} ({m.status})",
                legend=f"selected: {m.region} lesion {m.lesion} ({m.status})",
                panel=1 if side_by_side and m.status == "FP" else 0, fit=False))

    def add_crosshair(panel: int) -> None:
        if options.crosshair_mm is not None:
            x, y, z = options.crosshair_mm
            drawn = [la.mesh for la in layers if la.role != "lesion"]
            layers.append(Layer(
                name="crosshair" if panel == 0 else "crosshair (prediction view)",
                role="crosshair", region=None,
                mesh=crosshair_mesh(options.crosshair_mm, across=drawn),
                colour=style.CROSSHAIR_COLOUR, opacity=1.0, representation="wireframe",
                line_width_px=style.CROSSHAIR_LINE_PX,
                legend=f"slice crosshair ({x:.0f}, {y:.0f}, {z:.0f}) mm" if panel == 0
                else None, panel=panel, fit=False))

    if side_by_side:
        add_brain(0)
        add_truth(style.PREDICTION_STYLE, 0)
        add_brain(1)
        add_prediction(1)
        add_errors(1)
        add_lesions(True)
        add_crosshair(0)
        add_crosshair(1)
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
        add_lesions(False)
        add_crosshair(0)
    return tuple(layers)


def crosshair_mesh(point_mm: Sequence[float], *, across: Sequence[Any] = (),
                   arm_mm: float = style.CROSSHAIR_ARM_MM) -> Any:
    """Three axis-aligned line segments crossing at ``point_mm``: across the box of the
    ``across`` meshes and ``arm_mm`` beyond it (and at least ``arm_mm`` each way).

    >>> import pyvista as pv
    >>> arms = crosshair_mesh((1.0, 2.0, 3.0), arm_mm=5.0)
    >>> arms.n_lines, arms.bounds[:2]
    (3, (-4.0, 6.0))
    >>> crosshair_mesh((0, 0, 0), across=[pv.Cube(x_length=40.0)], arm_mm=5.0).bounds[:2]
    (-25.0, 25.0)
    """
    import pyvista as pv

    from .mesh import is_empty

    centre = np.asarray(point_mm, dtype=float)
    low, high = centre - arm_mm, centre + arm_mm
    for mesh in across:
        if not is_empty(mesh):
            box = np.asarray(mesh.bounds, dtype=float).reshape(3, 2)
            low, high = np.minimum(low, box[:, 0] - arm_mm), np.maximum(high, box[:, 1] + arm_mm)
    ends = np.repeat(centre[None], 6, axis=0)
    for axis in range(3):
        ends[axis, axis], ends[axis + 3, axis] = low[axis], high[axis]
    return pv.PolyData(ends, lines=np.array([[2, i, i + 3] for i in range(3)]).ravel())


def target_box(options: SceneOptions) -> np.ndarray | None:
    """(3, 2) world-mm box the camera frames when ``options.target_mm`` is set, else ``None``.

    >>> target_box(SceneOptions(target_mm=(10, 0, 0), target_radius_mm=5)).tolist()
    [[5.0, 15.0], [-5.0, 5.0], [-5.0, 5.0]]
    """
    if options.target_mm is None:
        return None
    centre = np.asarray(options.target_mm, dtype=float)[:, None]
    return centre + np.array([[-1.0, 1.0]]) * options.target_radius_mm


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
    return f"solid: {options.prediction_name} · {options.truth_style}: ground truth"


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
    [('WT', 'prediction', '#2eb84c', 0.3), ('truth_ET', 'truth', '#ffeb80', 0.3), \
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
            role, colour = "truth", style.tint(style.region_colour(key), style.TRUTH_TINT)
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


PICK_OPACITY: float = 0.5
"""A click goes through surfaces fainter than this (the brain, an outer region seen through)
to the first one at least this opaque behind them: what the eye sees there."""


def _ray_distances(mesh: Any, origin: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Distances along the unit ``direction`` from ``origin`` at which the ray crosses the
    triangles of ``mesh`` (Moller-Trumbore, all triangles at once)."""
    from .mesh import as_triangles

    surface = as_triangles(mesh)
    corners = np.asarray(surface.points, dtype=float)[surface.regular_faces.reshape(-1, 3)]
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    p = np.cross(direction, e2)
    det = np.einsum("ij,ij->i", e1, p)
    usable = np.abs(det) > 1e-12
    inv = np.divide(1.0, det, out=np.zeros_like(det), where=usable)
    s = origin - corners[:, 0]
    u = np.einsum("ij,ij->i", s, p) * inv
    q = np.cross(s, e1)
    v = (q @ direction) * inv
    t = np.einsum("ij,ij->i", e2, q) * inv
    hit = usable & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
    return t[hit]


def picked_point(layers: Sequence[Layer], eye_mm: Sequence[float],
                 through_mm: Sequence[float]) -> tuple[str, tuple[float, float, float]] | None:
    """What a click sees: along the ray from ``eye_mm`` through ``through_mm`` (world mm), the
    first tumour or error surface at least :data:`PICK_OPACITY` opaque, else the first one of
    any opacity, else ``None``; returns (layer name, world point). The brain and lines (truth
    cages, the crosshair) are looked through.

    >>> import pyvista as pv
    >>> ball = Layer(name="prediction ET", role="prediction", region="ET", opacity=1.0,
    ...              mesh=pv.Sphere(radius=10.0), colour=style.REGION_COLOURS["ET"])
    >>> name, point = picked_point([ball], (0.0, 0.0, 100.0), (0.0, 0.0, 50.0))
    >>> name, round(point[2], 1)
    ('prediction ET', 10.0)
    >>> picked_point([ball], (30.0, 0.0, 100.0), (30.0, 0.0, 50.0)) is None
    True
    """
    from .mesh import is_empty

    origin = np.asarray(eye_mm, dtype=float)
    direction = np.asarray(through_mm, dtype=float) - origin
    if not np.linalg.norm(direction) > 0:
        return None
    direction /= np.linalg.norm(direction)
    hits = []
    for layer in layers:
        if layer.role not in ("prediction", "truth", "error") \
                or layer.representation != "surface" or is_empty(layer.mesh):
            continue
        distances = _ray_distances(layer.mesh, origin, direction)
        if distances.size:
            hits.append((float(distances.min()), layer.opacity >= PICK_OPACITY, layer.name))
    if not hits:
        return None
    opaque = [h for h in hits if h[1]]
    distance, _, name = min(opaque or hits)
    return name, tuple(float(v) for v in origin + distance * direction)  # type: ignore[return-value]
