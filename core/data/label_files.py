"""Label maps for other tools: ITK-SNAP label descriptions, 3D Slicer colour tables, ``.seg.nrrd``.

Each entry names one label value as it is stored on disk (a case's own convention: BraTS
2023 cases store enhancing tumour as 3) with its name and colour. Colours are passed in by
the caller (render owns the project's colours; core cannot import render), keyed by the
canonical label (1, 2, 4), so every tool shows a tumour in the colours of the app.

Geometry: NIfTI affines map voxels to RAS+ millimetres, NRRD files written here use
``left-posterior-superior`` (what Slicer writes and expects), so x and y flip sign on the way
out; voxel order is kept (``data[i, j, k]`` stays voxel (i, j, k)).

>>> entries = label_entries({1: (200, 60, 50), 2: (46, 184, 76), 4: (255, 215, 0)},
...                         convention="brats2023")
>>> [(e.value, e.name) for e in entries]
[(1, 'necrotic / non-enhancing core'), (2, 'edema'), (3, 'enhancing tumour')]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from tumorscope.core.data.labels import CANONICAL_LABELS, LABEL_NAMES, from_canonical, label_set
from tumorscope.core.data.nifti import atomic_path, atomic_write_text, read_label
from tumorscope.core.errors import ConfigError, GeometryError, TumorscopeError, check_choice

LabelFileFormat = Literal["seg.nrrd", "itksnap", "slicer"]
LABEL_FILE_FORMATS: tuple[str, ...] = get_args(LabelFileFormat)

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""World RAS+ -> LPS+ (its own inverse)."""

ITKSNAP_SUFFIX = "_itksnap_labels.txt"
SLICER_SUFFIX = "_slicer_colors.ctbl"
SEG_NRRD_SUFFIX = ".seg.nrrd"


@dataclass(frozen=True)
class LabelEntry:
    """One stored label value, its name and its 0-255 sRGB colour."""

    value: int
    name: str
    rgb: tuple[int, int, int]
    opacity: float = 1.0


def label_entries(colours: Mapping[int, Sequence[int]], *,
                  convention: str = "brats2020") -> tuple[LabelEntry, ...]:
    """The tumour labels (background left out) in ``convention``'s stored values.

    ``colours`` maps each canonical label (1, 2, 4) to three integers in 0..255; a missing
    label or a bad colour raises :class:`ConfigError`.
    """
    label_set(convention)  # an unknown convention is refused by name
    entries = []
    for canonical in CANONICAL_LABELS[1:]:
        rgb = colours.get(canonical)
        if rgb is None:
            raise ConfigError(f"no colour for label {canonical} ({LABEL_NAMES[canonical]}); "
                              f"colours must cover the labels {list(CANONICAL_LABELS[1:])}")
        rgb = tuple(int(c) for c in rgb)
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise ConfigError(f"colour of label {canonical} must be three integers in 0..255, "
                              f"got {colours[canonical]!r}")
        value = int(from_canonical(np.array([canonical]), convention=convention)[0])
        entries.append(LabelEntry(value, LABEL_NAMES[canonical], rgb))  # type: ignore[arg-type]
    return tuple(entries)


# ------------------------------------------------------------------------- ITK-SNAP


def itksnap_label_text(entries: Sequence[LabelEntry]) -> str:
    """An ITK-SNAP "Label Description" file (Segmentation > Import Label Descriptions).

    >>> print(itksnap_label_text([LabelEntry(2, "edema", (46, 184, 76))]).splitlines()[-1])
        2    46  184   76        1  1  1    "edema"
    """
    lines = [
        "################################################",
        "# ITK-SnAP Label Description File",
        "# written by Tumorscope",
        "# File format: ",
        "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
        "# Fields: ",
        "#    IDX:   Zero-based index ",
        "#    -R-:   Red color component (0..255)",
        "#    -G-:   Green color component (0..255)",
        "#    -B-:   Blue color component (0..255)",
        "#    -A-:   Label transparency (0.00 .. 1.00)",
        "#    VIS:   Label visibility (0 or 1)",
        "#    MSH:   Label mesh visibility (0 or 1)",
        "#  LABEL:   Label description ",
        "################################################",
        _itksnap_line(LabelEntry(0, "Clear Label", (0, 0, 0), 0.0), visible=0),
    ]
    lines += [_itksnap_line(e, visible=1) for e in entries]
    return "\n".join(lines) + "\n"


def _itksnap_line(entry: LabelEntry, *, visible: int) -> str:
    r, g, b = entry.rgb
    # ITK-SNAP reads the description between double quotes; a quote inside would end it.
    name = entry.name.replace('"', "'")
    return (f"{entry.value:5d} {r:5d} {g:4d} {b:4d} {entry.opacity:8g} {visible:2d} "
            f"{visible:2d}    \"{name}\"")


def write_itksnap_labels(path: str | Path, entries: Sequence[LabelEntry]) -> Path:
    """Write :func:`itksnap_label_text` to ``path`` atomically."""
    atomic_write_text(path, itksnap_label_text(entries))
    return Path(path)


# ---------------------------------------------------------------------------- Slicer


def slicer_name(name: str) -> str:
    """A label name as a Slicer colour table holds it: one word (fields are space-separated).

    >>> slicer_name("necrotic / non-enhancing core")
    'necrotic_non-enhancing_core'
    """
    return re.sub(r"[^A-Za-z0-9-]+", "_", name).strip("_") or "label"


def slicer_color_table_text(entries: Sequence[LabelEntry], *, title: str = "tumorscope") -> str:
    """A 3D Slicer colour table (``.ctbl``: ``index name R G B A``, 0-255 each).

    >>> slicer_color_table_text([LabelEntry(4, "enhancing tumour", (255, 215, 0))]).splitlines()[-1]
    '4 enhancing_tumour 255 215 0 255'
    """
    rows = [LabelEntry(0, "background", (0, 0, 0), 0.0), *entries]
    lines = [f"# Color table file {slicer_name(title)}", f"# {len(rows)} values"]
    for e in rows:
        alpha = int(round(255 * e.opacity))
        lines.append(f"{e.value} {slicer_name(e.name)} {e.rgb[0]} {e.rgb[1]} {e.rgb[2]} {alpha}")
    return "\n".join(lines) + "\n"


def write_slicer_color_table(path: str | Path, entries: Sequence[LabelEntry], *,
                             title: str = "tumorscope") -> Path:
    """Write :func:`slicer_color_table_text` to ``path`` atomically."""
    atomic_write_text(path, slicer_color_table_text(entries, title=title))
    return Path(path)


# ----------------------------------------------------------------------- .seg.nrrd


def lps_geometry(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NRRD ``space directions`` (one row per voxel axis) and ``space origin``, in LPS mm,
    of a NIfTI (RAS+) affine.

    >>> affine = np.diag([2.0, 3.0, 4.0, 1.0]); affine[:3, 3] = [10, 20, 30]
    >>> directions, origin = lps_geometry(affine)
    >>> directions.tolist(), origin.tolist()
    ([[-2.0, 0.0, 0.0], [0.0, -3.0, 0.0], [0.0, 0.0, 4.0]], [-10.0, -20.0, 30.0])
    """
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise GeometryError(f"affine must be a finite 4x4 matrix, got shape {affine.shape}")
    lps = RAS_TO_LPS @ affine
    return lps[:3, :3].T.copy(), lps[:3, 3].copy()


def segment_extent(label: np.ndarray, value: int) -> list[int]:
    """Voxel extent ``[i0, i1, j0, j1, k0, k1]`` (inclusive) of ``value``; Slicer's
    ``0 -1 0 -1 0 -1`` when it is absent.

    >>> segment_extent(np.pad(np.ones((2, 1, 1), np.uint8), 1), 1)
    [1, 2, 1, 1, 1, 1]
    """
    where = np.nonzero(np.asarray(label) == value)
    if where[0].size == 0:
        return [0, -1, 0, -1, 0, -1]
    return [int(v) for axis in where for v in (axis.min(), axis.max())]


def seg_nrrd_header(label: np.ndarray, affine: np.ndarray,
                    entries: Sequence[LabelEntry]) -> dict[str, object]:
    """The NRRD header of a Slicer segmentation: one segment per entry, all in layer 0 of
    one shared labelmap (Slicer >= 4.11 reads it so), geometry in LPS."""
    label = np.asarray(label)
    if label.ndim != 3:
        raise GeometryError(f"a segmentation must be 3-D, got shape {label.shape}")
    directions, origin = lps_geometry(affine)
    header: dict[str, object] = {
        "space": "left-posterior-superior",
        "space directions": directions,
        "space origin": origin,
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip",
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_SourceRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    for i, entry in enumerate(entries):
        key = f"Segment{i}_"
        header.update({
            key + "ID": f"Segment_{entry.value}",
            key + "Name": entry.name,
            key + "NameAutoGenerated": "0",
            key + "Color": " ".join(f"{c / 255:.6g}" for c in entry.rgb),
            key + "ColorAutoGenerated": "0",
            key + "LabelValue": str(entry.value),
            key + "Layer": "0",
            key + "Extent": " ".join(str(v) for v in segment_extent(label, entry.value)),
            key + "Tags": "|",
        })
    return header


def write_seg_nrrd(path: str | Path, label: np.ndarray, affine: np.ndarray,
                   entries: Sequence[LabelEntry]) -> Path:
    """Write a label map (stored values of ``entries``) as a Slicer ``.seg.nrrd``, atomically."""
    try:
        import nrrd
    except ImportError:
        raise TumorscopeError("writing .seg.nrrd needs the pynrrd package: pip install "
                              "pynrrd") from None
    path = Path(path)
    data = np.asarray(label).astype(np.uint8)
    header = seg_nrrd_header(data, affine, entries)
    with atomic_path(path) as tmp:
        # index_order "F": NRRD's first axis is the fastest, which is nibabel's i.
        nrrd.write(str(tmp), data, header, index_order="F")
    return path


# -------------------------------------------------------------------- one case's files


def write_case_label_files(
    prediction: str | Path,
    out_dir: str | Path,
    case_id: str,
    *,
    format: LabelFileFormat,
    colours: Mapping[int, Sequence[int]],
    convention: str = "brats2020",
) -> list[Path]:
    """One case's label map for another tool, into ``out_dir``; returns the files written.

    ``"seg.nrrd"``: ``<case>.seg.nrrd`` (segments named and coloured, geometry in LPS);
    ``"itksnap"``: ``<case>.nii.gz`` (the prediction's bytes) and
    ``<case>_itksnap_labels.txt``; ``"slicer"``: ``<case>.nii.gz`` and
    ``<case>_slicer_colors.ctbl``. Values stay those of ``convention`` (the case's own, as
    the prediction file stores them). A bad prediction file raises the reader's error.
    """
    check_choice("format", format, LABEL_FILE_FORMATS)
    out = Path(out_dir)
    entries = label_entries(colours, convention=convention)
    volume = read_label(prediction, convention=convention)  # refuses unknown values by file
    if format == "seg.nrrd":
        stored = from_canonical(volume.data, convention=convention)
        return [write_seg_nrrd(out / f"{case_id}{SEG_NRRD_SUFFIX}", stored, volume.affine,
                               entries)]
    image = out / f"{case_id}.nii.gz"
    with atomic_path(image) as tmp:
        tmp.write_bytes(Path(prediction).read_bytes())
    if format == "itksnap":
        return [image, write_itksnap_labels(out / f"{case_id}{ITKSNAP_SUFFIX}", entries)]
    return [image, write_slicer_color_table(out / f"{case_id}{SLICER_SUFFIX}", entries,
                                            title=case_id)]
