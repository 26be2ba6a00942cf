"""Peak memory of `tumorscope predict` on one BraTS-size case (240x240x155), in a child process.

Usage: python benchmarks/bench_memory.py [--network default|tiny] [--data DIR] [--mirror]
       [--device cpu|cuda]

The network is the preset's UNet, seeded (bench_cohort.bench_checkpoint), at the preset's
window and grid; the case is the first of --data (default: one demo case made here). The
child's peak resident memory (VmHWM) is printed against issue 17's goal (< 2 GB on the
CPU), and on CUDA torch's peak allocated device memory (goal < 8 GB at the default preset
with mirroring). Memory, not time: nothing here depends on the machine's speed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cohort import bench_checkpoint  # noqa: E402

NETWORKS = {"tiny": "tiny-cpu", "default": "default"}
GOAL_GB = {"cpu": 2.0, "cuda": 8.0}

_CHILD = """
import json, sys, torch
from tumorscope.core.prediction.predict import predict_run
ckpt, data, out, mirror, device = sys.argv[1:6]
if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
predict_run(ckpt, data, out, mirror=mirror, device=device, progress=False)
peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
# VmHWM, this process's largest resident set: ru_maxrss would carry the parent's over
# fork and exec (a 2.5 GB test runner made a 0.5 GB child read 2.5 GB).
status = open("/proc/self/status").read().split("VmHWM:")[1]
rss = int(status.split()[0]) * 1024
print(json.dumps({"cuda_peak_bytes": peak, "peak_rss_bytes": rss}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--network", choices=list(NETWORKS), default="default")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--mirror", action="store_true")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--sw-batch-size", type=int, default=None,
                        help="windows inferred at once (default: the preset's)")
    parser.add_argument("--amp", choices=["off", "bf16", "fp16"], default=None,
                        help="autocast of the inference (default: off on the CPU, fp16 on "
                             "CUDA, as the peers of bench_cohort run)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tumorscope-bench-") as tmp:
        tmp = Path(tmp)
        data = tmp / "one"
        if args.data is None:
            from tumorscope.core.data.synthetic import make_demo_cohort

            make_demo_cohort(data, n_cases=1, seed=0, progress=False)
        else:
            from tumorscope.core.data.cases import discover

            case = discover(args.data)[0]
            (data / case.case_id).mkdir(parents=True)
            for path in case.files:
                (data / case.case_id / path.name).symlink_to(path.resolve())
        ckpt = tmp / "bench.pt"
        payload = bench_checkpoint(ckpt, NETWORKS[args.network], None,
                                   torch.device(args.device))
        if args.sw_batch_size or args.amp:
            from tumorscope.core.models.checkpoints import save_checkpoint

            train_cfg = payload["config"]["train"]
            train_cfg["sw_batch_size"] = args.sw_batch_size or train_cfg["sw_batch_size"]
            train_cfg["amp"] = args.amp or train_cfg["amp"]
            save_checkpoint(ckpt, payload)
        amp = payload["config"]["train"]["amp"]
        from tumorscope.core.prediction.sliding_window import windows_per_batch

        sw_batch = windows_per_batch(payload["config"]["train"]["sw_batch_size"],
                                     payload["config"]["data"]["patch_size_vox"],
                                     torch.device(args.device))
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(ckpt), str(data), str(tmp / "out"),
             "on" if args.mirror else "off", args.device],
            capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        child = json.loads(done.stdout.strip().splitlines()[-1])
    # Measured in the child itself: RUSAGE_CHILDREN would be the largest of every child
    # this process ever waited for.
    peak_gb = child["peak_rss_bytes"] / 1e9
    print(f"{NETWORKS[args.network]} network, mirroring {'on' if args.mirror else 'off'}, "
          f"{sw_batch} window(s) at once, autocast {amp}, one 240x240x155 case on {args.device}")
    print(f"peak resident memory: {peak_gb:.2f} GB (goal on the CPU < {GOAL_GB['cpu']:g} GB: "
          f"{'met' if peak_gb < GOAL_GB['cpu'] else 'not met'})")
    if args.device == "cuda":
        gpu_gb = child["cuda_peak_bytes"] / 1e9
        print(f"peak CUDA memory allocated: {gpu_gb:.2f} GB (goal < {GOAL_GB['cuda']:g} GB: "
              f"{'met' if gpu_gb < GOAL_GB['cuda'] else 'not met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
