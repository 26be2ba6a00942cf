"""Colours, opacities and surface styles of regions, labels and errors: the one home for them.

Plain data only (frozen dataclasses of 0-255 RGB tuples and hex strings, dicts, a colormap
name), so the Streamlit pages' 2-D overlays and the 3-D scenes draw the same tumour in the
same colours. Nothing here imports VTK; the rules that combine these into a 3-D scene are
in :mod:`tumorscope.render.layers`.

>>> REGION_COLOURS["ET"].hex
'#ffd700'
>>> LABEL_COLOURS[2].rgb
(46, 184, 76)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Colour:
    """An sRGB colour, 0-255 per channel; ``hex`` and ``rgb_float`` are derived views.

    >>> Colour((255, 0, 0)).hex
    '#ff0000'
    >>> Colour((255, 0, 0)).rgb_float
    (1.0, 0.0, 0.0)
    """

    rgb: tuple[int, int, int]

    def __post_init__(self) -> None:
        if len(self.rgb) != 3 or any(not 0 <= int(c) <= 255 for c in self.rgb):
            raise ValueError(f"colour must be three integers in 0..255, got {self.rgb!r}")

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)

    @property
    def rgb_float(self) -> tuple[float, float, float]:
        return tuple(c / 255.0 for c in self.rgb)


Representation = Literal["surface", "wireframe", "points"]


@dataclass(frozen=True)
class SurfaceStyle:
    """How a surface is drawn, independent of its colour.

    ``representation`` "surface" is solid, "wireframe" shows the triangle edges only,
    "points" draws each point as a marker (lesion centroids); ``opacity`` is in 0..1;
    ``line_width_px`` matters for wireframes.
    """

    representation: Representation = "surface"
    opacity: float = 1.0
    line_width_px: float = 1.0


# Regions follow the usual BraTS figure colours: edema/whole tumour green, core red,
# enhancing yellow, so the nested surfaces read from outside (green) to inside (yellow).
REGION_COLOURS: dict[str, Colour] = {
    "WT": Colour((46, 184, 76)),
    "TC": Colour((220, 38, 38)),
    "ET": Colour((255, 215, 0)),
}

# Raw canonical labels (0 background is never drawn). Label 1 is a darker red than TC so a
# label view and a region view side by side are not mistaken for one another.
LABEL_COLOURS: dict[int, Colour] = {
    1: Colour((200, 60, 50)),
    2: Colour((46, 184, 76)),
    4: Colour((255, 215, 0)),
}

# Voxel errors of a prediction against the truth. Red/blue match the ends of the diverging
# distance colormap below (red = too much, blue = too little).
# Voxels where two runs' predictions differ (the A/B views): orange and violet, off the
# region, error, truth and crosshair colours, so "where they disagree" is never read as an
# error against the truth.
ERROR_COLOURS: dict[str, Colour] = {
    "FP": Colour((230, 30, 30)),
    "FN": Colour((30, 100, 240)),
    "A_only": Colour((255, 140, 0)),
    "B_only": Colour((180, 90, 255)),
}
ERROR_NAMES: dict[str, str] = {"FP": "false positive", "FN": "false negative",
                               "A_only": "only in run A", "B_only": "only in run B"}
RUN_COLOURS: dict[str, Colour] = {"A": ERROR_COLOURS["A_only"], "B": ERROR_COLOURS["B_only"]}
"""Outline colour of run A's and run B's prediction in the A/B slice views."""

DISTANCE_CMAP: str = "RdBu_r"
"""Matplotlib colormap for ``signed_distance_mm``: blue < 0 (inside truth), red > 0 (outside)."""

DISTANCE_CLIM_MM: float = 5.0
"""Default symmetric colour range of signed distances, +-5 mm (a few BraTS voxels)."""

TRUTH_STYLES: dict[str, SurfaceStyle] = {
    "wireframe": SurfaceStyle("wireframe", opacity=0.55, line_width_px=1.0),
    "translucent": SurfaceStyle("surface", opacity=0.3),
}
"""Ground truth is drawn see-through so the solid prediction inside it stays visible: a
wireframe cage by default (it cannot be mistaken for the solid prediction), or translucent
(and so in mesh files, which hold surfaces only)."""

def tint(colour: Colour, share: float) -> Colour:
    """``colour`` mixed with white, ``share`` of the way (0: itself, 1: white).

    >>> tint(Colour((0, 100, 200)), 0.5).rgb
    (128, 178, 228)
    """
    return Colour(tuple(round(c + (255 - c) * share) for c in colour.rgb))  # type: ignore[arg-type]


TRUTH_TINT: float = 0.5
"""Ground truth takes its region's hue paled halfway to white: the same region reads as one
family, yet a truth cage never has the colour of the solid prediction beside it."""
TRUTH_COLOURS: dict[str, Colour] = {name: tint(c, TRUTH_TINT) for name, c in REGION_COLOURS.items()}
"""Colour of each region's ground truth (cage or translucent surface), in every painter."""

TRUTH_NEUTRAL_COLOUR: Colour = Colour((225, 225, 230))
"""Truth colour when the prediction is coloured by distance, so region hues do not compete."""

WIREFRAME_CELL_MM: float = 3.0
"""Wireframes are drawn simplified to about one vertex per 3 mm, so the cage stays readable."""

PREDICTION_STYLE: SurfaceStyle = SurfaceStyle("surface", opacity=1.0)
ERROR_STYLE: SurfaceStyle = SurfaceStyle("surface", opacity=1.0)

BRAIN_COLOUR: Colour = Colour((200, 200, 205))
BRAIN_STYLE: SurfaceStyle = SurfaceStyle("surface", opacity=0.12)

BACKGROUND_COLOUR: Colour = Colour((28, 30, 36))
LEGEND_COLOUR: Colour = Colour((44, 47, 56))
TEXT_COLOUR: Colour = Colour((235, 235, 235))

CROSSHAIR_COLOUR: Colour = Colour((0, 230, 230))
"""Cyan slice-viewer crosshair: no region, label or error colour here is near it."""
MEASURE_COLOUR: Colour = Colour((255, 255, 255))
"""The slice viewer's distance line, white on a black halo: off the label, error, outline
and red-to-yellow heat colours, and readable on bright tissue and on black alike."""
CROSSHAIR_ARM_MM: float = 12.0
"""The 3-D scenes mark the slice crosshair with three axis-aligned arms this long each way
from its point: they stick out of a solid tumour that would hide a single marker."""
CROSSHAIR_LINE_PX: float = 4.0

# Charts of the cohort page (plotly, light theme).
REFERENCE_LINE_COLOUR: Colour = Colour((136, 136, 136))
"""Grey of reference lines and summary curves: the identity line, the mean Dice."""
LOSS_COLOUR: Colour = Colour((91, 141, 239))
"""Training-loss curve: a blue apart from the region colours."""
MARKER_EDGE_COLOUR: Colour = Colour((51, 51, 51))
"""Thin dark outline of scatter markers, so yellow ET points read on white."""

# Lesions of a lesion-wise scoring (lesions.csv): missed and false-positive lesions take the
# voxel errors' red and blue, so "too much" and "too little" read alike in every view.
LESION_STATUS_COLOURS: dict[str, Colour] = {
    "TP": Colour((60, 170, 95)),
    "FN": ERROR_COLOURS["FN"],
    "FP": ERROR_COLOURS["FP"],
    "ignored": Colour((150, 150, 155)),
}
LESION_STATUS_NAMES: dict[str, str] = {
    "TP": "matched lesion (TP)", "FN": "missed lesion (FN)", "FP": "false-positive lesion (FP)",
    "ignored": "lesion below the volume threshold (not counted)",
}
LESION_MARKER_SYMBOLS: dict[str, str] = {"TP": "circle", "FN": "diamond", "FP": "square",
                                         "ignored": "circle"}
"""Plotly marker symbols per status (VTK draws every marker as a sphere, told by colour)."""
LESION_MARKER_PX: float = 7.0
"""Marker size of a lesion centroid in the 3-D scene, in pixels."""
MARKER_OUTLINE_COLOUR: Colour = Colour((255, 255, 255))
"""Outline of lesion markers, so a red marker on a red core surface still reads."""
SELECTED_LESION_COLOUR: Colour = CROSSHAIR_COLOUR
"""The chosen lesion is ringed in the slice crosshair's cyan: the crosshair is on it too."""
SELECTED_LESION_PX: float = 16.0
MAX_LESION_MARKERS: int = 250
"""Markers per status drawn at most (the largest lesions): an untrained net's noise can make
thousands of false-positive specks, which would bury the scene and slow the page."""

OVERLAY_OPACITY: float = 0.45
"""Default opacity (0-1) of label colours filled over a 2-D MRI slice."""

# 2-D slice track (figshare, LGG, BraTS slices): truth and prediction are both outlines over
# the image, so they are told apart twice: by hue (green against magenta, opposite on the
# colour wheel and apart for red-green colour blindness too) and by line (solid against
# dashed). Neither hue is on the probability heat map's red-yellow ramp.
TRUTH_OUTLINE_COLOUR: Colour = Colour((0, 230, 64))
"""Ground-truth outline on a 2-D slice: solid green."""
PREDICTION_OUTLINE_COLOUR: Colour = Colour((255, 0, 220))
"""Predicted outline on a 2-D slice: dashed magenta."""
OUTLINE_WIDTH_PX: int = 2
"""Width of both outlines on screen; the large view doubles it."""
PREDICTION_DASH_PX: tuple[int, int] = (8, 5)
"""Dash and gap of the predicted outline along its length, in screen pixels."""
PROBABILITY_CMAP: str = "autumn"
"""Matplotlib colormap of the probability heat overlay: red (low) to yellow (1), saturated
throughout, so it reads as heat on bright tissue where a black-to-white map would vanish."""
HEAT_OPACITY: float = 0.6
"""Opacity of the heat overlay where the probability is 1 (it fades towards 0)."""
HEAT_FLOOR: float = 0.02
"""Probabilities below this are not drawn: the heat map shows where the model looks."""
TUMOUR_TYPE_COLOURS: dict[str, Colour] = {
    "meningioma": Colour((0, 114, 178)),
    "glioma": Colour((213, 94, 0)),
    "pituitary": Colour((0, 158, 115)),
}
"""Tumour types in the 2-D cohort charts (Okabe-Ito: told apart with any colour vision)."""
CONFUSION_COLOURSCALE: str = "Blues"
"""Plotly colour scale of the confusion-matrix heatmap (counts, white = none)."""
TYPE_SCORE_COLOURS: dict[str, Colour] = {
    "accuracy": Colour((123, 50, 148)),
    "macro_f1": Colour((230, 97, 1)),
}
"""Training curves of the tumour-type scores (the colours of render.curves' PNG)."""


NESTED_OPACITY: dict[str, float] = {"WT": 0.3, "TC": 0.5, "ET": 1.0}
"""Opacity of a region drawn together with a region nested inside it (ET in TC in WT); the
rule that applies it is :func:`tumorscope.render.layers.nested_opacity`."""


def region_colour(name: str) -> Colour:
    """Colour of a region ("WT", "TC", "ET"), a raw label key ("label_1"...) or "FP"/"FN".

    >>> region_colour("label_4") == LABEL_COLOURS[4]
    True
    """
    if name in REGION_COLOURS:
        return REGION_COLOURS[name]
    if name in ERROR_COLOURS:
        return ERROR_COLOURS[name]
    if name.startswith("label_") and name[6:].isdigit() and int(name[6:]) in LABEL_COLOURS:
        return LABEL_COLOURS[int(name[6:])]
    allowed = [*REGION_COLOURS, *ERROR_COLOURS, *(f"label_{v}" for v in LABEL_COLOURS)]
    raise KeyError(f"no colour for {name!r}; expected one of {allowed}")
