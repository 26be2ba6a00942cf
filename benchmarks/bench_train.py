"""Training (or inference) throughput in voxels/s: precision, memory layout and torch.compile.

Runs a few optimiser steps (``--inference``: no-grad forward passes) of the same UNet on
random patches for each precision (fp32, bf16 autocast; fp16 too on CUDA) and each of three
ways to run the network: eager with contiguous tensors, eager in ``channels_last_3d``, and
``torch.compile`` (inductor). Prints voxels/s and the ratio to fp32 eager, measured in the
same run: ``train.channels_last`` and ``train.compile`` are kept on only where they win.
On CUDA it also prints peak GPU memory and sets cudnn.benchmark as training does.

Usage: python benchmarks/bench_train.py [--features 8 16 32 64] [--patch 48] [--batch 2]
       [--inference] [--no-compile]
"""

from __future__ import annotations

import argparse
import time

import torch

from tumorscope.core.models import build_model
from tumorscope.core.models.losses import make_loss

WAYS = ("eager", "channels_last_3d", "torch.compile")
"""How the network runs: contiguous tensors, channels-last tensors, inductor-compiled."""


def step_rate(features, patch: int, batch: int, steps: int, device: torch.device,
              dtype: torch.dtype | None, way: str = "eager", *,
              inference: bool = False) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_model({"features": list(features)}).to(device)
    x = torch.randn(batch, 4, patch, patch, patch, device=device)
    y = (torch.rand(batch, 3, patch, patch, patch, device=device) > 0.7).float()
    if way == "channels_last_3d":
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    net = torch.compile(model) if way == "torch.compile" else model
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = make_loss("dice_bce")
    if inference:
        model.eval()
    t0 = 0.0
    for i in range(steps + 2):  # two warm-up steps (the compiled network compiles in them)
        if i == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            if inference:
                with torch.no_grad():
                    net(x)
                continue
            loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    return batch * patch**3 * steps / dt, peak


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--inference", action="store_true",
                        help="time no-grad forward passes instead of training steps")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="leave torch.compile out (its first steps compile for minutes)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    modes = {"fp32": None, "bf16 autocast": torch.bfloat16}
    if device.type == "cuda":
        modes["fp16 autocast"] = torch.float16
    ways = WAYS if args.compile else WAYS[:2]
    print(f"device {device}, UNet {args.features}, patch {args.patch}^3, batch {args.batch}, "
          f"{torch.get_num_threads()} CPU threads, "
          f"{'inference (no-grad forward)' if args.inference else 'training steps'}")
    base = None
    for name, dtype in modes.items():
        for way in ways:
            rate, peak = step_rate(args.features, args.patch, args.batch, args.steps, device,
                                   dtype, way, inference=args.inference)
            base = base or rate
            mem = f", peak GPU memory {peak:.2f} GiB" if device.type == "cuda" else ""
            print(f"{name:>14} {way:>16}: {rate / 1e6:8.3f} Mvoxels/s  ratio to fp32 eager "
                  f"{rate / base:5.2f}x{mem}")


if __name__ == "__main__":
    main()
