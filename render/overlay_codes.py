"""Slice overlays as a code map and a palette: the one description that the server's slice
pictures and the browser's slice canvas both draw.

Every overlay of the slice viewer paints masks over the windowed grey image, each in one
colour at one opacity, a later one over an earlier. Within an overlay the translucent
masks never overlap (labels, FP/FN, A/B parts are disjoint) and what is painted over them
is opaque (outlines), so a pixel's colour depends on the last mask that holds it alone.
:func:`overlay_codes` records that last mask as a small integer per voxel and the palette
its colour and opacity; :func:`paint_codes` paints it. The same function runs on a 2-D
plane (the server's picture) and on a whole 3-D volume with the view's in-plane axes (the
browser's canvas, which then needs no server round trip to step through slices).

>>> label = np.zeros((4, 4), np.uint8); label[1:3, 1:3] = 2
>>> coded = overlay_codes(label, None, overlay="prediction", overlay_style="filled",
...                       alpha=0.5, region="WT")
>>> int(coded.codes.max()), coded.palette[coded.codes[1, 1] - 1][1]
(1, 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tumorscope.core.data.labels import region_mask

from . import style

Overlay = Literal["prediction", "truth", "both", "disagreement", "ab_outlines",
                  "ab_disagreement", "none"]
OVERLAYS: tuple[Overlay, ...] = ("prediction", "truth", "both", "disagreement", "ab_outlines",
                                 "ab_disagreement", "none")
AB_OVERLAYS: tuple[Overlay, ...] = ("ab_outlines", "ab_disagreement")
"""Overlays of two runs' predictions (A = ``prediction``, B = ``prediction_b``)."""
OverlayStyle = Literal["outline", "filled"]

PaletteEntry = tuple[tuple[int, int, int], float]


@dataclass(frozen=True)
class CodedOverlay:
    """``codes`` (uint8, the labels' shape): 0 where nothing is painted, else k, painted in
    ``palette[k - 1]`` = ((r, g, b), opacity). ``per_plane``: outlines were traced within
    the plane's axes, so a volume's codes hold for the view they were traced for only."""

    codes: np.ndarray
    palette: tuple[PaletteEntry, ...]
    per_plane: bool


def edges(label: np.ndarray, axes: Sequence[int] = (0, 1)) -> np.ndarray:
    """Boolean outline within the plane of ``axes``: nonzero voxels with a neighbour of
    another value along one of those axes (beyond the array's border counts as the same).

    Works on label maps (boundaries between labels count) and on boolean masks alike; on a
    3-D volume it traces every plane of a view at once.

    >>> m = np.zeros((5, 5), int); m[1:4, 1:4] = 2
    >>> int(edges(m).sum()), bool(edges(m)[2, 2])
    (8, False)
    >>> int(edges(np.stack([m, m, m]), axes=(1, 2)).sum())  # three planes of 8
    24
    """
    label = np.asarray(label)
    differs = np.zeros(label.shape, bool)
    for axis in axes:
        n = label.shape[axis]
        if n < 2:
            continue
        lo = [slice(None)] * label.ndim
        hi = [slice(None)] * label.ndim
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        step = label[tuple(lo)] != label[tuple(hi)]
        differs[tuple(lo)] |= step
        differs[tuple(hi)] |= step
    return (label != 0) & differs


class _Codes:
    def __init__(self, shape: tuple[int, ...], axes: Sequence[int]) -> None:
        self.codes = np.zeros(shape, np.uint8)
        self.palette: list[PaletteEntry] = []
        self.axes, self.per_plane = tuple(axes), False

    def add(self, mask: np.ndarray, colour: style.Colour, alpha: float) -> None:
        if alpha <= 0 or not mask.any():
            return
        # What lets one code per voxel stand for the painting: a translucent mask never
        # lies over an earlier one (only opaque outlines paint over).
        assert alpha >= 1.0 or not self.codes[mask].any(), "translucent masks overlap"
        self.palette.append((tuple(int(c) for c in colour.rgb), float(alpha)))  # type: ignore[arg-type]
        self.codes[mask] = len(self.palette)

    def outline(self, mask: np.ndarray, colour: style.Colour) -> None:
        # Outlines are opaque: one pixel wide, any translucency would make them vanish.
        self.per_plane = True
        self.add(edges(mask, self.axes), colour, 1.0)

    def labels(self, label: np.ndarray, mode: OverlayStyle, alpha: float) -> None:
        """Canonical labels (1, 2, 4) in render.style's label colours, filled or outlined."""
        outline = edges(label, self.axes) if mode == "outline" else None
        if outline is not None:
            self.per_plane = True
        for value, colour in style.LABEL_COLOURS.items():
            mask = label == value
            if outline is not None:
                self.add(mask & outline, colour, 1.0)
            else:
                self.add(mask, colour, alpha)

    def done(self) -> CodedOverlay:
        return CodedOverlay(self.codes, tuple(self.palette), self.per_plane)


def overlay_codes(
    prediction: np.ndarray | None,
    truth: np.ndarray | None,
    prediction_b: np.ndarray | None = None,
    *,
    overlay: Overlay,
    overlay_style: OverlayStyle,
    alpha: float,
    region: str,
    axes: Sequence[int] = (0, 1),
) -> CodedOverlay:
    """The overlay over canonical label arrays (planes, or volumes with the view's in-plane
    ``axes``). "prediction" / "truth" labels in ``overlay_style``; "both" the truth's
    boundaries (neutral colour) over the filled prediction; "disagreement" FP red / FN blue
    of ``region``; "ab_outlines" / "ab_disagreement" run A (``prediction``) against run B
    (``prediction_b``): A's and B's outlines (B drawn last), or where both predict the region
    in its colour (half as opaque), only A orange and only B violet (more opaque,
    ``1 - (1 - alpha)^2``: they are what this overlay is for), both with the truth's outline;
    "none". Overlays needing the truth fall back to the prediction alone when ``truth`` is
    ``None``, the A/B ones when ``prediction_b`` is.
    """
    present = next((a for a in (prediction, truth, prediction_b) if a is not None), None)
    out = _Codes(np.shape(present) if present is not None else (1, 1), axes)
    pred, true, pred_b = prediction, truth, prediction_b
    if overlay in AB_OVERLAYS:
        if pred is not None and pred_b is not None:
            _ab(out, pred, pred_b, true, overlay=overlay, mode=overlay_style, alpha=alpha,
                region=region)
            return out.done()
        overlay = "prediction"
    if true is None and overlay in ("truth", "both", "disagreement"):
        overlay = "prediction"
    if overlay == "prediction" and pred is not None:
        out.labels(pred, overlay_style, alpha)
    elif overlay == "truth" and true is not None:
        out.labels(true, overlay_style, alpha)
    elif overlay == "both" and pred is not None and true is not None:
        out.labels(pred, "filled", alpha)
        # Truth boundaries in render's neutral truth colour: label-coloured outlines would
        # vanish into a fill of the same colour exactly where the two agree.
        out.outline(true, style.TRUTH_NEUTRAL_COLOUR)
    elif overlay == "disagreement" and pred is not None and true is not None:
        in_pred, in_true = region_mask(pred, region), region_mask(true, region)
        for key, mask in (("FP", in_pred & ~in_true), ("FN", in_true & ~in_pred)):
            if overlay_style == "outline":
                out.outline(mask, style.ERROR_COLOURS[key])
            else:
                out.add(mask, style.ERROR_COLOURS[key], alpha)
    return out.done()


def _ab(out: _Codes, a: np.ndarray, b: np.ndarray, truth: np.ndarray | None, *,
        overlay: Overlay, mode: OverlayStyle, alpha: float, region: str) -> None:
    in_a, in_b = region_mask(a, region), region_mask(b, region)
    if overlay == "ab_outlines":
        out.outline(in_a, style.RUN_COLOURS["A"])
        out.outline(in_b, style.RUN_COLOURS["B"])
    else:
        strong = 1.0 - (1.0 - alpha) ** 2
        parts = (((in_a & in_b), style.REGION_COLOURS[region], alpha / 2),
                 ((in_a & ~in_b), style.ERROR_COLOURS["A_only"], strong),
                 ((in_b & ~in_a), style.ERROR_COLOURS["B_only"], strong))
        for mask, colour, opacity in parts:
            if mode == "outline":
                out.outline(mask, colour)
            else:
                out.add(mask, colour, opacity)
    if truth is not None:
        out.outline(region_mask(truth, region), style.TRUTH_NEUTRAL_COLOUR)


def paint_codes(rgb: np.ndarray, coded: CodedOverlay) -> None:
    """Alpha-blend each code's colour over ``rgb`` (float, ``codes.shape`` x 3, in place)."""
    for k, (colour, alpha) in enumerate(coded.palette, start=1):
        mask = coded.codes == k
        if mask.any():
            rgb[mask] = (1.0 - alpha) * rgb[mask] + alpha * np.asarray(colour, np.float32)
