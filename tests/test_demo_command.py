"""The main job, ``tumorscope demo``, end to end on a small cohort."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import pytest

from tumorscope.app.cli import main
from tumorscope.core.store import open_runs

FAST = ["model.features=[4, 8, 16]", "data.patch_size_vox=32", "train.epochs=1",
        "train.steps_per_epoch=3", "train.val_every_epochs=1"]


def test_demo_builds_cohort_trains_predicts_held_out_and_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tumorscope.core.data import synthetic

    made = synthetic.make_demo_cohort

    def fewer_shifted(out: Path, *, n_cases: int, style: str = "demo", **kw: object) -> list:
        # The demo scores 10 shifted cases; 2 show the same thing here, in less time.
        return made(out, n_cases=min(n_cases, 2) if style == "shifted" else n_cases,
                    style=style, **kw)

    monkeypatch.setattr(synthetic, "make_demo_cohort", fewer_shifted)
    data, out = tmp_path / "demo_data", tmp_path / "runs" / "demo"
    args = ["demo", "--data", str(data), "--out", str(out), "--cases", "3", "-q"]
    for item in [*FAST, f"data.cache_dir={tmp_path / 'cache'}"]:
        args += ["--set", item]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "test cases never seen in training or selection: n=1" in printed
    for region in ("WT", "TC", "ET"):
        assert any(line.startswith(region) for line in printed.splitlines())
    assert "streamlit run streamlit_app.py" in printed

    (run,) = open_runs(out)
    held_out = run.case_ids()
    split = run.split()
    assert held_out == split["test"] and len(held_out) == 1
    # The scored case neither trained nor chose the checkpoint.
    assert not set(held_out) & (set(split["train"]) | set(split["val"]))
    assert held_out[0].startswith("TSDemo_")
    rows = run.metrics_rows()
    assert [r["region"] for r in rows] == ["WT", "TC", "ET"]
    assert all(r["synthetic"] is True for r in rows)
    pred = nib.load(run.prediction_path(held_out[0]))
    assert pred.shape == (240, 240, 155)
    assert len(run.log_rows()) == 1

    # The out-of-distribution cohort, beside the data, predicted into a run beside this one.
    assert "out-of-distribution cohort (shifted style, never trained on): n=2" in printed
    (shifted,) = open_runs(tmp_path / "runs" / "demo_shifted")
    assert [c[:8] for c in shifted.case_ids()] == ["TSShift_"] * 2
    assert (tmp_path / "demo_data_shifted" / "tumorscope_cohort.json").is_file()
    assert {r["region"] for r in shifted.metrics_rows()} == {"WT", "TC", "ET"}
    assert not (out / "predictions" / f"{shifted.case_ids()[0]}.nii.gz").exists()

    # Again: the cohort and the finished run are reused, not rebuilt or retrained.
    mtime = run.checkpoint_path("best").stat().st_mtime_ns
    assert main(args) == 0
    assert run.checkpoint_path("best").stat().st_mtime_ns == mtime
    assert len(run.log_rows()) == 1
