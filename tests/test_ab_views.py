"""A/B views of one patient: two runs' real NIfTI predictions (the truth shifted by three
voxels in run A and by one in run B, so only-A voxels lie on one side and only-B on the
other), through the pictures and layers render makes, the patient and slice pages
(``AppTest``), the compare page's "open", and headless chromium."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from builders import predict_from_truth, write_case
from PIL import Image
from streamlit.testing.v1 import AppTest

from tumorscope.app import run_b, state
from tumorscope.core.data.geometry import to_ras
from tumorscope.core.data.labels import REGIONS, agreement_label, region_mask
from tumorscope.core.store import Run
from tumorscope.render import slices, style
from tumorscope.render.layers import SceneOptions, scene_layers
from tumorscope.render.mesh import difference_meshes, region_meshes

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "streamlit_app.py"
CASES = ["BraTS2021_00000", "BraTS2021_00001"]
SHIFT_A, SHIFT_B = 3, 1
"""Voxels each run's prediction is the truth moved by, along the file's first axis."""


@dataclass(frozen=True)
class AB:
    results: Path
    a: Run
    b: Run
    data: Path


def _predict(run: Run, data: Path, shift: int) -> None:
    """Each case's truth rolled by ``shift`` voxels as the run's prediction, then scored."""
    predict_from_truth(run, data, CASES, lambda _, truth: np.roll(truth, shift, axis=0))


@pytest.fixture(scope="module")
def ab(tmp_path_factory: pytest.TempPathFactory) -> AB:
    base = tmp_path_factory.mktemp("ab")
    data = base / "data"
    for i, case_id in enumerate(CASES):
        write_case(data, case_id, seed=i)
    results = base / "results"
    a, b = Run(results / "model_a"), Run(results / "model_b")
    _predict(a, data, SHIFT_A)
    _predict(b, data, SHIFT_B)
    return AB(results, a, b, data)


def _labels(ab: AB, case_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, truth) RAS label arrays of a case and their RAS affine."""
    def ras(path: Path) -> tuple[np.ndarray, np.ndarray]:
        img = nib.load(path)
        vol = to_ras(np.asarray(img.dataobj), img.affine)
        return vol.data, vol.affine
    a, affine = ras(ab.a.prediction_path(case_id))
    b, _ = ras(ab.b.prediction_path(case_id))
    truth, _ = ras(ab.data / case_id / f"{case_id}_seg.nii.gz")
    return a, b, truth, affine


# --------------------------------------------------------------------------------------------
# render and core


def test_agreement_and_differences_split_each_region(ab: AB) -> None:
    a, b, _, affine = _labels(ab, CASES[0])
    agree = agreement_label(a, b)
    for region in REGIONS:
        in_a, in_b = region_mask(a, region), region_mask(b, region)
        np.testing.assert_array_equal(region_mask(agree, region), in_a & in_b)
        only = difference_meshes(a, b, affine, name=region)
        both = region_meshes(agree, affine, names=[region])[region]
        # Each surface encloses about the voxels it stands for (1 mm voxels: mm^3 = voxels).
        for key, count in (("A_only", (in_a & ~in_b).sum()), ("B_only", (in_b & ~in_a).sum()),
                           ("both", (in_a & in_b).sum())):
            mesh = both if key == "both" else only[key]
            assert count > 0 and mesh.n_points > 0, (region, key)
            assert 0.4 * count < abs(mesh.volume) < 1.6 * count, (region, key, mesh.volume)
    with pytest.raises(ValueError, match="same grid"):
        agreement_label(a, b[:-1])


def _count(rgb: np.ndarray, colour: style.Colour) -> int:
    return int((np.abs(rgb.astype(int) - np.array(colour.rgb)).max(axis=-1) == 0).sum())


def test_slice_pictures_colour_both_only_a_and_only_b(ab: AB) -> None:
    a, b, truth, _ = _labels(ab, CASES[0])
    image = np.full(a.shape, 0.5, np.float32)
    xyz = tuple(s // 2 for s in a.shape)
    px = 10  # screen pixels per voxel: display_px spans the longest side (28 voxels)
    common = {"spacing_mm": (1, 1, 1), "level": 0.5, "width": 1.0, "crosshair": False,
              "display_px": 28 * px, "region": "WT", "alpha": 1.0}
    plane = {k: slices.slice_2d(v, "axial", xyz[2])
             for k, v in (("a", region_mask(a, "WT")), ("b", region_mask(b, "WT")))}
    rgb = slices.render_view(image, "axial", xyz, prediction=a, prediction_b=b,
                             overlay="ab_disagreement", **common)
    expected = {"A_only": plane["a"] & ~plane["b"], "B_only": plane["b"] & ~plane["a"]}
    for key, mask in expected.items():
        assert _count(rgb, style.ERROR_COLOURS[key]) == mask.sum() * px * px, key
    # Where both predict WT, the region's colour half-blended over the grey image.
    grey = slices.render_view(image, "axial", xyz, overlay="none", **common)
    both = (np.abs(rgb.astype(int) - grey).max(axis=-1) > 0).sum() \
        - sum(mask.sum() for mask in expected.values()) * px * px
    assert both == (plane["a"] & plane["b"]).sum() * px * px
    # Outlines: A orange, B violet over it; with the truth, its outline in the neutral colour.
    rgb = slices.render_view(image, "axial", xyz, prediction=a, prediction_b=b, truth=truth,
                             overlay="ab_outlines", **common)
    for colour in (style.RUN_COLOURS["A"], style.RUN_COLOURS["B"], style.TRUTH_NEUTRAL_COLOUR):
        assert _count(rgb, colour) > 0, colour
    # Without run B the A/B overlays fall back to run A's prediction.
    alone = slices.render_view(image, "axial", xyz, prediction=a, overlay="ab_outlines",
                               **common)
    plain = slices.render_view(image, "axial", xyz, prediction=a, overlay="prediction",
                               **common)
    np.testing.assert_array_equal(alone, plain)


def test_scene_names_the_agreement_and_each_runs_own_voxels(ab: AB) -> None:
    a, b, truth, affine = _labels(ab, CASES[0])
    agree = region_meshes(agreement_label(a, b), affine)
    only = difference_meshes(a, b, affine, name="TC")
    options = SceneOptions(prediction_name="A and B agree", run_names=("model_a", "model_b"))
    layers = scene_layers(region_meshes(truth, affine), agree, errors=only, options=options)
    legends = {la.name: la.legend for la in layers}
    assert legends["prediction WT"] == "A and B agree WT"
    assert legends["A_only"] == "only in run A (model_a)"
    assert legends["B_only"] == "only in run B (model_b)"
    colours = {la.name: la.colour for la in layers}
    assert colours["A_only"] == style.ERROR_COLOURS["A_only"] != colours["prediction TC"]
    with pytest.raises(ValueError, match="run_names"):
        SceneOptions(run_names=("only one",))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# app


def _app(ab: AB, page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["results_dir"] = str(ab.results)
    at.session_state["run_name"] = "model_a"
    at.session_state["case_id"] = CASES[0]
    at.session_state[state.GOTO_KEY] = page
    return at


def _traces(at: AppTest) -> list[dict]:
    spec = next(e for e in at.get("plotly_chart") if e.proto.id.endswith("chart_3d"))
    return json.loads(spec.proto.spec)["data"]


def test_patient_page_shows_a_b_and_where_they_differ(ab: AB) -> None:
    at = _app(ab, "patient")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    assert at.selectbox(key=run_b.AB_KEY).options == [run_b.NONE, "model_b"]
    names = [t["name"] for t in _traces(at)]
    assert not any("only in run" in n for n in names)
    assert any(n.startswith("prediction WT") for n in names)

    at.selectbox(key=run_b.AB_KEY).select("model_b").run()
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    traces = _traces(at)
    names = [t["name"] for t in traces]
    assert "only in run A (model_a)" in names and "only in run B (model_b)" in names, names
    assert "A and B agree WT" in names and not any(n.startswith("prediction") for n in names)
    by_name = {t["name"]: t for t in traces}
    assert by_name["only in run A (model_a)"]["color"] == style.ERROR_COLOURS["A_only"].hex
    text = " ".join(c.value for c in at.caption)
    wt_a = ab.a.dice_by_region(CASES[0])[CASES[0]]["WT"]
    wt_b = ab.b.dice_by_region(CASES[0])[CASES[0]]["WT"]
    assert wt_b > wt_a  # B moved the truth less
    assert f"A (model_a): WT {wt_a:.3f}" in text and f"B (model_b): WT {wt_b:.3f}" in text, text
    # The difference surfaces follow the region chosen; switched off, they go.
    at.selectbox(key="p3d_error_region").select("ET").run()
    assert not at.error
    at.toggle(key="p3d_ab_diff").set_value(False).run()
    assert not any("only in run" in t["name"] for t in _traces(at))


def test_slice_viewer_offers_the_a_b_overlays_with_both_names(ab: AB) -> None:
    at = _app(ab, "slices")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    assert "ab_outlines" not in at.selectbox(key="sl_overlay").options
    at.selectbox(key=run_b.AB_KEY).select("model_b").run()
    overlay = at.selectbox(key="sl_overlay")
    assert overlay.options[:2] == ["A and B outlines", "Where A and B disagree"]
    overlay.select("ab_disagreement").run()
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    legend = " ".join(m.value for m in at.markdown)
    for text in ("only A: model_a", "only B: model_b", style.ERROR_COLOURS["B_only"].hex):
        assert text in legend, text


def test_compare_page_opens_the_patient_compared_with_the_other_run(ab: AB) -> None:
    at = _app(ab, "compare")
    at.run()
    assert not at.exception and not at.error
    at.selectbox(key="cmp_pick").select(CASES[1])
    at.segmented_control(key="cmp_open_in").set_value("A")
    at.button(key="cmp_btn_open").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    assert [t.value for t in at.title] == [f"Patient {CASES[1]}"]
    assert at.session_state["run_name"] == "model_a"
    assert at.selectbox(key=run_b.AB_KEY).value == "model_b"
    assert any(t["name"] == "only in run B (model_b)" for t in _traces(at))


# --------------------------------------------------------------------------------------------
# browser


def _share(png: bytes, colour: style.Colour, tolerance: int = 40) -> float:
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return float((np.abs(image - np.array(colour.rgb)).max(axis=-1) < tolerance).mean())


@pytest.mark.browser
def test_a_b_scene_in_the_browser_shows_orange_and_violet(ab: AB, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright
    from test_app_browser import launch_chromium, streamlit_server, wait_until_drawn
    from test_app_views_browser import SCENE, WINDOW

    out = Path(os.environ.get("TUMORSCOPE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    with streamlit_server(ab.results, tmp_path / "streamlit.log") as url, \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=WINDOW)
            page.goto(url)
            wait_until_drawn(page, "Cohort overview", plots=1)
            page.get_by_role("button", name="Open patient view").click()
            page.wait_for_url("**/patient", timeout=120_000)
            wait_until_drawn(page, "Patient ", plots=1)
            before = page.locator(SCENE).screenshot()
            box = page.get_by_role("combobox", name="Compare with run B")
            box.click()
            page.get_by_role("option", name="model_b").click()
            page.get_by_text("only in run A", exact=False).first.wait_for(timeout=120_000)
            page.wait_for_function(
                "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                timeout=120_000, polling=200)
            page.wait_for_timeout(1500)
            after = page.locator(SCENE).screenshot()
            (out / "app-1400-patient-ab.png").write_bytes(after)
        finally:
            browser.close()
    for key in ("A_only", "B_only"):
        colour = style.ERROR_COLOURS[key]
        assert _share(before, colour) < 1e-4, key
        assert _share(after, colour) > 1e-3, key
