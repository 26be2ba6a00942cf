"""Preprocessed-case cache: crop + z-score done once, stored as .npy with its provenance."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tumorscope.core.config import BIAS_CORRECTIONS
from tumorscope.core.data.bias import BIAS_FIELD_VERSION, correct_bias
from tumorscope.core.data.cases import MODALITIES, Case, load_case
from tumorscope.core.data.nifti import atomic_save_npy, atomic_write_json, read_header
from tumorscope.core.data.volumes import (
    CropBox,
    bounding_box,
    brain_mask,
    crop,
    resample,
    zoom_factors,
    zscore,
)
from tumorscope.core.errors import TumorscopeError, check_choice
from tumorscope.core.fingerprint import content_unchanged, fingerprint, same_content
from tumorscope.core.workers import each_in_workers, worker_count

log = logging.getLogger(__name__)

CACHE_VERSION = 2
"""Bumped whenever preprocessing changes, so old cache entries are rebuilt."""

CROP_MARGIN_VOX = 2

BiasCorrection = Literal["off", "white_matter"]  # one of config's BIAS_CORRECTIONS


def default_cache_dir() -> Path:
    """``$TUMORSCOPE_CACHE``, else ``~/.cache/tumorscope``."""
    env = os.environ.get("TUMORSCOPE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tumorscope"


@dataclass(frozen=True)
class CachedCase:
    """A preprocessed case. ``image`` (4, x, y, z) float32 and ``label`` (x, y, z) uint8 are
    memory-mapped, cropped to ``box``; ``affine`` is the source grid's, so
    ``uncrop(..., box)`` puts any array back where it came from. With a target spacing the
    arrays are resampled after cropping; ``spacing_mm`` is then the target, and an array
    must be resampled back to ``box.shape`` before ``uncrop``."""

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    box: CropBox
    affine: np.ndarray
    spacing_mm: tuple[float, float, float]
    meta: dict[str, Any]


def _fingerprint(case: Case, previous: list[dict[str, Any]] | None = None
                 ) -> list[dict[str, Any]]:
    """Content fingerprints of the case's files; hashes in ``previous`` are reused for files
    whose stat identity is unchanged (see :mod:`.fingerprint`)."""
    earlier = {p.get("path"): p for p in previous or [] if isinstance(p, dict)}
    return [fingerprint(path, earlier.get(str(Path(path).resolve()))) for path in case.files]


def source_fingerprints(case: Case, cache_dir: str | Path, *,
                        target_spacing_mm: float | None = None,
                        bias_correction: BiasCorrection = "off") -> dict[str, dict[str, Any]]:
    """Modality (and ``seg``) -> content fingerprint of ``case``'s files, reusing the hashes
    its cache entry holds: what a prediction records as its inputs."""
    folder = case_cache_dir(case, cache_dir, target_spacing_mm=target_spacing_mm,
                            bias_correction=bias_correction)
    try:
        previous = json.loads((folder / "meta.json").read_text()).get("sources")
    except (OSError, json.JSONDecodeError, AttributeError):
        previous = None
    fps = _fingerprint(case, previous if isinstance(previous, list) else None)
    names = [m for m in MODALITIES if m in case.images] + (["seg"] if case.label else [])
    return dict(zip(names, fps, strict=True))


def case_cache_dir(case: Case, cache_dir: str | Path, *,
                   target_spacing_mm: float | None = None,
                   bias_correction: BiasCorrection = "off") -> Path:
    """Folder of ``case`` in the cache; the source folder's hash keeps same-named ids apart,
    and each target spacing and bias correction has its own entry."""
    check_choice("bias_correction", bias_correction, BIAS_CORRECTIONS)
    digest = hashlib.sha1(str(case.folder.resolve()).encode()).hexdigest()[:10]
    grid = "native" if target_spacing_mm is None else f"{target_spacing_mm:g}mm"
    if bias_correction != "off":
        grid += f"-{bias_correction}"
    return Path(cache_dir) / "preprocessed" / grid / f"{case.case_id}-{digest}"


def _same_sources(old: Any, new: list[dict[str, Any]]) -> bool:
    return (isinstance(old, list) and len(old) == len(new)
            and all(same_content(a, b) for a, b in zip(old, new, strict=True)))


def _seal(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with the SHA-256 of its own content, so an edit after the fact is seen."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return {**body, "meta_sha256": digest}


def _valid_meta(folder: Path, case: Case) -> dict[str, Any] | None:
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION:
        return None
    if meta.get("bias_correction", "off") != "off" and \
            meta.get("bias_version") != BIAS_FIELD_VERSION:
        return None  # corrected by an earlier estimate of the field
    if _seal(meta)["meta_sha256"] != meta.get("meta_sha256"):
        log.warning("%s: meta.json was changed after it was written; rebuilding the entry",
                    folder)
        return None
    sources = _fingerprint(case, meta.get("sources") if isinstance(meta.get("sources"),
                                                                   list) else None)
    if not _same_sources(meta.get("sources"), sources):
        return None
    needed = ["image.npy"] + (["label.npy"] if meta.get("has_label") else [])
    if not all((folder / n).is_file() for n in needed):
        return None
    if meta["sources"] != sources:  # same bytes, new stat (touched, copied back): note it
        meta = _seal({**meta, "sources": sources})
        atomic_write_json(meta_path, meta)
    return meta


def preprocess_case(
    case: Case, cache_dir: str | Path, *, target_spacing_mm: float | None = None,
    bias_correction: BiasCorrection = "off", force: bool = False,
) -> CachedCase:
    """Return the cached, preprocessed ``case``, building the cache entry if it is stale.

    The entry is rebuilt when any source file's content changed (SHA-256; hashed again only
    when its stat identity changed), or :data:`CACHE_VERSION` moved; a damaged entry (a
    truncated ``.npy``) is rebuilt with a warning. Arrays are written first and ``meta.json``
    last, each atomically, so an interrupted build is never mistaken for a finished one.

    >>> import tempfile, nibabel as nib
    >>> from tumorscope.core.data.cases import discover
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "C1").mkdir()
    >>> brain = np.zeros((12, 12, 12), np.float32); brain[3:9, 3:9, 3:9] = 100
    >>> brain[5, 5, 5] = 300
    >>> for key in ("t1", "t1ce", "t2", "flair"):
    ...     nib.save(nib.Nifti1Image(brain, np.eye(4)), root / "C1" / f"C1_{key}.nii.gz")
    >>> cached = preprocess_case(discover(root)[0], root / "cache")
    >>> cached.image.shape, cached.box.original_shape   # cropped to the brain + 2 voxels
    ((4, 10, 10, 10), (12, 12, 12))
    >>> preprocess_case(discover(root)[0], root / "cache").meta == cached.meta  # reused
    True
    """
    folder = case_cache_dir(case, cache_dir, target_spacing_mm=target_spacing_mm,
                            bias_correction=bias_correction)
    meta = None if force else _valid_meta(folder, case)
    if meta is None:
        meta = _build(case, folder, target_spacing_mm, bias_correction)
        return _open(case.case_id, folder, meta)
    try:
        _check_entry(folder, case, meta)
        return _open(case.case_id, folder, meta)
    except (OSError, ValueError, EOFError, TumorscopeError) as exc:  # a damaged entry
        log.warning("%s: cache entry of %s is damaged (%s); rebuilding it", folder,
                    case.case_id, exc)
        return _open(case.case_id, folder, _build(case, folder, target_spacing_mm,
                                                  bias_correction))


def is_cached(case: Case, cache_dir: str | Path, *, target_spacing_mm: float | None = None,
              bias_correction: BiasCorrection = "off") -> bool:
    """Whether ``case`` has a current entry (its sources unchanged; the arrays are checked
    when it is opened): what :func:`preprocess_cases` leaves out of its workers. A source
    that cannot be read now (permissions, gone) counts as not cached: building it then
    raises the error that names it."""
    try:
        return _valid_meta(case_cache_dir(case, cache_dir, target_spacing_mm=target_spacing_mm,
                                          bias_correction=bias_correction), case) is not None
    except TumorscopeError:
        return False


def _build_quietly(case: Case, cache_dir: Path, target_spacing_mm: float | None,
                   bias_correction: BiasCorrection, force: bool) -> int:
    """A worker's unit: build the entry; a bad case is left for the caller's own pass to
    report, in its own words. Returns the process id that did the work."""
    try:
        preprocess_case(case, cache_dir, target_spacing_mm=target_spacing_mm,
                        bias_correction=bias_correction, force=force)
    except TumorscopeError:
        pass
    return os.getpid()


def preprocess_cases(cases: Sequence[Case], cache_dir: str | Path, *,
                     target_spacing_mm: float | None = None,
                     bias_correction: BiasCorrection = "off", force: bool = False,
                     progress: bool = False, workers: bool = True,
                     ) -> list[tuple[Case, CachedCase | TumorscopeError]]:
    """:func:`preprocess_case` of every case, in order, each its entry or its error: with
    ``workers``, the entries missing or stale (every entry with ``force``) are first built
    in worker processes (one per core, :mod:`tumorscope.core.workers`); then every case is
    opened (or built) here, so a bad case fails here with the error it always gives."""
    from tqdm import tqdm

    build = [c for c in cases if force or not is_cached(
        c, cache_dir, target_spacing_mm=target_spacing_mm, bias_correction=bias_correction)]
    done: set[str] = set()  # built by a worker, so opened here without ``force``
    counted: set[str] = set()  # shown on the bar
    with tqdm(total=len(cases), desc="preprocess", unit="case", disable=not progress) as bar:
        if workers and worker_count(len(build)) > 1:
            unit = partial(_build_quietly, cache_dir=Path(cache_dir),
                           target_spacing_mm=target_spacing_mm, bias_correction=bias_correction,
                           force=force)
            pids: set[int] = set()
            for case, outcome in each_in_workers(unit, build):
                if isinstance(outcome, int):
                    pids.add(outcome)
                    done.add(case.case_id)
                else:  # not a bad case (those return): the pass below builds it here
                    log.warning("%s: a worker process failed to preprocess it (%s); "
                                "preprocessing it here", case.case_id, outcome)
                counted.add(case.case_id)
                bar.update(1)
            log.info("preprocessed %d case(s) in %d worker process(es)", len(done), len(pids))
        out: list[tuple[Case, CachedCase | TumorscopeError]] = []
        for case in cases:
            try:
                out.append((case, preprocess_case(
                    case, cache_dir, target_spacing_mm=target_spacing_mm,
                    bias_correction=bias_correction,
                    force=force and case.case_id not in done)))
            except TumorscopeError as exc:
                out.append((case, exc))
            if case.case_id not in counted:
                bar.update(1)
    return out


def _check_entry(folder: Path, case: Case, meta: dict[str, Any]) -> None:
    """Raise ``ValueError`` unless the entry's arrays are the bytes written at build time and
    its geometry is the source's: an entry changed after the fact is never used."""
    for name, fp in (meta.get("arrays") or {}).items():
        if not content_unchanged(fp, folder / name):
            raise ValueError(f"{name} is not the array written at build time")
    if not meta.get("arrays"):
        raise ValueError("no record of its arrays (built by an older version)")
    shape, affine = read_header(case.files[0])
    box = meta.get("crop_box") or {}
    if list(shape[:3]) != list(box.get("original_shape", [])) or not np.allclose(
            np.asarray(meta.get("affine"), dtype=float), affine, atol=1e-4):
        raise ValueError(f"recorded grid differs from that of {case.files[0].name}")


def _build(case: Case, folder: Path, target_spacing_mm: float | None,
           bias_correction: BiasCorrection) -> dict[str, Any]:
    data = load_case(case)
    mask = brain_mask(data.image)
    box = bounding_box(mask, margin_vox=CROP_MARGIN_VOX)
    image, brain = crop(data.image, box), crop(mask, box)
    if bias_correction == "white_matter":
        image = correct_bias(image, brain, spacing_mm=data.spacing_mm)
    image, means, stds = zscore(image, brain)
    zoom = zoom_factors(data.spacing_mm, target_spacing_mm)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(folder / "image.npy", resample(image, zoom, order=1))
    arrays = {"image.npy": fingerprint(folder / "image.npy")}
    if data.label is not None:
        atomic_save_npy(folder / "label.npy", resample(crop(data.label, box), zoom, order=0))
        arrays["label.npy"] = fingerprint(folder / "label.npy")
    meta = {
        "version": CACHE_VERSION,
        "case_id": case.case_id,
        "layout": case.layout,
        "label_convention": case.label_convention,
        "sources": _fingerprint(case),
        "arrays": arrays,
        "has_label": data.label is not None,
        "crop_box": box.to_dict(),
        "affine": np.asarray(data.affine).tolist(),
        "source_spacing_mm": list(data.spacing_mm),
        "spacing_mm": (list(data.spacing_mm) if target_spacing_mm is None
                       else [target_spacing_mm] * 3),
        "zscore_mean": means.tolist(),
        "zscore_std": stds.tolist(),
        "bias_correction": bias_correction,
        "bias_version": BIAS_FIELD_VERSION if bias_correction != "off" else None,
        "metadata": case.metadata,
    }
    meta = _seal(meta)
    atomic_write_json(folder / "meta.json", meta)
    log.info("cached %s in %s (crop %s of %s)", case.case_id, folder, box.shape, box.original_shape)
    return meta


def _open(case_id: str, folder: Path, meta: dict[str, Any]) -> CachedCase:
    image = np.load(folder / "image.npy", mmap_mode="r")
    label = np.load(folder / "label.npy", mmap_mode="r") if meta["has_label"] else None
    box = CropBox.from_dict(meta["crop_box"])
    if image.ndim != 4 or (label is not None and label.shape != image.shape[1:]):
        raise ValueError(f"arrays of shape {image.shape} and "
                         f"{None if label is None else label.shape} do not fit together")
    return CachedCase(
        case_id=case_id,
        image=image,
        label=label,
        box=box,
        affine=np.asarray(meta["affine"], dtype=np.float64),
        spacing_mm=tuple(meta["spacing_mm"]),
        meta=meta,
    )
