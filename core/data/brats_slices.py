"""BraTS 2020 as axial slices (the Kaggle ``.h5`` form): ``volume_<v>_slice_<s>.h5``.

Each file holds two HDF5 datasets, in the image's (row, column) order (no transposing: it
was written by h5py, not MATLAB)::

    image  (240, 240, 4) float   channels FLAIR, T1, T1ce, T2 (the case's files in name order)
    mask   (240, 240, 3) uint8   one-hot channels NCR/NET (label 1), ED (2), ET (4)

and ``meta_data.csv`` beside them has one row per slice (``slice_path, target, volume,
slice``; ``target`` 1 where the slice holds tumour). The reader puts the channels in the
3-D track's order (t1, t1ce, t2, flair) and turns the one-hot mask into canonical BraTS
labels {0, 1, 2, 4}, so WT = 1 u 2 u 4, TC = 1 u 4, ET = 4 as in 3-D. Slices are 1 mm.

The channel meanings are those the public loaders of this release use (image channel 0
read as FLAIR, mask channel 2 as enhancing tumour); the release itself documents them only
in prose, and some copies describe the image order as T1, T1Gd, T2, FLAIR. A file's values
cannot tell them apart, so they are named once here, in :data:`IMAGE_CHANNELS` and
:data:`MASK_LABELS`.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from tumorscope.core.data.cases import MODALITIES
from tumorscope.core.data.matv73 import file_kind
from tumorscope.core.data.slice2d import (
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

IMAGE_CHANNELS: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
"""What ``image[..., c]`` holds, by channel."""
MASK_LABELS: tuple[int, ...] = (1, 2, 4)
"""The canonical label each one-hot ``mask[..., c]`` channel stands for (NCR, ED, ET)."""
SHAPE: tuple[int, int] = (240, 240)
SLICE_RE = re.compile(r"^volume_(?P<volume>\d+)_slice_(?P<slice>\d+)\.h5$")
METADATA_FILES: tuple[str, ...] = ("meta_data.csv", "BraTS20 Training Metadata.csv")
SPACING_MM: tuple[float, float] = (1.0, 1.0)


def patient_of(volume: int | str) -> str:
    """The patient id of volume ``volume``: ``volume_<v>`` (one volume per patient)."""
    return f"volume_{int(volume)}"


def _dataset(fh: h5py.File, name: str, path: Path) -> np.ndarray:
    ds = fh.get(name)
    if not isinstance(ds, h5py.Dataset):
        found = ", ".join(sorted(fh.keys())) or "nothing"
        raise CorruptFileError(f"no dataset {name!r} (holds {found}): expected 'image' "
                               "(240x240x4) and 'mask' (240x240x3)", path=path)
    try:
        return np.asarray(ds[()])
    except (OSError, ValueError, TypeError) as exc:
        raise CorruptFileError(f"{name} cannot be read ({exc}): damaged or truncated file",
                               path=path) from exc


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        fh = h5py.File(path, "r")
    except (FileNotFoundError, PermissionError) as exc:
        raise UnreadableFileError(f"cannot be read: {os_error_words(exc)}", path=path) from exc
    except IsADirectoryError as exc:
        raise UnreadableFileError("is a folder; an HDF5 slice is needed there",
                                  path=path) from exc
    except OSError as exc:
        try:
            kind = file_kind(path)
        except OSError:
            kind = "other"
        what = "damaged or truncated HDF5 file" if kind == "hdf5" else "not an HDF5 file"
        raise CorruptFileError(f"{what} ({exc})", path=path) from exc
    with fh:
        return _dataset(fh, "image", path), _dataset(fh, "mask", path)


def inspect_brats_slice(ref: SliceRef) -> Inspected:
    """Read one ``volume_<v>_slice_<s>.h5`` into a :class:`Slice2D` with every fault in it.

    Raises (naming the file) for a file that is not HDF5, is damaged, lacks ``image`` or
    ``mask``, or whose image is not (H, W, 4). Faults returned: a mask that is not
    (H, W, 3) of the image's size, a mask that is not one-hot (values other than 0/1, a pixel
    in two channels), an empty mask where ``meta_data.csv`` says the slice holds tumour,
    non-finite pixels. Warnings: a size other than 240 x 240, tumour where ``meta_data.csv``
    says there is none.
    """
    path = ref.path
    image, raw = _read(path)
    if image.ndim != 3 or image.shape[2] != len(IMAGE_CHANNELS) or image.dtype.kind not in "iuf":
        raise GeometryError(f"image is {'x'.join(map(str, image.shape))} {image.dtype}: "
                            "expected 240x240x4 numbers (FLAIR, T1, T1ce, T2)", path=path)
    faults: list[TumorscopeError] = []
    warnings: list[str] = []
    height, width = image.shape[:2]
    if (height, width) != SHAPE:
        warnings.append(f"{path}: image is {height} x {width}: BraTS slices are 240 x 240")
    finite = np.isfinite(image)
    if not finite.all():
        fault = constant_fault(image, "image", path)
        if fault is not None:
            faults.append(fault)
    label = np.zeros((height, width), np.uint8)
    if raw.ndim != 3 or raw.shape[2] != len(MASK_LABELS) or raw.shape[:2] != (height, width):
        faults.append(GeometryError(f"mask is {'x'.join(map(str, raw.shape))}, image "
                                    f"{height}x{width}x4: expected {height}x{width}x3 (NCR, "
                                    "ED, ET)", path=path))
    elif not np.isin(raw, (0, 1)).all():
        faults.append(LabelError(f"mask holds {values_text(raw)}: expected one-hot channels "
                                 "(0, 1)", path=path))
    elif (raw.sum(axis=2) > 1).any():
        n = int((raw.sum(axis=2) > 1).sum())
        faults.append(LabelError(f"mask has {n} pixel(s) in two or more channels: expected "
                                 "one-hot channels (NCR, ED, ET)", path=path))
    else:
        for c, value in enumerate(MASK_LABELS):
            label[raw[..., c] == 1] = value
    promised = ref.metadata.get("target")
    if promised == 1 and not label.any() and not faults:
        faults.append(LabelError("mask is empty but meta_data.csv says this slice holds "
                                 "tumour (target 1)", path=path))
    elif promised == 0 and label.any():
        warnings.append(f"{path}: mask holds tumour but meta_data.csv says none (target 0)")
    order = [IMAGE_CHANNELS.index(m) for m in MODALITIES]
    pixels = np.moveaxis(image[..., order].astype(np.float32), 2, 0)
    patient = ref.patient_id or ref.slice_id
    slice_ = Slice2D(ref.slice_id, patient, "brats2020-slices", pixels, tuple(MODALITIES),
                     label, "brats", path, spacing_mm=SPACING_MM)
    return Inspected(slice_, tuple(faults), tuple(warnings))
