"""Mirroring TTA chosen on validation by the post-processing fit, and predict --mirror auto."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from builders import TINY_SHAPE, train_tiny, write_case

from tumorscope.app.cli import main
from tumorscope.core.data.labels import REGION_LABELS, REGIONS
from tumorscope.core.errors import ConfigError
from tumorscope.core.fingerprint import fingerprint
from tumorscope.core.prediction.postprocess import PostProcess, apply_postprocess
from tumorscope.core.store import Run
from tumorscope.core.training import postprocess_fit
from tumorscope.core.training.postprocess_fit import (
    MIRRORED_DIR,
    UNPROCESSED_DIR,
    FitResult,
    RegionFit,
    fit_postprocess,
    record_fit,
)

ALL_AXES, NO_AXES = [0, 1, 2], []


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path, Path]:
    """The tiny run, with 2 of its 4 cases for validation."""
    run, root, cache = train_tiny(tmp_path_factory, "mirror", n_cases=4,
                                  overrides=["data.val_fraction=0.5"])
    assert len(run.split()["val"]) == 2
    return run, root, cache


def _fitted(run: Run) -> dict:
    return yaml.safe_load(run.config_path.read_text())["postprocess"]["fitted"]


def _legacy_objective(sub_run: Path, root: Path, case_ids: list[str],
                      post: PostProcess) -> float:
    """Mean over WT/TC/ET of the mean whole-volume Dice, from the sub-run's files."""
    per_region: dict[str, list[float]] = {r: [] for r in REGIONS}
    for case_id in case_ids:
        pred = np.asarray(nib.load(sub_run / "predictions" / f"{case_id}.nii.gz").dataobj)
        truth = np.asarray(nib.load(root / case_id / f"{case_id}_seg.nii.gz").dataobj)
        pred = apply_postprocess(pred.astype(np.uint8), spacing_mm=(1, 1, 1), postprocess=post)
        for region in REGIONS:
            p, t = np.isin(pred, REGION_LABELS[region]), np.isin(truth, REGION_LABELS[region])
            total = int(p.sum() + t.sum())
            per_region[region].append(1.0 if total == 0 else 2 * int((p & t).sum()) / total)
    return float(np.mean([np.mean(v) for v in per_region.values()]))


def _record(run: Run, *, mirror: bool, sha256: str | None = None,
            searched: bool = True) -> None:
    """A fit record written by hand through the public recording function."""
    best = run.checkpoint_path("best")
    regions = tuple(RegionFit(r, 0.5, 0.6, 0.0) for r in REGIONS)
    record_fit(run, FitResult(
        PostProcess(), "brats2023", 0.5, 0.6, regions, tuple(run.split()["val"]), best,
        sha256 or fingerprint(best)["sha256"], fitted_at="now", mirror=mirror,
        mirror_searched=searched,
        mirror_scores={"off": (0.5, 0.6), "on": (0.55, 0.7 if mirror else 0.58)} if searched
        else {"off": (0.5, 0.6)}))


def _settings(run_dir: Path) -> dict[str, dict]:
    return {c: r.provenance for c, r in Run(run_dir).case_records().items()}


def test_fit_chooses_what_scoring_the_two_validation_predictions_gives(
    trained: tuple[Run, Path, Path]
) -> None:
    run, root, cache = trained
    val = run.split()["val"]
    result = fit_postprocess(run.path, objective="legacy", cache_dir=cache)
    fitted = _fitted(run)
    assert fitted["search_version"] == postprocess_fit.SEARCH_VERSION
    assert fitted["mirror_searched"] is True and isinstance(fitted["mirror"], bool)
    assert set(fitted["mirror_scores"]) == {"off", "on"}
    chosen = "on" if fitted["mirror"] else "off"
    assert fitted["mirror_scores"][chosen] == {"before": fitted["before"],
                                               "after": fitted["after"]}

    # Both sub-runs hold the same validation cases, mirrored exactly in the second.
    for name, axes in ((UNPROCESSED_DIR, NO_AXES), (MIRRORED_DIR, ALL_AXES)):
        provenance = _settings(run.path / name)
        assert sorted(provenance) == sorted(val)
        assert all(p["settings"]["mirror_axes"] == axes for p in provenance.values())

    # Each setting's predictions get their own post-processing search (the public search
    # on the sub-run's files, here); the four objectives computed from the files, and the
    # choice they give. The recorded post-processing is the chosen setting's.
    posts = {}
    for m, d in (("off", UNPROCESSED_DIR), ("on", MIRRORED_DIR)):
        cases, _, _ = postprocess_fit.read_scored_cases(Run(run.path / d), val)
        posts[m] = postprocess_fit.search_postprocess(
            cases, objective="legacy", base=PostProcess())[0]
    scores = {(m, pp): _legacy_objective(run.path / d, root, val,
                                         PostProcess() if pp == "before" else posts[m])
              for m, d in (("off", UNPROCESSED_DIR), ("on", MIRRORED_DIR))
              for pp in ("before", "after")}
    for (m, pp), value in scores.items():
        assert fitted["mirror_scores"][m][pp] == pytest.approx(value, abs=1e-5), (m, pp)
    assert fitted["mirror"] is (scores["on", "after"] > scores["off", "after"] + 1e-9)
    assert result.postprocess == posts["on" if fitted["mirror"] else "off"]
    assert result.mirror_line() == (
        f"mirroring TTA: {'on' if fitted['mirror'] else 'off'} (validation objective "
        f"{scores['off', 'after']:.4f} -> {scores['on', 'after']:.4f})")

    # Nothing changed: the record is reused, mirrored predictions too.
    again = fit_postprocess(run.path, objective="legacy", cache_dir=cache)
    assert again.reused and again.mirror is result.mirror
    assert again.mirror_scores["on"][1] == pytest.approx(scores["on", "after"], abs=1e-5)

    # Without the mirror search the fit is redone and records mirroring off, not tried.
    plain = fit_postprocess(run.path, objective="legacy", cache_dir=cache,
                            mirror_search=False)
    assert not plain.reused and plain.mirror is False
    assert _fitted(run)["mirror_searched"] is False
    assert set(_fitted(run)["mirror_scores"]) == {"off"}
    assert "not tried" in plain.mirror_line()


@pytest.mark.parametrize("gain", [0.5, -0.5])
def test_forced_choice_is_recorded_and_predict_auto_follows_it(
    trained: tuple[Run, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], gain: float
) -> None:
    run, _, cache = trained
    real = postprocess_fit.search_postprocess
    calls: list[int] = []

    def shifted(cases, **kw):  # the second search is the mirrored predictions'
        post, (before, after), regions, tried = real(cases, **kw)
        calls.append(1)
        return post, (before, after + (gain if len(calls) == 2 else 0.0)), regions, tried

    monkeypatch.setattr(postprocess_fit, "search_postprocess", shifted)
    result = fit_postprocess(run.path, cache_dir=cache, refit=True)
    assert result.mirror is (gain > 0) and _fitted(run)["mirror"] is (gain > 0)
    assert result.mirror_scores["on"][1] == pytest.approx(
        _fitted(run)["mirror_scores"]["on"]["after"], abs=1e-6)

    unlabelled = tmp_path / "unlabelled"
    write_case(unlabelled, "BraTS2021_00099", shape=TINY_SHAPE, seed=9, with_label=False)
    out = tmp_path / "pred"
    args = ["predict", "--checkpoint", str(run.checkpoint_path("best")), "--input",
            str(unlabelled), "--out", str(out), "--cache", str(cache), "-q"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    (provenance,) = _settings(out).values()
    assert provenance["settings"]["mirror_axes"] == (ALL_AXES if gain > 0 else NO_AXES)
    assert provenance["mirror_source"] == "fitted"
    want = "mirroring on (chosen on validation: +" if gain > 0 else \
        "mirroring off (chosen on validation: mirroring would give -"
    assert want in printed, printed

    # --mirror on / off (bare --mirror is on) override the record, and say they were asked.
    for flag, axes in ((["--mirror", "off"], NO_AXES), (["--mirror"], ALL_AXES),
                       (["--mirror", "on"], ALL_AXES)):
        assert main([*args, *flag, "--force"]) == 0
        assert f"mirroring {'on' if axes else 'off'} (asked)" in capsys.readouterr().out
        (provenance,) = _settings(out).values()
        assert provenance["settings"]["mirror_axes"] == axes
        assert provenance["mirror_source"] == "asked"


def test_a_changed_choice_predicts_again_instead_of_reusing(
    trained: tuple[Run, Path, Path], tmp_path: Path
) -> None:
    from tumorscope.core.prediction.predict import predict_run

    run, root, cache = trained
    best = run.checkpoint_path("best")
    case = run.split()["val"][0]
    kwargs = {"cache_dir": cache, "progress": False, "case_ids": [case]}

    # The training run predicting itself: a changed choice is a changed setting.
    _record(run, mirror=False)
    first = predict_run(best, root, run.path, **kwargs)
    assert first.mirror.source == "fitted" and not first.mirror.on
    assert run.case_records()[case].provenance["settings"]["mirror_axes"] == NO_AXES
    _record(run, mirror=True)
    second = predict_run(best, root, run.path, **kwargs)
    assert second.predicted == {case: "settings changed"} and not second.reused
    assert run.case_records()[case].provenance["settings"]["mirror_axes"] == ALL_AXES
    assert predict_run(best, root, run.path, **kwargs).reused == [case]

    # Another run: the change is refused, naming both, unless --force replaces it.
    out = tmp_path / "pred"
    predict_run(best, root, out, **kwargs)
    _record(run, mirror=False)
    with pytest.raises(ConfigError, match="mirroring on.*mirroring off"):
        predict_run(best, root, out, **kwargs)
    forced = predict_run(best, root, out, force=True, **kwargs)
    assert forced.predicted == {case: "forced"}
    assert _settings(out)[case]["settings"]["mirror_axes"] == NO_AXES


def test_auto_is_off_for_a_checkpoint_the_fit_was_not_made_for(
    trained: tuple[Run, Path, Path], tmp_path: Path
) -> None:
    import shutil

    from tumorscope.core.models.checkpoints import load_model
    from tumorscope.core.prediction.predict import checkpoint_mirror, predict_run

    run, root, cache = trained
    best = run.checkpoint_path("best")
    kwargs = {"cache_dir": cache, "progress": False, "case_ids": [run.split()["val"][0]]}
    _record(run, mirror=True, sha256="0" * 64)
    report = predict_run(best, root, tmp_path / "other", **kwargs)
    assert not report.mirror.on and report.mirror.source == "default"
    assert "for another checkpoint" in report.mirror.describe()
    (provenance,) = _settings(tmp_path / "other").values()
    assert provenance["settings"]["mirror_axes"] == NO_AXES
    assert provenance["mirror_source"] == "default"

    _record(run, mirror=True)  # for best.pt: a copy outside the run has no fit
    copy = tmp_path / "elsewhere" / "best.pt"
    copy.parent.mkdir()
    shutil.copy(best, copy)
    assert checkpoint_mirror(load_model(copy)).on is False
    assert checkpoint_mirror(load_model(best)).on is True
    _record(run, mirror=False, searched=False)  # a fit that did not try mirroring
    choice = checkpoint_mirror(load_model(best))
    assert (choice.on, choice.source) == (False, "default") and "did not try" in choice.why


def test_a_bad_mirror_value_is_one_line(trained: tuple[Run, Path, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from tumorscope.core.prediction.predict import predict_run

    run, root, _ = trained
    with pytest.raises(SystemExit) as info:
        main(["predict", "--checkpoint", str(run.checkpoint_path("best")), "--input",
              str(root), "--out", str(tmp_path / "p"), "--mirror", "maybe"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "--mirror: must be auto, on or off, got 'maybe'" in err
    with pytest.raises(ConfigError, match=r"--mirror must be one of \['auto', 'on', 'off'\]"):
        predict_run(run.checkpoint_path("best"), root, tmp_path / "p", mirror="maybe")
