"""Comparing two runs: real predictions written as NIfTI, scored by the real ``evaluate``,
compared through the Python API, the ``tumorscope compare`` command and the app's page.

Run B's predictions are the truth shifted by one voxel, run A's by two to four, so B's Dice
is higher (and its HD95 lower) on every case with a tumour in the region: a known sign.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from builders import predict_from_truth, write_case
from scipy import stats
from streamlit.testing.v1 import AppTest

from tumorscope.app import state
from tumorscope.app.cli import main
from tumorscope.core.errors import ConfigError, TumorscopeError
from tumorscope.core.scoring.compare import (
    bootstrap_ci,
    compare_rows,
    compare_runs,
    pairs_csv,
    run_rows,
)
from tumorscope.core.store import Run

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "streamlit_app.py"

CASES = [f"BraTS2021_{i:05d}" for i in range(10)]
NO_ET = CASES[7]  # its truth has no enhancing tumour; B predicts a speck of it anyway
STALE_IN_A = CASES[6]  # A's prediction deleted after scoring: the store calls its rows stale
STALE_IN_B = CASES[5]  # marked stale in B's metrics.csv, as evaluate does when it cannot score
ONLY_A, ONLY_B = CASES[8], CASES[9]
SHARED = [c for c in CASES[:8] if c not in (STALE_IN_A, STALE_IN_B)]


@dataclass(frozen=True)
class Runs:
    results: Path
    a: Run
    b: Run
    other_truth: Run
    other_cases: Run
    data: Path


def _predict(run: Run, data: Path, ids: list[str], *, shift: dict[str, int]) -> None:
    """Write each case's truth rolled by ``shift`` voxels as its prediction, then evaluate."""
    def moved(case_id: str, truth: np.ndarray) -> np.ndarray:
        pred = np.roll(truth, shift[case_id], axis=CASES.index(case_id) % 3)
        if run.name == "model_b" and case_id == NO_ET:
            pred[11:14, 13:16, 11:14] = 4  # an enhancing speck the truth does not have
        return pred
    predict_from_truth(run, data, ids, moved)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    base = tmp_path_factory.mktemp("compare")
    data = base / "data"
    for i, case_id in enumerate(CASES):
        folder = write_case(data, case_id, seed=i)
        if case_id == NO_ET:
            seg = folder / f"{case_id}_seg.nii.gz"
            img = nib.load(seg)
            label = np.asarray(img.dataobj).copy()
            label[label == 4] = 1
            nib.save(nib.Nifti1Image(label, img.affine), seg)
    results = base / "results"
    a, b = Run(results / "model_a"), Run(results / "model_b")
    _predict(a, data, CASES[:9], shift={c: 2 + i % 3 for i, c in enumerate(CASES)})
    _predict(b, data, [*CASES[:8], ONLY_B], shift=dict.fromkeys(CASES, 1))
    a.prediction_path(STALE_IN_A).unlink()
    b.merge_metrics({}, {STALE_IN_B: "its truth was relabelled (test)"})

    # The same case ids scored against another truth: one voxel of case 0 relabelled.
    other_data = base / "other_data"
    shutil.copytree(data, other_data)
    seg = other_data / CASES[0] / f"{CASES[0]}_seg.nii.gz"
    img = nib.load(seg)
    label = np.asarray(img.dataobj).copy()
    label[0, 0, 0] = 2
    nib.save(nib.Nifti1Image(label, img.affine), seg)
    other_truth = Run(results / "other_truth")
    _predict(other_truth, other_data, CASES[:3], shift=dict.fromkeys(CASES, 1))
    other_cases = Run(results / "other_cases")
    _predict(other_cases, data, [ONLY_B], shift=dict.fromkeys(CASES, 1))
    return Runs(results, a, b, other_truth, other_cases, data)


def _current(run: Run, column: str) -> dict[tuple[str, str], float]:
    """(case, region) -> value of the run's current rows, read straight from the store."""
    return {(str(r["case_id"]), str(r["region"])): float(r[column])
            for r in run.current_metrics_rows()}


# --------------------------------------------------------------------------------------------
# Python API


def test_pairs_are_the_two_runs_current_scores_and_b_is_better(runs: Runs) -> None:
    cmp = compare_runs(runs.a, runs.b, metric="dice", n_resamples=2000)
    dice_a, dice_b = _current(runs.a, "dice"), _current(runs.b, "dice")
    assert cmp.shared_cases == tuple(SHARED)
    assert {(p.case_id, p.region) for p in cmp.pairs} == {
        (c, r) for c in SHARED for r in ("WT", "TC", "ET")}
    for p in cmp.pairs:
        assert p.a == dice_a[p.case_id, p.region] and p.b == dice_b[p.case_id, p.region]
        assert p.difference == pytest.approx(p.b - p.a)
        assert p.dice_a == p.a and p.hd95_a == _current(runs.a, "hd95_monai_mm")[
            p.case_id, p.region]
    for region in ("WT", "TC"):
        s = cmp.summary("legacy", region)
        diffs = [p.difference for p in cmp.pairs if p.region == region]
        assert s.n == len(SHARED) and all(d > 0 for d in diffs)
        assert s.b_better == len(SHARED) and s.a_better == 0
        assert s.mean_a == pytest.approx(np.mean([p.a for p in cmp.pairs if p.region == region]))
        assert s.mean_difference == pytest.approx(np.mean(diffs))
        assert s.mean_difference == pytest.approx(s.mean_b - s.mean_a)
    # ET: B's speck where the truth has none costs it that case (Dice 1 -> 0).
    et = {p.case_id: p for p in cmp.pairs if p.region == "ET"}
    assert et[NO_ET].a == 1.0 and et[NO_ET].b == 0.0 and et[NO_ET].better == "A"
    assert cmp.summary("legacy", "ET").a_better == 1


def test_wilcoxon_p_is_scipys_on_the_same_differences(runs: Runs) -> None:
    cmp = compare_runs(runs.a, runs.b, metric="hd95", hd95="pooled", n_resamples=500)
    assert all(p.column == "hd95_pooled_mm" for p in cmp.pairs) and not cmp.higher_is_better
    for s in cmp.summaries:
        diffs = [p.difference for p in cmp.pairs if p.region == s.region]
        assert s.p_value == pytest.approx(stats.wilcoxon(diffs).pvalue, rel=1e-12)
        assert 0 < s.p_value < 1
    wt = cmp.summary("legacy", "WT")
    assert wt.mean_difference < 0 and wt.b_better == wt.n  # lower HD95 is better


def test_bootstrap_interval_holds_the_mean_and_repeats_with_the_seed(runs: Runs) -> None:
    first = compare_runs(runs.a, runs.b, n_resamples=3000, seed=7)
    again = compare_runs(runs.a, runs.b, n_resamples=3000, seed=7)
    assert first.summaries == again.summaries
    for s in first.summaries:
        assert s.ci_low <= s.mean_difference <= s.ci_high
        assert s.ci_low < s.ci_high
        diffs = [p.difference for p in first.pairs if p.region == s.region]
        assert (s.ci_low, s.ci_high) == bootstrap_ci(diffs, n_resamples=3000, seed=7)
    # Every WT difference is positive, so every resampled mean is: the interval is above 0.
    assert first.summary("legacy", "WT").ci_low > 0
    # Few distinct differences give few distinct resampled means; many give a seed-bound CI.
    spread = np.random.default_rng(0).normal(0.05, 0.1, 40).tolist()
    assert bootstrap_ci(spread, seed=7) == bootstrap_ci(spread, seed=7) != bootstrap_ci(
        spread, seed=8)
    wide = bootstrap_ci([-1.0, 0.5, 2.0, -0.3], n_resamples=2000, confidence=0.99)
    narrow = bootstrap_ci([-1.0, 0.5, 2.0, -0.3], n_resamples=2000, confidence=0.5)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_stale_rows_are_left_out_and_unpaired_cases_listed(runs: Runs) -> None:
    cmp = compare_runs(runs.a, runs.b, n_resamples=200)
    assert (cmp.stale_rows_a, cmp.stale_cases_a) == (3, 1)
    assert (cmp.stale_rows_b, cmp.stale_cases_b) == (3, 1)
    assert not {STALE_IN_A, STALE_IN_B} & {p.case_id for p in cmp.pairs}
    only_a = {u.case_id: u.reason for u in cmp.only_a}
    only_b = {u.case_id: u.reason for u in cmp.only_b}
    assert set(only_a) == {STALE_IN_B, ONLY_A} and set(only_b) == {STALE_IN_A, ONLY_B}
    assert "relabelled" in only_a[STALE_IN_B] and only_a[ONLY_A] == "not scored in B"
    assert "no longer in the run" in only_b[STALE_IN_A]
    # The rows of the store with the status it gives them: what compare_runs pairs.
    statuses = {str(r["case_id"]): r["status"] for r in run_rows(runs.a)}
    assert statuses[STALE_IN_A].startswith("stale") and statuses[CASES[0]] == "ok"


def test_infinite_and_undefined_values_are_excluded_and_counted(runs: Runs) -> None:
    cmp = compare_runs(runs.a, runs.b, metric="hd95", scorings=["brats2025"], n_resamples=500)
    et = {p.case_id: p for p in cmp.pairs if p.region == "ET"}
    # No ET in truth: A (no ET predicted) is undefined, B (a false positive) infinite.
    assert math.isnan(et[NO_ET].a) and et[NO_ET].b == math.inf
    assert et[NO_ET].excluded == "A: undefined (NaN); B: infinite"
    assert et[NO_ET].difference is None and et[NO_ET].better is None
    s = cmp.summary("brats2025", "ET")
    assert (s.n, s.n_excluded) == (len(SHARED) - 1, 1)
    kept = [p for p in et.values() if p.case_id != NO_ET]
    assert s.mean_b == pytest.approx(np.mean([p.b for p in kept]))
    assert math.isfinite(s.ci_low) and math.isfinite(s.p_value)
    text = pairs_csv(cmp)
    row = next(r for r in csv.DictReader(io.StringIO(text))
               if r["case_id"] == NO_ET and r["region"] == "ET")
    assert (row["A"], row["B"], row["B_minus_A"]) == ("nan", "inf", "")


def test_zero_differences_and_too_few_pairs_are_defined(runs: Runs) -> None:
    rows = run_rows(runs.a)
    same = compare_rows(rows, rows, n_resamples=200)
    for s in same.summaries:
        assert s.mean_difference == 0 and s.p_value == 1.0 and "all differences are zero" in \
            s.test and (s.ci_low, s.ci_high) == (0.0, 0.0) and s.ties == s.n
    one = [r for r in rows if r["case_id"] == CASES[0]]
    single = compare_rows(one, [{**r, "dice": r["dice"] / 2} for r in one], n_resamples=200)
    wt = single.summary("legacy", "WT")
    assert wt.n == 1 and wt.p_value is None and wt.ci_low is None and "not tested" in wt.test
    assert wt.mean_difference == pytest.approx(-one[0]["dice"] / 2)


def test_refusals_name_both_runs(runs: Runs) -> None:
    with pytest.raises(TumorscopeError, match="share no scored case") as err:
        compare_runs(runs.a, runs.other_cases)
    assert str(runs.a.path) in str(err.value) and str(runs.other_cases.path) in str(err.value)
    with pytest.raises(TumorscopeError, match="different ground truths") as err:
        compare_runs(runs.a, runs.other_truth)
    assert CASES[0] in str(err.value) and str(runs.other_truth.path) in str(err.value)
    with pytest.raises(ConfigError, match="not a legacy score"):
        compare_runs(runs.a, runs.b, metric="rq")
    legacy_only = [{k: v for k, v in r.items() if not k.startswith("brats2025")}
                   for r in run_rows(runs.b)]
    with pytest.raises(ConfigError, match="no brats2025_rq score"):
        compare_rows(run_rows(runs.a), legacy_only, metric="rq", scorings=["brats2025"])
    with pytest.raises(ConfigError, match="resamples"):
        compare_runs(runs.a, runs.b, n_resamples=0)


# --------------------------------------------------------------------------------------------
# command line


def test_compare_command_prints_the_summary_and_writes_the_csv(
        runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tables" / "paired.csv"
    code = main(["compare", str(runs.a.path), str(runs.b.path), "--scoring", "legacy",
                 "brats2023", "--resamples", "500", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    cmp = compare_runs(runs.a, runs.b, scorings=["legacy", "brats2023"], n_resamples=500)
    for s in cmp.summaries:
        line = next(x for x in printed.splitlines() if x.startswith(f"{s.region:<8}{s.n:>5}")
                    and f"{s.mean_difference:+.4f}" in x and f"{s.mean_a:.4f}" in x)
        assert f"[{s.ci_low:+.4f}, {s.ci_high:+.4f}]" in line and f"{s.p_value:.4f}" in line
    assert "legacy: dice" in printed and "brats2023: brats2023_dice" in printed
    assert (f"only in A: 2 case(s): {STALE_IN_B} (not current in B: stale: its truth was "
            f"relabelled (test)), {ONLY_A} (not scored in B)") in printed
    assert f"only in B: 2 case(s): {STALE_IN_A} (not current in A: stale: its prediction" \
        in printed and f"{ONLY_B} (not scored in A)" in printed
    assert "95% CI" in printed and "500 resamples, seed 0" in printed
    assert "left out, not current: 3 row(s) of 1 case(s) in A" in printed
    with out.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(cmp.pairs) == 2 * 3 * len(SHARED)
    first = cmp.pairs[0]
    assert (table[0]["case_id"], table[0]["region"], float(table[0]["A"]),
            float(table[0]["B"])) == (first.case_id, first.region, first.a, first.b)
    assert float(table[0]["B_minus_A"]) == first.difference
    assert not list(out.parent.glob(".*"))  # written atomically: no temporary left


@pytest.mark.parametrize("args, expected", [
    (["{a}", "{nowhere}"], "does not exist"),
    (["{a}", "{empty}"], "no run found"),
    (["{a}", "{other_cases}"], "share no scored case"),
    (["{a}", "{other_truth}"], "different ground truths"),
    (["{a}", "{b}", "--metric", "volume"], "argument --metric: invalid choice"),
    (["{a}", "{b}", "--metric", "rq"], "not a legacy score"),
    (["{a}", "{b}", "--scoring", "brats2023", "--hd95", "monai"], "add scoring legacy"),
    (["{a}", "{b}", "--resamples", "5"], "argument --resamples"),
    (["{a}", "{b}", "--out", "{empty}"], "is a folder; --out names the CSV file"),
])
def test_bad_input_is_one_line(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               args: list[str], expected: str) -> None:
    (tmp_path / "empty").mkdir()
    paths = {"a": runs.a.path, "b": runs.b.path, "other_cases": runs.other_cases.path,
             "other_truth": runs.other_truth.path, "nowhere": tmp_path / "nowhere",
             "empty": tmp_path / "empty"}
    argv = ["compare", *(a.format(**paths) for a in args)]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and expected in captured.err, captured.err
    assert "Traceback" not in captured.err


# --------------------------------------------------------------------------------------------
# app


def test_compare_page_shows_the_pairs_and_opens_a_patient(runs: Runs) -> None:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["results_dir"] = str(runs.results)
    at.session_state[state.GOTO_KEY] = "compare"  # what a page's "open" button requests
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    assert [t.value for t in at.title] == ["Compare runs"]
    assert at.selectbox(key="cmp_a").value == "model_a"
    assert at.selectbox(key="cmp_b").value == "model_b"
    cmp = compare_runs(runs.a, runs.b)
    summary = at.dataframe[0].value  # the summary comes first (a table without selection)
    assert list(summary["region"]) == ["WT", "TC", "ET"]
    for s, (_, row) in zip(cmp.summaries, summary.iterrows(), strict=True):
        assert row["n"] == s.n and row["mean B − A"] == pytest.approx(s.mean_difference)
        assert row["Wilcoxon p"] == pytest.approx(s.p_value)
        assert row["CI low"] == pytest.approx(s.ci_low)
    pairs = at.dataframe(key="cmp_pairs").value
    assert len(pairs) == len(cmp.pairs)
    assert pairs["B − A"].iloc[0] == min(p.difference for p in cmp.pairs)  # B's worst first
    spec = next(e for e in at.get("plotly_chart") if e.proto.id.endswith("cmp_chart"))
    import json

    traces = json.loads(spec.proto.spec)["data"]
    assert [t["name"] for t in traces] == ["identity (A = B)", "WT", "TC", "ET"]
    wt = traces[1]
    assert sorted(wt["x"]) == sorted(p.a for p in cmp.pairs if p.region == "WT")
    assert wt["marker"]["color"] == "#2eb84c"
    assert any(STALE_IN_B in w.value and ONLY_A in w.value for w in at.warning)

    # A lesion-wise scoring with an excluded pair, then a run with another truth: refused.
    at.segmented_control(key="cmp_scoring").set_value("brats2025").run()
    at.selectbox(key="cmp_metric").select("hd95").run()
    assert not at.error and any("not drawn" in c.value for c in at.caption)
    at.selectbox(key="cmp_b").select("other_truth").run()
    assert any("different ground truths" in e.value for e in at.error)
    at.selectbox(key="cmp_b").select("model_b").run()
    assert not at.error and at.selectbox(key="cmp_metric").value == "hd95"

    at.selectbox(key="cmp_pick").select(SHARED[1])
    at.segmented_control(key="cmp_open_in").set_value("B")
    at.button(key="cmp_btn_open").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    assert [t.value for t in at.title] == [f"Patient {SHARED[1]}"]
    assert at.session_state["run_name"] == "model_b"
    assert at.session_state["case_id"] == SHARED[1]
    # Back on the compare page, its choices are as they were left.
    at.session_state[state.GOTO_KEY] = "compare"
    at.run()
    assert [t.value for t in at.title] == ["Compare runs"] and not at.error
    assert at.segmented_control(key="cmp_scoring").value == "brats2025"
    assert at.selectbox(key="cmp_metric").value == "hd95"
