"""The 2-D track's training data: slices read once, a patient-wise split, batches, validation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tumorscope.core.config import Config
from tumorscope.core.data.patient_splits import fold_parts, read_split_file, split_patients
from tumorscope.core.data.slice_datasets import SliceDataset, discover_slices, read_slice
from tumorscope.core.data.slice_preprocess import CLASS_NAMES, PreparedSlice, prepare_slice
from tumorscope.core.errors import ConfigError, LayoutError, TumorscopeError
from tumorscope.core.prediction.slice_inference import SlicePrediction
from tumorscope.core.scoring.classification import classification_scores
from tumorscope.core.scoring.metrics import dice

log = logging.getLogger(__name__)

CHANNELS_2D: dict[str, tuple[str, ...]] = {
    "figshare": ("t1ce",), "lgg": ("t1", "flair", "t1ce"),
    "brats2020-slices": ("t1", "t1ce", "t2", "flair")}
"""Input channels of each 2-D dataset, in the order its readers return them."""
TYPED_DATASETS = ("figshare",)
"""Datasets that say each slice's tumour type (so a type head can learn it)."""


@dataclass(frozen=True)
class SliceData:
    """A 2-D dataset prepared for training: slices by part of the split (``train``, ``val``,
    ``test``), the output regions and whether a type head has labels to learn."""

    dataset: str
    parts: dict[str, list[PreparedSlice]]
    regions: tuple[str, ...]
    channels: tuple[str, ...]
    split_source: str

    @property
    def typed(self) -> bool:
        return self.dataset in TYPED_DATASETS

    def ids(self) -> dict[str, list[str]]:
        return {part: [s.slice_id for s in slices] for part, slices in self.parts.items()}


def expected_outputs(dataset: str) -> dict[str, tuple[int, str]]:
    """``model`` keys a 2-D dataset fixes: in_channels, out_channels and classes, each with
    the reason, for one-line config errors.

    >>> expected_outputs("figshare")["classes"]
    (3, 'one per tumour type: meningioma, glioma, pituitary')
    """
    channels = CHANNELS_2D[dataset]
    regions = ("tumour",) if dataset != "brats2020-slices" else ("WT", "TC", "ET")
    out = {"in_channels": (len(channels), f"the {dataset} slices' channels: "
                           + ", ".join(channels)),
           "out_channels": (len(regions), "one per region: " + ", ".join(regions))}
    if dataset in TYPED_DATASETS:
        out["classes"] = (len(CLASS_NAMES), "one per tumour type: " + ", ".join(CLASS_NAMES))
    return out


def _fractions(cfg: Config) -> dict[str, float]:
    test = cfg.data.test_fraction
    out = {"train": 1.0 - cfg.data.val_fraction - test, "val": cfg.data.val_fraction}
    if test > 0:
        out["test"] = test
    if out["train"] <= 0:
        raise ConfigError(f"data.val_fraction ({cfg.data.val_fraction:g}) + data.test_fraction "
                          f"({test:g}) must leave patients to train on (sum < 1)")
    return out


def load_slice_data(cfg: Config, *, recorded: Mapping[str, list[str]] | None = None,
                    progress: bool = False) -> SliceData:
    """Read every slice of ``cfg.data.root`` once (a bad one is skipped, named), normalise
    and resize it to ``data.slice_size_px``, and split patient-wise (no patient on two
    sides: a slice-wise split leaks), balanced by tumour type where the dataset has one.
    ``recorded`` (a resumed run's split.json) is kept as it is."""
    from tqdm import tqdm

    ds: SliceDataset = discover_slices(cfg.data.root)
    for problem in ds.problems:
        log.warning("%s", problem)
    prepared: dict[str, PreparedSlice] = {}
    types: dict[str, int] = {}
    for ref in tqdm(ds.slices, desc="read slices", unit="slice", disable=not progress):
        try:
            s = read_slice(ref)
        except TumorscopeError as exc:  # one bad slice does not stop the dataset
            log.warning("skipped %s: %s", ref.slice_id, exc)
            continue
        prepared[s.slice_id] = prepare_slice(s, size_px=cfg.data.slice_size_px)
        types[s.patient_id] = s.tumour_type or 0
    if len(prepared) < 2:
        raise LayoutError(f"training needs at least 2 readable slices, found {len(prepared)}",
                          path=cfg.data.root)
    if recorded and recorded.get("train") and recorded.get("val"):
        gone = sorted({i for ids in recorded.values() for i in ids} - set(prepared))
        if gone:
            raise LayoutError(f"cannot resume: slice(s) of split.json missing or unreadable "
                              f"now: {', '.join(gone[:5])}", path=cfg.data.root)
        parts = {p: [prepared[i] for i in ids] for p, ids in recorded.items()}
        source = "split.json"
    elif cfg.data.split_file:
        given = read_split_file(cfg.data.split_file,
                                {i: s.patient_id for i, s in prepared.items()})
        parts = {p: [prepared[i] for i in ids] for p, ids in given.slices.items()}
        source = f"split file {cfg.data.split_file}"
    else:
        split = split_patients({i: s.patient_id for i, s in prepared.items()},
                               fractions=_fractions(cfg), seed=cfg.data.split_seed,
                               strata=types if ds.dataset in TYPED_DATASETS else None)
        parts = {p: [prepared[i] for i in ids] for p, ids in split.slices.items()}
        source = split.source
        if cfg.data.folds is not None:  # k-fold over the non-test patients
            pool = parts["train"] + parts["val"]
            patients = sorted({s.patient_id for s in pool})
            _, val_patients = fold_parts(patients, folds=cfg.data.folds,
                                         fold=cfg.data.fold or 1, seed=cfg.data.split_seed)
            chosen = set(val_patients)
            parts["train"] = [s for s in pool if s.patient_id not in chosen]
            parts["val"] = [s for s in pool if s.patient_id in chosen]
            source += f", fold {cfg.data.fold} of {cfg.data.folds}"
        if not parts["train"] or not parts["val"]:
            raise LayoutError(f"{len(split.patients['train'])} training and "
                              f"{len(split.patients['val'])} validation patient(s): each part "
                              "needs one; add patients or change data.val_fraction",
                              path=cfg.data.root)
    first = next(iter(prepared.values()))
    return SliceData(ds.dataset, parts, first.regions, CHANNELS_2D[ds.dataset], source)


@dataclass
class SliceSampler:
    """Draws (image, region target, class index) batches of whole slices. Randomness comes
    from the step index alone, as :class:`~tumorscope.core.training.train.PatchSampler`'s:
    a resumed run sees the same batches and every DDP rank different ones."""

    slices: list[PreparedSlice]
    batch_size: int
    seed: int
    rank: int = 0

    def __len__(self) -> int:
        return 1 << 40

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, step])
        chosen = [self.slices[int(i)] for i in rng.integers(len(self.slices),
                                                             size=self.batch_size)]
        return (torch.from_numpy(np.stack([s.image for s in chosen])),
                torch.from_numpy(np.stack([s.target for s in chosen]).astype(np.float32)),
                torch.tensor([s.class_index for s in chosen], dtype=torch.long))


@torch.no_grad()
def validation_loss(slices: list[PreparedSlice], predictions: list[SlicePrediction],
                    loss_fn: nn.Module) -> float:
    """The training loss over the validation slices, from the logits they were scored with."""
    logits = torch.from_numpy(np.stack([p.logits for p in predictions]))
    target = torch.from_numpy(np.stack([s.target for s in slices]).astype(np.float32))
    output: Any = logits
    if predictions[0].class_logits is not None:
        output = (logits, torch.from_numpy(np.stack([p.class_logits for p in predictions])))
    classes = torch.tensor([s.class_index for s in slices], dtype=torch.long)
    return float(loss_fn(output, target, classes))


def slice_scores(slices: list[PreparedSlice], predictions: list[SlicePrediction], *,
                 threshold: float = 0.5) -> dict[str, float]:
    """Mean Dice per region over slices (``dice_<region>``), and with type predictions the
    accuracy, macro F1 and per-type F1 of :mod:`~tumorscope.core.scoring.classification`."""
    regions = slices[0].regions
    scores: dict[str, list[float]] = {r: [] for r in regions}
    for s, p in zip(slices, predictions, strict=True):
        for k, region in enumerate(regions):
            scores[region].append(dice(p.probabilities[k] >= threshold, s.target[k] > 0))
    out = {f"dice_{r}": float(np.mean(v)) for r, v in scores.items()}
    if predictions and predictions[0].class_probabilities is not None:
        probs = np.stack([p.class_probabilities for p in predictions])
        cls = classification_scores([s.class_index for s in slices], probs.argmax(1), probs,
                                    class_names=CLASS_NAMES)
        out.update(cls.flat())
    return out
