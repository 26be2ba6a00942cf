"""A synthetic figshare-format dataset: meningiomas, gliomas and pituitary tumours in ICBM152.

Each synthetic patient is the ICBM152 template that ships with nilearn (the 3-D demo's,
loaded by :mod:`tumorscope.core.data.synthetic`), scaled and turned a little, given a head
around the skull-stripped brain (CSF, dura, skull with marrow, scalp with fat) and the
sellar region (gland, cavernous sinuses, sphenoid sinus, clivus), and one tumour of a type
in its typical place and look on T1-weighted contrast-enhanced MRI:

- **meningioma** (1): extra-axial, on the dura of the convexity, the falx or the sphenoid
  wing, a smooth dome with a broad base on the inner table, enhancing brightly and evenly,
  with a dural tail and a CSF cleft; it pushes the brain away.
- **glioma** (2): intra-axial, started in deep white matter, irregular; mostly a thick
  irregular enhancing ring around a dark necrotic core inside hypointense edema, a quarter
  non-enhancing (hypointense, faint patches).
- **pituitary** (3): a macroadenoma in the sella, in the midline, growing up out of it
  (suprasellar extension, a waist at the diaphragm), enhancing moderately, some with a cyst.

Slices are 512 x 512 int16 (0.49 mm pixels, 6 mm thick with 1 mm gaps), axial, coronal or
sagittal in radiological display (the patient's right on the image's left; anterior up in
axial, superior up otherwise; the face on the left in sagittal), several per patient, all
through the tumour. The outline is drawn around the tumour as a hand would (a polygon of
points a few pixels apart) and the mask filled from it, as in the release.
:func:`make_figshare_demo` writes them as the release's ``<n>.mat`` (MATLAB v7.3), with a
patient-wise 5-fold ``cvind.mat`` and the synthetic marker ``tumorscope_cohort.json``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from contourpy import contour_generator
from PIL import Image, ImageDraw
from scipy import ndimage as ndi
from tqdm import tqdm

from tumorscope.core.data import figshare
from tumorscope.core.data.cases import COHORT_FILE
from tumorscope.core.data.nifti import atomic_write_text
from tumorscope.core.data.patient_splits import split_patients
from tumorscope.core.data.synthetic import GENERATOR, _template
from tumorscope.core.errors import ConfigError, TumorscopeError

log = logging.getLogger(__name__)

SIZE = 512
"""Rows and columns of every slice."""
PIXEL_MM = 0.49
"""Pixel size of every slice (the release's, about 0.49 mm)."""
SLICE_GAP_MM = 7.0
"""Distance between neighbouring slices of one plane: 6 mm thick, 1 mm gap."""
NOTE = "synthetic tumours in ICBM152 anatomy, not patient data"
MAX_PATIENTS = 9999
N_FOLDS = 5
PID_PREFIX = "TS2D_"
Plane = Literal["axial", "coronal", "sagittal"]
PLANES: tuple[Plane, ...] = ("axial", "coronal", "sagittal")

_GRID = SIZE // 2  # pixels are computed on a half-resolution grid (~1 mm, the template's)
_GRID_MM = PIXEL_MM * SIZE / _GRID
_TYPE_BLOCK = (1, 1, 2, 2, 2, 2, 2, 3, 3, 3)  # figshare's mix: 23 % M, 47 % G, 30 % P
_PLANE_ODDS = {1: (0.45, 0.30, 0.25), 2: (0.45, 0.30, 0.25), 3: (0.10, 0.50, 0.40)}
# Scanner axes in template (RAS) mm per plane: column direction, row direction, normal.
_AXES = {
    "axial": ((-1.0, 0, 0), (0, -1.0, 0), (0, 0, 1.0)),
    "coronal": ((-1.0, 0, 0), (0, 0, -1.0), (0, 1.0, 0)),
    "sagittal": ((0, -1.0, 0), (0, 0, -1.0), (1.0, 0, 0)),
}
_SELLA_MNI = np.array([0.0, -3.0, -31.0])  # the sella turcica, seen on the template
_MNI_TO_VOXEL = np.array([98.0, 134.0, 72.0])  # the template's affine: voxel = MNI + this
_WM_LEVEL = 0.8706  # the template T1's white-matter level (median where WM p > 0.9)
_BRAIN_T1 = 0.055  # template T1 above this is brain (its brain voxels are >= 28/255)
_SLICE_FILE_RE = re.compile(r"^\d+\.mat$")


@dataclass(frozen=True)
class PatientPlan:
    """What a synthetic patient is, drawn without rendering: its id, tumour type, and the
    plane of each of its slices (their file numbers start at ``first_number``)."""

    index: int
    pid: str
    tumour_type: int
    planes: tuple[Plane, ...]
    first_number: int

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(range(self.first_number, self.first_number + len(self.planes)))


@dataclass(frozen=True)
class RenderedSlice:
    """One slice as written, with what tests need to see where things are.

    image : (512, 512) int16;  mask : (512, 512) bool, filled from ``border_xy``
    border_xy : (N, 2) float64 outline, MATLAB x (column) and y (row), 1-based
    outline : (512, 512) bool, inside the brain's outer surface (undisplaced, sulci closed):
        an intra-axial tumour lies inside it, an extra-axial one reaches beyond it
    tumour_mm : the tumour's centre, MNI mm (x right, y anterior, z superior)
    """

    number: int
    pid: str
    tumour_type: int
    plane: Plane
    image: np.ndarray
    mask: np.ndarray
    border_xy: np.ndarray
    outline: np.ndarray
    tumour_mm: tuple[float, float, float]


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    # (seed, patient, purpose) streams; the trailing 2 keeps them apart from the 3-D demo's.
    return np.random.default_rng(np.random.SeedSequence(entropy=seed,
                                                        spawn_key=(index, stream, 2)))


def plan_patients(n_patients: int, *, seed: int = 0) -> list[PatientPlan]:
    """The plan of each patient; patient ``i`` depends only on ``(seed, i)``.

    Types are dealt from shuffled blocks of ten (two meningiomas, five gliomas, three
    pituitary tumours: the release's mix); each patient has 4-9 slices in one or two planes.

    >>> plans = plan_patients(10)
    >>> sorted(p.tumour_type for p in plans)
    [1, 1, 2, 2, 2, 2, 2, 3, 3, 3]
    >>> plans[0].pid, plans[0].first_number, plans[1].first_number == 1 + len(plans[0].planes)
    ('TS2D_0000', 1, True)
    """
    plans = []
    number = 1
    for i in range(n_patients):
        order = _rng(seed, i // len(_TYPE_BLOCK), 1000).permutation(len(_TYPE_BLOCK))
        kind = _TYPE_BLOCK[int(order[i % len(_TYPE_BLOCK)])]
        rng = _rng(seed, i, 0)
        n = int(rng.integers(4, 10))
        chosen = rng.choice(3, size=2, replace=False, p=_PLANE_ODDS[kind])
        two = rng.random() < 0.4 and n >= 6
        first = int(n * rng.uniform(0.4, 0.6)) if two else n
        planes = tuple(PLANES[int(chosen[0])] for _ in range(first)) + \
            tuple(PLANES[int(chosen[1])] for _ in range(n - first))
        plans.append(PatientPlan(i, f"{PID_PREFIX}{i:04d}", kind, planes, number))
        number += n
    return plans


# ---------------------------------------------------------------- geometry of one patient

@dataclass(frozen=True)
class _Noise:
    """A smooth random field around ``centre`` (template mm), about unit variance."""

    grid: np.ndarray
    centre: np.ndarray
    span_mm: float

    @staticmethod
    def draw(rng: np.random.Generator, centre: np.ndarray, span_mm: float, n: int = 10
             ) -> _Noise:
        field = ndi.gaussian_filter(rng.standard_normal((n, n, n)), 1.2, mode="wrap")
        return _Noise((field / field.std()).astype(np.float32), centre, span_mm)

    def at(self, q: np.ndarray) -> np.ndarray:
        n = self.grid.shape[0]
        idx = ((q - self.centre) / (2 * self.span_mm) + 0.5) * (n - 1)
        return ndi.map_coordinates(self.grid, idx.T, order=1, mode="nearest")


@dataclass(frozen=True)
class _Ellipsoid:
    centre: np.ndarray
    radii: np.ndarray

    def level(self, q: np.ndarray) -> np.ndarray:
        """< 1 inside."""
        return np.sqrt((((q - self.centre) / self.radii) ** 2).sum(-1))


@dataclass(frozen=True)
class _Tumour:
    kind: int
    centre: np.ndarray  # template voxel mm
    radius_mm: float
    shape: _Noise
    texture: _Noise
    lobes: tuple[_Ellipsoid, ...]  # pituitary: sellar and suprasellar parts
    core_ratio: float  # glioma necrosis radius / tumour radius (0: none)
    edema_ratio: float
    irregularity: float
    brightness: float
    core_level: float
    cyst: _Ellipsoid | None
    push_mm: float  # mass effect: brain next to the tumour comes from this much deeper
    push_centre: np.ndarray

    @property
    def reach_mm(self) -> float:
        """Half the side of the box around ``centre`` outside which nothing of the tumour
        shows: not its edema, dural tail or mass effect."""
        return self.radius_mm * 3.5 + 6.0

    def level(self, q: np.ndarray) -> np.ndarray:
        """Signed tumour level: < 0 inside, about (distance / radius) outside."""
        if self.lobes:
            a, b = (lobe.level(q) for lobe in self.lobes)
            k = 0.25  # smooth union with a waist
            h = np.clip(0.5 + 0.5 * (b - a) / k, 0, 1)
            return (b * (1 - h) + a * h - k * h * (1 - h)) * (1 + 0.06 * self.shape.at(q)) - 1
        r = np.sqrt(((q - self.centre) ** 2).sum(-1))
        return r / (self.radius_mm * (1 + self.irregularity * self.shape.at(q))) - 1


@dataclass(frozen=True)
class _Patient:
    plan: PatientPlan
    inverse: np.ndarray  # scanner mm -> template mm (3 x 3)
    centre: np.ndarray  # template voxel the scanner origin sits at
    shift_mm: np.ndarray  # field-of-view centre offset in scanner mm
    tumour: _Tumour
    sella: np.ndarray
    csf_mm: float
    skull_mm: float
    scalp_mm: float
    marrow: float
    gamma: float
    gain: float
    noise: float
    bias: np.ndarray
    side: float


def _rotation(angles: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _surface_point(brain: np.ndarray, start: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The last brain voxel on the ray from ``start`` along ``direction`` (template voxels)."""
    steps = np.arange(0, 140, 0.5)[:, None]
    pts = start + steps * direction
    inside = ndi.map_coordinates(brain, pts.T, order=0, mode="constant", cval=0) > 0
    last = np.nonzero(inside)[0]
    return pts[last.max()] if last.size else start


def _meningioma_site(rng: np.random.Generator, side: float) -> np.ndarray:
    """A direction from the brain's centre to where a meningioma sits on the dura."""
    site = rng.choice(4, p=(0.45, 0.25, 0.2, 0.1))
    if site == 0:  # convexity: frontal, parietal or temporal, upper half
        d = np.array([side * rng.uniform(0.55, 1.0), rng.uniform(-0.7, 0.8),
                      rng.uniform(-0.05, 0.7)])
    elif site == 1:  # parasagittal / falx, near the vertex
        d = np.array([side * rng.uniform(0.05, 0.2), rng.uniform(-0.5, 0.6), 1.0])
    elif site == 2:  # sphenoid wing: anterior, lateral, low
        d = np.array([side * rng.uniform(0.6, 0.9), rng.uniform(0.5, 0.8),
                      rng.uniform(-0.45, -0.2)])
    else:  # occipital convexity
        d = np.array([side * rng.uniform(0.2, 0.6), -1.0, rng.uniform(0.0, 0.4)])
    return d / np.linalg.norm(d)


def _draw_patient(seed: int, plan: PatientPlan) -> _Patient:
    rng = _rng(seed, plan.index, 1)
    tmpl = _template()
    scale = rng.uniform(0.93, 1.07) * rng.uniform(0.97, 1.03, size=3)
    rot = _rotation(np.deg2rad(rng.uniform(-1, 1, size=3) * np.array([6.0, 5.0, 5.0])))
    forward = rot @ np.diag(scale)  # template mm -> scanner mm
    sella = _SELLA_MNI + _MNI_TO_VOXEL + rng.uniform(-1.5, 1.5, size=3) * (0.7, 1.3, 1.0)
    side = 1.0 if rng.random() < 0.5 else -1.0
    kind = plan.tumour_type
    lobes: tuple[_Ellipsoid, ...] = ()
    cyst = None
    core_ratio = edema_ratio = 0.0
    core_level = 0.0
    if kind == 1:
        radius = rng.uniform(10.0, 24.0)
        brain = (tmpl.t1 > 0).astype(np.uint8)
        surface = _surface_point(brain, tmpl.centre, _meningioma_site(rng, side))
        inward = (tmpl.centre - surface) / np.linalg.norm(tmpl.centre - surface)
        centre = surface + inward * radius * rng.uniform(0.25, 0.45)
        irregularity, brightness = rng.uniform(0.03, 0.08), rng.uniform(1.15, 1.4)
        push, push_centre = radius * rng.uniform(0.75, 0.95), centre
    elif kind == 2:
        seeds = tmpl.seeds[np.sign(tmpl.seeds[:, 0] - tmpl.centre[0]) == side]
        centre = seeds[rng.integers(len(seeds))] + rng.uniform(-1, 1, size=3)
        radius = rng.uniform(12.0, 26.0)
        irregularity = rng.uniform(0.25, 0.42)
        enhancing = rng.random() < 0.75
        brightness = rng.uniform(1.15, 1.45) if enhancing else rng.uniform(0.42, 0.58)
        core_ratio = rng.uniform(0.45, 0.7) if enhancing else 0.0
        core_level = rng.uniform(0.15, 0.32)
        edema_ratio = rng.uniform(1.4, 2.2)
        push, push_centre = radius * rng.uniform(0.2, 0.4), centre
    else:
        low = _Ellipsoid(sella, np.array([rng.uniform(7, 11), rng.uniform(6.5, 10),
                                          rng.uniform(5.5, 8)]))
        height = rng.uniform(5.0, 15.0)
        high = _Ellipsoid(sella + np.array([0.0, rng.uniform(-2, 2), height]),
                          low.radii * np.array([rng.uniform(0.6, 0.9), rng.uniform(0.6, 0.9),
                                                1.0]) + np.array([0, 0, height * 0.2]))
        lobes = (low, high)
        centre = (low.centre + high.centre) / 2
        radius = float(max(low.radii.max(), (height + low.radii[2] + high.radii[2]) / 2))
        irregularity, brightness = 0.0, rng.uniform(0.85, 1.1)
        if rng.random() < 0.3:
            cyst = _Ellipsoid(centre + rng.uniform(-2, 2, size=3), low.radii * 0.4)
        push, push_centre = height * rng.uniform(0.5, 0.8), high.centre
    # Gliomas are lobulated (fine shape noise), meningiomas and adenomas smooth.
    tumour = _Tumour(kind, centre, float(radius),
                     _Noise.draw(rng, centre, (1.3 if kind == 2 else 2.2) * radius),
                     _Noise.draw(rng, centre, 0.8 * radius), lobes, core_ratio, edema_ratio,
                     irregularity, brightness, core_level, cyst, float(push), push_centre)
    bias = rng.uniform(-0.08, 0.08, size=5)
    return _Patient(plan, np.linalg.inv(forward), tmpl.centre.astype(float),
                    rng.uniform(-6, 6, size=2), tumour, sella, rng.uniform(1.2, 2.6),
                    rng.uniform(5.0, 7.5), rng.uniform(4.0, 7.0), rng.uniform(0.4, 0.75),
                    rng.uniform(0.9, 1.15), rng.uniform(550.0, 1000.0), rng.uniform(0.012, 0.03),
                    bias, side)


# ---------------------------------------------------------------- rendering one slice

def _near(q: np.ndarray, centre: np.ndarray, reach_mm: float) -> np.ndarray:
    """Indices of the points of ``q`` within a box of half side ``reach_mm`` of ``centre``."""
    return np.nonzero((np.abs(q - centre) < reach_mm).all(axis=1))[0]


def _sample(volume: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``volume`` (a template array) at template points ``q``, linearly; 0 outside the
    template's brain box (which is where all its non-zero voxels are)."""
    tmpl = _template()
    lo, hi = tmpl.corners.min(axis=0) - 1, tmpl.corners.max(axis=0) + 1
    inside = np.nonzero(((q >= lo) & (q <= hi)).all(axis=1))[0]
    out = np.zeros(len(q), np.float32)
    if inside.size:
        out[inside] = ndi.map_coordinates(volume, q[inside].T, order=1, mode="constant")
    return out


def _plane_points(p: _Patient, plane: Plane, offset_mm: float) -> np.ndarray:
    """Template mm of every grid pixel of the slice ``offset_mm`` from the tumour centre
    along the plane's normal: (GRID * GRID, 3), row-major."""
    u, v, n = (np.array(a) for a in _AXES[plane])
    forward = np.linalg.inv(p.inverse)
    tumour_scanner = forward @ (p.tumour.centre - p.centre)
    down = 0.0 if plane == "axial" else 12.0  # coronal and sagittal views show the skull base
    origin = (n * (tumour_scanner @ n + offset_mm) + u * p.shift_mm[0]
              + v * (p.shift_mm[1] + down))
    steps = (np.arange(_GRID) - (_GRID - 1) / 2) * _GRID_MM
    rows, cols = np.meshgrid(steps, steps, indexing="ij")
    scanner = origin + cols.reshape(-1, 1) * u + rows.reshape(-1, 1) * v
    return p.centre + scanner @ p.inverse.T


def _pushed(q: np.ndarray, t: _Tumour) -> np.ndarray:
    """Where the brain shown at ``q`` came from: brain next to the tumour is pushed away
    from it, so tissue near its surface comes from ``push_mm`` deeper."""
    d = q - t.push_centre
    r = np.sqrt((d ** 2).sum(-1))
    reach = 0.8 * t.radius_mm  # gone (< 1e-4) by 3.4 radii, inside reach_mm
    fall = np.where(r <= t.radius_mm, 1.0, np.exp(-((r - t.radius_mm) / reach) ** 2))
    src = np.maximum(r - t.push_mm * fall, 0.0)
    return t.push_centre + d * (src / np.maximum(r, 1e-6))[:, None]


def _t1_look(t1: np.ndarray, gamma: float) -> np.ndarray:
    """Template T1 (0-1) to a contrast-enhanced T1 look, white matter 1: CSF darker."""
    x = t1 / _WM_LEVEL
    return np.interp(x, (0.0, 0.3, 0.75, 1.0, 1.3), (0.04, 0.1, 0.68, 1.0, 1.12)) ** gamma


def _head(p: _Patient, brain: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """(image outside the brain, distance outside the closed brain in mm, closed brain) on
    the grid, from the undisplaced brain of the middle plane."""
    px = _GRID_MM
    dilated = ndi.distance_transform_edt(~brain, sampling=px) <= 6.0
    closed = ndi.distance_transform_edt(dilated, sampling=px) > 6.0
    closed = ndi.binary_fill_holes(closed | brain)
    out = ndi.distance_transform_edt(~closed, sampling=px)
    img = np.zeros(brain.shape, np.float32)
    c, s = p.csf_mm, p.skull_mm
    layers = ((c, 0.1), (c + 0.8, 0.5), (c + 1.6, 0.06), (c + s - 1.6, p.marrow),
              (c + s, 0.06), (c + s + 1.5, 0.32), (c + s + p.scalp_mm - 1.2, 0.95),
              (c + s + p.scalp_mm, 0.45))
    todo = ~closed
    for edge, level in layers:
        band = todo & (out <= edge)
        img[band] = level
        todo &= ~band
    img[closed] = 0.1  # CSF where the closed brain is not brain
    grid = q.reshape(_GRID, _GRID, 3)
    x_mid = p.centre[0]
    top = grid[..., 2] > p.centre[2] + 15
    sinus = top & (np.abs(grid[..., 0] - x_mid) < 3.0) & (out > 0) & (out <= c + 2.0)
    img[sinus] = 0.9
    falx = closed & ~brain & (np.abs(grid[..., 0] - x_mid) < 0.8) & \
        (grid[..., 2] > p.centre[2] - 10)
    img[falx] = 0.45
    return img, out, closed


def _sellar(img: np.ndarray, q: np.ndarray, brain: np.ndarray, p: _Patient) -> None:
    """The sellar region's structures (outside the brain), drawn into ``img`` in place."""
    s = p.sella
    parts = (
        (_Ellipsoid(s + (0, 12, -13), np.array([13.0, 11, 9])), 0.02),  # sphenoid sinus
        (_Ellipsoid(s + (0, -13, -16), np.array([7.0, 5, 17])), p.marrow),  # clivus
        (_Ellipsoid(s + (10.5, 0, 0), np.array([4.0, 8, 6])), 0.85),  # cavernous sinuses
        (_Ellipsoid(s + (-10.5, 0, 0), np.array([4.0, 8, 6])), 0.85),
        (_Ellipsoid(s + (12, 0, -1), np.array([2.3, 7, 2.3])), 0.05),  # carotid flow voids
        (_Ellipsoid(s + (-12, 0, -1), np.array([2.3, 7, 2.3])), 0.05),
        (_Ellipsoid(s, np.array([6.5, 5, 3.5])), 0.8),  # gland
        (_Ellipsoid(s + (0, -1, 7), np.array([1.3, 1.3, 5])), 0.75),  # stalk
    )
    near = _near(q, s, 32.0)
    if not near.size:
        return
    flat = img.reshape(-1)
    near = near[~brain.reshape(-1)[near]]
    for ell, level in parts:
        flat[near[ell.level(q[near]) < 1]] = level


def _compose(p: _Patient, q: np.ndarray, head: np.ndarray, out_mm: np.ndarray,
             closed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(intensity, tumour level) of one thin plane at template points ``q``."""
    tmpl = _template()
    t = p.tumour
    near = _near(q, t.centre, t.reach_mm)
    src = q.copy()
    src[near] = _pushed(q[near], t)
    t1 = _sample(tmpl.t1, src)
    brain = (t1 > _BRAIN_T1).reshape(_GRID, _GRID) & closed
    img = head.copy()
    img[brain] = _t1_look(t1.reshape(_GRID, _GRID)[brain], p.gamma)
    _sellar(img, q, brain, p)
    level = np.full(_GRID * _GRID, 9.0, np.float32)
    level[near] = t.level(q[near])
    level = level.reshape(_GRID, _GRID)
    flat_tex = np.zeros(_GRID * _GRID, np.float32)
    flat_tex[near] = t.texture.at(q[near])
    flat_tex = flat_tex.reshape(_GRID, _GRID)
    if t.kind == 2:
        wm = np.zeros(_GRID * _GRID, np.float32)
        wm[near] = _sample(tmpl.wm, src[near])
        wm = wm.reshape(_GRID, _GRID)
        edema = np.clip((1 - (level + 1) / t.edema_ratio) / 0.25, 0, 1) * (0.3 + 0.7 * wm)
        img = np.where(brain, img * (1 - 0.45 * edema), img)
        # Intra-axial, and in its own hemisphere (the falx stops it).
        own_side = ((q[:, 0] - p.centre[0]) * p.side > -1.0).reshape(_GRID, _GRID)
        level = np.where(closed & own_side, level, 1.0)
        inside = level < 0
        if t.core_ratio:
            core = (level + 1) < t.core_ratio * (1 + 0.25 * flat_tex)
            img[inside] = t.brightness * (1 + 0.12 * flat_tex[inside])
            img[inside & core] = t.core_level * (1 + 0.3 * flat_tex[inside & core])
        else:
            patch = np.clip(flat_tex - 1.0, 0, 1) * 0.3
            img[inside] = t.brightness * (1 + 0.08 * flat_tex[inside]) + patch[inside]
    elif t.kind == 1:
        inner_table = out_mm <= p.csf_mm + 0.4
        level = np.where(inner_table, level, 1.0)
        cleft = (level >= 0) & (level < 0.07) & brain
        img[cleft] = 0.1
        r = np.full(_GRID * _GRID, 1e3, np.float32)
        r[near] = np.sqrt(((q[near] - t.centre) ** 2).sum(-1))
        r = r.reshape(_GRID, _GRID)
        tail = (out_mm > p.csf_mm - 0.8) & (out_mm <= p.csf_mm + 0.8) & \
            (r < 1.7 * t.radius_mm)
        img[tail] = np.maximum(img[tail], 0.75 * t.brightness)
        inside = level < 0
        img[inside] = t.brightness * (1 + 0.04 * flat_tex[inside])
    else:
        inside = level < 0
        img[inside] = t.brightness * (1 + 0.06 * flat_tex[inside])
        if t.cyst is not None:
            in_cyst = np.zeros(_GRID * _GRID, bool)
            in_cyst[near] = t.cyst.level(q[near]) < 1
            cyst = inside & in_cyst.reshape(_GRID, _GRID)
            img[cyst] = 0.25
    return img, level


def _outline(level: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The hand-drawn outline of the largest tumour section: (N, 2) 0-based (x, y)."""
    lines = [ln for ln in contour_generator(z=level).lines(0.0) if len(ln) >= 8]
    if not lines:
        return np.zeros((0, 2))
    line = max(lines, key=len)
    if np.allclose(line[0], line[-1]):
        line = line[:-1]
    step = max(1, int(round(len(line) / max(12, len(line) / rng.uniform(3.0, 5.0)))))
    start = int(rng.integers(step))
    pts = line[start::step]
    return pts + rng.normal(0, 0.25, size=pts.shape)


def _fill(points_xy: np.ndarray) -> np.ndarray:
    canvas = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(canvas).polygon([tuple(map(float, pt)) for pt in points_xy], fill=1)
    return np.asarray(canvas, dtype=bool)


def _finish(p: _Patient, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Upsample to 512, add a bias field and Rician noise, scale to int16."""
    big = ndi.zoom(img, SIZE / _GRID, order=1, grid_mode=True, mode="nearest")
    y, x = np.mgrid[-1:1:SIZE * 1j, -1:1:SIZE * 1j]
    b = p.bias
    big = big * (1 + b[0] * x + b[1] * y + b[2] * x * y + b[3] * x * x + b[4] * y * y)
    sigma = p.noise
    noisy = np.hypot(big + rng.normal(0, sigma, big.shape), rng.normal(0, sigma, big.shape))
    return np.clip(np.rint(noisy * p.gain), 0, 32767).astype(np.int16)


def render_patient(plan: PatientPlan, *, seed: int = 0) -> list[RenderedSlice]:
    """Every slice of one planned patient; depends only on ``(seed, plan)``."""
    p = _draw_patient(seed, plan)
    tmpl = _template()
    rng = _rng(seed, plan.index, 2)
    by_plane: dict[Plane, list[int]] = {}
    for i, plane in enumerate(plan.planes):
        by_plane.setdefault(plane, []).append(i)
    tumour_mni = tuple(float(v) for v in p.tumour.centre - _MNI_TO_VOXEL)
    slices: dict[int, RenderedSlice] = {}
    for plane, members in by_plane.items():
        k = len(members)
        reach = 0.75 * p.tumour.radius_mm
        gap = min(SLICE_GAP_MM, 2 * reach / max(k - 1, 1))
        for j, i in enumerate(members):
            offset = (j - (k - 1) / 2) * gap
            for _attempt in range(3):
                q_mid = _plane_points(p, plane, offset)
                brain_mid = (_sample(tmpl.t1, q_mid) > _BRAIN_T1).reshape(_GRID, _GRID)
                head, out_mm, closed = _head(p, brain_mid, q_mid)
                layers = []
                for dz in (-2.0, 0.0, 2.0):  # a 6 mm slice: three thin planes averaged
                    _, _, n = (np.array(a) for a in _AXES[plane])
                    q = q_mid + (p.inverse @ n) * dz
                    layers.append(_compose(p, q, head, out_mm, closed))
                level = layers[1][1]
                level_big = ndi.zoom(level, SIZE / _GRID, order=1, grid_mode=True,
                                     mode="nearest")
                outline = _outline(level_big, rng)
                if len(outline) >= 3 and _fill(outline).sum() >= 60:
                    break
                offset *= 0.4  # too close to the tumour's edge: move towards its centre
            img = np.mean([layer[0] for layer in layers], axis=0)
            mask = _fill(outline)
            surface = ndi.zoom(closed.astype(np.float32), SIZE / _GRID, order=1,
                               grid_mode=True, mode="nearest") > 0.5
            slices[i] = RenderedSlice(plan.first_number + i, plan.pid, plan.tumour_type, plane,
                                      _finish(p, img, rng), mask, outline + 1.0, surface,
                                      tumour_mni)
    return [slices[i] for i in range(len(plan.planes))]


# ---------------------------------------------------------------- the folder

def _check_out_dir(out_dir: Path, *, seed: int, n_patients: int) -> None:
    """Refuse, before anything is written, a folder that holds anything but this
    generator's own 2-D output with the same seed and no more patients."""
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if not out_dir.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(out_dir))
    names = sorted(p.name for p in out_dir.iterdir())
    if not names:
        return
    info = None
    try:
        info = json.loads((out_dir / COHORT_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        info = None
    own = isinstance(info, dict) and info.get("generator") == GENERATOR and \
        info.get("synthetic") is True and info.get("track") == "2d"
    if own:
        if info.get("seed") != seed:
            raise ConfigError(f"folder holds a 2-D demo dataset made with seed "
                              f"{info.get('seed')}, got seed {seed}; use another folder or "
                              "the same seed", path=out_dir / COHORT_FILE)
        previous = info.get("n_patients")
        if isinstance(previous, int) and previous > n_patients:
            raise ConfigError(f"holds a 2-D demo dataset of {previous} patients (seed {seed}), "
                              f"asked for {n_patients}; ask for {previous} or more, or use "
                              "another folder", path=out_dir)
    tops = (COHORT_FILE, figshare.FOLDS_FILE)
    foreign = [n for n in names if not own or not (
        n in tops or _SLICE_FILE_RE.match(n)
        or (n.startswith(".") and ".tmp" in n))]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ConfigError(f"holds {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} not "
                          f"written by {GENERATOR} --track 2d ({shown}); choose an empty "
                          "folder", path=out_dir)


def make_figshare_demo(out_dir: str | Path, *, n_patients: int = 40, seed: int = 0,
                       progress: bool = True) -> list[Path]:
    """Write a synthetic figshare-format dataset into ``out_dir``; return its slice files.

    Files: ``1.mat`` ... ``<N>.mat`` (patient by patient, each a MATLAB v7.3 ``cjdata``
    struct exactly as the release has it, read by
    :func:`~tumorscope.core.data.figshare.inspect_figshare`), ``cvind.mat`` (5 patient-wise
    folds, balanced by type) and ``tumorscope_cohort.json`` marking every slice synthetic
    (written first). Patient ``i`` depends only on ``(seed, i)``: the same seed gives the
    same files, byte for byte; a patient whose files all exist is skipped, so an interrupted
    run completes and a dataset grows by asking for more patients with the same seed.

    ``out_dir`` must not exist, be empty, or hold what this function wrote with the same
    seed: anything else is refused (:class:`ConfigError`) before anything is written.

    >>> make_figshare_demo("x", n_patients=0)
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: n_patients must be an integer in 1..9999, got 0
    """
    if not isinstance(n_patients, int) or isinstance(n_patients, bool) \
            or not 1 <= n_patients <= MAX_PATIENTS:
        raise ConfigError(f"n_patients must be an integer in 1..{MAX_PATIENTS}, "
                          f"got {n_patients!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, seed=seed, n_patients=n_patients)
    plans = plan_patients(n_patients, seed=seed)
    slice_ids = [str(n) for p in plans for n in p.numbers]
    marker = {"synthetic": True, "generator": GENERATOR, "track": "2d", "dataset": "figshare",
              "seed": seed, "n_patients": n_patients, "n_slices": len(slice_ids),
              "slice_ids": slice_ids, "note": NOTE}
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(marker, indent=2, sort_keys=True) + "\n"
    marker_path = out_dir / COHORT_FILE
    try:
        same = marker_path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:
        atomic_write_text(marker_path, text)
    files: list[Path] = []
    for plan in tqdm(plans, desc="2-D patients", unit="patient", disable=not progress):
        paths = [out_dir / f"{n}.mat" for n in plan.numbers]
        files += paths
        if all(p.is_file() for p in paths):
            continue
        for s, path in zip(render_patient(plan, seed=seed), paths, strict=True):
            figshare.write_slice(path, image=s.image, label=s.tumour_type, pid=s.pid,
                                 mask=s.mask, border_xy=s.border_xy)
        log.info("%s: %d slice(s) of a %s", plan.pid, len(paths), plan.tumour_type)
    patient_of = {str(n): p.pid for p in plans for n in p.numbers}
    folds = split_patients(patient_of, seed=seed, strata={p.pid: p.tumour_type for p in plans},
                           fractions={str(f): 1.0 / N_FOLDS for f in range(1, N_FOLDS + 1)})
    fold_of = tuple(int(folds.part_of(s)) for s in slice_ids)
    folds_path = out_dir / figshare.FOLDS_FILE
    try:
        unchanged = figshare.read_folds(folds_path) == fold_of
    except (OSError, TumorscopeError):
        unchanged = False
    if not unchanged:
        figshare.write_folds(folds_path, fold_of)
    return files
