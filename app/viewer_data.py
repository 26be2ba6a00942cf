"""The voxels the slice viewer draws for one case, from a run or from a folder of images:
image, labels and a prediction's probability / TTA-variance maps on one RAS grid.

Images and labels come through :mod:`tumorscope.app.volumes`' cached loaders; the float maps
have a loader of their own here (``st.cache_resource``, per file and mtime). Maps are read
only when a heat overlay is shown: a BraTS probability file is ~100 MB of floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from tumorscope.app import volumes as volumes_cache
from tumorscope.app.caches import stamp
from tumorscope.core.data.geometry import RasVolume, to_ras
from tumorscope.core.data.view_folder import ViewCase, open_view_folder
from tumorscope.core.errors import GeometryError, TumorscopeError
from tumorscope.core.prediction.maps import read_region_maps
from tumorscope.core.prediction.postprocess import PostProcess
from tumorscope.core.store import CaseRecord, Run
from tumorscope.render.slices import HeatKind as MapKind


@dataclass(frozen=True)
class MapFiles:
    """Where a prediction's maps are (``None``: not saved) and its thresholds per region."""

    probability: Path | None = None
    variance: Path | None = None
    thresholds: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def path(self, kind: MapKind) -> Path | None:
        return self.probability if kind == "probability" else self.variance


@dataclass(frozen=True)
class ViewerVolumes:
    """One case as the slice viewer draws it: ``image`` and, when there are, ``truth`` and
    ``prediction`` (canonical labels) on its grid, the prediction's ``maps``, and another
    run's prediction to compare with."""

    image: RasVolume
    truth: RasVolume | None
    prediction: RasVolume | None
    maps: MapFiles = MapFiles()
    prediction_b: RasVolume | None = None
    """Run B's prediction of the same patient, for the A/B overlays (``names`` A, B)."""
    names: tuple[str, str] | None = None


@st.cache_resource(show_spinner=False, max_entries=4)
def load_maps(path: str, mtime_ns: int) -> RasVolume:
    """A probability or variance file, (X, Y, Z, 3) float32 RAS-ordered; cached per mtime."""
    maps = read_region_maps(path)
    return to_ras(maps.data, maps.affine)


def region_map(files: MapFiles, kind: MapKind, image: RasVolume) -> RasVolume:
    """The whole (X, Y, Z, 3) map of ``kind``, checked to lie on ``image``'s grid."""
    path = files.path(kind)
    if path is None:
        raise GeometryError(f"no {kind} map saved")  # callers offer only saved maps
    volume = load_maps(str(path), stamp(path))
    if volume.data.shape[:3] != image.shape:
        raise GeometryError(f"{kind} map has shape {volume.data.shape[:3]} but the image "
                            f"{image.shape}", path=path)
    return volume


def map_files(run: Run, case_id: str, record: CaseRecord) -> MapFiles:
    """The maps saved beside ``case_id``'s prediction, and the thresholds it was made at."""
    prob, var = run.probabilities_path(case_id), run.tta_variance_path(case_id)
    post = PostProcess.from_settings((record.provenance or {}).get("settings") or {})
    return MapFiles(prob if prob.is_file() else None, var if var.is_file() else None,
                    post.thresholds if post is not None else (0.5, 0.5, 0.5))


def run_volumes(run: Run, case: CaseRecord, modality: str) -> ViewerVolumes:
    """Image, truth and prediction of a run's case (:func:`volumes.case_volumes`) and its maps."""
    loaded = volumes_cache.case_volumes(run, case, modality)
    return ViewerVolumes(loaded.image, loaded.truth, loaded.prediction,
                         map_files(run, case.case_id, case))


@st.cache_data(show_spinner=False, max_entries=16)
def _folder(path: str, mtime_ns: int) -> tuple[ViewCase, ...]:
    return open_view_folder(path)


def folder_cases(path: str | Path) -> tuple[ViewCase, ...]:
    """The cases of a folder opened for viewing (:func:`open_view_folder`), cached until
    the folder changes."""
    return _folder(str(Path(path).expanduser()), stamp(Path(path).expanduser()))


def folder_volumes(case: ViewCase, image_name: str) -> tuple[ViewerVolumes, str | None]:
    """One image of a folder's case and its label map, if it has one on the same grid;
    with the reason when the label cannot be shown."""
    path = case.images[image_name]
    image = volumes_cache.load_image(str(path), stamp(path))
    if case.label is None:
        return ViewerVolumes(image, None, None), None
    try:
        truth = volumes_cache.load_label(str(case.label), stamp(case.label),
                                         case.label_convention)
    except TumorscopeError as exc:
        return ViewerVolumes(image, None, None), f"label not shown: {exc}"
    if truth.shape != image.shape:
        return ViewerVolumes(image, None, None), (
            f"label not shown: {case.label.name} has shape {truth.shape}, the image "
            f"{image.shape}")
    return ViewerVolumes(image, truth, None), None
