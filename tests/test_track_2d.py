"""The 2-D chain through the command line: train a type-and-outline model on real synthetic
figshare .mat files, resume it, predict the held-out slices, score them, notice a stale score."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumorscope.app.cli import main
from tumorscope.core.data.synthetic_2d import make_figshare_demo
from tumorscope.core.models.checkpoints import load_checkpoint
from tumorscope.core.scoring.classification import classification_scores
from tumorscope.core.store import Run

TINY_2D = ["data.slice_size_px=64", "data.batch_size=4", "model.features=[4, 8, 16, 32]",
           "train.steps_per_epoch=3", "train.val_every_epochs=1", "train.threads=1"]


@pytest.fixture(scope="module")
def figshare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fig2d") / "data"
    make_figshare_demo(out, n_patients=10, seed=1, progress=False)
    return out


@pytest.fixture(scope="module")
def trained(figshare: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run2d"
    args = ["train", "-q", "--config", "tiny-2d", "--data", str(figshare), "--out", str(out)]
    for o in [*TINY_2D, "train.epochs=2"]:
        args += ["--set", o]
    assert main(args) == 0
    return out


def test_training_writes_a_patient_wise_split_log_curves_and_a_typed_checkpoint(
        trained: Path, figshare: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = Run(trained)
    split = run.split()
    from tumorscope.core.data.slice_datasets import discover_slices, patients_of

    patient_of = patients_of(discover_slices(figshare))
    sides = {part: {patient_of[s] for s in ids} for part, ids in split.items()}
    assert sides["train"] and sides["val"] and sides["test"]
    # no patient on two sides: the slice-wise split is the known figshare leak
    assert not (sides["train"] & sides["val"] or sides["train"] & sides["test"]
                or sides["val"] & sides["test"])
    assert sum(len(v) for v in split.values()) == len(patient_of)
    log = run.log_rows()
    assert [r["epoch"] for r in log] == [1, 2]
    assert {"dice_tumour", "accuracy", "macro_f1", "f1_glioma", "selection"} <= set(log[-1])
    assert (trained / "curves.png").stat().st_size > 5000
    ckpt = load_checkpoint(run.checkpoint_path("best"))
    assert ckpt["regions"] == ["tumour"] and ckpt["model_config"]["spatial_dims"] == 2
    assert ckpt["model_config"]["classes"] == 3


def test_resume_continues_the_same_2d_run(trained: Path, figshare: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    before = Run(copy).split()
    args = ["train", "-q", "--resume", "--out", str(copy), "--set", "train.epochs=3"]
    assert main(args) == 0
    run = Run(copy)
    assert [r["epoch"] for r in run.log_rows()] == [1, 2, 3]
    assert run.split() == before
    assert load_checkpoint(run.checkpoint_path("last"))["step"] == 9


def test_predict_and_evaluate_the_held_out_slices(trained: Path, figshare: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = Run(trained)
    test_ids = run.split()["test"]
    code = main(["predict", "-q", "--checkpoint", str(run.checkpoint_path("best")),
                 "--input", str(figshare), "--out", str(trained), "--split", "test"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"predicted {len(test_ids)}" in out and "tumour type: n=" in out
    records = run.case_records()
    assert set(records) == set(test_ids)
    rows = run.current_metrics_rows()
    assert {str(r["case_id"]) for r in rows} == set(test_ids)
    for r in rows:
        rec = records[str(r["case_id"])]
        assert r["region"] == "tumour" and 0 <= r["dice"] <= 1
        assert r["predicted_type"] == rec.prediction["predicted_type"]
        assert r["true_type"] == rec.metadata["tumour_type"]
        assert 1 / 3 <= r["confidence"] <= 1
        # the mask is written on the slice's own grid, one slice deep
        mask = nib.load(str(run.prediction_path(str(r["case_id"])))).get_fdata()
        assert mask.shape == (512, 512, 1) and set(np.unique(mask)) <= {0.0, 1.0}
    names = ("meningioma", "glioma", "pituitary")
    index = {n: i for i, n in enumerate(names)}
    scores = classification_scores([index[r["true_type"]] for r in rows],
                                   [index[r["predicted_type"]] for r in rows],
                                   class_names=names)
    assert f"accuracy {scores.accuracy:.3f}" in out

    # unchanged: evaluate reuses every row; a changed prediction makes its rows stale
    assert main(["evaluate", str(trained)]) == 0
    assert f"unchanged {len(test_ids)}" in capsys.readouterr().out
    victim = run.prediction_path(test_ids[0])
    img = nib.load(str(victim))
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), str(victim))
    assert test_ids[0] not in {str(r["case_id"]) for r in run.current_metrics_rows()}
    # predicting again replaces the changed file (its fingerprint no longer matches)
    assert main(["predict", "-q", "--checkpoint", str(run.checkpoint_path("best")),
                 "--input", str(figshare), "--out", str(trained), "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "predicted 1 (prediction file changed" in out
    assert test_ids[0] in {str(r["case_id"]) for r in run.current_metrics_rows()}


def test_a_3d_config_on_2d_slices_is_one_line(figshare: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "-q", "--config", "tiny-cpu", "--data", str(figshare),
                 "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code != 0 and "model.spatial_dims must be 2" in err and "Traceback" not in err
    code = main(["train", "-q", "--config", "tiny-2d", "--data", str(figshare),
                 "--out", str(tmp_path / "y"), "--set", "model.in_channels=4"])
    err = capsys.readouterr().err
    assert code != 0 and "model.in_channels must be 1" in err


def test_unetpp_with_attention_gates_and_focal_dice_trains_and_predicts_in_2d(
        figshare: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pp"
    args = ["train", "-q", "--config", "tiny-2d", "--data", str(figshare), "--out", str(out)]
    for o in [*TINY_2D, "train.epochs=2", "model.architecture=unetpp",
              "model.attention_gates=true", "model.deep_supervision=true",
              "loss.name=focal_dice"]:
        args += ["--set", o]
    assert main(args) == 0
    run = Run(out)
    log = run.log_rows()
    assert log[-1]["loss"] < log[0]["loss"] * 1.5 and all(np.isfinite(r["loss"]) for r in log)
    ckpt = load_checkpoint(run.checkpoint_path("best"))
    assert ckpt["model_config"]["architecture"] == "unetpp"
    assert ckpt["model_config"]["attention_gates"] is True
    first = run.split()["test"][:2]
    from tumorscope.core.prediction.predict_slices import predict_slice_run

    report = predict_slice_run(run.checkpoint_path("best"), figshare, out, slice_ids=first,
                               progress=False)
    assert sorted(report.predicted) == sorted(first) and not report.failed


def test_dataset_wide_bce_weight_is_computed_once_from_the_training_masks(
        figshare: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tumorscope.core.config import load_config
    from tumorscope.core.models.losses import dataset_pos_weight
    from tumorscope.core.training.slices import load_slice_data

    out = tmp_path / "wbce"
    overrides = [*TINY_2D, "train.epochs=1", "loss.name=weighted_bce",
                 "loss.options={pos_weight: dataset}"]
    args = ["train", "--config", "tiny-2d", "--data", str(figshare), "--out", str(out),
            "-q"]
    for o in overrides:
        args += ["--set", o]
    assert main(args) == 0
    said = capsys.readouterr().out
    cfg = load_config("tiny-2d", overrides=[f"data.root={figshare}", *overrides])
    train_masks = [s.target for s in load_slice_data(cfg).parts["train"]]
    (expected,) = dataset_pos_weight(train_masks, channels=1)
    assert f"positive weight {expected:.2f} per region (tumour)" in said
    assert expected > 5  # tumours are a small share of a slice: the weight is not 1


def _lgg_from_figshare(figshare: Path, root: Path, n_patients: int = 6) -> Path:
    """An LGG-layout folder (3-channel .tif slices, *_mask.tif, data.csv) written with
    Pillow from the synthetic figshare slices: real files in the LGG form."""
    import csv

    from PIL import Image

    from tumorscope.core.data.slice_datasets import discover_slices, read_slice

    refs = discover_slices(figshare).slices
    by_patient: dict[str, list] = {}
    for ref in refs:
        s = read_slice(ref)
        by_patient.setdefault(s.patient_id, []).append(s)
    rows = []
    for n, (_, slices) in enumerate(sorted(by_patient.items())[:n_patients]):
        case = f"TCGA_TS_{1000 + n}_20000101"
        folder = root / case
        folder.mkdir(parents=True)
        for k, s in enumerate(slices, start=1):
            img = s.image[0][::2, ::2]
            scaled = np.clip(255 * (img - img.min()) / max(np.ptp(img), 1), 0, 255)
            rgb = np.stack([scaled, np.sqrt(scaled / 255) * 255, scaled], -1).astype(np.uint8)
            Image.fromarray(rgb).save(folder / f"{case}_{k}.tif")
            mask = (s.mask[::2, ::2] > 0).astype(np.uint8) * 255
            Image.fromarray(mask).save(folder / f"{case}_{k}_mask.tif")
        rows.append([case.rsplit("_", 1)[0], 1, 0])
    with open(root / "data.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Patient", "RNASeqCluster", "death01"])
        writer.writerows(rows)
    return root


def test_lgg_preset_trains_unetpp_without_a_type_head_and_scores(
        figshare: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lgg = _lgg_from_figshare(figshare, tmp_path / "kaggle_3m")
    out = tmp_path / "lgg_run"
    args = ["train", "-q", "--config", "lgg-2d", "--data", str(lgg), "--out", str(out)]
    for o in ["data.slice_size_px=64", "data.batch_size=4", "model.features=[4, 8, 16, 32]",
              "train.steps_per_epoch=3", "train.epochs=1", "train.val_every_epochs=1",
              "train.threads=1", "train.amp=off", "data.val_fraction=0.2",
              "data.test_fraction=0.2"]:
        args += ["--set", o]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "UNet++ [4, 8, 16, 32] (2-D)" in said and "type head" not in said
    assert "epoch 1/1: loss" in said and "val loss" in said
    run = Run(out)
    ckpt = load_checkpoint(run.checkpoint_path("best"))
    assert ckpt["model_config"]["in_channels"] == 3 and ckpt["model_config"]["classes"] == 0
    code = main(["predict", "-q", "--checkpoint", str(run.checkpoint_path("best")),
                 "--input", str(lgg), "--out", str(out), "--split", "test"])
    said = capsys.readouterr().out
    assert code == 0 and "tumour type" not in said
    rows = run.current_metrics_rows()
    assert rows and all(r["predicted_type"] in ("", None) for r in rows)
    assert {str(r["case_id"]) for r in rows} == set(run.split()["test"])


def test_ddp_two_gloo_processes_train_the_2d_model_in_step(figshare: Path,
                                                           tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp2d"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "tumorscope.app.cli", "train", "-q", "--config", "tiny-2d", "--data",
           str(figshare), "--out", str(out)]
    for o in [*TINY_2D, "train.epochs=2", "train.val_every_epochs=2", "train.device=cpu"]:
        cmd += ["--set", o]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    check = json.loads((out / "ddp_check.json").read_text())
    assert check["world_size"] == 2 and check["max_abs_weight_diff"] == 0.0
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 6
