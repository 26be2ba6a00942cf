"""Checkpoints and devices: saving, loading and checking a checkpoint, rebuilding its network.

A checkpoint is refused once, by name, for every fault that would otherwise surface per
case or as a traceback: an unreadable file, no config, a config that does not parse, weights
that do not fit the architecture it records, or a number of input channels other than the
four BraTS modalities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tumorscope.core.config import Config, config_from_dict
from tumorscope.core.data.labels import REGIONS
from tumorscope.core.data.nifti import atomic_path
from tumorscope.core.errors import ConfigError, TumorscopeError
from tumorscope.core.fingerprint import sha256_file
from tumorscope.core.models import build_model
from tumorscope.core.models.ensemble import ENSEMBLE_KEY, EnsembleModel

INPUT_CHANNELS = 4
"""T1, T1ce, T2, FLAIR: what every Tumorscope case gives a network."""


class CheckpointError(TumorscopeError):
    """A checkpoint file that cannot be used: unreadable, incomplete or inconsistent."""


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when present, else CPU; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available")
    return device


def device_problem(name: str) -> str | None:
    """Why the device ``name`` (already of the form auto, cpu, cuda[:N], mps) cannot be used
    on this machine, or None when it can. Imports torch only for cuda and mps.

    >>> device_problem("cpu") is None
    True
    """
    if name in ("auto", "cpu"):
        return None
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return "CUDA is not available on this machine"
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            return f"this machine has {count} CUDA device(s): cuda:0 to cuda:{count - 1}"
    elif name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return "MPS (Apple GPU) is not available on this machine"
    return None


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None = full fp32)."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16":
        return torch.float16
    return torch.bfloat16


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` through a temp file and a rename: a crash never leaves half a file."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint; a missing or unreadable file is a :class:`CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError("is a folder; expected a checkpoint file such as "
                              "RUN/checkpoints/best.pt", path=path)
    if not path.is_file():
        raise CheckpointError("checkpoint not found", path=path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except PermissionError:
        raise CheckpointError("permission denied: the checkpoint cannot be read",
                              path=path) from None
    except Exception as exc:  # torch raises many types for a damaged file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint cannot be read, the file is truncated or not a "
                              f"PyTorch checkpoint ({first})", path=path) from None
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        raise CheckpointError("not a Tumorscope checkpoint (no model config or weights)",
                              path=path)
    return ckpt


@dataclass(frozen=True)
class LoadedModel:
    """A checked checkpoint: its network (eval mode, on the CPU), config and content hash."""

    path: Path
    sha256: str
    model: nn.Module
    config: Config
    checkpoint: dict[str, Any]


def _first_mismatch(model: nn.Module, state: dict[str, Any]) -> str | None:
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            return f"weight {key!r} is missing"
        got = state[key]
        if not hasattr(got, "shape") or tuple(got.shape) != tuple(tensor.shape):
            shape = tuple(got.shape) if hasattr(got, "shape") else type(got).__name__
            return f"weight {key!r} has shape {shape}, the architecture needs " \
                   f"{tuple(tensor.shape)}"
    extra = sorted(set(state) - set(expected))
    if extra:
        return f"weight {extra[0]!r} is not part of the recorded architecture"
    return None


def model_from_checkpoint(ckpt: dict[str, Any], *, ema: bool = True,
                          path: str | Path | None = None) -> nn.Module:
    """Rebuild the network a checkpoint describes, with its (EMA, if present) weights.

    Raises :class:`CheckpointError` naming ``path`` and the first mismatching weight when the
    weights do not fit the recorded architecture, and when the architecture is invalid.
    """
    try:
        members = (ckpt["model_config"] or {}).get(ENSEMBLE_KEY)
        model = (EnsembleModel([build_model(c) for c in members]) if members is not None
                 else build_model(ckpt["model_config"]))
    except ConfigError as exc:
        raise CheckpointError(f"recorded model config is invalid ({exc.fault})",
                              path=path) from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"recorded model config cannot be read ({exc})",
                              path=path) from None
    state = ckpt.get("ema") if ema and ckpt.get("ema") is not None else ckpt["model"]
    if not isinstance(state, dict):
        raise CheckpointError("weights are not a state dict", path=path)
    problem = _first_mismatch(model, state)
    if problem:
        raise CheckpointError(f"weights do not match the recorded architecture: {problem}",
                              path=path)
    for key, tensor in state.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and \
                not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"weight {key!r} holds {bad} non-finite value(s) (NaN or "
                                  "inf): the training diverged; this model cannot predict",
                                  path=path)
    model.load_state_dict(state)
    return model.eval()


def load_model(path: str | Path) -> LoadedModel:
    """Load and check a checkpoint for prediction: config, architecture, weights, channels.

    Every fault is raised once, naming the checkpoint, before any case is touched.
    """
    path = Path(path)
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt.get("config"), dict):
        raise CheckpointError("holds no training config (was it written by tumorscope "
                              "train?)", path=path)
    try:
        cfg = config_from_dict(ckpt["config"], source=str(path))
    except ConfigError as exc:
        raise CheckpointError(f"recorded training config is invalid ({exc.fault})",
                              path=path) from None
    model = model_from_checkpoint(ckpt, path=path)
    config = getattr(model, "config", None)
    if getattr(config, "spatial_dims", 3) == 2:
        # A 2-D model's channels follow its dataset (figshare 1, LGG 3, BraTS slices 4):
        # only its outputs must be the regions it recorded.
        outputs = getattr(config, "out_channels", 0)
        regions = list(ckpt.get("regions") or (["tumour"] if outputs == 1 else REGIONS))
        if outputs != len(regions):
            raise CheckpointError(f"2-D network gives {outputs} output channel(s) but records "
                                  f"the regions {regions}", path=path)
        return LoadedModel(path.resolve(), sha256_file(path), model, cfg, ckpt)
    channels = getattr(config, "in_channels", INPUT_CHANNELS)
    if channels != INPUT_CHANNELS:
        raise CheckpointError(f"network takes {channels} input channel(s); Tumorscope cases "
                              f"have {INPUT_CHANNELS} (T1, T1ce, T2, FLAIR)", path=path)
    regions = ckpt.get("regions", list(REGIONS))
    if list(regions) != list(REGIONS):
        raise CheckpointError(f"network's outputs are the regions {list(regions)}; Tumorscope "
                              f"reads them as {list(REGIONS)}", path=path)
    outputs = getattr(config, "out_channels", len(REGIONS))
    if outputs != len(REGIONS):
        raise CheckpointError(f"network gives {outputs} output channel(s); Tumorscope needs "
                              f"{len(REGIONS)}, one per region ({', '.join(REGIONS)})",
                              path=path)
    return LoadedModel(path.resolve(), sha256_file(path), model, cfg, ckpt)
