"""Cohort prediction end to end: our predict_run against MONAI's and nnU-Net's pipelines."""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from tumorscope.core.config import load_config
from tumorscope.core.data.cases import MODALITIES, Case, discover
from tumorscope.core.data.labels import REGIONS, labels_to_regions, to_canonical
from tumorscope.core.data.synthetic import make_demo_cohort
from tumorscope.core.models import build_model
from tumorscope.core.models.checkpoints import autocast_dtype, load_checkpoint, save_checkpoint
from tumorscope.core.prediction.predict import predict_run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nnunet import (  # noqa: E402  (a sibling script)
    NETWORKS,
    nnunet_dataset_json,
    nnunet_plans,
    require_nnunet,
    spacing_arg,
)

AGREEMENT = 0.98
"""Share of brain voxels whose label a peer that tiles the brain's box must give as ours
(grids and normalisation differ a little between the pipelines: boundary voxels flip)."""
AGREEMENT_FULL_FIELD = 0.95
"""The same for MONAI tiling the whole field of view: its windows hold more empty
background than ours, which shifts their instance-norm statistics and so the outputs."""


def bench_checkpoint(path: Path, preset: str, source: str | None, device: torch.device, *,
                     roi: int | None = None, spacing: float | str | None = "preset") -> dict:
    """A Tumorscope checkpoint at ``path``: the weights of ``source`` (default: the preset's
    UNet, seeded), its autocast set to what nnU-Net uses on ``device`` (fp16 on CUDA, none
    on the CPU) so all three pipelines run at the same precision; ``roi`` and ``spacing``
    (mm, None: native) replace its window and grid when given."""
    if source:
        ckpt = load_checkpoint(source)
        state = ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"]
        config = copy.deepcopy(ckpt["config"])
        model_config = ckpt["model_config"]
    else:
        cfg = load_config(preset)
        torch.manual_seed(0)
        net = build_model(cfg.model)
        state, config, model_config = net.state_dict(), cfg.to_dict(), net.config.to_dict()
    config["train"]["amp"] = "fp16" if device.type == "cuda" else "off"
    # The peers' pipelines z-score without a bias correction: ours does the same work.
    config["data"]["bias_correction"] = "off"
    if roi:
        config["data"]["patch_size_vox"] = [roi] * 3
    if spacing != "preset":
        config["data"]["spacing_mm"] = spacing
    payload = {"model": state, "ema": None, "model_config": model_config, "config": config,
               "regions": list(REGIONS)}
    save_checkpoint(path, payload)
    return payload


def monai_pipeline(net: torch.nn.Module, cases: list[Case], out: Path, *, roi: tuple[int, ...],
                   overlap: float, batch: int, spacing_mm: float | None, device: torch.device,
                   amp: torch.dtype | None, crop: bool = False) -> None:
    """MONAI's idiomatic inference: LoadImaged, EnsureChannelFirstd, ConcatItemsd,
    NormalizeIntensityd (non-zero, per channel), Spacingd to the model's grid if it has one,
    sliding_window_inference over the whole volume, Invertd back onto the source grid,
    sigmoid > 0.5 to labels, SaveImage. One process, cases in turn (as ours)."""
    from monai.data import MetaTensor
    from monai.inferers import sliding_window_inference
    from monai.transforms import (
        Compose,
        ConcatItemsd,
        CropForegroundd,
        EnsureChannelFirstd,
        Invertd,
        LoadImaged,
        NormalizeIntensityd,
        SaveImage,
        Spacingd,
    )

    keys = list(MODALITIES)
    steps: list[Any] = [LoadImaged(keys=keys), EnsureChannelFirstd(keys=keys),
                        ConcatItemsd(keys=keys, name="image"),
                        NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True)]
    if crop:
        steps.append(CropForegroundd(keys="image", source_key="image", margin=2))
    if spacing_mm:
        steps.append(Spacingd(keys="image", pixdim=(spacing_mm,) * 3, mode="bilinear"))
    transform = Compose(steps)
    invert = Invertd(keys="pred", transform=transform, orig_keys="image", nearest_interp=False)
    save = SaveImage(output_dir=str(out), output_postfix="seg", output_dtype=np.uint8,
                     separate_folder=False, resample=False, print_log=False)
    for case in cases:
        item = transform({k: str(case.images[k]) for k in keys})
        image = item["image"]
        with torch.no_grad(), torch.autocast(device.type, dtype=amp or torch.float32,
                                             enabled=amp is not None):
            logits = sliding_window_inference(image[None].to(device), roi, batch, net,
                                              overlap=overlap, mode="gaussian")
        logits = MetaTensor(logits[0].float().cpu(), meta=image.meta,
                            applied_operations=image.applied_operations)
        if spacing_mm or crop:  # back onto the source grid: Spacingd, CropForegroundd undone
            item["pred"] = logits
            logits = invert(item)["pred"]
        source = nib.load(str(case.images[keys[0]]))
        wt, tc, et = torch.sigmoid(torch.as_tensor(logits)) > 0.5
        label = torch.zeros(wt.shape, dtype=torch.uint8)
        label[wt], label[tc], label[et] = 2, 1, 4
        save(MetaTensor(label[None], affine=source.affine,
                        meta={"filename_or_obj": case.case_id}))


def nnunet_model_folder(folder: Path, payload: dict) -> Path:
    """An nnU-Net results folder for our weights: plans.json (its network class builds our
    UNet), dataset.json (regions WT, TC, ET) and fold_0/checkpoint_final.pth."""
    from batchgenerators.utilities.file_and_folder_operations import save_json

    model = {k: v for k, v in payload["model_config"].items()
             if k not in ("in_channels", "out_channels", "deep_supervision")}
    data = payload["config"]["data"]
    plans = nnunet_plans(model, data["patch_size_vox"], data.get("spacing_mm"))
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    save_json(plans, str(folder / "plans.json"), sort_keys=False)
    save_json(nnunet_dataset_json(), str(folder / "dataset.json"), sort_keys=False)
    torch.save({"network_weights": payload["model"], "trainer_name": "nnUNetTrainer",
                "init_args": {"configuration": "3d_fullres"},
                "inference_allowed_mirroring_axes": (0, 1, 2)},
               folder / "fold_0" / "checkpoint_final.pth")
    return folder


def nnunet_pipeline(folder: Path, cases: list[Case], out: Path, *, step: float,
                    device: torch.device, workers: int) -> None:
    """nnU-Net's own prediction from files with its model folder: reading, crop to the
    non-zero box, z-score, resampling, sliding window (no mirroring), export. ``workers``
    0: predict_from_files_sequential (one process, as ours); else predict_from_files with
    that many preprocessing and export processes."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=step, use_gaussian=True, use_mirroring=False,
                                perform_everything_on_device=device.type == "cuda",
                                device=device, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=(0,),
                                                   checkpoint_name="checkpoint_final.pth")
    inputs = [[str(c.images[m]) for m in MODALITIES] for c in cases]
    outputs = [str(out / c.case_id) for c in cases]
    out.mkdir(parents=True, exist_ok=True)
    if workers:
        predictor.predict_from_files(inputs, outputs, save_probabilities=False, overwrite=True,
                                     num_processes_preprocessing=workers,
                                     num_processes_segmentation_export=workers)
    else:
        predictor.predict_from_files_sequential(inputs, outputs, save_probabilities=False,
                                                overwrite=True)


def read_label(path: Path, convention: str) -> np.ndarray:
    return to_canonical(np.asarray(nib.load(str(path)).dataobj).astype(np.uint8),
                        convention=convention)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def compare(cases: list[Case], ours: Callable[[Case], Path],
            peers: dict[str, tuple[Callable[[Case], Path], float]], *, judge: bool
            ) -> tuple[bool, list[str]]:
    """Print, per peer, the share of brain voxels labelled as ours and the Dice per region
    against ours and against the truth. Every output must be a label map of BraTS values on
    its source grid (shape and affine); with ``judge`` every peer must also agree with ours
    to its share of brain voxels. Returns (passed, the faults)."""
    faults: list[str] = []
    for name, (where, share) in peers.items():
        agree, d_ours, d_truth, d_truth_ours = [], [], [], []
        for case in cases:
            source = nib.load(str(case.images[MODALITIES[0]]))
            for who, path in (("ours", ours(case)), (name, where(case))):
                out = nib.load(str(path))
                values = set(np.unique(np.asarray(out.dataobj)).tolist())
                if out.shape != source.shape or not np.allclose(out.affine, source.affine,
                                                                atol=1e-3):
                    faults.append(f"{who} {case.case_id}: grid {out.shape} is not the source's")
                if not values <= {0, 1, 2, 3, 4}:
                    faults.append(f"{who} {case.case_id}: label values {sorted(values)}")
            mine = read_label(ours(case), case.label_convention)
            theirs = read_label(where(case), "brats2020")  # peers write canonical values
            brain = np.zeros(mine.shape, bool)
            for m in MODALITIES:
                brain |= np.asarray(nib.load(str(case.images[m])).dataobj) != 0
            agree.append(float((mine == theirs)[brain].mean()))
            r_mine, r_theirs = labels_to_regions(mine), labels_to_regions(theirs)
            d_ours.append([dice(a, b) for a, b in zip(r_mine, r_theirs, strict=True)])
            if case.label is not None:
                truth = labels_to_regions(read_label(case.label, case.label_convention))
                d_truth.append([dice(a, b) for a, b in zip(r_theirs, truth, strict=True)])
                d_truth_ours.append([dice(a, b) for a, b in zip(r_mine, truth, strict=True)])
        mean = np.mean(d_ours, axis=0)
        line = (f"agreement {name} vs ours: {min(agree) * 100:.2f}% of brain voxels labelled "
                f"alike (worst case); Dice with ours " + ", ".join(
                    f"{r} {v:.4f}" for r, v in zip(REGIONS, mean, strict=True)))
        if d_truth:
            t, o = np.mean(d_truth, axis=0), np.mean(d_truth_ours, axis=0)
            line += "; Dice with the truth " + ", ".join(
                f"{r} {a:.3f} (ours {b:.3f})" for r, a, b in zip(REGIONS, t, o, strict=True))
        print(line)
        if judge and min(agree) < share:
            faults.append(f"{name} labels {min(agree) * 100:.2f}% of brain voxels as ours")
    return not faults, faults


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--network", choices=list(NETWORKS), default="tiny",
                        help="tiny: the tiny-cpu preset's network, window and grid; default: "
                             "the default preset's (GPU sized)")
    parser.add_argument("--checkpoint", default=None,
                        help="a trained checkpoint (default: the preset's UNet, seeded)")
    parser.add_argument("--data", type=Path, default=None,
                        help="a cohort folder (default: --cases demo cases made here)")
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (all)")
    parser.add_argument("--peers", nargs="+", choices=["monai", "nnunet"],
                        default=["monai", "nnunet"])
    parser.add_argument("--nnunet-workers", type=int, default=0,
                        help="0: nnU-Net's predict_from_files_sequential (one process, as "
                             "ours); N: predict_from_files with N background processes")
    parser.add_argument("--roi", type=int, default=None, help="window (default: the model's)")
    parser.add_argument("--spacing", type=spacing_arg, default="preset",
                        help="grid in mm, 'native' or 'preset' (default: the model's)")
    parser.add_argument("--monai-crop", action="store_true",
                        help="MONAI also crops to the non-zero box (CropForegroundd), as ours "
                             "crops to the brain (default: whole field of view, its idiom)")
    args = parser.parse_args(argv)
    require_nnunet()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory(prefix="tumorscope-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data = args.data
        if data is None:
            data = tmp / "demo"
            make_demo_cohort(data, n_cases=args.cases, seed=0, progress=False)
        cases = discover(data)[: args.cases]
        ckpt_path = tmp / "model.pt"
        payload = bench_checkpoint(ckpt_path, NETWORKS[args.network], args.checkpoint, device,
                                   roi=args.roi, spacing=args.spacing)
        cfg = payload["config"]
        roi = tuple(cfg["data"]["patch_size_vox"])
        overlap, batch = cfg["train"]["overlap"], cfg["train"]["sw_batch_size"]
        spacing = cfg["data"].get("spacing_mm")
        amp = autocast_dtype(cfg["train"]["amp"], device)
        net = build_model(payload["model_config"])
        net.load_state_dict(payload["model"])
        net = net.to(device).eval()
        folder = nnunet_model_folder(tmp / "nnunet_model", payload)

        def ours(r: int) -> None:
            predict_run(ckpt_path, data, tmp / f"ours{r}", cache_dir=tmp / f"cache{r}",
                        overlap=overlap, device=str(device), progress=False,
                        case_ids=[c.case_id for c in cases], postprocess="off")

        runs: dict[str, Callable[[int], None]] = {"ours": ours}
        if "monai" in args.peers:
            runs["monai"] = lambda r: monai_pipeline(
                net, cases, tmp / f"monai{r}", roi=roi, overlap=overlap, batch=batch,
                spacing_mm=spacing, device=device, amp=amp, crop=args.monai_crop)
        if "nnunet" in args.peers:
            runs["nnunet"] = lambda r: nnunet_pipeline(
                folder, cases, tmp / f"nnunet{r}", step=1 - overlap, device=device,
                workers=args.nnunet_workers)

        print(f"{len(cases)} case(s) of {data if args.data else 'the demo cohort'}; "
              f"{args.network} network {list(payload['model_config']['features'])} "
              f"({'given checkpoint' if args.checkpoint else 'seeded, untrained'}), device "
              f"{device}, {torch.get_num_threads()} torch thread(s)")
        print(f"equal work: same files, same weights, window {roi}, overlap {overlap} "
              f"(nnU-Net step {1 - overlap:g}), {batch} window(s) per batch (nnU-Net: 1), "
              f"Gaussian, no mirroring, {'fp16 autocast' if amp else 'fp32'}, grid "
              f"{spacing or 'native'} mm, no post-processing; each run reads the NIfTI files, "
              f"preprocesses (no cache kept between runs) and writes a label NIfTI per case; "
              f"ours and nnU-Net tile the brain's box, MONAI "
              + ("its non-zero box (CropForegroundd); " if args.monai_crop else
                 "the whole field of view (its idiom); ")
              + "nnU-Net "
              + (f"predict_from_files with {args.nnunet_workers} worker process(es)"
                 if args.nnunet_workers else "predict_from_files_sequential (one process)"))
        names = list(runs)
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.repeats):  # each tool in turn, the order rotated each repeat
            for name in names[r % len(names):] + names[:r % len(names)]:
                t0 = time.perf_counter()
                runs[name](r)
                times[name].append(time.perf_counter() - t0)
        for name, label in (("monai", "MONAI LoadImaged..SaveImage"),
                            ("nnunet", "nnU-Net from files")):
            if name in times:
                ratios = [p / o for p, o in zip(times[name], times["ours"], strict=True)]
                print(f"ratio cases per minute ours / {label}: {statistics.median(ratios):.2f}x "
                      f"(median of {len(ratios)} interleaved repeat(s), min {min(ratios):.2f}x, "
                      f"max {max(ratios):.2f}x; >1: ours faster)")
        last = args.repeats - 1
        peers: dict[str, tuple[Callable[[Case], Path], float]] = {}
        if "monai" in runs:
            peers["MONAI"] = (lambda c: tmp / f"monai{last}" / f"{c.case_id}_seg.nii.gz",
                              AGREEMENT if args.monai_crop else AGREEMENT_FULL_FIELD)
        if "nnunet" in runs:
            peers["nnU-Net"] = (lambda c: tmp / f"nnunet{last}" / f"{c.case_id}.nii.gz",
                                AGREEMENT)
        from tumorscope.core.store import Run

        run = Run(tmp / f"ours{last}")
        trained = bool(args.checkpoint)
        ok, faults = compare(cases, lambda c: run.prediction_path(c.case_id), peers,
                             judge=trained)
        full = "monai" in runs and not args.monai_crop
        rule = (", ".join(f"{n} labels >= {v * 100:g}% of brain voxels as ours"
                          for n, (_, v) in peers.items())
                + (" (MONAI's windows over the whole field hold more empty background, "
                   "which moves their instance-norm statistics)" if full else "") if trained
                else "label agreement not judged: an untrained network's outputs hinge on "
                     "each window's instance-norm statistics, so pipelines that tile "
                     "differently disagree; give --checkpoint")
        print(f"agreement check: {'PASS' if ok else 'FAIL'} (every output a BraTS label map "
              f"on its source grid; {rule})" + "".join(f"; {f}" for f in faults))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
