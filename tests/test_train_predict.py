"""Training, resume after a kill, DDP with gloo, and prediction back onto the source grid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from builders import write_case

from tumorscope.app.cli import main
from tumorscope.core.config import load_config
from tumorscope.core.errors import TumorscopeError
from tumorscope.core.store import Run
from tumorscope.core.training.train import load_checkpoint, train

SHAPE = (36, 36, 28)
TINY = [
    "model.features=[4, 8, 16]", "data.patch_size_vox=16", "data.spacing_mm=null",
    "data.batch_size=2", "train.steps_per_epoch=4", "train.val_every_epochs=1",
    "train.threads=1", "optim.lr=0.01",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    for i in range(4):
        write_case(root, f"BraTS2021_{i:05d}", shape=SHAPE, seed=i)
    return root


def _cfg(data: Path, cache: Path, *extra: str):
    return load_config("tiny-cpu", overrides=[*TINY, f"data.root={data}",
                                              f"data.cache_dir={cache}", *extra])


def test_loss_decreases_and_run_is_written(data: Path, tmp_path: Path) -> None:
    cfg = _cfg(data, tmp_path / "cache", "train.epochs=6", "augment.rotate_scale=0")
    run = train(cfg, tmp_path / "run", progress=False)
    log = run.log_rows()
    assert [r["epoch"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert log[-1]["loss"] < log[0]["loss"]
    assert {"dice_WT", "dice_TC", "dice_ET", "lr", "voxels_per_s"} <= set(log[0])
    assert run.checkpoint_path("best").is_file() and run.checkpoint_path("last").is_file()
    ckpt = load_checkpoint(run.checkpoint_path("last"))
    assert ckpt["step"] == 24 and ckpt["model_config"]["features"] == [4, 8, 16]
    assert run.config()["model"]["features"] == [4, 8, 16]


def test_existing_run_needs_resume(data: Path, tmp_path: Path) -> None:
    cfg = _cfg(data, tmp_path / "cache", "train.epochs=1")
    train(cfg, tmp_path / "run", progress=False)
    with pytest.raises(TumorscopeError, match="--resume"):
        train(cfg, tmp_path / "run", progress=False)
    with pytest.raises(TumorscopeError, match="cannot resume"):
        train(cfg, tmp_path / "other", resume=True, progress=False)


def _train_cli(data: Path, cache: Path, out: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "tumorscope.app.cli", "train", "--config", "tiny-cpu",
            "--out", str(out), "-q"]
    for item in [*TINY, f"data.root={data}", f"data.cache_dir={cache}", "train.epochs=6",
                 "train.val_every_epochs=3", *extra]:
        args += ["--set", item]
    return args


def test_resume_after_kill_matches_uninterrupted_run(data: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    whole = subprocess.run(_train_cli(data, cache, tmp_path / "whole"), capture_output=True,
                           text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cli(data, cache, killed), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = killed / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step_at_kill = load_checkpoint(last)["step"]
    assert step_at_kill < 24, "the run finished before it could be killed"
    resumed = subprocess.run([*_train_cli(data, cache, killed), "--resume"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    b = load_checkpoint(last)
    assert a["step"] == b["step"] == 24
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=1e-6)
    assert [r["epoch"] for r in Run(killed).log_rows()][-1] == 6


def test_ddp_two_processes_gloo_keep_weights_identical(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *_train_cli(data, tmp_path / "cache", out, "train.epochs=2",
                       "train.val_every_epochs=2", "train.device=cpu")[1:]]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    check = json.loads((out / "ddp_check.json").read_text())
    assert check["world_size"] == 2
    assert check["max_abs_weight_diff"] == 0.0
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 8


def test_predict_with_and_without_labels_maps_back_to_source_grid(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _cfg(data, tmp_path / "cache", "train.epochs=2")
    run = train(cfg, tmp_path / "run", progress=False)
    ckpt = str(run.checkpoint_path("best"))
    # A 2023-layout case without labels, with a shifted affine, gets its own grid back.
    unlabeled = tmp_path / "unlabeled"
    folder = write_case(unlabeled, "BraTS-GLI-00007-000", layout="brats2023", shape=SHAPE,
                        with_label=False)
    for path in folder.iterdir():
        img = nib.load(path)
        affine = img.affine.copy()
        affine[:3, 3] += [3.0, -2.0, 5.0]
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine, img.header), path)
    code = main(["predict", "--checkpoint", ckpt, "--input", str(unlabeled), "--out",
                 str(tmp_path / "pred2"), "--cache", str(tmp_path / "cache"), "-q"])
    assert code == 0
    out = capsys.readouterr().out
    assert "1 prediction(s)" in out and "mean Dice" not in out
    pred = nib.load(tmp_path / "pred2" / "predictions" / "BraTS-GLI-00007-000.nii.gz")
    src = nib.load(folder / "BraTS-GLI-00007-000-t1n.nii.gz")
    assert pred.shape == src.shape
    np.testing.assert_allclose(pred.affine, src.affine)
    assert set(np.unique(np.asarray(pred.dataobj)).tolist()) <= {0, 1, 2, 3}
    assert not (tmp_path / "pred2" / "metrics.csv").exists()

    # Labelled cases: predicted, scored, and finished ones skipped on a second call.
    args = ["predict", "--checkpoint", ckpt, "--input", str(data), "--out",
            str(tmp_path / "pred"), "--cache", str(tmp_path / "cache"), "-q",
            "--save-probabilities"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "4 prediction(s)" in out and "mean Dice" in out
    pred_run = Run(tmp_path / "pred")
    rows = pred_run.metrics_rows()
    assert len(rows) == 12 and {r["region"] for r in rows} == {"WT", "TC", "ET"}
    prob = nib.load(pred_run.probabilities_path("BraTS2021_00000"))
    assert prob.shape == (*SHAPE, 3)
    first = pred_run.prediction_path("BraTS2021_00000")
    mtime = first.stat().st_mtime_ns
    assert main(args) == 0
    assert first.stat().st_mtime_ns == mtime
    assert main(["evaluate", str(tmp_path / "pred"), "--labels", str(data), "-q"]) == 0
    assert "metrics written" in capsys.readouterr().out


def test_bad_checkpoint_is_one_line_error(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["predict", "--checkpoint", str(bad), "--input", str(tmp_path), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.pt: checkpoint cannot be read" in err and "Traceback" not in err


def test_ctrl_c_saves_last_checkpoint_and_exits_cleanly(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    # SIGINT back to its default in the child: a suite started in the background (`cmd &`)
    # runs with SIGINT ignored, which children inherit, and Python then never raises
    # KeyboardInterrupt.
    proc = subprocess.Popen(_train_cli(data, tmp_path / "cache", out, "train.epochs=500"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("cases: 3 train, 1 validation")
    assert proc.stdout.readline().startswith("model: UNet")
    line = proc.stdout.readline()  # printed just before the first step
    assert line.startswith("training steps 0 to 2000"), line
    # Interrupt once an epoch is logged (a machine's first steps can take seconds).
    deadline = time.monotonic() + 120
    while not (out / "log.csv").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert 0 < ckpt["step"] < 500 * 4


def test_three_way_split_is_deterministic_disjoint_and_recorded() -> None:
    from tumorscope.core.data.cases import Case
    from tumorscope.core.training.train import split_cases

    cases = [Case(f"C{i:02d}", Path("/x"), "brats2021", {}, Path(f"/x/C{i:02d}_seg.nii.gz"))
             for i in range(20)]
    train_cases, val, test = split_cases(cases, val_fraction=0.2, test_fraction=0.2, seed=3)
    ids = [[c.case_id for c in part] for part in (train_cases, val, test)]
    assert [len(p) for p in ids] == [12, 4, 4]
    assert set(ids[0]) | set(ids[1]) | set(ids[2]) == {c.case_id for c in cases}
    assert not (set(ids[0]) & set(ids[1]) or set(ids[1]) & set(ids[2])
                or set(ids[0]) & set(ids[2]))
    again = split_cases(cases, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert [[c.case_id for c in p] for p in again] == ids
    # No test split asked for: the two-way split of before, unchanged.
    two = split_cases(cases, val_fraction=0.2, seed=3)
    assert len(two[2]) == 0 and len(two[1]) == 4
    small = split_cases(cases[:3], val_fraction=0.2, test_fraction=0.2, seed=0)
    assert [len(p) for p in small] == [1, 1, 1]


def test_3d_unetpp_with_attention_gates_trains_and_predicts(data: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    cfg = _cfg(data, tmp_path / "cache", "train.epochs=2", "model.architecture=unetpp",
               "model.attention_gates=true", "model.deep_supervision=true")
    run = train(cfg, tmp_path / "run", progress=False)
    log = run.log_rows()
    assert len(log) == 2 and all(np.isfinite(r["loss"]) for r in log)
    assert "val_loss" in log[-1] and np.isfinite(log[-1]["val_loss"])
    ckpt = load_checkpoint(run.checkpoint_path("best"))
    assert ckpt["model_config"]["architecture"] == "unetpp"
    assert ckpt["model_config"]["attention_gates"] is True
    code = main(["predict", "--checkpoint", str(run.checkpoint_path("best")), "--input",
                 str(data), "--out", str(tmp_path / "pred"), "--cache",
                 str(tmp_path / "cache"), "-q"])
    assert code == 0 and "4 prediction(s)" in capsys.readouterr().out
