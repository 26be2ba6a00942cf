"""The figshare brain-tumour dataset (Cheng et al.): ``<n>.mat`` slices and ``cvind.mat`` folds.

Each ``<n>.mat`` (``1.mat`` ... ``3064.mat``) is a MATLAB v7.3 file (HDF5, see
:mod:`tumorscope.core.data.matv73`) holding one struct ``cjdata``:

=============  ==================================================================
``label``      1 x 1 double: 1 meningioma, 2 glioma, 3 pituitary
``PID``        1 x n char (uint16 codes in HDF5): the patient id
``image``      H x W int16, T1-weighted contrast-enhanced; 512 x 512 (a few 256 x 256)
``tumorBorder`` vector ``[x1, y1, x2, y2, ...]`` of the hand-drawn outline, MATLAB pixel
               coordinates: x the column, y the row, 1-based (``plot(x, y)`` over ``imshow``)
``tumorMask``  H x W logical, the outline filled (1 inside the tumour)
=============  ==================================================================

HDF5 holds MATLAB's arrays transposed (column-major); the reader transposes them back so
that ``image[row, col]`` is the slice as MATLAB displays it, and converts the outline to
0-based (row, column). ``cvind.mat`` holds ``cvind``, an N x 1 double of fold numbers 1-5,
one per image in file-number order: the release's patient-wise 5-fold split.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage as ndi

from tumorscope.core.data.matv73 import file_kind, matlab_class, matlab_value, write_mat
from tumorscope.core.data.slice2d import (
    TUMOUR_TYPES,
    Inspected,
    Slice2D,
    SliceRef,
    constant_fault,
    values_text,
)
from tumorscope.core.errors import (
    CorruptFileError,
    GeometryError,
    LabelError,
    TumorscopeError,
    UnreadableFileError,
)
from tumorscope.core.oserrors import os_error_words

STRUCT = "cjdata"
FIELDS: tuple[str, ...] = ("label", "PID", "image", "tumorBorder", "tumorMask")
"""The fields of ``cjdata``, in the release's order."""
SHAPES: tuple[tuple[int, int], ...] = ((512, 512), (256, 256))
"""Image sizes of the release."""
FOLDS_FILE = "cvind.mat"
SLICE_RE = re.compile(r"^(?P<n>\d+)\.mat$")
CHANNELS: tuple[str, ...] = ("t1ce",)
BORDER_TOLERANCE_PX = 2.0
"""Mean distance (pixels) from the outline's points to the mask's edge beyond which the two
are reported as not lining up."""


def _open_error(path: Path, exc: OSError) -> TumorscopeError:
    """The error for a ``.mat`` file h5py could not open: what its first bytes say it is."""
    try:
        kind = file_kind(path)
    except OSError as inner:
        return UnreadableFileError(f"cannot be read: {os_error_words(inner)}", path=path)
    if kind == "v5":
        return CorruptFileError("a MATLAB 5 MAT-file: expected MATLAB v7.3 (HDF5), as the "
                                "figshare release ships", path=path)
    if kind == "other":
        return CorruptFileError("not a MATLAB v7.3 (HDF5) file: its first bytes are neither "
                                "the MATLAB header nor an HDF5 signature", path=path)
    return CorruptFileError(f"damaged or truncated MATLAB v7.3 file ({exc})", path=path)


def _field(cj: h5py.Group, name: str, path: Path) -> object:
    if name not in cj or not isinstance(cj[name], h5py.Dataset):
        raise CorruptFileError(f"cjdata has no field {name!r}: expected the figshare fields "
                               f"{', '.join(FIELDS)}", path=path)
    try:
        return matlab_value(cj[name])
    except (OSError, ValueError, TypeError) as exc:
        raise CorruptFileError(f"cjdata.{name} cannot be read ({exc}): damaged or truncated "
                               "file", path=path) from exc


def _read_struct(path: Path) -> dict[str, object]:
    """The fields of ``cjdata`` in MATLAB orientation; raises for a file that is not one."""
    try:
        fh = h5py.File(path, "r")
    except (FileNotFoundError, PermissionError) as exc:
        raise UnreadableFileError(f"cannot be read: {os_error_words(exc)}", path=path) from exc
    except IsADirectoryError as exc:
        raise UnreadableFileError("is a folder; a MATLAB file is needed there",
                                  path=path) from exc
    except OSError as exc:
        raise _open_error(path, exc) from exc
    with fh:
        cj = fh.get(STRUCT)
        if not isinstance(cj, h5py.Group):
            found = ", ".join(sorted(fh.keys())) or "nothing"
            raise CorruptFileError(f"no struct {STRUCT!r} (holds {found}): expected a figshare "
                                   f"slice ({', '.join(FIELDS)})", path=path)
        if matlab_class(cj) not in (None, "struct"):
            raise CorruptFileError(f"cjdata is a MATLAB {matlab_class(cj)}, expected a struct",
                                   path=path)
        return {name: _field(cj, name, path) for name in FIELDS}


def read_pid(path: str | Path) -> str:
    """The patient id of one ``<n>.mat`` (cheap: reads only ``PID``)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as fh:
            ds = fh.get(f"{STRUCT}/PID")
            if not isinstance(ds, h5py.Dataset):
                raise CorruptFileError("cjdata has no field 'PID'", path=path)
            return str(matlab_value(ds)).strip()
    except OSError as exc:
        raise _open_error(path, exc) from exc


def border_rc(border: object) -> np.ndarray:
    """``tumorBorder`` ``[x1, y1, x2, y2, ...]`` (1-based MATLAB x = column, y = row) as an
    (N, 2) array of 0-based (row, column).

    >>> border_rc(np.array([[10.0, 20.0, 11.0, 21.0]])).tolist()
    [[19.0, 9.0], [20.0, 10.0]]
    """
    flat = np.asarray(border, dtype=np.float64).ravel()
    xy = flat[: flat.size // 2 * 2].reshape(-1, 2)
    return np.stack([xy[:, 1] - 1.0, xy[:, 0] - 1.0], axis=1)


def border_distance_px(points_rc: np.ndarray, mask: np.ndarray) -> float:
    """Mean distance (pixels) from outline points to the edge of ``mask`` (``inf`` when the
    mask is empty or a point falls outside the image)."""
    if not mask.any() or len(points_rc) == 0:
        return float("inf")
    edge = mask & ~ndi.binary_erosion(mask)
    dist = ndi.distance_transform_edt(~edge)
    idx = np.rint(points_rc).astype(int)
    h, w = mask.shape
    if (idx < 0).any() or (idx[:, 0] >= h).any() or (idx[:, 1] >= w).any():
        return float("inf")
    return float(dist[idx[:, 0], idx[:, 1]].mean())


def _border_warning(points_rc: np.ndarray, mask: np.ndarray, path: Path) -> str | None:
    here = border_distance_px(points_rc, mask)
    if here <= BORDER_TOLERANCE_PX:
        return None
    swapped = border_distance_px(points_rc[:, ::-1], mask)
    if swapped <= BORDER_TOLERANCE_PX:
        return (f"{path}: tumorBorder lines up with tumorMask only with x and y swapped "
                f"(mean {swapped:.1f} px from its edge, {here:.1f} px as documented: x column, "
                "y row)")
    return (f"{path}: tumorBorder lies {here:.1f} px (mean) from the edge of tumorMask: "
            f"expected the outline the mask was filled from (within {BORDER_TOLERANCE_PX:g} px)")


def inspect_figshare(ref: SliceRef) -> Inspected:
    """Read one ``<n>.mat`` into a :class:`Slice2D` with every fault found in it.

    Raises (one line, naming the file) only when there is nothing to return: not a MATLAB
    v7.3 file (a MATLAB 5 file, another file, a damaged or truncated one), no ``cjdata`` or
    a missing field, an image that is not 2-D. Faults returned: a mask of another size than
    the image, a mask that is not binary, an empty mask (every figshare slice outlines a
    tumour), a label other than 1/2/3, an empty ``PID``, a constant or non-finite image.
    Warnings: an image size the release does not have, an outline that does not line up with
    the mask.
    """
    path = ref.path
    fields = _read_struct(path)
    image = fields["image"]
    if isinstance(image, str) or np.asarray(image).ndim != 2 or np.asarray(image).size == 0:
        shape = "a string" if isinstance(image, str) else f"shape {np.asarray(image).shape}"
        raise GeometryError(f"cjdata.image has {shape}: expected a 2-D slice (512 x 512 or "
                            "256 x 256)", path=path)
    image = np.asarray(image)
    if image.dtype.kind not in "iufb":
        raise CorruptFileError(f"cjdata.image holds {image.dtype}: expected int16 pixels",
                               path=path)
    faults: list[TumorscopeError] = []
    warnings: list[str] = []
    if tuple(image.shape) not in SHAPES:
        warnings.append(f"{path}: image is {image.shape[0]} x {image.shape[1]}: the figshare "
                        "release has 512 x 512 and 256 x 256")
    bad_pixels = constant_fault(image.astype(np.float64), "cjdata.image", path)
    if bad_pixels is not None:
        faults.append(bad_pixels)
    raw_mask = fields["tumorMask"]
    mask_arr = np.zeros(image.shape, bool) if isinstance(raw_mask, str) else np.asarray(raw_mask)
    if mask_arr.shape != image.shape:
        faults.append(GeometryError(f"tumorMask is {'x'.join(map(str, mask_arr.shape))}, image "
                                    f"{'x'.join(map(str, image.shape))}: expected the same size",
                                    path=path))
        mask = np.zeros(image.shape, np.uint8)
    elif not np.isin(mask_arr, (0, 1)).all():
        faults.append(LabelError(f"tumorMask holds {values_text(mask_arr)}: expected a binary "
                                 "mask (0, 1)", path=path))
        mask = (mask_arr != 0).astype(np.uint8)
    else:
        mask = mask_arr.astype(np.uint8)
        if not mask.any():
            faults.append(LabelError("tumorMask is empty: every figshare slice outlines a "
                                     "tumour", path=path))
    label = fields["label"]
    lab = np.array([]) if isinstance(label, str) else np.asarray(label).ravel()
    tumour_type: int | None = None
    if lab.size == 1 and lab.dtype.kind in "iuf" and float(lab[0]).is_integer() \
            and int(lab[0]) in TUMOUR_TYPES:
        tumour_type = int(lab[0])
    else:
        shown = values_text(lab) if lab.size and lab.dtype.kind in "iufb" else "nothing"
        faults.append(LabelError(f"label is {shown}: expected 1 (meningioma), 2 (glioma) or "
                                 "3 (pituitary)", path=path))
    pid = fields["PID"]
    pid = pid.strip() if isinstance(pid, str) else ""
    if not pid:
        faults.append(CorruptFileError("PID is empty or not text: expected the patient id "
                                       "that patient-wise splits need", path=path))
    border = fields["tumorBorder"]
    points = None if isinstance(border, str) else border_rc(border)
    if points is None or np.asarray(border).size % 2 or len(points) < 3:
        warnings.append(f"{path}: tumorBorder is not a list of at least 3 x, y pairs")
        points = None
    elif mask.any() and mask.shape == image.shape:
        found = _border_warning(points, mask.astype(bool), path)
        if found:
            warnings.append(found)
    pixels = image.astype(np.float32)[None]
    slice_ = Slice2D(ref.slice_id, pid or "?", "figshare", pixels, CHANNELS, mask, "binary",
                     path, tumour_type=tumour_type, border_rc=points)
    return Inspected(slice_, tuple(faults), tuple(warnings))


def write_slice(path: str | Path, *, image: np.ndarray, label: int, pid: str,
                mask: np.ndarray, border_xy: np.ndarray) -> None:
    """Write one figshare-format ``<n>.mat`` as the release has it, atomically.

    image : (H, W) int16 as displayed (row, column)
    mask : (H, W) bool
    border_xy : (N, 2) MATLAB outline points (x column, y row; 1-based), stored as the
        ``2N x 1`` vector ``[x1, y1, x2, y2, ...]``
    """
    flat = np.asarray(border_xy, dtype=np.float64).reshape(-1, 1)
    write_mat(path, {STRUCT: {"label": np.array([[float(label)]]), "PID": pid,
                              "image": np.asarray(image, dtype=np.int16),
                              "tumorBorder": flat, "tumorMask": np.asarray(mask, dtype=bool)}})


def read_folds(path: str | Path) -> tuple[int, ...]:
    """The fold of each image (file ``<i>.mat`` is entry ``i - 1``) from ``cvind.mat``.

    Raises :class:`CorruptFileError` for a file that is not one, :class:`LabelError` for
    folds that are not positive integers."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as fh:
            ds = fh.get("cvind")
            if not isinstance(ds, h5py.Dataset):
                found = ", ".join(sorted(fh.keys())) or "nothing"
                raise CorruptFileError(f"no variable 'cvind' (holds {found}): expected the "
                                       "fold number of each image", path=path)
            folds = np.asarray(matlab_value(ds), dtype=np.float64).ravel()
    except OSError as exc:
        raise _open_error(path, exc) from exc
    if folds.size == 0 or not np.isfinite(folds).all() or (folds != np.round(folds)).any() \
            or folds.min() < 1:
        raise LabelError(f"cvind holds {values_text(folds)}: expected fold numbers 1, 2, ...",
                         path=path)
    return tuple(int(f) for f in folds)


def write_folds(path: str | Path, folds: tuple[int, ...] | list[int]) -> None:
    """Write ``cvind.mat`` (an N x 1 double of fold numbers), atomically."""
    write_mat(path, {"cvind": np.asarray(folds, dtype=np.float64).reshape(-1, 1)})

