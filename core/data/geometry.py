"""World geometry of voxel grids: whether two grids match, reorienting one onto another, and
turning a volume to RAS+ axis order for display."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from tumorscope.core.data.nifti import voxel_spacing_mm
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


@dataclass(frozen=True)
class RasVolume:
    """A volume turned to the closest canonical (RAS+) axis order for display.

    ``data`` ``(X, Y, Z)``: index increases towards the patient's Right, Anterior, Superior;
    ``spacing_mm`` along those axes; ``affine`` maps these indices to the same world mm as
    the source file; ``source_axcodes`` the file's own orientation (e.g. ``('L', 'P', 'S')``
    for BraTS files).
    """

    data: np.ndarray
    spacing_mm: tuple[float, float, float]
    affine: np.ndarray
    source_axcodes: tuple[str, str, str]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)


def to_ras(data: np.ndarray, affine: np.ndarray) -> RasVolume:
    """Flip and permute ``data`` ``(X, Y, Z)`` so its axes point R, A, S (no resampling).

    >>> v = to_ras(np.arange(8).reshape(2, 2, 2), np.diag([-1.0, -1.0, 2.0, 1.0]))
    >>> v.source_axcodes, v.spacing_mm, v.data[:, :, 0].tolist()
    (('L', 'P', 'S'), (1.0, 1.0, 2.0), [[6, 4], [2, 0]])
    """
    ornt = nib.orientations.io_orientation(affine)
    ras = np.ascontiguousarray(nib.orientations.apply_orientation(data, ornt))
    spacing_in = voxel_spacing_mm(affine)
    spacing = [0.0, 0.0, 0.0]
    for axis_in, (axis_out, _) in enumerate(ornt):
        spacing[int(axis_out)] = spacing_in[axis_in]
    ras_affine = affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
    return RasVolume(ras, tuple(spacing), ras_affine,
                     tuple(nib.orientations.aff2axcodes(affine)))
