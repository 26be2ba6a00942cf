"""The Streamlit app, used as a person would: real results made by the project's own commands,
the real ``streamlit_app.py`` driven through ``streamlit.testing.v1.AppTest``."""

from __future__ import annotations

import doctest
import importlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tumorscope.app import meshes, tables, volumes
from tumorscope.app.caches import stamp
from tumorscope.app.cli import main as cli_main
from tumorscope.app.results import RESULTS_ENV
from tumorscope.core.data.geometry import to_ras
from tumorscope.core.data.nifti import read_nifti
from tumorscope.core.scoring.distances import HD95_DEFINITIONS
from tumorscope.core.store import Run
from tumorscope.render import export, slices, style
from tumorscope.render.layers import SceneOptions
from tumorscope.render.lesions import lesions_frame

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "streamlit_app.py"
TIMEOUT_S = 180  # the first patient page builds meshes of an untrained net's noisy output


def build_results(base: Path) -> Path:
    """Demo cohort (3 cases), a 1-epoch tiny training and its predictions; returns the run.

    Idempotent, so the browser test's module can share the folder this module builds.
    """
    data_dir, run_dir, cache_dir = base / "D", base / "R", base / "C"
    if (run_dir / "metrics.csv").is_file():
        return run_dir
    assert cli_main(["demo-data", "--out", str(data_dir), "--cases", "3", "--seed", "1"]) == 0
    assert cli_main([
        "train", "--config", "tiny-cpu", "--data", str(data_dir), "--out", str(run_dir),
        "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2",
        "--set", "model.features=[4,8,16]", "--set", "data.patch_size_vox=32",
        "--set", f"data.cache_dir={cache_dir}", "-q"]) == 0
    assert cli_main(["predict", "--checkpoint", str(run_dir / "checkpoints" / "best.pt"),
                     "--input", str(data_dir), "--out", str(run_dir), "--cache",
                     str(cache_dir), "-q"]) == 0
    return run_dir


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_results(tmp_path_factory.getbasetemp() / "app_results")


@pytest.fixture(scope="session")
def no_truth_run(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the run where the first case has no ground truth (and so no scores)."""
    copy = tmp_path_factory.mktemp("no_truth") / "R"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "meshes"))
    run = Run(copy)
    cases = run.cases()
    first = sorted(cases)[0]
    cases[first]["label"] = None
    run.write_cases(cases)
    run.write_metrics([r for r in run.metrics_rows() if r["case_id"] != first])
    return copy


def app(results: Path | str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.session_state["results_dir"] = str(results)
    return at


def ok(at: AppTest) -> AppTest:
    """Fail with the page's own message if a page raised or showed an error box."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def plotly_specs(at: AppTest) -> dict[str, dict]:
    return {e.proto.id.rsplit("-", 1)[-1]: json.loads(e.proto.spec)
            for e in at.get("plotly_chart")}


def chart_title(at: AppTest, key: str) -> str:
    """A chart's title as one line (long titles are wrapped with <br>)."""
    return plotly_specs(at)[key]["layout"]["title"]["text"].replace("<br>", " ")


def image_urls(at: AppTest) -> list[str]:
    """What each of the slice viewer's views shows, in page order: a server-drawn view's PNG
    (a data URL), or what a browser-drawn one is told to draw (its arguments as JSON: the
    blobs' names, slice, crosshair, viewport)."""
    out = []
    for e in at.main.get("component_instance"):
        args = json.loads(e.proto.json_args)
        if "click_" in e.proto.id:
            out.append(args["src"])
        elif "canvas_" in e.proto.id:
            out.append(json.dumps(args, sort_keys=True))
    return out


def open_patient(at: AppTest, case_id: str) -> AppTest:
    at.selectbox(key="ov_pick").select(case_id)
    return ok(at.button(key="btn_open_patient").click().run())


# --------------------------------------------------------------------------------------------
# overview


def test_overview_shows_every_patient_table_and_charts(run_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RESULTS_ENV, str(run_dir))  # the env var is one way in
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run())
    assert titles(at) == ["Cohort overview"]
    table = at.dataframe[0].value
    ids = Run(run_dir).case_ids()
    assert sorted(table["patient"]) == ids
    assert {"Dice WT", "HD95 ET (monai, mm)", "WT true (mL)", "ET pred (mL)"} <= set(
        table.columns)
    # Worst first by default: mean Dice ascending.
    assert list(table["mean Dice"]) == sorted(table["mean Dice"])
    charts = plotly_specs(at)
    assert {"chart_dice", "chart_hd95", "chart_volume", "chart_dice_volume",
            "chart_training"} <= set(charts)
    assert [t["type"] for t in charts["chart_dice"]["data"]] == ["box"] * 3
    assert any(t.get("name") == "identity" for t in charts["chart_volume"]["data"])
    assert any("synthetic demo data" in i.value.lower() for i in at.info)

    at.segmented_control(key="ov_order").set_value("best first").run()
    best = ok(at).dataframe[0].value
    assert list(best["mean Dice"]) == sorted(best["mean Dice"], reverse=True)
    at.text_input(key="ov_search").input(ids[1]).run()
    assert list(ok(at).dataframe[0].value["patient"]) == [ids[1]]
    at.segmented_control(key="ov_dist").set_value("violin").run()
    assert plotly_specs(ok(at))["chart_dice"]["data"][0]["type"] == "violin"


def test_results_folder_from_command_line(run_dir: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "not-this-one"))
    monkeypatch.setattr(sys, "argv", ["streamlit_app.py", "--results", str(run_dir.parent)])
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run())
    assert titles(at) == ["Cohort overview"]
    assert at.session_state["results_dir"] == str(run_dir.parent)


def test_folder_of_runs_offers_a_run_picker(run_dir: Path, tmp_path: Path) -> None:
    for name in ("first", "second"):
        shutil.copytree(run_dir, tmp_path / name,
                        ignore=shutil.ignore_patterns("checkpoints", "meshes"))
    second = Run(tmp_path / "second")
    kept = second.case_ids()[:2]
    second.write_metrics([r for r in second.metrics_rows() if r["case_id"] in kept])
    at = ok(app(tmp_path).run())
    assert at.sidebar.selectbox(key="run_name").options == ["first", "second"]
    assert at.dataframe[0].value["ground truth"].all()
    at.sidebar.selectbox(key="run_name").select("second").run()
    table = ok(at).dataframe[0].value
    assert sorted(table.loc[table["Dice WT"].notna(), "patient"]) == kept


def test_selecting_a_patient_shows_its_metrics_and_3d_scene(run_dir: Path) -> None:
    case_id = Run(run_dir).case_ids()[1]
    at = open_patient(ok(app(run_dir).run()), case_id)
    assert titles(at) == [f"Patient {case_id}"]
    rows = {r["region"]: r for r in Run(run_dir).metrics_rows() if r["case_id"] == case_id}
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Dice WT"] == f"{rows['WT']['dice']:.3f}"
    assert tiles["Grade"] == rows["WT"]["grade"]
    scores = at.dataframe[-1].value  # the scores table comes after the lesion list
    assert list(scores["region"]) == ["WT", "TC", "ET"]
    assert np.allclose(scores["hd95_monai_mm"],
                       [rows[r]["hd95_monai_mm"] for r in ("WT", "TC", "ET")])
    scene = plotly_specs(at)["chart_3d"]
    names = [t["name"] for t in scene["data"]]
    assert names[0] == "brain" and any(n.startswith("truth WT") for n in names)
    assert any(n.startswith("prediction WT") for n in names)
    # Truth is a wireframe cage (plotly lines), lesions markers, everything else surfaces.
    surfaces = [t for t in scene["data"] if not t["meta"].startswith("lesions")]
    assert all(t["type"] == ("scatter3d" if t["name"].startswith("truth") else "mesh3d")
               for t in surfaces)
    # The untrained net's specks are false-positive lesions: the largest are marked.
    fp = next(t for t in scene["data"] if t["meta"] == "lesions FP")
    assert fp["mode"] == "markers" and 0 < len(fp["x"]) <= style.MAX_LESION_MARKERS
    assert fp["name"].startswith("false-positive lesion (FP)")
    assert at.session_state["case_id"] == case_id

    # Distance colouring, one region, FP/FN surfaces, another camera.
    at.radio(key="p3d_colour").set_value("signed distance to truth").run()
    pred = [t for t in plotly_specs(ok(at))["chart_3d"]["data"]
            if t["name"].startswith("prediction")]
    assert pred and all("intensity" in t for t in pred)
    at.pills(key="p3d_regions").set_value(["ET"])
    at.toggle(key="p3d_brain").set_value(False)
    at.toggle(key="p3d_errors").set_value(True).run()
    at.selectbox(key="p3d_camera").select("axial").run()
    scene = plotly_specs(ok(at))["chart_3d"]
    names = [t["name"] for t in scene["data"]]
    assert "brain" not in names and not any("WT" in n for n in names)
    assert scene["layout"]["scene"]["camera"]["eye"]["z"] < 0  # axial: seen from the feet
    assert {b.label for b in at.download_button} >= {"3D view (PNG)", "Meshes (GLB)",
                                                     "Meshes (HTML)", "Scores (CSV)"}


def test_slice_sliders_overlays_and_jump(run_dir: Path) -> None:
    case_id = Run(run_dir).case_ids()[0]
    at = open_patient(ok(app(run_dir).run()), case_id)
    at = ok(at.button(key="btn_to_slices").click().run())
    assert titles(at) == [f"Slices · {case_id}"]
    before = image_urls(at)
    assert len(before) == 3
    z = at.slider(key="sl_z").value
    at.slider(key="sl_z").set_value(z - 10 if z >= 10 else z + 10).run()
    after = image_urls(ok(at))
    assert after[0] != before[0]  # the axial slice itself changed
    assert after[1:] != before[1:]  # and the crosshair moved in the other two

    at.segmented_control(key="sl_modality").set_value("t1").run()
    assert image_urls(ok(at)) != after
    at.segmented_control(key="sl_style").set_value("outline").run()
    for overlay in ("truth", "both", "disagreement", "none", "prediction"):
        at.selectbox(key="sl_overlay").select(overlay).run()
        ok(at)
    at.slider(key="sl_level").set_value(at.slider(key="sl_level").value * 0.9).run()
    ok(at)

    at.slider(key="sl_x").set_value(0).run()
    at.button(key="btn_jump").click().run()
    label = volumes.load_label(str(Run(run_dir).cases()[case_id]["label"]),
                               stamp(Run(run_dir).cases()[case_id]["label"]), "brats2020")
    expected = slices.largest_slices(label.data != 0)
    assert tuple(at.slider(key=k).value for k in ("sl_x", "sl_y", "sl_z")) == expected


def test_clicking_a_view_moves_the_crosshair(run_dir: Path) -> None:
    case_id = Run(run_dir).case_ids()[0]
    at = open_patient(ok(app(run_dir).run()), case_id)
    at = ok(at.button(key="btn_to_slices").click().run())
    x, y, z = (at.slider(key=k).value for k in ("sl_x", "sl_y", "sl_z"))
    shape = volumes.load_label(str(Run(run_dir).prediction_path(case_id)), 0,
                               "brats2020").shape
    before = image_urls(at)
    # What the browser sends for a click at a quarter from the left, a third from the top of
    # the axial view (shown 300 x 300 px): the patient's right, anterior half.
    at.session_state["canvas_axial"] = {"x": 75, "y": 100, "width": 300, "height": 300,
                                        "unix_time": 1}
    at = ok(at.run())
    moved = tuple(at.slider(key=k).value for k in ("sl_x", "sl_y", "sl_z"))
    assert moved == (shape[0] - 1 - int(0.25 * shape[0]), shape[1] - 1 - int(shape[1] / 3), z)
    assert (moved[0], moved[1]) != (x, y)
    after = image_urls(at)
    assert after[0] != before[0] and after[1] != before[1] and after[2] != before[2]
    at.slider(key="sl_x").set_value(0).run()  # the same click, seen again, moves nothing
    assert tuple(at.slider(key=k).value for k in ("sl_x", "sl_y", "sl_z")) == (0, *moved[1:])


def test_case_without_ground_truth_shows_prediction_only(no_truth_run: Path) -> None:
    first = Run(no_truth_run).case_ids()[0]
    at = ok(app(no_truth_run).run())
    table = at.dataframe[0].value.set_index("patient")
    assert not table.loc[first, "ground truth"] and np.isnan(table.loc[first, "Dice WT"])
    assert table.loc[first, "WT pred (mL)"] > 0  # read from the prediction itself

    at = open_patient(at, first)
    assert any("no ground truth" in i.value.lower() for i in at.info)
    assert at.toggle(key="p3d_truth").disabled and at.radio(key="p3d_colour").disabled
    names = [t["name"] for t in plotly_specs(at)["chart_3d"]["data"]]
    assert names and not any(n.startswith("truth") for n in names)
    at = ok(at.button(key="btn_to_slices").click().run())
    assert at.selectbox(key="sl_overlay").options == ["Prediction", "None"]


# --------------------------------------------------------------------------------------------
# scorings and lesions


def test_scoring_toggle_and_hd95_definition_retitle_the_cohort(run_dir: Path) -> None:
    at = ok(app(run_dir).run())
    table = at.dataframe[0].value
    hd95 = [c for c in table.columns if "HD95" in c]
    assert hd95 == ["HD95 WT (monai, mm)", "HD95 TC (monai, mm)", "HD95 ET (monai, mm)"]
    assert not any("brats2023" in c for c in table.columns)
    assert chart_title(at, "chart_hd95") == HD95_DEFINITIONS["monai"]
    assert "lesion-wise BraTS 2023" in at.segmented_control(key="ov_scoring").options
    rows = {(r["case_id"], r["region"]): r for r in Run(run_dir).current_metrics_rows()}

    at.segmented_control(key="ov_scoring").set_value("brats2023").run()
    table = ok(at).dataframe[0].value.set_index("patient")
    columns = list(table.columns)
    # Side by side: the lesion-wise Dice right after the legacy one, then the lesion counts.
    assert columns[columns.index("Dice WT") + 1] == "Dice WT · brats2023"
    assert {"FN WT · brats2023", "FP ET · brats2023",
            "HD95 TC · brats2023 (surfel, mm)"} <= set(columns)
    for (case_id, region), row in rows.items():
        assert table.loc[case_id, f"Dice {region} · brats2023"] == pytest.approx(
            row["brats2023_dice"])
        assert table.loc[case_id, f"FP {region} · brats2023"] == row["brats2023_fp"]
        assert table.loc[case_id, f"FN {region} · brats2023"] == row["brats2023_fn"]
    tiles = {m.label: m.value for m in at.metric}
    fp_wt = sum(r["brats2023_fp"] for (_, region), r in rows.items() if region == "WT")
    assert tiles["FN / FP lesions WT"].endswith(f"/ {fp_wt}")
    assert {"chart_lw_dice", "chart_lw_hd95"} <= set(plotly_specs(at))

    at.selectbox(key="ov_hd95").select("pooled").run()
    table = ok(at).dataframe[0].value.set_index("patient")
    titles_of_hd95 = [c for c in table.columns if "HD95" in c]
    # Never an HD95 without its definition: legacy ones by the chosen one, lesion-wise by theirs.
    assert all(c.endswith(("(pooled, mm)", "(surfel, mm)")) for c in titles_of_hd95)
    assert "HD95 WT (pooled, mm)" in titles_of_hd95 and not any("monai" in c
                                                                 for c in titles_of_hd95)
    for (case_id, region), row in rows.items():
        assert table.loc[case_id, f"HD95 {region} (pooled, mm)"] == pytest.approx(
            row["hd95_pooled_mm"])
    assert chart_title(at, "chart_hd95") == HD95_DEFINITIONS["pooled"]
    assert HD95_DEFINITIONS["surfel"] in chart_title(at, "chart_lw_hd95")
    assert any(m.label == "median HD95 WT (pooled)" for m in at.metric)
    assert HD95_DEFINITIONS["pooled"] in " ".join(c.value for c in at.caption)
    # Sorting by an HD95 follows the definition; back to legacy drops the lesion columns.
    at.selectbox(key="ov_sort").select("HD95 ET (pooled, mm)").run()
    assert list(ok(at).dataframe[0].value["HD95 ET (pooled, mm)"]) == sorted(
        table["HD95 ET (pooled, mm)"], reverse=True)  # worst (largest) first
    at.selectbox(key="ov_hd95").select("surfel")
    at.segmented_control(key="ov_scoring").set_value("legacy").run()
    assert at.selectbox(key="ov_sort").value == "HD95 ET (surfel, mm)"
    assert not any("brats2023" in c for c in ok(at).dataframe[0].value.columns)


def _lesion_run(run_dir: Path, folder: Path) -> tuple[Run, str, dict]:
    """A copy of the run whose second case has a known miss, false positive and match (and
    one stale row of an older prediction); the other cases keep their own rows."""
    shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("checkpoints"))
    run = Run(folder)
    case_id = run.case_ids()[1]
    current = next(r for r in run.current_metrics_rows() if r["case_id"] == case_id)
    image = read_nifti(run.case_records()[case_id].images["flair"])

    def world(index: tuple[int, int, int]) -> list[float]:
        return [round(float(v), 3) for v in (image.affine @ np.array([*index, 1.0]))[:3]]

    hashes = {"prediction_sha256": current["prediction_sha256"],
              "truth_sha256": current["truth_sha256"]}
    shape = image.data.shape
    places = {"FN": (shape[0] // 3, shape[1] // 2, shape[2] // 2),
              "FP": (2 * shape[0] // 3, shape[1] // 3, shape[2] // 3),
              "TP": (shape[0] // 2, shape[1] // 2, shape[2] // 2)}
    mine = [
        {"case_id": case_id, "region": "WT", "scoring": "brats2023", "lesion": 2,
         "status": "FN", "volume_ml": 0.6, "dice": 0.0, "hd95_mm": 374.0, "matched": ""},
        {"case_id": case_id, "region": "ET", "scoring": "brats2023", "lesion": 5,
         "status": "FP", "volume_ml": 0.2, "dice": 0.0, "hd95_mm": 374.0, "matched": ""},
        {"case_id": case_id, "region": "WT", "scoring": "brats2023", "lesion": 1,
         "status": "TP", "volume_ml": 12.0, "dice": 0.9, "hd95_mm": 2.0, "matched": "1"},
    ]
    for row in mine:
        x, y, z = world(places[row["status"]])
        row.update(centroid_x_mm=x, centroid_y_mm=y, centroid_z_mm=z, **hashes)
    stale = {**mine[0], "lesion": 99, "prediction_sha256": "0" * 64}
    others = [r for r in run.lesion_rows() if r["case_id"] != case_id]
    with open(run.lesions_path, "w", newline="") as f:
        columns = list(mine[0])
        f.write(",".join(columns) + "\n")
        for row in [*mine, stale, *others]:
            f.write(",".join("" if row.get(c) is None else str(row[c]) for c in columns)
                    + "\n")
    return run, case_id, {"rows": mine, "places": places, "image": image}


def _lesion_table(at: AppTest):
    tables_ = [d for d in at.dataframe if d.key and d.key.startswith("lesion_table")]
    assert len(tables_) == 1, [d.key for d in at.dataframe]
    return tables_[0]


def _camera_target(scene: dict) -> np.ndarray:
    """The world point (mm) a plotly scene camera looks at."""
    layout = scene["layout"]["scene"]
    box = np.array([layout[f"{a}axis"]["range"] for a in "xyz"])
    centre = np.array([layout["camera"]["center"][a] for a in "xyz"])
    return box.mean(axis=1) + centre * np.ptp(box, axis=1).max()


def test_lesion_list_aims_the_camera_and_the_crosshair(run_dir: Path, tmp_path: Path) -> None:
    run, case_id, made = _lesion_run(run_dir, tmp_path / "R")
    at = open_patient(ok(app(run.path).run()), case_id)
    table = _lesion_table(at).value
    # The case's current lesions of lesions.csv, misses first; the stale row is not listed.
    assert [s[0] for s in table["status"]] == ["FN", "FP", "TP"]
    assert list(table["lesion"]) == [2, 5, 1] and 99 not in list(table["lesion"])
    assert list(table["region"]) == ["WT", "ET", "WT"]
    assert any("1 lesion row(s)" in w.value and "stale" in w.value for w in at.warning)
    scene = plotly_specs(at)["chart_3d"]
    marks = {t["meta"]: t for t in scene["data"] if t["meta"].startswith("lesions")}
    assert set(marks) == {"lesions FN", "lesions FP"}  # matches are not marked
    assert marks["lesions FN"]["name"].startswith("missed lesion (FN)")
    assert marks["lesions FP"]["name"].startswith("false-positive lesion (FP)")
    assert marks["lesions FN"]["text"] == ["WT lesion 2 · FN · 0.60 mL · Dice 0.00"]
    before = _camera_target(scene)

    at.session_state[_lesion_table(at).key] = {"selection": {"rows": [0], "columns": []}}
    at = ok(at.run())
    fn = made["rows"][0]
    centroid = np.array([fn["centroid_x_mm"], fn["centroid_y_mm"], fn["centroid_z_mm"]])
    scene = plotly_specs(at)["chart_3d"]
    np.testing.assert_allclose(_camera_target(scene), centroid, atol=0.5)
    assert np.linalg.norm(_camera_target(scene) - before) > 1.0
    assert any(t["meta"] == "selected lesion" for t in scene["data"])
    ras = to_ras(made["image"].data, made["image"].affine)
    voxel = tuple(int(at.session_state[k]) for k in ("sl_x", "sl_y", "sl_z"))
    np.testing.assert_allclose((ras.affine @ np.array([*voxel, 1.0]))[:3], centroid, atol=0.01)
    assert any("Centred on" in m.value and "WT lesion 2" in m.value for m in at.markdown)

    at = ok(at.button(key="btn_lesion_slices").click().run())
    assert titles(at) == [f"Slices · {case_id}"]
    assert tuple(at.slider(key=k).value for k in ("sl_x", "sl_y", "sl_z")) == voxel
    assert at.selectbox(key="sl_lesion").value == "brats2023:WT:FN:2"
    at.selectbox(key="sl_lesion").select("brats2023:ET:FP:5").run()
    fp = made["rows"][1]
    moved = tuple(ok(at).slider(key=k).value for k in ("sl_x", "sl_y", "sl_z"))
    np.testing.assert_allclose((ras.affine @ np.array([*moved, 1.0]))[:3],
                               [fp["centroid_x_mm"], fp["centroid_y_mm"], fp["centroid_z_mm"]],
                               atol=0.01)
    # Back on the patient page the camera follows the lesion chosen in the slices.
    at = ok(at.button(key="btn_to_patient").click().run())
    np.testing.assert_allclose(_camera_target(plotly_specs(at)["chart_3d"]),
                               [fp["centroid_x_mm"], fp["centroid_y_mm"], fp["centroid_z_mm"]],
                               atol=0.5)
    at = ok(at.button(key="btn_lesion_clear").click().run())
    assert at.session_state["p3d_lesion"] is None
    assert not any(t["meta"] == "selected lesion" for t in plotly_specs(at)["chart_3d"]["data"])


def test_lesions_of_a_case_without_current_scores_are_not_shown(run_dir: Path,
                                                                tmp_path: Path) -> None:
    import nibabel as nib

    run, case_id, _ = _lesion_run(run_dir, tmp_path / "R")
    listed = lesions_frame(run)
    assert (listed["case_id"] == case_id).sum() == 4
    path = run.prediction_path(case_id)  # rewritten after evaluate: every score is stale
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), path)
    at = open_patient(ok(app(run.path).run()), case_id)
    assert not [d for d in at.dataframe if d.key and d.key.startswith("lesion_table")]
    assert any("4 lesion row(s)" in w.value and "not shown" in w.value for w in at.warning)
    names = [t.get("meta", "") for t in plotly_specs(at)["chart_3d"]["data"]]
    assert not any(n.startswith("lesions") for n in names)


def test_a_damaged_lesions_file_leaves_the_patient_page_up(run_dir: Path,
                                                           tmp_path: Path) -> None:
    folder = tmp_path / "R"
    shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("checkpoints"))
    (folder / "lesions.csv").write_text("case_id,region\nA,WT\n")
    at = open_patient(ok(app(folder).run()), Run(folder).case_ids()[1])
    assert any("Cannot list this case's lesions" in w.value and "missing column" in w.value
               for w in at.warning)
    assert "chart_3d" in plotly_specs(at)  # the rest of the page stands


# --------------------------------------------------------------------------------------------
# broken or missing results


def test_missing_default_results_names_the_command(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    assert not at.exception
    assert len(at.error) == 1 and "`tumorscope demo`" in at.error[0].value


@pytest.mark.parametrize("damage", ["empty", "missing", "bad_metrics", "bad_cases",
                                    "bad_prediction", "nul_metrics", "text_metrics",
                                    "list_cases"])
def test_broken_results_show_one_clear_message(damage: str, run_dir: Path,
                                               tmp_path: Path) -> None:
    folder = tmp_path / "R"
    if damage == "empty":
        folder.mkdir()
    elif damage != "missing":
        shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("checkpoints", "meshes"))
    case_id = Run(run_dir).case_ids()[0]
    if damage == "bad_metrics":
        (folder / "metrics.csv").write_text("a,b\n1,2\n")
    elif damage == "bad_cases":
        (folder / "cases.json").write_text("{not json")
    elif damage == "nul_metrics":
        (folder / "metrics.csv").write_bytes(b"case_id,region,dice\nA,WT,0.5\x00\n")
    elif damage == "text_metrics":
        text = (folder / "metrics.csv").read_text().splitlines()
        header = text[0].split(",")
        cells = text[1].split(",")
        cells[header.index("dice")] = "n/a"
        (folder / "metrics.csv").write_text("\n".join([text[0], ",".join(cells), *text[2:]]))
    elif damage == "list_cases":
        (folder / "cases.json").write_text("[]")
    elif damage == "bad_prediction":
        path = Run(folder).prediction_path(case_id)
        path.write_bytes(path.read_bytes()[:200])  # a truncated gzip
    at = app(folder).run()
    if damage == "bad_prediction":  # the overview is fine; that patient's pages say why not
        ok(at).selectbox(key="ov_pick").select(case_id)
        at.button(key="btn_open_patient").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1
    message = at.error[0].value
    expected = {"empty": "no run found", "missing": "does not exist",
                "bad_metrics": "missing column", "bad_cases": "not valid JSON",
                "bad_prediction": "corrupt", "nul_metrics": "NUL bytes",
                "text_metrics": "dice = 'n/a' is not a number",
                "list_cases": "must map case ids to records"}[damage]
    assert expected in message and "Traceback" not in message


# --------------------------------------------------------------------------------------------
# pieces the pages are built from


def test_exports_write_real_files(run_dir: Path) -> None:
    run = Run(run_dir)
    case = tables.case_record(run, run.case_ids()[0])
    truth, pred = meshes.surfaces(run, case, "truth"), meshes.surfaces(run, case, "prediction")
    png = export.scene_png(truth, pred,
                            options=SceneOptions(camera="axial", window_size=(320, 240)))
    image = np.asarray(Image.open(io.BytesIO(png)))
    assert image.shape == (240, 320, 3) and image.std() > 5
    named = export.named_meshes(truth, pred)
    assert {"WT", "truth_WT"} <= set(named)
    assert export.meshes_glb(named)[:4] == b"glTF"
    assert b"plotly" in export.scene_html(truth, pred, options=SceneOptions(title="t"))[:200_000]
    with zipfile.ZipFile(io.BytesIO(export.meshes_vtp_zip(named))) as archive:
        assert {f"{n}.vtp" for n in named} == set(archive.namelist())


def test_orientation_is_radiological_whatever_the_affine() -> None:
    """A marker at the patient's right-anterior-superior corner lands top-left in axial."""
    volume = np.zeros((6, 7, 5), np.float32)
    for affine in (np.diag([1.0, 1.0, 1.0, 1.0]), np.diag([-1.0, -1.0, 1.0, 1.0]),
                   np.array([[0, -1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]])):
        # Write the marker where this affine puts the RAS corner, then turn back to RAS.
        ras = to_ras(np.arange(volume.size).reshape(volume.shape), affine)
        right_anterior_superior = tuple(n - 1 for n in ras.shape)  # RAS index order
        source_index = np.unravel_index(int(ras.data[right_anterior_superior]), volume.shape)
        marked = np.zeros(volume.shape, np.float32)
        marked[source_index] = 1.0
        shown = to_ras(marked, affine)
        axial = slices.slice_2d(shown.data, "axial", shown.shape[2] - 1)
        assert axial[0, 0] == 1.0  # top-left: anterior up, patient right on the image left
        coronal = slices.slice_2d(shown.data, "coronal", shown.shape[1] - 1)
        assert coronal[0, 0] == 1.0  # top-left: superior up, patient right on the left


@pytest.mark.parametrize("module", ["tumorscope.app.results", "tumorscope.render.cohort",
                                    "tumorscope.core.data.geometry", "tumorscope.render.slices",
                                    "tumorscope.app.pages.patient",
                                    "tumorscope.app.pages.overview", "tumorscope.render.export"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_app_pages_start_without_torch() -> None:
    code = ("import sys; import tumorscope.app.streamlit_main, tumorscope.app.pages.overview, "
            "tumorscope.app.pages.patient, tumorscope.app.pages.slices, tumorscope.app.meshes, "
            "tumorscope.app.volumes, tumorscope.app.tables, tumorscope.render.export; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_a_changed_prediction_shows_no_stale_score(run_dir: Path, tmp_path: Path) -> None:
    """A prediction rewritten after evaluate: its old score is not shown, and the page says so."""
    import nibabel as nib

    folder = tmp_path / "R"
    shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("checkpoints", "meshes"))
    run = Run(folder)
    case_id = run.case_ids()[0]
    path = run.prediction_path(case_id)
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), path)
    at = ok(app(folder).run())
    warnings = [w.value for w in at.warning]
    assert any(case_id in w and "no current score" in w for w in warnings), warnings
    table = at.dataframe[0].value
    row = table[table["patient"] == case_id].iloc[0]
    assert np.isnan(row["Dice WT"])  # the old number is gone, not shown as current
    others = table[table["patient"] != case_id]
    assert others["Dice WT"].notna().all()


def test_an_input_changed_in_place_turns_its_score_stale_on_the_next_rerun(
        run_dir: Path, tmp_path: Path) -> None:
    """The overview's caches are keyed by one stat per image and label: a truth or an image
    rewritten in place while the app is open leaves the table at the next rerun (the same
    session, every cache warm), and the page says why."""
    import nibabel as nib

    base = tmp_path / "base"  # a copy of the data too: its files are changed here
    for name in ("D", "R"):
        shutil.copytree(run_dir.parent / name, base / name,
                        ignore=shutil.ignore_patterns("checkpoints", "meshes"))
    run = Run(base / "R")
    for path in (run.cases_path, run.metrics_path):  # point the records at the copy
        path.write_text(path.read_text().replace(str(run_dir.parent), str(base)))
    truth_case, image_case = run.case_ids()[:2]
    at = ok(app(run.path).run())
    assert not at.warning, [w.value for w in at.warning]

    def rewrite(path: Path) -> None:  # other voxels, the same file (its inode kept)
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
        nib.save(nib.Nifti1Image(np.roll(data, 3, axis=0), img.affine, img.header), path)

    rewrite(run.case_records()[truth_case].label)
    table = ok(at.run()).dataframe[0].value.set_index("patient")
    assert np.isnan(table.loc[truth_case, "Dice WT"])
    assert table.loc[image_case, "Dice WT"] >= 0
    assert any(truth_case in w.value and "ground truth changed" in w.value
               for w in at.warning), [w.value for w in at.warning]

    rewrite(run.case_records()[image_case].images["flair"])
    table = ok(at.run()).dataframe[0].value.set_index("patient")
    assert np.isnan(table.loc[image_case, "Dice WT"])
    assert any(image_case in w.value and "flair image changed" in w.value
               for w in at.warning), [w.value for w in at.warning]


def test_a_stray_file_in_predictions_does_not_take_the_overview_down(run_dir: Path,
                                                                     tmp_path: Path) -> None:
    folder = tmp_path / "R"
    shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("checkpoints", "meshes"))
    (folder / "predictions" / "stray_copy.nii.gz").write_text("not a NIfTI")
    at = ok(app(folder).run())
    warnings = " ".join(w.value for w in at.warning)
    assert "stray_copy" in warnings and "not written by tumorscope predict" in warnings
    table = at.dataframe[0].value
    assert set(Run(run_dir).case_ids()) <= set(table["patient"])


def test_served_app_neither_watches_its_files_nor_collects_garbage_after_each_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`streamlit run` reads .streamlit/config.toml from the repo: at 1,000 patients the
    file watcher's polling thread and the full collection after every run took most of a
    3-D view's server time (3.8 s -> 1.1-2.0 s without them and with the display-mesh
    cache, benchmarks/bench_app_scale.py)."""
    from streamlit import config

    monkeypatch.chdir(REPO)
    try:
        config.get_config_options(force_reparse=True)
        assert config.get_option("server.fileWatcherType") == "none"
        assert config.get_option("runner.postScriptGC") is False
        assert config.get_option("client.toolbarMode") == "viewer"
    finally:
        monkeypatch.undo()
        config.get_config_options(force_reparse=True)
