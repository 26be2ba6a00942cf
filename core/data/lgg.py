"""The LGG segmentation dataset (Buda et al., TCGA): ``<case>_<n>.tif`` slices with their masks.

As the release ships it (``kaggle_3m/``)::

    TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_1.tif        256 x 256 RGB: pre-contrast,
    TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_1_mask.tif   FLAIR, post-contrast; mask 0/255
    data.csv                                                 one row per patient (Patient, ...)

A folder is one patient's scan (``TCGA_<site>_<id>_<date>``); the patient id is the folder
name without the date (``TCGA_CS_4941``), as ``data.csv`` names it. Slice numbers start at 1
and sort as numbers (``_10`` after ``_9``). Most slices show no tumour: an empty mask is
normal; a patient none of whose slices shows one is not (every patient has a tumour).
Where a sequence was missing, the release repeats FLAIR in its channel.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from tumorscope.core.data.slice2d import Inspected, Slice2D, SliceRef, values_text
from tumorscope.core.errors import (
    CaseFileMissingError,
    CorruptFileError,
    GeometryError,
    LabelError,
    TumorscopeError,
    UnreadableFileError,
)
from tumorscope.core.oserrors import os_error_words

CHANNELS: tuple[str, ...] = ("t1", "flair", "t1ce")
"""The three channels of an LGG image (pre-contrast, FLAIR, post-contrast) by the names
the 3-D track gives those modalities."""
SHAPE: tuple[int, int] = (256, 256)
IMAGE_RE = re.compile(r"^(?P<case>.+)_(?P<n>\d+)\.tiff?$", re.IGNORECASE)
MASK_RE = re.compile(r"^(?P<case>.+)_(?P<n>\d+)_mask\.tiff?$", re.IGNORECASE)
METADATA_FILE = "data.csv"
_DATE_RE = re.compile(r"^(?P<patient>.+)_(?P<date>\d{8})$")


def patient_of(case: str) -> str:
    """The patient id of a scan folder: its name without the trailing ``_YYYYMMDD``.

    >>> patient_of("TCGA_CS_4941_19960909")
    'TCGA_CS_4941'
    """
    m = _DATE_RE.match(case)
    return m["patient"] if m else case


def _read_tif(path: Path, what: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's words on damaged tags: a fault, or none
            with Image.open(path) as img:
                img.load()
                mode = img.mode
                arr = np.asarray(img)
    except (FileNotFoundError, PermissionError) as exc:
        raise UnreadableFileError(f"cannot be read: {os_error_words(exc)}", path=path) from exc
    except IsADirectoryError as exc:
        raise UnreadableFileError(f"is a folder; a TIFF {what} is needed there",
                                  path=path) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise CorruptFileError(f"not a readable TIFF {what} ({exc})", path=path) from exc
    if mode == "P":
        raise CorruptFileError(f"a palette TIFF: expected a plain {what}", path=path)
    return arr


def inspect_lgg(ref: SliceRef) -> Inspected:
    """Read one LGG slice (image and mask) into a :class:`Slice2D` with every fault in it.

    Raises (naming the file) for an image that cannot be read. Faults returned: a missing or
    unreadable mask, an image without three channels, a mask with channels, a mask of another
    size than the image, a mask that is not binary (0/255 or 0/1). Warnings: a size other
    than the release's 256 x 256.
    """
    path = ref.path
    image = _read_tif(path, "image")
    faults: list[TumorscopeError] = []
    warnings: list[str] = []
    if image.ndim != 3 or image.shape[2] != 3:
        channels = 1 if image.ndim == 2 else image.shape[2]
        raise GeometryError(f"image is {'x'.join(map(str, image.shape))} ({channels} "
                            "channel(s)): expected 3 channels (pre-contrast, FLAIR, "
                            "post-contrast)", path=path)
    height, width = image.shape[:2]
    if (height, width) != SHAPE:
        warnings.append(f"{path}: image is {height} x {width}: the LGG release has 256 x 256")
    mask = np.zeros((height, width), np.uint8)
    if ref.mask_path is None:
        faults.append(CaseFileMissingError(
            f"no mask for this slice: expected {path.stem}_mask{path.suffix} beside it",
            path=path.with_name(f"{path.stem}_mask{path.suffix}")))
    else:
        try:
            raw = _read_tif(ref.mask_path, "mask")
        except TumorscopeError as exc:
            faults.append(exc)
        else:
            if raw.ndim != 2:
                faults.append(GeometryError(f"mask is {'x'.join(map(str, raw.shape))}: expected "
                                            "one channel", path=ref.mask_path))
            elif raw.shape != (height, width):
                faults.append(GeometryError(
                    f"mask is {raw.shape[0]} x {raw.shape[1]}, image {height} x {width} "
                    f"({path.name}): expected the same size", path=ref.mask_path))
            elif not (np.isin(raw, (0, 255)).all() or np.isin(raw, (0, 1)).all()):
                faults.append(LabelError(f"mask holds {values_text(raw)}: expected a binary "
                                         "mask (0 and 255)", path=ref.mask_path))
                mask = (raw > 0).astype(np.uint8)
            else:
                mask = (raw > 0).astype(np.uint8)
    pixels = np.moveaxis(image.astype(np.float32), 2, 0)
    patient = ref.patient_id or patient_of(path.parent.name)
    slice_ = Slice2D(ref.slice_id, patient, "lgg", pixels, CHANNELS, mask, "binary", path)
    return Inspected(slice_, tuple(faults), tuple(warnings))
