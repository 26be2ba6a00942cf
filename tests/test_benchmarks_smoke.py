"""The benchmarks run at their smallest size: the peer ones (nnU-Net v2, MONAI) print ratios,
the app's at scale prints every step."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from builders import write_case

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
NO_NNUNET = importlib.util.find_spec("nnunetv2") is None
needs_nnunet = pytest.mark.skipif(
    NO_NNUNET, reason="nnunetv2 is not installed (the bench extra: see the README's Benchmarks)")


def load(name: str):
    """A benchmark script as a module (its folder on sys.path: the scripts import each other
    and nnU-Net's plans name bench_nnunet.nnunet_network)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    root = tmp_path / "cohort"
    for i in range(2):
        write_case(root, f"BraTS2021_{i:05d}", shape=(40, 44, 36), seed=i)
    return root


@needs_nnunet
def test_bench_nnunet_smallest(cohort: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = load("bench_nnunet").main(["--data", str(cohort), "--spacing", "native", "--roi",
                                      "16", "--mirror-axes", "0", "--repeats", "1", "--device",
                                      "cpu"])
    out = capsys.readouterr().out
    assert "ratio nnU-Net predict_sliding_window_return_logits / ours:" in out
    assert "ratio MONAI sliding_window_inference / ours:" in out
    assert "equal work:" in out
    assert "agreement check: PASS" in out, out
    assert code == 0


@needs_nnunet
def test_bench_cohort_smallest(cohort: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = load("bench_cohort").main(["--data", str(cohort), "--cases", "2", "--spacing",
                                      "native", "--roi", "16", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "ratio cases per minute ours / MONAI LoadImaged..SaveImage:" in out
    assert "ratio cases per minute ours / nnU-Net from files:" in out
    assert "agreement check: PASS" in out, out
    assert code == 0


@needs_nnunet
def test_bench_train_peer_smallest(capsys: pytest.CaptureFixture[str]) -> None:
    code = load("bench_train_peer").main(["--patch", "16", "--batch", "1", "--steps", "1",
                                          "--repeats", "2", "--amp", "off", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "ratio nnU-Net PlainConvUNet / ours, one training step:" in out
    assert "configuration check: PASS" in out, out
    assert code == 0


def test_bench_train_compares_layouts_at_each_precision(
        capsys: pytest.CaptureFixture[str]) -> None:
    load("bench_train").main(["--features", "4", "8", "--patch", "16", "--batch", "1",
                              "--steps", "1", "--no-compile"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "ratio to fp32 eager" in line]
    # fp32 and bf16, each eager and channels-last; the first row is the reference itself
    assert len(rows) == 4, out
    assert rows[0].split()[:2] == ["fp32", "eager:"] and rows[0].endswith("1.00x")
    assert sum("channels_last_3d" in r for r in rows) == 2


APP_SCALE_STEPS = (
    "overview, first run in this process (imports)", "overview, first paint (caches cleared)",
    "overview, rerun", "patients table, sort by another column",
    "patients table, filter by id text", "patients table, filter by grade",
    "open patient: first 3-D view, cold mesh cache",
    "open patient: first 3-D view, warm mesh cache",
    "switch patient in the 3-D view (meshes in memory)", "slices page, first load",
    "slice change (axial slider, whole-script rerun)")


def test_bench_app_scale_smallest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """30 patients (3 real, 27 synthetic), AppTest only: every step measured and printed with
    its goal; no time is asserted (this machine is not the one the goals are for)."""
    code = load("bench_app_scale").main(["--patients", "30", "--repeats", "1",
                                         "--slice-steps", "2", "--out", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert "(30 patients, 3 real, every score current" in out, out
    assert "AppTest (in-process), 30 patients" in out
    lines = {line.split("  ")[0].strip(): line for line in out.splitlines()}
    for step in APP_SCALE_STEPS:
        assert step in lines, f"{step!r} not printed:\n{out}"
    assert "p95 < 100 ms" in lines["slice change (axial slider, whole-script rerun)"]
    assert "median < 2000 ms" in lines["open patient: first 3-D view, warm mesh cache"]
    assert code == 0


def test_bench_bias_smallest(capsys: pytest.CaptureFixture[str]) -> None:
    """Ours and N4 both remove most of a known coil field from a demo case (N4 at its
    cheapest), and the time ratio is printed."""
    import re

    assert load("bench_bias").main(["--shrink", "8", "--n4-iterations", "5"]) == 0
    out = capsys.readouterr().out
    ours = float(re.search(r"white_matter: residual ([\d.]+)", out).group(1))
    n4 = float(re.search(r"N4 .*: residual ([\d.]+)", out).group(1))
    assert ours < 0.5 and n4 < 1.0, out
    assert re.search(r"time: N4 / ours = [\d.]+x", out), out


def test_bench_memory_smallest(capsys: pytest.CaptureFixture[str]) -> None:
    """The tiny network's prediction of a BraTS-size case in a child process: its peak
    resident memory is measured (a real number, well under the CPU goal)."""
    import re

    assert load("bench_memory").main(["--network", "tiny", "--amp", "bf16"]) == 0
    out = capsys.readouterr().out
    assert "2 window(s) at once, autocast bf16" in out, out
    peak = float(re.search(r"peak resident memory: ([\d.]+) GB", out).group(1))
    assert 0.2 < peak < 2.0, out
