"""Slice-change latency of the slice viewer in headless chromium: key press to new picture.

Usage: python benchmarks/bench_slices_browser.py [--results runs/demo] [--repeats 12]
       [--via canvas-key|canvas-wheel|slider|button|key]

``streamlit run`` on a copy of the results (the app is only read, but a copy keeps the
demo untouched), the slices page opened in Debian's chromium (tests/test_app_browser.py's
setup), the axial slice stepped one slice at a time.

``canvas-key`` (default) and ``canvas-wheel``: the views as the app draws them by default,
in the browser (Fast scroll on): the arrow keys pressed on the focused axial view, or one
mouse-wheel notch over it. Timed until the axial canvas shows the new slice ("step"), and
until the sagittal view has redrawn its crosshair at it ("linked": the view tells Python
its slice, Python reruns and tells the other views).

``slider``, ``button``, ``key``: the server's pictures (Fast scroll off): the axial slider
focused and the arrow keys pressed (Streamlit waits ~200 ms after a slider's last change
before it sends it), the axial -/+ buttons clicked, or Page Down/Up pressed (their
shortcuts); timed until the axial view's new PNG has loaded in its iframe.

Each step waits for the script to finish before the next. Prints the median and p95 in ms.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_app_browser import (  # noqa: E402
    PAGE_READY_MS,
    SERVER_FRAMES,
    VIEWPORT,
    fast_scroll,
    frame_of,
    launch_chromium,
    slice_views,
    streamlit_server,
    wait_until_drawn,
)

NEW_PICTURE_JS = ("old => { const i = document.querySelector('img#image');"
                  " return i && i.src !== old && i.complete && i.naturalWidth > 0; }")
IDLE_JS = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
SETTLE_MS = 300
"""Pause between steps once the script has finished, as between a person's key presses."""


def step_ms(page, frame, press) -> float:
    """One step (``press()``): ms until ``frame``'s picture is the new one."""
    old = frame.evaluate("() => document.querySelector('img#image').src")
    start = time.perf_counter()
    press()
    frame.wait_for_function(NEW_PICTURE_JS, arg=old, timeout=60_000, polling="raf")
    elapsed = (time.perf_counter() - start) * 1000.0
    page.wait_for_function(IDLE_JS, timeout=60_000, polling=100)
    page.wait_for_timeout(SETTLE_MS)
    return elapsed


CANVAS_VIAS = ("canvas-key", "canvas-wheel")
DRAW_MS: list[float] = []
"""The canvas's own drawing time of each step (sampling, blending, putImageData)."""
VIAS = (*CANVAS_VIAS, "slider", "button", "key")


def canvas_step_ms(page, frames, press) -> tuple[float, float]:
    """One step on the browser-drawn axial view: ms until it shows the new slice, and
    until the sagittal view has redrawn (its crosshair at the new slice)."""
    axial, sagittal = frames
    old = axial.evaluate("() => window.tumorscope.slice")
    start = time.perf_counter()
    press()
    axial.wait_for_function("old => window.tumorscope.slice !== old", arg=old,
                            timeout=60_000, polling="raf")
    step = (time.perf_counter() - start) * 1000.0
    new = axial.evaluate("() => window.tumorscope.slice")
    DRAW_MS.append(axial.evaluate("() => window.tumorscope.drawMs"))
    # Linked: the sagittal view drawn with its crosshair at the new axial slice (any
    # redraw would also count one of the stale report's).
    sagittal.wait_for_function("z => (window.tumorscope.xyz || [])[2] === z", arg=new,
                               timeout=60_000, polling="raf")
    linked = (time.perf_counter() - start) * 1000.0
    page.wait_for_function(IDLE_JS, timeout=60_000, polling=100)
    page.wait_for_timeout(SETTLE_MS)
    return step, linked


def measure(results: Path, repeats: int, via: str = "canvas-key",
            path: str = "slices") -> tuple[list[float], list[float]]:
    """``(step ms, linked ms)`` per step; linked is empty for the server's pictures."""
    from playwright.sync_api import sync_playwright

    times: list[float] = []
    linked: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / results.name
        shutil.copytree(results, copy, ignore=shutil.ignore_patterns("meshes"))
        log = Path(folder) / "streamlit.log"
        with streamlit_server(copy, log) as url, sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(f"{url}/{path}")
                wait_until_drawn(page, "Slices", plots=0)
                views = slice_views(page)
                if via in CANVAS_VIAS:
                    frames = [frame_of(page, i) for i in (0, 2)]
                    views[0].focus()
                    box = views[0].bounding_box()
                    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                    for i in range(repeats + 2):  # two warm-up steps
                        if via == "canvas-key":
                            ms = canvas_step_ms(page, frames, lambda i=i: views[0].press(
                                "ArrowUp" if i % 2 else "ArrowDown"))
                        else:
                            ms = canvas_step_ms(page, frames, lambda i=i: page.mouse.wheel(
                                0, -100 if i % 2 else 100))
                        if i >= 2:
                            times.append(ms[0])
                            linked.append(ms[1])
                    return times, linked
                fast_scroll(page, False)  # the server's pictures
                slice_views(page)
                # The toggle keeps the focus: Page Down/Up would go to it, not the shortcuts.
                page.evaluate("() => document.activeElement && document.activeElement.blur()")
                frame = page.locator(SERVER_FRAMES).first.element_handle().content_frame()
                slider = page.get_by_role("slider", name="Axial slice").first
                slider.wait_for(timeout=PAGE_READY_MS)
                buttons = [page.locator(f".st-key-btn_axial_{d} button").first
                           for d in ("down", "up")]
                for i in range(repeats + 2):  # two warm-up steps
                    if via == "slider":
                        ms = step_ms(page, frame, lambda i=i: slider.press(
                            "ArrowRight" if i % 2 else "ArrowLeft"))
                    elif via == "button":
                        ms = step_ms(page, frame, buttons[i % 2].click)
                    else:
                        ms = step_ms(page, frame, lambda i=i: page.keyboard.press(
                            "PageUp" if i % 2 else "PageDown"))
                    if i >= 2:
                        times.append(ms)
            finally:
                browser.close()
    return times, linked


def summary(times: list[float]) -> str:
    p95 = statistics.quantiles(times, n=20, method="inclusive")[18]
    return (f"median {statistics.median(times):.0f} ms, p95 {p95:.0f} ms "
            f"(min {min(times):.0f}, max {max(times):.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "runs" / "demo")
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--via", choices=VIAS, default="canvas-key")
    args = parser.parse_args()
    times, linked = measure(args.results.resolve(), args.repeats, args.via)
    print(f"axial slice step by {args.via}, {len(times)} steps: {summary(times)} "
          "(issue 17's goal: p95 < 100 ms)")
    if DRAW_MS:
        print(f"  of which drawing the canvas (in the page): median "
              f"{statistics.median(DRAW_MS[2:]):.1f} ms")
    if linked:
        print(f"  and the sagittal view's crosshair redrawn at the new slice (a server "
              f"round trip): {summary(linked)}")


if __name__ == "__main__":
    main()
