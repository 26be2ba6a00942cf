"""A checkpoint's network out of Tumorscope: TorchScript or ONNX, its preprocessing, a check.

The exported file holds the network only (one window of z-scored channels in, region
logits out); what must be done before and after it is written beside it as
``<file>.json`` (:func:`model_spec`), read from the checkpoint's own config, so another tool
can reproduce what ``tumorscope predict`` does. :func:`check_export` runs the exported file
(TorchScript through ``torch.jit.load``, ONNX through onnxruntime on the CPU) and the
checkpoint on one input and reports the largest logit difference.

A network whose forward returns a tuple (segmentation logits, class logits) is exported
with every output, named ``logits``, ``class_logits``, ...
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from tumorscope.core.data.cases import MODALITIES
from tumorscope.core.data.labels import LABEL_NAMES, REGION_LABELS, REGIONS
from tumorscope.core.data.nifti import atomic_path, atomic_write_json
from tumorscope.core.data.preprocess import CACHE_VERSION, CROP_MARGIN_VOX
from tumorscope.core.data.volumes import CLIP_PERCENTILES
from tumorscope.core.errors import ConfigError, TumorscopeError, check_choice
from tumorscope.core.fingerprint import sha256_file
from tumorscope.core.models.checkpoints import LoadedModel, load_model

log = logging.getLogger(__name__)

ExportFormat = Literal["torchscript", "onnx"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)

SPEC_SUFFIX = ".json"
INPUT_NAME = "image"
OUTPUT_NAMES: tuple[str, ...] = ("logits", "class_logits")
ONNX_OPSET = 18
CHECK_TOLERANCE = 1e-3
"""Largest logit difference an export may show against the checkpoint (float32 reordering
of sums gives ~1e-6 on real networks)."""

_INSTALL_ONNX = "pip install onnx onnxscript onnxruntime"


@dataclass(frozen=True)
class ExportCheck:
    """The exported network against the checkpoint on one input."""

    max_abs_diff: float
    input_shape: tuple[int, ...]
    outputs: tuple[str, ...]
    tolerance: float = CHECK_TOLERANCE

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def describe(self) -> str:
        verdict = "ok" if self.ok else f"ABOVE the tolerance {self.tolerance:g}"
        return (f"check on a {'x'.join(map(str, self.input_shape))} input: max |difference| "
                f"{self.max_abs_diff:.3g} over {', '.join(self.outputs)} against the "
                f"checkpoint ({verdict})")


@dataclass(frozen=True)
class ExportedModel:
    """What :func:`export_model` wrote and how its check went."""

    path: Path
    spec_path: Path
    format: str
    check: ExportCheck


def spec_path_of(path: str | Path) -> Path:
    """Where the JSON beside an exported file goes: ``model.onnx`` -> ``model.onnx.json``."""
    path = Path(path)
    return path.with_name(path.name + SPEC_SUFFIX)


def _loaded(checkpoint: str | Path | LoadedModel) -> LoadedModel:
    return checkpoint if isinstance(checkpoint, LoadedModel) else load_model(checkpoint)


def _first_conv(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Conv3d):
            return module
    raise TumorscopeError("the network has no convolution to tell its input from")


def example_shape(loaded: LoadedModel, *, batch: int = 1) -> tuple[int, ...]:
    """``(batch, channels, *patch)``: one training patch, what a sliding window feeds the
    network; a 2-D network (its convolutions are 2-D) takes the patch's first two sizes."""
    conv = _first_conv(loaded.model)
    dims = 2 if isinstance(conv, nn.Conv2d) else 3
    patch = tuple(int(s) for s in loaded.config.data.patch_size_vox)[:dims]
    return (batch, int(conv.in_channels), *patch)


def _outputs(result: Any) -> tuple[torch.Tensor, ...]:
    if torch.is_tensor(result):
        return (result,)
    if isinstance(result, tuple | list) and all(torch.is_tensor(t) for t in result):
        return tuple(result)
    raise TumorscopeError(f"the network returns {type(result).__name__}; an export needs a "
                          "tensor or a tuple of tensors")


def output_names(n: int) -> tuple[str, ...]:
    """``logits``, ``class_logits``, then ``output_2`` ... for further outputs."""
    return tuple(OUTPUT_NAMES[i] if i < len(OUTPUT_NAMES) else f"output_{i}" for i in range(n))


def model_spec(loaded: LoadedModel, *, format: ExportFormat, file: Path,
               input_shape: Sequence[int], n_outputs: int,
               postprocess: Mapping[str, Any] | None = None,
               postprocess_source: str | None = None) -> dict[str, Any]:
    """What the exported network expects and gives, and what ``tumorscope predict`` does
    around it, read from the checkpoint's config. ``postprocess`` (the ``postprocess``
    section's values: thresholds, min_component_mm3, et_to_ncr_below_mm3) defaults to the
    checkpoint config's own; a caller that knows of a fit for this checkpoint passes it."""
    cfg = loaded.config
    post = dict(postprocess) if postprocess is not None else {
        "thresholds": list(cfg.postprocess.thresholds),
        "min_component_mm3": list(cfg.postprocess.min_component_mm3),
        "et_to_ncr_below_mm3": float(cfg.postprocess.et_to_ncr_below_mm3)}
    spatial = list(input_shape[2:])
    names = output_names(n_outputs)
    outputs: list[dict[str, Any]] = [{
        "name": names[0], "shape": ["batch", len(REGIONS), *spatial],
        "channels": list(REGIONS), "activation": "sigmoid (not applied in the file)",
        "regions": {r: list(REGION_LABELS[r]) for r in REGIONS}}]
    outputs += [{"name": n, "activation": "none (logits)"} for n in names[1:]]
    return {
        "format": format,
        "file": file.name,
        "sha256": sha256_file(file),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "checkpoint": {"path": str(loaded.path), "sha256": loaded.sha256,
                       "step": loaded.checkpoint.get("step")},
        "model_config": loaded.checkpoint.get("model_config"),
        "input": {
            "name": INPUT_NAME, "shape": ["batch", input_shape[1], *spatial],
            "dtype": "float32",
            "channels": list(MODALITIES)[: int(input_shape[1])],
            "axis_order": "channels, then the source NIfTI's voxel axes i, j, k as nibabel "
                          "reads them (not ITK's k, j, i)",
            "batch": "any size",
            "spatial_size_vox": spatial,
        },
        "preprocessing": {
            "crop": f"to the brain's bounding box plus {CROP_MARGIN_VOX} voxel(s): voxels "
                    "that differ from their channel's background (0 for skull-stripped "
                    "BraTS) in any channel",
            "spacing_mm": cfg.data.spacing_mm,
            "resample": ("none (the source spacing)" if cfg.data.spacing_mm is None else
                         f"after cropping, trilinear, to {cfg.data.spacing_mm} mm isotropic"),
            "bias_correction": (
                "none" if cfg.data.bias_correction == "off" else
                "each channel divided by its coil bias field, estimated on white matter "
                "(tumorscope.core.data.bias), before the z-score"),
            "normalisation": "z-score per channel over the brain voxels, after clipping them "
                             f"to their {CLIP_PERCENTILES[0]}-{CLIP_PERCENTILES[1]} "
                             "percentiles; voxels outside the brain set to 0",
            "preprocess_version": CACHE_VERSION,
        },
        "inference": {
            "patch_size_vox": [int(s) for s in cfg.data.patch_size_vox],
            "sliding_window_overlap": float(cfg.train.overlap),
            "window_weighting": "gaussian",
            "mirroring": "off by default (tumorscope predict --mirror averages flips of "
                         "every axis)",
        },
        "outputs": outputs,
        "postprocess": {
            **post,
            "source": postprocess_source or "the checkpoint's config",
            "labels": "a voxel is 4 (enhancing) if sigmoid(ET) > its threshold, else 1 "
                      "(necrotic core) if TC is, else 2 (edema) if WT is, else 0; BraTS 2023 "
                      "cases store 4 as 3",
            "label_names": {str(k): v for k, v in LABEL_NAMES.items()},
        },
    }


def _quiet() -> contextlib.ExitStack:
    """Silence the exporters' chatter: deprecation notes about torch.jit, tracer warnings
    about the input checks (decided once, at the traced shape) and the ONNX exporter's
    progress lines on stdout, which would garble the command's own output."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    chatter = io.StringIO()
    stack.enter_context(contextlib.redirect_stdout(chatter))
    stack.callback(lambda: log.debug("exporter output: %s", chatter.getvalue()))
    return stack


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
    with atomic_path(path) as tmp:
        traced.save(str(tmp))


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, names: Sequence[str]) -> None:
    try:
        import onnx  # noqa: F401  (torch.onnx needs it; checked here to say what to install)
        import onnxscript  # noqa: F401
    except ImportError:
        raise TumorscopeError(f"exporting to ONNX needs the onnx and onnxscript packages: "
                              f"{_INSTALL_ONNX}") from None
    arg = next(iter(inspect.signature(model.forward).parameters))
    with atomic_path(path) as tmp, _quiet(), torch.no_grad():
        try:
            torch.onnx.export(model, (example,), str(tmp), input_names=[INPUT_NAME],
                              output_names=list(names), opset_version=ONNX_OPSET, dynamo=True,
                              external_data=False, verbose=False,
                              dynamic_shapes={arg: {0: torch.export.Dim("batch")}})
        except Exception as exc:  # noqa: BLE001 - the exporter raises many types
            # torch.export cannot capture every network (data-dependent Python control
            # flow); the TorchScript-based exporter traces what ran instead.
            log.warning("ONNX export through torch.export failed (%s); using the "
                        "TorchScript-based exporter", str(exc).splitlines()[0] if str(exc)
                        else type(exc).__name__)
            torch.onnx.export(model, (example,), str(tmp), input_names=[INPUT_NAME],
                              output_names=list(names), opset_version=17, dynamo=False,
                              dynamic_axes={n: {0: "batch"} for n in (INPUT_NAME, *names)})


def export_model(
    checkpoint: str | Path | LoadedModel,
    out: str | Path,
    *,
    format: ExportFormat,
    postprocess: Mapping[str, Any] | None = None,
    postprocess_source: str | None = None,
    input_shape: Sequence[int] | None = None,
) -> ExportedModel:
    """Export ``checkpoint``'s network to ``out`` (atomically), write ``<out>.json`` beside
    it (:func:`model_spec`) and check the file against the checkpoint (:func:`check_export`).

    ``input_shape`` is the example the network is traced with (default: one training patch,
    :func:`example_shape`); the batch size of the exported file is free, its spatial size
    is that of the example.
    """
    check_choice("format", format, EXPORT_FORMATS)
    out = Path(out)
    if out.is_dir():
        raise ConfigError("is a folder; --out needs a file name such as model.onnx", path=out)
    loaded = _loaded(checkpoint)
    model = loaded.model.eval()
    shape = tuple(int(s) for s in input_shape) if input_shape else example_shape(loaded)
    example = torch.zeros(shape, dtype=torch.float32)
    with torch.no_grad():
        n_outputs = len(_outputs(model(example)))
    names = output_names(n_outputs)
    if format == "torchscript":
        _export_torchscript(model, example, out)
    else:
        _export_onnx(model, example, out, names)
    spec = spec_path_of(out)
    atomic_write_json(spec, model_spec(loaded, format=format, file=out, input_shape=shape,
                                       n_outputs=n_outputs, postprocess=postprocess,
                                       postprocess_source=postprocess_source))
    check = check_export(out, loaded, format=format, input_shape=shape)
    log.info("exported %s to %s; %s", loaded.path, out, check.describe())
    return ExportedModel(out, spec, format, check)


def _run_exported(path: Path, format: str, x: np.ndarray) -> tuple[np.ndarray, ...]:
    if format == "torchscript":
        try:
            with warnings.catch_warnings():  # torch.jit's deprecation note is not ours to show
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            raise TumorscopeError(f"not a TorchScript file ({str(exc).splitlines()[0]})",
                                  path=path) from None
        with torch.no_grad():
            return tuple(t.numpy() for t in _outputs(module(torch.from_numpy(x))))
    try:
        import onnxruntime as ort
    except ImportError:
        raise TumorscopeError(f"running an ONNX file needs onnxruntime: {_INSTALL_ONNX}"
                              ) from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        raise TumorscopeError(f"onnxruntime cannot load it ({str(exc).splitlines()[0]})",
                              path=path) from None
    return tuple(np.asarray(o) for o in session.run(None, {session.get_inputs()[0].name: x}))


def check_export(
    exported: str | Path,
    checkpoint: str | Path | LoadedModel,
    *,
    format: ExportFormat,
    input: np.ndarray | None = None,
    input_shape: Sequence[int] | None = None,
    seed: int = 0,
) -> ExportCheck:
    """Run the exported file and the checkpoint on one input; the largest logit difference.

    ``input`` defaults to standard-normal noise (what z-scored channels look like) of
    ``input_shape`` (default :func:`example_shape`), drawn from ``seed``.
    """
    check_choice("format", format, EXPORT_FORMATS)
    exported = Path(exported)
    if not exported.is_file():
        raise TumorscopeError("exported model not found", path=exported)
    loaded = _loaded(checkpoint)
    if input is None:
        shape = tuple(input_shape) if input_shape else example_shape(loaded)
        input = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    x = np.ascontiguousarray(input, dtype=np.float32)
    with torch.no_grad():
        expected = tuple(t.numpy() for t in _outputs(loaded.model.eval()(torch.from_numpy(x))))
    got = _run_exported(exported, format, x)
    names = output_names(len(expected))
    if len(got) != len(expected) or any(g.shape != e.shape for g, e in zip(got, expected,
                                                                          strict=False)):
        raise TumorscopeError(f"gives outputs of shapes {[g.shape for g in got]}; the "
                              f"checkpoint gives {[e.shape for e in expected]}", path=exported)
    diff = max(float(np.max(np.abs(g.astype(np.float64) - e))) if e.size else 0.0
               for g, e in zip(got, expected, strict=True))
    return ExportCheck(diff, tuple(int(s) for s in x.shape), names)
