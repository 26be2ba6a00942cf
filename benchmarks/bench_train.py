"""Training throughput (voxels/s) in fp32 vs autocast, on the device at hand.

Runs a few optimiser steps of the same UNet on random patches in fp32 and under autocast
(bf16; fp16 too on CUDA) and prints voxels/s and the ratio to fp32. On CUDA it also prints
peak GPU memory and uses channels_last_3d and cudnn.benchmark as training does.

Usage: python benchmarks/bench_train.py [--features 8 16 32 64] [--patch 48] [--batch 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from tumorscope.core.models import build_model
from tumorscope.core.models.losses import make_loss


def step_rate(features, patch: int, batch: int, steps: int, device: torch.device,
              dtype: torch.dtype | None) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_model({"features": list(features)}).to(device)
    x = torch.randn(batch, 4, patch, patch, patch, device=device)
    y = (torch.rand(batch, 3, patch, patch, patch, device=device) > 0.7).float()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = make_loss("dice_bce")
    t0 = 0.0
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    return batch * patch**3 * steps / dt, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    modes = {"fp32": None, "bf16 autocast": torch.bfloat16}
    if device.type == "cuda":
        modes["fp16 autocast"] = torch.float16
    print(f"device {device}, UNet {args.features}, patch {args.patch}^3, batch {args.batch}, "
          f"{torch.get_num_threads()} CPU threads")
    base = None
    for name, dtype in modes.items():
        rate, peak = step_rate(args.features, args.patch, args.batch, args.steps, device, dtype)
        base = base or rate
        mem = f", peak GPU memory {peak:.2f} GiB" if device.type == "cuda" else ""
        print(f"{name:>14}: {rate / 1e6:8.3f} Mvoxels/s  ratio to fp32 {rate / base:5.2f}x{mem}")


if __name__ == "__main__":
    main()
