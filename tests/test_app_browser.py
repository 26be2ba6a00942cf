"""The app in a real browser: ``streamlit run`` driven by Debian's headless chromium.

Screenshots go to ``$TUMORSCOPE_SCREENSHOTS`` (else the test's temp folder). The README's
pictures come from the same code run against the demo results::

    python tests/test_app_browser.py --results runs/demo --out docs

The server starts in the repository, given the results folder relative to it when it is inside
(so the pictures show ``runs/demo`` in the results field, not this machine's layout).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "streamlit_app.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1600, "height": 1250}
SERVER_START_S = 60
PAGE_READY_MS = 150_000  # a fresh server meshes an untrained net's noisy predictions first
ERROR_WORDS = ("Traceback", "Error")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def streamlit_server(results: Path, log_path: Path) -> Iterator[str]:
    """``streamlit run streamlit_app.py -- --results RESULTS`` on a free port; yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(APP),
               "--server.headless", "true", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
               "--", "--results", str(results)]
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"streamlit exited with {server.returncode}:\n"
                            f"{log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer on {url} within {SERVER_START_S} s")
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def launch_chromium(playwright: Any) -> Any:
    if not CHROMIUM.is_file():
        pytest.fail(f"chromium is missing at {CHROMIUM}: install Debian's package "
                    "(apt-get install chromium); this test never downloads a browser")
    # Chromium keeps crash reports and settings under $HOME: give it a home of its own, so
    # the suite writes nothing outside its temp folders.
    home = tempfile.mkdtemp(prefix="chromium-home-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)  # once the browser is gone
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                      env={**os.environ, "HOME": home,
                                           "XDG_CONFIG_HOME": f"{home}/.config",
                                           "XDG_CACHE_HOME": f"{home}/.cache"})


def wait_until_drawn(page: Any, heading: str, *, plots: int) -> None:
    """Heading shown, the script finished, and ``plots`` plotly charts painted."""
    page.get_by_role("heading", name=heading).first.wait_for(timeout=PAGE_READY_MS)
    page.wait_for_function(
        "n => document.querySelectorAll('.js-plotly-plot').length >= n", arg=plots,
        timeout=PAGE_READY_MS)
    # Streamlit shows its status widget ("Running…") while the script runs.
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
        timeout=PAGE_READY_MS, polling=250)
    page.wait_for_timeout(2500)  # WebGL scenes paint a frame or two after the DOM is there


def click_first_row(page: Any) -> None:
    """Tick the first row's selection box of the page's first table (a canvas grid)."""
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    row_px = 35  # Streamlit's default header and row height
    page.mouse.click(box["x"] + 16, box["y"] + row_px + row_px / 2)


CANVAS_FRAMES = "iframe[title*='slice_canvas']"
SERVER_FRAMES = "iframe[title*='image_coordinates']"
DRAWN_JS = "() => window.tumorscope && window.tumorscope.drawn > 0"


def slice_views(page: Any) -> list[Any]:
    """The three clickable slice views once painted: canvases drawn in the browser (the
    default), or the server's pictures (Fast scroll off)."""
    page.wait_for_function(
        "([a, b]) => document.querySelectorAll(a).length >= 3 || "
        "document.querySelectorAll(b).length >= 3", arg=[CANVAS_FRAMES, SERVER_FRAMES],
        timeout=PAGE_READY_MS)
    if page.locator(CANVAS_FRAMES).count() >= 3:
        frames = [page.frame_locator(CANVAS_FRAMES).nth(i) for i in range(3)]
        for i in range(3):
            frame_of(page, i).wait_for_function(DRAWN_JS, timeout=PAGE_READY_MS)
        return [f.locator("canvas#view") for f in frames]
    frames = page.locator(SERVER_FRAMES)
    views = [frames.nth(i).content_frame.locator("img#image") for i in range(3)]
    for view in views:
        view.wait_for(timeout=PAGE_READY_MS)
        page.wait_for_function("el => el.complete && el.naturalWidth > 0",
                               arg=view.element_handle(), timeout=PAGE_READY_MS)
    return views


def crosshair_voxel(page: Any) -> str:
    text = page.get_by_text("voxel (RAS)").first.inner_text()
    return text.split("voxel (RAS)")[1].split(")")[0].strip() + ")"


def grid_shape(results: Path) -> tuple[int, ...]:
    """Voxel grid of the results' predictions (one grid for the whole cohort here)."""
    import nibabel as nib

    return nib.load(next(results.rglob("predictions/*.nii.gz"))).shape


def click_moves_crosshair(page: Any, axial: Any, shape: tuple[int, ...]) -> None:
    """A person clicks near the axial view's top-left corner: the crosshair jumps there."""
    before = crosshair_voxel(page)
    box = axial.bounding_box()
    axial.click(position={"x": box["width"] * 0.2, "y": box["height"] * 0.25})
    page.wait_for_function(
        "old => !document.body.innerText.includes('voxel (RAS) ' + old)", arg=before,
        timeout=30_000)
    x, y, z = (int(v) for v in crosshair_voxel(page).strip(" ()").split(","))
    # Top-left of an axial view is the patient's right (high x) and anterior (high y); the
    # axial slice itself stays. The RAS grid is the file's up to flips, so sizes are equal.
    assert z == int(before.strip(" ()").split(",")[2])
    assert abs(x - (shape[0] - 1 - int(0.2 * shape[0]))) <= 1, (x, shape)
    assert abs(y - (shape[1] - 1 - int(0.25 * shape[1]))) <= 1, (y, shape)


def shoot(page: Any, path: Path) -> np.ndarray:
    page.screenshot(path=str(path))
    return np.asarray(Image.open(path).convert("RGB"))


def check_content(pixels: np.ndarray, text: str, headings: list[str]) -> None:
    assert pixels.std() > 12, "the page looks blank"
    for word in ERROR_WORDS:
        assert word not in text, f"{word!r} on the page:\n{text[:2000]}"
    for heading in headings:
        assert heading in text, f"heading {heading!r} missing from the page"


def green_share(pixels: np.ndarray) -> float:
    """Share of clearly green pixels: render.style's WT colour is green, nothing else is."""
    rgb = pixels.astype(int)
    green = (rgb[..., 1] > rgb[..., 0] + 30) & (rgb[..., 1] > rgb[..., 2] + 30)
    return float(green.mean())


def browse(results: Path, out: Path, log_path: Path) -> dict[str, Path]:  # noqa: PLR0915
    """Overview, then the patient page via its button, then the slices; one PNG each."""
    from playwright.sync_api import sync_playwright

    shots = {}
    with streamlit_server(results, log_path) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url)
            wait_until_drawn(page, "Cohort overview", plots=5)
            shots["overview"] = out / "app-overview.png"
            check_content(shoot(page, shots["overview"]), page.inner_text("body"),
                          ["Cohort overview", "Patients", "Scores per region", "Training"])
            lesion_wise = page.locator("button", has_text="lesion-wise BraTS 2023")
            if lesion_wise.count():  # the run has lesion-wise scores: show them beside
                lesion_wise.first.click()
                page.get_by_text("FN / FP lesions WT").first.wait_for(timeout=PAGE_READY_MS)
                wait_until_drawn(page, "Cohort overview", plots=7)
                shots["overview_lesions"] = out / "app-overview-lesions.png"
                check_content(shoot(page, shots["overview_lesions"]), page.inner_text("body"),
                              ["Cohort overview", "Lesion-wise Dice (brats2023)"])

            click_first_row(page)  # a person clicks a patient in the table to open it
            page.wait_for_url("**/patient", timeout=PAGE_READY_MS)
            wait_until_drawn(page, "Patient ", plots=1)
            shots["patient"] = out / "app-patient.png"
            check_content(shoot(page, shots["patient"]), page.inner_text("body"),
                          ["Patient ", "Regions", "Lesions", "Scores", "Downloads"])
            scene = page.locator(".js-plotly-plot").first.screenshot()
            assert green_share(np.asarray(Image.open(io.BytesIO(scene)).convert("RGB"))) \
                > 0.002, "the 3-D view shows no tumour surface"
            if "Lesions as scored by" in page.inner_text("body"):
                # A person ticks the first lesion: the 3-D view turns to it, the crosshair too.
                click_first_row(page)  # the lesion list is the page's first table
                page.get_by_text("Centred on").first.wait_for(timeout=PAGE_READY_MS)
                wait_until_drawn(page, "Patient ", plots=1)
                shots["patient_lesion"] = out / "app-patient-lesion.png"
                check_content(shoot(page, shots["patient_lesion"]), page.inner_text("body"),
                              ["Patient ", "Lesions", "Centred on"])

            page.get_by_role("button", name="Slice viewer").first.click()
            page.wait_for_url("**/slices", timeout=PAGE_READY_MS)
            wait_until_drawn(page, "Slices", plots=0)
            views = slice_views(page)
            shots["slices"] = out / "app-slices.png"
            check_content(shoot(page, shots["slices"]), page.inner_text("body"),
                          ["Slices", "axial", "coronal", "sagittal"])
            click_moves_crosshair(page, views[0], grid_shape(REPO / results))
        finally:
            browser.close()
    return shots


@pytest.mark.browser
def test_pages_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("the playwright package is missing: pip install playwright (only the "
                    "Python package; the test drives /usr/bin/chromium)")
    out = Path(os.environ.get("TUMORSCOPE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    shots = browse(run_dir, out, tmp_path / "streamlit.log")
    assert all(p.is_file() and p.stat().st_size > 10_000 for p in shots.values())


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The same small results as test_app.py's, built once per session for both modules.
    from test_app import build_results

    return build_results(tmp_path_factory.getbasetemp() / "app_results")


@pytest.fixture(scope="session")
def run_2d_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The same 2-D run as test_app_2d.py's, built once per session for both modules.
    from test_app_2d import build_2d_run

    return build_2d_run(tmp_path_factory.getbasetemp() / "app_2d")


@pytest.fixture(scope="session")
def heat_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The same mirrored run with probability and TTA-variance maps as test_slice_viewer.py's.
    from test_slice_viewer import build_heat_run

    return build_heat_run(tmp_path_factory.getbasetemp() / "heat_run")


def view_picture(page: Any, index: int, old_src: str | None = None) -> np.ndarray:
    """The ``index``-th slice view's picture once loaded (and, given ``old_src``, changed),
    as the screen shows it. The views' frames are asked afresh each time: Streamlit mounts
    a new one when controls above them appear or go."""
    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + PAGE_READY_MS / 1000
    src = ""
    while time.monotonic() < deadline:
        try:
            src = picture_src(page, index)
            image = page.locator("iframe[title*='image_coordinates']").nth(index) \
                .content_frame.locator("img#image")
            loaded = image.evaluate("i => i.complete && i.naturalWidth > 0", timeout=5000)
            idle = page.evaluate(
                "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
            if src and src != old_src and loaded and idle:
                return np.asarray(Image.open(io.BytesIO(image.screenshot())).convert("RGB"))
        except PlaywrightError:  # the frame was replaced while being read: ask again
            pass
        time.sleep(0.25)
    pytest.fail(f"slice view {index} showed no new picture within {PAGE_READY_MS} ms "
                f"(still {'the old one' if src == old_src else 'loading'})")


def picture_src(page: Any, index: int) -> str:
    """The ``index``-th slice view's picture (a data URL)."""
    return page.locator("iframe[title*='image_coordinates']").nth(index).content_frame \
        .locator("img#image").get_attribute("src", timeout=PAGE_READY_MS) or ""


def canvas_pixels(view: Any) -> np.ndarray:
    """What a browser-drawn view's canvas holds, (H, W, 3) at its own resolution."""
    w, h, data = view.evaluate(
        "c => [c.width, c.height, Array.from(c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data)]")
    return np.asarray(data, np.uint8).reshape(h, w, 4)[..., :3]


def frame_of(page: Any, index: int) -> Any:
    """The ``index``-th browser-drawn view's frame (asked afresh: Streamlit may remount it)."""
    page.wait_for_function(f"n => document.querySelectorAll({CANVAS_FRAMES!r}).length > n",
                           arg=index, timeout=PAGE_READY_MS)
    return page.locator(CANVAS_FRAMES).nth(index).element_handle(
        timeout=PAGE_READY_MS).content_frame()


def fast_scroll(page: Any, on: bool, views: int = 3) -> None:
    """Click the Fast scroll toggle (to ``on``) and wait until only that kind of view is on
    the page: while Streamlit swaps them, both kinds can be there for a moment."""
    page.locator(".st-key-sl_browser label").first.click()
    shown, gone = (CANVAS_FRAMES, SERVER_FRAMES) if on else (SERVER_FRAMES, CANVAS_FRAMES)
    page.wait_for_function(
        "([shown, gone, n]) => document.querySelectorAll(shown).length >= n && "
        "document.querySelectorAll(gone).length === 0", arg=[shown, gone, views],
        timeout=PAGE_READY_MS)
    wait_until_drawn(page, "Slices", plots=0)


@contextlib.contextmanager
def slices_page(results: Path, tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """The slices page of ``streamlit run`` on ``results`` in headless chromium, drawn;
    yields it with the screenshot folder (``$TUMORSCOPE_SCREENSHOTS``, else ``tmp_path``)."""
    from playwright.sync_api import sync_playwright

    out = Path(os.environ.get("TUMORSCOPE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    with streamlit_server(results, tmp_path / "streamlit.log") as url, \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{url}/slices")
            wait_until_drawn(page, "Slices", plots=0)
            yield page, out
        finally:
            browser.close()


def server_pictures(page: Any, n: int) -> list[np.ndarray]:
    """Fast scroll turned off: the server's pictures of the first ``n`` views (decoded from
    their data URLs, at their own resolution); then on again, the canvases drawn."""
    fast_scroll(page, False, n)
    slice_views(page)
    out = []
    for i in range(n):
        src = picture_src(page, i)
        out.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
                              .convert("RGB")))
    fast_scroll(page, True, n)
    return out


def letter_boxes(shape: tuple[int, ...], letter_px: int = 20) -> np.ndarray:
    """Where render_view and the canvas set the four edge letters (each in its own font)."""
    h, w = shape[:2]
    box = np.zeros((h, w), bool)
    reach, half = letter_px + 12, letter_px + 4
    box[h // 2 - half:h // 2 + half, :reach] = box[h // 2 - half:h // 2 + half, -reach:] = True
    box[:reach, w // 2 - half:w // 2 + half] = box[-reach:, w // 2 - half:w // 2 + half] = True
    return box


def assert_same_picture(drawn: np.ndarray, server: np.ndarray, what: str) -> None:
    assert drawn.shape == server.shape, (what, drawn.shape, server.shape)
    assert server.std() > 10, f"{what}: the server's picture looks blank"
    differs = np.abs(drawn.astype(int) - server.astype(int)).max(axis=-1) > 0
    outside = differs & ~letter_boxes(server.shape)
    where = np.argwhere(outside)[:5].tolist()
    assert not outside.any(), (f"{what}: {int(outside.sum())} pixels differ outside the "
                               f"letters, e.g. at {where}")


@pytest.mark.browser
def test_slice_canvas_draws_what_the_server_draws_and_steps_at_once(
        heat_run_dir: Path, tmp_path: Path) -> None:
    """The default views are drawn in the browser: pixel for pixel the server's pictures
    (but for the edge letters' font), in all three views and zoomed with outlines; a key
    press or a wheel notch on a view steps its slice there, and the sliders, the readout
    and the other views follow."""
    with slices_page(heat_run_dir, tmp_path) as (page, out):
        drawn = [canvas_pixels(v) for v in slice_views(page)]
        for view, canvas, server in zip(("axial", "coronal", "sagittal"), drawn,
                                        server_pictures(page, 3), strict=True):
            assert_same_picture(canvas, server, view)

        # Zoomed 2x, outlines: the crop, the enlargement and the outlines' tracing agree.
        slice_views(page)
        before = frame_of(page, 0).evaluate("() => window.tumorscope.drawn")
        page.locator(".st-key-sl_style button").filter(has_text="outline").first.click()
        for step in ("1.5", "2"):
            page.get_by_role("slider", name="Zoom").first.press("ArrowRight")
            page.get_by_text(f"{step}× around the crosshair").first.wait_for(
                timeout=PAGE_READY_MS)
        wait_until_drawn(page, "Slices", plots=0)
        frame_of(page, 0).wait_for_function(f"() => window.tumorscope.drawn > {before}",
                                            timeout=PAGE_READY_MS)
        zoomed = canvas_pixels(slice_views(page)[0])
        assert_same_picture(zoomed, server_pictures(page, 1)[0], "axial, 2x, outlined")

        views = slice_views(page)
        x, y, z = (int(v) for v in crosshair_voxel(page).strip(" ()").split(","))
        views[0].focus()
        views[0].press("ArrowUp")
        frame_of(page, 0).wait_for_function(f"() => window.tumorscope.slice === {z + 1}",
                                            timeout=5000)
        page.wait_for_function(  # the view told Python: the readout follows
            f"() => document.body.innerText.includes('voxel (RAS) ({x}, {y}, {z + 1})')",
            timeout=30_000)
        frame_of(page, 2).wait_for_function(  # and the sagittal crosshair moved there
            f"() => window.tumorscope.xyz[2] === {z + 1}", timeout=30_000)
        box = views[0].bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, 100)  # one notch towards the user: a slice down
        frame_of(page, 0).wait_for_function(f"() => window.tumorscope.slice === {z}",
                                            timeout=5000)
        page.wait_for_function(
            f"() => document.body.innerText.includes('voxel (RAS) ({x}, {y}, {z})')",
            timeout=30_000)
        wait_until_drawn(page, "Slices", plots=0)
        check_content(shoot(page, out / "app-slices-canvas.png"), page.inner_text("body"),
                      ["Slices", "wheel or arrow keys", "voxel (RAS)"])
        thumb = page.locator(".st-key-sl_z [data-testid='stSliderThumbValue']").first
        assert thumb.inner_text() == str(z)  # the slider followed the view


def warm_share(pixels: np.ndarray) -> float:
    """Share of red-to-yellow pixels (the heat ramp); grey MRI has R = G = B."""
    rgb = pixels.astype(int)
    return float(((rgb[..., 0] > rgb[..., 2] + 60) & (rgb[..., 0] >= rgb[..., 1])).mean())


def choose(page: Any, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``, as a person does."""
    page.locator("[data-testid='stSelectbox']").filter(has_text=label).first.click()
    page.get_by_role("option", name=option).first.click()


@pytest.mark.browser
def test_slice_viewer_heat_overlay_and_zoom(heat_run_dir: Path, tmp_path: Path) -> None:
    """A person turns on the probability heat map: the brain turns red to yellow; zooming in
    shows the middle of the plane, larger (less black around the head)."""
    with slices_page(heat_run_dir, tmp_path) as (page, out):
        slice_views(page)
        fast_scroll(page, False)  # the server's pictures (what heat maps always use)
        slice_views(page)
        old = picture_src(page, 0)
        choose(page, "Overlay", "None")
        plain = view_picture(page, 0, old)
        old = picture_src(page, 0)
        choose(page, "Overlay", "Probability heat map")
        heat = view_picture(page, 0, old)
        shot = out / "app-slices-heat.png"
        check_content(shoot(page, shot), page.inner_text("body"),
                      ["Slices", "probability 0 → 1", "Threshold"])
        assert warm_share(plain) < 0.001, "red-yellow pixels without a heat map"
        assert warm_share(heat) > 0.05, f"no heat map to see ({warm_share(heat):.4f})"

        for step in ("1.5", "2", "3"):  # one key press at a time, as a person waits
            old = picture_src(page, 0)
            page.get_by_role("slider", name="Zoom").first.press("ArrowRight")
            page.get_by_text(f"{step}× around the crosshair").first.wait_for(
                timeout=PAGE_READY_MS)
            zoomed = view_picture(page, 0, old)
        shoot(page, out / "app-slices-zoom.png")
        # One large view and back: the views' slices outlive the layout (a fragment's
        # rerun that leaves two sliders undrawn must keep their values).
        for layout, shown in (("1 large", 1), ("3 views", 3)):
            old = picture_src(page, 0)
            page.locator(".st-key-sl_layout button").filter(has_text=layout).first.click()
            view_picture(page, 0, old)
            # The whole page redrawn: as many views as the layout has, and what follows
            # them (the readout) there again.
            page.wait_for_function(
                "n => document.querySelectorAll('iframe[title*=\"image_coordinates\"]')"
                ".length === n && document.body.innerText.includes('voxel (RAS)')",
                arg=shown, timeout=PAGE_READY_MS)
            wait_until_drawn(page, "Slices", plots=0)
            check_content(shoot(page, out / f"app-slices-{shown}.png"),
                          page.inner_text("body"), ["Slices", "Axial slice", "voxel (RAS)"])
        if zoomed.shape == heat.shape:
            Image.fromarray(np.hstack([heat, zoomed])).save(out / "app-slices-zoom-axial.png")
    assert zoomed.shape == heat.shape  # as large on screen, showing less of the plane
    black = [float((p.max(axis=-1) < 12).mean()) for p in (heat, zoomed)]
    assert black[0] > 0.1 and black[1] < black[0] / 2, black


def gallery_images(page: Any, at_least: int) -> Any:
    """The gallery's pictures (thumbnails, then the large view), once all are painted."""
    images = page.locator("[data-testid='stImage'] img")
    page.wait_for_function(
        "n => { const imgs = [...document.querySelectorAll('[data-testid=\"stImage\"] img')];"
        " return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=at_least, timeout=PAGE_READY_MS)
    return images


@pytest.mark.browser
def test_2d_gallery_shows_truth_and_prediction_outlines(run_2d_dir: Path,
                                                        tmp_path: Path) -> None:
    """A person opens a 2-D run's gallery: each thumbnail shows the true outline (solid green)
    and the predicted one (dashed magenta), told apart by colour."""
    from playwright.sync_api import sync_playwright

    from tumorscope.core.store import Run
    from tumorscope.render import style
    from tumorscope.render.slices2d import colour_share

    out = Path(os.environ.get("TUMORSCOPE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    n_slices = len(Run(run_2d_dir).case_ids())
    with streamlit_server(run_2d_dir, tmp_path / "streamlit.log") as url, \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url)
            wait_until_drawn(page, "Cohort overview", plots=4)
            cohort = out / "app-2d-cohort.png"
            check_content(shoot(page, cohort), page.inner_text("body"),
                          ["Cohort overview", "Segmentation", "Tumour type"])
            nav = page.locator("[data-testid='stSidebarNav']").inner_text()
            assert "Slice gallery" in nav and "Failure explorer" in nav
            assert "Patient 3D" not in nav  # a 2-D run has no 3-D views
            page.get_by_role("button", name="Slice gallery").first.click()
            page.wait_for_url("**/gallery", timeout=PAGE_READY_MS)
            wait_until_drawn(page, "Slice gallery", plots=0)
            images = gallery_images(page, n_slices + 1)
            page.mouse.move(5, 5)  # no image toolbar shown over the legend
            shot = out / "app-2d-gallery.png"
            check_content(shoot(page, shot), page.inner_text("body"),
                          ["Slice gallery", "ground truth (solid)", "prediction (dashed)"])
            # The worst slice is predicted empty: the next ones hold both outlines.
            for i in (1, 2):
                thumb = np.asarray(Image.open(io.BytesIO(images.nth(i).screenshot()))
                                   .convert("RGB"))
                truth = colour_share(thumb, style.TRUTH_OUTLINE_COLOUR)
                pred = colour_share(thumb, style.PREDICTION_OUTLINE_COLOUR)
                assert truth > 1e-3, f"thumbnail {i}: no green truth outline ({truth:.5f})"
                assert pred > 1e-3, f"thumbnail {i}: no magenta predicted outline ({pred:.5f})"
                # The two colours are far apart: neither outline is counted as the other.
                assert colour_share(np.full((1, 1, 3), style.TRUTH_OUTLINE_COLOUR.rgb,
                                            np.uint8), style.PREDICTION_OUTLINE_COLOUR) == 0
            large = out / "app-2d-slice.png"
            images.nth(n_slices).scroll_into_view_if_needed()
            images.nth(n_slices).screenshot(path=str(large))
            big = np.asarray(Image.open(large).convert("RGB"))
            assert colour_share(big, style.TRUTH_OUTLINE_COLOUR) > 1e-3
            page.locator("[data-testid='stSidebarNav']").get_by_text("Failure explorer").click()
            page.wait_for_url("**/failures", timeout=PAGE_READY_MS)
            wait_until_drawn(page, "Failure explorer", plots=0)
            gallery_images(page, 1)
            failures = out / "app-2d-failures.png"
            check_content(shoot(page, failures), page.inner_text("body"),
                          ["Failure explorer", "false positive away from the tumour"])
        finally:
            browser.close()
    assert all(p.stat().st_size > 10_000 for p in (cohort, shot, large, failures))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Screenshots of the app for the README.")
    parser.add_argument("--results", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        given = args.results.resolve()
        if given.is_relative_to(REPO):  # as a person types it in the repository
            given = given.relative_to(REPO)
        for name, path in browse(given, args.out, Path(folder) / "streamlit.log").items():
            print(f"{name}: {path}")
