"""2-D slice pictures: an MRI slice with its true and predicted outlines and a probability heat map.

Pure numpy and Pillow, arrays in, an ``(H, W, 3)`` uint8 image out. Axes are the slice's as
displayed (rows top to bottom, columns left to right; see
:mod:`tumorscope.core.data.slice2d`): nothing is flipped. Outlines are traced at sub-pixel
precision (``contourpy``, the mask's 0.5 level) and drawn at screen resolution, so a thumbnail
and the large view show the same line, not blocky pixel edges; the truth solid in
:data:`~tumorscope.render.style.TRUTH_OUTLINE_COLOUR`, the prediction dashed in
:data:`~tumorscope.render.style.PREDICTION_OUTLINE_COLOUR`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from . import style
from .slices import window

THUMBNAIL_PX = 260
"""Longest side of a gallery thumbnail on screen."""
LARGE_PX = 640
"""Longest side of the large view."""


def display_window(plane: np.ndarray) -> tuple[float, float]:
    """(level, width) spanning the 0.5-99.5th percentiles of the slice's nonzero pixels.

    >>> display_window(np.arange(202, dtype=float).reshape(1, -1))  # 0 is background
    (101.0, 198.0)
    """
    values = np.asarray(plane, dtype=np.float32)
    inside = values[values != 0]
    if inside.size == 0:
        inside = values.ravel()
    low, high = (float(v) for v in np.percentile(inside, [0.5, 99.5]))
    if high <= low:
        high = low + 1.0
    return (low + high) / 2.0, high - low


@lru_cache(maxsize=4)
def _lut(cmap: str) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.float32)


def paint_heat(rgb: np.ndarray, probability: np.ndarray, *, opacity: float = style.HEAT_OPACITY,
               floor: float = style.HEAT_FLOOR, cmap: str = style.PROBABILITY_CMAP) -> None:
    """Blend ``probability`` (H, W in 0..1) over ``rgb`` (float H x W x 3, in place) in
    ``cmap``; opacity grows with the probability (``opacity`` at 1), nothing below ``floor``.

    >>> rgb = np.zeros((1, 2, 3), np.float32)
    >>> paint_heat(rgb, np.array([[0.0, 1.0]]), opacity=1.0, cmap="autumn")
    >>> rgb[0, 0].tolist(), rgb[0, 1].tolist()  # 0 not drawn; 1 is autumn's yellow
    ([0.0, 0.0, 0.0], [255.0, 255.0, 0.0])
    """
    p = np.clip(np.asarray(probability, dtype=np.float32), 0.0, 1.0)
    shown = p >= floor
    if opacity <= 0 or not shown.any():
        return
    colours = _lut(cmap)[np.round(p[shown] * 255).astype(int)]
    # sqrt: a 0.5 probability is already well visible, a 0.05 one only faintly.
    alpha = (opacity * np.sqrt(p[shown]))[:, None]
    rgb[shown] = (1.0 - alpha) * rgb[shown] + alpha * colours


def outline_paths(mask: np.ndarray) -> list[np.ndarray]:
    """The outlines of a 2-D mask as closed polylines, ``(N, 2)`` (row, col) each, in pixel
    coordinates (pixel centres at integers); the boundary runs half-way between a pixel in
    and a pixel out.

    >>> m = np.zeros((5, 5), bool); m[1:3, 1:4] = True
    >>> [p.shape[1] for p in outline_paths(m)], outline_paths(m)[0].min(axis=0).tolist()
    ([2], [0.5, 0.5])
    """
    from contourpy import contour_generator

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return []
    padded = np.pad(mask.astype(np.float32), 1)  # every outline closes inside the image
    lines = contour_generator(z=padded).lines(0.5)
    return [np.column_stack([line[:, 1] - 1.0, line[:, 0] - 1.0]) for line in lines
            if len(line) >= 2]


def dash_segments(points: np.ndarray, dash: float, gap: float) -> list[np.ndarray]:
    """The pieces of polyline ``points`` (N, 2) that a ``dash``-on, ``gap``-off line draws,
    measured along its length.

    >>> line = np.array([[0.0, 0.0], [0.0, 10.0]])
    >>> [p[:, 1].tolist() for p in dash_segments(line, 3, 2)]
    [[0.0, 3.0], [5.0, 8.0], [10.0, 10.0]]
    """
    points = np.asarray(points, dtype=np.float64)
    steps = np.hypot(*np.diff(points, axis=0).T)
    along = np.concatenate([[0.0], np.cumsum(steps)])
    total = float(along[-1])
    out: list[np.ndarray] = []
    start = 0.0
    while start <= total:
        end = min(start + dash, total)
        inside = (along > start) & (along < end)
        ends = [[np.interp(t, along, points[:, 0]), np.interp(t, along, points[:, 1])]
                for t in (start, end)]
        out.append(np.vstack([ends[0], points[inside], ends[1]]))
        start += dash + gap
    return out


def draw_outline(image: Image.Image, paths: Sequence[np.ndarray], *, scale: tuple[float, float],
                 colour: style.Colour, width_px: int,
                 dash_px: tuple[int, int] | None = None) -> None:
    """Draw ``paths`` (pixel coordinates of the slice) on ``image`` (the slice resized by
    ``scale`` = (rows, cols) screen pixels per pixel): solid, or dashed by ``dash_px``."""
    draw = ImageDraw.Draw(image)
    for path in paths:
        # Pixel centre (r, c) sits at ((c + 0.5) * sx, (r + 0.5) * sy) on screen.
        screen = np.column_stack([(path[:, 1] + 0.5) * scale[1], (path[:, 0] + 0.5) * scale[0]])
        pieces = [screen] if dash_px is None else dash_segments(screen, *dash_px)
        for piece in pieces:
            draw.line([tuple(p) for p in piece.tolist()], fill=colour.rgb, width=width_px,
                      joint="curve")


def screen_size(shape: Sequence[int], display_px: int,
                spacing_mm: Sequence[float] | None = None) -> tuple[int, int]:
    """(height, width) on screen of a ``shape`` slice whose longest side is ``display_px``;
    non-square pixels (``spacing_mm``, row and column) keep their aspect.

    >>> screen_size((512, 256), 200), screen_size((100, 100), 200, (2.0, 1.0))
    ((200, 100), (200, 100))
    """
    row_mm, col_mm = (float(s) for s in spacing_mm) if spacing_mm else (1.0, 1.0)
    height, width = shape[0] * row_mm, shape[1] * col_mm
    scale = display_px / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def compose_slice(plane: np.ndarray, *, truth: np.ndarray | None = None,
                  prediction: np.ndarray | None = None, probability: np.ndarray | None = None,
                  display_px: int = THUMBNAIL_PX, spacing_mm: Sequence[float] | None = None,
                  level: float | None = None, width: float | None = None,
                  heat_opacity: float = style.HEAT_OPACITY,
                  outline_px: int = style.OUTLINE_WIDTH_PX) -> np.ndarray:
    """One slice as an ``(h, w, 3)`` uint8 image: ``plane`` (H, W) windowed to grey (its
    percentile window unless ``level``/``width`` are given), the ``probability`` heat map
    (H, W, 0..1) under the ``truth`` outline (solid) and the ``prediction`` outline
    (dashed), boolean masks on the plane's grid; any of the three may be left out.

    >>> plane = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    >>> mask = np.zeros((40, 40), bool); mask[10:30, 10:30] = True
    >>> compose_slice(plane, truth=mask, prediction=mask, display_px=80).shape
    (80, 80, 3)
    """
    plane = np.asarray(plane, dtype=np.float32)
    if level is None or width is None:
        level, width = display_window(plane)
    rgb = np.repeat(window(plane, level=level, width=width)[..., None], 3,
                    axis=2).astype(np.float32)
    if probability is not None:
        paint_heat(rgb, probability, opacity=heat_opacity)
    height, width_px = screen_size(plane.shape, display_px, spacing_mm)
    image = Image.fromarray(np.round(rgb).astype(np.uint8))
    resample = Image.BILINEAR if width_px < plane.shape[1] else Image.LANCZOS
    image = image.resize((width_px, height), resample)
    scale = (height / plane.shape[0], width_px / plane.shape[1])
    if truth is not None:
        draw_outline(image, outline_paths(truth), scale=scale, colour=style.TRUTH_OUTLINE_COLOUR,
                     width_px=outline_px)
    if prediction is not None:
        draw_outline(image, outline_paths(prediction), scale=scale,
                     colour=style.PREDICTION_OUTLINE_COLOUR, width_px=outline_px,
                     dash_px=style.PREDICTION_DASH_PX)
    return np.asarray(image)


def colour_share(pixels: np.ndarray, colour: style.Colour, *, tolerance: int = 60) -> float:
    """Share of ``pixels`` (H, W, 3) within ``tolerance`` (per channel) of ``colour``: how
    much of a picture an outline colour takes (tests read screenshots with it).

    >>> img = np.zeros((2, 2, 3), np.uint8); img[0, 0] = style.TRUTH_OUTLINE_COLOUR.rgb
    >>> colour_share(img, style.TRUTH_OUTLINE_COLOUR)
    0.25
    """
    diff = np.abs(np.asarray(pixels, dtype=np.int16)[..., :3]
                  - np.asarray(colour.rgb, dtype=np.int16))
    return float((diff <= tolerance).all(axis=-1).mean())
