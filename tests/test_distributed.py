"""predict, evaluate and training's validation under torchrun (2 gloo processes on CPU) give
what one process gives; the case shards they are cut into."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from builders import write_case
from test_train_predict import _cfg, _train_cli

from tumorscope.core.distributed import DistInfo, shard, unshard
from tumorscope.core.errors import ConfigError
from tumorscope.core.store import Run

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
CASES = [f"BraTS2021_{i:05d}" for i in range(5)]


def _cli(*args: str, ranks: int = 1) -> subprocess.CompletedProcess[str]:
    """``tumorscope ARGS`` in a fresh process, or under torchrun with ``ranks`` processes."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
              f"--nproc_per_node={ranks}"] if ranks > 1 else [sys.executable]
    done = subprocess.run([*launch, "-m", "tumorscope.app.cli", *args], capture_output=True,
                          text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    for i, case_id in enumerate(CASES):
        write_case(root, case_id, seed=i)
    return root


@pytest.fixture(scope="module")
def runs(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One checkpoint predicted (and so scored) into ``one`` by one process and into ``two``
    by two ranks."""
    from tumorscope.core.training.train import train

    tmp = tmp_path_factory.mktemp("runs")
    cache = tmp / "cache"
    trained = train(_cfg(cohort, cache, "train.epochs=1", "train.steps_per_epoch=2"),
                    tmp / "trained", progress=False)
    out: dict[str, Any] = {"cache": cache}
    for name, ranks in (("one", 1), ("two", 2)):
        out[name] = Run(tmp / name)
        out[f"{name}_said"] = _cli("predict", "--checkpoint",
                                   str(trained.checkpoint_path("best")), "--input", str(cohort),
                                   "--out", str(tmp / name), "--cache", str(cache),
                                   ranks=ranks).stdout
    return out


def _records(run: Run) -> dict[str, Any]:
    """cases.json without what names the run or the moment (paths, stat, timings)."""
    volatile = {"path", "mtime_ns", "stat", "seconds", "predicted_at"}
    return {c: {**r, "prediction": {k: v for k, v in r["prediction"].items()
                                    if k not in volatile}}
            for c, r in run.cases().items()}


def _summary(run: Run) -> dict[str, Any]:
    return {k: v for k, v in json.loads(run.summary_path.read_text()).items()
            if k != "generated_at"}


def _same_scores(a: Run, b: Run) -> None:
    assert a.metrics_rows() == b.metrics_rows()
    assert a.lesion_rows() == b.lesion_rows()
    assert _summary(a) == _summary(b)


def test_shards_are_disjoint_cover_the_list_and_come_back_in_order() -> None:
    items = list(range(7))
    parts = [shard(items, rank=r, world_size=3) for r in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert unshard(parts) == items
    assert shard(items[:1], rank=1, world_size=2) == []
    assert unshard([[0], []]) == [0]
    with pytest.raises(ConfigError, match="rank 2 of world_size 2"):
        shard(items, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="not the shares"):
        unshard([[0], [1, 2]])
    alone = DistInfo()  # one process: its share is everything, its collectives return at once
    assert alone.shard(items) == items and alone.gather("x") == ["x"]
    assert alone.gather_in_order(items) == items and alone.tag == ""
    alone.barrier()


def test_world_size_must_be_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    from tumorscope.core.distributed import init

    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE must be a whole number >= 1.*'two'"):
        init()


def test_predict_on_two_ranks_writes_what_one_process_writes(runs: dict[str, Any]) -> None:
    one, two = runs["one"], runs["two"]
    assert one.case_ids() == two.case_ids() == CASES
    for case_id in CASES:
        a, b = nib.load(one.prediction_path(case_id)), nib.load(two.prediction_path(case_id))
        assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
        np.testing.assert_array_equal(a.affine, b.affine)
    assert _records(one) == _records(two)
    assert one.config() == two.config()
    _same_scores(one, two)
    # Each case predicted and scored once, by the rank whose share it is; totals once.
    said = runs["two_said"]
    for verb in ("predict", "evaluate"):
        # Not anchored at a line's start: the other rank's progress bar may end in "\r"
        # just before a line, on the same pipe.
        lines = re.findall(rf"\[rank (\d)/2\] {verb} (\S+): (.*)$", said, flags=re.M)
        assert sorted((c, int(r)) for r, c, _ in lines) == \
            [(c, i % 2) for i, c in enumerate(CASES)], said
    assert said.count("reused 0, predicted 5 (new: ") == 1
    assert said.count("scored 5, unchanged 0") == 1
    assert runs["one_said"].count("mean Dice") == said.count("mean Dice") > 0


def test_evaluate_on_two_ranks_scores_what_one_process_scores(runs: dict[str, Any],
                                                              cohort: Path) -> None:
    one, two = runs["one"], runs["two"]
    for path in (two.metrics_path, two.lesions_path, two.summary_path):
        path.unlink()
    said = _cli("evaluate", str(two.path), "--labels", str(cohort), ranks=2).stdout
    _same_scores(one, two)
    assert said.count("scored 5, unchanged 0") == 1 and said.count("metrics written") == 1
    # Scored again with nothing changed: every rank reuses its rows, the tables stay.
    before = two.metrics_path.read_bytes()
    said = _cli("evaluate", str(two.path), "-q", ranks=2).stdout
    assert "scored 0, unchanged 5" in said and two.metrics_path.read_bytes() == before


def test_ddp_training_validates_each_case_once_across_ranks(cohort: Path, tmp_path: Path,
                                                            runs: dict[str, Any]) -> None:
    """Validation is shared out (3 cases: 2 on rank 0, 1 on rank 1) and the logged Dice is
    what one process computes with the same weights."""
    import torch

    from tumorscope.core.config import config_from_dict
    from tumorscope.core.data.cases import discover
    from tumorscope.core.data.preprocess import preprocess_case
    from tumorscope.core.models.checkpoints import autocast_dtype, model_from_checkpoint
    from tumorscope.core.training.train import load_checkpoint, validate

    out = tmp_path / "ddp"
    args = _train_cli(cohort, runs["cache"], out, "train.epochs=1", "train.val_every_epochs=1",
                      "train.steps_per_epoch=2", "data.val_fraction=0.6", "train.device=cpu")
    done = _cli("-v", *args[3:], ranks=2)
    run = Run(out)
    val = run.split()["val"]
    assert len(val) == 3
    seen = re.findall(r"validated (\S+) on rank (\d)/2", done.stderr)
    assert sorted(seen) == sorted((c, str(i % 2)) for i, c in enumerate(val)), done.stderr
    row = run.log_rows()[-1]
    ckpt = load_checkpoint(run.checkpoint_path("last"))
    cfg = config_from_dict(ckpt["config"])
    cases = {c.case_id: c for c in discover(cohort)}
    cached = [preprocess_case(cases[c], runs["cache"], target_spacing_mm=cfg.data.spacing_mm,
                              bias_correction=cfg.data.bias_correction)
              for c in val]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks ran (train.threads=1)
    try:
        alone = validate(model_from_checkpoint(ckpt), cached, cfg, torch.device("cpu"),
                         autocast_dtype(cfg.train.amp, torch.device("cpu")))
    finally:
        torch.set_num_threads(threads)
    for region in ("WT", "TC", "ET"):
        assert row[f"dice_{region}"] == pytest.approx(alone[f"dice_{region}"], abs=1e-12)
    shutil.rmtree(out)
