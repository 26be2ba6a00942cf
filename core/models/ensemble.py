"""Ensembles of checkpoints (k-fold cross-validation): one network averaging its members.

:func:`write_ensemble` packs the members' weights and configs into one checkpoint file, so
``predict`` treats an ensemble as any checkpoint: its SHA-256 changes when any member does
(a prediction of the old ensemble is then never reused), and it names its members.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tumorscope.core.errors import ConfigError
from tumorscope.core.fingerprint import sha256_file

ENSEMBLE_KEY = "ensemble"
"""``model_config[ENSEMBLE_KEY]``: the members' model configs (an ensemble checkpoint)."""
_EPS = 1e-6
# What members must share, beyond the architecture's inputs and outputs: they see the same
# preprocessing and windows, so their probabilities average voxel for voxel.
_SAME_DATA = ("spacing_mm", "patch_size_vox", "slice_size_px")


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(_EPS, 1 - _EPS)
    return torch.log(p) - torch.log1p(-p)


class EnsembleModel(nn.Module):
    """Members averaged in probability: sigmoid region probabilities (and softmax type
    probabilities) are averaged and returned as logits of the mean, so every caller that
    applies a sigmoid (softmax) to a model's output gets the mean probability. ``config`` is
    the first member's (they share inputs, outputs and dimensionality)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ConfigError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    def forward(self, x: torch.Tensor) -> Any:
        outputs = [m(x) for m in self.members]
        if isinstance(outputs[0], tuple):
            seg = torch.stack([torch.sigmoid(o[0].float()) for o in outputs]).mean(0)
            cls = torch.stack([torch.softmax(o[1].float(), dim=1) for o in outputs]).mean(0)
            return _logit(seg), torch.log(cls.clamp_min(_EPS))
        return _logit(torch.stack([torch.sigmoid(o.float()) for o in outputs]).mean(0))


def _comparable(model_config: dict[str, Any]) -> dict[str, Any]:
    keys = ("in_channels", "out_channels", "spatial_dims", "classes")
    defaults = {"spatial_dims": 3, "classes": 0}
    return {k: model_config.get(k, defaults.get(k)) for k in keys}


def write_ensemble(checkpoints: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Pack ``checkpoints`` (e.g. each fold's ``best.pt``) into one ensemble checkpoint at
    ``out``; return its payload. Members must agree on inputs, outputs, regions and data
    grid; the first one that does not is named in a :class:`ConfigError`."""
    from tumorscope.core.models.checkpoints import (
        load_checkpoint,
        model_from_checkpoint,
        save_checkpoint,
    )

    paths = [Path(p) for p in checkpoints]
    if len(paths) < 2:
        raise ConfigError(f"an ensemble needs at least 2 checkpoints, got {len(paths)}")
    loaded = [load_checkpoint(p) for p in paths]
    first = loaded[0]
    for path, ckpt in zip(paths[1:], loaded[1:], strict=True):
        if ENSEMBLE_KEY in ckpt["model_config"]:
            raise ConfigError("is an ensemble already; give its members instead", path=path)
        if _comparable(ckpt["model_config"]) != _comparable(first["model_config"]):
            raise ConfigError(f"has inputs/outputs {_comparable(ckpt['model_config'])}, the "
                              f"first member {_comparable(first['model_config'])}", path=path)
        if list(ckpt.get("regions") or []) != list(first.get("regions") or []):
            raise ConfigError(f"predicts the regions {ckpt.get('regions')}, the first member "
                              f"{first.get('regions')}", path=path)
        for key in _SAME_DATA:
            a = (ckpt.get("config") or {}).get("data", {}).get(key)
            b = (first.get("config") or {}).get("data", {}).get(key)
            if a != b:
                raise ConfigError(f"was trained with data.{key} {a!r}, the first member with "
                                  f"{b!r}: members must see the same grid", path=path)
    members = [model_from_checkpoint(c, path=p) for c, p in zip(loaded, paths, strict=True)]
    model = EnsembleModel(members)
    payload = {
        "model": model.state_dict(),
        "ema": None,
        "model_config": {ENSEMBLE_KEY: [c["model_config"] for c in loaded]},
        "config": first["config"],
        "regions": first.get("regions"),
        "members": [{"path": str(p.resolve()), "sha256": sha256_file(p),
                     "metrics": c.get("metrics") or {}} for p, c in zip(paths, loaded,
                                                                        strict=True)],
        "step": None,
    }
    save_checkpoint(Path(out), payload)
    return payload
