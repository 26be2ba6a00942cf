"""Predicting a folder of cases into a run: one case at a time, each recorded with what made it.

A prediction is reused only when everything that produced it is unchanged: the content of
each source image, the checkpoint's content, and the inference settings. A run holds the
predictions of one model and one set of settings; another checkpoint or other settings into
the same run are refused (naming both) unless the caller asks to replace them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tumorscope.core.config import Config, field_spec, option_problem
from tumorscope.core.data.bias import BIAS_FIELD_VERSION
from tumorscope.core.data.cases import Case, discover
from tumorscope.core.data.labels import from_canonical
from tumorscope.core.data.nifti import read_header, voxel_spacing_mm, write_nifti
from tumorscope.core.data.preprocess import (
    CACHE_VERSION,
    CachedCase,
    default_cache_dir,
    preprocess_case,
    source_fingerprints,
)
from tumorscope.core.data.volumes import uncrop
from tumorscope.core.distributed import DistInfo
from tumorscope.core.errors import ConfigError, TumorscopeError, check_choice
from tumorscope.core.fingerprint import fingerprint
from tumorscope.core.models.checkpoints import (
    LoadedModel,
    autocast_dtype,
    load_model,
    resolve_device,
)
from tumorscope.core.models.unet import run_format
from tumorscope.core.prediction.postprocess import (
    RECORD_KEY,
    PostProcess,
    apply_postprocess,
    probabilities_to_labels,
)
from tumorscope.core.prediction.sliding_window import sliding_window_predict
from tumorscope.core.store import CaseRecord, Run

log = logging.getLogger(__name__)

POSTPROCESS_CHOICES = ("auto", "off")
"""``postprocess=`` of :func:`predict_run` besides a :class:`PostProcess`: the checkpoint's
own (:func:`checkpoint_postprocess`), or none."""

MIRROR_CHOICES = ("auto", "on", "off")
"""``mirror=`` of :func:`predict_run`: the choice fitted for the checkpoint
(:func:`checkpoint_mirror`), or mirroring TTA on all three axes, or none."""

MIRROR_SOURCES = ("fitted", "asked", "default")
"""Where a prediction's mirroring came from: the checkpoint's fit record, the caller, or the
default (off) for a checkpoint without a fitted choice."""


def predict_case(
    model: torch.nn.Module,
    cached: CachedCase,
    *,
    roi_size_vox: Sequence[int],
    overlap: float = 0.5,
    batch_windows: int = 4,
    mirror_axes: Sequence[int] = (),
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    postprocess: PostProcess | None = None,
    tta_variance: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Segment one preprocessed case and map it back to its source grid.

    Returns ``(label, probabilities, variance)``: the canonical label map (X, Y, Z) uint8
    on the source grid, made by ``postprocess`` (default: the plain 0.5 threshold, no
    clean-up; volumes on the source grid's spacing), region probabilities (3, X, Y, Z)
    float32 on the same grid (zero outside the brain crop), and with ``tta_variance`` and
    mirroring the variance of the mirrored passes' probabilities (3, X, Y, Z, 0..0.25;
    see :func:`~tumorscope.core.prediction.sliding_window.sliding_window_predict`), else
    ``None``.
    """
    postprocess = postprocess or PostProcess()
    image = torch.from_numpy(np.array(cached.image, dtype=np.float32))
    out = sliding_window_predict(model, image, roi_size_vox=roi_size_vox, overlap=overlap,
                                 batch_windows=batch_windows, mirror_axes=mirror_axes,
                                 device=device, autocast_dtype=autocast_dtype,
                                 tta_variance=tta_variance)
    logits, variance = out.logits, out.tta_variance
    if tuple(logits.shape[1:]) != cached.box.shape:
        # Trained on a resampled grid: logits go back to the crop's voxel grid first.
        logits = F.interpolate(logits[None], size=cached.box.shape, mode="trilinear",
                               align_corners=False)[0]
        if variance is not None:
            variance = F.interpolate(variance[None], size=cached.box.shape,
                                     mode="trilinear", align_corners=False)[0]
    prob = torch.sigmoid(logits).cpu().numpy()
    label = probabilities_to_labels(prob, thresholds=postprocess.thresholds)
    label = apply_postprocess(label, spacing_mm=voxel_spacing_mm(cached.affine),
                              postprocess=postprocess)
    spread = None if variance is None else \
        uncrop(variance.cpu().numpy().astype(np.float32), cached.box)
    return uncrop(label, cached.box), uncrop(prob.astype(np.float32), cached.box), spread


def inference_settings(cfg: Config, *, overlap: float, mirror: bool,
                       autocast: torch.dtype | None,
                       postprocess: PostProcess | None = None) -> dict[str, Any]:
    """Everything besides the inputs and the weights that changes a prediction (the
    post-processing as :meth:`PostProcess.settings` records it; default off)."""
    # Recorded only when on: a setting every earlier prediction lacks would make each of
    # them look stale, though it was made exactly as it would be now.
    bias = ({"bias_correction": f"{cfg.data.bias_correction} v{BIAS_FIELD_VERSION}"}
            if cfg.data.bias_correction != "off" else {})
    return {
        "overlap": float(overlap),
        "mirror_axes": [0, 1, 2] if mirror else [],
        **(postprocess or PostProcess()).settings(),
        "spacing_mm": cfg.data.spacing_mm,
        "roi_size_vox": [int(s) for s in cfg.data.patch_size_vox],
        "autocast": str(autocast).replace("torch.", "") if autocast is not None else "off",
        "preprocess_version": CACHE_VERSION,
        **bias,
    }


def describe_model(checkpoint: Any, settings: dict[str, Any] | None) -> str:
    """``best.pt (sha256 1a2b3c4d…), overlap 0.5, mirroring off`` for messages."""
    ck = checkpoint if isinstance(checkpoint, dict) else {}
    name = Path(str(ck.get("path", "?"))).name
    sha = str(ck.get("sha256", "?"))[:12]
    if not settings:
        return f"{ck.get('path', '?')} (sha256 {sha})"
    mirror = "on" if settings.get("mirror_axes") else "off"
    post = PostProcess.from_settings(settings)
    return (f"{name} at {ck.get('path', '?')} (sha256 {sha}), overlap "
            f"{settings.get('overlap')}, mirroring {mirror}, spacing "
            f"{settings.get('spacing_mm') or 'native'}, autocast "
            f"{settings.get('autocast', 'off')}, post-processing "
            f"{post.describe() if post is not None else '?'}")


def training_run_of(checkpoint: str | Path) -> Run | None:
    """The training run that holds ``checkpoint`` (``RUN/checkpoints/best.pt``), if any."""
    path = Path(checkpoint).resolve()
    if path.parent.name != "checkpoints":
        return None
    run = Run(path.parent.parent)
    return run if run.config_path.is_file() else None


def _fit_record(section: Any) -> dict[str, Any] | None:
    fitted = section.get(RECORD_KEY) if isinstance(section, dict) else None
    return fitted if isinstance(fitted, dict) else None


def checkpoint_postprocess(loaded: LoadedModel) -> tuple[PostProcess, str]:
    """The post-processing that belongs to a checkpoint, and where it comes from, in words.

    The ``postprocess`` section of the training run that holds the checkpoint
    (``RUN/config.yaml``) when it was fitted for exactly this checkpoint (the sha256 its
    ``fitted`` record names); else the checkpoint's own config's section (defaults: off),
    unless that too is a fit, made for another checkpoint (an old fit a resumed run carried
    along), which never applies to this one.
    """
    notes: list[str] = []
    train_run = training_run_of(loaded.path)
    own = loaded.config.postprocess
    if train_run is not None:
        section = (train_run.config() or {}).get("postprocess")
        fitted = _fit_record(section)
        if fitted is not None and fitted.get("checkpoint_sha256") == loaded.sha256:
            return (PostProcess.from_dict(section, path=train_run.config_path),
                    f"fitted for this checkpoint on {len(fitted.get('val_case_ids') or [])} "
                    f"validation case(s), objective {fitted.get('objective', '?')} "
                    f"({train_run.config_path})")
        if fitted is not None:
            notes.append(f"the fit in {train_run.config_path} is for another checkpoint "
                         f"(sha256 {str(fitted.get('checkpoint_sha256'))[:12]}), not used")
        elif isinstance(section, dict) and \
                PostProcess.from_dict(section, path=train_run.config_path) != \
                PostProcess.from_config(own):
            notes.append(f"{train_run.config_path}'s postprocess section is no fit for this "
                         "checkpoint, not used")
    if _fit_record({RECORD_KEY: own.fitted}) is not None:
        post, source = PostProcess(), ("the checkpoint's config holds a fit made for another "
                                       "checkpoint, not used")
    else:
        post = PostProcess.from_config(own)
        source = "none fitted for this checkpoint" if post.off else \
            "set in the checkpoint's config"
    return post, source + "".join(f"; {n}" for n in notes)


@dataclass(frozen=True)
class MirrorChoice:
    """Whether a prediction mirrors (all three axes), where that came from
    (:data:`MIRROR_SOURCES`) and why, in words."""

    on: bool = False
    source: str = "default"
    why: str = ""

    def describe(self) -> str:
        """``mirroring on (chosen on validation: +0.0040 objective)``."""
        return f"mirroring {'on' if self.on else 'off'}" + (f" ({self.why})" if self.why else "")


def fitted_mirror(fitted: dict[str, Any] | None) -> MirrorChoice | None:
    """The mirroring choice a post-processing ``fitted`` record holds, or ``None`` when it
    holds none (a fit made without trying mirroring, or before fits tried it)."""
    if not isinstance(fitted, dict) or not isinstance(fitted.get("mirror"), bool) \
            or not fitted.get("mirror_searched"):
        return None
    scores = fitted.get("mirror_scores") or {}
    try:
        gain = float(scores["on"]["after"]) - float(scores["off"]["after"])
    except (KeyError, TypeError, ValueError):
        return None
    objective = fitted.get("objective")
    what = f"{gain:+.4f} " + (f"{objective} " if objective else "") + "objective"
    why = (f"chosen on validation: {what}" if fitted["mirror"] else
           f"chosen on validation: mirroring would give {what}")
    return MirrorChoice(fitted["mirror"], "fitted", why)


def checkpoint_mirror(loaded: LoadedModel) -> MirrorChoice:
    """Mirroring for ``mirror="auto"``: the choice recorded by the post-processing fit of the
    training run holding the checkpoint when it was made for exactly this checkpoint (its
    sha256), else off."""
    train_run = training_run_of(loaded.path)
    if train_run is None:
        return MirrorChoice(False, "default", "no fit records a choice for this checkpoint")
    fitted = _fit_record((train_run.config() or {}).get("postprocess"))
    if fitted is None:
        return MirrorChoice(False, "default", "no fit records a choice for this checkpoint "
                                              f"(tumorscope postprocess {train_run.path} --fit)")
    if fitted.get("checkpoint_sha256") != loaded.sha256:
        return MirrorChoice(False, "default", f"the fit in {train_run.config_path} is for "
                                              "another checkpoint, not used")
    choice = fitted_mirror(fitted)
    if choice is None:
        return MirrorChoice(False, "default", "the fit of this checkpoint did not try "
                                              "mirroring")
    return choice


def resolve_mirror(mirror: bool | str, loaded: LoadedModel) -> MirrorChoice:
    """``mirror=`` of :func:`predict_run` (a bool or one of :data:`MIRROR_CHOICES`) as the
    choice made for ``loaded``."""
    if isinstance(mirror, bool):  # the keyword's meaning before auto existed
        mirror = "on" if mirror else "off"
    check_choice("--mirror", mirror, MIRROR_CHOICES)
    if mirror == "auto":
        return checkpoint_mirror(loaded)
    return MirrorChoice(mirror == "on", "asked", "asked")


@dataclass
class PredictReport:
    """What one ``predict`` call did: per case reused, predicted (with why) or failed."""

    run: Run
    reused: list[str] = field(default_factory=list)
    predicted: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    cleaned: int = 0
    taken_over: str | None = None
    """Set when another predict claimed the run (--force) while this one ran."""
    postprocess: PostProcess = field(default_factory=PostProcess)
    postprocess_source: str = ""
    """Where ``postprocess`` came from, in words (fitted for the checkpoint, its config...)."""
    mirror: MirrorChoice = field(default_factory=MirrorChoice)
    """The mirroring used, and where it came from."""

    def summary(self) -> str:
        """``reused 18, predicted 2 (inputs changed: BraTS2021_00012; new: ...)``."""
        by_reason: dict[str, list[str]] = {}
        for case_id, reason in self.predicted.items():
            by_reason.setdefault(reason, []).append(case_id)
        detail = "; ".join(f"{reason}: {', '.join(ids[:5])}" + (f" +{len(ids) - 5}"
                                                                 if len(ids) > 5 else "")
                           for reason, ids in by_reason.items())
        text = f"reused {len(self.reused)}, predicted {len(self.predicted)}"
        if detail:
            text += f" ({detail})"
        if self.failed:
            text += f", failed {len(self.failed)}"
        if self.removed:
            text += (f", removed {len(self.removed)} prediction(s) of the replaced model "
                     f"({', '.join(self.removed[:5])})")
        return text


def _model_key(provenance: dict[str, Any] | None) -> tuple[str | None, str]:
    if not provenance:
        return None, ""
    settings = provenance.get("settings") or {}
    return ((provenance.get("checkpoint") or {}).get("sha256"),
            repr(sorted(settings.items())))


def _claim_key(claim: dict[str, Any] | None) -> tuple[str | None, str]:
    if not claim:
        return None, ""
    return claim.get("checkpoint_sha256"), repr(sorted((claim.get("settings") or {}).items()))


def _check_same_model(run: Run, records: dict[str, CaseRecord], provenance: dict[str, Any],
                      *, checkpoint: Path, force: bool) -> None:
    """Refuse to mix models or settings in one run unless asked to replace (``force``).

    The run's model is the one config.yaml's ``predict`` section claims (written under the
    run's lock before the first case, so two processes with different checkpoints cannot
    both start). Runs from before that section existed are judged by their records.
    """
    if force or run.owns_checkpoint(checkpoint):
        return
    current = _model_key(provenance)
    now = describe_model(provenance["checkpoint"], provenance["settings"])
    claim = run.predict_claim()
    if claim and claim.get("checkpoint_sha256"):
        if _claim_key(claim) != current:
            before = describe_model({"path": claim.get("checkpoint"),
                                     "sha256": claim.get("checkpoint_sha256")},
                                    claim.get("settings"))
            raise ConfigError(
                f"holds predictions of {before}; this call uses {now}. Pass --force to "
                f"replace the run's predictions, or choose a new --out", path=run.path)
        return  # records of another model are leftovers of an interrupted --force: redone
    on_disk = set(run.case_ids())
    for record in records.values():
        if record.case_id not in on_disk or _model_key(record.provenance) == current:
            continue
        before = describe_model((record.provenance or {}).get("checkpoint"),
                                (record.provenance or {}).get("settings")) \
            if record.provenance else "an unrecorded model (no provenance in cases.json)"
        raise ConfigError(
            f"holds predictions of {before}; this call uses {now}. Pass --force to replace "
            f"the run's predictions, or choose a new --out", path=run.path)


def _write_predict_config(run: Run, loaded: LoadedModel, section: dict[str, Any]) -> None:
    """config.yaml describes what the run holds: the training config (kept for a training
    run) plus a ``predict`` section naming the checkpoint and settings."""
    existing = run.config() if run.config_path.is_file() else None
    base = existing if existing and run.checkpoint_dir.is_dir() else loaded.config.to_dict()
    run.write_config({**base, "predict": section})


def _why_recompute(record: CaseRecord | None, run: Run, case_id: str,
                   provenance: dict[str, Any], *, force: bool, probabilities: bool) -> str | None:
    """The reason to predict ``case_id`` again, or ``None`` when its prediction is current."""
    pred_path = run.prediction_path(case_id)
    if record is None or not pred_path.is_file():
        return "new"
    if force:
        return "forced"
    if record.provenance is None or record.prediction is None:
        return "no provenance recorded"
    try:
        now = fingerprint(pred_path, record.prediction)
    except TumorscopeError:
        return "prediction unreadable"
    if now["sha256"] != record.prediction.get("sha256"):
        return "prediction file changed"
    old = record.provenance
    if (old.get("checkpoint") or {}).get("sha256") != provenance["checkpoint"]["sha256"]:
        return "checkpoint changed"
    if old.get("settings") != provenance["settings"]:
        return "settings changed"
    old_sources = {m: (fp or {}).get("sha256") for m, fp in (old.get("sources") or {}).items()}
    new_sources = {m: fp["sha256"] for m, fp in provenance["sources"].items()}
    if old_sources != new_sources:
        return "inputs changed"
    if probabilities and not run.probabilities_path(case_id).is_file():
        return "probabilities asked for"
    if probabilities and provenance["settings"].get("mirror_axes") \
            and not run.tta_variance_path(case_id).is_file():
        return "TTA variance asked for"
    return None


def predict_run(
    checkpoint: str | Path,
    input_dir: str | Path,
    out_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    overlap: float | None = None,
    mirror: bool | str = "auto",
    save_probabilities: bool = False,
    device: str = "auto",
    amp: str | None = None,
    force: bool = False,
    progress: bool = True,
    case_ids: Sequence[str] | None = None,
    on_case: Callable[[str, str], None] | None = None,
    postprocess: PostProcess | str = "auto",
    ranks: DistInfo | None = None,
) -> PredictReport:
    """Predict every case of ``input_dir`` into the run ``out_dir``.

    Predictions are NIfTI files on each source grid, with the source's affine and header,
    in the case's own label values (3 for enhancing tumour in BraTS 2023 inputs). Each case
    is recorded in ``cases.json`` as soon as it is written, with its provenance. A current
    prediction (same image contents, checkpoint and settings) is reused; ``force``
    predicts every case again and replaces predictions of another model. Bad cases are
    skipped as one-line reasons in the report; the good ones are still predicted.
    ``case_ids`` limits the run to those cases (e.g. the held-out split of a training run).
    ``on_case(case_id, what)`` is told of each case's outcome as it happens.
    ``postprocess`` is ``"auto"`` (the checkpoint's own, :func:`checkpoint_postprocess`),
    ``"off"`` or a :class:`PostProcess`; it is part of the settings, like the overlap.
    ``mirror`` is ``"auto"`` (the choice fitted for the checkpoint, :func:`checkpoint_mirror`;
    off without one), ``"on"`` / ``True`` or ``"off"`` / ``False``; the axes used are part
    of the settings (so a changed choice predicts again) and each case's provenance says
    where the choice came from (``mirror_source``).

    ``ranks`` (:func:`tumorscope.core.distributed.init` under torchrun) shares the cases
    out: rank r predicts the sorted cases ``r::world_size`` into the same run (each record
    written under the run's lock), and every rank returns the report of all ranks, made
    after all have finished; rank 0 alone removes a replaced model's leftovers. Only rank 0
    shows the progress bar (of its share); ``on_case`` is told of each rank's own cases.
    """
    from tqdm import tqdm

    if overlap is not None and not 0 <= overlap < 1:
        raise ConfigError(f"--overlap must be >= 0 and < 1, got {overlap}")
    if not isinstance(postprocess, PostProcess):
        check_choice("--postprocess", postprocess, POSTPROCESS_CHOICES)
    if not isinstance(mirror, bool):  # before loading anything
        check_choice("--mirror", mirror, MIRROR_CHOICES)
    checkpoint = Path(checkpoint)
    loaded = load_model(checkpoint)
    mirroring = resolve_mirror(mirror, loaded)
    log.info("%s", mirroring.describe())
    if isinstance(postprocess, PostProcess):
        post, post_source = postprocess, "given"
    elif postprocess == "off":
        post, post_source = PostProcess(), "asked off"
    else:
        post, post_source = checkpoint_postprocess(loaded)
    log.info("post-processing: %s, %s", post.describe(), post_source)
    cfg = loaded.config
    run = Run(Path(out_dir))
    if run.path.exists() and not run.path.is_dir():
        raise ConfigError("is a file; --out needs a folder", path=run.path)
    ranks = ranks or DistInfo()
    dev = ranks.device(resolve_device(device))
    if amp is not None:
        _, problem = option_problem(amp, *field_spec("train.amp", required=True))
        if problem is not None:
            raise ConfigError(f"amp {problem}")
    amp = autocast_dtype(cfg.train.amp if amp is None else amp, dev)
    ov = cfg.train.overlap if overlap is None else overlap
    settings = inference_settings(cfg, overlap=ov, mirror=mirroring.on, autocast=amp,
                                  postprocess=post)
    ck_info = {"path": str(loaded.path), "sha256": loaded.sha256}
    cases = discover(input_dir)
    if case_ids is not None:
        wanted = set(case_ids)
        cases = [c for c in cases if c.case_id in wanted]
    # Sorted by id, so that every rank cuts the same list into the same shares.
    cases = sorted(cases, key=lambda c: c.case_id)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()

    run.path.mkdir(parents=True, exist_ok=True)
    report = PredictReport(run, postprocess=post, postprocess_source=post_source,
                           mirror=mirroring)
    if ranks.local_rank == 0:  # one per host: a temporary names the host that wrote it
        report.cleaned = len(run.clean_temp_files())
    with run.lock():  # check and claim at once: a concurrent predict sees this claim
        records = run.case_records()
        _check_same_model(run, records, {"checkpoint": ck_info, "settings": settings},
                          checkpoint=checkpoint, force=force)
        _write_predict_config(run, loaded, {
            "checkpoint": ck_info["path"], "checkpoint_sha256": ck_info["sha256"],
            "input": str(Path(input_dir).resolve()), "settings": settings})
    model = loaded.model.to(dev)
    dims = getattr(getattr(model, "config", None), "spatial_dims", 3)
    layout = run_format(dims, dev, channels_last=cfg.train.channels_last)  # as it trained
    if layout is not None:
        model = model.to(memory_format=layout)

    def tell(case_id: str, what: str) -> None:
        if on_case is not None:
            on_case(case_id, what)

    failed: dict[str, str] = {}
    mine = ranks.shard(cases)

    def prepare(case: Case) -> _Prepared:
        return _prepare(case, run, records.get(case.case_id), cfg, cache, ck_info, settings,
                        force=force, save_probabilities=save_probabilities,
                        mirror_source=mirroring.source)

    # One case ahead: the next case's files are read, hashed and preprocessed in a thread
    # while this one is inferred (file decoding and torch both release the GIL), as
    # nnU-Net's background preprocessing does; only one waits, so memory holds two cases.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tumorscope-prefetch")
    ahead: Future[_Prepared] | None = pool.submit(prepare, mine[0]) if mine else None
    try:
        for i, case in enumerate(tqdm(mine, desc="predict", unit="case",
                                      disable=not (progress and ranks.main))):
            assert ahead is not None
            current = ahead
            ahead = pool.submit(prepare, mine[i + 1]) if i + 1 < len(mine) else None
            try:
                reason = _predict_one(current.result(), case, run, model, cfg, settings,
                                      dev=dev, amp=amp, save_probabilities=save_probabilities,
                                      postprocess=post)
            except TumorscopeError as exc:
                kept = " (previous prediction kept)" if run.prediction_path(
                    case.case_id).is_file() else ""
                failed[case.case_id] = f"{case.case_id}: {exc}{kept}"
                tell(case.case_id, "failed")
                continue
            if reason is None:
                report.reused.append(case.case_id)
                tell(case.case_id, "reused")
            else:
                report.predicted[case.case_id] = reason
                tell(case.case_id, f"predicted ({reason})")
    finally:
        # Interrupted or failed: the case being read ahead finishes reading (its cache
        # files are written atomically) and nothing of it is written to the run.
        pool.shutdown(wait=True, cancel_futures=True)
    report.failed = list(failed.values())
    if ranks.distributed:  # returns once every rank has recorded its cases
        _merge_shares(report, ranks.gather((report.reused, report.predicted, failed)),
                      [c.case_id for c in cases])
    if ranks.main:
        _finish_run(report, run, cases, ck_info, settings)
    # The other ranks wait for rank 0's check and clean-up, and report what it found.
    report.taken_over, report.removed = ranks.gather((report.taken_over, report.removed))[0]
    return report


def _merge_shares(report: PredictReport,
                  shares: list[tuple[list[str], dict[str, str], dict[str, str]]],
                  order: list[str]) -> None:
    """Every rank's reused / predicted / failed cases in one report, in case order (as one
    process would list them)."""
    position = {case_id: i for i, case_id in enumerate(order)}
    reused = [c for share in shares for c in share[0]]
    predicted = {c: why for share in shares for c, why in share[1].items()}
    failed = {c: line for share in shares for c, line in share[2].items()}
    report.reused = sorted(reused, key=position.__getitem__)
    report.predicted = {c: predicted[c] for c in sorted(predicted, key=position.__getitem__)}
    report.failed = [failed[c] for c in sorted(failed, key=position.__getitem__)]


def _finish_run(report: PredictReport, run: Run, cases: list[Case], ck_info: dict[str, Any],
                settings: dict[str, Any]) -> None:
    """After every case is done: note a takeover by another predict, else remove the
    predictions of a replaced model that this call did not redo."""
    claim = run.predict_claim() or {}
    if claim.get("checkpoint_sha256") != ck_info["sha256"] or claim.get("settings") != settings:
        now = describe_model({"path": claim.get("checkpoint"),
                              "sha256": claim.get("checkpoint_sha256")}, claim.get("settings"))
        report.taken_over = (f"another predict replaced this run's model while this one ran "
                             f"(now {now}); the run's predictions and scores are that model's")
        return
    # Predictions of a replaced model that this call did not redo no longer belong here.
    current = _model_key({"checkpoint": ck_info, "settings": settings})
    done = {c.case_id for c in cases}
    leftovers = [cid for cid, rec in run.case_records().items()
                 if cid not in done and _model_key(rec.provenance) != current
                 and run.prediction_path(cid).is_file()]
    if leftovers:  # only after --force, a retrained own checkpoint, or an interrupted --force
        report.removed = run.forget_cases(leftovers)  # their maps too


@dataclass(frozen=True)
class _Prepared:
    """What is known of a case before inference: its provenance, why it is predicted
    (``None``: its recorded prediction is current), its new record, its preprocessed
    volumes (only when predicted)."""

    provenance: dict[str, Any]
    reason: str | None
    record: CaseRecord | None
    new_record: CaseRecord
    cached: Any = None


def _prepare(case: Case, run: Run, record: CaseRecord | None, cfg: Config, cache: Path,
             ck_info: dict[str, Any], settings: dict[str, Any], *, force: bool,
             save_probabilities: bool, mirror_source: str) -> _Prepared:
    """Hash the case's files, decide whether it is predicted, and preprocess it if so: all
    but the inference, so it can run a case ahead (no torch here)."""
    sources = source_fingerprints(case, cache, target_spacing_mm=cfg.data.spacing_mm,
                                  bias_correction=cfg.data.bias_correction)
    provenance = {
        "sources": {m: fp for m, fp in sources.items() if m != "seg"},
        "checkpoint": ck_info,
        "settings": settings,
        # Beside the settings, not in them: where the choice came from does not change the
        # prediction, so a reused case only has its record updated.
        "mirror_source": mirror_source,
    }
    reason = _why_recompute(record, run, case.case_id, provenance, force=force,
                            probabilities=save_probabilities)
    new_record = CaseRecord.of_case(
        case, provenance=provenance, prediction=record.prediction if record is not None else None)
    cached = None if reason is None else preprocess_case(
        case, cache, target_spacing_mm=cfg.data.spacing_mm,
        bias_correction=cfg.data.bias_correction)
    return _Prepared(provenance, reason, record, new_record, cached)


def _predict_one(prepared: _Prepared, case: Case, run: Run, model: torch.nn.Module,
                 cfg: Config, settings: dict[str, Any], *, dev: torch.device,
                 amp: torch.dtype | None, save_probabilities: bool,
                 postprocess: PostProcess) -> str | None:
    """Predict one prepared case unless its recorded prediction is current; return why it
    was predicted (``None`` when reused). The record is written once the files are."""
    reason, record, new_record = prepared.reason, prepared.record, prepared.new_record
    if reason is None:
        if record is not None and (record.to_dict() != new_record.to_dict()):
            run.record_case(new_record)  # label path or metadata moved on; the model did not
        return None
    cached = prepared.cached
    t0 = time.perf_counter()
    label, prob, variance = predict_case(
        model, cached, roi_size_vox=cfg.data.patch_size_vox, overlap=settings["overlap"],
        batch_windows=cfg.train.sw_batch_size, mirror_axes=settings["mirror_axes"],
        device=dev, autocast_dtype=amp, postprocess=postprocess,
        tta_variance=save_probabilities)
    out_path = run.prediction_path(case.case_id)
    header = _source_header(case)
    write_nifti(out_path, from_canonical(label, convention=case.label_convention),
                cached.affine, header=header)
    # Maps belong to the prediction just written: ones this call does not write are of an
    # earlier model or settings, and would be shown beside a prediction they did not make.
    maps = ((run.probabilities_path(case.case_id), prob if save_probabilities else None),
            (run.tta_variance_path(case.case_id), variance))
    for path, volume in maps:
        if volume is None:
            path.unlink(missing_ok=True)
        else:
            write_nifti(path, np.moveaxis(volume, 0, -1).astype(np.float32), cached.affine)
    run.record_case(replace(new_record, prediction={
        **fingerprint(out_path), "seconds": round(time.perf_counter() - t0, 3),
        "predicted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
    log.info("%s: predicted (%s)", case.case_id, reason)
    return reason


def _source_header(case: Case) -> Any:
    import nibabel as nib

    path = case.images.get("t1") or next(iter(case.images.values()))
    read_header(path)  # raises a named error for an unreadable file
    return nib.load(str(path)).header
