"""Synthetic demo cohort: tumours grown in the ICBM152 template, written as BraTS 2021 cases."""

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
from functools import lru_cache
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi
from tqdm import tqdm

from tumorscope.core.data.cases import COHORT_FILE
from tumorscope.core.data.nifti import atomic_write_text, write_nifti
from tumorscope.core.errors import ConfigError, CorruptFileError

log = logging.getLogger(__name__)

SHAPE: tuple[int, int, int] = (240, 240, 155)
"""Array shape of every generated volume, as in BraTS 2020/2021 (i, j, k)."""

SPACING_MM: tuple[float, float, float] = (1.0, 1.0, 1.0)
"""Voxel size of every generated volume along i, j, k."""

AFFINE: np.ndarray = np.array(
    [[-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 239.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
"""Voxel -> mm affine of every generated volume: the one real BraTS files carry."""

CASE_PREFIX = "TSDemo"
FILE_KEYS: tuple[str, ...] = ("t1", "t1ce", "t2", "flair", "seg")
GENERATOR = "tumorscope demo-data"
NOTE = "synthetic tumours in ICBM152 anatomy, not patient data"
MAX_CASES = 99999
"""Most cases one cohort may hold (case ids have five digits)."""
METADATA_FILES: tuple[str, ...] = ("name_mapping.csv", "survival_info.csv")
"""The metadata tables written beside the cases (with the cohort marker ``COHORT_FILE``)."""

_CASE_RE = re.compile(rf"^{CASE_PREFIX}_(\d{{5}})$")

_TEMPLATE_FILES = {
    k: f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")
}

# Mean intensity of each tissue class per modality (t1, t1ce, t2, flair), in units where
# normal white matter on T1 is 1. Normal T1 comes from the template itself; these set the
# synthesised T2/FLAIR and every tumour class. Ratios follow the usual glioma appearance:
# necrosis dark on T1/T1ce and bright on T2, the rim bright on T1ce, edema brightest on FLAIR.
_NORMAL_T2_FLAIR = {"wm": (0.42, 0.52), "gm": (0.60, 0.70), "csf": (1.00, 0.10)}
_TUMOUR_CONTRAST = {
    "edema": (0.72, 0.75, 0.80, 1.05),
    "enhancing": (0.62, 1.70, 0.68, 0.85),
    "necrosis": (0.35, 0.38, 0.95, 0.55),
    "core_lgg": (0.58, 0.60, 0.88, 0.95),  # non-enhancing solid tumour (label 1, no label 4)
}
_T1_WM_TEMPLATE = 0.871  # mean template T1 (scaled to [0, 1]) where wm probability > 0.9

# Where the template's brain centre lands in the output grid, and the base scale that fits
# the template's 157 brain slices into BraTS's 155.
_CENTRE_OUT = np.array([119.5, 119.5, 77.0])
_BASE_SCALE = 0.95


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
    kind: str  # "standard", "small", "multifocal" or "lgg"
    grade: str
    age_years: float
    survival_days: int


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


def case_id(index: int) -> str:
    """Folder and file stem of case ``index``.

    >>> case_id(7)
    'TSDemo_00007'
    """
    return f"{CASE_PREFIX}_{index:05d}"


def case_files(folder: str | Path) -> dict[str, Path]:
    """The five files of the case in ``folder``, keyed by ``FILE_KEYS``."""
    folder = Path(folder)
    return {k: folder / f"{folder.name}_{k}.nii.gz" for k in FILE_KEYS}


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    # One independent stream per (cohort seed, case, purpose): a case never depends on
    # how many cases came before it, so an interrupted cohort completes identically.
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(index, stream)))


def _kind(seed: int, index: int) -> str:
    # Kinds are dealt from a shuffled block of ten, so every ten cases hold exactly one
    # LGG-like, two small and two multifocal cases, whatever the seed.
    block = ["lgg", "small", "small", "multifocal", "multifocal"] + ["standard"] * 5
    order = _rng(seed, index // 10, 2**20).permutation(len(block))
    return block[int(order[index % 10])]


def _case_meta(seed: int, index: int) -> _CaseMeta:
    rng = _rng(seed, index, 0)
    kind = _kind(seed, index)
    grade = "LGG" if kind == "lgg" else "HGG"
    age = rng.normal(42.0, 12.0) if grade == "LGG" else rng.normal(61.0, 11.0)
    median_days = 1400.0 if grade == "LGG" else 420.0
    survival = median_days * math.exp(rng.normal(0.0, 0.6))
    return _CaseMeta(case_id(index), index, kind, grade, round(float(np.clip(age, 19, 86)), 3),
                     int(np.clip(round(survival), 5, 4000)))


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


def _plan_lesions(rng: np.random.Generator, meta: _CaseMeta, tmpl: _Template,
                  to_out: np.ndarray, shift: np.ndarray) -> list[_Lesion]:
    """Lesion centres are drawn in template space (deep white matter) then mapped to output."""
    sizes = {  # core radius and edema reach in mm, drawn uniformly in these ranges
        "small": ((5.5, 9.0), (4.0, 12.0)),
        "lgg": ((9.0, 18.0), (3.0, 10.0)),
        "multifocal": ((10.0, 18.0), (5.0, 14.0)),
        "standard": ((13.0, 24.0), (5.0, 16.0)),
    }[meta.kind]
    n_lesions = 2 if meta.kind == "multifocal" else 1
    radii = [rng.uniform(*sizes[0]) for _ in range(n_lesions)]
    edemas = [rng.uniform(*sizes[1]) for _ in range(n_lesions)]
    if n_lesions == 2:  # the satellite is smaller than the main lesion
        radii[1] *= rng.uniform(0.45, 0.75)
        edemas[1] *= rng.uniform(0.6, 0.9)

    left = tmpl.seeds[:, 0] < tmpl.centre[0]
    pool = tmpl.seeds[left if rng.random() < 0.5 else ~left]
    centres = [pool[rng.integers(len(pool))]]
    if n_lesions == 2:
        # Far enough apart that the two cores stay separate (perturbed ellipsoids reach
        # about 1.4 radii), near enough to look like one multifocal disease.
        gap = 1.45 * (radii[0] + radii[1]) / _BASE_SCALE + 4.0
        dist = np.linalg.norm(tmpl.seeds - centres[0], axis=1)
        near = tmpl.seeds[(dist > gap) & (dist < gap + 25.0)]
        far = tmpl.seeds[dist > gap]
        options = near if len(near) else far if len(far) else tmpl.seeds
        centres.append(options[rng.integers(len(options))])
    lesions = []
    for q, radius, edema in zip(centres, radii, edemas, strict=True):
        enhancing = meta.kind != "lgg"
        necrosis = rng.uniform(0.45, 0.75) if enhancing and radius > 6.0 else 0.0
        lesions.append(_Lesion(
            centre=_CENTRE_OUT + shift + to_out @ (q - tmpl.centre),
            radius_mm=float(radius),
            axes=rng.uniform(0.75, 1.25, 3),
            rotation=_rotation(rng.uniform(-np.pi, np.pi, 3)),
            necrosis_frac=float(necrosis),
            edema_mm=float(edema),
            enhancing=enhancing,
            mass_effect=float(rng.uniform(0.25, 0.45) if radius > 8 else rng.uniform(0.1, 0.2)),
        ))
    return lesions


def _warp_anatomy(rng: np.random.Generator, tmpl: _Template, to_tmpl: np.ndarray,
                  shift: np.ndarray, lesions: list[_Lesion], box: tuple[slice, ...]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """T1, GM and WM pulled from the template onto the output ``box`` through one map.

    The map composes, from output to template: a mass-effect push away from each lesion
    centre, a smooth elastic jitter, and the case's affine (scale, rotation, flip, shift).
    All of it is smooth, so coordinates are computed on a 2 mm grid and resized linearly.
    """
    shape = tuple(s.stop - s.start for s in box)
    coarse = tuple(math.ceil((n - 1) / 2) + 1 for n in shape)
    axes_1d = [np.linspace(s.start, s.stop - 1, c) for s, c in zip(box, coarse, strict=True)]
    p = np.stack(np.meshgrid(*axes_1d, indexing="ij"))  # (3, *coarse) output voxels
    src = p.copy()
    for lesion in lesions:
        offset = p - lesion.centre[:, None, None, None]
        r2 = np.sum(offset**2, axis=0)
        sigma = lesion.radius_mm * 1.3 + 6.0
        # Sampling closer to the centre than we are stretches the tissue outward; the factor
        # stays below 1 so the radial map is monotonic (no folding).
        src -= lesion.mass_effect * offset * np.exp(-r2 / (2 * sigma**2))
    elastic = np.stack([_smooth_noise(rng, coarse, step_vox=12, sigma_steps=0.8)
                        for _ in range(3)])
    src += elastic * rng.uniform(1.0, 2.5)
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
    for vol in (tmpl.t1, tmpl.gm, tmpl.wm):
        full = np.zeros(shape, np.float32)
        full[where] = ndi.map_coordinates(vol, coords, order=1, mode="constant", cval=0.0,
                                          prefilter=False)
        out.append(full)
    return tuple(out)  # type: ignore[return-value]


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
    core = (rho + 0.18 * bumps < 1.0) & brain
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
                  brain: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Label map of all lesions on the one region of the brain box that covers them.

    Returns the region's labels (uint8, canonical values) and its slices in the box whose
    first voxel is ``origin`` (output voxels). Growing on this region rather than the whole
    box is what keeps a case fast.
    """
    reach = np.array([lz.radius_mm * 1.5 + lz.edema_mm * 1.8 + 6 for lz in lesions])
    centres = np.array([lz.centre for lz in lesions]) - origin
    r_lo = np.maximum(np.floor((centres - reach[:, None]).min(0)), 0).astype(int)
    r_hi = np.minimum(np.ceil((centres + reach[:, None]).max(0)), wm.shape).astype(int)
    region = tuple(slice(int(a), int(b)) for a, b in zip(r_lo, r_hi, strict=True))
    shape = tuple(int(b - a) for a, b in zip(r_lo, r_hi, strict=True))
    core = np.zeros(shape, bool)
    necrosis = np.zeros(shape, bool)
    edema = np.zeros(shape, bool)
    for lesion in lesions:
        c, n, e = _grow_lesion(rng, lesion, origin + r_lo, shape, wm[region], brain[region])
        core |= c
        necrosis |= n
        edema |= e
    seg = np.zeros(shape, np.uint8)
    seg[edema] = 2
    seg[core] = 4 if lesions[0].enhancing else 1
    seg[necrosis] = 1
    return seg, region


def _synthesise(rng: np.random.Generator, t1: np.ndarray, gm: np.ndarray, wm: np.ndarray,
                brain: np.ndarray, seg: np.ndarray, region: tuple[slice, ...],
                enhancing: bool) -> list[np.ndarray]:
    """T1, T1ce, T2 and FLAIR on the brain box (float32, zero outside ``brain``).

    Normal tissue: T1 is the template's own; T2 and FLAIR are mixed from the GM/WM/CSF
    fractions. Tumour classes replace tissue by their blurred (partial-volume) fractions,
    then each modality gets its own smooth bias field and Rician noise.
    """
    csf = np.clip(1.0 - gm - wm, 0, 1) * brain
    classes = {"edema": seg == 2}
    if enhancing:
        classes.update(enhancing=seg == 4, necrosis=seg == 1)
    else:
        classes.update(core_lgg=seg == 1)
    frac = {k: ndi.gaussian_filter(m.astype(np.float32), 0.6) for k, m in classes.items()}
    tumour_total = np.clip(sum(frac.values()), 0, 1)
    texture = 1.0 + 0.07 * _smooth_noise(rng, seg.shape, step_vox=2, sigma_steps=1.0)
    jitter = rng.uniform(0.94, 1.06, (len(_TUMOUR_CONTRAST), 4))
    t1n = t1 / np.float32(_T1_WM_TEMPLATE)

    def mix(m: int) -> np.ndarray:
        return sum(np.float32(_NORMAL_T2_FLAIR[k][m]) * p
                   for k, p in (("wm", wm), ("gm", gm), ("csf", csf)))

    normal = [t1n, t1n**0.85, mix(0), mix(1)]  # post-contrast T1: a little less GM/WM contrast
    sigma_noise = np.float32(rng.uniform(0.015, 0.035))
    images = []
    for m, vol in enumerate(normal):
        tumour = np.zeros(seg.shape, np.float32)
        for c, (cls, means) in enumerate(_TUMOUR_CONTRAST.items()):
            if cls in frac:
                tumour += frac[cls] * np.float32(means[m] * jitter[c, m])
        vol = vol.copy()
        vol[region] = vol[region] * (1.0 - tumour_total) + tumour * texture
        vol *= np.exp(0.08 * _smooth_noise(rng, vol.shape, step_vox=24, sigma_steps=0.7))
        # Rician noise: magnitude of a complex signal with Gaussian noise on both parts.
        n_re = rng.standard_normal(vol.shape, dtype=np.float32) * sigma_noise
        n_im = rng.standard_normal(vol.shape, dtype=np.float32) * sigma_noise
        images.append(np.sqrt((vol + n_re) ** 2 + n_im**2) * brain)
    return images


def _render_case(seed: int, meta: _CaseMeta) -> dict[str, np.ndarray]:
    """All five volumes of one case, full ``SHAPE``: four int16 images and a uint8 label map."""
    rng = _rng(seed, meta.index, 1)
    tmpl = _template()
    scale = _BASE_SCALE * rng.uniform(0.95, 1.04, 3)
    scale[2] = min(scale[2], 0.97)  # taller would not fit 155 slices
    flip = np.diag([-1.0, -1.0, 1.0])  # output i, j run against RAS x, y (BraTS affine)
    if rng.random() < 0.5:
        flip[0, 0] = 1.0  # mirror left-right: the sym template makes either side anatomical
    to_tmpl = flip @ _rotation(np.deg2rad(rng.uniform(-6, 6, 3))) @ np.diag(1.0 / scale)
    to_out = np.linalg.inv(to_tmpl)
    shift = rng.uniform(-3, 3, 3) * np.array([1.0, 1.0, 0.3])
    lesions = _plan_lesions(rng, meta, tmpl, to_out, shift)

    # Everything below works on the box that holds the warped brain, not the whole grid.
    corners = (_CENTRE_OUT + shift) + (to_out @ (tmpl.corners - tmpl.centre).T).T
    lo = np.maximum(np.floor(corners.min(0)) - 6, 0).astype(int)
    hi = np.minimum(np.ceil(corners.max(0)) + 7, SHAPE).astype(int)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    t1, gm, wm = _warp_anatomy(rng, tmpl, to_tmpl, shift, lesions, box)
    brain = t1 > 0.5 * (28.0 / 255.0)  # half the darkest in-brain template value
    gm = np.clip(gm, 0, 1) * brain
    wm = np.clip(wm, 0, 1) * brain

    r_seg, region = _grow_tumours(rng, lesions, wm, brain, lo.astype(float))
    seg = np.zeros(t1.shape, np.uint8)
    seg[region] = r_seg
    images = _synthesise(rng, t1, gm, wm, brain, r_seg, region, lesions[0].enhancing)

    out = {}
    for key, vol in zip(FILE_KEYS[:4], images, strict=True):
        # Integer units like BraTS's; each modality its own arbitrary scanner scale.
        units = np.clip(np.round(vol * np.float32(rng.uniform(350.0, 900.0))), 1, 32767)
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


def _foreign_entries(out_dir: Path, previous_n: int | None) -> list[str]:
    """Entries of a folder holding this generator's marker that it did not write."""
    top = (COHORT_FILE, *METADATA_FILES)
    foreign = []
    for entry in sorted(out_dir.iterdir(), key=lambda p: p.name):
        name = entry.name
        if name in top and entry.is_file() and not entry.is_symlink():
            continue
        if _is_own_temp(name, top):
            continue
        m = _CASE_RE.match(name)
        if m and entry.is_dir() and not entry.is_symlink() and (
                previous_n is None or int(m[1]) < previous_n):
            files = tuple(p.name for p in case_files(entry).values())
            foreign += [f"{name}/{p.name}" for p in sorted(entry.iterdir(), key=lambda p: p.name)
                        if not (p.name in files and p.is_file() and not p.is_symlink())
                        and not _is_own_temp(p.name, files)]
            continue
        foreign.append(name)
    return foreign


def _check_out_dir(out_dir: Path, *, n_cases: int, seed: int) -> None:
    """Refuse, before anything is written, a folder this generator may not write into.

    Allowed: a folder that does not exist, an empty one, or one holding only what this
    generator wrote there (its marker, with the same seed and no more cases than asked for).
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
        foreign = _foreign_entries(out_dir, previous_n)
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
                     progress: bool = True) -> list[Path]:
    """Write ``n_cases`` synthetic BraTS 2021-style cases into ``out_dir``; return their folders.

    Each case is the ICBM152 2009a template that ships with nilearn (no download), warped
    (scale, rotation, flip, elastic jitter, mass effect) and given one or two tumours:
    necrotic core (label 1) inside an enhancing rim (4) inside edema (2) that spreads along
    white matter. About 10 % of cases are LGG-like (no label 4), 20 % small, 20 % multifocal.
    Files per case: ``TSDemo_00000/TSDemo_00000_{t1,t1ce,t2,flair,seg}.nii.gz``, shape
    ``SHAPE`` (240, 240, 155) in nibabel (i, j, k) order, 1 mm, :data:`AFFINE`; images int16,
    zero outside the brain; labels uint8 in {0, 1, 2, 4}. Beside them: ``name_mapping.csv``
    (Grade, Subject_ID), ``survival_info.csv`` (Subject_ID, Age, Survival_days) and
    ``tumorscope_cohort.json`` marking the cases it lists (``case_ids``) synthetic. Every
    write is atomic.

    Case ``i`` depends only on ``(seed, i)``: the same seed gives the same voxels, and a case
    whose five files all exist is skipped, so an interrupted run completes where it stopped
    and a finished one is left as it is (files unchanged). A cohort may be grown by asking
    for more cases with the same seed.

    ``out_dir`` must not exist, be empty, or hold only a cohort this function wrote: a folder
    with anything else in it (a real dataset, say) is refused before anything is written.
    Raises :class:`ConfigError` for a bad ``n_cases`` or ``seed``, for such a folder, or when
    ``out_dir`` holds a cohort made with another seed or with more cases than asked for;
    :class:`NotADirectoryError` when ``out_dir`` is a file.

    >>> folders = make_demo_cohort("demo_data", n_cases=2, seed=0, progress=False)  # doctest: +SKIP
    >>> [f.name for f in folders]  # doctest: +SKIP
    ['TSDemo_00000', 'TSDemo_00001']
    """
    if not _is_int(n_cases) or not 1 <= n_cases <= MAX_CASES:
        raise ConfigError(f"n_cases must be an integer in 1..{MAX_CASES}, got {n_cases!r}")
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    n_cases, seed = int(n_cases), int(seed)
    out_dir = Path(out_dir)
    cohort_file = out_dir / COHORT_FILE
    _check_out_dir(out_dir, n_cases=n_cases, seed=seed)
    metas = [_case_meta(seed, i) for i in range(n_cases)]
    # The synthetic marker and metadata go first: a cohort interrupted half-way must never
    # look like patient data, and is recognised as this generator's on the next run.
    out_dir.mkdir(parents=True, exist_ok=True)
    # The marker lists the cases it stands for: only those read back as synthetic, so a
    # real case copied into this folder later is not taken for one of them.
    marker = {"synthetic": True, "generator": GENERATOR, "seed": seed, "n_cases": n_cases,
              "case_ids": [m.case_id for m in metas], "note": NOTE}
    _write_if_changed(cohort_file, json.dumps(marker, indent=2, sort_keys=True) + "\n")
    _write_metadata(out_dir, metas)

    folders = []
    for meta in tqdm(metas, desc="demo cases", unit="case", disable=not progress):
        folder = out_dir / meta.case_id
        files = case_files(folder)
        folders.append(folder)
        if all(p.is_file() for p in files.values()):
            log.debug("%s: all files present, skipped", folder)
            continue
        volumes = _render_case(seed, meta)
        for key, path in files.items():
            write_nifti(path, volumes[key], AFFINE)
        log.info("%s: written (%s, %s)", folder, meta.grade, meta.kind)
    return folders
