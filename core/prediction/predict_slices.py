"""Predicting a 2-D slice dataset into a run: a mask per slice and its tumour type, each recorded.

The same rules as the 3-D :func:`~tumorscope.core.prediction.predict.predict_run`: a
prediction is reused only when its source file, the checkpoint and the settings are
unchanged; one model per run; a bad slice is one line and the others are still predicted.
Masks are written as one-slice NIfTI files (rows, columns, 1; the pixel size where the file
has it), so every tool that opens a label map opens them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from tumorscope.core.data.labels import regions_to_labels
from tumorscope.core.data.nifti import write_nifti
from tumorscope.core.data.slice2d import Slice2D, SliceRef
from tumorscope.core.data.slice_datasets import discover_slices, read_slice
from tumorscope.core.data.slice_preprocess import CLASS_NAMES, prepare_slice
from tumorscope.core.errors import ConfigError, TumorscopeError
from tumorscope.core.fingerprint import fingerprint
from tumorscope.core.models.checkpoints import autocast_dtype, load_model, resolve_device
from tumorscope.core.models.unet import split_output
from tumorscope.core.prediction.predict import (
    PredictReport,
    _check_same_model,
    _why_recompute,
    _write_predict_config,
)
from tumorscope.core.prediction.slice_inference import predict_slices
from tumorscope.core.store import TRACK_2D, CaseRecord, Run

log = logging.getLogger(__name__)

SLICE_PREPROCESS_VERSION = 1


def slice_settings(cfg: Any, *, autocast: torch.dtype | None, threshold: float) -> dict[str, Any]:
    """Everything besides the inputs and the weights that changes a 2-D prediction."""
    return {"track": TRACK_2D, "slice_size_px": int(cfg.data.slice_size_px),
            "threshold": float(threshold),
            "autocast": str(autocast).replace("torch.", "") if autocast is not None else "off",
            "preprocess_version": SLICE_PREPROCESS_VERSION}


def _affine(spacing_mm: tuple[float, float] | None) -> np.ndarray:
    row, col = spacing_mm or (1.0, 1.0)
    return np.diag([row, col, 1.0, 1.0])


def predict_slice_run(checkpoint: str | Path, input_dir: str | Path, out_dir: str | Path, *,
                      slice_ids: Sequence[str] | None = None, device: str = "auto",
                      threshold: float = 0.5, force: bool = False, progress: bool = True,
                      on_case: Callable[[str, str], None] | None = None) -> PredictReport:
    """Predict every slice of the 2-D dataset ``input_dir`` (or ``slice_ids`` of it) into
    the run ``out_dir`` with a 2-D checkpoint: a mask per slice on the slice's own grid and,
    with a type head, the predicted tumour type and its probabilities in ``cases.json``."""
    from tqdm import tqdm

    if not 0 < threshold < 1:
        raise ConfigError(f"threshold must be > 0 and < 1, got {threshold}")
    loaded = load_model(checkpoint)
    cfg = loaded.config
    if cfg.model.get("spatial_dims", 3) != 2:
        raise ConfigError("is a 3-D checkpoint; 2-D slices need a 2-D model (model.spatial_dims "
                          "2)", path=loaded.path)
    regions = tuple(loaded.checkpoint.get("regions") or ("tumour",))
    dev = resolve_device(device)
    amp = autocast_dtype(cfg.train.amp, dev)
    settings = slice_settings(cfg, autocast=amp, threshold=threshold)
    ck_info = {"path": str(loaded.path), "sha256": loaded.sha256}
    ds = discover_slices(input_dir)
    refs = list(ds.slices)
    if slice_ids is not None:
        wanted = set(slice_ids)
        refs = [r for r in refs if r.slice_id in wanted]
    run = Run(Path(out_dir))
    if run.path.exists() and not run.path.is_dir():
        raise ConfigError("is a file; --out needs a folder", path=run.path)
    run.path.mkdir(parents=True, exist_ok=True)
    report = PredictReport(run)
    report.cleaned = len(run.clean_temp_files())
    with run.lock():
        records = run.case_records()
        _check_same_model(run, records, {"checkpoint": ck_info, "settings": settings},
                          checkpoint=Path(checkpoint), force=force)
        _write_predict_config(run, loaded, {
            "checkpoint": ck_info["path"], "checkpoint_sha256": ck_info["sha256"],
            "input": str(Path(input_dir).resolve()), "settings": settings})
    model = loaded.model.to(dev)
    for ref in tqdm(refs, desc="predict", unit="slice", disable=not progress):
        try:
            reason = _predict_one(ref, run, records.get(ref.slice_id), model, cfg, ck_info,
                                  settings, regions=regions, dev=dev, amp=amp, force=force,
                                  synthetic=ref.slice_id in ds.synthetic_ids)
        except TumorscopeError as exc:
            report.failed.append(f"{ref.slice_id}: {exc}")
            if on_case:
                on_case(ref.slice_id, "failed")
            continue
        if reason is None:
            report.reused.append(ref.slice_id)
        else:
            report.predicted[ref.slice_id] = reason
        if on_case:
            on_case(ref.slice_id, "reused" if reason is None else f"predicted ({reason})")
    return report


def _predict_one(ref: SliceRef, run: Run, record: CaseRecord | None, model: torch.nn.Module,
                 cfg: Any, ck_info: dict[str, Any], settings: dict[str, Any], *,
                 regions: tuple[str, ...], dev: torch.device, amp: torch.dtype | None,
                 force: bool, synthetic: bool) -> str | None:
    sources = {"image": fingerprint(ref.path, ((record.provenance or {}).get("sources") or {})
                                    .get("image") if record else None)}
    if ref.mask_path is not None:
        sources["mask"] = fingerprint(ref.mask_path)
    provenance = {"sources": sources, "checkpoint": ck_info, "settings": settings}
    reason = _why_recompute(record, run, ref.slice_id, provenance, force=force,
                            probabilities=True)
    if reason is None:
        return None
    s = read_slice(ref)
    prepared = prepare_slice(s, size_px=settings["slice_size_px"])
    t0 = time.perf_counter()
    (pred,) = predict_slices(model, [prepared], device=dev, amp=amp, batch_size=1,
                             split_output=split_output)
    h, w = s.shape
    size = prepared.image.shape[-1]
    # Probabilities back to the slice's own grid, then thresholded: the mask is drawn where
    # the image is, at its resolution.
    prob = ndimage.zoom(pred.probabilities, (1, h / size, w / size), order=1, grid_mode=True,
                        mode="nearest")
    write_slice_prediction(run, ref, s, prob, threshold=settings["threshold"], regions=regions,
                           provenance=provenance, synthetic=synthetic,
                           class_probabilities=pred.class_probabilities, started=t0)
    log.info("%s: predicted (%s)", ref.slice_id, reason)
    return reason


def write_slice_prediction(run: Run, ref: SliceRef, s: Slice2D, prob: np.ndarray, *,
                           threshold: float, regions: tuple[str, ...],
                           provenance: dict[str, Any], synthetic: bool,
                           class_probabilities: np.ndarray | None,
                           started: float) -> CaseRecord:
    """Write one slice's prediction into ``run`` and record it: the mask of ``prob`` (K, H, W
    region probabilities on the slice's own grid) at ``threshold``, the probabilities, and
    its record in cases.json (the tumour type where ``class_probabilities`` are given).
    ``started`` is the ``time.perf_counter()`` the prediction began at."""
    masks = prob >= threshold
    if regions == ("tumour",):
        label = masks[0].astype(np.uint8)
    else:
        label = regions_to_labels(masks).astype(np.uint8)
    out_path = run.prediction_path(ref.slice_id)
    write_nifti(out_path, label[..., None], _affine(s.spacing_mm))  # (H, W, 1)
    # Region probabilities on the slice's grid, (H, W, 1, K): the viewer's heat map and
    # threshold slider, and the failure explorer's "under-confident" read them.
    write_nifti(run.probabilities_path(ref.slice_id),
                np.moveaxis(prob, 0, -1)[:, :, None, :].astype(np.float32),
                _affine(s.spacing_mm))
    metadata = {"track": TRACK_2D, "dataset": s.dataset, "patient_id": s.patient_id,
                "tumour_type": s.tumour_name, "synthetic": synthetic,
                "channels": list(s.channels), "mask_kind": s.mask_kind,
                "spacing_mm": list(s.spacing_mm) if s.spacing_mm else None}
    typed: dict[str, Any] = {}
    if class_probabilities is not None:
        cp = class_probabilities
        typed = {"predicted_type": CLASS_NAMES[int(np.argmax(cp))],
                 "confidence": round(float(np.max(cp)), 6),
                 "type_probabilities": {n: round(float(p), 6)
                                        for n, p in zip(CLASS_NAMES, cp, strict=True)}}
    new = CaseRecord(case_id=ref.slice_id, images={"image": ref.path.resolve()},
                     label=(ref.mask_path or ref.path).resolve(), layout=s.dataset,
                     label_convention="binary" if s.mask_kind == "binary" else "brats2020",
                     metadata=metadata, provenance=provenance)
    done = replace(new, prediction={
        **fingerprint(out_path), **typed, "seconds": round(time.perf_counter() - started, 3),
        "predicted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    run.record_case(done)
    return done
