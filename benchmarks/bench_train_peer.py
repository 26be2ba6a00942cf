"""One training step of our UNet against nnU-Net's PlainConvUNet of the same configuration."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tumorscope.core.config import load_config
from tumorscope.core.models import build_model
from tumorscope.core.models.checkpoints import autocast_dtype
from tumorscope.core.models.losses import build_loss
from tumorscope.core.training.train import make_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nnunet import NETWORKS, ratio_line, require_nnunet  # noqa: E402  (a sibling script)

AMP = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def plain_conv_unet(model: dict[str, Any]) -> nn.Module:
    """nnU-Net's PlainConvUNet as its plans build it, in our network's configuration: the
    same widths, two 3x3x3 convs per stage (encoder and decoder), instance norm (affine,
    eps 1e-5), leaky ReLU 0.01, 2x2x2 transposed convs, deep supervision; no conv bias (a
    norm follows, as in ours). It halves with stride-2 convs where ours max-pools."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    feats = list(model["features"])
    n = len(feats)
    net = PlainConvUNet(
        input_channels=model.get("in_channels", 4), n_stages=n, features_per_stage=feats,
        conv_op=nn.Conv3d, kernel_sizes=[[3, 3, 3]] * n,
        strides=[[1, 1, 1]] + [[2, 2, 2]] * (n - 1), n_conv_per_stage=[2] * n,
        num_classes=model.get("out_channels", 3), n_conv_per_stage_decoder=[2] * (n - 1),
        conv_bias=False, norm_op=nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True}, deep_supervision=True)
    net.apply(net.initialize)
    return net


def trainer(net: nn.Module, cfg: Any, x: torch.Tensor, y: torch.Tensor,
            amp: torch.dtype | None, steps: int, device: torch.device) -> Callable[[], float]:
    """``steps`` optimiser steps (forward, our deep-supervised loss, backward, step) of
    ``net``; the returned function runs them and gives the last loss."""
    loss_fn = build_loss(cfg.loss, {**cfg.model, "deep_supervision": True})
    opt = make_optimizer(cfg, net.parameters())
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None

    def run() -> float:
        loss = torch.zeros(())
        for _ in range(steps):
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                loss = loss_fn(net(x), y)
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return float(loss.detach())

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--network", choices=list(NETWORKS), default="tiny",
                        help="tiny: the tiny-cpu preset's network, patch and batch (a reduced "
                             "size for CPUs); default: the default preset's (GPU sized)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--patch", type=int, default=None, help="default: the preset's")
    parser.add_argument("--batch", type=int, default=None, help="default: the preset's")
    parser.add_argument("--amp", choices=["preset", *AMP], default="preset",
                        help="autocast of both (preset: its train.amp on this device)")
    parser.add_argument("--steps", type=int, default=3, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (both)")
    args = parser.parse_args(argv)
    require_nnunet()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_config(NETWORKS[args.network])
    model = {**cfg.model, "deep_supervision": True}
    patch = (args.patch,) * 3 if args.patch else tuple(cfg.data.patch_size_vox)
    batch = args.batch or cfg.data.batch_size
    amp = autocast_dtype(cfg.train.amp, device) if args.amp == "preset" else AMP[args.amp]
    torch.manual_seed(0)
    ours = build_model(model).to(device).train()
    peer = plain_conv_unet(ours.config.to_dict()).to(device).train()
    x = torch.randn(batch, 4, *patch, device=device)
    y = (torch.rand(batch, 3, *patch, device=device) > 0.7).float()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if cfg.train.channels_last:
            ours, peer = (n.to(memory_format=torch.channels_last_3d) for n in (ours, peer))
            x = x.contiguous(memory_format=torch.channels_last_3d)

    with torch.no_grad():
        shapes_ours = [tuple(o.shape) for o in ours(x)]
        shapes_peer = [tuple(o.shape) for o in peer(x)]
    n_ours = sum(p.numel() for p in ours.parameters())
    n_peer = sum(p.numel() for p in peer.parameters())
    precision = "fp32" if amp is None else str(amp).replace("torch.", "") + " autocast"
    print(f"{args.network} network {list(model['features'])}, patch {patch}, batch {batch}, "
          f"device {device}, {precision}"
          f", {torch.get_num_threads()} torch thread(s)"
          + ("; a reduced size (the default preset's network, patch and batch: --network "
             "default on a GPU)" if args.network == "tiny" or args.patch or args.batch else ""))
    print(f"equal work: same input and target, same loss ({cfg.loss.name}, deep supervision "
          f"over {len(shapes_ours)} outputs weighted 1, 1/2, ...), same optimiser "
          f"({cfg.optim.name}, lr {cfg.optim.lr:g}), {args.steps} step(s) per timed block; "
          f"parameters ours {n_ours:,}, nnU-Net {n_peer:,} (ours: max-pool and biased "
          f"transposed convs; nnU-Net: stride-2 convs, bias-free transposed convs)")
    run_ours = trainer(ours, cfg, x, y, amp, args.steps, device)
    run_peer = trainer(peer, cfg, x, y, amp, args.steps, device)
    run_ours(), run_peer()  # warm-up: allocator, cudnn autotuning
    names = ["ours", "nnunet"]
    runs = {"ours": run_ours, "nnunet": run_peer}
    times: dict[str, list[float]] = {n: [] for n in names}
    losses: dict[str, float] = {}
    for r in range(args.repeats):
        for name in names[r % 2:] + names[:r % 2]:
            t0 = time.perf_counter()
            losses[name] = runs[name]()
            times[name].append(time.perf_counter() - t0)
    print(ratio_line("nnU-Net PlainConvUNet / ours, one training step", times["nnunet"],
                     times["ours"]))
    ok = (shapes_ours == shapes_peer and abs(n_ours - n_peer) <= 0.01 * n_peer
          and all(math.isfinite(v) for v in losses.values()))
    print(f"configuration check: {'PASS' if ok else 'FAIL'} (output shapes "
          f"{'equal' if shapes_ours == shapes_peer else f'{shapes_ours} vs {shapes_peer}'}: "
          f"{shapes_ours}; parameters within {abs(n_ours - n_peer) / n_peer * 100:.2f}%; "
          f"last losses ours {losses['ours']:.4f}, nnU-Net {losses['nnunet']:.4f})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
