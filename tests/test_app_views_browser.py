"""The overview and the patient page in headless chromium at 1400 x 1000, as a new user meets
them: nothing fetched from the network, a table and labels that fit, the legend beside the 3-D
scene, the rotation kept across a toggle, and a click in 3-D moving the slice crosshair."""

from __future__ import annotations

import io
import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image
from test_app_browser import (
    PAGE_READY_MS,
    launch_chromium,
    shoot,
    streamlit_server,
    wait_until_drawn,
)

from tumorscope.render import style

WINDOW = {"width": 1400, "height": 1000}
SCENE = ".st-key-chart_3d .js-plotly-plot"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The same small results as test_app.py's, built once per session for both modules.
    from test_app import build_results

    return build_results(tmp_path_factory.getbasetemp() / "app_results")


def _redrawn(page, act) -> None:
    """Do ``act`` (a control change or a click) and wait until Streamlit has drawn the scene
    anew: a new chart element (Streamlit makes one whenever the figure changes)."""
    page.evaluate(f"() => {{ document.querySelector('{SCENE}').__old = true; }}")
    act()
    page.wait_for_function(
        f"() => {{ const gd = document.querySelector('{SCENE}');"
        " return gd && !gd.__old && gd._fullLayout && gd._fullLayout.scene; }",
        timeout=PAGE_READY_MS, polling=100)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
        timeout=PAGE_READY_MS, polling=200)


def _eye(page) -> np.ndarray:
    eye = page.evaluate(f"() => document.querySelector('{SCENE}')._fullLayout.scene.camera.eye")
    return np.array([eye[a] for a in "xyz"])


def _camera_stays(page, eye: np.ndarray) -> None:
    """The new chart takes the user's camera (within a few frames), and keeps it."""
    page.wait_for_function(
        f"e => {{ const c = document.querySelector('{SCENE}')._fullLayout.scene.camera.eye;"
        " return Math.hypot(c.x - e[0], c.y - e[1], c.z - e[2]) < 1e-3; }",
        arg=eye.tolist(), timeout=10_000, polling=100)
    page.wait_for_timeout(1000)
    np.testing.assert_allclose(_eye(page), eye, atol=1e-3)


def _cyan_share(png: bytes) -> float:
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return float((np.abs(image - np.array(style.CROSSHAIR_COLOUR.rgb)).max(axis=-1) < 50).mean())


@pytest.mark.browser
def test_a_new_user_sees_it_all_offline(run_dir: Path, tmp_path: Path) -> None:  # noqa: PLR0915
    from playwright.sync_api import sync_playwright

    out = Path(os.environ.get("TUMORSCOPE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    foreign: list[str] = []
    errors: list[str] = []
    with streamlit_server(run_dir, tmp_path / "streamlit.log") as url, \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=WINDOW)
            page.on("request", lambda r: foreign.append(r.url) if r.url.startswith("http")
                    and urlparse(r.url).hostname not in LOCAL_HOSTS else None)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            wait_until_drawn(page, "Cohort overview", plots=5)
            shoot(page, out / "app-1400-overview.png")
            # Every column of the patients table on screen: no sideways scrolling.
            scroll = page.evaluate("() => { const s = document.querySelector("
                                   "'[data-testid=stDataFrame] .dvn-scroller');"
                                   " return [s.scrollWidth, s.clientWidth]; }")
            assert scroll[0] <= scroll[1] + 1, scroll

            page.get_by_role("button", name="Open patient view").click()
            page.wait_for_url("**/patient", timeout=PAGE_READY_MS)
            wait_until_drawn(page, "Patient ", plots=1)
            shoot(page, out / "app-1400-patient.png")
            for label in ("Ground truth (wireframe)", "Prediction (solid)"):
                text = page.get_by_text(label, exact=True).first
                assert text.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), \
                    f"the toggle label {label!r} is cut"
            # The legend is under the scene, not over it.
            legend, scene = page.evaluate(
                f"() => {{ const gd = document.querySelector('{SCENE}');"
                " const r = e => { const b = e.getBoundingClientRect();"
                " return [b.left, b.top, b.right, b.bottom]; };"
                " return [r(gd.querySelector('.legend')), r(gd.querySelector('#scene'))]; }")
            assert legend[1] >= scene[3] - 1, (legend, scene)

            # A user turns the scene, then switches the truth off: the view stays turned.
            box = page.locator(SCENE).bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.45
            before = _eye(page)
            page.mouse.move(cx + 80, cy)
            page.mouse.down()
            page.mouse.move(cx + 220, cy + 50, steps=12)
            page.mouse.up()
            page.wait_for_timeout(800)
            turned = _eye(page)
            assert np.linalg.norm(turned - before) > 0.1
            # (The pointer leaves the scene while Streamlit swaps the chart: plotly.js, as it
            # is, can throw on a hover over a chart being replaced.)
            page.mouse.move(5, 5)
            _redrawn(page, page.get_by_text("Ground truth (wireframe)", exact=True).first.click)
            _camera_stays(page, turned)
            turned_png = page.locator(SCENE).screenshot()
            (out / "app-1400-scene-turned.png").write_bytes(turned_png)
            assert "Slice crosshair" not in page.inner_text("body")  # turning is no click
            assert _cyan_share(turned_png) < 1e-4

            # A click in the scene (held as a hand holds it) puts the slice crosshair there,
            # marked in the scene by cyan lines crossing at the point it reads out.
            def click() -> None:
                page.mouse.move(cx, cy)
                page.wait_for_timeout(300)
                page.mouse.down()
                page.wait_for_timeout(150)
                page.mouse.up()
                page.mouse.move(5, 5)

            _redrawn(page, click)
            _camera_stays(page, turned)
            readout = page.locator("[data-testid=stMarkdownContainer]",
                                   has_text="Slice crosshair at voxel").first.inner_text()
            world = np.array([float(v) for v in
                              readout.split("world (")[1].split(")")[0].split(",")])
            arms = np.array(page.evaluate(
                f"() => {{ const t = document.querySelector('{SCENE}')._fullData"
                ".find(t => t.meta === 'crosshair');"
                " return [0, 1, 2].map(i => [t.x[3 * i], t.y[3 * i], t.z[3 * i]]); }"))
            np.testing.assert_allclose([arms[1, 0], arms[0, 1], arms[0, 2]], world, atol=0.06)
            scene_png = page.locator(SCENE).screenshot()
            (out / "app-1400-scene-crosshair.png").write_bytes(scene_png)
            assert _cyan_share(scene_png) > _cyan_share(turned_png) + 1e-4
        finally:
            browser.close()
    assert not foreign, f"the app fetched from the network: {sorted(set(foreign))}"
    assert not errors, f"console errors: {errors}"
