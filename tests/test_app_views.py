"""What a new user sees on the overview and the patient page (real Streamlit sessions): one
patient for the whole app, tables that fit and name their columns alike, charts that fit their
data, the slice crosshair in 3-D, and the results folder named as it was given."""

from __future__ import annotations

import base64
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io
import pytest
from test_app import _lesion_run, _lesion_table, app, build_results, ok, open_patient, plotly_specs

from tumorscope.app.pages.overview import META_PX
from tumorscope.core.store import Run
from tumorscope.render.cohort import metric_title

MAIN_COLUMN_PX = 940
"""Width of the main column (where the patients table is) in a 1400 x 1000 window, measured
in headless chromium; the grid's row-selection column takes 33 px of it."""


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The same small results as test_app.py's, built once per session for both modules.
    return build_results(tmp_path_factory.getbasetemp() / "app_results")


def _figure(at, key: str) -> go.Figure:
    """A chart of the page as a plotly figure."""
    return plotly.io.from_json(json.dumps(plotly_specs(at)[key]))


def _array(value: object) -> np.ndarray:
    """A trace's array as numbers: plotly sends numpy arrays base64-encoded."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).astype(float)
    return np.asarray(value, dtype=float)


def _columns(frame) -> dict[str, dict]:
    """The grid's column configuration of a table: label, width, help per column."""
    return json.loads(frame.proto.columns)


def test_overview_and_sidebar_show_one_patient(run_dir: Path) -> None:
    at = ok(app(run_dir).run())
    assert at.selectbox(key="ov_pick").value == at.sidebar.selectbox(key="case_id").value
    last = at.dataframe[0].value["patient"].iloc[-1]  # not the table's first (worst) row
    at.sidebar.selectbox(key="case_id").select(last).run()
    assert ok(at).selectbox(key="ov_pick").value == last
    first = at.dataframe[0].value["patient"].iloc[0]
    at.selectbox(key="ov_pick").select(first).run()
    assert ok(at).sidebar.selectbox(key="case_id").value == first


def test_patients_table_fits_a_1400_px_window_with_short_titles(run_dir: Path) -> None:
    at = ok(app(run_dir).run())
    grid = at.dataframe[0]
    shown = list(grid.proto.column_order)
    config = _columns(grid)
    # Every score and volume is on screen at once: the grid's columns fit the main column.
    assert {"HD95 ET (monai, mm)", "ET mL", "WT mL"} <= set(shown)
    widths = [config[c]["width"] for c in shown]
    assert 33 + sum(widths) <= MAIN_COLUMN_PX, dict(zip(shown, widths, strict=True))
    labels = {c: config[c].get("label", c) for c in shown}
    assert labels["HD95 ET (monai, mm)"] == "HD95 ET" and labels["Dice WT"] == "Dice WT"
    assert all(len(label) <= 9 for label in labels.values()), labels
    # The definition and unit are one hover away; the numbers stay in the table (and CSV).
    assert "monai" in config["HD95 ET (monai, mm)"]["help"]
    value = grid.value
    row = value.iloc[0]
    assert row["WT mL"].startswith(f"{row['WT true (mL)']:.0f} → ") or \
        row["WT mL"].startswith(f"{row['WT true (mL)']:.1f} → ")
    assert config["patient"]["width"] == META_PX["patient"]


def test_patient_scores_are_titled_as_the_overview_titles_them(run_dir: Path) -> None:
    case_id = Run(run_dir).case_ids()[0]
    at = open_patient(ok(app(run_dir).run()), case_id)
    scores = at.dataframe[-1]
    config = _columns(scores)
    assert config["hd95_monai_mm"]["label"] == "HD95 (monai, mm)" \
        == metric_title("hd95_monai_mm")
    assert config["dice"]["label"] == "Dice" and config["volume_pred_ml"]["label"] == \
        "pred (mL)"
    titled = {name: c["label"] for name, c in config.items() if not name.startswith("_")}
    assert len(titled) >= 10 and not any("_" in label for label in titled.values()), titled


def test_dice_against_volume_fits_its_axis_to_the_points(run_dir: Path) -> None:
    at = ok(app(run_dir).run())
    figure = _figure(at, "chart_dice_volume")
    dice = np.concatenate([_array(t.y) for t in figure.data])
    dice = dice[np.isfinite(dice)]
    low, high = figure.layout.yaxis.range
    assert -0.02 <= low <= dice.min() and dice.max() <= high <= 1.02
    spread = dice.max() - dice.min()
    assert high - low <= 1.25 * spread + 0.12  # not a fixed 0-1 axis


def test_training_chart_keeps_loss_and_dice_apart_and_shows_validation_loss(
        run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "R"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "meshes"))
    log = copy / "log.csv"
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["val_loss"] = str(float(row["loss"]) * 1.1)
    with open(log, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    at = ok(app(copy).run())
    figure = _figure(at, "chart_training")
    traces = {t.name: t for t in figure.data}
    assert {"training loss", "validation loss"} <= set(traces) and len(traces) > 2
    for name, trace in traces.items():
        loss = "loss" in name
        assert (trace.xaxis or "x") == ("x" if loss else "x2"), name
        assert (trace.legend or "legend") == ("legend" if loss else "legend2"), name
    np.testing.assert_allclose(_array(traces["validation loss"].y),
                               [float(r["val_loss"]) for r in rows])
    layout = figure.layout
    left, right = layout.xaxis.domain, layout.xaxis2.domain
    assert left[0] < layout.legend.x <= left[1]
    assert right[0] < layout.legend2.x <= right[1]


def _crosshair(at) -> np.ndarray:
    """The world point (mm) where the 3-D scene's crosshair arms cross."""
    (trace,) = [t for t in _figure(at, "chart_3d").data if t.meta == "crosshair"]
    points = np.array([_array(trace[a]) for a in "xyz"]).T
    arms = points[~np.isnan(points).any(axis=1)].reshape(3, 2, 3)
    return np.array([arms[axis, 0, other] for axis, other in ((1, 0), (0, 1), (0, 2))])


def test_the_slice_crosshair_is_marked_in_3d(run_dir: Path, tmp_path: Path) -> None:
    run, case_id, made = _lesion_run(run_dir, tmp_path / "R")
    at = open_patient(ok(app(run.path).run()), case_id)
    assert not any(t["meta"] == "crosshair" for t in plotly_specs(at)["chart_3d"]["data"])
    # Choosing a lesion puts the crosshair on it: the 3-D view shows it there.
    at.session_state[_lesion_table(at).key] = {"selection": {"rows": [0], "columns": []}}
    at = ok(at.run())
    fn = made["rows"][0]
    centroid = np.array([fn["centroid_x_mm"], fn["centroid_y_mm"], fn["centroid_z_mm"]])
    np.testing.assert_allclose(_crosshair(at), centroid, atol=1.0)
    assert any("Slice crosshair" in m.value for m in at.markdown)
    # Moved in the slice viewer (its sliders' keys), it moves in 3-D too.
    at.session_state["sl_z"] = int(at.session_state["sl_z"]) + 3
    at = ok(at.run())
    moved = _crosshair(at)
    spacing = np.abs(np.diag(made["image"].affine)[:3])
    assert moved[2] == pytest.approx(centroid[2] + 3 * spacing[2], abs=1.0)


def test_a_click_in_3d_moves_the_slice_crosshair(run_dir: Path, tmp_path: Path) -> None:
    """The click as the page's link component reports it (a plotly_click in the browser)."""
    run, case_id, made = _lesion_run(run_dir, tmp_path / "R")
    at = open_patient(ok(app(run.path).run()), case_id)
    fp = made["rows"][1]
    point = {"x": fp["centroid_x_mm"], "y": fp["centroid_y_mm"], "z": fp["centroid_z_mm"],
             "layer": "lesions FP", "id": "brats2023:ET:FP:5"}
    at.session_state["scene_link"] = {"picked": point}
    at = ok(at.run())
    np.testing.assert_allclose(_crosshair(at),
                               [point[a] for a in "xyz"], atol=1.0)
    assert at.session_state["sl_case"].endswith(f"|{case_id}")


def test_results_folder_is_named_as_given_not_by_this_machines_layout(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = run_dir.parent.parent
    monkeypatch.chdir(base)
    at = ok(app(run_dir).run())
    caption = " ".join(c.value for c in at.caption)
    assert f"`{run_dir.parent.name}`" in caption and str(base) not in caption
