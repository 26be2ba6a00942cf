"""Reading and writing NIfTI volumes, and atomic file writes: the one I/O module of core.

Arrays follow nibabel's axis order: ``data[i, j, k]`` is voxel (i, j, k) and
``affine @ [i, j, k, 1]`` its world position in mm (RAS+). ITK/SimpleITK arrays are the
reverse (k, j, i); nothing in Tumorscope uses that order.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import CaseFileMissingError, CorruptFileError, GeometryError, VoxelValueError

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def nifti_stem(path: str | Path) -> str:
    """File name without ``.nii`` / ``.nii.gz``.

    >>> nifti_stem("a/BraTS20_Training_001_t1.nii.gz")
    'BraTS20_Training_001_t1'
    """
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def file_key(path: str | Path) -> dict[str, object]:
    """What identifies a file's version for caches: resolved path, size and mtime (ns)."""
    path = Path(path)
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _full_suffix(path: Path) -> str:
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    A crash half-way leaves the old file (or none), never a truncated one. The temporary
    name keeps the suffix so that writers choosing a format by extension still work.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> target.read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{_full_suffix(path)}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the file the permissions a plain open() would have.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, obj: object) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    """Save ``array`` as an uncompressed ``.npy`` atomically (so it can be memory-mapped)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array))


@dataclass(frozen=True)
class Volume:
    """One 3-D NIfTI volume: ``data`` (X, Y, Z) in nibabel order, ``affine`` (4, 4) voxel->mm."""

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    path: Path

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along i, j, k in mm."""
        return voxel_spacing_mm(self.affine)


def voxel_spacing_mm(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along the three array axes, from the affine's column norms.

    >>> voxel_spacing_mm(np.diag([-2.0, 1.0, 3.0, 1.0]))
    (2.0, 1.0, 3.0)
    """
    norms = np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)
    return tuple(float(round(n, 6)) for n in norms)


def _open_image(path: Path) -> nib.Nifti1Image:
    if not path.exists():
        raise CaseFileMissingError("file does not exist", path=path)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for a bad header
        raise CorruptFileError(f"not a readable NIfTI file ({exc})", path=path) from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise CorruptFileError(f"not a NIfTI image (nibabel read it as {type(img).__name__})",
                               path=path)
    return img


def read_header(path: str | Path) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of a NIfTI file without reading its voxels."""
    img = _open_image(Path(path))
    return tuple(int(s) for s in img.shape), np.asarray(img.affine, dtype=np.float64)


def read_nifti(
    path: str | Path, *, dtype: type | np.dtype = np.float32, check_finite: bool = True
) -> Volume:
    """Read a 3-D NIfTI file into a :class:`Volume`, checking it on the way.

    Raises, each naming ``path``: :class:`CaseFileMissingError` if absent,
    :class:`CorruptFileError` for a truncated gzip or an unreadable header,
    :class:`GeometryError` for a 4-D file (a trailing axis of length 1 is dropped, as
    some exporters write it), :class:`VoxelValueError` for NaN or inf voxels.
    """
    path = Path(path)
    img = _open_image(path)
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise GeometryError(
            f"expected a 3-D volume, got a {len(img.shape)}-D image of shape {img.shape}",
            path=path,
        )
    try:
        data = np.asarray(img.dataobj, dtype=dtype).reshape(shape)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError) as exc:
        raise CorruptFileError(
            f"voxel data cannot be read, the file is truncated or corrupt ({exc})", path=path
        ) from exc
    if check_finite and data.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise VoxelValueError(f"{bad} non-finite voxel(s) (NaN or inf)", path=path)
    return Volume(data, np.asarray(img.affine, dtype=np.float64), img.header, path)


def read_label(path: str | Path, *, convention: str = "brats2020") -> Volume:
    """Read a label map, check its values against ``convention`` and return it canonical.

    The one way label files are read: ``data`` is uint8 with values {0, 1, 2, 4} (BraTS
    2023's 3 becomes 4); unknown or fractional values raise :class:`LabelError` naming
    ``path``.
    """
    from .labels import check_labels, to_canonical

    vol = read_nifti(path, dtype=None)
    check_labels(vol.data, convention=convention, path=str(path))
    return Volume(to_canonical(vol.data, convention=convention), vol.affine, vol.header,
                  vol.path)


def write_nifti(
    path: str | Path,
    data: np.ndarray,
    affine: np.ndarray,
    *,
    header: nib.Nifti1Header | None = None,
) -> Path:
    """Write ``data`` (X, Y, Z) with ``affine`` to ``path`` atomically; dtype kept as given.

    With ``header`` the source's header fields (qform/sform codes, units, description) carry
    over, so a prediction written with its image's header overlays it exactly in any viewer.
    """
    path = Path(path)
    hdr = header.copy() if header is not None else None
    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=np.float64), header=hdr)
    img.set_data_dtype(np.asarray(data).dtype)
    if hdr is None:
        img.header.set_xyzt_units("mm", "sec")
    # Intensity scaling from a float source header must not be applied to integer labels.
    img.header.set_slope_inter(1.0, 0.0)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path
