"""The one disk cache of a case's surfaces, keyed by the source's content and the parameters.

The store owns a case's folder (:meth:`tumorscope.core.store.Run.mesh_dir`); the sub-folder
of each source is named here, and only here::

    RUN/meshes/<case>/truth/        WT-<key>.vtp  TC-<key>.vtp  ET-<key>.vtp  meshes.json
    RUN/meshes/<case>/prediction/   the same, of the prediction
    RUN/meshes/<case>/brain/        brain-<key>.vtp  meshes.json
    RUN/meshes/<case>/{truth,prediction}/display-<N>/   the same surfaces simplified to
                                                        about N triangles (what the app draws)

Each folder holds the meshes of one source file and a ``meshes.json`` manifest, written
atomically after the meshes: the source's content fingerprint (SHA-256,
:func:`tumorscope.core.fingerprint.fingerprint`) and the meshing parameters. A mesh is
reused exactly when both are unchanged; the hash is recomputed only when the file's stat
identity (inode, size, mtime, ctime) changed, so reopening a case costs one ``stat`` plus
the reads. The key is in each file name too, so a manifest being replaced never points at
meshes built from other data or with other options. A run that cannot be written
(read-only) caches in a temp folder instead.

:func:`case_surfaces` is the entry point for a case; :func:`cached_region_meshes` and
:func:`cached_brain_surface` cache one file's meshes in any folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import pyvista as pv

from tumorscope.core.data.labels import REGIONS, LabelConvention
from tumorscope.core.data.nifti import atomic_path, atomic_write_json, read_label, read_nifti
from tumorscope.core.errors import CaseFileMissingError, ConfigError
from tumorscope.core.fingerprint import fingerprint
from tumorscope.core.store import CaseRecord, Run

from .mesh import (
    MESH_NAMES,
    SIMPLIFY_VERSION,
    brain_surface,
    check_names,
    region_meshes,
    simplify_to,
)

log = logging.getLogger(__name__)

MeshSource = Literal["truth", "prediction", "brain"]
"""Whose surfaces: the ground truth's and the prediction's regions, or the brain's outline."""
MESH_SOURCES: tuple[MeshSource, ...] = get_args(MeshSource)
BRAIN_MESH = "brain"
"""Name of the brain surface in its folder's manifest."""

CACHE_FORMAT_VERSION = 2
"""2: one scheme for every source (SHA-256 fingerprints); 1 had a digest per folder kind."""
MANIFEST = "meshes.json"

BRAIN_OPTIONS: dict[str, float | int] = {"threshold": 0.0, "downsample": 2,
                                          "smooth_iterations": 20, "simplify_mm": 3.0}
"""How the context brain surface is built (:func:`~tumorscope.render.mesh.brain_surface`)."""


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def cached_meshes(
    source_path: str | Path,
    cache_dir: str | Path,
    *,
    names: Sequence[str],
    params: Mapping[str, Any],
    build: Callable[[list[str]], Mapping[str, pv.PolyData]],
    what: str = "source",
) -> dict[str, pv.PolyData]:
    """The meshes ``names`` of one source file, from ``cache_dir`` or made by ``build``.

    ``params`` (JSON-able) are everything besides the file's bytes that the meshes depend
    on; ``build(missing_names)`` makes the meshes not cached yet. Names missing from a valid
    cache are built and added; a damaged cache file is rebuilt, never fatal. ``what`` names
    the source in the error when the file is not there ("label", "image").
    """
    source_path, cache_dir = Path(source_path), Path(cache_dir)
    params = dict(params)
    manifest_path = cache_dir / MANIFEST
    manifest = _read_manifest(manifest_path)
    previous = manifest.get("source")
    previous = previous if isinstance(previous, dict) else {}
    try:
        source = fingerprint(source_path, previous)
    except CaseFileMissingError:
        raise CaseFileMissingError(f"{what} file does not exist", path=source_path) from None
    digest = source["sha256"]
    valid = manifest.get("params") == params and previous.get("sha256") == digest
    files: dict[str, str] = dict(manifest.get("files", {})) if valid else {}

    meshes: dict[str, pv.PolyData] = {}
    for name in names:
        if name in files and (cache_dir / files[name]).is_file():
            try:
                meshes[name] = pv.read(cache_dir / files[name])
            except Exception as exc:  # a damaged cache file is rebuilt, never fatal
                log.warning("rebuilding unreadable mesh cache file %s (%s)",
                            cache_dir / files[name], exc)
    missing = [n for n in names if n not in meshes]
    if not missing and valid and previous == source:
        return meshes  # nothing to build, nothing to record

    if missing:
        built = build(missing)
        key = hashlib.blake2b(json.dumps([digest, params], sort_keys=True).encode(),
                              digest_size=6).hexdigest()
        for name in missing:
            file_name = f"{name}-{key}.vtp"
            with atomic_path(cache_dir / file_name) as tmp:
                built[name].save(tmp)
            files[name] = file_name
            meshes[name] = built[name]
    atomic_write_json(manifest_path, {"source": source, "params": params, "files": files})
    keep = {*files.values(), MANIFEST}
    for stale in cache_dir.glob("*.vtp"):
        if stale.name not in keep and not stale.name.startswith("."):  # "." = being written
            stale.unlink(missing_ok=True)
    return {name: meshes[name] for name in names}


REGION_OPTIONS: dict[str, float | int] = {"smooth_iterations": 30, "smooth_passband": 0.05,
                                           "decimate_fraction": 0.0}
"""How :func:`cached_region_meshes` meshes a label map unless told otherwise."""


def _region_params(convention: str, smooth_iterations: int, smooth_passband: float,
                   decimate_fraction: float) -> dict[str, Any]:
    return {"format_version": CACHE_FORMAT_VERSION, "convention": convention,
            "smooth_iterations": int(smooth_iterations),
            "smooth_passband": float(smooth_passband),
            "decimate_fraction": float(decimate_fraction)}


def cached_region_meshes(
    label_path: str | Path,
    cache_dir: str | Path,
    *,
    names: Iterable[str] = REGIONS,
    convention: LabelConvention = "brats2020",
    smooth_iterations: int = int(REGION_OPTIONS["smooth_iterations"]),
    smooth_passband: float = float(REGION_OPTIONS["smooth_passband"]),
    decimate_fraction: float = float(REGION_OPTIONS["decimate_fraction"]),
) -> dict[str, pv.PolyData]:
    """:func:`~tumorscope.render.mesh.region_meshes` of a label NIfTI, cached in ``cache_dir``.

    ``cache_dir`` holds one source file's meshes (e.g. ``RUN/meshes/<case>/truth``), keyed
    as the module says. Labels are read in ``convention`` and checked.

    >>> import tempfile, nibabel as nib, numpy as np
    >>> d = Path(tempfile.mkdtemp())
    >>> lab = np.zeros((20, 20, 20), np.uint8); lab[5:15, 5:15, 5:15] = 4
    >>> nib.save(nib.Nifti1Image(lab, np.eye(4)), d / "seg.nii.gz")
    >>> first = cached_region_meshes(d / "seg.nii.gz", d / "cache", names=["ET"])
    >>> again = cached_region_meshes(d / "seg.nii.gz", d / "cache", names=["ET"])
    >>> bool(np.array_equal(first["ET"].points, again["ET"].points))
    True
    """
    names = check_names(names, MESH_NAMES)
    params = _region_params(convention, smooth_iterations, smooth_passband, decimate_fraction)

    def build(missing: list[str]) -> dict[str, pv.PolyData]:
        volume = read_label(label_path, convention=convention)
        return region_meshes(
            volume.data, volume.affine, names=missing, smooth_iterations=smooth_iterations,
            smooth_passband=smooth_passband, decimate_fraction=decimate_fraction)

    return cached_meshes(label_path, cache_dir, names=names, params=params, build=build,
                         what="label")


def cached_display_meshes(
    label_path: str | Path,
    cache_dir: str | Path,
    *,
    max_triangles: int,
    names: Iterable[str] = REGIONS,
    convention: LabelConvention = "brats2020",
) -> dict[str, pv.PolyData]:
    """:func:`cached_region_meshes` of ``cache_dir`` simplified to about ``max_triangles``
    (:func:`~tumorscope.render.mesh.simplify_to`), cached in ``cache_dir/display-<N>`` by the
    same source fingerprint: reopening a case reads the small surfaces, not the full ones,
    and does not simplify them again (after a restart that was most of a 3-D view's time).

    >>> import tempfile, nibabel as nib, numpy as np
    >>> d = Path(tempfile.mkdtemp())
    >>> lab = np.zeros((40, 40, 40), np.uint8); lab[5:35, 5:35, 5:35] = 4
    >>> nib.save(nib.Nifti1Image(lab, np.eye(4)), d / "seg.nii.gz")
    >>> small = cached_display_meshes(d / "seg.nii.gz", d / "cache", max_triangles=500,
    ...                               names=["ET"])
    >>> small["ET"].n_cells <= 750, (d / "cache" / "display-500" / "meshes.json").is_file()
    (True, True)
    """
    names = check_names(names, MESH_NAMES)
    if max_triangles < 1:
        raise ConfigError(f"max_triangles must be >= 1, got {max_triangles}")
    cache_dir = Path(cache_dir)
    # The full surfaces' parameters too: the display copies are rebuilt whenever they are.
    params = {**_region_params(convention, **REGION_OPTIONS),  # type: ignore[arg-type]
              "max_triangles": int(max_triangles), "simplify_version": SIMPLIFY_VERSION}

    def build(missing: list[str]) -> dict[str, pv.PolyData]:
        full = cached_region_meshes(label_path, cache_dir, names=missing, convention=convention)
        return {name: simplify_to(full[name], max_triangles=max_triangles) for name in missing}

    return cached_meshes(label_path, cache_dir / f"display-{int(max_triangles)}", names=names,
                         params=params, build=build, what="label")


def cached_brain_surface(image_path: str | Path, cache_dir: str | Path) -> pv.PolyData:
    """The context brain surface of a skull-stripped image (:data:`BRAIN_OPTIONS`), cached in
    ``cache_dir`` by the image's content, so it is rebuilt exactly when its bytes change."""

    def build(missing: list[str]) -> dict[str, pv.PolyData]:
        vol = read_nifti(image_path)
        return {BRAIN_MESH: brain_surface(vol.data, vol.affine, **BRAIN_OPTIONS)}

    params = {"format_version": CACHE_FORMAT_VERSION, "mesh": BRAIN_MESH, **BRAIN_OPTIONS}
    return cached_meshes(image_path, cache_dir, names=[BRAIN_MESH], params=params,
                         build=build, what="image")[BRAIN_MESH]


def mesh_folder(run: Run, case_id: str, source: MeshSource) -> Path:
    """``RUN/meshes/<case>/<source>``, or a temp folder of the same shape when the run is
    read-only."""
    folder = run.mesh_dir(case_id) / source
    probe = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if probe is not None and os.access(probe, os.W_OK):
        return folder
    key = hashlib.blake2b(str(run.path.resolve()).encode(), digest_size=8).hexdigest()
    return Path(tempfile.gettempdir()) / "tumorscope-meshes" / key / case_id / source


def source_path(run: Run, record: CaseRecord, source: MeshSource) -> Path | None:
    """The file ``source``'s surfaces are made from; ``None`` when the case has none (no
    ground truth; no image for the brain)."""
    if source == "prediction":
        return run.prediction_path(record.case_id)
    if source == "truth":
        return record.label if record.has_truth else None
    return record.brain_image


def case_surfaces(run: Run, record: CaseRecord, source: MeshSource, *,
                  max_triangles: int | None = None) -> dict[str, pv.PolyData] | None:
    """The cached world-mm surfaces of one source of a case of ``run``.

    Truth and prediction give ``{"WT", "TC", "ET"}`` (read in the case's label convention),
    with ``max_triangles`` simplified to about that (:func:`cached_display_meshes`); the
    brain ``{"brain"}`` (already light: never simplified further). ``None`` when the case
    has no such file.
    """
    path = source_path(run, record, source)
    if path is None:
        return None
    folder = mesh_folder(run, record.case_id, source)
    if source == "brain":
        return {BRAIN_MESH: cached_brain_surface(path, folder)}
    if max_triangles is not None:
        return cached_display_meshes(path, folder, max_triangles=max_triangles,
                                     convention=record.label_convention)
    return cached_region_meshes(path, folder, convention=record.label_convention)
