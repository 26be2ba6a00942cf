"""A 2-D run in the app: cohort, slice gallery and failure explorer of real slices, real
predictions written through the store as ``tumorscope predict`` writes them (no model: each
prediction is the truth perturbed in a known way), scored by the real evaluate."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from streamlit.testing.v1 import AppTest

from tumorscope.app import state
from tumorscope.core.data.slice_datasets import discover_slices, read_slice
from tumorscope.core.data.slice_preprocess import CLASS_NAMES
from tumorscope.core.data.synthetic_2d import make_figshare_demo
from tumorscope.core.fingerprint import fingerprint
from tumorscope.core.scoring.evaluate_slices import evaluate_slice_run, summarise_slices
from tumorscope.core.store import Run

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "streamlit_app.py"
TIMEOUT_S = 120

EMPTY = "20"
"""The slice predicted empty (its tumour is the smallest of the cohort): a missed tumour."""
FAR = "7"
"""The slice predicted right plus a blob far from the tumour."""
STALE = "12"
"""The slice whose prediction file is changed after evaluate."""
THRESHOLD = 0.5


def _misclassified(index: int) -> bool:
    return index % 4 == 1


def _probability(truth: np.ndarray, index: int, slice_id: str) -> np.ndarray:
    """A prediction's probability map: the truth shifted a few pixels and blurred, so that
    thresholding it at 0.5 gives a mask of Dice about 0.7-0.95; the chosen slices get none,
    or a far-away blob."""
    if slice_id == EMPTY:
        return (0.2 * ndimage.gaussian_filter(truth.astype(np.float32), 3)).astype(np.float32)
    shift = (index % 5 + 1) * 2
    moved = ndimage.shift(truth.astype(np.float32), (shift, -shift), order=0)
    if slice_id == FAR:
        rows, cols = np.nonzero(truth)
        # A disc where the tumour is not: mirrored through the image centre.
        r0, c0 = truth.shape[0] - rows.mean(), truth.shape[1] - cols.mean()
        rr, cc = np.ogrid[:truth.shape[0], :truth.shape[1]]
        disc = (rr - r0) ** 2 + (cc - c0) ** 2 < 18 ** 2
        assert not (disc & ndimage.binary_dilation(truth, iterations=3)).any()
        moved = np.maximum(moved, disc.astype(np.float32))
    return np.clip(ndimage.gaussian_filter(moved, 2.5), 0.0, 1.0).astype(np.float32)


def _type_probabilities(true_type: str, index: int) -> np.ndarray:
    k = CLASS_NAMES.index(true_type)
    chosen = (k + 1) % len(CLASS_NAMES) if _misclassified(index) else k
    p = np.full(len(CLASS_NAMES), 0.1, np.float32)
    p[chosen] = 0.55 + 0.04 * (index % 7)
    return p / p.sum()


def build_2d_run(base: Path) -> Path:
    """A synthetic figshare cohort (4 patients), one prediction per slice written through
    :func:`write_slice_prediction` as predict does, scored by :func:`evaluate_slice_run`;
    then the :data:`STALE` slice's prediction file is changed. Returns the run folder.
    Idempotent, so the browser test can share it."""
    from tumorscope.core.prediction.predict_slices import write_slice_prediction

    data, run_dir = base / "F", base / "R"
    if (run_dir / "metrics.csv").is_file():
        return run_dir
    make_figshare_demo(data, n_patients=4, seed=0, progress=False)
    ds = discover_slices(data)
    run = Run(run_dir)
    for index, ref in enumerate(ds.slices):
        s = read_slice(ref)
        truth = s.mask > 0
        provenance = {"sources": {"image": fingerprint(ref.path)},
                      "checkpoint": {"path": "none (test predictions)", "sha256": None},
                      "settings": {"track": "2d", "threshold": THRESHOLD}}
        write_slice_prediction(
            run, ref, s, _probability(truth, index, ref.slice_id)[None],
            threshold=THRESHOLD, regions=("tumour",), provenance=provenance,
            synthetic=ref.slice_id in ds.synthetic_ids,
            class_probabilities=_type_probabilities(s.tumour_name, index),
            started=time.perf_counter())
    report = evaluate_slice_run(run)
    assert not report.failed, report.failed
    _rewrite_prediction(run, STALE)
    return run_dir


def _rewrite_prediction(run: Run, slice_id: str) -> None:
    """Change a prediction file in place after it was scored (as a hand edit would)."""
    import nibabel as nib

    path = run.prediction_path(slice_id)
    img = nib.load(path)
    data = np.asarray(img.dataobj).copy()
    data[:, :, 0] = ndimage.binary_dilation(data[:, :, 0] > 0, iterations=6)
    nib.save(nib.Nifti1Image(data.astype(np.uint8), img.affine), path)


@pytest.fixture(scope="session")
def run_2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_2d_run(tmp_path_factory.getbasetemp() / "app_2d")


def build_3d_run(base: Path) -> Path:
    """A small 3-D run made by hand through the store (no model): three demo-sized cases,
    one predicted right, one predicted empty, one right plus a blob in a far corner; scored
    by the real evaluate with the lesion-wise BraTS 2023 scoring."""
    from builders import write_case

    from tumorscope.core.data.cases import MODALITIES
    from tumorscope.core.data.nifti import read_nifti, write_nifti
    from tumorscope.core.scoring.evaluate import evaluate_run
    from tumorscope.core.store import CaseRecord

    run = Run(base / "R3")
    for i, case_id in enumerate(("P_right", "P_empty", "P_far")):
        folder = write_case(base / "D3", case_id, seed=i)
        images = {m: next(folder.glob(f"*_{m}.nii.gz")) for m in MODALITIES}
        label = next(folder.glob("*_seg.nii.gz"))
        truth = read_nifti(label, dtype=np.uint8)
        pred = truth.data.copy()
        if case_id == "P_empty":
            pred[:] = 0
        elif case_id == "P_far":
            pred[:3, :3, :3] = 2
        write_nifti(run.prediction_path(case_id), pred, truth.affine)
        run.record_case(CaseRecord(case_id, images, label, metadata={"synthetic": True}))
    evaluate_run(run, scorings=["brats2023"], progress=False)
    return run.path


def app(results: Path | str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.session_state["results_dir"] = str(results)
    return at


def ok(at: AppTest) -> AppTest:
    """Fail with the page's own message if a page raised or showed an error box."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def plotly_specs(at: AppTest) -> dict[str, dict]:
    return {e.proto.id.rsplit("-", 1)[-1]: json.loads(e.proto.spec)
            for e in at.get("plotly_chart")}


def shown_slices(at: AppTest) -> list[str]:
    """The gallery's thumbnails in page order, by their "Open" buttons."""
    from tumorscope.app.pages.slices2d import OPEN_PREFIX

    return [b.key.removeprefix(OPEN_PREFIX) for b in at.button
            if b.key and b.key.startswith(OPEN_PREFIX)]


def image_urls(at: AppTest) -> list[str]:
    return [img.url for e in at.main.get("image") for img in e.proto.imgs]


def current_summary(run_dir: Path):
    return summarise_slices(Run(run_dir).current_metrics_rows())


def records(run_dir: Path) -> dict:
    return Run(run_dir).case_records()


def misclassified(run_dir: Path) -> set[str]:
    return {c for c, r in records(run_dir).items()
            if r.metadata["tumour_type"] != r.prediction["predicted_type"]}


# --------------------------------------------------------------------------------------------
# cohort


def test_cohort_page_shows_the_run_s_slice_and_type_scores(run_2d: Path) -> None:
    from sklearn.metrics import roc_auc_score

    at = ok(app(run_2d).run())
    assert [t.value for t in at.title] == ["Cohort overview"]
    assert at.sidebar.selectbox(key="case_id").label == "Slice"
    summary = current_summary(run_2d)
    tiles = {m.label: m.value for m in at.metric}
    tumour = summary.regions["tumour"]
    assert summary.hd95_unit == "px"  # figshare files record no pixel size
    assert tiles["mean Dice tumour"] == f"{tumour['dice']:.3f}"
    assert tiles["mean IoU tumour"] == f"{tumour['jaccard']:.3f}"
    assert tiles["median HD95 tumour (px)"] == f"{tumour['hd95_median']:.1f}"
    types = summary.types
    assert types is not None and 0 < types.accuracy < 1
    assert tiles["accuracy"] == f"{types.accuracy:.3f}"
    assert tiles["macro F1"] == f"{types.macro_f1:.3f}"
    assert tiles["slices typed"] == str(types.n)

    per_class = at.dataframe[0].value.set_index("type")
    recs = records(run_2d)
    scored = sorted({str(r["case_id"]) for r in Run(run_2d).current_metrics_rows()})
    for name, scores in types.per_class.items():
        row = per_class.loc[name]
        for column, key in (("precision", "precision"), ("recall", "recall"), ("F1", "f1")):
            assert row[column] == pytest.approx(scores[key], nan_ok=True)
        assert row["support"] == scores["support"]
        truth = [recs[c].metadata["tumour_type"] == name for c in scored]
        if any(truth) and not all(truth):
            expected = roc_auc_score(truth, [recs[c].prediction["type_probabilities"][name]
                                             for c in scored])
            assert row["ROC-AUC"] == pytest.approx(expected)
        else:
            assert math.isnan(row["ROC-AUC"])

    charts = plotly_specs(at)
    assert charts["chart_2d_confusion"]["data"][0]["z"] == [list(r) for r in types.confusion]
    assert charts["chart_2d_confusion"]["data"][0]["y"] == list(CLASS_NAMES)
    dice_points = {s for t in charts["chart_2d_dice"]["data"] for s in t["text"]}
    assert dice_points == set(scored) and STALE not in dice_points
    assert "pixels" in charts["chart_2d_hd95"]["layout"]["title"]["text"]
    assert charts["chart_2d_hd95"]["layout"]["yaxis"]["title"]["text"] == "HD95 (px)"


def test_a_changed_slice_prediction_shows_no_stale_score(run_2d: Path) -> None:
    at = ok(app(run_2d).run())
    warnings = [w.value for w in at.warning]
    assert any(f"{STALE}: stale" in w and "no current score" in w for w in warnings), warnings
    table = at.dataframe[1].value
    assert set(table["slice"]) == set(Run(run_2d).case_ids())
    row = table[table["slice"] == STALE].iloc[0]
    assert math.isnan(row["Dice"]) and not row["scored"]  # its old score is not shown
    old = next(r for r in Run(run_2d).metrics_rows() if str(r["case_id"]) == STALE)
    assert old["dice"] > 0  # there is an old score in metrics.csv, left out
    assert table[table["slice"] != STALE]["Dice"].notna().all()
    assert current_summary(run_2d).regions["tumour"]["n"] == len(table) - 1
    # Worst first, as a reader looks for failures.
    assert table["slice"].iloc[0] == EMPTY and table["slice"].iloc[-1] == STALE


# --------------------------------------------------------------------------------------------
# gallery


def open_gallery(at: AppTest) -> AppTest:
    at = ok(at.button(key="btn_open_gallery").click().run())
    assert [t.value for t in at.title][0] == "Slice gallery"
    return at


def test_gallery_filters_by_type_and_misclassification(run_2d: Path) -> None:
    at = open_gallery(ok(app(run_2d).run()))
    everything = shown_slices(at)
    assert sorted(everything) == sorted(Run(run_2d).case_ids())
    dice = {str(r["case_id"]): r["dice"] for r in Run(run_2d).current_metrics_rows()}
    scored = [s for s in everything if s in dice]
    assert scored == sorted(scored, key=dice.__getitem__)  # worst Dice first
    assert everything[-1] == STALE  # no current score: last
    captions = " ".join(m.value for m in at.markdown)
    assert f"**{STALE}** · no current score" in captions

    at = ok(at.toggle(key="sl_2d_wrong").set_value(True).run())
    wrong = misclassified(run_2d)
    assert wrong and set(shown_slices(at)) == wrong
    assert all("✗" in m.value for m in at.markdown if m.value.startswith("**")
               and "→" in m.value)

    at = ok(at.toggle(key="sl_2d_wrong").set_value(False).run())
    at = ok(at.multiselect(key="sl_2d_true").select("glioma").run())
    gliomas = {c for c, r in records(run_2d).items() if r.metadata["tumour_type"] == "glioma"}
    assert set(shown_slices(at)) == gliomas
    at = ok(at.multiselect(key="sl_2d_pred").select("pituitary").run())
    assert set(shown_slices(at)) == {c for c in gliomas if records(run_2d)[c].prediction[
        "predicted_type"] == "pituitary"} != set()


def test_opening_a_slice_shows_it_large_and_the_threshold_moves_its_outline(
        run_2d: Path) -> None:
    import nibabel as nib

    at = open_gallery(ok(app(run_2d).run()))
    at = ok(at.button(key=f"g2_open_{FAR}").click().run())
    assert at.session_state["case_id"] == FAR
    assert any(s.value == f"Slice {FAR}" for s in at.subheader)
    run = Run(run_2d)
    saved = np.asarray(nib.load(run.prediction_path(FAR)).dataobj)[:, :, 0] > 0
    prob = np.asarray(nib.load(run.probabilities_path(FAR)).dataobj)[:, :, 0, 0]

    def readout(at: AppTest) -> str:
        return next(m.value for m in at.markdown if m.value.startswith("**Prediction at"))

    assert readout(at).startswith(f"**Prediction at p ≥ 0.50: {int(saved.sum())} px**")
    before = image_urls(at)[-1]
    at = ok(at.slider(key="sl_2d_threshold").set_value(0.9).run())
    assert readout(at).startswith(f"**Prediction at p ≥ 0.90: {int((prob >= 0.9).sum())} px**")
    assert (prob >= 0.9).sum() < saved.sum()
    assert image_urls(at)[-1] != before  # the outline was redrawn
    text = " ".join(m.value for m in at.markdown)
    assert "false positive away from the tumour" in text
    record = records(run_2d)[FAR]
    assert f"Predicted type **{record.prediction['predicted_type']}**" in text
    assert any(p.proto.text.startswith(f"{name} ") for p in at.get("progress")
               for name in CLASS_NAMES)


# --------------------------------------------------------------------------------------------
# failure explorer


def test_failure_explorer_names_why_each_slice_fails(run_2d: Path) -> None:
    at = ok(ok(app(run_2d).run()).button(key="btn_open_failures").click().run())
    assert [t.value for t in at.title] == ["Failure explorer"]
    table = at.dataframe[0].value.set_index("slice")
    assert STALE not in table.index  # no current score: not judged as current
    assert table.loc[EMPTY, "reasons"].split("; ")[0].startswith("missed")
    assert "nothing predicted" in table.loc[EMPTY, "details"]
    assert "false positive away from the tumour" in table.loc[FAR, "reasons"].split("; ")
    assert "missed" not in table.loc[FAR, "reasons"]
    wrong = misclassified(run_2d) - {STALE}
    assert {s for s in table.index if "wrong type" in table.loc[s, "reasons"]} == wrong
    at = ok(at.multiselect(key="ov_fx_reasons").select("wrong type").run())
    assert set(at.dataframe[0].value["slice"]) == wrong
    assert {m.label: m.value for m in at.metric}["wrong type"] == str(len(wrong))


def test_failure_explorer_of_a_3d_run_reads_metrics_and_lesions(tmp_path: Path) -> None:
    run_dir = build_3d_run(tmp_path)
    at = ok(app(run_dir).run())
    assert at.sidebar.selectbox(key="case_id").label == "Patient"
    at.session_state[state.GOTO_KEY] = "failures"  # as a page's button asks for it
    at = ok(at.run())
    assert [t.value for t in at.title] == ["Failure explorer"]
    table = at.dataframe[0].value.set_index("patient")
    assert table.loc["P_empty", "reasons"].startswith("missed")
    assert "false positive away from the tumour" in table.loc["P_far", "reasons"]
    assert table.loc["P_right", "reasons"] == "—"
    assert table.index[0] == "P_empty"  # worst mean Dice first


def test_the_2d_pages_start_without_torch() -> None:
    code = ("import sys, tumorscope.app.slice_run, tumorscope.app.pages.cohort2d, "
            "tumorscope.app.pages.slices2d, tumorscope.app.pages.failures, "
            "tumorscope.render.slices2d, tumorscope.core.scoring.failures; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False", out.stderr



def build_brats_slice_run(base: Path) -> Path:
    """Three BraTS 2020 ``.h5`` slices (1 mm pixels, WT/TC/ET labels, no tumour type) written
    as the Kaggle release has them, predicted through the store by a model with no type head
    (each region's truth blurred), and scored."""
    import h5py

    from tumorscope.core.data.labels import REGIONS, region_mask
    from tumorscope.core.prediction.predict_slices import write_slice_prediction

    data = base / "B"
    data.mkdir(parents=True)
    rr, cc = np.ogrid[:240, :240]
    for s in range(3):
        r = (rr - 100 - 10 * s) ** 2 + (cc - 120) ** 2
        label = np.zeros((240, 240), np.uint8)
        label[r < 30 ** 2], label[r < 16 ** 2], label[r < 8 ** 2] = 2, 4, 1
        image = np.random.default_rng(s).random((240, 240, 4)).astype(np.float32) + 1.0
        image[r < 30 ** 2] += 2.0
        mask = np.stack([label == v for v in (1, 2, 4)], axis=-1).astype(np.uint8)
        with h5py.File(data / f"volume_{7 + s}_slice_80.h5", "w") as fh:
            fh["image"], fh["mask"] = image, mask
    run = Run(base / "RB")
    for ref in discover_slices(data).slices:
        s = read_slice(ref)
        prob = np.stack([ndimage.gaussian_filter(region_mask(s.mask, r).astype(np.float32), 2)
                         for r in REGIONS])
        write_slice_prediction(
            run, ref, s, np.roll(prob, 3, axis=2), threshold=THRESHOLD, regions=REGIONS,
            provenance={"sources": {"image": fingerprint(ref.path)},
                        "settings": {"track": "2d", "threshold": THRESHOLD}},
            synthetic=False, class_probabilities=None, started=time.perf_counter())
    assert not evaluate_slice_run(run).failed
    return run.path


def test_a_brats_slice_run_shows_its_regions_in_millimetres(tmp_path: Path) -> None:
    run_dir = build_brats_slice_run(tmp_path)
    summary = current_summary(run_dir)
    assert summary.hd95_unit == "mm" and list(summary.regions) == ["WT", "TC", "ET"]
    at = ok(app(run_dir).run())
    tiles = {m.label: m.value for m in at.metric}
    for region, scores in summary.regions.items():
        assert tiles[f"mean Dice {region}"] == f"{scores['dice']:.3f}"
        assert tiles[f"median HD95 {region} (mm)"] == f"{scores['hd95_median']:.1f}"
    assert "accuracy" not in tiles  # no type head: no type scores
    assert any("predicts no tumour type" in i.value for i in at.info)
    table = at.dataframe[0].value
    assert {"HD95 (mm)", "true area (mm²)", "Dice TC", "Dice ET"} <= set(table.columns)

    at = open_gallery(at)
    assert len(shown_slices(at)) == 3
    at = ok(at.segmented_control(key="sl_2d_region").set_value("ET").run())
    readout = next(m.value for m in at.markdown if m.value.startswith("**Prediction at"))
    assert "mm²" in readout
    at = ok(ok(app(run_dir).run()).button(key="btn_open_failures").click().run())
    assert len(at.dataframe[0].value) == 3
