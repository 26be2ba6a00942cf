"""Synthetic cohorts in two styles: tumours grown in the ICBM152 template, as BraTS 2021 cases."""

from __future__ import annotations

import csv
import errno
import io
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache, partial
from importlib import resources
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi
from tqdm import tqdm

from tumorscope.core.data.cases import COHORT_FILE
from tumorscope.core.data.nifti import atomic_write_text, write_nifti
from tumorscope.core.errors import ConfigError, CorruptFileError, check_choice
from tumorscope.core.workers import each_in_workers

log = logging.getLogger(__name__)

SHAPE: tuple[int, int, int] = (240, 240, 155)
"""Array shape of every generated volume, as in BraTS 2020/2021 (i, j, k)."""

SPACING_MM: tuple[float, float, float] = (1.0, 1.0, 1.0)
"""Voxel size of every generated volume along i, j, k."""

AFFINE: np.ndarray = np.array(
    [[-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 239.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
"""Voxel -> mm affine of every generated volume: the one real BraTS files carry."""

Style = Literal["demo", "shifted"]
STYLES: tuple[Style, ...] = ("demo", "shifted")
"""``demo``: the training cohort. ``shifted``: built differently (contrasts from MR signal
equations with per-case tissue parameters and protocols, thick slices, artefacts, stronger
warps, other tumour mixes): an out-of-distribution test cohort, never to be trained on."""
CASE_PREFIXES: dict[Style, str] = {"demo": "TSDemo", "shifted": "TSShift"}
CASE_PREFIX = CASE_PREFIXES["demo"]
FILE_KEYS: tuple[str, ...] = ("t1", "t1ce", "t2", "flair", "seg")
GENERATOR = "tumorscope demo-data"
NOTE = "synthetic tumours in ICBM152 anatomy, not patient data"
NOTES: dict[Style, str] = {
    "demo": NOTE,
    "shifted": f"{NOTE}; shifted style: an out-of-distribution test cohort, never train on it",
}
MAX_CASES = 99999
"""Most cases one cohort may hold (case ids have five digits)."""
METADATA_FILES: tuple[str, ...] = ("name_mapping.csv", "survival_info.csv")
"""The metadata tables written beside the cases (with the cohort marker ``COHORT_FILE``)."""

_CASE_RES = {style: re.compile(rf"^{prefix}_(\d{{5}})$") for style, prefix in CASE_PREFIXES.items()}

_TEMPLATE_FILES = {
    k: f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")
}

# Where the template's brain centre lands in the output grid, and the base scale that fits
# the template's 157 brain slices into BraTS's 155.
_CENTRE_OUT = np.array([119.5, 119.5, 77.0])
_BASE_SCALE = 0.95


@dataclass(frozen=True)
class _Recipe:
    """What one style draws a case from; everything else is shared by both styles."""

    kinds: tuple[str, ...]  # dealt in shuffled blocks of ten (see ``_kind``)
    scale: tuple[float, float]  # per-axis scale range, times ``_BASE_SCALE``
    rotation_deg: tuple[float, float, float]  # rotation range about x, y, z (+-)
    elastic_step_vox: int  # spacing of the elastic jitter's control grid (2 mm cells)
    elastic_vox: tuple[float, float]  # its amplitude range, output voxels
    multifocal_lesions: tuple[int, int]  # how many lesions a multifocal case has, inclusive
    units: tuple[float, float]  # scanner intensity scale range, per modality
    ventricle_push: tuple[float, float]  # radial push about each lateral ventricle (< 0: pull)
    stream: tuple[int, ...]  # appended to every random stream's key: styles never share one


_RECIPES: dict[Style, _Recipe] = {
    # The demo style is the training cohort, so it is domain-randomised (SynthSeg-like):
    # head shapes from small to large, ventricles from slit-like to enlarged, a fine elastic
    # field, and every tumour type real cohorts hold (non-enhancing, cystic, patchily
    # enhancing, multifocal, against the ventricles or in the cortex), each tissue with
    # per-case random contrasts (``_draw_contrasts``). Two non-enhancing (LGG-like) cases in
    # ten: their solid core can be nearly edema's intensity, so only shape tells them apart,
    # and with one in ten the demo model met too few to learn it (on the out-of-distribution
    # cohort, mean TC Dice 0.70 -> 0.79 with two in ten).
    "demo": _Recipe(
        kinds=("lgg", "lgg", "small", "multifocal", "multifocal", "cystic",
               "periventricular", "cortical", "patchy", "standard"),
        scale=(0.88, 1.08), rotation_deg=(8.0, 8.0, 8.0), elastic_step_vox=10,
        elastic_vox=(1.5, 4.5), multifocal_lesions=(2, 3), units=(200.0, 2500.0),
        ventricle_push=(-0.15, 0.35), stream=()),
    # Real cohorts differ from the demo's in brain shape and size (older patients, other
    # head shapes: larger scaling, a finer and stronger elastic field, ventricles from
    # slit-like to enlarged), residual misregistration (a few degrees more), and in which
    # tumours they hold: cystic, non-enhancing, patchily enhancing, up to three foci, and
    # tumours against the ventricles or in the cortex, not only deep white matter.
    "shifted": _Recipe(
        kinds=("cystic", "lgg", "multifocal", "periventricular", "periventricular",
               "cortical", "cortical", "patchy", "small", "standard"),
        scale=(0.88, 1.08), rotation_deg=(8.0, 8.0, 10.0), elastic_step_vox=8,
        elastic_vox=(2.5, 5.0), multifocal_lesions=(2, 3), units=(150.0, 3000.0),
        ventricle_push=(-0.1, 0.3), stream=(1,)),
}


@dataclass(frozen=True)
class _KindSpec:
    """How a tumour of one kind is drawn."""

    core_mm: tuple[float, float]  # core radius range
    edema_mm: tuple[float, float]  # edema reach range
    enhancing: bool
    necrosis: tuple[float, float] = (0.45, 0.75)  # necrotic radius / core radius; < 0.25 -> none
    seeds: Literal["deep", "periventricular", "cortical"] = "deep"  # where lesions start
    cystic: bool = False  # the necrotic part is fluid (a cyst), labelled 1 as BraTS does
    patchy: tuple[float, float] = (0.0, 0.0)  # share of the rim that does not enhance (label 1)
    irregularity: tuple[float, float] = (0.18, 0.18)  # amplitude of the core's bumps


_KINDS: dict[str, _KindSpec] = {
    "small": _KindSpec((5.5, 9.0), (4.0, 12.0), True),
    "lgg": _KindSpec((9.0, 18.0), (3.0, 10.0), False),  # non-enhancing: label 1 core, no 4
    "multifocal": _KindSpec((10.0, 18.0), (5.0, 14.0), True),
    "standard": _KindSpec((13.0, 24.0), (5.0, 16.0), True),
    "cystic": _KindSpec((14.0, 24.0), (3.0, 12.0), True, necrosis=(0.78, 0.9), cystic=True,
                        irregularity=(0.08, 0.15)),
    "periventricular": _KindSpec((9.0, 18.0), (5.0, 15.0), True, necrosis=(0.1, 0.7),
                                 seeds="periventricular", irregularity=(0.18, 0.3)),
    "cortical": _KindSpec((8.0, 16.0), (3.0, 12.0), True, necrosis=(0.1, 0.7),
                          seeds="cortical", irregularity=(0.18, 0.3)),
    "patchy": _KindSpec((12.0, 22.0), (6.0, 18.0), True, necrosis=(0.2, 0.6),
                        patchy=(0.3, 0.6), irregularity=(0.25, 0.35)),
}


# Tumour tissue codes of ``_grow_tumours``'s tissue map.
_TISSUE_EDEMA, _TISSUE_ENHANCING, _TISSUE_NECROSIS, _TISSUE_SOLID, _TISSUE_CYST = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class _Template:
    """ICBM152 2009a sym volumes in template voxels (x, y, z; RAS, 1 mm), scaled to [0, 1]."""

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    centre: np.ndarray  # brain bounding-box centre, template voxels
    corners: np.ndarray  # (8, 3) brain bounding-box corners, template voxels
    seeds: np.ndarray  # (N, 3) deep cerebral white-matter voxels where lesions may start


@dataclass(frozen=True)
class _CaseMeta:
    """What a case is, drawn without touching voxels so metadata never needs a render."""

    case_id: str
    index: int
    kind: str  # a key of ``_KINDS``
    grade: str
    age_years: float
    survival_days: int
    style: Style = "demo"


def _template_path(name: str) -> Path:
    path = Path(str(resources.files("nilearn") / "datasets" / "data" / name))
    if not path.is_file():
        raise CorruptFileError(
            "ICBM152 template file missing from the nilearn package; reinstall nilearn",
            path=path,
        )
    return path


@lru_cache(maxsize=1)
def _template() -> _Template:
    """Load and prepare the template once per process: every case warps these arrays."""
    arrays = {}
    for key, name in _TEMPLATE_FILES.items():
        img = nib.load(str(_template_path(name)))
        arrays[key] = np.asarray(img.dataobj, dtype=np.float32) / np.float32(255.0)
    t1 = arrays["t1"]
    # nilearn's T1 is already skull-stripped: zero outside the brain, >= 28/255 inside
    # (ventricles included), so its support is the brain mask.
    mask = t1 > 0
    nz = np.argwhere(mask)
    lo, hi = nz.min(0), nz.max(0)
    centre = (lo + hi) / 2.0
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1])
                        for c in (lo[2], hi[2])], dtype=float)
    # Lesions start in deep cerebral white matter: away from the brain surface, the midline
    # and the posterior fossa, so that a tumour has room and sits where gliomas usually do.
    # A 2 mm grid is plenty for choosing where to start and makes this 8 times cheaper.
    depth_mm = ndi.distance_transform_edt(mask[::2, ::2, ::2], sampling=2.0)
    x, _, z = (2 * i for i in np.indices(depth_mm.shape, sparse=True))
    ok = ((arrays["wm"][::2, ::2, ::2] > 0.9) & (depth_mm >= 18)
          & (np.abs(x - centre[0]) >= 10) & (z >= centre[2] - 25) & (z <= centre[2] + 50))
    seeds = 2.0 * np.argwhere(ok)
    return _Template(t1, arrays["gm"], arrays["wm"], centre, corners, seeds)


def case_id(index: int, *, style: Style = "demo") -> str:
    """Folder and file stem of case ``index`` of a cohort of ``style``.

    >>> case_id(7)
    'TSDemo_00007'
    >>> case_id(7, style="shifted")
    'TSShift_00007'
    """
    return f"{CASE_PREFIXES[style]}_{index:05d}"


def case_files(folder: str | Path) -> dict[str, Path]:
    """The five files of the case in ``folder``, keyed by ``FILE_KEYS``."""
    folder = Path(folder)
    return {k: folder / f"{folder.name}_{k}.nii.gz" for k in FILE_KEYS}


def _rng(seed: int, index: int, stream: int, style: Style = "demo") -> np.random.Generator:
    # One independent stream per (cohort seed, style, case, purpose): a case never depends
    # on how many cases came before it, so an interrupted cohort completes identically, and
    # a shifted cohort shares no draw with the demo cohort of the same seed.
    key = (index, stream, *_RECIPES[style].stream)
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=key))


def _kind(seed: int, index: int, style: Style = "demo") -> str:
    # Kinds are dealt from a shuffled block of ten, so every ten cases hold the style's mix
    # exactly (demo: two LGG-like, one small and two multifocal cases), whatever the seed.
    block = _RECIPES[style].kinds
    order = _rng(seed, index // 10, 2**20, style).permutation(len(block))
    return block[int(order[index % 10])]


def _case_meta(seed: int, index: int, style: Style = "demo") -> _CaseMeta:
    rng = _rng(seed, index, 0, style)
    kind = _kind(seed, index, style)
    grade = "HGG" if _KINDS[kind].enhancing else "LGG"
    age = rng.normal(42.0, 12.0) if grade == "LGG" else rng.normal(61.0, 11.0)
    median_days = 1400.0 if grade == "LGG" else 420.0
    survival = median_days * math.exp(rng.normal(0.0, 0.6))
    return _CaseMeta(case_id(index, style=style), index, kind, grade,
                     round(float(np.clip(age, 19, 86)), 3), int(np.clip(round(survival), 5, 4000)),
                     style)


def _resize(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear resize with corner-aligned grids, so affine coordinates are reproduced exactly.

    Same result as ``ndi.zoom(a, shape / a.shape, order=1, grid_mode=False)`` but separable
    and about five times faster, which matters at millions of voxels per case.
    """
    out = a
    for axis, n in enumerate(shape):
        m = out.shape[axis]
        if m == n:
            continue
        if m == 1:
            out = np.repeat(out, n, axis=axis)
            continue
        pos = np.linspace(0.0, m - 1, n)
        i0 = np.minimum(pos.astype(np.intp), m - 2)
        weight = (pos - i0).astype(out.dtype).reshape([n if d == axis else 1
                                                      for d in range(out.ndim)])
        lo = np.take(out, i0, axis=axis)
        hi = np.take(out, i0 + 1, axis=axis)
        hi -= lo
        hi *= weight
        lo += hi
        out = lo
    return out


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], *, step_vox: int,
                  sigma_steps: float) -> np.ndarray:
    """Zero-mean, unit-std smooth noise on ``shape``: filtered on a coarse grid, then resized.

    Doing the smoothing ``step_vox`` times coarser is what keeps a case within seconds.
    """
    coarse = tuple(max(2, math.ceil(n / step_vox) + 1) for n in shape)
    noise = ndi.gaussian_filter(rng.standard_normal(coarse), sigma_steps, mode="reflect")
    noise = (noise - noise.mean()) / (noise.std() + 1e-8)
    return _resize(noise.astype(np.float32), shape)


def _rotation(angles_rad: np.ndarray) -> np.ndarray:
    ax, ay, az = angles_rad
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class _Lesion:
    centre: np.ndarray  # output voxels
    radius_mm: float  # tumour core, mean semi-axis
    axes: np.ndarray  # relative semi-axes of the core ellipsoid
    rotation: np.ndarray  # (3, 3)
    necrosis_frac: float  # necrotic radius / core radius; 0 for none
    edema_mm: float  # how far edema reaches into white matter beyond the core
    enhancing: bool
    mass_effect: float  # fraction of the radial push at the centre, < 1 so nothing folds
    cystic: bool = False  # the necrotic part is fluid
    patchy: float = 0.0  # share of the rim that does not enhance
    irregularity: float = 0.18  # amplitude of the core's bumps, in core radii


def _draw(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A uniform draw in ``bounds``; a fixed value (lo == hi) draws nothing from ``rng``."""
    lo, hi = bounds
    return float(lo) if lo == hi else float(rng.uniform(lo, hi))


def _plan_lesions(rng: np.random.Generator, meta: _CaseMeta, tmpl: _Template,
                  to_out: np.ndarray, shift: np.ndarray,
                  seed_pools: dict[str, np.ndarray]) -> list[_Lesion]:
    """Lesion centres are drawn in template space (from the kind's pool of white-matter
    voxels in ``seed_pools``) then mapped to output."""
    spec = _KINDS[meta.kind]
    n_lesions = 1
    if meta.kind == "multifocal":
        lo, hi = _RECIPES[meta.style].multifocal_lesions
        n_lesions = lo if lo == hi else int(rng.integers(lo, hi + 1))
    radii = [rng.uniform(*spec.core_mm) for _ in range(n_lesions)]
    edemas = [rng.uniform(*spec.edema_mm) for _ in range(n_lesions)]
    for i in range(1, n_lesions):  # satellites are smaller than the main lesion
        radii[i] *= rng.uniform(0.45, 0.75)
        edemas[i] *= rng.uniform(0.6, 0.9)

    seeds = seed_pools[spec.seeds]
    left = seeds[:, 0] < tmpl.centre[0]
    pool = seeds[left if rng.random() < 0.5 else ~left]
    centres = [pool[rng.integers(len(pool))]]
    for i in range(1, n_lesions):
        # Far enough from every lesion so far that the cores stay separate (perturbed
        # ellipsoids reach about 1.4 radii), near enough to the first to look like one
        # multifocal disease.
        far = np.ones(len(tmpl.seeds), bool)
        for j, c in enumerate(centres):
            gap = 1.45 * (radii[j] + radii[i]) / _BASE_SCALE + 4.0
            far &= np.linalg.norm(tmpl.seeds - c, axis=1) > gap
        gap0 = 1.45 * (radii[0] + radii[i]) / _BASE_SCALE + 4.0
        near = far & (np.linalg.norm(tmpl.seeds - centres[0], axis=1) < gap0 + 25.0)
        options = tmpl.seeds[near] if near.any() else tmpl.seeds[far] if far.any() \
            else tmpl.seeds
        centres.append(options[rng.integers(len(options))])
    lesions = []
    for q, radius, edema in zip(centres, radii, edemas, strict=True):
        necrosis = rng.uniform(*spec.necrosis) if spec.enhancing and radius > 6.0 else 0.0
        lesions.append(_Lesion(
            centre=_CENTRE_OUT + shift + to_out @ (q - tmpl.centre),
            radius_mm=float(radius),
            axes=rng.uniform(0.75, 1.25, 3),
            rotation=_rotation(rng.uniform(-np.pi, np.pi, 3)),
            necrosis_frac=float(necrosis) if necrosis >= 0.25 else 0.0,
            edema_mm=float(edema),
            enhancing=spec.enhancing,
            mass_effect=float(rng.uniform(0.25, 0.45) if radius > 8 else rng.uniform(0.1, 0.2)),
            cystic=spec.cystic,
            patchy=_draw(rng, spec.patchy),
            irregularity=_draw(rng, spec.irregularity),
        ))
    return lesions


def _warp_anatomy(rng: np.random.Generator, tmpl: _Template, to_tmpl: np.ndarray,
                  shift: np.ndarray, pushes: list[tuple[np.ndarray, float, float]],
                  box: tuple[slice, ...], *, volumes: tuple[np.ndarray, ...],
                  recipe: _Recipe) -> tuple[np.ndarray, ...]:
    """``volumes`` (template arrays: T1, GM, WM, ...) pulled onto the output ``box`` through
    one map.

    The map composes, from output to template: a radial push away from each of ``pushes``
    (centre in output voxels, strength < 1, sigma in mm: a lesion's mass effect, enlarged
    ventricles), a smooth elastic jitter, and the case's affine (scale, rotation, flip,
    shift). All of it is smooth, so coordinates are computed on a 2 mm grid and resized
    linearly.
    """
    shape = tuple(s.stop - s.start for s in box)
    coarse = tuple(math.ceil((n - 1) / 2) + 1 for n in shape)
    axes_1d = [np.linspace(s.start, s.stop - 1, c) for s, c in zip(box, coarse, strict=True)]
    p = np.stack(np.meshgrid(*axes_1d, indexing="ij"))  # (3, *coarse) output voxels
    src = p.copy()
    for centre, strength, sigma in pushes:
        offset = p - centre[:, None, None, None]
        r2 = np.sum(offset**2, axis=0)
        # Sampling closer to the centre than we are stretches the tissue outward; the factor
        # stays below 1 so the radial map is monotonic (no folding).
        src -= strength * offset * np.exp(-r2 / (2 * sigma**2))
    elastic = np.stack([_smooth_noise(rng, coarse, step_vox=recipe.elastic_step_vox,
                                      sigma_steps=0.8) for _ in range(3)])
    src += elastic * rng.uniform(*recipe.elastic_vox)
    q = np.tensordot(to_tmpl, src - (_CENTRE_OUT + shift)[:, None, None, None], axes=1)
    q += tmpl.centre[:, None, None, None]
    q = q.astype(np.float32)
    # Interpolating only where the brain can be halves the cost: a voxel is sampled if any
    # corner of its 2 mm cell, dilated by one cell, falls inside the template brain.
    inside = ndi.map_coordinates(tmpl.t1, q, order=0, mode="constant", cval=0.0) > 0
    inside = ndi.binary_dilation(inside, iterations=1)
    where = _resize(inside.astype(np.float32), shape) > 0
    coords = np.stack([_resize(c, shape)[where] for c in q])
    out = []
    for vol in volumes:
        full = np.zeros(shape, np.float32)
        full[where] = ndi.map_coordinates(vol, coords, order=1, mode="constant", cval=0.0,
                                          prefilter=False)
        out.append(full)
    return tuple(out)


def _grow_lesion(rng: np.random.Generator, lesion: _Lesion, origin: np.ndarray,
                 shape: tuple[int, ...], wm: np.ndarray, brain: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Core, necrosis and edema masks of one lesion on a region starting at ``origin``.

    The core is a perturbed ellipsoid; edema is everything within ``edema_mm`` of the core
    in a metric that is cheap in white matter and dear elsewhere, which gives the finger-like
    spread along white-matter tracts that vasogenic edema shows.
    """
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    offset = grid + (origin - lesion.centre).astype(np.float32)[:, None]
    local = (lesion.rotation.T.astype(np.float32) @ offset) / (
        lesion.radius_mm * lesion.axes.astype(np.float32))[:, None]
    rho = np.sqrt(np.sum(local**2, axis=0)).reshape(shape)
    bumps = _smooth_noise(rng, shape, step_vox=3, sigma_steps=1.3)
    core = (rho + np.float32(lesion.irregularity) * bumps < 1.0) & brain
    # A lesion with no voxel left after the brain mask still gets its seed voxel, so
    # every planned lesion is present in the label map.
    if not core.any():
        seed = tuple(np.clip(np.round(lesion.centre - origin).astype(int), 0,
                             np.array(shape) - 1))
        core[seed] = True
    necrosis = np.zeros(shape, dtype=bool)
    if lesion.necrosis_frac > 0:
        wobble = _smooth_noise(rng, shape, step_vox=3, sigma_steps=1.0)
        necrosis = (rho + 0.12 * wobble < lesion.necrosis_frac)
        # The rim must enclose the necrosis: keep necrosis two voxels inside the core.
        necrosis &= ndi.binary_erosion(core, iterations=2)
    dist_mm = ndi.distance_transform_edt(~core)
    wm_smooth = ndi.gaussian_filter(wm, 1.0)
    reach = _smooth_noise(rng, shape, step_vox=4, sigma_steps=1.0)
    cost = dist_mm * (1.0 + 0.3 * np.clip(reach, -1.5, 1.5)) / (0.12 + wm_smooth)
    edema = (cost < lesion.edema_mm * 1.12) & brain
    labelled, _ = ndi.label(edema | core)
    touching = np.unique(labelled[core])
    edema = np.isin(labelled, touching[touching > 0])
    # A thin shell of edema always wraps the core, as in BraTS labels.
    edema |= ndi.binary_dilation(core, iterations=2) & brain
    return core, necrosis, edema


def _grow_tumours(rng: np.random.Generator, lesions: list[_Lesion], wm: np.ndarray,
                  brain: np.ndarray, origin: np.ndarray
                  ) -> tuple[np.ndarray, tuple[slice, ...], np.ndarray]:
    """Label map of all lesions on the one region of the brain box that covers them.

    Returns the region's labels (uint8, canonical values), its slices in the box whose
    first voxel is ``origin`` (output voxels), and its tumour tissue (uint8, ``_TISSUE_*``
    codes: what a voxel is made of, which a label alone does not tell: label 1 is necrosis,
    cyst fluid or non-enhancing solid tumour). Growing on this region rather than the whole
    box is what keeps a case fast.
    """
    reach = np.array([lz.radius_mm * 1.5 + lz.edema_mm * 1.8 + 6 for lz in lesions])
    centres = np.array([lz.centre for lz in lesions]) - origin
    r_lo = np.maximum(np.floor((centres - reach[:, None]).min(0)), 0).astype(int)
    r_hi = np.minimum(np.ceil((centres + reach[:, None]).max(0)), wm.shape).astype(int)
    region = tuple(slice(int(a), int(b)) for a, b in zip(r_lo, r_hi, strict=True))
    shape = tuple(int(b - a) for a, b in zip(r_lo, r_hi, strict=True))
    grown = []
    edema = np.zeros(shape, bool)
    for lesion in lesions:
        c, n, e = _grow_lesion(rng, lesion, origin + r_lo, shape, wm[region], brain[region])
        solid = np.zeros(shape, bool)  # the part of an enhancing rim that does not enhance
        if lesion.patchy > 0:
            rim = c & ~n
            noise = _smooth_noise(rng, shape, step_vox=3, sigma_steps=1.0)
            if rim.any():
                solid = rim & (noise < np.quantile(noise[rim], lesion.patchy))
        grown.append((lesion, c, n, solid))
        edema |= e
    seg = np.zeros(shape, np.uint8)
    tissue = np.zeros(shape, np.uint8)
    seg[edema] = 2
    tissue[edema] = _TISSUE_EDEMA
    for lesion, c, _, _ in grown:
        seg[c] = 4 if lesion.enhancing else 1
        tissue[c] = _TISSUE_ENHANCING if lesion.enhancing else _TISSUE_SOLID
    for lesion, _, n, solid in grown:
        seg[n | solid] = 1
        tissue[solid] = _TISSUE_SOLID
        tissue[n] = _TISSUE_CYST if lesion.cystic else _TISSUE_NECROSIS
    return seg, region, tissue


def _mimics(rng: np.random.Generator, csf: np.ndarray, wm: np.ndarray, brain: np.ndarray,
            ventricles: np.ndarray) -> dict[str, np.ndarray]:
    """Volume fractions (box-shaped float32) of what is bright on some sequence and is not
    tumour, so that a model trained on the demo learns to leave it alone.

    - ``wmh``: periventricular hyperintensity from none to a lumpy band reaching over a
      centimetre into the white matter (Fazekas 0 to 3, as in older patients), and deep
      white-matter foci from punctate to patchy: bright on T2 and FLAIR, like edema.
    - ``choroid``: tufts anywhere in the lateral ventricles, enhancing on T1ce.
    - ``vessel``: strands in the sulcal CSF, enhancing on T1ce, often dark on T2.
    """
    shape = brain.shape
    vent = ventricles > 0.5
    coarse = tuple(slice(None, None, 2) for _ in shape)
    to_vent = _resize(ndi.distance_transform_edt(~vent[coarse], sampling=2.0).astype(np.float32),
                      shape)
    lumpy = _smooth_noise(rng, shape, step_vox=8, sigma_steps=1.0)
    band_mm = rng.uniform(0.0, 10.0) * (1.0 + 0.6 * np.clip(lumpy, -1.5, 1.5))
    band = (to_vent > 0) & (to_vent < band_mm) & (wm > 0.3)
    blobs = _smooth_noise(rng, shape, step_vox=int(rng.choice([2, 3])), sigma_steps=1.0)
    foci = (blobs > rng.uniform(1.9, 3.8)) & (wm > 0.5)
    wmh = ndi.gaussian_filter((band | foci).astype(np.float32), 1.0) * wm

    tufts = vent & (_smooth_noise(rng, shape, step_vox=3, sigma_steps=1.0)
                    > rng.uniform(0.3, 1.5))
    choroid = ndi.gaussian_filter(tufts.astype(np.float32), 0.7) * csf
    sheet = _smooth_noise(rng, shape, step_vox=4, sigma_steps=1.0)
    strands = (np.abs(sheet) < rng.uniform(0.04, 0.12)) & (csf > 0.3) & ~vent & brain
    vessel = np.minimum(ndi.gaussian_filter(strands.astype(np.float32), 0.5) * csf,
                        csf - choroid)
    return {"wmh": wmh, "vessel": np.clip(vessel, 0, None), "choroid": choroid}


# The demo style's contrasts are domain-randomised: each case draws every tissue's mean
# intensity per modality (white matter = 1) uniformly within these broad (T1, T2, FLAIR)
# ranges, which keep only what every glioma protocol agrees on: CSF and fluid dark on T1
# and bright on T2 (anything from nulled to brighter than white matter on FLAIR), edema and
# white-matter hyperintensities bright on T2 and FLAIR (edema brighter than cortex), necrosis
# dark on T1. On T1ce,
# gadolinium makes enhancing tumour, vessels and choroid plexus brighter than white matter
# (``_T1CE_ENHANCED``, drawn as such); every other tissue is its T1 within +-12 %.
_RANDOM_CONTRAST: dict[str, tuple[tuple[float, float], ...]] = {
    "gm": ((0.55, 0.92), (1.1, 1.6), (1.0, 1.35)),
    "csf": ((0.05, 0.5), (1.6, 4.0), (0.05, 1.4)),
    "wmh": ((0.6, 0.95), (1.3, 2.5), (1.3, 2.5)),
    "vessel": ((0.35, 1.0), (0.2, 1.4), (0.3, 1.4)),
    "choroid": ((0.5, 0.95), (0.9, 2.2), (0.6, 1.8)),
    "edema": ((0.45, 0.9), (1.5, 2.8), (1.45, 2.6)),
    "enhancing": ((0.5, 1.0), (1.1, 2.2), (1.0, 2.0)),
    "solid": ((0.5, 0.95), (1.3, 2.5), (1.2, 2.4)),
    "necrosis": ((0.15, 0.6), (1.6, 3.5), (0.4, 2.0)),
    "cyst": ((0.05, 0.45), (2.0, 4.0), (0.1, 1.5)),
}
_T1CE_ENHANCED: dict[str, tuple[float, float]] = {
    "enhancing": (1.25, 2.6), "vessel": (1.3, 3.0), "choroid": (1.15, 2.4)}
_T1CE_GAIN = (0.88, 1.12)
_DEMO_TISSUES = {_TISSUE_EDEMA: "edema", _TISSUE_ENHANCING: "enhancing",
                 _TISSUE_NECROSIS: "necrosis", _TISSUE_SOLID: "solid", _TISSUE_CYST: "cyst"}


def _draw_contrasts(rng: np.random.Generator) -> dict[str, tuple[float, float, float, float]]:
    """One case's mean (T1, T1ce, T2, FLAIR) intensity of every tissue, white matter = 1.

    >>> means = _draw_contrasts(np.random.default_rng(0))
    >>> means["wm"], means["enhancing"][1] >= 1.25
    ((1.0, 1.0, 1.0, 1.0), True)
    """
    means = {"wm": (1.0, 1.0, 1.0, 1.0)}
    for name, ranges in _RANDOM_CONTRAST.items():
        t1, t2, flair = (float(rng.uniform(*r)) for r in ranges)
        if name in _T1CE_ENHANCED:
            t1ce = float(rng.uniform(*_T1CE_ENHANCED[name]))
        else:
            t1ce = t1 * float(rng.uniform(*_T1CE_GAIN))
        means[name] = (t1, t1ce, t2, flair)
    return means


def _synthesise(rng: np.random.Generator, gm: np.ndarray, wm: np.ndarray, brain: np.ndarray,
                ventricles: np.ndarray, tissue: np.ndarray, region: tuple[slice, ...]
                ) -> list[np.ndarray]:
    """T1, T1ce, T2 and FLAIR of a demo case on the brain box (float32, zero outside
    ``brain``), white matter about 1.

    Every voxel mixes tissues (GM, WM, CSF, the non-tumour mimics of :func:`_mimics`, and
    the tumour tissues of ``tissue`` inside ``region``) by volume fraction, each at its
    per-case random mean (:func:`_draw_contrasts`) times a smooth texture; then each
    modality gets a mild bias field and Rician noise. Stronger bias, blur, thick slices and
    other noise come from training augmentation (:mod:`tumorscope.core.training.augment`).
    """
    csf = np.clip(1.0 - gm - wm, 0, 1) * brain
    extra = _mimics(rng, csf, wm, brain, ventricles)
    fractions = {"wm": wm - extra["wmh"], "gm": gm,
                 "csf": csf - extra["vessel"] - extra["choroid"], **extra}
    tumour = {name: ndi.gaussian_filter((tissue == code).astype(np.float32), 0.6)
              for code, name in _DEMO_TISSUES.items() if (tissue == code).any()}
    tumour_total = np.clip(sum(tumour.values(), np.zeros(tissue.shape, np.float32)), 0, 1)
    texture = 1.0 + np.float32(rng.uniform(0.01, 0.04)) * _smooth_noise(
        rng, brain.shape, step_vox=2, sigma_steps=1.0)
    tumour_texture = 1.0 + np.float32(rng.uniform(0.04, 0.15)) * _smooth_noise(
        rng, tissue.shape, step_vox=2, sigma_steps=1.0)
    means = _draw_contrasts(rng)
    sigma_noise = np.float32(rng.uniform(0.01, 0.045))
    images = []
    for m in range(4):
        vol = sum((f * np.float32(means[n][m]) for n, f in fractions.items()),
                  np.zeros(brain.shape, np.float32)) * texture
        if tumour:
            t = sum((f * np.float32(means[n][m]) for n, f in tumour.items()),
                    np.zeros(tissue.shape, np.float32))
            vol[region] = vol[region] * (1.0 - tumour_total) + t * tumour_texture
        vol *= np.exp(0.08 * _smooth_noise(rng, vol.shape, step_vox=24, sigma_steps=0.7))
        # Rician noise: magnitude of a complex signal with Gaussian noise on both parts.
        n_re = rng.standard_normal(vol.shape, dtype=np.float32) * sigma_noise
        n_im = rng.standard_normal(vol.shape, dtype=np.float32) * sigma_noise
        images.append(np.sqrt((vol + n_re) ** 2 + n_im**2) * brain)
    return images


@dataclass(frozen=True)
class _VentricleAnatomy:
    """What both styles add to the template (template voxels, RAS, 1 mm)."""

    ventricles: np.ndarray  # lateral ventricles, 0/1 float32
    choroid: np.ndarray  # where choroid plexus lies (atria and floor of the bodies), 0/1
    ventricle_centres: np.ndarray  # (2, 3) centroid of each lateral ventricle
    seed_pools: dict[str, np.ndarray]  # (N, 3) white-matter voxels where lesions may start


@lru_cache(maxsize=1)
def _ventricle_anatomy() -> _VentricleAnatomy:
    """Lateral ventricles and lesion start points near them and near the cortex, found once
    per process on a 2 mm grid (the template's shape is odd along every axis, so a 2 mm
    array resizes back onto its voxels exactly)."""
    tmpl = _template()
    mask = tmpl.t1[::2, ::2, ::2] > 0
    wm = tmpl.wm[::2, ::2, ::2]
    csf = np.clip(1.0 - tmpl.gm[::2, ::2, ::2] - wm, 0, 1) * mask
    depth_mm = ndi.distance_transform_edt(mask, sampling=2.0)
    x, y, z = (2 * a for a in np.indices(mask.shape, sparse=True))  # template voxels
    # The lateral ventricles: the two large deep CSF spaces off the midline (the midline
    # one is the third ventricle with the interhemispheric fissure and cisterns).
    pieces, n = ndi.label((csf > 0.6) & (depth_mm > 15))
    volume_ml = np.bincount(pieces.ravel(), minlength=n + 1) * 8.0 / 1000.0  # 2 mm voxels
    centres = np.array(ndi.center_of_mass(np.ones(mask.shape), pieces, range(1, n + 1))) * 2
    lateral = [i + 1 for i in np.argsort(volume_ml[1:])[::-1]
               if abs(centres[i][0] - tmpl.centre[0]) > 5 and volume_ml[i + 1] > 3.0][:2]
    if len(lateral) != 2:
        raise CorruptFileError("ICBM152 template: lateral ventricles not found; reinstall "
                               "nilearn", path=_template_path(_TEMPLATE_FILES["t1"]))
    ventricles = np.isin(pieces, lateral)
    choroid = np.zeros(mask.shape, bool)
    for i in lateral:  # choroid plexus: the posterior, lower half of each ventricle
        c = centres[i - 1]
        choroid |= (pieces == i) & (y < c[1]) & (z < c[2] + 4)
    to_ventricle_mm = ndi.distance_transform_edt(~ventricles, sampling=2.0)
    cerebral = (np.abs(x - tmpl.centre[0]) >= 10) & (z >= tmpl.centre[2] - 20) & (
        z <= tmpl.centre[2] + 50)
    pools = {
        "deep": tmpl.seeds,
        "periventricular": 2.0 * np.argwhere(
            (wm > 0.6) & (to_ventricle_mm >= 4) & (to_ventricle_mm <= 10) & cerebral),
        "cortical": 2.0 * np.argwhere(
            (wm > 0.4) & (depth_mm >= 6) & (depth_mm <= 12) & cerebral
            & (np.abs(x - tmpl.centre[0]) >= 15)),
    }
    full = tmpl.t1.shape
    return _VentricleAnatomy(
        ventricles=_resize(ventricles.astype(np.float32), full),
        choroid=_resize(choroid.astype(np.float32), full),
        ventricle_centres=np.array([centres[i - 1] for i in lateral]),
        seed_pools=pools,
    )


# The shifted style's contrast model: MR signal equations over tissue relaxation times,
# per case (T1 ms, T2 ms, proton density) at 3 T, from the usual literature values; 1.5 T
# shortens the T1 of tissue (not of fluid). Gadolinium adds to R1 (1/s) where the
# blood-brain barrier is broken (enhancing tumour), in blood (vessels) and in choroid plexus.
_TISSUE_MR: dict[str, tuple[float, float, float]] = {
    "wm": (830.0, 80.0, 0.69),
    "gm": (1330.0, 110.0, 0.80),
    "csf": (4000.0, 1800.0, 1.00),
    "wmh": (1150.0, 130.0, 0.76),  # white-matter hyperintensity (small-vessel disease)
    "vessel": (1650.0, 60.0, 0.85),  # blood: flowing, so dark on spin echoes
    "choroid": (1100.0, 110.0, 0.85),
    "edema": (1500.0, 170.0, 0.88),
    "enhancing": (1550.0, 120.0, 0.84),
    "necrosis": (2300.0, 300.0, 0.92),
    "solid": (1450.0, 140.0, 0.86),  # non-enhancing solid tumour
    "cyst": (3400.0, 1200.0, 0.98),
}
_FLUIDS = ("csf", "cyst")
_GD_R1_PER_S: dict[str, tuple[float, float]] = {
    "enhancing": (0.8, 1.6), "vessel": (2.5, 4.0), "choroid": (1.2, 2.4)}
_TUMOUR_TISSUES = {_TISSUE_EDEMA: "edema", _TISSUE_ENHANCING: "enhancing",
                   _TISSUE_NECROSIS: "necrosis", _TISSUE_SOLID: "solid", _TISSUE_CYST: "cyst"}


@dataclass(frozen=True)
class _Protocol:
    """One sequence as a scanner ran it: signal equation, timings, voxel size, artefacts."""

    sequence: Literal["se", "ir", "gre"]  # spin echo, inversion recovery, spoiled gradient echo
    tr_ms: float
    te_ms: float
    ti_ms: float = 0.0
    flip_deg: float = 90.0
    voxel_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)  # acquired voxel along i, j, k
    phase_axis: int = 0  # ghosts repeat along this axis
    ghost: float = 0.0  # ghost amplitude, share of the image
    snr: float = 30.0  # white-matter signal / noise sigma, in the acquired voxels
    blur_mm: float = 0.0  # extra in-plane blur (reconstruction filter, slight motion)


def _signal(p: _Protocol, t1_ms: float, t2_ms: float, pd: float) -> float:
    """Steady-state magnitude signal of one tissue under protocol ``p``.

    >>> wm, csf = _TISSUE_MR["wm"], _TISSUE_MR["csf"]
    >>> flair = _Protocol("ir", tr_ms=9000, te_ms=110, ti_ms=2500)
    >>> _signal(flair, *csf) < 0.25 * _signal(flair, *wm)  # CSF nulled
    True
    """
    e1 = math.exp(-p.tr_ms / t1_ms)
    if p.sequence == "se":
        s = 1.0 - e1
    elif p.sequence == "ir":
        s = abs(1.0 - 2.0 * math.exp(-p.ti_ms / t1_ms) + e1)
    else:
        a = math.radians(p.flip_deg)
        s = math.sin(a) * (1.0 - e1) / (1.0 - math.cos(a) * e1)
    return pd * s * math.exp(-p.te_ms / t2_ms)


def _thick_voxel(rng: np.random.Generator) -> tuple[tuple[float, float, float], int]:
    """A 2-D acquisition's voxel: 0.8-1.3 mm in plane, 3-6 mm slices, mostly axial (k),
    else coronal (j) or sagittal (i); and an in-plane phase-encoding axis."""
    thick_axis = int(rng.choice(3, p=[0.2, 0.2, 0.6]))
    in_plane = float(rng.uniform(0.8, 1.3))
    voxel = [in_plane] * 3
    voxel[thick_axis] = float(rng.uniform(3.0, 6.0))
    phase_axis = int(rng.choice([a for a in range(3) if a != thick_axis]))
    return (voxel[0], voxel[1], voxel[2]), phase_axis


def _draw_protocols(rng: np.random.Generator) -> list[_Protocol]:
    """T1, T1ce, T2 and FLAIR protocols of one case, each drawn independently, as sites
    mix them: a T1 may be a 2-D spin echo or a 3-D gradient or inversion-recovery echo."""
    protocols = []
    for modality in ("t1", "t1ce", "t2", "flair"):
        voxel, phase = _thick_voxel(rng)
        artefacts = {"ghost": float(rng.uniform(0.0, 0.05)), "snr": float(rng.uniform(12, 35)),
                     "blur_mm": float(rng.uniform(0.3, 0.8)), "phase_axis": phase}
        if modality in ("t1", "t1ce"):
            kind = str(rng.choice(["se", "gre", "ir"]))
            if kind != "se":  # 3-D: near-isotropic voxels, fewer ghosts
                iso = float(rng.uniform(0.9, 1.25))
                voxel = (iso, iso, iso * float(rng.uniform(1.0, 1.2)))
                artefacts["ghost"] *= 0.4
            if kind == "se":
                p = _Protocol("se", tr_ms=rng.uniform(400, 700), te_ms=rng.uniform(8, 15),
                              voxel_mm=voxel, **artefacts)
            elif kind == "gre":
                p = _Protocol("gre", tr_ms=rng.uniform(6, 12), te_ms=rng.uniform(2, 5),
                              flip_deg=rng.uniform(12, 25), voxel_mm=voxel, **artefacts)
            else:  # MPRAGE-like
                p = _Protocol("ir", tr_ms=rng.uniform(1800, 2400), te_ms=rng.uniform(2, 4),
                              ti_ms=rng.uniform(950, 1100), voxel_mm=voxel, **artefacts)
        elif modality == "t2":
            p = _Protocol("se", tr_ms=rng.uniform(3000, 6000), te_ms=rng.uniform(80, 120),
                          voxel_mm=voxel, **artefacts)
        else:  # FLAIR: the inversion time does not always null CSF exactly
            p = _Protocol("ir", tr_ms=rng.uniform(8000, 11000), te_ms=rng.uniform(80, 140),
                          ti_ms=rng.uniform(2000, 2800), voxel_mm=voxel, **artefacts)
        protocols.append(p)
    return protocols


def _draw_tissues(rng: np.random.Generator) -> tuple[dict[str, tuple[float, float, float]],
                                                     dict[str, float]]:
    """Per-case (T1 ms, T2 ms, PD) of every tissue and gadolinium's added R1 (1/s)."""
    t1_factor = 1.0 if rng.random() < 0.5 else 0.8  # 3 T or 1.5 T
    tissues = {}
    for name, (t1, t2, pd) in _TISSUE_MR.items():
        if name not in _FLUIDS:
            t1 *= t1_factor
        tissues[name] = (t1 * rng.uniform(0.9, 1.1), t2 * rng.uniform(0.9, 1.1),
                         pd * rng.uniform(0.95, 1.05))
    gd = {name: float(rng.uniform(*r)) for name, r in _GD_R1_PER_S.items()}
    return tissues, gd


def _non_tumour_structures(rng: np.random.Generator, csf: np.ndarray, wm: np.ndarray,
                           brain: np.ndarray, ventricles: np.ndarray, choroid: np.ndarray
                           ) -> dict[str, np.ndarray]:
    """Volume fractions (box-shaped float32) of what real scans hold and the demo does not.

    - ``wmh``: periventricular caps and bands plus punctate deep white-matter
      hyperintensities, from none to confluent (Fazekas 0-3): bright on T2 and FLAIR.
    - ``vessel``: tubes in the sulcal CSF (the zero sets of two smooth noise fields cross
      along curves): bright on T1ce, dark (flow void) on T2.
    - ``choroid``: lumpy tufts in the posterior lateral ventricles: enhancing on T1ce.
    """
    shape = brain.shape
    vent = ventricles > 0.5
    coarse = tuple(slice(None, None, 2) for _ in shape)
    to_vent = _resize(ndi.distance_transform_edt(~vent[coarse], sampling=2.0).astype(np.float32),
                      shape)
    reach_mm = rng.uniform(0.0, 10.0)
    wobble = _smooth_noise(rng, shape, step_vox=6, sigma_steps=1.0)
    caps = (to_vent < reach_mm * (1.0 + 0.5 * np.clip(wobble, -1.5, 1.5))) & (wm > 0.5) & ~vent
    dots = _smooth_noise(rng, shape, step_vox=2, sigma_steps=0.7)
    punctate = (dots > 3.2 - 0.08 * reach_mm) & (wm > 0.6)
    wmh = ndi.gaussian_filter((caps | punctate).astype(np.float32), 0.8) * wm

    sulcal = (csf > 0.3) & ~vent & brain
    a = _smooth_noise(rng, shape, step_vox=5, sigma_steps=1.0)
    b = _smooth_noise(rng, shape, step_vox=5, sigma_steps=1.0)
    width = rng.uniform(0.1, 0.2)
    tubes = (np.abs(a) < width) & (np.abs(b) < width) & sulcal
    vessel = ndi.gaussian_filter(tubes.astype(np.float32), 0.5) * csf

    lumps = _smooth_noise(rng, shape, step_vox=2, sigma_steps=0.8)
    plexus = (choroid > 0.5) & (ventricles > 0.3) & (lumps > rng.uniform(-0.3, 0.5))
    chor = ndi.gaussian_filter(plexus.astype(np.float32), 0.6) * csf
    vessel = np.minimum(vessel, csf - chor)
    return {"wmh": wmh, "vessel": np.clip(vessel, 0, None), "choroid": chor}


def _acquire(rng: np.random.Generator, vol: np.ndarray, p: _Protocol, bias: np.ndarray
             ) -> np.ndarray:
    """The 1 mm image ``vol`` as protocol ``p`` records it, resampled back to 1 mm.

    The coil's bias field multiplies it; each acquired voxel averages its slab (a Gaussian
    slice profile, FWHM = voxel size, plus ``blur_mm`` in plane); the image is sampled on
    the acquired grid, where an N/2 ghost along the phase-encoding axis and Rician noise are
    added; then linear interpolation brings it back onto the 1 mm grid, as BraTS's
    co-registration to SRI24 does.
    """
    vol = vol * bias
    sigma = [v / 2.355 + (p.blur_mm / 2.355 if v < 2.0 else 0.0) for v in p.voxel_mm]
    vol = ndi.gaussian_filter(vol, sigma, mode="nearest")
    acquired = tuple(max(2, round((n - 1) / v) + 1) for n, v in zip(vol.shape, p.voxel_mm,
                                                                    strict=True))
    low = _resize(vol, acquired)
    if p.ghost > 0:
        low = low + np.float32(p.ghost) * np.roll(low, acquired[p.phase_axis] // 2,
                                                  axis=p.phase_axis)
    sigma_noise = np.float32(1.0 / p.snr)
    n_re = rng.standard_normal(low.shape, dtype=np.float32) * sigma_noise
    n_im = rng.standard_normal(low.shape, dtype=np.float32) * sigma_noise
    low = np.sqrt((low + n_re) ** 2 + n_im**2)
    return _resize(low.astype(np.float32), vol.shape)


def _synthesise_shifted(rng: np.random.Generator, gm: np.ndarray, wm: np.ndarray,
                        brain: np.ndarray, ventricles: np.ndarray, choroid: np.ndarray,
                        tissue: np.ndarray, region: tuple[slice, ...]) -> list[np.ndarray]:
    """T1, T1ce, T2 and FLAIR of a shifted case on the brain box (float32, zero outside
    ``brain``), white matter about 1 before the bias field.

    Every voxel is a mix of tissues (GM, WM, CSF, white-matter hyperintensity, vessel,
    choroid plexus; tumour tissues inside ``region``) by volume fraction; each tissue's
    signal comes from its per-case relaxation times through the per-case protocol
    (:func:`_signal`), and each image is then acquired (:func:`_acquire`).
    """
    csf = np.clip(1.0 - gm - wm, 0, 1) * brain
    extra = _non_tumour_structures(rng, csf, wm, brain, ventricles, choroid)
    fractions = {"wm": wm - extra["wmh"], "gm": gm,
                 "csf": csf - extra["vessel"] - extra["choroid"], **extra}
    tumour = {name: ndi.gaussian_filter((tissue == code).astype(np.float32), 0.6)
              for code, name in _TUMOUR_TISSUES.items() if (tissue == code).any()}
    tumour_total = np.clip(sum(tumour.values(), np.zeros(tissue.shape, np.float32)), 0, 1)
    texture = 1.0 + 0.03 * _smooth_noise(rng, brain.shape, step_vox=3, sigma_steps=1.0)
    tumour_texture = 1.0 + 0.1 * _smooth_noise(rng, tissue.shape, step_vox=2, sigma_steps=1.0)
    tissues, gd = _draw_tissues(rng)
    protocols = _draw_protocols(rng)
    # The coil's field is mostly shared by a session's sequences, partly each its own.
    shared = _smooth_noise(rng, brain.shape, step_vox=32, sigma_steps=0.7)
    ramp_dir = rng.standard_normal(3)
    ramp_dir /= np.linalg.norm(ramp_dir)
    ramp = sum(ramp_dir[a] * np.linspace(-1, 1, n, dtype=np.float32).reshape(
        [n if d == a else 1 for d in range(3)]) for a, n in enumerate(brain.shape))
    strength, tilt = rng.uniform(0.1, 0.3), rng.uniform(0.0, 0.2)
    images = []
    for m, p in enumerate(protocols):
        def signal(name: str, m: int = m, p: _Protocol = p) -> np.float32:
            t1, t2, pd = tissues[name]
            if m == 1 and name in gd:  # T1ce: gadolinium shortens T1
                t1 = 1000.0 / (1000.0 / t1 + gd[name])
            return np.float32(_signal(p, t1, t2, pd))

        wm_signal = signal("wm")
        vol = sum((f * (signal(n) / wm_signal) for n, f in fractions.items()),
                  np.zeros(brain.shape, np.float32)) * texture
        if tumour:
            t = sum((f * (signal(n) / wm_signal) for n, f in tumour.items()),
                    np.zeros(tissue.shape, np.float32))
            vol[region] = vol[region] * (1.0 - tumour_total) + t * tumour_texture
        own = _smooth_noise(rng, brain.shape, step_vox=32, sigma_steps=0.7)
        bias = np.exp(strength * (0.7 * shared + 0.3 * own) + tilt * ramp).astype(np.float32)
        images.append(_acquire(rng, vol * brain, p, bias) * brain)
    return images


def _render_case(seed: int, meta: _CaseMeta) -> dict[str, np.ndarray]:
    """All five volumes of one case, full ``SHAPE``: four int16 images and a uint8 label map."""
    recipe = _RECIPES[meta.style]
    shifted = meta.style == "shifted"
    rng = _rng(seed, meta.index, 1, meta.style)
    tmpl = _template()
    scale = _BASE_SCALE * rng.uniform(*recipe.scale, 3)
    scale[2] = min(scale[2], 0.97)  # taller would not fit 155 slices
    flip = np.diag([-1.0, -1.0, 1.0])  # output i, j run against RAS x, y (BraTS affine)
    if rng.random() < 0.5:
        flip[0, 0] = 1.0  # mirror left-right: the sym template makes either side anatomical
    rotation_deg = np.array(recipe.rotation_deg)
    to_tmpl = flip @ _rotation(np.deg2rad(rng.uniform(-rotation_deg, rotation_deg))) @ np.diag(
        1.0 / scale)
    to_out = np.linalg.inv(to_tmpl)
    shift = rng.uniform(-3, 3, 3) * np.array([1.0, 1.0, 0.3])
    extra = _ventricle_anatomy()
    lesions = _plan_lesions(rng, meta, tmpl, to_out, shift, extra.seed_pools)
    pushes = [(lz.centre, lz.mass_effect, lz.radius_mm * 1.3 + 6.0) for lz in lesions]
    # Ventricles from slit-like (young) to enlarged (older, atrophic): a radial push (or
    # pull) about each lateral ventricle.
    for c in extra.ventricle_centres:
        pushes.append((_CENTRE_OUT + shift + to_out @ (c - tmpl.centre),
                       float(rng.uniform(*recipe.ventricle_push)), 16.0))
    volumes: tuple[np.ndarray, ...] = (tmpl.t1, tmpl.gm, tmpl.wm, extra.ventricles)
    if shifted:
        volumes += (extra.choroid,)

    # Everything below works on the box that holds the warped brain, not the whole grid.
    corners = (_CENTRE_OUT + shift) + (to_out @ (tmpl.corners - tmpl.centre).T).T
    lo = np.maximum(np.floor(corners.min(0)) - 6, 0).astype(int)
    hi = np.minimum(np.ceil(corners.max(0)) + 7, SHAPE).astype(int)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    t1, gm, wm, *more = _warp_anatomy(rng, tmpl, to_tmpl, shift, pushes, box, volumes=volumes,
                                      recipe=recipe)
    brain = t1 > 0.5 * (28.0 / 255.0)  # half the darkest in-brain template value
    gm = np.clip(gm, 0, 1) * brain
    wm = np.clip(wm, 0, 1) * brain

    r_seg, region, tissue = _grow_tumours(rng, lesions, wm, brain, lo.astype(float))
    seg = np.zeros(t1.shape, np.uint8)
    seg[region] = r_seg
    if shifted:
        images = _synthesise_shifted(rng, gm, wm, brain, *more, tissue, region)
    else:
        images = _synthesise(rng, gm, wm, brain, more[0], tissue, region)

    out = {}
    for key, vol in zip(FILE_KEYS[:4], images, strict=True):
        # Integer units like BraTS's; each modality its own arbitrary scanner scale.
        units = np.clip(np.round(vol * np.float32(rng.uniform(*recipe.units))), 1, 32767)
        full = np.zeros(SHAPE, np.int16)
        full[box] = (units * brain).astype(np.int16)
        out[key] = full
    out["seg"] = np.zeros(SHAPE, np.uint8)
    out["seg"][box] = seg * brain
    return out


def _write_if_changed(path: Path, text: str) -> None:
    """Atomic write, skipped when the file already holds ``text``: rerunning on a finished
    cohort changes nothing (not even a modification time), and works on read-only media."""
    try:
        if path.read_text() == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)


def _is_own_temp(name: str, targets: tuple[str, ...]) -> bool:
    """A leftover temporary of an atomic write of one of ``targets`` (a killed run's)."""
    return name.startswith(".") and ".tmp" in name and any(
        name.startswith(f".{t}.") for t in targets)


def _read_marker(path: Path) -> dict | None:
    """The cohort marker at ``path`` if it is one this generator wrote, else ``None``."""
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(info, dict) or info.get("generator") != GENERATOR or \
            info.get("synthetic") is not True:
        return None
    return info


def _foreign_entries(out_dir: Path, previous_n: int | None, style: Style) -> list[str]:
    """Entries of a folder holding this generator's marker that it did not write."""
    top = (COHORT_FILE, *METADATA_FILES)
    foreign = []
    for entry in sorted(out_dir.iterdir(), key=lambda p: p.name):
        name = entry.name
        if name in top and entry.is_file() and not entry.is_symlink():
            continue
        if _is_own_temp(name, top):
            continue
        m = _CASE_RES[style].match(name)
        if m and entry.is_dir() and not entry.is_symlink() and (
                previous_n is None or int(m[1]) < previous_n):
            files = tuple(p.name for p in case_files(entry).values())
            foreign += [f"{name}/{p.name}" for p in sorted(entry.iterdir(), key=lambda p: p.name)
                        if not (p.name in files and p.is_file() and not p.is_symlink())
                        and not _is_own_temp(p.name, files)]
            continue
        foreign.append(name)
    return foreign


def _check_out_dir(out_dir: Path, *, n_cases: int, seed: int, style: Style) -> None:
    """Refuse, before anything is written, a folder this generator may not write into.

    Allowed: a folder that does not exist, an empty one, or one holding only what this
    generator wrote there (its marker, with the same seed and style and no more cases than
    asked for; a marker without a style is the demo style's, written before styles).
    Anything else may be a real dataset: writing the marker would label its cases synthetic
    and the metadata tables would replace its own.
    """
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if not out_dir.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(out_dir))
    entries = sorted(p.name for p in out_dir.iterdir())
    if not entries:
        return
    info = _read_marker(out_dir / COHORT_FILE)
    if info is None:
        foreign = entries
    else:
        previous_style = info.get("style", "demo")
        if previous_style != style:
            raise ConfigError(
                f"folder holds a cohort of style {previous_style!r}, got style {style!r}; "
                "use another folder or the same style",
                path=out_dir / COHORT_FILE,
            )
        previous = info.get("seed")
        if previous is not None and previous != seed:
            raise ConfigError(
                f"folder holds a demo cohort made with seed {previous}, got seed {seed}; "
                "use another folder or the same seed",
                path=out_dir / COHORT_FILE,
            )
        previous_n = info.get("n_cases") if _is_int(info.get("n_cases")) else None
        if previous_n is not None and previous_n > n_cases:
            raise ConfigError(
                f"holds a demo cohort of {previous_n} cases (seed {seed}), asked for {n_cases}; "
                f"ask for {previous_n} or more, or use another folder",
                path=out_dir,
            )
        foreign = _foreign_entries(out_dir, previous_n, style)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        entries_word = "entry" if len(foreign) == 1 else "entries"
        raise ConfigError(
            f"holds {len(foreign)} {entries_word} not written by {GENERATOR} ({shown}); "
            "choose an empty folder",
            path=out_dir,
        )


def _write_metadata(out_dir: Path, metas: list[_CaseMeta]) -> None:
    grades = io.StringIO()
    writer = csv.writer(grades, lineterminator="\n")
    writer.writerow(["Grade", "Subject_ID"])
    writer.writerows([m.grade, m.case_id] for m in metas)
    survival = io.StringIO()
    writer = csv.writer(survival, lineterminator="\n")
    writer.writerow(["Subject_ID", "Age", "Survival_days"])
    writer.writerows([m.case_id, f"{m.age_years:.3f}", m.survival_days] for m in metas)
    _write_if_changed(out_dir / "name_mapping.csv", grades.getvalue())
    _write_if_changed(out_dir / "survival_info.csv", survival.getvalue())


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def make_demo_cohort(out_dir: str | Path, *, n_cases: int = 20, seed: int = 0,
                     style: Style = "demo", progress: bool = True) -> list[Path]:
    """Write ``n_cases`` synthetic BraTS 2021-style cases into ``out_dir``; return their folders.

    Each case is the ICBM152 2009a template that ships with nilearn (no download), warped
    (scale, rotation, flip, elastic jitter, mass effect) and given one or more tumours:
    necrotic core (label 1) inside an enhancing rim (4) inside edema (2) that spreads along
    white matter. Files per case: ``<id>/<id>_{t1,t1ce,t2,flair,seg}.nii.gz``, shape
    ``SHAPE`` (240, 240, 155) in nibabel (i, j, k) order, 1 mm, :data:`AFFINE`; images int16,
    zero outside the brain; labels uint8 in {0, 1, 2, 4}. Beside them: ``name_mapping.csv``
    (Grade, Subject_ID), ``survival_info.csv`` (Subject_ID, Age, Survival_days) and
    ``tumorscope_cohort.json`` marking the cases it lists (``case_ids``) synthetic and naming
    the ``style``. Every write is atomic.

    ``style`` (one of :data:`STYLES`):

    - ``"demo"`` (ids ``TSDemo_00000``...): the training cohort, domain-randomised so that a
      model trained on it does not learn one scanner: every tissue of every case gets its
      own random mean per modality within broad ranges (SynthSeg-like,
      :func:`_draw_contrasts`; FLAIR CSF anything from nulled to brighter than white
      matter); bright structures that are not tumour (periventricular and deep
      white-matter hyperintensities, enhancing choroid plexus and vessels); head shapes,
      elastic warps and ventricle sizes that vary widely; mild bias and noise on the 1 mm
      grid (training augmentation adds the rest: bias fields, blur, thick slices, noise).
      Per ten cases: two LGG-like (no label 4), one small, two multifocal (2-3 foci), one
      each cystic, periventricular, cortical, patchily enhancing and standard.
    - ``"shifted"`` (ids ``TSShift_00000``...): an out-of-distribution test cohort, built
      differently and never to be trained on. Every image comes from MR signal equations
      (spin echo, inversion recovery, spoiled gradient echo) over per-case tissue T1/T2/PD
      (1.5 or 3 T) and per-case protocols, so contrast relations change from case to case
      (FLAIR CSF not always nulled, T1 of the spin-echo, gradient-echo or MPRAGE kind);
      white-matter hyperintensities, enhancing vessels and choroid plexus; 2-D sequences
      acquired with 3-6 mm slices along a random axis and resampled to 1 mm; stronger bias
      fields, noise, blur and ghosting; larger scaling, rotation and elastic warps and
      ventricles from slit-like to enlarged; cystic, non-enhancing, patchily enhancing,
      periventricular, cortical and up-to-three-focus tumours.

    Case ``i`` depends only on ``(seed, style, i)``: the same seed gives the same voxels, and a
    case whose five files all exist is skipped, so an interrupted run completes where it
    stopped and a finished one is left as it is (files unchanged). A cohort may be grown by
    asking for more cases with the same seed.

    ``out_dir`` must not exist, be empty, or hold only a cohort this function wrote: a folder
    with anything else in it (a real dataset, say) is refused before anything is written.
    Raises :class:`ConfigError` for a bad ``n_cases``, ``seed`` or ``style``, for such a
    folder, or when ``out_dir`` holds a cohort made with another seed or style or with more
    cases than asked for; :class:`NotADirectoryError` when ``out_dir`` is a file.

    >>> folders = make_demo_cohort("demo_data", n_cases=2, seed=0, progress=False)  # doctest: +SKIP
    >>> [f.name for f in folders]  # doctest: +SKIP
    ['TSDemo_00000', 'TSDemo_00001']
    >>> make_demo_cohort("ood", style="ood")
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: style must be one of ['demo', 'shifted'], got 'ood'
    """
    check_choice("style", style, STYLES)
    if not _is_int(n_cases) or not 1 <= n_cases <= MAX_CASES:
        raise ConfigError(f"n_cases must be an integer in 1..{MAX_CASES}, got {n_cases!r}")
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    n_cases, seed = int(n_cases), int(seed)
    out_dir = Path(out_dir)
    cohort_file = out_dir / COHORT_FILE
    _check_out_dir(out_dir, n_cases=n_cases, seed=seed, style=style)
    metas = [_case_meta(seed, i, style) for i in range(n_cases)]
    # The synthetic marker and metadata go first: a cohort interrupted half-way must never
    # look like patient data, and is recognised as this generator's on the next run.
    out_dir.mkdir(parents=True, exist_ok=True)
    # The marker lists the cases it stands for: only those read back as synthetic, so a
    # real case copied into this folder later is not taken for one of them.
    marker = {"synthetic": True, "generator": GENERATOR, "seed": seed, "n_cases": n_cases,
              "style": style, "case_ids": [m.case_id for m in metas], "note": NOTES[style]}
    _write_if_changed(cohort_file, json.dumps(marker, indent=2, sort_keys=True) + "\n")
    _write_metadata(out_dir, metas)

    folders = [out_dir / meta.case_id for meta in metas]
    missing = [meta for meta, folder in zip(metas, folders, strict=True)
               if not all(p.is_file() for p in case_files(folder).values())]
    # Each case is drawn from its own seeded streams, so worker processes (one per core)
    # write the same bytes as this process would. They are forked after the template is
    # loaded, so they share it instead of each loading it (1.2 s).
    if missing:
        _template()
        _ventricle_anatomy()
    unit = partial(_write_case, out_dir=out_dir, seed=seed)
    with tqdm(total=n_cases, initial=n_cases - len(missing), desc=f"{style} cases",
              unit="case", disable=not progress) as bar:
        for meta, outcome in each_in_workers(unit, missing):
            if isinstance(outcome, BaseException):
                raise outcome
            log.info("%s: written (%s, %s, %s style)", out_dir / meta.case_id, meta.grade,
                     meta.kind, style)
            bar.update(1)
    return folders


def _write_case(meta: _CaseMeta, *, out_dir: Path, seed: int) -> None:
    """One case's files, each written atomically (a worker's unit)."""
    volumes = _render_case(seed, meta)
    for key, path in case_files(out_dir / meta.case_id).items():
        write_nifti(path, volumes[key], AFFINE)
