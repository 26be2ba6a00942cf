"""The slice viewer's voxels: each file turned to RAS order once and kept while unchanged
(``st.cache_resource``: large, read-only, one shared copy), and its display windows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from tumorscope.app.caches import stamp
from tumorscope.core.data.cases import MODALITIES
from tumorscope.core.data.geometry import RasVolume, to_ras
from tumorscope.core.data.labels import LabelConvention
from tumorscope.core.data.nifti import read_label, read_nifti
from tumorscope.core.errors import GeometryError, LayoutError
from tumorscope.core.store import CaseRecord, Run


def modality_paths(case: CaseRecord) -> dict[str, Path]:
    """Recorded modalities of ``case`` in the fixed t1, t1ce, t2, flair order."""
    return {m: case.images[m] for m in MODALITIES if m in case.images}


@st.cache_resource(show_spinner=False, max_entries=12)
def load_image(path: str, mtime_ns: int) -> RasVolume:
    """One modality, RAS-ordered, float32; cached per file and mtime."""
    volume = read_nifti(path)
    return to_ras(volume.data, volume.affine)


@st.cache_resource(show_spinner=False, max_entries=12)
def load_label(path: str, mtime_ns: int, convention: LabelConvention) -> RasVolume:
    """A label map (truth or prediction), checked, canonical uint8 {0, 1, 2, 4}, RAS-ordered."""
    volume = read_label(path, convention=convention)
    return to_ras(volume.data, volume.affine)


@st.cache_data(show_spinner=False, max_entries=64)
def auto_window(path: str, mtime_ns: int) -> tuple[float, float]:
    """(level, width) spanning the 0.5-99.5th percentiles of the brain voxels (nonzero)."""
    # Every 8th voxel: plenty for a percentile, 8x faster on a 9-Mvoxel volume.
    data = load_image(path, mtime_ns).data[::2, ::2, ::2]
    brain = data[data != 0]
    if brain.size == 0:
        brain = data.ravel()
    low, high = (float(v) for v in np.percentile(brain, [0.5, 99.5]))
    if high <= low:
        high = low + 1.0
    return (low + high) / 2.0, high - low


@st.cache_data(show_spinner=False, max_entries=64)
def intensity_range(path: str, mtime_ns: int) -> tuple[float, float]:
    """Full intensity range of an image, for the window sliders' bounds."""
    data = load_image(path, mtime_ns).data
    low, high = float(data.min()), float(data.max())
    return low, max(high, low + 1.0)


@dataclass(frozen=True)
class CaseVolumes:
    """The voxels the slice viewer needs for one patient and modality, on one RAS grid."""

    image: RasVolume
    truth: RasVolume | None
    prediction: RasVolume


def case_volumes(run: Run, case: CaseRecord, modality: str) -> CaseVolumes:
    """Image, truth (if any) and prediction of ``case``, checked to lie on one grid."""
    images = modality_paths(case)
    if modality not in images:
        raise LayoutError(f"case {case.case_id} has no {modality} image recorded "
                          f"(has {list(images)})", path=run.cases_path)
    image_path = images[modality]
    prediction_path = run.prediction_path(case.case_id)
    convention = case.label_convention
    image = load_image(str(image_path), stamp(image_path))
    pred = load_label(str(prediction_path), stamp(prediction_path), convention)
    truth = None
    if case.has_truth and case.label is not None:
        truth = load_label(str(case.label), stamp(case.label), convention)
    for what, vol, path in (("prediction", pred, prediction_path),
                            ("ground truth", truth, case.label)):
        if vol is not None and vol.shape != image.shape:
            raise GeometryError(f"{what} has shape {vol.shape} but the {modality} image "
                                f"{image.shape}", path=path)
    return CaseVolumes(image, truth, pred)
