"""Running a 2-D model over prepared slices: region probabilities and tumour-type probabilities."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tumorscope.core.data.slice_preprocess import PreparedSlice


@dataclass(frozen=True)
class SlicePrediction:
    """What a 2-D model says of one prepared slice: region probabilities (K, S, S) and, with
    a type head, class probabilities (K_classes,); the raw logits they came from (for a
    validation loss)."""

    slice_id: str
    probabilities: np.ndarray
    class_probabilities: np.ndarray | None
    logits: np.ndarray | None = None
    class_logits: np.ndarray | None = None


@torch.no_grad()
def predict_slices(model: nn.Module, slices: list[PreparedSlice], *, device: torch.device,
                   amp: torch.dtype | None, batch_size: int = 8,
                   split_output: Callable[[Any], tuple[Any, Any]]) -> list[SlicePrediction]:
    """Run ``model`` (eval mode) over whole slices in batches."""
    was_training = model.training
    model.eval()
    out: list[SlicePrediction] = []
    for start in range(0, len(slices), batch_size):
        batch = slices[start:start + batch_size]
        image = torch.from_numpy(np.stack([s.image for s in batch])).to(device)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            seg, cls = split_output(model(image))
        logits = seg.float().cpu()
        prob = torch.sigmoid(logits).numpy()
        cl = cls.float().cpu() if cls is not None else None
        cprob = torch.softmax(cl, dim=1).numpy() if cl is not None else None
        for i, s in enumerate(batch):
            out.append(SlicePrediction(
                s.slice_id, prob[i], None if cprob is None else cprob[i],
                logits=logits[i].numpy(), class_logits=None if cl is None else cl[i].numpy()))
    model.train(was_training)
    return out


