"""The app at cohort scale: overview, patient table, 3-D view and slice change at N patients.

Usage: python benchmarks/bench_app_scale.py [--patients 1000] [--browser | --browser-only]
       [--repeats 7] [--slice-steps 20] [--out DIR]

Builds a run of ``--patients`` cases: three real ones (bench_app.build_results: demo data,
a 1-step tiny training, predict, then evaluate with the lesion-wise scorings), and the
rest synthetic: a tiny 8x8x8 case on disk per patient (four images, a label, a
prediction) recorded in cases.json with the real cases' model and settings and its own
files' fingerprints, and a metrics.csv row per region with every column evaluate writes
(legacy and lesion-wise, the prediction's and truth's hashes), so the store counts every
synthetic score as current: it is checked against the files the way a real one is. Their
numbers are drawn to look like a trained model's cohort (Dice, HD95 and volumes spread per
region), so the tables and plots are at full size; only the three real patients are opened.
``--out DIR`` keeps the cohort and reuses it on the next call.

Every step runs the real ``streamlit_app.py``: in-process with AppTest, and with
``--browser`` also in ``streamlit run`` driven by headless chromium (tests/test_app_browser.py's
setup). "Cold" mesh cache: the case's meshes/ folder removed; "warm": meshes on disk from
an earlier visit but not in memory (Streamlit's caches cleared, as after a server start).
Prints step, median, p95 and the goal from issue 17 where it sets one, and whether it is met;
browser steps also the median time to the end of the step's script run ("run ms": the rest
is the browser's).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))

from bench_app import APP, build_results, timed  # noqa: E402

REAL_CASES = 3
SYNTHETIC_SHAPE = (8, 8, 8)
SYNTHETIC_PREFIX = "TSScale_"
MARKER = "bench_app_scale.json"
"""Written last into the run: which cohort the folder holds, so ``--out`` reuses it."""

OVERVIEW_GOAL_MS = 1500.0
WARM_3D_GOAL_MS = 2000.0
SLICE_GOAL_MS = 100.0
REGION_MEAN_DICE = {"WT": 0.88, "TC": 0.82, "ET": 0.78}
"""Where a trained model's synthetic Dice centre, per region."""


# --------------------------------------------------------------------------------------------
# the cohort


def _blob(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A nested tumour (edema, enhancing, necrosis: BraTS 2020 labels 2, 4, 1)."""
    idx = np.indices(shape).astype(float)
    centre = np.array(shape, float)[:, None, None, None] / 2 + rng.uniform(-0.5, 0.5, 3)[
        :, None, None, None]
    r = np.sqrt(((idx - centre) ** 2).sum(0))
    label = np.zeros(shape, np.uint8)
    label[r < 3.2] = 2
    label[r < 2.2] = 4
    label[r < 1.2] = 1
    return label


def _fake_row(rng: np.random.Generator, region: str, wt_ml: float) -> dict[str, Any]:
    """One region's scores, as a trained model's cohort spreads them (a few failures)."""
    share = {"WT": 1.0, "TC": rng.uniform(0.3, 0.6), "ET": rng.uniform(0.15, 0.4)}[region]
    truth = round(wt_ml * share, 3)
    failed = rng.random() < 0.03
    dice = float(rng.uniform(0.0, 0.3) if failed else np.clip(
        rng.beta(20, 20 * (1 - REGION_MEAN_DICE[region]) / REGION_MEAN_DICE[region]),
        0.0, 1.0))
    pred = round(max(0.0, truth * rng.normal(1.0, 0.15)), 3)
    hd95 = float(rng.lognormal(np.log(40 if failed else 3.5), 0.6))
    fn, fp = (int(rng.random() < (0.5 if failed else 0.1)) for _ in range(2))
    lw_dice = max(0.0, dice - 0.1 * (fn + fp))
    rq = 1.0 / (1.0 + 0.5 * (fn + fp))
    return {"dice": dice, "jaccard": dice / (2 - dice), "hd95_monai_mm": hd95,
            "hd95_pooled_mm": hd95 * 0.9, "hd95_surfel_mm": hd95 * 0.97,
            "sensitivity": float(np.clip(dice + rng.normal(0, 0.03), 0, 1)),
            "specificity": float(1 - rng.uniform(0, 1e-3)), "volume_truth_ml": truth,
            "volume_pred_ml": pred, "volume_diff_ml": round(pred - truth, 3),
            # 374 mm: what BraTS 2023 counts for each missed or false lesion's HD95.
            "brats2023_dice": lw_dice, "brats2023_hd95_mm": hd95 + 374 * (fn + fp) / 2,
            "brats2023_tp": 1, "brats2023_fn": fn, "brats2023_fp": fp,
            "brats2025_rq": rq, "brats2025_sq_dice": dice, "brats2025_sq_hd95_mm": hd95,
            "brats2025_tp": 1, "brats2025_fn": fn, "brats2025_fp": fp}


def add_synthetic_cases(run_dir: Path, data_dir: Path, count: int, *, seed: int = 0) -> None:
    """``count`` tiny cases on disk, recorded and scored so the store calls them current."""
    import nibabel as nib

    from tumorscope.core.data.labels import REGIONS
    from tumorscope.core.fingerprint import fingerprint
    from tumorscope.core.store import CaseRecord, Run, format_stat

    run = Run(run_dir)
    records = run.case_records()
    real_rows = run.metrics_rows()
    template = records[sorted(records)[0]]
    # Columns, scoring version and challenge exactly as this evaluate wrote the real rows.
    same = {k: real_rows[0][k] for k in ("scoring_version", "scorings", "challenge")}
    columns = list(real_rows[0])
    rng = np.random.default_rng(seed)
    affine = np.diag([-3.0, -3.0, 3.0, 1.0])
    new_rows: list[dict[str, Any]] = []
    for i in range(count):
        case_id = f"{SYNTHETIC_PREFIX}{i:05d}"
        folder = data_dir / case_id
        folder.mkdir(parents=True, exist_ok=True)
        label = _blob(SYNTHETIC_SHAPE, rng)
        images = {}
        for modality in ("t1", "t1ce", "t2", "flair"):
            path = folder / f"{case_id}_{modality}.nii.gz"
            nib.save(nib.Nifti1Image((rng.random(SYNTHETIC_SHAPE) * 100 + 50 + 50 * (label > 0))
                                     .astype(np.float32), affine), path)
            images[modality] = path.resolve()
        truth_path = folder / f"{case_id}_seg.nii.gz"
        nib.save(nib.Nifti1Image(label, affine), truth_path)
        pred_path = run.prediction_path(case_id)
        nib.save(nib.Nifti1Image(np.roll(label, int(rng.integers(0, 2)), axis=0), affine),
                 pred_path)
        metadata = {"age": round(float(rng.uniform(20, 85)), 3),
                    "grade": "LGG" if rng.random() < 0.25 else "HGG",
                    "survival_days": int(rng.integers(100, 2000)), "synthetic": True}
        provenance = {**template.provenance,
                      "sources": {m: fingerprint(p) for m, p in images.items()}}
        prediction = {**fingerprint(pred_path), "predicted_at": "synthetic", "seconds": 0.0}
        records[case_id] = CaseRecord(case_id, images, truth_path.resolve(),
                                      metadata=metadata, provenance=provenance,
                                      prediction=prediction)
        truth = fingerprint(truth_path)
        wt_ml = float(rng.lognormal(np.log(80.0), 0.6))
        for region in REGIONS:
            row = {"case_id": case_id, "region": region, **_fake_row(rng, region, wt_ml),
                   "grade": metadata["grade"], "age": metadata["age"], "synthetic": True,
                   "prediction_sha256": prediction["sha256"], "truth_sha256": truth["sha256"],
                   "truth_path": truth["path"], "truth_size": truth["size"],
                   "truth_stat": format_stat(truth["stat"]), **same, "lesions_listed": 0,
                   "status": "ok"}
            new_rows.append({c: row.get(c) for c in columns})
    run.write_cases({k: r.to_dict() for k, r in records.items()})
    order = {"WT": 0, "TC": 1, "ET": 2}
    run.write_metrics(sorted(real_rows + new_rows,
                             key=lambda r: (str(r["case_id"]), order[str(r["region"])])))


def build_cohort(base: Path, patients: int) -> Path:
    """A run of ``patients`` cases under ``base`` (reused when it is already there)."""
    from tumorscope.app.cli import main as cli

    run_dir = base / "R"
    marker = run_dir / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("patients") == patients:
        return run_dir
    if base.exists() and any(base.iterdir()):
        if not marker.is_file():  # never wipe a folder this benchmark did not build
            raise SystemExit(f"{base} is not empty and holds no cohort of this benchmark: "
                             "give --out an empty or new folder")
        shutil.rmtree(base)
    build_results(base)
    cli(["evaluate", str(run_dir), "--scoring", "legacy", "brats2023", "brats2025", "-q"])
    add_synthetic_cases(run_dir, base / "S", max(0, patients - REAL_CASES))
    marker.write_text(json.dumps({"patients": patients}))
    return run_dir


def check_cohort(run_dir: Path, patients: int) -> list[str]:
    """The run's case ids, once it is shown that every score is current (else it exits)."""
    from tumorscope.core.store import Run
    from tumorscope.render.cohort import stale_scores

    run = Run(run_dir)
    ids = run.case_ids()
    stale = stale_scores(run)
    if len(ids) != patients or stale:
        raise SystemExit(f"the cohort is not what it should be: {len(ids)} cases of "
                         f"{patients}, stale: {list(stale.items())[:3]}")
    return ids


# --------------------------------------------------------------------------------------------
# measuring


@dataclass
class Step:
    """One row of the table: a step's times (ms) and its goal (ms, on the median or p95)."""

    name: str
    times: list[float]
    goal_ms: float | None = None
    on: str = "median"
    run_ms: list[float] | None = None
    """Browser steps: ms from the action to the end of its script run (the rest is the
    browser's: receiving, laying out, drawing)."""

    def __post_init__(self) -> None:
        print(f"  {self.name}: {len(self.times)} measured", file=sys.stderr, flush=True)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def p95(self) -> float:
        if len(self.times) < 2:
            return self.times[0]
        return float(np.percentile(self.times, 95))

    @property
    def met(self) -> bool | None:
        if self.goal_ms is None:
            return None
        return (self.p95 if self.on == "p95" else self.median) < self.goal_ms


def print_table(title: str, steps: Sequence[Step]) -> None:
    browser = any(s.run_ms for s in steps)
    print(f"\n{title}")
    print(f"{'step':<54}{'n':>4}{'median ms':>11}{'p95 ms':>9}"
          + (f"{'run ms':>9}" if browser else "") + f"  {'goal':<18}met")
    for s in steps:
        goal = f"{s.on} < {s.goal_ms:.0f} ms" if s.goal_ms is not None else "-"
        met = {None: "-", True: "yes", False: "NO"}[s.met]
        run = [t for t in s.run_ms or [] if not math.isnan(t)]
        ran = (f"{statistics.median(run):>9.0f}" if run else f"{'-':>9}") if browser else ""
        print(f"{s.name:<54}{len(s.times):>4}{s.median:>11.0f}{s.p95:>9.0f}{ran}  "
              f"{goal:<18}{met}")


def forget_meshes(run_dir: Path, case_id: str) -> None:
    shutil.rmtree(run_dir / "meshes" / case_id, ignore_errors=True)


def slice_positions(z: int, depth: int, steps: int) -> list[int]:
    """``steps`` new axial slices, one apart, walking away from ``z`` within ``depth``."""
    way = -1 if z - steps >= 0 else 1
    return [min(max(z + way * (i + 1), 0), depth - 1) for i in range(steps)]


def measure_apptest(run_dir: Path, real: Sequence[str], repeats: int,
                    slice_steps: int) -> list[Step]:
    """Every step in-process (AppTest): the script's own time, no browser drawing. A slice
    change here reruns the whole script (AppTest has no fragment reruns): an upper bound."""
    argv, sys.argv = sys.argv, ["streamlit_app.py"]  # the app reads --results from argv
    try:
        return _apptest_steps(run_dir, real, repeats, slice_steps)
    finally:
        sys.argv = argv


def _apptest_steps(run_dir: Path, real: Sequence[str], repeats: int,
                   slice_steps: int) -> list[Step]:
    from streamlit.testing.v1 import AppTest

    from tumorscope.app.caches import clear_caches


    def session() -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=900)
        at.session_state["results_dir"] = str(run_dir)
        return at

    def overview_after_restart() -> AppTest:
        """A new session on a server whose memory is empty, on the overview."""
        clear_caches()
        at = session()
        timed(at.run)
        return at

    def open_patient(at: AppTest, case_id: str) -> float:
        at.selectbox(key="ov_pick").select(case_id)
        return timed(lambda: at.button(key="btn_open_patient").click().run())

    steps: list[Step] = []
    at = session()
    steps.append(Step("overview, first run in this process (imports)", [timed(at.run)]))
    cold = []
    for _ in range(repeats):
        clear_caches()
        at = session()
        cold.append(timed(at.run))
    steps.append(Step("overview, first paint (caches cleared)", cold, OVERVIEW_GOAL_MS))
    steps.append(Step("overview, rerun", [timed(at.run) for _ in range(repeats)],
                      OVERVIEW_GOAL_MS))
    columns = ["Dice ET", "HD95 WT (monai, mm)", "mean Dice"]
    steps.append(Step("patients table, sort by another column", [
        timed(lambda i=i: at.selectbox(key="ov_sort").select(columns[i % 3]).run())
        for i in range(repeats)], OVERVIEW_GOAL_MS))
    searches = ["0001", "00", "TSDemo", "9"]
    steps.append(Step("patients table, filter by id text", [
        timed(lambda i=i: at.text_input(key="ov_search").input(searches[i % 4]).run())
        for i in range(repeats)], OVERVIEW_GOAL_MS))
    timed(at.text_input(key="ov_search").input("").run)
    grades = [["LGG"], [], ["HGG"], []]
    steps.append(Step("patients table, filter by grade", [
        timed(lambda i=i: at.multiselect(key="ov_grades").set_value(grades[i % 4]).run())
        for i in range(repeats)], OVERVIEW_GOAL_MS))

    cold_3d = []
    for case_id in real[:max(1, min(repeats, len(real)))]:  # from scratch: BraTS-size meshes
        forget_meshes(run_dir, case_id)
        cold_3d.append(open_patient(overview_after_restart(), case_id))
    steps.append(Step("open patient: first 3-D view, cold mesh cache", cold_3d))
    warm_3d = []
    for i in range(repeats):  # meshes on disk, nothing in memory
        at = overview_after_restart()
        warm_3d.append(open_patient(at, real[i % len(real)]))
    steps.append(Step("open patient: first 3-D view, warm mesh cache", warm_3d,
                      WARM_3D_GOAL_MS))
    # The last session is on a patient page: each real patient once, then again from memory.
    for case_id in real:
        timed(at.sidebar.selectbox(key="case_id").select(case_id).run)
    again = [timed(at.sidebar.selectbox(key="case_id").select(real[i % len(real)]).run)
             for i in range(repeats)]
    steps.append(Step("switch patient in the 3-D view (meshes in memory)", again))

    steps.append(Step("slices page, first load", [
        timed(lambda: at.button(key="btn_to_slices").click().run())]))
    slider = at.slider(key="sl_z")
    positions = slice_positions(int(slider.value), int(slider.max) + 1, slice_steps)
    steps.append(Step("slice change (axial slider, whole-script rerun)", [
        timed(lambda z=z: at.slider(key="sl_z").set_value(z).run()) for z in positions],
        SLICE_GOAL_MS, on="p95"))
    return steps


class Browser:
    """A page of the app in chromium, and when its script runs finish and its charts draw.

    A run's end is Streamlit's ``script_finished`` message on the page's websocket (read
    with Streamlit's own protobuf classes); a chart's drawing is plotly's ``afterplot``
    event, counted by a listener this page installs on every chart. So each step is timed
    from the action to its run's end ("run ms") and to the browser's frame after its
    charts are drawn ("ms"), not to a guessed pause."""

    def __init__(self, page: Any, timeout_ms: int) -> None:
        self.page = page
        self.timeout_ms = timeout_ms
        self.finished: list[float] = []
        page.add_init_script(COUNT_PLOTS_JS)
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload: str | bytes) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        if isinstance(payload, str):
            return
        message = ForwardMsg()
        message.ParseFromString(payload)
        # 0: the whole script ran, 3: a fragment did; 2 (stopped for a rerun) is not an end.
        if message.WhichOneof("type") == "script_finished" and message.script_finished in (0, 3):
            self.finished.append(time.perf_counter())

    def step(self, action: Any, *, heading: str | None = None, plots: int = 0
             ) -> tuple[float, float]:
        """(ms to the frame after the step is drawn, ms to its run's end) of ``action()``:
        ``heading`` shown and ``plots`` more charts drawn (a new page counts from 0)."""
        page = self.page
        before = page.evaluate("() => window.__plotsDrawn || 0")
        start, mark = time.perf_counter(), len(self.finished)
        action()
        if heading is not None:  # a new page: charts are counted from its start
            page.get_by_role("heading", name=heading).first.wait_for(timeout=self.timeout_ms)
            before = 0 if page.evaluate("() => window.__plotsDrawn || 0") < before else before
        deadline = time.monotonic() + self.timeout_ms / 1000
        while len(self.finished) <= mark:
            if time.monotonic() > deadline:
                raise SystemExit(f"no script run finished within {self.timeout_ms} ms")
            page.wait_for_timeout(5)
        if plots:
            page.wait_for_function("n => (window.__plotsDrawn || 0) >= n", arg=before + plots,
                                   timeout=self.timeout_ms, polling="raf")
        page.evaluate(PAINTED_JS)
        return (time.perf_counter() - start) * 1e3, (self.finished[mark] - start) * 1e3


PAINTED_JS = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
COUNT_PLOTS_JS = """
window.__plotsDrawn = 0;
// plotly gives each chart its emit() by assignment as it first plots it: a setter on the
// prototype wraps it before any event is sent, so a chart drawn synchronously (before a
// MutationObserver could add a listener, which missed some at random) still counts.
Object.defineProperty(HTMLElement.prototype, 'emit', {
  configurable: true,
  get() { return undefined; },
  set(emit) {
    Object.defineProperty(this, 'emit', {configurable: true, writable: true,
      value(event, data) {
        if (event === 'plotly_afterplot') window.__plotsDrawn += 1;
        return emit.call(this, event, data);
      }});
  },
});
"""
"""Counts plotly's ``afterplot`` events of every chart of the page (plotly emits one each
time a chart is drawn or redrawn)."""
OVERVIEW_PLOTS = 5  # Dice, HD95, the two volume plots, training


def measure_browser(run_dir: Path, real: Sequence[str], repeats: int,
                    slice_steps: int) -> list[Step]:
    """The same steps in ``streamlit run`` and headless chromium (tests/test_app_browser.py's
    setup: WebGL drawn in software, ``--disable-gpu``, on the same cores as the server)."""
    import os

    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(BENCHMARKS.parent / "tests"))
    import nibabel as nib
    from bench_slices_browser import canvas_step_ms
    from test_app_browser import (
        CANVAS_FRAMES,
        PAGE_READY_MS,
        VIEWPORT,
        crosshair_voxel,
        frame_of,
        launch_chromium,
        slice_views,
        streamlit_server,
    )

    from tumorscope.core.store import Run

    # The menu's "Clear cache" (a developer option), to time first paints as after a restart.
    os.environ["STREAMLIT_CLIENT_TOOLBAR_MODE"] = "developer"
    forget_meshes(run_dir, real[0])
    steps: list[Step] = []
    with tempfile.TemporaryDirectory() as folder, \
            streamlit_server(run_dir, Path(folder) / "streamlit.log") as url, \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            app = Browser(page, PAGE_READY_MS)

            def many(name: str, make: Any, count: int, goal: float | None = None,
                     on: str = "median") -> None:
                pairs = [make(i) for i in range(count)]
                steps.append(Step(name, [p[0] for p in pairs], goal, on,
                                  run_ms=[p[1] for p in pairs]))

            def overview(action: Any) -> tuple[float, float]:
                return app.step(action, heading="Cohort overview", plots=OVERVIEW_PLOTS)

            def clear_caches() -> None:
                page.locator("[data-testid='stMainMenu']").first.click()
                page.get_by_text("Clear cache", exact=True).first.click()
                page.get_by_role("button", name="Clear caches").click()
                page.locator("[role='dialog']").wait_for(state="detached")

            def option_of(label: str, value: str) -> Any | None:
                """The option ``value`` of the selectbox ``label``, typed in (1,000 patients:
                the list draws only the options in view); None when it is chosen already."""
                box = page.get_by_role("combobox", name=label, exact=True).first
                if box.input_value() == value:
                    return None
                box.click()
                box.fill(value)
                return page.get_by_role("option", name=value, exact=True).first

            def open_patient(case_id: str) -> tuple[float, float]:
                option = option_of("Open a patient", case_id)
                if option is not None:
                    app.step(option.click)
                return app.step(page.get_by_role("button", name="Open patient view").click,
                                heading=f"Patient {case_id}", plots=1)

            def cold_overview(_: int) -> tuple[float, float]:
                clear_caches()
                return overview(page.reload)

            many("overview, first visit after the server started",
                 lambda _: overview(lambda: page.goto(url)), 1)
            many("overview, first paint (caches cleared)", cold_overview, repeats,
                 OVERVIEW_GOAL_MS)
            many("overview, new visit (caches warm)", lambda _: overview(page.reload),
                 repeats, OVERVIEW_GOAL_MS)
            many("overview, rerun (R)", lambda _: app.step(lambda: page.keyboard.press("r")),
                 repeats, OVERVIEW_GOAL_MS)
            columns = ["Dice ET", "HD95 WT", "mean Dice"]

            def sort(i: int) -> tuple[float, float]:
                page.get_by_role("combobox", name="Sort by", exact=True).first.click()
                return app.step(page.get_by_role("option", name=columns[i % 3]).first.click)

            many("patients table, sort by another column", sort, repeats, OVERVIEW_GOAL_MS)
            search = page.get_by_role("textbox", name="Search patient").first

            def find(i: int) -> tuple[float, float]:
                search.fill(["0001", "00", "TSDemo", "9"][i % 4])
                return app.step(lambda: search.press("Enter"))

            many("patients table, filter by id text", find, repeats, OVERVIEW_GOAL_MS)
            search.fill("")
            app.step(lambda: search.press("Enter"))

            def first_3d(i: int, *, cold: bool) -> tuple[float, float]:
                case_id = real[i % len(real)]
                if cold:
                    forget_meshes(run_dir, case_id)
                cold_overview(i)
                measured = open_patient(case_id)
                page.goto(url)
                return measured

            many("open patient: first 3-D view, cold mesh cache",
                 lambda i: first_3d(i, cold=True), max(1, min(repeats, len(real))))
            many("open patient: first 3-D view, warm mesh cache",
                 lambda i: first_3d(i, cold=False), repeats, WARM_3D_GOAL_MS)
            overview(page.reload)
            open_patient(real[0])

            def switch(i: int) -> tuple[float, float]:
                case_id = real[i % len(real)]
                option = option_of("Patient", case_id)
                assert option is not None, "switching to the patient shown"
                return app.step(option.click, heading=f"Patient {case_id}", plots=1)

            for i in range(1, len(real) + 1):  # each once (all in memory), ending on real[0]
                switch(i)
            many("switch patient in the 3-D view (meshes in memory)",
                 lambda i: switch(i + 1), repeats)

            def to_slices(_: int) -> tuple[float, float]:
                start = time.perf_counter()
                page.get_by_role("button", name="Slice viewer").first.click()
                page.wait_for_url("**/slices", timeout=PAGE_READY_MS)
                slice_views(page)
                page.evaluate(PAINTED_JS)
                return (time.perf_counter() - start) * 1e3, float("nan")

            many("slices page, first load", to_slices, 1)
            frames = [frame_of(page, i) for i in (0, 2)]
            # One way, so every step draws a slice not seen before: down from the upper
            # half of the volume, up from the lower; keys pressed on the axial view, which
            # draws its slices itself (the app's default, Fast scroll).
            z = int(crosshair_voxel(page).strip(" ()").split(",")[2])
            shown = page.get_by_role("heading", name="Slices").first.inner_text()
            depth = nib.load(Run(run_dir).prediction_path(shown.split("·")[-1].strip())).shape[2]
            key = "ArrowDown" if z >= depth / 2 else "ArrowUp"
            axial = page.frame_locator(CANVAS_FRAMES).first.locator("canvas#view")
            axial.focus()
            linked: list[float] = []

            def slice_step(_: int) -> tuple[float, float]:
                # Key press to the new slice on the axial canvas, and to the sagittal
                # view's crosshair redrawn there (bench_slices_browser.canvas_step_ms).
                start, mark = time.perf_counter(), len(app.finished)
                ms, link = canvas_step_ms(page, frames, lambda: axial.press(key))
                linked.append(link)
                ended = app.finished[mark] if len(app.finished) > mark else math.nan
                return ms, (ended - start) * 1e3

            for _ in range(2):  # warm-up steps
                slice_step(0)
            linked.clear()
            many("slice change (arrow key on the view, new slice)", slice_step, slice_steps,
                 SLICE_GOAL_MS, on="p95")
            steps.append(Step("  ... and the other views' crosshair there", list(linked)))
        finally:
            browser.close()
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--browser", action="store_true",
                        help="also measure in streamlit run + headless chromium")
    parser.add_argument("--browser-only", action="store_true",
                        help="only the browser's steps (AppTest's are skipped)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--slice-steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None,
                        help="build (or reuse) the cohort here; default: a temp folder")
    args = parser.parse_args(argv)
    if args.patients < REAL_CASES:
        parser.error(f"--patients must be at least {REAL_CASES} (the real cases)")
    from streamlit import logger as streamlit_logger

    # Outside `streamlit run` the cache decorators warn once each ("No runtime found").
    streamlit_logger.set_log_level(logging.ERROR)
    base = args.out or Path(tempfile.mkdtemp(prefix="tumorscope-scale-"))
    start = time.perf_counter()
    run_dir = build_cohort(base.resolve(), args.patients)
    ids = check_cohort(run_dir, args.patients)
    real = [c for c in ids if not c.startswith(SYNTHETIC_PREFIX)]
    print(f"cohort: {run_dir} ({len(ids)} patients, {len(real)} real, every score current; "
          f"built or found in {time.perf_counter() - start:.0f} s)")
    if not args.browser_only:
        steps = measure_apptest(run_dir, real, args.repeats, args.slice_steps)
        print_table(f"AppTest (in-process), {args.patients} patients", steps)
    if args.browser or args.browser_only:
        steps = measure_browser(run_dir, real, args.repeats, args.slice_steps)
        print_table(f"headless chromium (streamlit run), {args.patients} patients", steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
