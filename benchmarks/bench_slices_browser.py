"""Slice-change latency of the slice viewer in headless chromium: key press to new picture.

Usage: python benchmarks/bench_slices_browser.py [--results runs/demo] [--repeats 12]
       [--via slider|button|key]

``streamlit run`` on a copy of the results (the app is only read, but a copy keeps the
demo untouched), the slices page opened in Debian's chromium (tests/test_app_browser.py's
setup), the axial slice stepped one slice at a time: ``slider`` focuses the axial slider and
presses the arrow keys (Streamlit waits ~200 ms after a slider's last change before it
sends it), ``button`` clicks the axial -/+ buttons, ``key`` presses Page Down/Up (their
shortcuts). Each step is timed from the press until the axial view's new PNG has loaded in
its iframe; the next waits for the script to finish. Prints the median and spread in ms.
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
    VIEWPORT,
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


def measure(results: Path, repeats: int, via: str = "slider",
            path: str = "slices") -> list[float]:
    from playwright.sync_api import sync_playwright

    times: list[float] = []
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
                slice_views(page)
                frame = page.locator("iframe[title*='image_coordinates']").first \
                    .element_handle().content_frame()
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
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "runs" / "demo")
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--via", choices=["slider", "button", "key"], default="slider")
    args = parser.parse_args()
    times = measure(args.results.resolve(), args.repeats, args.via)
    q = statistics.quantiles(times, n=4)
    p95 = statistics.quantiles(times, n=20, method="inclusive")[18]
    print(f"axial slice step by {args.via}, {len(times)} steps: "
          f"median {statistics.median(times):.0f} ms, p95 {p95:.0f} ms (issue 17's goal: "
          f"< 100 ms) (quartiles {q[0]:.0f}-{q[2]:.0f}, min {min(times):.0f}, "
          f"max {max(times):.0f})")


if __name__ == "__main__":
    main()
