"""Our sliding-window inference vs MONAI's ``sliding_window_inference``, same net and settings.

Both use the same tiny UNet, window, overlap and Gaussian weighting on the same demo case.
MONAI runs over the full 240x240x155 volume (as a pipeline without cropping would); ours
over the cached brain crop with batched windows. Prints the time ratio and checks the
outputs agree inside the crop.

Usage: python benchmarks/bench_infer.py [--roi 64] [--overlap 0.5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from tumorscope.core.data.cases import discover, load_case
from tumorscope.core.data.preprocess import preprocess_case
from tumorscope.core.data.synthetic import make_demo_cohort
from tumorscope.core.data.volumes import brain_mask, uncrop, zscore
from tumorscope.core.models import build_model
from tumorscope.core.prediction.sliding_window import sliding_window_logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--roi", type=int, default=64)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=4, help="windows per batch (both tools)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--checkpoint", default=None,
                        help="a trained checkpoint (default: a randomly initialised UNet)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tumorscope-bench-"))
    make_demo_cohort(tmp / "demo", n_cases=1, seed=0, progress=False)
    case = discover(tmp / "demo")[0]
    cached = preprocess_case(case, tmp / "cache")
    # MONAI gets the same normalisation on the full grid, zero outside the brain.
    full = load_case(case).image
    full_norm, _, _ = zscore(full, brain_mask(full))
    if args.checkpoint:
        from tumorscope.core.training.train import load_checkpoint, model_from_checkpoint

        net = model_from_checkpoint(load_checkpoint(args.checkpoint))
    else:
        torch.manual_seed(0)
        net = build_model({"features": [8, 16, 32, 64]}).eval()
    roi = (args.roi,) * 3

    def ours() -> torch.Tensor:
        return sliding_window_logits(net, torch.from_numpy(np.array(cached.image)),
                                     roi_size_vox=roi, overlap=args.overlap,
                                     batch_windows=args.batch)

    def monai() -> torch.Tensor:
        with torch.no_grad():
            return sliding_window_inference(torch.from_numpy(full_norm)[None], roi, args.batch,
                                            net, overlap=args.overlap, mode="gaussian")[0]

    def monai_crop() -> torch.Tensor:
        with torch.no_grad():
            return sliding_window_inference(torch.from_numpy(np.array(cached.image))[None], roi,
                                            args.batch, net, overlap=args.overlap,
                                            mode="gaussian")[0]

    def best(fn):
        times, out = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return min(times), out

    t_ours, out_ours = best(ours)
    t_monai, out_monai = best(monai)
    t_monai_crop, out_monai_crop = best(monai_crop)
    same_input_diff = float((out_ours - out_monai_crop).abs().max())
    ours_full = uncrop(out_ours.numpy(), cached.box)
    mask = brain_mask(full)
    # On the full grid the windows sit elsewhere, so compare the decisions in the brain.
    agree = ((ours_full > 0) == (out_monai.numpy() > 0))[:, mask].mean()
    print(f"case {case.case_id}: full grid {full.shape[1:]}, brain crop {cached.box.shape}, "
          f"window {roi}, overlap {args.overlap}, {torch.get_num_threads()} threads")
    print(f"monai sliding_window_inference, full volume: {t_monai:7.2f} s")
    print(f"monai sliding_window_inference, brain crop : {t_monai_crop:7.2f} s")
    print(f"tumorscope sliding_window_logits, crop     : {t_ours:7.2f} s")
    print(f"speed-up monai(full)/ours: {t_monai / t_ours:.2f}x   "
          f"monai(crop)/ours: {t_monai_crop / t_ours:.2f}x")
    print(f"same input (crop): max |logit difference| {same_input_diff:.2e}")
    print(f"full vs crop: voxel decisions agreeing inside the brain {agree * 100:.2f}%")


if __name__ == "__main__":
    main()
