"""The run directory contract: finding runs, reading and writing its parts atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from tumorscope.core.errors import LayoutError
from tumorscope.core.store import Run, open_runs


def test_run_round_trip(tmp_path: Path) -> None:
    run = Run(tmp_path / "run1")
    run.write_config({"train": {"epochs": 2}})
    run.write_cases({"A": {"images": {"t1": "/x/A_t1.nii.gz"}, "label": None}})
    run.write_metrics([
        {"case_id": "A", "region": "WT", "dice": 0.9, "hd95_monai_mm": 2.5},
        {"case_id": "A", "region": "ET", "dice": None, "grade": "HGG"},
    ])
    run.append_log({"epoch": 1, "loss": 0.5})
    run.append_log({"epoch": 2, "loss": 0.25, "dice_WT": 0.8})
    (run.path / "predictions").mkdir()
    (run.path / "predictions" / "A.nii.gz").write_bytes(b"")
    (run.path / "predictions" / "A_prob.nii.gz").write_bytes(b"")

    assert run.config() == {"train": {"epochs": 2}}
    assert run.cases()["A"]["label"] is None
    rows = run.metrics_rows()
    assert rows[0] == {"case_id": "A", "region": "WT", "dice": 0.9, "hd95_monai_mm": 2.5,
                       "grade": None}
    assert rows[1]["dice"] is None and rows[1]["grade"] == "HGG"
    assert [r["loss"] for r in run.log_rows()] == [0.5, 0.25]
    assert run.log_rows()[0]["dice_WT"] is None
    assert run.case_ids() == ["A"]
    assert [p.name for p in run.path.iterdir() if ".tmp" in p.name] == []


def test_open_runs_single_many_and_errors(tmp_path: Path) -> None:
    for name in ("b", "a"):
        Run(tmp_path / name).write_config({})
    (tmp_path / "not-a-run").mkdir()
    assert [r.name for r in open_runs(tmp_path)] == ["a", "b"]
    assert [r.name for r in open_runs(tmp_path / "a")] == ["a"]
    with pytest.raises(LayoutError, match="no run found"):
        open_runs(tmp_path / "not-a-run")
    with pytest.raises(LayoutError, match="does not exist"):
        open_runs(tmp_path / "missing")


def test_malformed_files_name_the_file(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.config_path.write_text("a: [unclosed\n")
    run.cases_path.write_text("{not json")
    with pytest.raises(LayoutError, match="config.yaml is not valid YAML") as info:
        run.config()
    assert info.value.path == run.config_path
    with pytest.raises(LayoutError, match="cases.json is not valid JSON"):
        run.cases()


def test_case_records_and_dice_by_region(tmp_path: Path) -> None:
    run = Run(tmp_path)
    flair = tmp_path / "A_flair.nii.gz"
    flair.write_bytes(b"")
    run.write_cases({
        "A": {"images": {"t1": str(tmp_path / "gone.nii.gz"), "flair": str(flair)},
              "label": None, "label_convention": "brats2023",
              "metadata": {"synthetic": True}},
        "B": {"images": {}, "label": None},
    })
    run.write_metrics([{"case_id": "A", "region": "WT", "dice": 0.5},
                       {"case_id": "B", "region": "ET", "dice": 1.0}])
    run.predictions_dir.mkdir()
    for case_id in ("A", "B"):
        run.prediction_path(case_id).write_bytes(b"")
    record = run.case_record("A")
    assert record.label_convention == "brats2023" and record.synthetic
    assert not record.has_truth and record.brain_image == flair  # T1 missing: next modality
    assert run.case_record("Z").images == {}
    assert run.dice_by_region() == {"A": {"WT": 0.5}, "B": {"ET": 1.0}}
    assert run.dice_by_region("B") == {"B": {"ET": 1.0}}
