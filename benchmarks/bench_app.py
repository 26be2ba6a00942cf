"""Page and interaction times of the Streamlit app, measured with AppTest; ratios printed.

Usage: python benchmarks/bench_app.py [--results DIR] [--repeats N]

Without --results it builds the tests' small results folder in a temp dir (3 demo cases,
1-epoch tiny training, predictions). Every step runs the real ``streamlit_app.py`` in-process:
"first" rows start with Streamlit's caches cleared (the run's on-disk mesh cache is used as
found, so pass a fresh run to include meshing); "again" rows are what a person feels once a
case is loaded. The target is a slice change under ~200 ms after the first load of a case.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from streamlit import logger as streamlit_logger
from streamlit.testing.v1 import AppTest

# Outside `streamlit run` the cache decorators warn once each ("No runtime found"): noise here.
streamlit_logger.set_log_level(logging.ERROR)

from tumorscope.app.caches import clear_caches  # noqa: E402
from tumorscope.core.store import open_runs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "streamlit_app.py"
SLICE_TARGET_MS = 200.0


def build_results(base: Path) -> Path:
    from tumorscope.app.cli import main as cli

    d, r, c = base / "D", base / "R", base / "C"
    cli(["demo-data", "--out", str(d), "--cases", "3", "--seed", "1"])
    cli(["train", "--config", "tiny-cpu", "--data", str(d), "--out", str(r), "--set",
         "train.epochs=1", "--set", "train.steps_per_epoch=2", "--set",
         "model.features=[4,8,16]", "--set", "data.patch_size_vox=32", "--set",
         f"data.cache_dir={c}", "-q"])
    cli(["predict", "--checkpoint", str(r / "checkpoints" / "best.pt"), "--input", str(d),
         "--out", str(r), "--cache", str(c), "-q"])
    return r


def timed(step: Callable[[], AppTest]) -> float:
    """Milliseconds of one rerun; raises if the page showed an exception or error box."""
    start = time.perf_counter()
    at = step()
    elapsed = (time.perf_counter() - start) * 1000.0
    if at.exception or at.error:
        problems = [e.value for e in at.exception] + [e.value for e in at.error]
        raise SystemExit(f"the page failed: {problems}")
    return elapsed


def median_ms(step: Callable[[], AppTest], repeats: int) -> float:
    return statistics.median(timed(step) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    results = args.results or build_results(Path(tempfile.mkdtemp(prefix="tumorscope-bench-")))
    run = open_runs(results)[0]
    ids = run.case_ids()
    if len(ids) < 2:
        raise SystemExit(f"need a run with at least 2 predicted cases, {run.path} has {len(ids)}")
    first, second = ids[0], ids[1]
    sys.argv = ["streamlit_app.py"]  # the app reads --results from argv; use the state below

    clear_caches()
    at = AppTest.from_file(str(APP), default_timeout=600)
    at.session_state["results_dir"] = str(results)
    rows: list[tuple[str, float, float | None]] = []

    def record(name: str, ms: float, reference: float | None = None) -> None:
        rows.append((name, ms, None if reference is None else ms / reference))

    overview_first = timed(at.run)
    record("overview, first load", overview_first)
    record("overview, again", median_ms(at.run, args.repeats), overview_first)

    def open_patient(case_id: str) -> AppTest:
        at.selectbox(key="ov_pick").select(case_id)
        return at.button(key="btn_open_patient").click().run()

    patient_first = timed(lambda: open_patient(first))
    record(f"patient 3D {first}, first load", patient_first)
    record("patient 3D, same patient again", median_ms(at.run, args.repeats), patient_first)
    record("patient 3D, toggle brain surface",
           median_ms(lambda: at.toggle(key="p3d_brain").set_value(
               not at.toggle(key="p3d_brain").value).run(), args.repeats), patient_first)
    at.radio(key="p3d_colour").set_value("signed distance to truth")
    record("patient 3D, distance colouring (first)", timed(at.run), patient_first)
    at.radio(key="p3d_colour").set_value("region colours").run()

    slices_first = timed(lambda: at.button(key="btn_to_slices").click().run())
    record(f"slices {first}, first load", slices_first)
    z = at.slider(key="sl_z").value
    positions = iter([z + (i % 2 and 5 or -5) for i in range(args.repeats * 2)])
    record("slices, move axial slider", median_ms(
        lambda: at.slider(key="sl_z").set_value(next(positions)).run(), args.repeats),
        slices_first)
    record("slices, move sagittal slider", median_ms(
        lambda: at.slider(key="sl_x").set_value(at.slider(key="sl_x").value + 1).run(),
        args.repeats), slices_first)
    overlays = iter(["disagreement", "prediction"] * args.repeats)
    record("slices, change overlay", median_ms(
        lambda: at.selectbox(key="sl_overlay").select(next(overlays)).run(), args.repeats),
        slices_first)
    record("slices, modality t1 (first)", timed(
        lambda: at.segmented_control(key="sl_modality").set_value("t1").run()), slices_first)
    modalities = iter(["flair", "t1"] * args.repeats)
    record("slices, switch modality (cached)", median_ms(
        lambda: at.segmented_control(key="sl_modality").set_value(next(modalities)).run(),
        args.repeats), slices_first)

    at.button(key="btn_to_patient").click().run()
    record(f"switch patient to {second} (first)", timed(
        lambda: at.sidebar.selectbox(key="case_id").select(second).run()), patient_first)
    record(f"switch patient back to {first}", timed(
        lambda: at.sidebar.selectbox(key="case_id").select(first).run()), patient_first)

    print(f"results: {run.path} ({len(ids)} cases), median of {args.repeats} where repeated")
    print(f"{'step':<44}{'ms':>10}{'x first load':>14}")
    for name, ms, ratio in rows:
        print(f"{name:<44}{ms:>10.0f}{'' if ratio is None else f'{ratio:>14.2f}'}")
    slider = next(ms for name, ms, _ in rows if name == "slices, move axial slider")
    verdict = "within" if slider < SLICE_TARGET_MS else "OVER"
    print(f"slice change {slider:.0f} ms: {verdict} the {SLICE_TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()
