"""Reading and writing NIfTI volumes, and atomic file writes: the one I/O module of core.

Arrays follow nibabel's axis order: ``data[i, j, k]`` is voxel (i, j, k) and
``affine @ [i, j, k, 1]`` its world position in mm (RAS+). ITK/SimpleITK arrays are the
reverse (k, j, i); nothing in Tumorscope uses that order.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import socket
import stat
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

from tumorscope.core.errors import (
    CaseFileMissingError,
    CorruptFileError,
    GeometryError,
    UnreadableFileError,
    VoxelValueError,
)
from tumorscope.core.oserrors import os_error_words

NIFTI_SUFFIXES = (".nii.gz", ".nii")

TEMP_OWNER = f"{socket.gethostname().replace('.', '_')}-{os.getpid()}"
"""Host and process id written into every temp file name (see :func:`stale_temp_files`)."""
_TEMP_RE = re.compile(r"^\.(?P<target>.+)\.(?P<host>[^.]+)-(?P<pid>\d+)\.[^.]+\.tmp(\.[^/]*)?$")


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
    # Hidden, and naming its writer: a leftover of a killed writer is never mistaken for a
    # result, and is removed by the next run on this host once that process is gone.
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.{TEMP_OWNER}.", suffix=f".tmp{_full_suffix(path)}",
        dir=path.parent,
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


def is_temp_file(name: str) -> bool:
    """Whether a file name is one of :func:`atomic_path`'s temporaries (never a result).

    >>> is_temp_file(".A.nii.gz.host-12.k3j.tmp.nii.gz"), is_temp_file("A.nii.gz")
    (True, False)
    """
    return name.startswith(".") and ".tmp" in name


def stale_temp_files(folder: str | Path) -> list[Path]:
    """Temporaries in ``folder`` left by writers on this host that are no longer running
    (a ``kill -9`` mid-write); files of live writers and of other hosts are left alone."""
    folder = Path(folder)
    host = TEMP_OWNER.rsplit("-", 1)[0]
    out: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for path in entries:
        m = _TEMP_RE.match(path.name)
        if m is None or m["host"] != host:
            continue
        try:
            os.kill(int(m["pid"]), 0)
        except ProcessLookupError:
            out.append(path)
        except PermissionError:  # alive, someone else's
            pass
    return sorted(out)


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


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _check_file(path: Path) -> None:
    """Raise unless ``path`` is a regular file this process can open for reading.

    Runs before any parser touches the file, so that a named pipe never blocks the reader
    and "permission denied" is reported as such rather than as a corrupt file.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CaseFileMissingError(
            "file does not exist" if not path.is_symlink() else
            "broken symbolic link: its target does not exist", path=path) from None
    except OSError as exc:
        raise UnreadableFileError(f"cannot be read: {os_error_words(exc)}", path=path) from exc
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableFileError(
            f"is {_kind_of(st.st_mode)}, expected a NIfTI file (.nii or .nii.gz)", path=path)
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UnreadableFileError(f"cannot be read: {os_error_words(exc)}", path=path) from exc


def _raw_pixdim(path: Path) -> np.ndarray | None:
    """pixdim[1:4] as stored in the file, before nibabel's load-time fixes (which turn a
    zero voxel size into 1 mm and a negative one into its absolute value); ``None`` when
    the header cannot be read here (the full load then reports why)."""
    try:
        with ImageOpener(path) as fh:
            raw = fh.read(540)
        sizes = {int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")}
        if 348 in sizes:
            klass: type = nib.Nifti1Header
        elif 540 in sizes:
            klass = nib.Nifti2Header
        else:
            return None
        hdr = klass.from_fileobj(io.BytesIO(raw), check=False)
        return np.asarray(hdr["pixdim"][1:4], dtype=np.float64)
    except Exception:  # truncated or not NIfTI: nib.load below says what is wrong
        return None


def _check_pixdim(path: Path, pixdim: np.ndarray | None) -> None:
    """Raise :class:`GeometryError` for a non-positive or non-finite stored voxel size."""
    if pixdim is not None and not (np.isfinite(pixdim).all() and (pixdim > 0).all()):
        shown = "x".join(f"{v:g}" for v in pixdim)
        raise GeometryError(
            f"voxel size (pixdim) is {shown} mm: expected a positive, finite size on every "
            "axis", path=path)


def _check_affine(path: Path, affine: np.ndarray) -> None:
    """Raise :class:`GeometryError` for a voxel-to-mm transform that cannot be a scan's:
    non-finite, zero on an axis, or singular."""
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    if not np.isfinite(affine).all():
        raise GeometryError("affine holds NaN or inf: expected a finite voxel-to-mm transform",
                            path=path)
    spacing = np.linalg.norm(linear, axis=0)
    if not (spacing > 1e-6).all():
        shown = "x".join(f"{v:g}" for v in spacing)
        what = "is all zero" if not linear.any() else f"gives voxel size {shown} mm"
        raise GeometryError(
            f"affine {what}: expected a positive voxel size on every axis", path=path)
    # |det| / product of column norms is 1 for orthogonal axes and 0 for dependent ones.
    if abs(np.linalg.det(linear)) / float(np.prod(spacing)) < 1e-3:
        raise GeometryError(
            "affine is singular (its voxel axes are not independent, determinant "
            f"{np.linalg.det(linear):.3g}): expected an invertible voxel-to-mm transform",
            path=path)


def _check_dtype(path: Path, dtype: np.dtype, label: str) -> None:
    if dtype.kind == "V" or dtype.fields is not None:
        raise VoxelValueError(
            f"voxel data is {label} colour ({dtype.itemsize} bytes per voxel): expected one "
            "grey-scale intensity per voxel", path=path)
    if dtype.kind == "c":
        raise VoxelValueError(
            f"voxel data is complex ({dtype}): expected real intensities (save the "
            "magnitude image)", path=path)


def _open_image(path: Path) -> nib.Nifti1Image:
    _check_file(path)
    # Before nib.load, which would "fix" a bad size to 1 mm and print that it did.
    _check_pixdim(path, _raw_pixdim(path))
    try:
        img = nib.load(str(path))
    except OSError as exc:
        if isinstance(exc, PermissionError | IsADirectoryError):
            raise UnreadableFileError(f"cannot be read: {os_error_words(exc)}",
                                      path=path) from exc
        raise CorruptFileError(f"not a readable NIfTI file ({exc})", path=path) from exc
    except Exception as exc:  # nibabel raises many types for a bad header
        raise CorruptFileError(f"not a readable NIfTI file ({exc})", path=path) from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise CorruptFileError(f"not a NIfTI image (nibabel read it as {type(img).__name__})",
                               path=path)
    _check_affine(path, np.asarray(img.affine, dtype=np.float64))
    _check_dtype(path, img.header.get_data_dtype(), str(img.header.get_value_label("datatype")))
    return img


def read_header(path: str | Path) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of a NIfTI file without reading its voxels (checked as by
    :func:`read_nifti`, except for the voxel values)."""
    img = _open_image(Path(path))
    return tuple(int(s) for s in img.shape), np.asarray(img.affine, dtype=np.float64)


def read_nifti(
    path: str | Path, *, dtype: type | np.dtype = np.float32, check_finite: bool = True
) -> Volume:
    """Read a 3-D NIfTI file into a :class:`Volume`, checking it on the way.

    Raises, each naming ``path``: :class:`CaseFileMissingError` if absent,
    :class:`UnreadableFileError` if it cannot be opened (permission denied, a folder or a
    named pipe), :class:`CorruptFileError` for a truncated gzip or an unreadable header,
    :class:`GeometryError` for a 4-D file (a trailing axis of length 1 is dropped, as
    some exporters write it), non-positive or non-finite voxel sizes, or a zero or
    singular affine, :class:`VoxelValueError` for RGB or complex voxels and NaN or inf
    voxels.
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
    except PermissionError as exc:
        raise UnreadableFileError(f"cannot be read: {os_error_words(exc)}", path=path) from exc
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
    from tumorscope.core.data.labels import check_labels, to_canonical

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
