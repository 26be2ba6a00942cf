"""Axial, coronal and sagittal slice images with overlays: pure numpy, RAS-ordered volumes in.

Volumes come in RAS+ index order (``data[x, y, z]``, index increasing towards the patient's
Right, Anterior, Superior; see :func:`tumorscope.core.data.geometry.to_ras`). Views follow the
radiological convention, as render's axial/coronal camera presets do:

=========  =========================  ============  ============
view       seen from                  image left    image top
=========  =========================  ============  ============
axial      the feet                   patient R     anterior
coronal    the front                  patient R     superior
sagittal   the patient's left         anterior      superior
=========  =========================  ============  ============

So in every view both image axes run from high index to low; :data:`EDGE_LETTERS` names the
four edges and :func:`render_view` prints them on the image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tumorscope.core.data.labels import region_mask

from . import style
from .overlay_codes import (  # noqa: F401  (the viewer's names for them)
    AB_OVERLAYS,
    OVERLAYS,
    Overlay,
    OverlayStyle,
    overlay_codes,
    paint_codes,
)

View = Literal["axial", "coronal", "sagittal"]
VIEWS: tuple[View, ...] = ("axial", "coronal", "sagittal")

# slice axis, row axis, column axis (RAS index axes) of each view.
VIEW_AXES: dict[View, tuple[int, int, int]] = {
    "axial": (2, 1, 0), "coronal": (1, 2, 0), "sagittal": (0, 2, 1)}
AXIS_OF_VIEW: dict[View, int] = {v: axes[0] for v, axes in VIEW_AXES.items()}

EDGE_LETTERS: dict[View, tuple[str, str, str, str]] = {
    "axial": ("R", "L", "A", "P"),      # left, right, top, bottom
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}


CROSSHAIR_ALPHA = 0.55
DISPLAY_PX = 480
"""Longest side of the volume's field of view on screen, in pixels (all views share px/mm)."""
LARGE_DISPLAY_PX = 900
"""The same for the one-large-view layout."""
ZOOMS: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
"""Zoom factors offered; at 8x a 240 mm field of view shows 30 mm, a few BraTS voxels wide
per screen centimetre."""

HeatKind = Literal["probability", "variance"]


@dataclass(frozen=True)
class Viewport:
    """The part of a view's display-oriented plane on screen: ``rows`` x ``cols`` voxels
    from (``row0``, ``col0``) (see :func:`slice_2d` for the plane's orientation)."""

    row0: int
    col0: int
    rows: int
    cols: int


@dataclass(frozen=True)
class HeatLayer:
    """A map drawn as heat over the slices: a region's probability (0..1), or the variance
    of the mirrored TTA passes' probabilities (0..0.25), both ``(X, Y, Z)`` RAS arrays."""

    volume: np.ndarray
    kind: HeatKind = "probability"

    def plane(self, view: View, index: int) -> np.ndarray:
        """The slice as heat in 0..1: probabilities as they are; variance as twice its
        standard deviation, so 1 means half the passes said 0 and half said 1.

        >>> HeatLayer(np.full((2, 2, 2), 0.25, np.float32), "variance").plane("axial", 0)
        array([[1., 1.],
               [1., 1.]], dtype=float32)
        """
        values = slice_2d(self.volume, view, index).astype(np.float32)
        if self.kind == "variance":
            values = np.minimum(1.0, 2.0 * np.sqrt(np.maximum(values, 0.0)))
        return values


def slice_2d(volume: np.ndarray, view: View, index: int) -> np.ndarray:
    """The ``(rows, cols)`` plane of a RAS ``(X, Y, Z)`` volume at ``index``, display-oriented.

    >>> v = np.arange(24).reshape(2, 3, 4)
    >>> slice_2d(v, "axial", 0).shape, slice_2d(v, "coronal", 0).shape
    ((3, 2), (4, 2))
    >>> int(slice_2d(v, "axial", 0)[0, 0]) == int(v[1, 2, 0])  # top-left: right, anterior
    True
    """
    axis, row_axis, col_axis = VIEW_AXES[view]
    # Basic indexing: a view. np.take copies the whole volume first when it is not
    # C-contiguous (nibabel's arrays are Fortran-ordered): ~20 ms a call on a BraTS case.
    plane = volume[(slice(None),) * axis + (int(index),)]
    rest = [a for a in range(3) if a != axis]
    plane = plane.transpose(rest.index(row_axis), rest.index(col_axis))[::-1, ::-1]
    plane.flags.writeable = False  # a view of the caller's (often cached) volume
    return plane


def display_position(shape: Sequence[int], view: View, xyz: Sequence[int]) -> tuple[int, int]:
    """(row, col) in the view's plane of the voxel ``xyz`` (RAS indices): where the crosshair is.

    >>> display_position((10, 20, 30), "axial", (0, 0, 5))
    (19, 9)
    """
    _, row_axis, col_axis = VIEW_AXES[view]
    return (shape[row_axis] - 1 - int(xyz[row_axis]), shape[col_axis] - 1 - int(xyz[col_axis]))


def full_viewport(shape: Sequence[int], view: View) -> Viewport:
    """The whole plane of ``view``."""
    _, row_axis, col_axis = VIEW_AXES[view]
    return Viewport(0, 0, int(shape[row_axis]), int(shape[col_axis]))


def viewport(shape: Sequence[int], view: View, xyz: Sequence[int],
             zoom: float = 1.0) -> Viewport:
    """What ``view`` shows at ``zoom``: 1/zoom of the plane each way, centred on the
    crosshair ``xyz`` as far as the plane's edges allow (so the crosshair is always in it).

    >>> viewport((10, 20, 30), "axial", (0, 0, 5), zoom=2.0)  # crosshair at row 19, col 9
    Viewport(row0=10, col0=5, rows=10, cols=5)
    """
    full = full_viewport(shape, view)
    rows = min(full.rows, max(1, round(full.rows / max(float(zoom), 1.0))))
    cols = min(full.cols, max(1, round(full.cols / max(float(zoom), 1.0))))
    row, col = display_position(shape, view, xyz)
    return Viewport(min(max(row - rows // 2, 0), full.rows - rows),
                    min(max(col - cols // 2, 0), full.cols - cols), rows, cols)


def voxel_at(shape: Sequence[int], view: View, xyz: Sequence[int], *, row_frac: float,
             col_frac: float, port: Viewport | None = None) -> tuple[int, int, int]:
    """The crosshair voxel after a click at (``row_frac``, ``col_frac``) of ``view``'s image.

    Fractions run 0..1 from the image's top-left corner, over ``port`` (default: the whole
    plane); the view's own slice index stays, the other two move to the voxel under the
    click (the inverse of :func:`display_position`).

    >>> voxel_at((10, 20, 30), "axial", (4, 4, 5), row_frac=0.0, col_frac=0.99)
    (0, 19, 5)
    >>> display_position((10, 20, 30), "axial", (0, 19, 5))
    (0, 9)
    >>> voxel_at((10, 20, 30), "axial", (4, 4, 5), row_frac=0.0, col_frac=0.0,
    ...          port=Viewport(10, 5, 10, 5))
    (4, 9, 5)
    """
    _, row_axis, col_axis = VIEW_AXES[view]
    port = port or full_viewport(shape, view)
    rows, cols = int(shape[row_axis]), int(shape[col_axis])
    row = min(rows - 1, max(0, port.row0 + int(row_frac * port.rows)))
    col = min(cols - 1, max(0, port.col0 + int(col_frac * port.cols)))
    moved = [int(v) for v in xyz]
    moved[row_axis], moved[col_axis] = rows - 1 - row, cols - 1 - col
    return moved[0], moved[1], moved[2]


def point_at(shape: Sequence[int], view: View, xyz: Sequence[int], *, row_frac: float,
             col_frac: float, port: Viewport | None = None) -> tuple[float, float, float]:
    """Like :func:`voxel_at` but continuous: the RAS index position (voxel centres at whole
    numbers) under the click, for measuring between clicks to a fraction of a voxel.

    >>> point_at((10, 20, 30), "axial", (4, 4, 5), row_frac=0.5, col_frac=0.25)
    (7.0, 9.5, 5.0)
    """
    _, row_axis, col_axis = VIEW_AXES[view]
    port = port or full_viewport(shape, view)
    row = port.row0 + float(row_frac) * port.rows - 0.5
    col = port.col0 + float(col_frac) * port.cols - 0.5
    point = [float(v) for v in xyz]
    point[row_axis] = int(shape[row_axis]) - 1 - row
    point[col_axis] = int(shape[col_axis]) - 1 - col
    return point[0], point[1], point[2]


def distance_mm(affine: np.ndarray, a: Sequence[float], b: Sequence[float]) -> float:
    """World distance in mm between two voxel positions of the grid ``affine`` maps.

    >>> distance_mm(np.diag([0.5, 2.0, 3.0, 1.0]), (0, 0, 0), (4, 0, 1))
    3.605551275463989
    """
    step = np.asarray(affine, dtype=np.float64)[:3, :3] @ (np.asarray(b, float)
                                                           - np.asarray(a, float))
    return float(np.linalg.norm(step))


def window(plane: np.ndarray, *, level: float, width: float) -> np.ndarray:
    """Map intensities to 0..255 grey: ``level`` is the centre, ``width`` the range shown.

    >>> window(np.array([0.0, 50.0, 100.0]), level=50.0, width=100.0).tolist()
    [0, 128, 255]
    """
    width = max(float(width), 1e-6)
    scaled = (np.asarray(plane, dtype=np.float32) - (level - width / 2.0)) / width
    return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the small bitmap font
        return ImageFont.load_default()


def pixel_size_mm(spacing_mm: Sequence[float], view: View) -> tuple[float, float]:
    """(row height, column width) of one voxel of ``view`` in mm."""
    _, row_axis, col_axis = VIEW_AXES[view]
    return float(spacing_mm[row_axis]), float(spacing_mm[col_axis])


def px_per_mm(shape: Sequence[int], spacing_mm: Sequence[float],
              display_px: int = DISPLAY_PX) -> float:
    """Screen scale shared by the three views, so one millimetre is as long in each."""
    extent = max(n * s for n, s in zip(shape, spacing_mm, strict=True))
    return display_px / extent


def render_view(
    image: np.ndarray,
    view: View,
    xyz: Sequence[int],
    *,
    spacing_mm: Sequence[float],
    level: float,
    width: float,
    truth: np.ndarray | None = None,
    prediction: np.ndarray | None = None,
    prediction_b: np.ndarray | None = None,
    overlay: Overlay = "prediction",
    overlay_style: OverlayStyle = "filled",
    alpha: float = style.OVERLAY_OPACITY,
    region: str = "WT",
    crosshair: bool = True,
    display_px: int = DISPLAY_PX,
    zoom: float = 1.0,
    heat: HeatLayer | None = None,
    probability: np.ndarray | None = None,
    threshold: float = 0.5,
    measure: Sequence[Sequence[float]] = (),
    measure_text: str = "",
) -> np.ndarray:
    """One view as an ``(H, W, 3)`` uint8 image: windowed MRI, overlay, crosshair, R/L letters.

    ``image``, ``truth`` and ``prediction`` are RAS ``(X, Y, Z)`` arrays on one grid (labels
    canonical); ``xyz`` the crosshair voxel (its ``view`` axis picks the slice). Overlays:
    "prediction" / "truth" labels in ``overlay_style``; "both" truth boundaries (neutral
    colour) over the filled prediction; "disagreement" FP red / FN blue of ``region``;
    "ab_outlines" / "ab_disagreement" compare ``prediction`` (run A) with ``prediction_b``
    (run B, the same grid; :func:`paint_ab`); "none". Overlays needing the truth fall back
    to the prediction alone when ``truth`` is ``None``, the A/B ones when ``prediction_b``
    is. Pixels are resized so that every view has the same mm per pixel, with
    ``display_px`` for the longest extent of the whole volume at ``zoom`` 1.

    At ``zoom`` > 1 the view shows :func:`viewport`'s part of the plane, enlarged.
    With a ``heat`` layer the overlay gives way to the 2-D track's picture
    (:func:`tumorscope.render.slices2d.compose_slice`): the heat map under the ``region``
    truth outline (solid) and, with ``probability`` (that region's, ``(X, Y, Z)``), the
    outline of ``probability > threshold`` (dashed), as the prediction thresholds it.
    ``measure`` is up to two RAS index positions, drawn (the two joined by a line labelled
    ``measure_text``) when all lie in this slice.

    >>> img = np.random.default_rng(0).random((20, 24, 16)).astype(np.float32)
    >>> render_view(img, "axial", (10, 12, 8), spacing_mm=(1, 1, 1), level=0.5, width=1.0,
    ...             display_px=48).shape
    (48, 40, 3)
    >>> render_view(img, "axial", (10, 12, 8), spacing_mm=(1, 1, 1), level=0.5, width=1.0,
    ...             display_px=48, zoom=2.0).shape
    (48, 40, 3)
    """
    index = int(xyz[AXIS_OF_VIEW[view]])
    port = viewport(image.shape, view, xyz, zoom)
    crop = (slice(port.row0, port.row0 + port.rows), slice(port.col0, port.col0 + port.cols))

    def plane(volume: np.ndarray | None, *, whole: bool = False) -> np.ndarray | None:
        if volume is None:
            return None
        return slice_2d(volume, view, index) if whole else slice_2d(volume, view, index)[crop]

    true = plane(truth)
    # Every zoom fills the picture of the whole plane: the view keeps its size on screen
    # (a window of whole voxels is stretched by less than a voxel to fit).
    size = view_size(image.shape, spacing_mm, view, display_px)
    if heat is not None:
        out = _heat_picture(plane(image), heat.plane(view, index)[crop], size=size,
                            level=level, width=width,
                            truth=None if true is None else region_mask(true, region),
                            above=None if probability is None else plane(probability) > threshold)
    else:
        rgb = np.repeat(window(plane(image), level=level, width=width)[..., None],
                        3, axis=2).astype(np.float32)
        # Outlines traced on the whole plane, then cut: where a zoomed view's edge cuts a
        # region, that is not the region's boundary (and the browser's canvas, which traces
        # whole volumes, agrees).
        coded = overlay_codes(plane(prediction, whole=True), plane(truth, whole=True),
                              plane(prediction_b, whole=True), overlay=overlay,
                              overlay_style=overlay_style, alpha=alpha, region=region)
        paint_codes(rgb, replace(coded, codes=coded.codes[crop]))
        out = _resize(rgb.astype(np.uint8), size)
    if crosshair:
        _draw_crosshair(out, view, image.shape, xyz, port)
    marks = _measure_on_slice(measure, view, index, image.shape)
    if marks is not None:
        out = _draw_measure(out, marks, measure_text, port)
    return _draw_letters(out, EDGE_LETTERS[view], size_px=max(12, display_px // 24))


def view_size(shape: Sequence[int], spacing_mm: Sequence[float], view: View,
              display_px: int = DISPLAY_PX) -> tuple[int, int]:
    """(height, width) in pixels of ``view``'s picture: the whole plane at the mm per pixel
    the three views share (:func:`px_per_mm`).

    >>> view_size((20, 24, 16), (1.0, 1.0, 2.0), "coronal", display_px=48)  # 32 x 20 mm
    (48, 30)
    """
    scale = px_per_mm(shape, spacing_mm, display_px)
    full = full_viewport(shape, view)
    row_mm, col_mm = pixel_size_mm(spacing_mm, view)
    return (max(1, round(full.rows * row_mm * scale)), max(1, round(full.cols * col_mm * scale)))


def _heat_picture(plane: np.ndarray, heat: np.ndarray, *, size: tuple[int, int],
                  level: float, width: float, truth: np.ndarray | None,
                  above: np.ndarray | None) -> np.ndarray:
    # Imported here: slices2d builds on this module's window(), so it loads after this one.
    from .slices2d import compose_slice

    # compose_slice sizes by the longest side and the pixels' aspect: give it the aspect
    # that makes exactly ``size``.
    aspect = (size[0] / plane.shape[0], size[1] / plane.shape[1])
    return np.array(compose_slice(plane, truth=truth, prediction=above, probability=heat,
                                  display_px=max(size), spacing_mm=aspect, level=level,
                                  width=width))


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # Nearest keeps label edges and outlines crisp when enlarging; bilinear when shrinking.
    resample = Image.NEAREST if size[1] >= rgb.shape[1] else Image.BILINEAR
    return np.array(Image.fromarray(rgb).resize((size[1], size[0]), resample))


def screen_xy(rgb_shape: Sequence[int], port: Viewport, row: float,
              col: float) -> tuple[float, float]:
    """Screen (x, y) in pixels of the plane position (``row``, ``col``) (voxel centres at
    whole numbers) in a picture of ``port`` that is ``rgb_shape`` (H, W) large.

    >>> screen_xy((100, 50), Viewport(10, 0, 10, 5), 10.0, 0.0)
    (5.0, 5.0)
    """
    return ((col - port.col0 + 0.5) * rgb_shape[1] / port.cols,
            (row - port.row0 + 0.5) * rgb_shape[0] / port.rows)


def _draw_crosshair(rgb: np.ndarray, view: View, shape: Sequence[int],
                    xyz: Sequence[int], port: Viewport) -> None:
    row, col = display_position(shape, view, xyz)
    x, y = screen_xy(rgb.shape, port, row, col)
    r, c = min(rgb.shape[0] - 1, max(0, int(y))), min(rgb.shape[1] - 1, max(0, int(x)))
    colour = np.asarray(style.CROSSHAIR_COLOUR.rgb, dtype=np.float32)
    for line in (rgb[r, :], rgb[:, c]):
        line[:] = ((1 - CROSSHAIR_ALPHA) * line + CROSSHAIR_ALPHA * colour).astype(np.uint8)


def _measure_on_slice(measure: Sequence[Sequence[float]], view: View, index: int,
                      shape: Sequence[int]) -> tuple[tuple[float, float], ...] | None:
    """The measured points as plane (row, col) when all lie in this slice, else ``None``."""
    if not measure:
        return None
    axis, row_axis, col_axis = VIEW_AXES[view]
    if any(abs(float(p[axis]) - index) > 0.5 for p in measure):
        return None
    return tuple((shape[row_axis] - 1 - float(p[row_axis]),
                  shape[col_axis] - 1 - float(p[col_axis])) for p in measure)


def _draw_measure(rgb: np.ndarray, marks: tuple[tuple[float, float], ...], text: str,
                  port: Viewport) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(image)
    points = [screen_xy(rgb.shape, port, row, col) for row, col in marks]
    halo, colour = (0, 0, 0), style.MEASURE_COLOUR.rgb
    if len(points) > 1:
        draw.line(points, fill=halo, width=4)
        draw.line(points, fill=colour, width=2)
    for x, y in points:
        draw.ellipse((x - 4, y - 4, x + 4, y + 4), outline=halo, width=4)
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), outline=colour, width=2)
    if text:
        x, y = points[-1]
        draw.text((x + 8, y - 8), text, fill=colour, font=_font(14), anchor="lb",
                  stroke_width=2, stroke_fill=halo)
    return np.asarray(image)


def _draw_letters(rgb: np.ndarray, letters: tuple[str, str, str, str], *,
                  size_px: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(image)
    font = _font(size_px)
    h, w = rgb.shape[:2]
    pad = 4
    spots = {
        letters[0]: (pad, h / 2, "lm"), letters[1]: (w - pad, h / 2, "rm"),
        letters[2]: (w / 2, pad, "mt"), letters[3]: (w / 2, h - pad, "mb"),
    }
    for text, (x, y, anchor) in spots.items():
        draw.text((x, y), text, fill=(255, 255, 255), font=font, anchor=anchor,
                  stroke_width=2, stroke_fill=(0, 0, 0))
    return np.asarray(image)


def heat_ramp_hex(n: int = 5) -> list[str]:
    """``n`` colours along the heat colormap, low to high, as hex (a legend's ramp).

    >>> heat_ramp_hex(2)  # autumn: red to yellow
    ['#ff0000', '#ffff00']
    """
    from matplotlib import colormaps

    ramp = colormaps[style.PROBABILITY_CMAP](np.linspace(0.0, 1.0, n))[:, :3]
    return [style.Colour(tuple(int(round(c * 255)) for c in rgb)).hex for rgb in ramp]


def largest_slices(mask: np.ndarray) -> tuple[int, int, int] | None:
    """RAS indices (x, y, z) of the sagittal, coronal and axial slice with the most tumour.

    ``None`` when the mask is empty.

    >>> m = np.zeros((10, 10, 10), bool); m[2:5, 6, 1:9] = True; m[3, 2:8, 4] = True
    >>> largest_slices(m)
    (3, 6, 4)
    """
    if not mask.any():
        return None
    return tuple(int(np.argmax(mask.sum(axis=tuple(a for a in range(3) if a != axis))))
                 for axis in range(3))


def centre(shape: Sequence[int]) -> tuple[int, int, int]:
    """The middle voxel of a volume."""
    return tuple(int(n) // 2 for n in shape)


def combine_views(images: Mapping[View, np.ndarray], *, gap_px: int = 8) -> np.ndarray:
    """The views side by side on one dark strip (for the slices PNG download)."""
    height = max(im.shape[0] for im in images.values())
    strip = []
    for im in images.values():
        pad = np.zeros((height - im.shape[0], im.shape[1], 3), np.uint8)
        strip += [np.vstack([im, pad]), np.zeros((height, gap_px, 3), np.uint8)]
    return np.hstack(strip[:-1])
