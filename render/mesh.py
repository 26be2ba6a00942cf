"""Tumour, error and brain surfaces in world millimetres (VTK SurfaceNets).

Label maps are nibabel-ordered ``(X, Y, Z)`` arrays; ``affine`` is the (4, 4) voxel -> mm
matrix of their NIfTI file (RAS+ world). Surfaces come back as :class:`pyvista.PolyData` in
world mm with outward point normals, whatever the affine's flips or spacing, so that
``mesh.volume`` is in mm^3 (ml x 1000) and two surfaces of one case overlay exactly.

Mesh names: the regions ``"WT"``, ``"TC"``, ``"ET"`` and the raw canonical labels
``"label_1"``, ``"label_2"``, ``"label_4"``; ``"FP"`` / ``"FN"`` for voxel errors. Their disk
cache in a run is :mod:`tumorscope.render.mesh_cache`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pyvista as pv
from scipy import ndimage
from vtkmodules.vtkFiltersCore import vtkQuadricClustering, vtkSurfaceNets3D

from tumorscope.core.data.labels import LABEL_NAMES, REGIONS, region_mask
from tumorscope.core.data.volumes import bounding_box
from tumorscope.core.errors import ConfigError, GeometryError

LABEL_MESH_NAMES: tuple[str, ...] = tuple(f"label_{v}" for v in LABEL_NAMES if v != 0)
MESH_NAMES: tuple[str, ...] = (*REGIONS, *LABEL_MESH_NAMES)
"""Every name :func:`region_meshes` accepts: regions first, then raw labels."""

DISTANCE_ARRAY = "signed_distance_mm"


def _check_geometry(array: np.ndarray, affine: np.ndarray, what: str) -> np.ndarray:
    if np.ndim(array) != 3:
        raise GeometryError(f"{what} must be a 3-D (X, Y, Z) array, got shape {np.shape(array)}")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise GeometryError(f"affine must be a (4, 4) voxel->mm matrix, got shape {affine.shape}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise GeometryError(f"affine is singular (zero voxel volume): {affine[:3, :3].tolist()}")
    return affine


def check_names(names: Iterable[str], allowed: Sequence[str]) -> tuple[str, ...]:
    names = tuple(names)
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ConfigError(f"unknown mesh name(s) {bad}; expected any of {list(allowed)}")
    return names


def is_empty(mesh: pv.PolyData | None) -> bool:
    """True for ``None`` or a mesh without points: what every view and export leaves out.

    >>> is_empty(None), is_empty(pv.PolyData()), is_empty(pv.Sphere())
    (True, True, False)
    """
    return mesh is None or mesh.n_points == 0


def as_triangles(mesh: pv.PolyData) -> pv.PolyData:
    """``mesh`` itself if every cell is a triangle, else a triangulated copy (for GLB, plotly).

    >>> as_triangles(pv.Plane()).is_all_triangles
    True
    """
    return mesh if mesh.is_all_triangles else mesh.triangulate()


def name_mask(label: np.ndarray, name: str) -> np.ndarray:
    """Boolean mask of mesh ``name`` ("WT", "TC", "ET", "label_1", ...) in a canonical label map.

    >>> name_mask(np.array([0, 1, 2, 4]), "TC").tolist()
    [False, True, False, True]
    >>> name_mask(np.array([0, 1, 2, 4]), "label_2").tolist()
    [False, False, True, False]
    """
    check_names([name], MESH_NAMES)
    if name in REGIONS:
        return region_mask(label, name)
    return np.asarray(label) == int(name.removeprefix("label_"))


def _index_surface(
    mask: np.ndarray,
    start_vox: Sequence[int],
    *,
    smooth_iterations: int,
    smooth_passband: float,
    decimate_fraction: float,
) -> pv.PolyData:
    """Surface of a (cropped) mask in voxel index coordinates of the full grid."""
    # One zero voxel all round closes the surface where the mask touches the crop or grid edge.
    padded = np.pad(mask.astype(np.uint8), 1)
    origin = np.asarray(start_vox, dtype=float) - 1.0
    image = pv.ImageData(dimensions=padded.shape, origin=tuple(origin), spacing=(1.0, 1.0, 1.0))
    image.point_data["mask"] = padded.ravel(order="F")
    image.point_data.active_scalars_name = "mask"

    nets = vtkSurfaceNets3D()
    nets.SetInputData(image)
    nets.SetValue(0, 1)
    nets.SetOutputMeshTypeToTriangles()
    # SurfaceNets' own smoothing shrinks small structures; windowed sinc below keeps volume.
    nets.SetSmoothing(False)
    nets.Update()
    surface = pv.wrap(nets.GetOutput())
    surface.clear_data()
    if surface.n_points == 0:
        return pv.PolyData()
    # Smoothing in voxel units, before the affine: the staircase to remove is one voxel high
    # along every axis, whatever the spacing in mm.
    if smooth_iterations > 0:
        surface = surface.smooth_taubin(
            n_iter=smooth_iterations, pass_band=smooth_passband, normalize_coordinates=True
        )
    if decimate_fraction > 0:
        surface = surface.decimate(decimate_fraction)
    return surface


def _to_world(surface: pv.PolyData, affine: np.ndarray) -> pv.PolyData:
    """Apply the affine to index-space points; keep normals outward when the affine flips."""
    if surface.n_points == 0:
        return pv.PolyData()
    points = surface.points.astype(np.float64) @ affine[:3, :3].T + affine[:3, 3]
    faces = surface.regular_faces
    # SurfaceNets orients triangles outward in index space; an odd number of flipped axes
    # (negative determinant, e.g. BraTS' LPS-like x and y) mirrors the winding.
    if np.linalg.det(affine[:3, :3]) < 0:
        faces = faces[:, ::-1]
    world = pv.PolyData.from_regular_faces(points.astype(np.float32), faces)
    return world.compute_normals(
        cell_normals=False, point_normals=True, split_vertices=False,
        consistent_normals=False, auto_orient_normals=False,
    )


def mask_surface(
    mask: np.ndarray,
    affine: np.ndarray,
    *,
    smooth_iterations: int = 30,
    smooth_passband: float = 0.05,
    decimate_fraction: float = 0.0,
) -> pv.PolyData:
    """Closed surface of a binary ``mask`` ``(X, Y, Z)`` in world mm, with outward normals.

    Runs ``vtkSurfaceNets3D`` on the mask's bounding box (plus one voxel) only, then
    windowed-sinc smoothing (``smooth_iterations`` = 0 turns it off; ``smooth_passband``
    in (0, 2], lower is smoother), then optional quadric decimation removing
    ``decimate_fraction`` of the triangles. The defaults keep a sphere's volume to the
    voxel count and its area within ~2 % of 4 pi r^2. An empty mask gives an empty mesh.

    >>> m = np.zeros((20, 20, 20), bool); m[5:15, 5:15, 5:15] = True
    >>> s = mask_surface(m, np.diag([-2.0, 2.0, 2.0, 1.0]))
    >>> round(s.volume / 8, -1)  # mm^3 -> voxels of 2 x 2 x 2 mm; the corners are rounded
    1000.0
    >>> mask_surface(np.zeros((4, 4, 4), bool), np.eye(4)).n_points
    0
    """
    affine = _check_geometry(mask, affine, "mask")
    if smooth_iterations < 0 or not 0 < smooth_passband <= 2:
        raise ConfigError(
            f"need smooth_iterations >= 0 and 0 < smooth_passband <= 2, got "
            f"{smooth_iterations} and {smooth_passband}")
    if not 0 <= decimate_fraction < 1:
        raise ConfigError(f"decimate_fraction must be in [0, 1), got {decimate_fraction}")
    mask = np.asarray(mask) != 0
    if not mask.any():
        return pv.PolyData()
    box = bounding_box(mask)
    surface = _index_surface(
        mask[box.slices], box.start, smooth_iterations=smooth_iterations,
        smooth_passband=smooth_passband, decimate_fraction=decimate_fraction,
    )
    return _to_world(surface, affine)


def region_meshes(
    label: np.ndarray,
    affine: np.ndarray,
    *,
    names: Iterable[str] = REGIONS,
    smooth_iterations: int = 30,
    smooth_passband: float = 0.05,
    decimate_fraction: float = 0.0,
) -> dict[str, pv.PolyData]:
    """One world-mm surface per requested region / raw label of a canonical label map.

    ``label`` is ``(X, Y, Z)`` with values {0, 1, 2, 4}; ``names`` any of :data:`MESH_NAMES`.
    Absent regions give empty meshes. Smoothing options as in :func:`mask_surface`.

    >>> lab = np.zeros((30, 30, 30), np.uint8)
    >>> lab[5:25, 5:25, 5:25] = 2; lab[10:20, 10:20, 10:20] = 4
    >>> meshes = region_meshes(lab, np.eye(4), names=["WT", "ET", "label_1"])
    >>> [round(meshes[n].volume, -2) for n in meshes]
    [8000.0, 1000.0, 0.0]
    """
    names = check_names(names, MESH_NAMES)
    affine = _check_geometry(label, affine, "label")
    label = np.asarray(label)
    box = bounding_box(label != 0)
    sub = label[box.slices]
    meshes: dict[str, pv.PolyData] = {}
    for name in names:
        mask = name_mask(sub, name)
        if not mask.any():
            meshes[name] = pv.PolyData()
            continue
        inner = bounding_box(mask)
        start = tuple(a + b for a, b in zip(box.start, inner.start, strict=True))
        surface = _index_surface(
            mask[inner.slices], start, smooth_iterations=smooth_iterations,
            smooth_passband=smooth_passband, decimate_fraction=decimate_fraction,
        )
        meshes[name] = _to_world(surface, affine)
    return meshes


def simplify(mesh: pv.PolyData, *, cell_mm: float) -> pv.PolyData:
    """Coarser copy of a world-mm surface: about one vertex per ``cell_mm`` cube.

    Quadric clustering (``vtkQuadricClustering``): some 40x faster than quadric decimation
    and plenty for context surfaces and wireframe cages; keeps the outward winding and
    recomputes normals. Empty in, empty out.

    >>> s = simplify(pv.Sphere(radius=50.0, theta_resolution=120, phi_resolution=120), cell_mm=10)
    >>> s.n_cells < 2000, round(s.volume / pv.Sphere(radius=50.0).volume, 1)
    (True, 1.0)
    """
    if not cell_mm > 0:
        raise ConfigError(f"cell_mm must be > 0, got {cell_mm}")
    if mesh.n_points == 0:
        return pv.PolyData()
    extent = np.ptp(np.asarray(mesh.bounds, dtype=float).reshape(3, 2), axis=1)
    divisions = np.maximum(np.ceil(extent / cell_mm), 1).astype(int)
    clustering = vtkQuadricClustering()
    clustering.SetInputData(mesh)
    clustering.AutoAdjustNumberOfDivisionsOff()
    clustering.SetNumberOfDivisions(*(int(d) for d in divisions))
    clustering.UseInputPointsOn()
    clustering.Update()
    out = pv.wrap(clustering.GetOutput())
    out.clear_data()
    return out.compute_normals(
        cell_normals=False, point_normals=True, split_vertices=False,
        consistent_normals=False, auto_orient_normals=False,
    )


SIMPLIFY_VERSION = 1
"""Bumped whenever :func:`simplify` or :func:`simplify_to` would give other triangles: the
disk cache of simplified surfaces (:func:`~tumorscope.render.mesh_cache.cached_display_meshes`)
keys on it."""


def simplify_to(mesh: pv.PolyData, *, max_triangles: int) -> pv.PolyData:
    """``mesh`` itself if it has at most ``max_triangles`` cells, else a clustered copy of
    about that size (within 1.5x), through :func:`simplify`.

    For browsers and exported pages: quadric decimation takes ~12 s on the 1M-triangle
    surface of a noisy prediction, vertex clustering ~0.2 s. Point arrays are dropped from a
    simplified copy.

    >>> s = pv.Sphere(radius=50.0, theta_resolution=200, phi_resolution=200)
    >>> small = simplify_to(s, max_triangles=5_000)
    >>> small.n_cells <= 7_500, simplify_to(small, max_triangles=10_000) is small
    (True, True)
    """
    if max_triangles < 1:
        raise ConfigError(f"max_triangles must be >= 1, got {max_triangles}")
    if mesh.n_cells <= max_triangles:
        return mesh
    # About two triangles per clustering cell on a surface: cell = sqrt(2 * area / target).
    cell_mm = max(0.5, float(np.sqrt(2.0 * mesh.area / max_triangles)))
    simplified = simplify(mesh, cell_mm=cell_mm)
    while simplified.n_cells > 1.5 * max_triangles:  # folded, noisy surfaces need coarser
        cell_mm *= 1.5
        simplified = simplify(mesh, cell_mm=cell_mm)
    return simplified


def brain_surface(
    image: np.ndarray,
    affine: np.ndarray,
    *,
    threshold: float = 0.0,
    downsample: int = 2,
    smooth_iterations: int = 20,
    simplify_mm: float | None = None,
) -> pv.PolyData:
    """Outer brain surface for low-opacity context, from a skull-stripped image or a mask.

    ``image`` ``(X, Y, Z)``: voxels ``> threshold`` are brain (BraTS images are zero outside
    the brain; a bool mask works as is). The mask is block-averaged ``downsample`` x per axis
    (a coarse, light mesh is what context needs), holes are filled so that ventricles and the
    tumour do not add inner surfaces, and the surface is smoothed and, if ``simplify_mm``
    is given, simplified to about one vertex per ``simplify_mm`` cube (at 2x downsampling
    a BraTS brain is ~60k triangles, cheap to draw; clustering leaves visible facets).

    >>> img = np.zeros((40, 40, 40)); img[8:32, 6:34, 10:30] = 100.0
    >>> s = brain_surface(img, np.eye(4))
    >>> round(s.volume / (24 * 28 * 20), 1)
    1.0
    """
    affine = _check_geometry(image, affine, "image")
    if downsample < 1:
        raise ConfigError(f"downsample must be an integer >= 1, got {downsample}")
    mask = np.asarray(image) > threshold
    if not mask.any():
        return pv.PolyData()
    box = bounding_box(mask)
    mask = mask[box.slices]
    f = int(downsample)
    if f > 1:
        pad = [(0, (-s) % f) for s in mask.shape]
        m = np.pad(mask, pad).astype(np.float32)
        sx, sy, sz = (s // f for s in m.shape)
        mask = m.reshape(sx, f, sy, f, sz, f).mean(axis=(1, 3, 5)) >= 0.5
    mask = ndimage.binary_fill_holes(mask)
    # Coarse voxel b covers fine voxels f*b .. f*b+f-1 of the crop: centre f*b + (f-1)/2.
    coarse = np.diag([f, f, f, 1.0])
    coarse[:3, 3] = np.asarray(box.start, dtype=float) + (f - 1) / 2
    surface = mask_surface(mask, affine @ coarse, smooth_iterations=smooth_iterations)
    return surface if simplify_mm is None else simplify(surface, cell_mm=simplify_mm)


def signed_distance_mm(surface: pv.PolyData, reference: pv.PolyData) -> pv.PolyData:
    """Copy of ``surface`` whose points carry their signed distance (mm) to ``reference``.

    The point array ``"signed_distance_mm"`` is > 0 where the point lies outside the closed
    ``reference`` surface and < 0 inside (``vtkImplicitPolyDataDistance``: exact distance to
    the reference's triangles, sign from its outward normals, as :func:`mask_surface` makes
    them). With ``surface`` = prediction and ``reference`` = truth, > 0 is over-segmentation
    and < 0 under-segmentation; the other way round (truth against prediction) > 0 marks
    truth the prediction missed. An empty ``reference`` gives NaN everywhere; an empty
    ``surface`` an empty mesh with an empty array.

    >>> a = mask_surface(np.pad(np.ones((10, 10, 10), bool), 5), np.eye(4))
    >>> b = mask_surface(np.pad(np.ones((14, 14, 14), bool), 3), np.eye(4))
    >>> d = signed_distance_mm(a, b)["signed_distance_mm"]
    >>> bool(-2.5 < d.mean() < -1.5)
    True
    """
    out = surface.copy()
    if out.n_points == 0:
        out.point_data[DISTANCE_ARRAY] = np.zeros(0, dtype=np.float32)
        return out
    if reference.n_points == 0:
        out.point_data[DISTANCE_ARRAY] = np.full(out.n_points, np.nan, dtype=np.float32)
        return out
    probe = pv.PolyData(out.points).compute_implicit_distance(reference)
    out.point_data[DISTANCE_ARRAY] = np.asarray(probe["implicit_distance"], dtype=np.float32)
    out.point_data.active_scalars_name = DISTANCE_ARRAY
    return out


def error_meshes(
    prediction: np.ndarray,
    truth: np.ndarray,
    affine: np.ndarray,
    *,
    name: str = "WT",
    smooth_iterations: int = 15,
    smooth_passband: float = 0.05,
) -> dict[str, pv.PolyData]:
    """False-positive and false-negative voxels of one region as surfaces ``{"FP", "FN"}``.

    ``prediction`` and ``truth`` are canonical label maps ``(X, Y, Z)`` on one grid;
    ``name`` any of :data:`MESH_NAMES`. FP = predicted and not true, FN = true and missed.
    Error shells are often one voxel thin, hence lighter default smoothing.

    >>> t = np.zeros((20, 20, 20), np.uint8); t[5:15, 5:15, 5:15] = 2
    >>> p = np.zeros_like(t); p[5:15, 5:15, 5:16] = 2
    >>> e = error_meshes(p, t, np.eye(4))
    >>> bool(90 < e["FP"].volume <= 100), e["FN"].n_points
    (True, 0)
    """
    return difference_meshes(prediction, truth, affine, name=name, keys=("FP", "FN"),
                             what=("prediction", "truth"), smooth_iterations=smooth_iterations,
                             smooth_passband=smooth_passband)


def difference_meshes(
    first: np.ndarray,
    second: np.ndarray,
    affine: np.ndarray,
    *,
    name: str = "WT",
    keys: tuple[str, str] = ("A_only", "B_only"),
    what: tuple[str, str] = ("run A's prediction", "run B's prediction"),
    smooth_iterations: int = 15,
    smooth_passband: float = 0.05,
) -> dict[str, pv.PolyData]:
    """Voxels of region ``name`` in ``first`` and not ``second``, and the reverse, as
    surfaces named ``keys`` (by default two runs' predictions: ``{"A_only", "B_only"}``).

    Both are canonical label maps ``(X, Y, Z)`` on the grid of ``affine``; ``what`` names
    them in errors.

    >>> a = np.zeros((20, 20, 20), np.uint8); a[5:15, 5:15, 5:15] = 4
    >>> b = np.zeros_like(a); b[5:15, 5:15, 6:15] = 4
    >>> d = difference_meshes(a, b, np.eye(4), name="ET")
    >>> bool(d["A_only"].n_points > 0), d["B_only"].n_points
    (True, 0)
    """
    affine = _check_geometry(second, affine, what[1])
    if np.shape(first) != np.shape(second):
        raise GeometryError(f"{what[0]} shape {np.shape(first)} differs from {what[1]} shape "
                            f"{np.shape(second)}")
    first_mask, second_mask = name_mask(first, name), name_mask(second, name)
    opts = {"smooth_iterations": smooth_iterations, "smooth_passband": smooth_passband}
    return {keys[0]: mask_surface(first_mask & ~second_mask, affine, **opts),
            keys[1]: mask_surface(second_mask & ~first_mask, affine, **opts)}
