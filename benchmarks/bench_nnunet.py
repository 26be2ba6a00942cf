"""Our sliding window against nnU-Net v2's and MONAI's: same tensor, weights and settings."""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from tumorscope.core.config import load_config
from tumorscope.core.data.cases import MODALITIES, discover
from tumorscope.core.data.preprocess import preprocess_case
from tumorscope.core.data.synthetic import make_demo_cohort
from tumorscope.core.models import build_model
from tumorscope.core.models.unet import run_format
from tumorscope.core.prediction.sliding_window import (
    gaussian_importance,
    sliding_window_logits,
    window_grid,
)

NETWORKS = {"tiny": "tiny-cpu", "default": "default"}
"""--network -> the preset whose network, window, spacing and overlap it takes."""
MONAI_TOLERANCE = 1e-4
"""MONAI and ours place the same windows with the same Gaussian: logits agree to this."""
FP16_TOLERANCE = 1e-2
"""nnU-Net accumulates in float16 (about 3 significant digits): with its own tiles and
Gaussian reproduced in float32, logits agree to this, times the largest logit when that is
above 1 (a trained network's reach 20-30), where its sums stay normal floats."""
FP16_NORMAL = 2.0**-14
"""The smallest normal float16; summed Gaussian weights below it lose their precision."""


def require_nnunet() -> None:
    """Exit with the install command when the peer (nnU-Net v2) is not installed."""
    import importlib.util

    if importlib.util.find_spec("nnunetv2") is None:
        raise SystemExit("nnunetv2 is not installed: see the README's Benchmarks section "
                         "(pip install --no-deps nnunetv2 dynamic-network-architectures ...)")


def spacing_arg(text: str) -> float | str | None:
    """--spacing: a number of mm, ``native`` (None: the source grid) or ``preset``."""
    if text in ("preset", "native"):
        return None if text == "native" else text
    return float(text)


def nnunet_dataset_json() -> dict[str, Any]:
    """dataset.json of a region-based BraTS task in our label values: outputs WT, TC, ET
    (sigmoid each), written back as 2 (edema), 1 (core), 4 (enhancing), as ours are."""
    return {
        "channel_names": {str(i): m for i, m in enumerate(MODALITIES)},
        "labels": {"background": 0, "WT": [1, 2, 4], "TC": [1, 4], "ET": [4]},
        "regions_class_order": [2, 1, 4],
        "numTraining": 0,
        "file_ending": ".nii.gz",
    }


def nnunet_network(input_channels: int, num_classes: int, deep_supervision: bool = False,
                   **model: Any) -> torch.nn.Module:
    """Our UNet, built the way nnU-Net builds a plans file's network class."""
    net = build_model({**model, "in_channels": input_channels, "out_channels": num_classes,
                       "deep_supervision": bool(deep_supervision)})
    return net


def nnunet_plans(model: dict[str, Any], patch: Sequence[int], spacing_mm: float | None,
                 network_class: str = "bench_nnunet.nnunet_network") -> dict[str, Any]:
    """An nnU-Net plans.json for our network: one 3d_fullres configuration with our window,
    per-channel z-score inside the non-zero mask, nibabel reading with its (z, y, x) order
    transposed back to ours (i, j, k); ``network_class`` builds our UNet from ``model``."""
    spacing = [float(spacing_mm or 1.0)] * 3
    resample = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    return {
        "dataset_name": "Dataset999_Tumorscope",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": spacing,
        "original_median_shape_after_transp": [240, 240, 155],
        "image_reader_writer": "NibabelIO",
        "transpose_forward": [2, 1, 0],
        "transpose_backward": [2, 1, 0],
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(i): {"mean": 0.0, "std": 1.0, "percentile_00_5": 0.0, "percentile_99_5": 1.0}
            for i in range(len(MODALITIES))},
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres",
            "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2,
            "patch_size": [int(p) for p in patch],
            "median_image_size_in_voxels": [240, 240, 155],
            "spacing": spacing,
            "normalization_schemes": ["ZScoreNormalization"] * len(MODALITIES),
            "use_mask_for_norm": [True] * len(MODALITIES),
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": resample,
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_seg_kwargs": {**resample, "is_seg": True, "order": 1},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {**resample, "order": 1},
            "architecture": {"network_class_name": network_class,
                             "arch_kwargs": dict(model), "_kw_requires_import": []},
            "batch_dice": False,
        }},
    }


def nnunet_predictor(net: torch.nn.Module, plans: dict[str, Any], device: torch.device, *,
                     mirror_axes: Sequence[int], step: float = 0.5, gaussian: bool = True):
    """nnU-Net's own predictor, set up by hand with ``net`` (its weights as the one fold)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    predictor = nnUNetPredictor(tile_step_size=step, use_gaussian=gaussian,
                                use_mirroring=bool(mirror_axes),
                                perform_everything_on_device=device.type == "cuda",
                                device=device, allow_tqdm=False)
    manager = PlansManager(plans)
    predictor.manual_initialization(
        net, manager, manager.get_configuration("3d_fullres"), [net.state_dict()],
        nnunet_dataset_json(), "nnUNetTrainer", tuple(mirror_axes) or None)
    return predictor


def mirrored(net: torch.nn.Module, axes: Sequence[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``net`` averaged over every combination of flips of ``axes`` (spatial 0..2), per
    window: what ours and nnU-Net do, for MONAI's ``sliding_window_inference``."""
    dims = [a + 2 for a in axes]
    flips = [list(c) for n in range(len(dims) + 1) for c in itertools.combinations(dims, n)]

    def run(x: torch.Tensor) -> torch.Tensor:
        out = sum(net(x.flip(f)).flip(f) if f else net(x) for f in flips)
        return out / len(flips)

    return run


def aligned_shape(shape: Sequence[int], roi: Sequence[int], step: float) -> tuple[int, ...]:
    """The largest shape inside ``shape`` where nnU-Net's evenly spread tiles and our
    fixed-step ones (last shifted back) fall on the same voxels: roi + k * roi * step."""
    out = []
    for s, r in zip(shape, roi, strict=True):
        stride = int(r * step)
        out.append(r + max((s - r) // stride, 0) * stride if s >= r else s)
    return tuple(out)


def synced(device: torch.device, fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    return run


def interleaved(runs: dict[str, Callable[[], Any]], repeats: int
                ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Seconds of each run per repeat, the runs taking turns (order rotated each repeat) so
    that a ratio compares runs made at the same moment; and what each returned last."""
    names = list(runs)
    times: dict[str, list[float]] = {n: [] for n in names}
    last: dict[str, Any] = {}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            last[name] = runs[name]()
            times[name].append(time.perf_counter() - t0)
    return times, last


def ratio_line(label: str, peer: list[float], ours: list[float]) -> str:
    ratios = [p / o for p, o in zip(peer, ours, strict=True)]
    return (f"ratio {label}: {statistics.median(ratios):.2f}x (median of {len(ratios)} "
            f"interleaved repeats, min {min(ratios):.2f}x, max {max(ratios):.2f}x; >1: ours "
            f"faster)")


def differences(a: torch.Tensor, b: torch.Tensor) -> str:
    a, b = a.float().cpu(), b.float().cpu()
    pa, pb = torch.sigmoid(a), torch.sigmoid(b)
    agree = ((a > 0) == (b > 0)).float().mean().item()
    return (f"logits max |d| {(a - b).abs().max().item():.2e}, mean |d| "
            f"{(a - b).abs().mean().item():.2e}; probabilities max |d| "
            f"{(pa - pb).abs().max().item():.2e}, mean |d| {(pa - pb).abs().mean().item():.2e};"
            f" decisions agreeing {agree * 100:.3f}%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--network", choices=list(NETWORKS), default="tiny",
                        help="tiny: the tiny-cpu preset's network, window and 2 mm grid; "
                             "default: the default preset's (GPU sized)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--roi", type=int, default=None, help="window (default: the preset's)")
    parser.add_argument("--mirror-axes", type=int, nargs="*", default=[0, 1, 2],
                        help="mirroring axes for all three (nnU-Net's default: 0 1 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (all)")
    parser.add_argument("--checkpoint", default=None,
                        help="a trained checkpoint (default: the preset's UNet, seeded)")
    parser.add_argument("--skip-aligned", action="store_true",
                        help="skip the agreement runs on the tile-aligned crop")
    parser.add_argument("--data", type=Path, default=None,
                        help="a cohort folder whose first case is used (default: a demo case)")
    parser.add_argument("--spacing", type=spacing_arg, default="preset",
                        help="grid in mm, 'native' or 'preset' (default: the preset's)")
    args = parser.parse_args(argv)
    require_nnunet()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_config(NETWORKS[args.network])
    if args.checkpoint:
        from tumorscope.core.models.checkpoints import load_model

        net = load_model(args.checkpoint).model
    else:
        torch.manual_seed(0)
        net = build_model(cfg.model)
    net = net.to(device).eval()
    model_cfg = net.config.to_dict()
    roi = (args.roi,) * 3 if args.roi else tuple(cfg.data.patch_size_vox)
    axes = tuple(args.mirror_axes)
    step = 0.5  # nnU-Net's default tile_step_size; ours and MONAI: overlap 0.5
    amp = torch.float16 if device.type == "cuda" else None  # nnU-Net: fp16 autocast on CUDA

    spacing = cfg.data.spacing_mm if args.spacing == "preset" else args.spacing
    with tempfile.TemporaryDirectory(prefix="tumorscope-bench-") as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "demo"
            make_demo_cohort(data, n_cases=1, seed=0, progress=False)
        case = discover(data)[0]
        cached = preprocess_case(case, Path(tmp) / "cache", target_spacing_mm=spacing)
        image = torch.from_numpy(np.array(cached.image, dtype=np.float32)).to(device)
    plans = nnunet_plans(model_cfg, roi, spacing)
    nnunet = nnunet_predictor(net, plans, device, mirror_axes=axes, step=step)
    predictor = mirrored(net, axes)

    def ours(x: torch.Tensor = image, model: torch.nn.Module = net) -> torch.Tensor:
        return sliding_window_logits(model, x, roi_size_vox=roi, overlap=step, batch_windows=1,
                                     mirror_axes=axes, autocast_dtype=amp)

    # What `predict` runs: the network in the memory format it trained in (channels-last
    # for 3-D, train.channels_last); a copy, so the peers keep the layout they are given.
    layout = run_format(3, device, channels_last=cfg.train.channels_last)
    net_run = copy.deepcopy(net).to(memory_format=layout) if layout is not None else net

    def ours_run(x: torch.Tensor = image) -> torch.Tensor:
        return ours(x, net_run)

    def monai(x: torch.Tensor = image, weight: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(device.type, dtype=amp or torch.float32,
                                             enabled=amp is not None):
            return sliding_window_inference(x[None], roi, 1, predictor, overlap=step,
                                            mode="gaussian", roi_weight_map=weight)[0].float()

    def peer(x: torch.Tensor = image, p: Any = nnunet) -> torch.Tensor:
        return p.predict_sliding_window_return_logits(x)

    windows = len(window_grid(image.shape[1:], roi, overlap=step))
    print(f"{args.network} network {list(model_cfg['features'])} "
          f"({sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters), device "
          f"{device}, {torch.get_num_threads()} torch thread(s); tensor {tuple(image.shape)} "
          f"(brain crop of case {case.case_id} on a {spacing or 'native'} mm grid)")
    print(f"equal work: same tensor and weights; window {roi}, overlap/step {step}, Gaussian "
          f"weighting, mirroring axes {list(axes) or 'none'} ({2 ** len(axes)} passes per "
          f"window), 1 window per batch (nnU-Net runs one at a time), {windows} windows, "
          f"{'fp16 autocast' if amp else 'fp32'}")
    one = image[(slice(None), *(slice(0, r) for r in roi))].contiguous()
    for fn in (ours, ours_run, monai, peer):  # warm-up on one window: lazy set-up, autotuning
        synced(device, lambda f=fn: f(one))()
    times, last = interleaved({"ours": synced(device, ours), "nnunet": synced(device, peer),
                               "monai": synced(device, monai),
                               "ours_run": synced(device, ours_run)}, args.repeats)
    print(ratio_line("nnU-Net predict_sliding_window_return_logits / ours", times["nnunet"],
                     times["ours"]))
    print(ratio_line("MONAI sliding_window_inference / ours", times["monai"], times["ours"]))
    if layout is not None:
        print(f"ours as predict runs it ({layout}, the peers given the network as built):")
        print(ratio_line("  nnU-Net / ours", times["nnunet"], times["ours_run"]))
        print(ratio_line("  MONAI / ours", times["monai"], times["ours_run"]))
        run_diff = (last["ours_run"].float() - last["ours"].float()).abs().max().item()
        print(f"  agreement with ours as built: max |logit d| {run_diff:.1e}")

    out_ours, out_monai, out_nnunet = last["ours"], last["monai"], last["nnunet"]
    monai_diff = (out_ours.float() - out_monai.float()).abs().max().item()
    print(f"agreement MONAI vs ours (same grid, same Gaussian): {differences(out_ours, out_monai)}")
    print(f"agreement nnU-Net vs ours: {differences(out_ours, out_nnunet)}")
    ok = monai_diff <= (MONAI_TOLERANCE if amp is None else FP16_TOLERANCE)
    checks = [f"MONAI vs ours max |logit d| {monai_diff:.1e} <= "
              f"{MONAI_TOLERANCE if amp is None else FP16_TOLERANCE:g}"]
    if not args.skip_aligned:
        ok &= explain_nnunet(image, roi, step, net, plans, device, axes, ours, monai, checks)
    print(f"agreement check: {'PASS' if ok else 'FAIL'} ({'; '.join(checks)})")
    return 0 if ok else 1


def explain_nnunet(image: torch.Tensor, roi: tuple[int, ...], step: float, net: torch.nn.Module,
                   plans: dict[str, Any], device: torch.device, axes: tuple[int, ...],
                   ours: Callable[..., torch.Tensor], monai: Callable[..., torch.Tensor],
                   checks: list[str]) -> bool:
    """Take nnU-Net's difference from ours apart on a crop where both place the same tiles:
    what is left there is the Gaussian; with nnU-Net's own Gaussian given to MONAI, only
    nnU-Net's float16 accumulation is."""
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    shape = aligned_shape(image.shape[1:], roi, step)
    crop = image[(slice(None), *(slice(0, s) for s in shape))].contiguous()
    # nnU-Net's map as it uses it (float16, peak 10, underflowed zeros set to the minimum).
    theirs = compute_gaussian(roi, sigma_scale=1.0 / 8, value_scaling_factor=10,
                              dtype=torch.float16, device=device).float()
    mine = torch.from_numpy(gaussian_importance(roi)).to(device)
    rel = ((theirs / theirs.max()) - (mine / mine.max())).abs().max().item()
    print(f"why they differ: nnU-Net spreads its tiles evenly (steps rounded from "
          f"(size - window) / n), ours and MONAI step {int(roi[0] * step)} voxels and shift "
          f"the last tile back; nnU-Net's Gaussian is scipy's filtered delta at voxel n//2 "
          f"(half a voxel off centre for even windows, cut at 4 sigma) in float16, ours the "
          f"exact one centred at (n-1)/2 floored at 1e-3: peak-normalised maps differ by up to "
          f"{rel:.3f}; nnU-Net sums weighted logits and weights in float16")
    out_nn = nnunet_predictor(net, plans, device, mirror_axes=axes,
                              step=step).predict_sliding_window_return_logits(crop).float()
    print(f"  on a tile-aligned crop {tuple(crop.shape[1:])} (same tiles): nnU-Net vs ours: "
          f"{differences(ours(crop), out_nn)}")
    same = monai(crop, theirs)
    print(f"  same crop, MONAI given nnU-Net's Gaussian (same tiles and weights, float32 "
          f"sums): nnU-Net vs that: {differences(same, out_nn)}")
    total = torch.zeros(shape, device=device)
    for start in window_grid(shape, roi, overlap=step):
        total[tuple(slice(s, s + r) for s, r in zip(start, roi, strict=True))] += theirs
    normal = total >= FP16_NORMAL  # below it float16 sums are subnormal: few digits left
    diff = (same - out_nn).abs()
    inside = diff[:, normal].max().item()
    print(f"    where the summed weight is a normal float16 (>= {FP16_NORMAL:g}, "
          f"{normal.float().mean().item() * 100:.1f}% of voxels): max |logit d| {inside:.1e}; "
          f"at the crop's edges, where tiles overlap only in their underflowed tails: "
          f"{diff[:, ~normal].max().item() if (~normal).any() else 0.0:.1e}")
    bound = FP16_TOLERANCE * max(1.0, same[:, normal].abs().max().item())
    checks.append(f"nnU-Net vs its own tiles and Gaussian in float32, where float16 is normal, "
                  f"max |logit d| {inside:.1e} <= {bound:.2g} ({FP16_TOLERANCE:g} x the "
                  f"largest logit, at least 1)")
    return inside <= bound


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # plans name bench_nnunet.*
    raise SystemExit(main())
