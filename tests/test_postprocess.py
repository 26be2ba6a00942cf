"""Post-processing: probabilities to labels, label-map clean-ups, the fit on validation cases,
and predict applying the fit that belongs to its checkpoint."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from builders import TINY, TINY_SHAPE, train_tiny, write_case

from tumorscope.app.cli import main
from tumorscope.core.config import load_config
from tumorscope.core.data.labels import labels_to_regions
from tumorscope.core.errors import ConfigError, GeometryError, LabelError
from tumorscope.core.fingerprint import fingerprint
from tumorscope.core.prediction.postprocess import (
    PostProcess,
    apply_postprocess,
    probabilities_to_labels,
)
from tumorscope.core.scoring.lesions import lesion_wise_scores
from tumorscope.core.store import Run
from tumorscope.core.training.postprocess_fit import (
    ET_TO_NCR_GRID_MM3,
    MIN_COMPONENT_GRID_MM3,
    FitResult,
    RegionFit,
    ScoredCase,
    crop_pair,
    record_fit,
    score_cases,
    search_postprocess,
)

ONE = (1.0, 1.0, 1.0)


def _ball(shape: tuple[int, int, int], centre: tuple[float, float, float],
          radius: float) -> np.ndarray:
    idx = np.indices(shape).astype(float)
    return np.sqrt(sum((idx[i] - centre[i]) ** 2 for i in range(3))) < radius


def _tumour(shape: tuple[int, int, int] = (40, 40, 40), centre=(20, 20, 20)) -> np.ndarray:
    """Edema ball, enhancing shell, necrotic centre (canonical labels)."""
    label = np.zeros(shape, np.uint8)
    label[_ball(shape, centre, 9)] = 2
    label[_ball(shape, centre, 6)] = 4
    label[_ball(shape, centre, 3)] = 1
    return label


# ---------------------------------------------------------------- the settings

def test_defaults_are_off_and_round_trip() -> None:
    pp = PostProcess()
    assert pp.off and not pp.cleans
    assert pp.settings() == {"threshold": 0.5, "postprocess": "none"}  # as before it existed
    fitted = PostProcess(thresholds=(0.5, 0.4, 0.6), min_component_mm3=(100, 0, 25),
                         et_to_ncr_below_mm3=200)
    assert PostProcess.from_dict(fitted.to_dict()) == fitted
    assert PostProcess.from_settings(fitted.settings()) == fitted
    assert PostProcess.from_dict({**fitted.to_dict(), "fitted": {"x": 1}}) == fitted
    assert PostProcess.from_config(load_config("tiny-cpu").postprocess) == pp
    assert "ET -> NCR below 200 mm3" in fitted.describe() and "\n" not in fitted.describe()


@pytest.mark.parametrize(("kwargs", "fault"), [
    ({"thresholds": (0.5, 0.5)}, "postprocess.thresholds must be a list of 3 numbers"),
    ({"thresholds": (0.5, 0.0, 0.5)}, "each > 0 and < 1, got [0.5, 0.0, 0.5]"),
    ({"thresholds": (0.5, 1.0, 0.5)}, "each > 0 and < 1"),
    ({"min_component_mm3": (-1, 0, 0)}, "postprocess.min_component_mm3 must be a list of 3"),
    ({"min_component_mm3": (float("nan"), 0, 0)}, "min_component_mm3"),
    ({"et_to_ncr_below_mm3": -5}, "postprocess.et_to_ncr_below_mm3 must be a number >= 0"),
    ({"et_to_ncr_below_mm3": True}, "got true"),
])
def test_bad_values_are_refused_on_entry_in_one_line(kwargs: dict, fault: str) -> None:
    with pytest.raises(ConfigError) as info:
        PostProcess(**kwargs)
    assert fault in str(info.value) and "\n" not in str(info.value)


def test_a_bad_section_names_its_file() -> None:
    with pytest.raises(ConfigError, match=r"^x/config.yaml: unknown key\(s\) "
                                          r"\['postprocess.min_component'\]"):
        PostProcess.from_dict({"min_component": [1, 2, 3]}, path="x/config.yaml")
    with pytest.raises(ConfigError, match="^x/config.yaml: postprocess.thresholds"):
        PostProcess.from_dict({"thresholds": [2, 2, 2]}, path="x/config.yaml")


def test_config_section_uses_the_rules_and_is_resumable() -> None:
    from tumorscope.core.training.train import check_resumable

    cfg = load_config("tiny-cpu", overrides=["postprocess.min_component_mm3=[10, 0, 5]"])
    assert cfg.postprocess.min_component_mm3 == (10.0, 0.0, 5.0)
    with pytest.raises(ConfigError, match="postprocess.et_to_ncr_below_mm3 must be a number "
                                          ">= 0 mm3, got -1"):
        load_config("tiny-cpu", overrides=["postprocess.et_to_ncr_below_mm3=-1"])
    trained = load_config("tiny-cpu")
    fitted = load_config("tiny-cpu", overrides=[
        "postprocess.thresholds=[0.4, 0.5, 0.5]", "postprocess.fitted={before: 0.5}"])
    check_resumable(trained.to_dict(), fitted, step=0)  # does not change training
    with pytest.raises(ConfigError, match="cannot resume"):
        check_resumable(trained.to_dict(), load_config("tiny-cpu", overrides=[
            "optim.lr=0.1"]), step=0)


# ---------------------------------------------------------------- probabilities to labels

def test_thresholds_are_per_region() -> None:
    prob = np.zeros((3, 2, 1, 1), np.float32)
    prob[:, 0, 0, 0] = [0.9, 0.45, 0.45]  # tumour; core and enhancing below 0.5
    prob[:, 1, 0, 0] = [0.9, 0.9, 0.3]
    assert probabilities_to_labels(prob, thresholds=(0.5, 0.5, 0.5))[:, 0, 0].tolist() == [2, 1]
    assert probabilities_to_labels(prob, thresholds=(0.5, 0.4, 0.5))[:, 0, 0].tolist() == [1, 1]
    assert probabilities_to_labels(prob, thresholds=(0.5, 0.4, 0.25))[:, 0, 0].tolist() == [4, 4]
    assert probabilities_to_labels(prob, thresholds=(0.95, 0.5, 0.5))[:, 0, 0].tolist() == [0, 1]
    # exactly at the threshold is out, as `prob > 0.5` always was
    half = np.full((3, 1, 1, 1), 0.5, np.float32)
    assert probabilities_to_labels(half, thresholds=(0.5, 0.5, 0.5)).item() == 0
    with pytest.raises(LabelError, match="shape"):
        probabilities_to_labels(np.zeros((2, 3, 3, 3)), thresholds=(0.5, 0.5, 0.5))
    with pytest.raises(ConfigError, match="thresholds"):
        probabilities_to_labels(prob, thresholds=(0.5, 0.5))


# ---------------------------------------------------------------- clean-ups

def test_small_wt_component_is_removed_with_all_its_labels() -> None:
    label = _tumour()
    blob = np.zeros_like(label)
    blob[1:4, 1:4, 1:4] = 2  # 27 mm3 of edema...
    blob[2, 2, 2] = 4  # ...with an enhancing voxel inside
    noisy = np.maximum(label, blob)
    before = noisy.copy()
    out = apply_postprocess(noisy, spacing_mm=ONE,
                            postprocess=PostProcess(min_component_mm3=(28, 0, 0)))
    np.testing.assert_array_equal(out, label)
    np.testing.assert_array_equal(noisy, before)  # the input is never changed
    kept = apply_postprocess(noisy, spacing_mm=ONE,
                             postprocess=PostProcess(min_component_mm3=(27, 0, 0)))
    np.testing.assert_array_equal(kept, noisy)  # 27 is not below 27


def test_small_tc_component_becomes_edema_and_et_component_necrosis() -> None:
    label = _tumour()
    noisy = label.copy()
    noisy[4:22, 3:8, 18:22] = 2  # a separate edema lobe, big enough to stay...
    noisy[18:20, 4:6, 20] = 4  # ...holding 4 voxels of ET (hence TC)
    out = apply_postprocess(noisy, spacing_mm=ONE,
                            postprocess=PostProcess(min_component_mm3=(0, 5, 0)))
    assert out[18, 4, 20] == 2  # no longer core, still tumour
    np.testing.assert_array_equal(out > 0, noisy > 0)  # WT untouched
    np.testing.assert_array_equal(out[_ball(out.shape, (20, 20, 20), 9)],
                                  label[_ball(out.shape, (20, 20, 20), 9)])
    et_only = apply_postprocess(noisy, spacing_mm=ONE,
                                postprocess=PostProcess(min_component_mm3=(0, 0, 5)))
    assert et_only[18, 4, 20] == 1  # no longer enhancing, still core
    np.testing.assert_array_equal(labels_to_regions(et_only)[:2], labels_to_regions(noisy)[:2])
    assert set(np.unique(out).tolist()) <= {0, 1, 2, 4}


def test_spacing_is_honoured_in_mm3() -> None:
    label = np.zeros((10, 10, 10), np.uint8)
    label[1:3, 1:3, 1:3] = 2  # 8 voxels
    pp = PostProcess(min_component_mm3=(50, 0, 0))
    assert apply_postprocess(label, spacing_mm=ONE, postprocess=pp).sum() == 0  # 8 mm3
    big = apply_postprocess(label, spacing_mm=(2.0, 2.0, 2.0), postprocess=pp)  # 64 mm3
    np.testing.assert_array_equal(big, label)
    # 26-connected: a diagonal neighbour joins the component (9 voxels of 5 mm3, not 8 + 1)
    label[3, 3, 3] = 2
    kept = apply_postprocess(label, spacing_mm=(1.0, 1.0, 5.0),
                             postprocess=PostProcess(min_component_mm3=(45, 0, 0)))
    np.testing.assert_array_equal(kept, label)
    with pytest.raises(GeometryError, match="spacing_mm"):
        apply_postprocess(label, spacing_mm=(1.0, 0.0, 1.0), postprocess=pp)


def test_et_becomes_necrosis_below_the_case_volume() -> None:
    label = _tumour()
    et = int((label == 4).sum())
    below = apply_postprocess(label, spacing_mm=ONE,
                              postprocess=PostProcess(et_to_ncr_below_mm3=et + 1))
    assert not (below == 4).any() and (below == 1).sum() == (label == 1).sum() + et
    np.testing.assert_array_equal(below > 0, label > 0)
    same = apply_postprocess(label, spacing_mm=ONE,
                             postprocess=PostProcess(et_to_ncr_below_mm3=et))
    np.testing.assert_array_equal(same, label)  # not below: kept
    # the volume is of the whole case, in mm3
    half = apply_postprocess(label, spacing_mm=(0.5, 0.5, 0.5),
                             postprocess=PostProcess(et_to_ncr_below_mm3=et / 8 + 1))
    assert not (half == 4).any()


def test_empty_maps_and_bad_labels() -> None:
    pp = PostProcess(min_component_mm3=(10, 10, 10), et_to_ncr_below_mm3=100)
    empty = np.zeros((5, 6, 7), np.uint8)
    np.testing.assert_array_equal(apply_postprocess(empty, spacing_mm=ONE, postprocess=pp),
                                  empty)
    with pytest.raises(LabelError, match=r"\[3\]"):
        apply_postprocess(np.full((2, 2, 2), 3, np.uint8), spacing_mm=ONE, postprocess=pp)
    with pytest.raises(GeometryError, match="3-D"):
        apply_postprocess(np.zeros((2, 2), np.uint8), spacing_mm=ONE, postprocess=pp)


# ---------------------------------------------------------------- the search

def _val_cases(n: int = 3, *, fp_blobs: bool) -> list[ScoredCase]:
    cases = []
    for i in range(n):
        truth = _tumour((48, 48, 40), centre=(24 + i, 22, 20))
        pred = truth.copy()
        pred[_ball(truth.shape, (24 + i, 22, 20), 8.5) & (truth == 2)] = 2  # slightly under
        if fp_blobs:  # two false-positive blobs of 27 mm3, far from the tumour
            pred[2:5, 2:5, 2:5] = 2
            pred[42:45, 3:6, 33:36] = 2
        cases.append(ScoredCase(f"C{i}", pred, truth, ONE))
    return cases


@pytest.mark.parametrize("objective", ["brats2023", "legacy"])
def test_fit_removes_planted_false_positive_blobs(objective: str) -> None:
    cases = _val_cases(fp_blobs=True)
    chosen, (before, after), detail, tried = search_postprocess(cases, objective=objective)
    assert after > before
    # the smallest volume of the grid above the 27 mm3 blobs and below the tumour
    assert chosen.min_component_mm3[0] == 50.0
    assert chosen.et_to_ncr_below_mm3 == 0.0
    assert [r.region for r in detail] == ["WT", "TC", "ET"]
    assert detail[0].after > detail[0].before
    assert tried == 1 + 3 * len(MIN_COMPONENT_GRID_MM3) + len(ET_TO_NCR_GRID_MM3)
    cleaned = [ScoredCase(c.case_id, apply_postprocess(c.prediction, spacing_mm=ONE,
                                                       postprocess=chosen), c.truth, ONE)
               for c in cases]
    assert score_cases(cleaned, objective=objective)[0] == pytest.approx(after)


@pytest.mark.parametrize("objective", ["brats2023", "legacy"])
def test_a_tc_clean_up_may_not_buy_et_gains_with_tc_losses(objective: str) -> None:
    # Each case: a large tumour, and a second small tumour whose non-enhancing core (about
    # 110 mm3 of label 1) the prediction finds only in part (33 mm3), and calls enhancing.
    # Removing TC components below 200 mm3 would delete that partly found core (TC loses)
    # with its false ET (ET gains more); ET's own clean-up relabels the false ET as core,
    # which loses nothing.
    cases = []
    for i in range(3):
        truth = _tumour((48, 48, 40), centre=(16 + i, 20, 20))
        small = _ball(truth.shape, (38, 36, 20), 6)
        truth[small] = 2
        truth[_ball(truth.shape, (38, 36, 20), 3)] = 1
        pred = truth.copy()
        pred[_ball(truth.shape, (38, 36, 20), 3)] = 2
        pred[_ball(truth.shape, (38, 36, 20), 2)] = 4
        cases.append(ScoredCase(f"C{i}", pred, truth, ONE))
    total, means = score_cases(cases, objective=objective,
                               postprocess=PostProcess(min_component_mm3=(0, 200, 0)))
    plain_total, plain = score_cases(cases, objective=objective)
    # what the guard is for: the TC cut raises the mean while lowering TC
    assert total > plain_total and means[1] < plain[1]
    chosen, (before, after), detail, _ = search_postprocess(cases, objective=objective)
    assert chosen.min_component_mm3[1] == 0.0, chosen
    assert after > before
    assert detail[1].after >= detail[1].before  # TC not lowered
    et = chosen.min_component_mm3[2] or chosen.et_to_ncr_below_mm3
    assert et > 0, chosen  # the false ET went through ET's own clean-up


def test_fit_keeps_the_no_op_when_nothing_helps() -> None:
    cases = _val_cases(fp_blobs=False)
    chosen, (before, after), _, _ = search_postprocess(cases)
    assert not chosen.cleans and before == after


def test_cropping_for_scoring_changes_no_score() -> None:
    (case,) = _val_cases(1, fp_blobs=True)
    truth = case.truth.copy()
    truth[40:44, 40:44, 30:34] = 2  # a missed lesion near another corner
    pad = ((12, 9), (10, 14), (11, 8))
    pred, truth = np.pad(case.prediction, pad), np.pad(truth, pad)
    pred[12, 10, 11] = 2  # one voxel on the crop's edge: the box is not the image's
    full = lesion_wise_scores(pred, truth, spacing_mm=ONE, challenge="gli")
    p, t = crop_pair(pred, truth)
    assert p.shape != truth.shape
    cropped = lesion_wise_scores(p, t, spacing_mm=ONE, challenge="gli")
    assert [(s.dice, s.hd95_mm, s.tp, s.fn, s.fp) for s in full] == \
        [(s.dice, s.hd95_mm, s.tp, s.fn, s.fp) for s in cropped]


# ---------------------------------------------------------------- on a trained run

@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path, Path]:
    return train_tiny(tmp_path_factory, "pp")


def _plant_fit(run: Run, pp: PostProcess, *, sha256: str | None = None) -> None:
    best = run.checkpoint_path("best")
    regions = tuple(RegionFit(r, 0.5, 0.6, 0.0) for r in ("WT", "TC", "ET"))
    record_fit(run, FitResult(pp, "brats2023", 0.5, 0.6, regions, ("X",), best,
                              sha256 or fingerprint(best)["sha256"], fitted_at="now"))


def test_predict_applies_the_fit_of_its_checkpoint_and_re_predicts_when_it_changes(
    trained: tuple[Run, Path, Path], tmp_path: Path
) -> None:
    from tumorscope.core.prediction.predict import predict_run

    run, root, cache = trained
    best = run.checkpoint_path("best")
    out = tmp_path / "pred"
    kwargs = {"cache_dir": cache, "progress": False}
    first = predict_run(best, root, out, **kwargs)
    assert first.postprocess.off and "none fitted" in first.postprocess_source
    assert len(first.predicted) == 3

    # A fit for this checkpoint that removes every component: predict re-predicts with it,
    # and records it; into a run holding the unprocessed predictions only with --force.
    everything = PostProcess(min_component_mm3=(1e9, 0, 0))
    _plant_fit(run, everything)
    with pytest.raises(ConfigError, match="post-processing off"):
        predict_run(best, root, out, **kwargs)
    again = predict_run(best, root, out, force=True, **kwargs)
    assert again.postprocess == everything and "fitted for this checkpoint" in \
        again.postprocess_source
    records = Run(out).case_records()
    assert all(r.provenance["settings"]["postprocess"] == everything.settings()["postprocess"]
               for r in records.values())
    assert Run(out).predict_claim()["settings"]["postprocess"]["min_component_mm3"][0] == 1e9
    for case_id in records:
        assert not np.asarray(nib.load(Run(out).prediction_path(case_id)).dataobj).any()
    assert predict_run(best, root, out, **kwargs).reused  # unchanged: reused

    # A training run predicting itself re-predicts when the post-processing changes.
    own = predict_run(best, root, run.path, case_ids=["BraTS2021_00000"], **kwargs)
    assert own.predicted == {"BraTS2021_00000": "new"}
    off = predict_run(best, root, run.path, case_ids=["BraTS2021_00000"],
                      postprocess="off", **kwargs)
    assert off.predicted == {"BraTS2021_00000": "settings changed"}
    assert run.case_records()["BraTS2021_00000"].provenance["settings"]["postprocess"] == "none"

    # A fit made for another checkpoint never applies.
    _plant_fit(run, everything, sha256="0" * 64)
    stale = predict_run(best, root, tmp_path / "other", **kwargs)
    assert stale.postprocess.off and "for another checkpoint" in stale.postprocess_source
    with pytest.raises(ConfigError, match="--postprocess"):
        predict_run(best, root, tmp_path / "x", postprocess="on", **kwargs)


def test_cli_fits_on_validation_records_and_predict_uses_it(
    trained: tuple[Run, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, root, cache = trained
    (val,) = run.split()["val"]
    assert main(["postprocess", str(run.path), "--fit", "--cache", str(cache), "-q"]) == 0
    out = capsys.readouterr().out
    assert "on 1 validation case(s), objective brats2023" in out
    for region in ("WT", "TC", "ET", "mean"):
        assert any(line.startswith(region) for line in out.splitlines()), out
    assert f"recorded in {run.config_path}" in out
    section = yaml.safe_load(run.config_path.read_text())["postprocess"]
    fitted = section["fitted"]
    assert fitted["checkpoint_sha256"] == fingerprint(run.checkpoint_path("best"))["sha256"]
    assert fitted["val_case_ids"] == [val] and fitted["objective"] == "brats2023"
    assert fitted["after"] >= fitted["before"]
    assert list(fitted["truth_sha256"]) == [val]
    assert Run(run.path / "postprocess_off").case_ids() == [val]
    assert load_config(run.config_path).postprocess.fitted == fitted  # a valid config still

    # Resuming the finished run with its preset keeps the fit; fitting again with nothing
    # changed reuses it as it is.
    from tumorscope.core.training.train import train

    train(load_config("tiny-cpu", overrides=[*TINY, f"data.root={root}",
                                             f"data.cache_dir={cache}"]),
          run.path, resume=True, progress=False)
    assert yaml.safe_load(run.config_path.read_text())["postprocess"]["fitted"] == fitted
    assert main(["postprocess", str(run.path), "--fit", "--cache", str(cache), "-q"]) == 0
    assert "recorded fit, unchanged since" in capsys.readouterr().out
    assert main(["postprocess", str(run.path)]) == 0
    assert "applies to its best.pt" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["postprocess", str(run.path), "--fit", "--objective", "dice"])
    assert info.value.code == 2 and "invalid choice: 'dice'" in capsys.readouterr().err

    # predict with the run's checkpoint applies the fit, and says so (on a case without
    # labels: scoring is not what this test is about).
    unlabelled = tmp_path / "unlabelled"
    write_case(unlabelled, "BraTS2021_00099", shape=TINY_SHAPE, seed=9, with_label=False)
    args = ["predict", "--checkpoint", str(run.checkpoint_path("best")), "--input",
            str(unlabelled), "--out", str(tmp_path / "pred"), "--cache", str(cache), "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "post-processing: " in out and "fitted for this checkpoint" in out
    assert main([*args, "--postprocess", "off", "--force"]) == 0
    assert "post-processing: off (thresholds WT/TC/ET 0.5/0.5/0.5); asked off" in \
        capsys.readouterr().out
