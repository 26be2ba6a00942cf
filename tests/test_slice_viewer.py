"""The deeper slice viewer in real Streamlit sessions: heat maps and their threshold, zoom,
slice stepping, distances in mm, and the view-only mode for any NIfTI folder."""

from __future__ import annotations

import base64
import io
import json
import re
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from builders import small_label, write_case
from PIL import Image
from scipy import ndimage
from streamlit.testing.v1 import AppTest

from tumorscope.app.cli import main as cli_main
from tumorscope.core.data.labels import REGIONS
from tumorscope.core.store import Run
from tumorscope.render import style
from tumorscope.render.slices2d import colour_share

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "streamlit_app.py"
TIMEOUT_S = 120
SHAPE = (40, 44, 32)
"""Small cases on the BraTS affine (1 mm, LPS): RAS x = X-1-i, y = Y-1-j, z = k."""
SPACING = (0.9, 1.3, 2.0)
"""Voxel size of the view-only folder: every distance depends on it."""


def build_heat_run(base: Path) -> Path:
    """Two small cases, a 1-step tiny training, and its mirrored predictions saved with their
    probability and TTA-variance maps (the project's own commands); returns the run.

    Idempotent, so the browser test's module can share the folder this module builds."""
    data, train_run, run, cache = base / "D", base / "T", base / "R", base / "C"
    if (run / "cases.json").is_file():
        return run
    for i in range(2):
        write_case(data, f"BraTS2021_{i:05d}", shape=SHAPE, seed=i)
    assert cli_main(["train", "--config", "tiny-cpu", "--data", str(data), "--out",
                     str(train_run), "--set", "train.epochs=1", "--set",
                     "train.steps_per_epoch=1", "--set", "model.features=[4,8,16]", "--set",
                     "data.patch_size_vox=16", "--set", "data.spacing_mm=null", "--set",
                     "train.val_every_epochs=1", "--set", f"data.cache_dir={cache}",
                     "-q"]) == 0
    assert cli_main(["predict", "--checkpoint", str(train_run / "checkpoints" / "best.pt"),
                     "--input", str(data), "--out", str(run), "--cache", str(cache),
                     "--mirror", "--save-probabilities", "-q"]) == 0
    return run


@pytest.fixture(scope="session")
def heat_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_heat_run(tmp_path_factory.getbasetemp() / "heat_run")


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    """A folder of plain NIfTI files (no BraTS names): a scan and its mask, voxels SPACING."""
    folder = tmp_path / "scans"
    folder.mkdir()
    affine = np.diag([*SPACING, 1.0])
    rng = np.random.default_rng(0)
    image = (rng.random(SHAPE) * 100 + 50).astype(np.float32)
    nib.save(nib.Nifti1Image(image, affine), folder / "scan.nii.gz")
    nib.save(nib.Nifti1Image(small_label(SHAPE), affine), folder / "scan_mask.nii.gz")
    return folder


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def open_slices(run: Path, *, browser: bool = True) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.session_state["results_dir"] = str(run)
    at.session_state["sl_browser"] = browser  # False: the server draws every picture
    at.session_state["_goto"] = "slices"  # what the patient page's button asks for
    return ok(at.run())


def open_folder(folder: Path) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.session_state["vw_source"] = "folder"
    at.session_state["vw_dir"] = str(folder)
    return ok(at.run())


def views(at: AppTest) -> dict[str, np.ndarray]:
    """The pictures of the clickable views, by view, decoded from their PNG data URLs."""
    out = {}
    for element in at.main.get("component_instance"):
        if "click_" not in element.proto.id:
            continue
        src = json.loads(element.proto.json_args)["src"]
        png = base64.b64decode(src.split(",", 1)[1])
        view = element.proto.id.split("click_")[1].split("-")[0].removesuffix("_large")
        out[view] = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return out


def canvas_args(at: AppTest) -> dict[str, dict]:
    """What each browser-drawn view is told to draw, by view."""
    out = {}
    for element in at.main.get("component_instance"):
        if "canvas_" in element.proto.id:
            view = element.proto.id.split("canvas_")[1].split("-")[0].removesuffix("_large")
            out[view] = json.loads(element.proto.json_args)
    return out


def shown_views(at: AppTest) -> list[str]:
    """The views on the page, drawn by the server or in the browser, in page order."""
    out = []
    for element in at.main.get("component_instance"):
        for kind in ("click_", "canvas_"):
            if kind in element.proto.id:
                out.append(element.proto.id.split(kind)[1].split("-")[0].removesuffix("_large"))
    return out


def captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def position(at: AppTest) -> tuple[int, int, int]:
    return tuple(int(at.slider(key=k).value) for k in ("sl_x", "sl_y", "sl_z"))


def file_map(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


def click(at: AppTest, view: str, x_frac: float, y_frac: float, stamp: int) -> AppTest:
    """What the browser sends for a click at these fractions of a 300 x 300 px view."""
    at.session_state[f"click_{view}"] = {"x": x_frac * 300, "y": y_frac * 300, "width": 300,
                                         "height": 300, "unix_time": stamp}
    return ok(at.run())


# --------------------------------------------------------------------------------------------
# probability and TTA-disagreement heat maps


def test_threshold_slider_outlines_what_thresholding_the_file_gives(heat_run: Path) -> None:
    at = open_slices(heat_run)
    case = Run(heat_run).case_ids()[0]
    prob = file_map(Run(heat_run).probabilities_path(case))
    at.toggle(key="sl_crosshair").set_value(False).run()  # nothing drawn over the outline
    at.selectbox(key="sl_overlay").select("probability").run()
    at.selectbox(key="sl_region").select("TC").run()
    assert at.slider(key="sl_threshold").value == 0.5  # what the prediction was made at
    x, y, z = position(ok(at))
    # Thresholds that keep about 70 %, 30 % and 5 % of this slice's voxels seen by the net,
    # so each draws another outline; then one above every probability of the case.
    seen = prob[:, :, z, REGIONS.index("TC")]
    quantiles = np.quantile(seen[seen > 0.01], [0.3, 0.7, 0.95]).round(2)
    thresholds = [*sorted(set(float(q) for q in quantiles)), 0.99]
    assert len(thresholds) == 4 and prob[..., REGIONS.index("TC")].max() < 0.99
    shares = []
    for threshold in thresholds:
        at.slider(key="sl_threshold").set_value(threshold).run()
        tc = prob[..., REGIONS.index("TC")] > threshold
        # Slices of the file (LPS): axial is k = z, coronal j = Y-1-y, sagittal i = X-1-x.
        counts = {"axial": int(tc[:, :, z].sum()), "coronal": int(tc[:, SHAPE[1] - 1 - y].sum()),
                  "sagittal": int(tc[SHAPE[0] - 1 - x].sum())}
        line = next(c for c in captions(ok(at)).splitlines() if "dashed outline" in c)
        assert line == (f"TC p > {threshold:.2f} (dashed outline), voxels of the slice: "
                        + " · ".join(f"{v} {n:,}" for v, n in counts.items()))
        axial = views(at)["axial"]
        shares.append(colour_share(axial, style.PREDICTION_OUTLINE_COLOUR))
        # Every magenta pixel lies on the boundary of the thresholded file's mask: its voxel
        # is at most one voxel from a voxel of the other side. The axial view runs from the
        # patient's right and anterior (RAS x, y high to low), i.e. the LPS file's i and j
        # from 0 up: rows are j, columns i.
        mask = tc[:, :, z].T
        band = ndimage.binary_dilation(mask) & ~ndimage.binary_erosion(mask, border_value=1)
        rows, cols = np.nonzero((np.abs(axial.astype(int) - style.PREDICTION_OUTLINE_COLOUR.rgb)
                                 <= 60).all(axis=-1))
        r = (rows * mask.shape[0] // axial.shape[0]).clip(0, mask.shape[0] - 1)
        c = (cols * mask.shape[1] // axial.shape[1]).clip(0, mask.shape[1] - 1)
        assert band[r, c].all(), f"threshold {threshold}: magenta away from the outline"
        assert (shares[-1] > 0) == (counts["axial"] > 0) and counts["axial"] < mask.size
    assert len(set(shares)) == len(shares), "the outline did not follow the threshold"
    assert shares[-1] == 0 and min(shares[:-1]) > 0


def test_tta_disagreement_map_is_shown_and_read_out(heat_run: Path) -> None:
    at = open_slices(heat_run, browser=False)  # the prediction's picture, then the heat's
    case = Run(heat_run).case_ids()[0]
    variance = file_map(Run(heat_run).tta_variance_path(case))
    prob = file_map(Run(heat_run).probabilities_path(case))
    before = views(at)["axial"]
    at.selectbox(key="sl_overlay").select("variance").run()
    x, y, z = position(ok(at))
    voxel = (SHAPE[0] - 1 - x, SHAPE[1] - 1 - y, z, REGIONS.index("WT"))
    readout = next(c for c in captions(at).splitlines() if c.startswith("voxel (RAS)"))
    assert f"WT TTA variance {variance[voxel]:.3g}" in readout
    assert f"WT p {prob[voxel]:.3g}" in readout
    assert not np.array_equal(views(at)["axial"], before)
    assert any("2 × std" in m.value for m in at.markdown)  # its legend says what 1 means


def test_a_run_without_maps_says_how_to_make_them(heat_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "plain"
    data, cache = heat_run.parent / "D", heat_run.parent / "C"
    assert cli_main(["predict", "--checkpoint", str(heat_run.parent / "T" / "checkpoints" /
                                                     "best.pt"), "--input", str(data),
                     "--out", str(run), "--cache", str(cache), "-q"]) == 0
    at = open_slices(run)
    assert at.selectbox(key="sl_overlay").options == [
        "Prediction", "Ground truth", "Truth outline + prediction",
        "Disagreement (FP red, FN blue)", "None"]
    hint = next(c for c in captions(at).splitlines() if "No probability map" in c)
    assert "--save-probabilities" in hint and f"--out {run}" in hint and "--mirror" in hint


# --------------------------------------------------------------------------------------------
# zoom, stepping, clicks


def test_zoom_centres_on_the_crosshair_and_clicks_follow_it(heat_run: Path) -> None:
    at = open_slices(heat_run, browser=False)
    full = views(at)["axial"]
    at.select_slider(key="sl_zoom").set_value(2.0).run()
    zoomed = views(ok(at))["axial"]
    assert zoomed.shape == full.shape and not np.array_equal(zoomed, full)
    at.toggle(key="sl_browser").set_value(True).run()  # the browser's view: the same part
    port = canvas_args(ok(at))["axial"]["port"]
    assert port[2:] == [round(SHAPE[1] / 2), round(SHAPE[0] / 2)]
    x, y, z = position(at)
    click(at, "axial", 0.5, 0.5, stamp=1)  # the centre of a centred view: the crosshair
    assert all(abs(a - b) <= 1 for a, b in zip(position(at), (x, y, z), strict=True))
    # Top-left corner at 2x: half a field of view (SHAPE / 4 each way) to the patient's
    # right (higher x) and anterior (higher y) of the crosshair, the axial slice kept.
    moved = click(at, "axial", 0.0, 0.0, stamp=2)
    mx, my, mz = position(moved)
    assert mz == z
    assert abs(mx - min(SHAPE[0] - 1, x + SHAPE[0] // 4)) <= 1, (mx, x)
    assert abs(my - min(SHAPE[1] - 1, y + SHAPE[1] // 4)) <= 1, (my, y)


def test_step_buttons_move_one_slice_and_stop_at_the_ends(heat_run: Path) -> None:
    at = open_slices(heat_run)
    z = position(at)[2]
    at.button(key="btn_axial_up").click().run()
    assert position(ok(at))[2] == z + 1
    at.button(key="btn_axial_down").click().run()
    at.button(key="btn_axial_down").click().run()
    assert position(ok(at))[2] == z - 1
    at.slider(key="sl_z").set_value(SHAPE[2] - 1).run()
    at.button(key="btn_axial_up").click().run()
    assert position(ok(at))[2] == SHAPE[2] - 1
    x, y, z = position(at)
    at.segmented_control(key="sl_layout").set_value("one").run()
    at.selectbox(key="sl_big_view").select("coronal").run()
    assert shown_views(ok(at)) == ["coronal"]
    at.button(key="btn_coronal_up").click().run()
    assert at.slider(key="sl_y").value == y + 1
    at.segmented_control(key="sl_layout").set_value("three").run()
    assert shown_views(ok(at)) == ["axial", "coronal", "sagittal"]
    assert position(at) == (x, y + 1, z)  # the views not drawn kept their slices


# --------------------------------------------------------------------------------------------
# view-only mode


def test_a_nifti_folder_opens_view_only_with_no_score(scans: Path) -> None:
    at = open_folder(scans)
    assert [t.value for t in at.title] == ["View · scans"]
    assert at.selectbox(key="sl_overlay").options == ["Ground truth", "None"]
    text = " ".join([*(m.value for m in at.markdown), captions(at)])
    assert "no prediction and no scores" in text
    assert not re.search(r"Dice|HD95|metrics", text) and not at.dataframe
    assert "prediction:" not in captions(at) and "truth:" in captions(at)
    assert len(shown_views(at)) == 3
    assert [t.key for t in at.sidebar.text_input] == ["vw_dir"]  # no results folder, no run


def test_view_flag_opens_a_brats_case_folder(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    case = write_case(tmp_path / "data", "BraTS2021_00007", shape=SHAPE)
    monkeypatch.setattr(sys, "argv", ["streamlit_app.py", "--view", str(case)])
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run())
    assert [t.value for t in at.title] == ["View · BraTS2021_00007"]
    assert at.segmented_control(key="sl_modality").options == ["t1", "t1ce", "t2", "flair"]
    truth = np.asarray(nib.load(case / "BraTS2021_00007_seg.nii.gz").dataobj)
    x, y, z = position(at)  # opens on the largest tumour slices of the label
    assert truth[SHAPE[0] - 1 - x, SHAPE[1] - 1 - y, z] != 0  # the builder's LPS affine


def test_distance_between_two_clicks_is_mm_from_the_affine(scans: Path) -> None:
    at = open_folder(scans)
    at.segmented_control(key="sl_click").set_value("measure").run()
    before = position(ok(at))
    (ax, ay), (bx, by) = (0.2, 0.3), (0.7, 0.9)
    click(at, "axial", ax, ay, stamp=1)
    assert any("click the second point" in c for c in captions(at).splitlines())
    at = click(at, "axial", bx, by, stamp=2)
    assert position(at) == before  # measuring leaves the crosshair where it was
    # A click at fraction f of a view spanning n voxels is at voxel f * n - 0.5 from its
    # edge; axial columns run along x, rows along y, so the world distance is:
    expected = np.hypot((bx - ax) * SHAPE[0] * SPACING[0], (by - ay) * SHAPE[1] * SPACING[1])
    shown = next(m.value for m in at.markdown if "Distance" in m.value)
    assert re.search(r"Distance ([\d.]+) mm", shown).group(1) == f"{expected:.1f}"
    at.button(key="btn_clear_measure").click().run()
    assert not any("Distance" in m.value for m in ok(at).markdown)
