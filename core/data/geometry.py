"""World geometry of voxel grids: whether two grids match, and reorienting one onto another."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from tumorscope.core.errors import GeometryError

AFFINE_ATOL_MM = 1e-3


def same_grid(shape_a: tuple[int, ...], affine_a: np.ndarray, shape_b: tuple[int, ...],
              affine_b: np.ndarray) -> bool:
    """Whether two grids put the same voxel at the same world position."""
    return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b,
                                                            atol=AFFINE_ATOL_MM)


def conform_to(data: np.ndarray, affine: np.ndarray, ref_shape: tuple[int, ...],
               ref_affine: np.ndarray, *, path: str | Path | None = None,
               ref_path: str | Path | None = None) -> np.ndarray:
    """``data`` (on the grid ``affine``) laid out on the reference grid.

    The same world grid stored in another voxel order (axes permuted or flipped, as another
    tool may save it) is reoriented with nibabel's orientation tools; any other grid
    (another spacing, shift or field of view) raises :class:`GeometryError` naming both
    files, because resampling a label map would change what is scored.

    >>> a = np.arange(24).reshape(2, 3, 4)
    >>> flipped = np.diag([-1.0, 1, 1, 1]); flipped[0, 3] = 1.0
    >>> np.array_equal(conform_to(a[::-1], flipped, (2, 3, 4), np.eye(4)), a)
    True
    """
    if same_grid(data.shape, affine, ref_shape, ref_affine):
        return data
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine),
                                           nib.orientations.io_orientation(ref_affine))
    moved = nib.orientations.apply_orientation(data, ornt)
    moved_affine = affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
    if same_grid(moved.shape, moved_affine, ref_shape, ref_affine):
        return np.ascontiguousarray(moved)
    where = f" ({ref_path})" if ref_path is not None else ""
    raise GeometryError(
        f"grid {tuple(data.shape)} with spacing {_spacing(affine)} mm and origin "
        f"{_origin(affine)} does not match the ground truth{where}: {tuple(ref_shape)}, "
        f"{_spacing(ref_affine)} mm, origin {_origin(ref_affine)}; expected the same world "
        "grid (any voxel order)", path=path)


def _spacing(affine: np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(v), 3) for v in np.linalg.norm(affine[:3, :3], axis=0))


def _origin(affine: np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(v), 2) for v in affine[:3, 3])
