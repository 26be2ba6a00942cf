"""A prediction's voxel maps beside its labels: where they live and how they are read (no torch).

``tumorscope predict --save-probabilities`` writes ``predictions/<case>_prob.nii.gz``
(:meth:`~tumorscope.core.store.Run.probabilities_path`): (X, Y, Z, 3) float32, the WT/TC/ET
probabilities. With ``--mirror`` as well it writes the variance across the mirrored passes
of each region's probability: ``predictions/tta_variance/<case>.nii.gz``
(:meth:`~tumorscope.core.store.Run.tta_variance_path`), the same shape,
values in 0..0.25 (the variance of numbers in 0..1 is at most 1/4). Both are written with
the prediction and removed when a later prediction of the case does not make them, so a
map always belongs to the prediction beside it.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from tumorscope.core.data.labels import REGIONS
from tumorscope.core.errors import CaseFileMissingError, CorruptFileError, GeometryError

MAX_VARIANCE = 0.25
"""The largest variance numbers in 0..1 can have (half the passes at 0, half at 1)."""


@dataclass(frozen=True)
class RegionMaps:
    """One map file: ``data`` (X, Y, Z, 3) float32 in :data:`REGIONS` order, its ``affine``."""

    data: np.ndarray
    affine: np.ndarray


def read_region_maps(path: str | Path) -> RegionMaps:
    """Read a probability or variance file; a one-line error naming it when it is missing,
    unreadable, or not (X, Y, Z, 3)."""
    path = Path(path)
    if not path.is_file():
        raise CaseFileMissingError("file does not exist", path=path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise CorruptFileError(f"cannot be read ({exc})", path=path) from None
    if data.ndim != 4 or data.shape[3] != len(REGIONS):
        raise GeometryError(f"has shape {data.shape}, expected (X, Y, Z, {len(REGIONS)}): "
                            f"one channel per region {'/'.join(REGIONS)}", path=path)
    return RegionMaps(data, np.asarray(img.affine, dtype=np.float64))
