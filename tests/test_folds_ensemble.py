"""k-fold cross-validation splits and the ensemble of the folds, through the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from builders import write_case

from tumorscope.app.cli import main
from tumorscope.core.models.checkpoints import load_model
from tumorscope.core.store import Run

SHAPE = (36, 36, 28)
TINY = ["model.features=[4, 8, 16]", "data.patch_size_vox=16", "data.spacing_mm=null",
        "data.batch_size=2", "train.steps_per_epoch=2", "train.val_every_epochs=1",
        "train.threads=1", "train.epochs=1", "data.test_fraction=0.2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    for i in range(8):
        write_case(root, f"BraTS2021_{i:05d}", shape=SHAPE, seed=i)
    return root


@pytest.fixture(scope="module")
def folds(data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("cv")
    runs = []
    for k in (1, 2, 3):
        out = root / f"fold{k}"
        args = ["train", "-q", "--config", "tiny-cpu", "--data", str(data), "--out", str(out),
                "--fold", f"{k}/3", "--set", f"data.cache_dir={root / 'cache'}"]
        for o in TINY:
            args += ["--set", o]
        assert main(args) == 0
        runs.append(out)
    return runs


def test_folds_share_the_test_split_and_validate_disjoint_parts(folds: list[Path]) -> None:
    splits = [Run(f).split() for f in folds]
    assert all(s["test"] == splits[0]["test"] for s in splits) and splits[0]["test"]
    vals = [set(s["val"]) for s in splits]
    assert not (vals[0] & vals[1] or vals[0] & vals[2] or vals[1] & vals[2])
    pool = set(splits[0]["train"]) | vals[0]
    assert vals[0] | vals[1] | vals[2] == pool  # every non-test case validates once
    for s in splits:
        assert not set(s["test"]) & (set(s["train"]) | set(s["val"]))


def test_ensemble_averages_the_folds_probabilities_and_predicts(
        folds: list[Path], data: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ensemble.pt"
    assert main(["ensemble", *map(str, folds), "--out", str(out)]) == 0
    assert "ensemble of 3 written" in capsys.readouterr().out
    ens = load_model(out)
    members = [load_model(Run(f).checkpoint_path("best")).model for f in folds]
    x = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        mean = torch.stack([torch.sigmoid(m(x)) for m in members]).mean(0)
        got = torch.sigmoid(ens.model(x))
    torch.testing.assert_close(got, mean, atol=1e-5, rtol=1e-4)
    test_ids = Run(folds[0]).split()["test"]
    code = main(["predict", "--checkpoint", str(out), "--input", str(data), "--out",
                 str(tmp_path / "pred"), "-q", "--cache", str(tmp_path / "cache")])
    assert code == 0
    records = Run(tmp_path / "pred").case_records()
    assert set(test_ids) <= set(records)
    assert {r.checkpoint_sha256 for r in records.values()} == {ens.sha256}


def test_bad_fold_and_mismatched_members_are_one_line(folds: list[Path], data: Path,
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "-q", "--data", str(data), "--out", str(tmp_path / "x"),
              "--fold", "4/3"])
    assert exc.value.code == 2 and "expected K/N" in capsys.readouterr().err
    other = tmp_path / "wide"
    args = ["train", "-q", "--data", str(data), "--out", str(other)]
    for o in [*TINY, "data.patch_size_vox=24"]:
        args += ["--set", o]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["ensemble", str(folds[0]), str(other), "--out", str(tmp_path / "e.pt")]) != 0
    err = capsys.readouterr().err
    assert "data.patch_size_vox" in err and "Traceback" not in err
    assert not (tmp_path / "e.pt").exists()


def test_a_users_split_file_is_honoured_and_a_bad_one_is_one_line(
        folds: list[Path], data: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    ids = sorted(p.name for p in data.iterdir() if p.is_dir())
    csv_path = tmp_path / "split.csv"
    csv_path.write_text("case_id,split\n" + "".join(
        f"{i},{'test' if n < 2 else 'val' if n < 4 else 'train'}\n"
        for n, i in enumerate(ids)))
    out = tmp_path / "given"
    args = ["train", "-q", "--data", str(data), "--out", str(out), "--set",
            f"data.split_file={csv_path}"]
    for o in TINY:
        args += ["--set", o]
    assert main(args) == 0
    split = Run(out).split()
    assert split == {"train": ids[4:], "val": ids[2:4], "test": ids[:2]}
    # a run's own split.json works as a split file too
    reuse = tmp_path / "reuse"
    args[args.index(str(out))] = str(reuse)
    args[args.index(f"data.split_file={csv_path}")] = \
        f"data.split_file={Run(folds[1]).split_path}"
    assert main(args) == 0
    assert Run(reuse).split() == Run(folds[1]).split()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": ids[:4], "val": ids[3:]}))
    args[args.index(str(reuse))] = str(tmp_path / "bad")
    args[args.index(f"data.split_file={Run(folds[1]).split_path}")] = \
        f"data.split_file={bad}"
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "bad.json" in err and "two sides" in err and "Traceback" not in err
