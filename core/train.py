"""Training a UNet on cached cases: patch sampling, the step loop, validation, checkpoints,
resume, EMA and DistributedDataParallel (``torchrun``)."""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .augment import augment_batch
from .cache import CachedCase, default_cache_dir, preprocess_case
from .cases import MODALITIES, Case, discover
from .checkpoints import (  # noqa: F401  (re-exported for older scripts)
    autocast_dtype,
    device_problem,
    load_checkpoint,
    model_from_checkpoint,
    resolve_device,
    save_checkpoint,
)
from .config import Config, show
from .config import validate as validate_config
from .errors import ConfigError, LayoutError, TumorscopeError
from .infer import sliding_window_logits
from .labels import REGIONS, labels_to_regions
from .losses import DeepSupervisionLoss, make_loss
from .metrics import dice
from .models import build_model, count_parameters
from .models.checks import check_model_and_loss
from .nifti import atomic_write_json
from .store import Run

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- data

def split_cases(cases: list[Case], *, val_fraction: float, seed: int) -> tuple[list[Case],
                                                                              list[Case]]:
    """Deterministic train/validation split of the cases that have a label map."""
    labelled = [c for c in cases if c.label is not None]
    if len(labelled) < 2:
        raise LayoutError(f"training needs at least 2 cases with a label map, found "
                          f"{len(labelled)}", path=cases[0].folder.parent if cases else None)
    order = np.random.default_rng(seed).permutation(len(labelled))
    n_val = min(max(1, round(len(labelled) * val_fraction)), len(labelled) - 1)
    val = sorted((labelled[i] for i in order[:n_val]), key=lambda c: c.case_id)
    train = sorted((labelled[i] for i in order[n_val:]), key=lambda c: c.case_id)
    return train, val


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


# ---------------------------------------------------------------- distributed

@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> DistInfo:
    """Join the process group when started by ``torchrun`` (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


# ---------------------------------------------------------------- validation

@torch.no_grad()
def validate(model: nn.Module, cases: list[CachedCase], cfg: Config, device: torch.device,
             amp: torch.dtype | None) -> dict[str, float]:
    """Mean Dice per region over ``cases`` on the training grid (sliding window)."""
    model.eval()
    scores: dict[str, list[float]] = {r: [] for r in REGIONS}
    for case in cases[: cfg.train.val_cases or len(cases)]:
        image = torch.from_numpy(np.array(case.image, dtype=np.float32))
        logits = sliding_window_logits(model, image, roi_size_vox=cfg.data.patch_size_vox,
                                       overlap=cfg.train.overlap,
                                       batch_windows=cfg.train.sw_batch_size, device=device,
                                       autocast_dtype=amp)
        pred = (logits > 0).cpu().numpy()
        truth = labels_to_regions(np.asarray(case.label))
        for r, name in enumerate(REGIONS):
            scores[name].append(dice(pred[r], truth[r]))
    model.train()
    return {f"dice_{k}": float(np.mean(v)) for k, v in scores.items()}


# ---------------------------------------------------------------- the loop

def check_before_training(cfg: Config) -> Config:
    """Everything :func:`train` needs of ``cfg``, checked before a case is discovered or
    preprocessed: every key (:func:`tumorscope.core.config.validate`), the model and loss
    options, one input channel per modality and one output per region, and a device this
    machine has. Returns ``cfg``."""
    validate_config(cfg)
    check_model_and_loss(cfg)
    channels = {"model.in_channels": (len(MODALITIES), "one per modality: "
                                                       + ", ".join(MODALITIES)),
                "model.out_channels": (len(REGIONS), "one per region: " + ", ".join(REGIONS))}
    for key, (wanted, why) in channels.items():
        value = cfg.model.get(key.split(".")[1], wanted)
        if value != wanted:
            raise ConfigError(f"{key} must be {wanted} ({why}), got {show(value)}")
    problem = device_problem(cfg.train.device)
    if problem is not None:
        raise ConfigError(f"train.device is {cfg.train.device!r} but {problem}")
    return cfg


def train(cfg: Config, out_dir: str | Path, *, resume: bool = False,
          progress: bool = True) -> Run:
    """Train ``cfg`` into the run directory ``out_dir``; return the :class:`Run`.

    With ``resume`` the run continues from ``checkpoints/last.pt`` exactly where it
    stopped (weights, optimiser, scheduler, EMA, step, RNG). Ctrl-C saves ``last.pt``
    before leaving. Under ``torchrun`` every rank trains and rank 0 writes.
    """
    # Every config value, the model and loss options and the device, before any case
    # is discovered or preprocessed: a bad value stops here, by its key.
    check_before_training(cfg)
    from tqdm import tqdm

    run = Run(Path(out_dir))
    dinfo = init_distributed(cfg.train.device)
    device = resolve_device(cfg.train.device)
    if device.type == "cuda" and dinfo.world_size > 1:
        device = torch.device("cuda", dinfo.local_rank)
        torch.cuda.set_device(device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    amp = autocast_dtype(cfg.train.amp, device)
    seed_everything(cfg.train.seed + dinfo.rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    last = run.checkpoint_path("last")
    if resume and not last.is_file():
        raise TumorscopeError("cannot resume: no checkpoints/last.pt in the run", path=run.path)
    if not resume and last.is_file():
        raise TumorscopeError("run folder already holds a checkpoint; pass --resume to "
                              "continue it or choose another --out", path=run.path)

    cases = [c for c in discover(cfg.data.root) if c.label is not None]
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else default_cache_dir()
    cached: dict[str, CachedCase] = {}
    for case in tqdm(cases, desc="preprocess", unit="case",
                     disable=not (progress and dinfo.main)):
        try:
            cached[case.case_id] = preprocess_case(case, cache_dir,
                                                   spacing_mm=cfg.data.spacing_mm)
        except TumorscopeError as exc:  # one bad case does not stop the cohort
            if dinfo.main:
                print(f"skipped {case.case_id}: {exc}", file=sys.stderr, flush=True)
    good = [c for c in cases if c.case_id in cached]
    recorded = run.split() if resume else {}
    if recorded.get("train") and recorded.get("val"):
        # A resumed run keeps the split it started with, whatever the folder holds now.
        by_id = {c.case_id: c for c in good}
        gone = sorted(set(recorded["train"] + recorded["val"]) - set(by_id))
        if gone:
            raise LayoutError(f"cannot resume: case(s) of split.json missing or unreadable "
                              f"now: {', '.join(gone[:5])}", path=cfg.data.root)
        train_cases = [by_id[i] for i in recorded["train"]]
        val_cases = [by_id[i] for i in recorded["val"]]
    else:
        train_cases, val_cases = split_cases(good, val_fraction=cfg.data.val_fraction,
                                             seed=cfg.data.split_seed)
    train_cached = [cached[c.case_id] for c in train_cases]
    if cfg.data.skip_empty:
        train_cached = [c for c in train_cached if c.label is not None and np.any(c.label)]
    val_cached = [cached[c.case_id] for c in val_cases]

    model = build_model(cfg.model).to(device)
    n_params = count_parameters(model)
    if dinfo.main:
        print(f"model: UNet {list(model.config.features)}, {n_params:,} parameters, "
              f"device {device}, autocast {amp}, world size {dinfo.world_size}", flush=True)
    if device.type == "cuda" and cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    loss_fn: nn.Module = make_loss(cfg.loss.name, **cfg.loss.options)
    if model.config.deep_supervision:
        loss_fn = DeepSupervisionLoss(loss_fn)
    optimizer = make_optimizer(cfg, model.parameters())
    total_steps = cfg.train.epochs * cfg.train.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps=total_steps, schedule=cfg.optim.schedule,
                                       warmup_steps=cfg.optim.warmup_steps))
    ema = (torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.train.ema))
        if cfg.train.ema else None)

    step, best = 0, -1.0
    if resume:
        ckpt = load_checkpoint(last)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ema is not None and ckpt.get("ema_full") is not None:
            ema.load_state_dict(ckpt["ema_full"])
        step, best = int(ckpt["step"]), float(ckpt["best"])
        _set_rng_state(ckpt["rng"][min(dinfo.rank, len(ckpt["rng"]) - 1)])
        if dinfo.main:
            print(f"resumed {run.path} at step {step} (epoch {step // cfg.train.steps_per_epoch})")
    elif dinfo.main:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(cfg.to_dict())
        run.write_split({"train": [c.case_id for c in train_cases],
                         "val": [c.case_id for c in val_cases]})

    net: nn.Module = model
    if dinfo.world_size > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        net = torch.compile(net)

    sampler = PatchSampler(train_cached, cfg.data.patch_size_vox, cfg.data.batch_size,
                           cfg.data.foreground_fraction, cfg.train.seed, dinfo.rank)
    loader = torch.utils.data.DataLoader(
        sampler, batch_size=None, sampler=range(step, total_steps),
        num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda",
        persistent_workers=False)
    aug_gen = torch.Generator()

    def checkpoint(which: str, epoch_metrics: dict[str, float] | None = None) -> None:
        if not dinfo.main:
            return
        payload = {
            "model": model.state_dict(),
            "ema": ema.module.state_dict() if ema is not None else None,
            "ema_full": ema.state_dict() if ema is not None else None,
            "model_config": model.config.to_dict(),
            "config": cfg.to_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "best": best,
            "metrics": epoch_metrics or {},
            "rng": [_rng_state()],
            "regions": list(REGIONS),
        }
        save_checkpoint(run.checkpoint_path(which), payload)

    net.train()
    if dinfo.main:
        print(f"training steps {step} to {total_steps} "
              f"({cfg.train.epochs} epochs x {cfg.train.steps_per_epoch})", flush=True)
    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step",
               disable=not (progress and dinfo.main))
    epoch_loss, epoch_vox, t0 = 0.0, 0, time.perf_counter()
    try:
        for image, target in loader:
            image = image.to(device, non_blocking=True)
            target = target.to(device, non_blocking=True)
            aug_gen.manual_seed(cfg.train.seed * 1_000_003 + dinfo.rank * 7919 + step)
            image, target = augment_batch(image, target, cfg.augment, generator=aug_gen)
            if device.type == "cuda" and cfg.train.channels_last:
                image = image.contiguous(memory_format=torch.channels_last_3d)
            with torch.autocast(device.type, dtype=amp or torch.float32,
                                enabled=amp is not None):
                out = net(image)
                loss = loss_fn(out, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            epoch_loss += float(loss.detach())
            epoch_vox += image[:, 0].numel() * dinfo.world_size
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if step % cfg.train.steps_per_epoch == 0:
                epoch = step // cfg.train.steps_per_epoch
                elapsed = time.perf_counter() - t0
                row: dict[str, Any] = {
                    "epoch": epoch, "step": step,
                    "loss": epoch_loss / cfg.train.steps_per_epoch,
                    "lr": optimizer.param_groups[0]["lr"],
                    "voxels_per_s": epoch_vox / max(elapsed, 1e-9),
                }
                if epoch % cfg.train.val_every_epochs == 0 or epoch == cfg.train.epochs:
                    eval_model = ema.module if ema is not None else model
                    metrics = validate(eval_model, val_cached, cfg, device, amp) \
                        if dinfo.main else {}
                    row.update(metrics)
                    mean = float(np.mean(list(metrics.values()))) if metrics else -1.0
                    row["dice_mean"] = mean if metrics else None
                    if dinfo.main and mean > best:
                        best = mean
                        checkpoint("best", metrics)
                if dinfo.main:
                    run.append_log(row)
                checkpoint("last")
                epoch_loss, epoch_vox, t0 = 0.0, 0, time.perf_counter()
    except KeyboardInterrupt:
        checkpoint("last")
        bar.close()
        if dinfo.main:
            print(f"interrupted at step {step}; resume with --resume")
        raise
    bar.close()
    if step % cfg.train.steps_per_epoch:
        checkpoint("last")
    if not run.checkpoint_path("best").exists():
        checkpoint("best")
    if dinfo.world_size > 1:
        _record_ddp_sync(model, run, dinfo)
    return run


def _record_ddp_sync(model: nn.Module, run: Run, dinfo: DistInfo) -> None:
    """Gather every rank's weights and record how far apart they are (0 when in sync)."""
    flat = torch.cat([p.detach().float().flatten().cpu() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dinfo.world_size)]
    dist.all_gather(gathered, flat)
    if dinfo.main:
        diff = max(float((g - gathered[0]).abs().max()) for g in gathered)
        atomic_write_json(run.ddp_check_path,
                          {"world_size": dinfo.world_size, "max_abs_weight_diff": diff})
    dist.barrier()
