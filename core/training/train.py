"""Training a UNet on cached cases or 2-D slices: patch sampling, the step loop, validation,
checkpoints, resume, EMA and DistributedDataParallel (``torchrun``).

One loop serves both tracks: the data (3-D cases cut into patches, or whole 2-D slices with
their tumour type, :mod:`tumorscope.core.training.slices`) decides the batches and the
validation scores; model, loss, optimiser, checkpoints and resume are the same code."""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from tumorscope.core import distributed
from tumorscope.core.config import Config, config_from_dict, show
from tumorscope.core.config import validate as validate_config
from tumorscope.core.data.cases import MODALITIES, Case, discover
from tumorscope.core.data.labels import REGIONS, labels_to_regions
from tumorscope.core.data.nifti import atomic_write_json
from tumorscope.core.data.patient_splits import fold_parts, read_split_file
from tumorscope.core.data.preprocess import CachedCase, default_cache_dir, preprocess_cases
from tumorscope.core.data.slice_datasets import slice_dataset_kind
from tumorscope.core.distributed import DistInfo
from tumorscope.core.errors import ConfigError, LayoutError, TumorscopeError
from tumorscope.core.models import build_model, count_parameters
from tumorscope.core.models.checkpoints import (  # noqa: F401  (re-exported for older scripts)
    autocast_dtype,
    device_problem,
    load_checkpoint,
    model_from_checkpoint,
    resolve_device,
    save_checkpoint,
)
from tumorscope.core.models.checks import check_model_and_loss
from tumorscope.core.models.losses import (
    build_loss,
    dataset_pos_weight,
    dataset_pos_weight_request,
)
from tumorscope.core.models.unet import run_format
from tumorscope.core.prediction.postprocess import DEFAULT_THRESHOLDS, probabilities_to_labels
from tumorscope.core.prediction.sliding_window import sliding_window_logits
from tumorscope.core.scoring.metrics import dice
from tumorscope.core.store import Run
from tumorscope.core.training import slices as slices2d
from tumorscope.core.training.augment import augment_batch

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- data

def split_cases(cases: list[Case], *, val_fraction: float, seed: int,
                test_fraction: float = 0.0, root: str | Path | None = None,
                folds: int | None = None, fold: int | None = None
                ) -> tuple[list[Case], list[Case], list[Case]]:
    """Deterministic train / validation / test split of the cases that have a label map.

    Validation chooses the checkpoint; test cases are set aside untouched, for one score at
    the end. At least one case trains and one validates; the test set gets
    ``round(n * test_fraction)`` cases (at least one when ``test_fraction`` > 0 and three or
    more cases are there). With ``folds`` (k-fold cross-validation) the test set is the same
    for every fold and the other cases are dealt into ``folds`` parts, ``fold`` validating
    (:func:`fold_parts`).
    """
    labelled = [c for c in cases if c.label is not None]
    if len(labelled) < 2:
        where = root if root is not None else cases[0].folder.parent if cases else None
        raise LayoutError(f"training needs at least 2 readable cases with a label map, found "
                          f"{len(labelled)}", path=where)
    n = len(labelled)
    order = np.random.default_rng(seed).permutation(n)
    n_test = 0
    if test_fraction > 0 and n >= 3:
        n_test = min(max(1, round(n * test_fraction)), n - 2)
    n_val = min(max(1, round(n * val_fraction)), n - n_test - 1)

    def pick(index: np.ndarray) -> list[Case]:
        return sorted((labelled[i] for i in index), key=lambda c: c.case_id)

    if folds is not None:
        rest = pick(order[n_test:])
        by_id = {c.case_id: c for c in rest}
        train_ids, val_ids = fold_parts(list(by_id), folds=folds, fold=fold or 1, seed=seed)
        return [by_id[i] for i in train_ids], [by_id[i] for i in val_ids], pick(order[:n_test])
    return (pick(order[n_test + n_val:]), pick(order[n_test:n_test + n_val]),
            pick(order[:n_test]))


def _pad_to_patch(array: np.ndarray, patch: tuple[int, int, int]) -> np.ndarray:
    pads = [(0, 0)] * (array.ndim - 3) + [(0, max(p - s, 0)) for s, p in
                                          zip(array.shape[-3:], patch, strict=True)]
    return np.pad(array, pads) if any(p[1] for p in pads) else array


@dataclass
class PatchSampler:
    """Draws (image, region target) patches; ``foreground_fraction`` of them centred on tumour.

    Randomness comes from the step index alone (``rng(seed, rank, step)``), so the batch of
    any step is the same after a resume and every DDP rank sees different patches.
    """

    cases: list[CachedCase]
    patch_size_vox: tuple[int, int, int]
    batch_size: int
    foreground_fraction: float
    seed: int
    rank: int = 0

    def __post_init__(self) -> None:
        self._fg = [np.argwhere(np.asarray(c.label) > 0) if c.label is not None else
                    np.zeros((0, 3), int) for c in self.cases]

    def __len__(self) -> int:
        return 1 << 40

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, step])
        images, targets = [], []
        for _ in range(self.batch_size):
            i = int(rng.integers(len(self.cases)))
            case = self.cases[i]
            image = _pad_to_patch(np.asarray(case.image), self.patch_size_vox)
            label = _pad_to_patch(np.asarray(case.label), self.patch_size_vox)
            shape = np.array(image.shape[1:])
            patch = np.array(self.patch_size_vox)
            if len(self._fg[i]) and rng.random() < self.foreground_fraction:
                centre = self._fg[i][rng.integers(len(self._fg[i]))]
                start = np.clip(centre - patch // 2, 0, shape - patch)
            else:
                start = np.array([rng.integers(0, s - p + 1) for s, p in zip(shape, patch,
                                                                            strict=True)])
            sl = tuple(slice(int(a), int(a + p)) for a, p in zip(start, patch, strict=True))
            images.append(image[(slice(None), *sl)])
            targets.append(labels_to_regions(label[sl]))
        return (torch.from_numpy(np.stack(images).astype(np.float32)),
                torch.from_numpy(np.stack(targets).astype(np.float32)))


# ---------------------------------------------------------------- setup helpers

def lr_factor(step: int, *, total_steps: int, schedule: str, warmup_steps: int = 0) -> float:
    """Multiplier of the base learning rate at ``step``.

    >>> round(lr_factor(50, total_steps=100, schedule="poly"), 4)
    0.5359
    >>> lr_factor(0, total_steps=100, schedule="cosine")
    1.0
    """
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(step / max(total_steps, 1), 1.0)
    if schedule == "poly":
        return (1 - progress) ** 0.9
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def make_optimizer(cfg: Config, params: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=True,
                               weight_decay=o.weight_decay)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=o.lr, weight_decay=o.weight_decay)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- validation

@torch.no_grad()
def validate(model: nn.Module, cases: list[CachedCase], cfg: Config, device: torch.device,
             amp: torch.dtype | None, loss_fn: nn.Module | None = None, *,
             ranks: DistInfo | None = None, progress: bool = False) -> dict[str, float]:
    """Mean Dice per region over ``cases`` on the training grid (sliding window), of the
    label maps prediction would make at the default thresholds (never the configured
    ``postprocess``: changing it must not change which checkpoint is best); with
    ``loss_fn``, the training loss over each whole case too (``val_loss``).

    Under torchrun each rank scores its share of the cases (:meth:`DistInfo.shard`) and
    every rank gets every case's scores back in case order, so all ranks hold the same
    means (and choose the same ``best.pt``) as one process over all the cases would.
    ``progress`` shows rank 0's ``validating`` bar over its share.
    """
    from tqdm import tqdm

    ranks = ranks or DistInfo()
    chosen = cases[: cfg.train.val_cases or len(cases)]
    mine = ranks.shard(chosen)
    desc = "validating" if not ranks.distributed else \
        f"validating (rank 0: {len(mine)} of {len(chosen)} cases)"
    model.eval()
    scored: list[tuple[list[float], float | None]] = []
    for case in tqdm(mine, desc=desc, unit="case", leave=False,
                     disable=not (progress and ranks.main)):
        scored.append(_validate_case(model, case, cfg, device, amp, loss_fn))
        log.info("validated %s on rank %d/%d", case.case_id, ranks.rank, ranks.world_size)
    model.train()
    every = ranks.gather_in_order(scored)
    out = {f"dice_{name}": float(np.mean([dices[r] for dices, _ in every]))
           for r, name in enumerate(REGIONS)}
    if loss_fn is not None:
        out["val_loss"] = float(np.mean([loss for _, loss in every]))
    return out


def _validate_case(model: nn.Module, case: CachedCase, cfg: Config, device: torch.device,
                   amp: torch.dtype | None, loss_fn: nn.Module | None
                   ) -> tuple[list[float], float | None]:
    """One validation case's Dice per region and (with ``loss_fn``) its loss."""
    image = torch.from_numpy(np.array(case.image, dtype=np.float32))
    logits = sliding_window_logits(model, image, roi_size_vox=cfg.data.patch_size_vox,
                                   overlap=cfg.train.overlap,
                                   batch_windows=cfg.train.sw_batch_size, device=device,
                                   autocast_dtype=amp)
    prob = torch.sigmoid(logits.float()).cpu().numpy()
    pred = labels_to_regions(probabilities_to_labels(prob, thresholds=DEFAULT_THRESHOLDS))
    truth = labels_to_regions(np.asarray(case.label))
    dices = [dice(pred[r], truth[r]) for r in range(len(REGIONS))]
    loss = None
    if loss_fn is not None:
        target = torch.from_numpy(truth.astype(np.float32))[None]
        loss = float(loss_fn(logits.float().cpu()[None], target))
    return dices, loss


# ---------------------------------------------------------------- the loop

def check_before_training(cfg: Config) -> Config:
    """Everything :func:`train` needs of ``cfg``, checked before a case is discovered or
    preprocessed: every key (:func:`tumorscope.core.config.validate`), the model and loss
    options, one input channel per modality and one output per region, and a device this
    machine has. Returns ``cfg``."""
    validate_config(cfg)
    check_model_and_loss(cfg)
    if (cfg.data.folds is None) != (cfg.data.fold is None) or (
            cfg.data.folds is not None and cfg.data.fold > cfg.data.folds):
        raise ConfigError(f"data.fold and data.folds go together, fold in 1..folds: got fold "
                          f"{show(cfg.data.fold)} of folds {show(cfg.data.folds)}")
    kind = slice_dataset_kind(cfg.data.root) if Path(cfg.data.root).is_dir() else None
    dims = cfg.model.get("spatial_dims", 3)
    if kind is not None and dims != 2:
        raise ConfigError(f"data.root holds 2-D {kind} slices, so model.spatial_dims must be 2, "
                          f"got {show(dims)} (the figshare-2d and lgg-2d presets set it)")
    if kind is None and dims != 3:
        raise ConfigError(f"data.root holds 3-D cases (or none yet), so model.spatial_dims "
                          f"must be 3, got {show(dims)}")
    if kind is not None:
        expected = slices2d.expected_outputs(kind)
        expected.setdefault("classes", (0, f"{kind} slices carry no tumour type"))
    else:
        expected = {"in_channels": (len(MODALITIES), "one per modality: " + ", ".join(MODALITIES)),
                    "out_channels": (len(REGIONS), "one per region: " + ", ".join(REGIONS)),
                    "classes": (0, "a 3-D case carries no tumour type to learn")}
    for key, (wanted, why) in expected.items():
        value = cfg.model.get(key, wanted if key != "classes" else 0)
        if value != wanted and not (key == "classes" and value == 0):
            raise ConfigError(f"model.{key} must be {wanted} ({why}), got {show(value)}")
    problem = device_problem(cfg.train.device)
    if problem is not None:
        raise ConfigError(f"train.device is {cfg.train.device!r} but {problem}")
    return cfg


RESUMABLE_CHANGES = ("train.epochs", "train.device", "train.threads", "data.num_workers",
                     "data.root", "data.cache_dir", "postprocess")
"""Keys (or whole sections) a resumed run may change: where it runs and reads from, how
long it trains, and the post-processing of its predictions, which training never reads."""


def _resumable(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUMABLE_CHANGES)


def _keep_fit(config: dict[str, Any], run: Run) -> dict[str, Any]:
    """``config`` with the post-processing the run's config.yaml records as fitted, when
    ``config`` sets none of its own: a resumed run keeps its fit (which applies only to the
    checkpoint its record names, so a changed best.pt is never post-processed by it)."""
    try:
        old = (run.config() or {}).get("postprocess")
    except TumorscopeError:  # a damaged config.yaml is replaced as a whole
        return config
    if isinstance(old, dict) and isinstance(old.get("fitted"), dict) and \
            config.get("postprocess") == Config().to_dict()["postprocess"]:
        return {**config, "postprocess": old}
    return config


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resumable(recorded: dict[str, Any], cfg: Config, *, step: int,
                    path: Path | None = None) -> None:
    """Refuse to resume a run under a config other than its own (config.yaml must describe
    what the run is), except for :data:`RESUMABLE_CHANGES`; and never to fewer steps than
    already trained."""
    try:  # the recorded config with today's defaults for keys added since
        recorded = config_from_dict(recorded).to_dict()
    except ConfigError:
        pass
    before, now = _flat(recorded), _flat(cfg.to_dict())
    changed = [k for k in sorted(set(before) | set(now))
               if before.get(k) != now.get(k) and not _resumable(k)]
    if changed:
        k = changed[0]
        raise ConfigError(f"cannot resume with another config: {k} is {show(before.get(k))} "
                          f"in the run, {show(now.get(k))} now"
                          + (f" (and {len(changed) - 1} more)" if len(changed) > 1 else "")
                          + "; train into a new --out instead", path=path)
    total = cfg.train.epochs * cfg.train.steps_per_epoch
    if total < step:
        raise ConfigError(f"cannot resume to train.epochs {cfg.train.epochs} ({total} steps): "
                          f"the run has trained {step} steps already", path=path)


@dataclass
class TrainState:
    """What a training run changes as it goes; everything a checkpoint holds."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: torch.optim.swa_utils.AveragedModel | None
    scaler: torch.amp.GradScaler | None = None
    """Loss scaling for fp16 autocast (its small range underflows gradients); bf16 and fp32
    need none."""
    step: int = 0
    best: float = -1.0
    regions: tuple[str, ...] = REGIONS  # what the output channels are (2-D: tumour, ...)

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def payload(self, cfg: Config, metrics: dict[str, float] | None = None) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "ema_full": self.ema.state_dict() if self.ema is not None else None,
            "model_config": self.model.config.to_dict(),
            "config": cfg.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "step": self.step,
            "best": self.best,
            "metrics": metrics or {},
            "rng": [_rng_state()],
            "regions": list(self.regions),
        }

    def restore(self, ckpt: dict[str, Any], rank: int) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.ema is not None and ckpt.get("ema_full") is not None:
            self.ema.load_state_dict(ckpt["ema_full"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step, self.best = int(ckpt["step"]), float(ckpt["best"])
        _set_rng_state(ckpt["rng"][min(rank, len(ckpt["rng"]) - 1)])


def _setup_device(cfg: Config, dinfo: DistInfo) -> tuple[torch.device, torch.dtype | None]:
    device = dinfo.device(resolve_device(cfg.train.device))
    if device.type == "cuda" and dinfo.distributed:
        torch.cuda.set_device(device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed + dinfo.rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device, autocast_dtype(cfg.train.amp, device)


@dataclass(frozen=True)
class TrainingData:
    """What the loop needs of a track's data: batches by step (``sampler[step]`` is
    ``(image, target)`` or ``(image, target, class_index)``), validation scores of a model
    (``dice_<region>``, and for a type head accuracy and F1), and the split to record."""

    sampler: Any
    validate: Callable[[nn.Module, torch.device, torch.dtype | None, nn.Module],
                       dict[str, float]]
    split: dict[str, list[str]]
    regions: tuple[str, ...]
    described: str
    masks: Callable[[], Iterator[np.ndarray]]
    """The training targets, (K, *spatial) per case or slice, for a dataset-wide BCE weight."""


def selection_score(metrics: dict[str, float]) -> float:
    """What chooses ``best.pt``: the mean Dice over regions, averaged with the macro F1 of
    the tumour type where a type head is trained (both tasks count alike).

    >>> round(selection_score({"dice_WT": 0.8, "dice_TC": 0.6, "dice_ET": 0.7}), 4)
    0.7
    >>> round(selection_score({"dice_tumour": 0.8, "accuracy": 0.9, "macro_f1": 0.6}), 4)
    0.7
    """
    dices = [v for k, v in metrics.items() if k.startswith("dice_")]
    score = float(np.mean(dices)) if dices else -1.0
    if "macro_f1" in metrics and not math.isnan(metrics["macro_f1"]):
        score = (score + metrics["macro_f1"]) / 2
    return score


def _slice_data(cfg: Config, run: Run, *, resume: bool, progress: bool, dinfo: DistInfo
                ) -> TrainingData:
    """The 2-D track: whole slices, a patient-wise split, Dice and type scores."""
    from tumorscope.core.models.unet import split_output
    from tumorscope.core.prediction.slice_inference import predict_slices

    data = slices2d.load_slice_data(cfg, recorded=run.split() if resume else None,
                                    progress=progress and dinfo.main)
    val = data.parts["val"][: cfg.train.val_cases or len(data.parts["val"])]

    def validate_slices(model: nn.Module, device: torch.device, amp: torch.dtype | None,
                        loss_fn: nn.Module) -> dict[str, float]:
        size = max(cfg.data.batch_size, 8)
        # Under torchrun each rank takes whole batches, cut as one process cuts them: the
        # same slices meet in the model, so the scores are those of one process.
        batches = [val[i:i + size] for i in range(0, len(val), size)]
        mine = [predict_slices(model, batch, device=device, amp=amp, batch_size=size,
                               split_output=split_output) for batch in dinfo.shard(batches)]
        predictions = [p for batch in dinfo.gather_in_order(mine) for p in batch]
        return {**slices2d.slice_scores(val, predictions),
                "val_loss": slices2d.validation_loss(val, predictions, loss_fn)}

    counts = {p: len(v) for p, v in data.parts.items()}
    patients = {p: len({s.patient_id for s in v}) for p, v in data.parts.items()}
    described = (f"slices: {counts['train']} train, {counts['val']} validation (choose the "
                 f"checkpoint), {counts.get('test', 0)} test (set aside); patients "
                 f"{patients['train']}/{patients['val']}/{patients.get('test', 0)}, split by "
                 f"patient ({data.split_source})")
    return TrainingData(
        sampler=slices2d.SliceSampler(data.parts["train"], cfg.data.batch_size,
                                      cfg.train.seed, dinfo.rank),
        validate=validate_slices, split=data.ids(), regions=data.regions, described=described,
        masks=lambda: (s.target for s in data.parts["train"]))


def _case_data(cfg: Config, run: Run, *, resume: bool, progress: bool, dinfo: DistInfo
               ) -> TrainingData:
    """The 3-D track: cached cases, patches, sliding-window validation."""
    train_cases, val_cases, test_cases, cached = _prepare_cases(
        cfg, run, resume=resume, progress=progress, dinfo=dinfo)
    train_cached = [cached[c.case_id] for c in train_cases]
    if cfg.data.skip_empty:
        train_cached = [c for c in train_cached if c.label is not None and np.any(c.label)]
    val_cached = [cached[c.case_id] for c in val_cases]
    return TrainingData(
        sampler=PatchSampler(train_cached, cfg.data.patch_size_vox, cfg.data.batch_size,
                             cfg.data.foreground_fraction, cfg.train.seed, dinfo.rank),
        validate=lambda model, device, amp, loss_fn: validate(
            model, val_cached, cfg, device, amp, loss_fn, ranks=dinfo, progress=progress),
        split={"train": [c.case_id for c in train_cases],
               "val": [c.case_id for c in val_cases],
               "test": [c.case_id for c in test_cases]},
        regions=REGIONS,
        masks=lambda: (labels_to_regions(np.asarray(c.label)) for c in train_cached
                       if c.label is not None),
        described=(f"cases: {len(train_cases)} train, {len(val_cases)} validation (choose the "
                   f"checkpoint), {len(test_cases)} test (set aside)"))


def _prepare_cases(cfg: Config, run: Run, *, resume: bool, progress: bool, dinfo: DistInfo
                   ) -> tuple[list[Case], list[Case], list[Case], dict[str, CachedCase]]:
    """Preprocess every labelled case (a bad one is skipped, named) and split them; a
    resumed run keeps the split it started with."""

    cases = [c for c in discover(cfg.data.root) if c.label is not None]
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else default_cache_dir()
    cached: dict[str, CachedCase] = {}
    # Under torchrun every rank has its own core(s) already: no worker processes then.
    outcomes = preprocess_cases(cases, cache_dir, target_spacing_mm=cfg.data.spacing_mm,
                                bias_correction=cfg.data.bias_correction,
                                progress=progress and dinfo.main, workers=not dinfo.distributed)
    for case, outcome in outcomes:
        if isinstance(outcome, TumorscopeError):  # one bad case does not stop the cohort
            if dinfo.main:
                log.warning("skipped %s: %s", case.case_id, outcome)
        else:
            cached[case.case_id] = outcome
    good = [c for c in cases if c.case_id in cached]
    recorded = run.split() if resume else {}
    if recorded.get("train") and recorded.get("val"):
        by_id = {c.case_id: c for c in good}
        gone = sorted(set(recorded["train"] + recorded["val"]) - set(by_id))
        if gone:
            raise LayoutError(f"cannot resume: case(s) of split.json missing or unreadable "
                              f"now: {', '.join(gone[:5])}", path=cfg.data.root)
        return ([by_id[i] for i in recorded["train"]], [by_id[i] for i in recorded["val"]],
                [by_id[i] for i in recorded.get("test", []) if i in by_id], cached)
    if cfg.data.split_file:
        by_id = {c.case_id: c for c in good}
        given = read_split_file(cfg.data.split_file, {i: i for i in by_id})
        return ([by_id[i] for i in given.slices["train"]],
                [by_id[i] for i in given.slices["val"]],
                [by_id[i] for i in given.slices.get("test", ())], cached)
    train_cases, val_cases, test_cases = split_cases(
        good, val_fraction=cfg.data.val_fraction, test_fraction=cfg.data.test_fraction,
        seed=cfg.data.split_seed, root=cfg.data.root, folds=cfg.data.folds,
        fold=cfg.data.fold)
    return train_cases, val_cases, test_cases, cached


def _build_state(cfg: Config, device: torch.device, amp: torch.dtype | None = None, *,
                 pos_weight: tuple[float, ...] | None = None) -> tuple[TrainState, nn.Module]:
    model = build_model(cfg.model).to(device)
    layout = run_format(model.config.spatial_dims, device,
                        channels_last=cfg.train.channels_last)
    if layout is not None:
        model = model.to(memory_format=layout)
    loss_fn: nn.Module = build_loss(cfg.loss, model.config, pos_weight=pos_weight)
    optimizer = make_optimizer(cfg, model.parameters())
    total_steps = cfg.train.epochs * cfg.train.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps=total_steps, schedule=cfg.optim.schedule,
                                       warmup_steps=cfg.optim.warmup_steps))
    ema = (torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.train.ema))
        if cfg.train.ema else None)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    return TrainState(model, optimizer, scheduler, ema, scaler), loss_fn


def train(cfg: Config, out_dir: str | Path, *, resume: bool = False,
          progress: bool = True, say: Callable[[str], None] = log.info) -> Run:
    """Train ``cfg`` into the run directory ``out_dir``; return the :class:`Run`.

    With ``resume`` the run continues from ``checkpoints/last.pt`` exactly where it
    stopped (weights, optimiser, scheduler, EMA, step, RNG), under its own config (only
    :data:`RESUMABLE_CHANGES` may differ). Ctrl-C saves ``last.pt`` before leaving. Under
    ``torchrun`` every rank trains and rank 0 writes. ``say`` is told what happens (the
    model, the step range, a resume, an interruption); the command line prints it.
    """
    from tqdm import tqdm

    # Every config value, the model and loss options and the device, before any case
    # is discovered or preprocessed: a bad value stops here, by its key.
    check_before_training(cfg)
    run = Run(Path(out_dir))
    last = run.checkpoint_path("last")
    started = [p.name for p in (run.checkpoint_path("best"), run.log_path) if p.is_file()]
    if resume and not last.is_file():
        hint = (f" (it holds {', '.join(started)}: it stopped before its first epoch was saved;"
                " train it again into a new --out)" if started else "")
        raise TumorscopeError(f"cannot resume: no checkpoints/last.pt in the run{hint}",
                              path=run.path)
    if not resume and (last.is_file() or started):
        raise TumorscopeError("run folder already holds a training run; pass --resume to "
                              "continue it or choose another --out", path=run.path)
    ckpt = load_checkpoint(last) if resume else None
    if ckpt is not None:
        check_resumable(ckpt.get("config") or {}, cfg, step=int(ckpt.get("step", 0)),
                        path=last)
    dinfo = distributed.init(cfg.train.device)
    device, amp = _setup_device(cfg, dinfo)
    two_d = Path(cfg.data.root).is_dir() and slice_dataset_kind(cfg.data.root) is not None
    data = (_slice_data if two_d else _case_data)(cfg, run, resume=resume, progress=progress,
                                                  dinfo=dinfo)
    if dinfo.main:
        say(data.described)
    pos_weight = None
    request = dataset_pos_weight_request(cfg.loss)
    if request is not None:  # once over the training masks, not per batch
        pos_weight = dataset_pos_weight(data.masks(), channels=len(data.regions),
                                        max_pos_weight=request.max_pos_weight)
        if dinfo.main:
            say(f"weighted BCE: positive weight {', '.join(f'{w:.2f}' for w in pos_weight)} "
                f"per region ({', '.join(data.regions)}), from the training masks")
    state, loss_fn = _build_state(cfg, device, amp, pos_weight=pos_weight)
    state.regions = data.regions
    if dinfo.main:
        mc = state.model.config
        shape = (f"{mc.encoder} encoder" if mc.encoder != "own" else f"{list(mc.features)}")
        head = f", type head {mc.classes} classes" if mc.classes else ""
        say(f"model: {'UNet++' if mc.architecture == 'unetpp' else 'UNet'} {shape} "
            f"({mc.spatial_dims}-D{head}), {count_parameters(state.model):,} parameters, "
            f"device {device}, autocast {amp}, world size {dinfo.world_size}")
    if ckpt is not None:
        state.restore(ckpt, dinfo.rank)
        if dinfo.main:
            say(f"resumed {run.path} at step {state.step} "
                  f"(epoch {state.step // cfg.train.steps_per_epoch})")
    if dinfo.main:
        # config.yaml says what the run is now (a resume may extend train.epochs).
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(_keep_fit(cfg.to_dict(), run) if ckpt is not None else cfg.to_dict())
        if ckpt is None:
            run.write_split(data.split)

    net: nn.Module = state.model
    if dinfo.world_size > 1:
        net = nn.parallel.DistributedDataParallel(
            state.model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        net = torch.compile(net)

    total_steps = cfg.train.epochs * cfg.train.steps_per_epoch
    loader = torch.utils.data.DataLoader(
        data.sampler, batch_size=None, sampler=range(state.step, total_steps),
        num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda",
        persistent_workers=False)

    def checkpoint(which: str, metrics: dict[str, float] | None = None) -> None:
        if not dinfo.main:
            return
        if not all(bool(torch.isfinite(t).all()) for t in state.model.parameters()):
            # Never replace a good checkpoint by weights that diverged.
            raise TumorscopeError(
                f"training diverged by step {state.step}: the weights hold NaN or inf; "
                f"lower optim.lr (now {cfg.optim.lr:g}) or set optim.grad_clip "
                f"({run.checkpoint_path(which).name} not written)")
        save_checkpoint(run.checkpoint_path(which), state.payload(cfg, metrics))

    net.train()
    if dinfo.main:
        say(f"training steps {state.step} to {total_steps} "
              f"({cfg.train.epochs} epochs x {cfg.train.steps_per_epoch})")
    bar = tqdm(total=total_steps, initial=state.step, desc="train", unit="step",
               disable=not (progress and dinfo.main))
    epoch_loss, epoch_vox, t0 = 0.0, 0, time.perf_counter()
    try:
        for batch in loader:
            loss_value, voxels = _train_step(state, net, loss_fn, batch, cfg, device, amp,
                                             dinfo)
            epoch_loss += loss_value
            epoch_vox += voxels
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
            if state.step % cfg.train.steps_per_epoch == 0:
                row = _end_epoch(state, cfg, functools.partial(data.validate,
                                                               loss_fn=loss_fn),
                                 device, amp, dinfo, checkpoint,
                                 loss=epoch_loss, voxels=epoch_vox,
                                 seconds=time.perf_counter() - t0)
                checkpoint("last")  # before the log row: a logged epoch can always resume
                if dinfo.main:
                    run.append_log(row)
                    say(_epoch_line(row, cfg.train.epochs))
                epoch_loss, epoch_vox, t0 = 0.0, 0, time.perf_counter()
    except KeyboardInterrupt:
        checkpoint("last")
        bar.close()
        if dinfo.main:
            say(f"interrupted at step {state.step}; resume with --resume")
        raise
    bar.close()
    if state.step % cfg.train.steps_per_epoch:
        checkpoint("last")
    if not run.checkpoint_path("best").exists():
        checkpoint("best")
    if dinfo.world_size > 1:
        _record_ddp_sync(state.model, run, dinfo)
    return run


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    """``epoch 5/25: loss 0.926 | val loss 0.81, Dice tumour 0.570, type accuracy 0.648``.

    >>> _epoch_line({"epoch": 2, "loss": 1.5, "dice_WT": 0.5, "dice_mean": 0.5}, 4)
    'epoch 2/4: loss 1.500 | val Dice WT 0.500'
    """
    text = f"epoch {row['epoch']}/{epochs}: loss {row['loss']:.3f}"
    val = []
    if row.get("val_loss") is not None:
        val.append(f"loss {row['val_loss']:.3f}")
    val += [f"Dice {k.removeprefix('dice_')} {v:.3f}" for k, v in row.items()
            if k.startswith("dice_") and k != "dice_mean" and v is not None]
    for key, name in (("accuracy", "type accuracy"), ("macro_f1", "macro F1")):
        if row.get(key) is not None:
            val.append(f"{name} {row[key]:.3f}")
    return text + (" | val " + ", ".join(val) if val else "")


def _train_step(state: TrainState, net: nn.Module, loss_fn: nn.Module,
                batch: tuple[torch.Tensor, ...], cfg: Config, device: torch.device,
                amp: torch.dtype | None, dinfo: DistInfo) -> tuple[float, int]:
    """One optimiser step on one batch ``(image, target[, class_index])``; returns (loss,
    voxels or pixels seen across ranks)."""
    image = batch[0].to(device, non_blocking=True)
    target = batch[1].to(device, non_blocking=True)
    classes = batch[2].to(device, non_blocking=True) if len(batch) > 2 else None
    # Augmentation randomness from the step alone: a resumed run draws the same batches.
    generator = torch.Generator()
    generator.manual_seed(cfg.train.seed * 1_000_003 + dinfo.rank * 7919 + state.step)
    image, target = augment_batch(image, target, cfg.augment, generator=generator)
    layout = run_format(image.ndim - 2, device, channels_last=cfg.train.channels_last)
    if layout is not None:
        image = image.contiguous(memory_format=layout)
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        loss = loss_fn(net(image), target, classes)
    if not torch.isfinite(loss.detach()):
        # Stop before the step: best.pt and last.pt keep the last finite weights.
        raise TumorscopeError(
            f"training diverged at step {state.step}: the loss is {float(loss.detach())}; "
            f"lower optim.lr (now {cfg.optim.lr:g}) or set optim.grad_clip, and resume from "
            "the last checkpoint or start a new --out")
    state.optimizer.zero_grad(set_to_none=True)
    if state.scaler is None:
        loss.backward()
        if cfg.optim.grad_clip:
            nn.utils.clip_grad_norm_(state.model.parameters(), cfg.optim.grad_clip)
        state.optimizer.step()
    else:
        # fp16: gradients of the scaled loss, unscaled before clipping; a step whose
        # gradients overflowed is skipped and the scale lowered (torch.amp.GradScaler).
        state.scaler.scale(loss).backward()
        if cfg.optim.grad_clip:
            state.scaler.unscale_(state.optimizer)
            nn.utils.clip_grad_norm_(state.model.parameters(), cfg.optim.grad_clip)
        state.scaler.step(state.optimizer)
        state.scaler.update()
    state.scheduler.step()
    if state.ema is not None:
        state.ema.update_parameters(state.model)
    state.step += 1
    return float(loss.detach()), image[:, 0].numel() * dinfo.world_size


def _end_epoch(state: TrainState, cfg: Config,
               validate_fn: Callable[[nn.Module, torch.device, torch.dtype | None],
                                     dict[str, float]],
               device: torch.device, amp: torch.dtype | None, dinfo: DistInfo,
               checkpoint: Any, *, loss: float, voxels: int, seconds: float
               ) -> dict[str, Any]:
    """The epoch's log row; validates when due and saves ``best.pt`` on a new best."""
    epoch = state.step // cfg.train.steps_per_epoch
    row: dict[str, Any] = {
        "epoch": epoch, "step": state.step,
        "loss": loss / cfg.train.steps_per_epoch,
        "lr": state.optimizer.param_groups[0]["lr"],
        "voxels_per_s": voxels / max(seconds, 1e-9),
    }
    if epoch % cfg.train.val_every_epochs == 0 or epoch == cfg.train.epochs:
        # Every rank validates its share and gets the same scores back (validate), so the
        # ranks agree on best.pt and none waits alone long enough to hit a timeout.
        metrics = validate_fn(state.eval_model, device, amp)
        row.update(metrics)
        dices = [v for k, v in metrics.items() if k.startswith("dice_")]
        row["dice_mean"] = float(np.mean(dices)) if dices else None
        score = selection_score(metrics) if metrics else -1.0
        if "macro_f1" in metrics:
            row["selection"] = score
        if score > state.best:  # the same on every rank: each holds every case's scores
            state.best = score
            checkpoint("best", metrics)
    return row


def _record_ddp_sync(model: nn.Module, run: Run, dinfo: DistInfo) -> None:
    """Gather every rank's weights and record how far apart they are (0 when in sync)."""
    flat = torch.cat([p.detach().float().flatten().cpu() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dinfo.world_size)]
    dist.all_gather(gathered, flat, group=distributed.cpu_group())  # CPU tensors: gloo
    if dinfo.main:
        diff = max(float((g - gathered[0]).abs().max()) for g in gathered)
        atomic_write_json(run.ddp_check_path,
                          {"world_size": dinfo.world_size, "max_abs_weight_diff": diff})
    dinfo.barrier()
