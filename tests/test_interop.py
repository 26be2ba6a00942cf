"""Results out to other tools and back: label maps for Slicer and ITK-SNAP, meshes, the model as
TorchScript and ONNX, and another tool's predictions imported, scored and browsed.

Every export is read back with the library that reads that format (pynrrd, pyvista/VTK,
onnxruntime, torch.jit), never with Tumorscope's own writer code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import struct
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest
import pyvista as pv
import torch
from builders import BRATS_AFFINE, SMALL_SHAPE, small_label, write_case
from PIL import Image

from tumorscope.app.cli import main
from tumorscope.core.config import load_config
from tumorscope.core.data.labels import LABEL_NAMES, REGION_LABELS, REGIONS
from tumorscope.core.models import build_model
from tumorscope.core.models.checkpoints import LoadedModel, load_model, save_checkpoint
from tumorscope.core.models.export import check_export, export_model
from tumorscope.core.store import Run
from tumorscope.render.style import LABEL_COLOURS

REPO = Path(__file__).resolve().parents[1]
CASES = [f"BraTS2021_{i:05d}" for i in range(4)]
TO_NNUNET = {0: 0, 1: 2, 2: 1, 4: 3}  # canonical -> nnU-Net's BraTS numbering


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def _other_tools_prediction(i: int) -> np.ndarray:
    """What another tool predicted for case ``i`` (canonical labels): the truth, moved by
    ``i`` voxels along the first axis, so each case scores differently."""
    return np.roll(small_label(), i, axis=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four cases; an nnU-Net-numbered prediction folder with three good files (one stored in
    another voxel order), one of another shape and one named after no case."""
    base = tmp_path_factory.mktemp("interop")
    data = base / "data"
    for i, case_id in enumerate(CASES):
        write_case(data, case_id, seed=i)
    folder = base / "nnunet_out"
    folder.mkdir()
    for i, case_id in enumerate(CASES[:3]):
        canonical = _other_tools_prediction(i)
        theirs = np.vectorize(TO_NNUNET.get)(canonical).astype(np.uint8)
        affine = BRATS_AFFINE
        if i == 2:  # the same world grid, first axis stored the other way round
            theirs = theirs[::-1]
            affine = BRATS_AFFINE.copy()
            affine[:3, 0] *= -1
            affine[:3, 3] = BRATS_AFFINE[:3, :3] @ [SMALL_SHAPE[0] - 1, 0, 0] + BRATS_AFFINE[:3, 3]
        nib.save(nib.Nifti1Image(theirs, affine), folder / f"{case_id}.nii.gz")
    wrong = np.zeros((20, 28, 24), np.uint8)
    wrong[5:9, 5:9, 5:9] = 1
    nib.save(nib.Nifti1Image(wrong, BRATS_AFFINE), folder / f"{CASES[3]}.nii.gz")
    nib.save(nib.Nifti1Image(wrong, BRATS_AFFINE), folder / "someone_else.nii.gz")
    (folder / "plans.json").write_text("{}")  # nnU-Net leaves its settings beside them
    return {"data": data, "folder": folder, "base": base}


@pytest.fixture(scope="module")
def imported(world: dict[str, Path]) -> Path:
    run = world["base"] / "run"
    assert main(["import-predictions", str(world["folder"]), "--cases", str(world["data"]),
                 "--out", str(run), "--convention", "nnunet", "-q"]) == 1
    return run


# ------------------------------------------------------------------ import-predictions


def test_nnunet_folder_is_mapped_checked_recorded_and_scored(
        world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["import-predictions", str(world["folder"]), "--cases", str(world["data"]),
                 "--out", str(out), "--convention", "nnunet", "-q"])
    captured = capsys.readouterr()
    assert code == 1  # two files were refused
    skipped = [line for line in captured.err.splitlines() if line]
    assert len(skipped) == 2, captured.err
    bad = str(world["folder"] / f"{CASES[3]}.nii.gz")
    (shape_line,) = [line for line in skipped if bad in line]
    assert "shape (20, 28, 24)" in shape_line and "(24, 28, 24)" in shape_line
    assert any("someone_else.nii.gz" in line and "names no case" in line for line in skipped)
    assert "Traceback" not in captured.err

    run = Run(out)
    assert run.case_ids() == CASES[:3]
    records = run.case_records()
    for i, case_id in enumerate(CASES[:3]):
        written = nib.load(run.prediction_path(case_id))
        # 1 -> 2, 2 -> 1, 3 -> 4, laid on the truth's grid (case 2 was stored flipped)
        assert np.array_equal(np.asarray(written.dataobj), _other_tools_prediction(i))
        assert np.allclose(written.affine, BRATS_AFFINE)
        source = world["folder"] / f"{case_id}.nii.gz"
        provenance = records[case_id].provenance
        assert "checkpoint" not in provenance
        assert provenance["imported"]["convention"] == "nnunet"
        assert provenance["imported"]["folder"] == str(world["folder"].resolve())
        assert provenance["imported"]["file"]["sha256"] == \
            hashlib.sha256(source.read_bytes()).hexdigest()

    assert main(["evaluate", str(out), "-q", "--scoring", "legacy"]) == 0
    rows = {(r["case_id"], r["region"]): r for r in run.current_metrics_rows()}
    truth = small_label()
    for i, case_id in enumerate(CASES[:3]):
        pred = _other_tools_prediction(i)
        for region in REGIONS:
            want = _dice(np.isin(pred, REGION_LABELS[region]),
                         np.isin(truth, REGION_LABELS[region]))
            assert rows[(case_id, region)]["dice"] == pytest.approx(want, abs=1e-6)
    assert rows[(CASES[0], "WT")]["dice"] == 1.0 and rows[(CASES[1], "WT")]["dice"] < 1.0


def test_brats_convention_reads_2020_and_2023_numbering(world: dict[str, Path],
                                                        tmp_path: Path) -> None:
    folder = tmp_path / "brats_out"
    folder.mkdir()
    truth = small_label()
    nib.save(nib.Nifti1Image(truth, BRATS_AFFINE), folder / f"{CASES[0]}.nii.gz")
    as_2023 = np.where(truth == 4, 3, truth).astype(np.uint8)
    nib.save(nib.Nifti1Image(as_2023, BRATS_AFFINE), folder / f"{CASES[1]}_seg.nii.gz")
    both = truth.copy()
    both[0, 0, 0] = 3  # 3 and 4 in one file: no BraTS year writes that
    nib.save(nib.Nifti1Image(both, BRATS_AFFINE), folder / f"{CASES[2]}.nii.gz")
    out = tmp_path / "run"
    code = main(["import-predictions", str(folder), "--cases", str(world["data"]),
                 "--out", str(out), "--convention", "brats", "-q"])
    assert code == 1
    run = Run(out)
    assert run.case_ids() == CASES[:2]
    for case_id in CASES[:2]:
        assert np.array_equal(np.asarray(nib.load(run.prediction_path(case_id)).dataobj),
                              truth)
    assert run.case_records()[CASES[1]].provenance["imported"]["read_as"] == "brats2023"


def test_an_import_never_mixes_with_another_source(world: dict[str, Path], imported: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["import-predictions", str(world["folder"]), "--cases", str(world["data"]),
                 "--out", str(imported), "--convention", "brats", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "convention nnunet" in err and "new --out" in err


def test_the_app_opens_an_imported_run(imported: Path) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    at.session_state["results_dir"] = str(imported)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert [t.value for t in at.title] == ["Cohort overview"]
    assert sorted(at.dataframe[0].value["patient"]) == CASES[:3]
    at.selectbox(key="ov_pick").select(CASES[1])
    at.button(key="btn_open_patient").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert [t.value for t in at.title] == [f"Patient {CASES[1]}"]


# ------------------------------------------------------------------ export: label maps


def _prediction(run: Path, case_id: str) -> nib.Nifti1Image:
    return nib.load(Run(run).prediction_path(case_id))


def test_seg_nrrd_holds_labels_geometry_names_and_colours(imported: Path,
                                                          tmp_path: Path) -> None:
    assert main(["export", str(imported), "--format", "seg.nrrd", "--out", str(tmp_path)]) == 0
    for case_id in CASES[:3]:
        data, header = nrrd.read(str(tmp_path / f"{case_id}.seg.nrrd"), index_order="F")
        pred = _prediction(imported, case_id)
        assert np.array_equal(data, np.asarray(pred.dataobj))
        assert header["space"] == "left-posterior-superior"
        # Back to RAS: x and y change sign; rows of space directions are the voxel axes.
        ras = np.eye(4)
        ras[:3, :3] = np.diag([-1, -1, 1]) @ np.asarray(header["space directions"]).T
        ras[:3, 3] = np.diag([-1, -1, 1]) @ np.asarray(header["space origin"])
        assert np.allclose(ras, pred.affine)
        segments = {}
        i = 0
        while f"Segment{i}_ID" in header:
            segments[int(header[f"Segment{i}_LabelValue"])] = (
                header[f"Segment{i}_Name"],
                [float(c) for c in header[f"Segment{i}_Color"].split()],
                [int(v) for v in header[f"Segment{i}_Extent"].split()],
                header[f"Segment{i}_Layer"])
            i += 1
        assert sorted(segments) == [1, 2, 4]
        for value, (name, colour, extent, layer) in segments.items():
            assert name == LABEL_NAMES[value] and layer == "0"
            assert colour == pytest.approx([c / 255 for c in LABEL_COLOURS[value].rgb],
                                           abs=1e-5)
            where = np.nonzero(data == value)
            assert extent == [int(f(w)) for w in where for f in (np.min, np.max)]


def _data_lines(path: Path) -> list[list[str]]:
    return [shlex.split(line) for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_itksnap_and_slicer_label_files(imported: Path, tmp_path: Path) -> None:
    case_id = CASES[1]
    expected = {v: (LABEL_NAMES[v], c.rgb) for v, c in LABEL_COLOURS.items()}
    assert main(["export", str(imported), "--format", "itksnap", "--case", case_id,
                 "--out", str(tmp_path / "snap")]) == 0
    image = tmp_path / "snap" / f"{case_id}.nii.gz"
    assert image.read_bytes() == Run(imported).prediction_path(case_id).read_bytes()
    rows = _data_lines(tmp_path / "snap" / f"{case_id}_itksnap_labels.txt")
    assert all(len(r) == 8 for r in rows)  # IDX R G B A VIS MSH "LABEL"
    snap = {int(r[0]): (r[7], tuple(int(c) for c in r[1:4]), float(r[4])) for r in rows}
    assert snap.pop(0)[2] == 0.0  # the clear label is transparent
    assert {v: (n, rgb) for v, (n, rgb, _) in snap.items()} == expected
    assert all(a == 1.0 for _, _, a in snap.values())

    assert main(["export", str(imported), "--format", "slicer", "--case", case_id,
                 "--out", str(tmp_path / "slicer")]) == 0
    table = tmp_path / "slicer" / f"{case_id}_slicer_colors.ctbl"
    assert table.read_text().startswith("# Color table file")
    rows = _data_lines(table)
    assert all(len(r) == 6 for r in rows)  # index name R G B A
    colours = {int(r[0]): tuple(int(c) for c in r[2:5]) for r in rows}
    assert colours == {0: (0, 0, 0), **{v: c.rgb for v, c in LABEL_COLOURS.items()}}
    names = {int(r[0]): r[1] for r in rows}
    assert names[2] == "edema" and " " not in "".join(names.values())


# ------------------------------------------------------------------ export: meshes, scenes


def _world_bounds(label: np.ndarray, affine: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    ijk = np.argwhere(np.isin(label, values))
    xyz = nib.affines.apply_affine(affine, ijk)
    return np.stack([xyz.min(0), xyz.max(0)])


@pytest.mark.parametrize("fmt", ["vtp", "stl", "ply", "obj"])
def test_surface_files_read_back_in_world_mm(fmt: str, imported: Path, tmp_path: Path) -> None:
    case_id = CASES[1]
    assert main(["export", str(imported), "--format", fmt, "--case", case_id,
                 "--out", str(tmp_path)]) == 0
    files = {p.stem: p for p in (tmp_path / case_id).iterdir()}
    assert set(files) == {*REGIONS, *(f"truth_{r}" for r in REGIONS)}
    pred = _prediction(imported, case_id)
    for region in REGIONS:
        mesh = pv.read(files[region])
        assert mesh.n_cells > 0
        want = _world_bounds(np.asarray(pred.dataobj), pred.affine, REGION_LABELS[region])
        got = np.asarray(mesh.bounds).reshape(3, 2).T
        # A surface lies on the region's outer voxels, within one voxel of their centres.
        assert np.allclose(got, want, atol=1.01)


def test_glb_html_and_png_scenes(imported: Path, tmp_path: Path) -> None:
    case_id = CASES[0]
    assert main(["export", str(imported), "--format", "glb", "--case", case_id,
                 "--out", str(tmp_path)]) == 0
    blob = (tmp_path / f"{case_id}.glb").read_bytes()
    magic, version, length = struct.unpack_from("<4sII", blob)
    assert (magic, version, length) == (b"glTF", 2, len(blob))
    json_len, kind = struct.unpack_from("<II", blob, 12)
    assert kind == 0x4E4F534A
    doc = json.loads(blob[20:20 + json_len])
    names = {n["name"] for n in doc["nodes"]}
    assert {*REGIONS, "truth_WT", "brain"} <= names

    assert main(["export", str(imported), "--format", "html", "--case", case_id,
                 "--out", str(tmp_path)]) == 0
    page = (tmp_path / f"{case_id}.html").read_text()
    assert page.lower().startswith("<!doctype html>") and '"type":"mesh3d"' in page
    assert case_id in page

    assert main(["export", str(imported), "--format", "png", "--case", case_id,
                 "--out", str(tmp_path)]) == 0
    image = np.asarray(Image.open(tmp_path / f"{case_id}_oblique.png"))
    assert image.ndim == 3 and len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 10


def test_a_bad_case_is_named_and_the_others_exported(imported: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["export", str(imported), "--format", "seg.nrrd", "--case", "nope",
                 "--case", CASES[2], "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("skipped") == 1 and "nope" in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == [f"{CASES[2]}.seg.nrrd"]


def test_every_case_by_default_into_the_run(imported: Path) -> None:
    assert main(["export", str(imported), "--format", "slicer"]) == 0
    folder = imported / "exports" / "slicer"
    assert sorted(p.name for p in folder.glob("*.nii.gz")) == [f"{c}.nii.gz" for c in CASES[:3]]


# ------------------------------------------------------------------ export-model


def _checkpoint(path: Path, *, seed: int) -> Path:
    cfg = load_config("tiny-cpu", overrides=["model.features=[4, 8]", "data.patch_size_vox=16",
                                             "postprocess.thresholds=[0.4, 0.5, 0.6]"])
    torch.manual_seed(seed)
    net = build_model(cfg.model)
    save_checkpoint(path, {"model": net.state_dict(), "ema": None,
                           "model_config": net.config.to_dict(), "config": cfg.to_dict(),
                           "regions": list(REGIONS), "step": 7})
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", seed=0)


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torchscript", ".ts.pt")])
def test_exported_model_gives_the_checkpoints_logits(fmt: str, suffix: str, checkpoint: Path,
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"model{suffix}"
    assert main(["export-model", str(checkpoint), "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max |difference|" in printed and "(ok)" in printed

    net = load_model(checkpoint).model
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((2, 4, 16, 16, 16))
                         .astype(np.float32))  # another batch size than the export's example
    with torch.no_grad():
        want = net(x).numpy()
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    else:
        with torch.no_grad():
            got = torch.jit.load(str(out))(x).numpy()
    assert got.shape == want.shape == (2, 3, 16, 16, 16)
    assert np.abs(got - want).max() < 1e-4 and np.abs(want).max() > 1e-3

    spec = json.loads((tmp_path / f"{out.name}.json").read_text())
    assert spec["input"]["channels"] == ["t1", "t1ce", "t2", "flair"]
    assert spec["outputs"][0]["channels"] == list(REGIONS)
    assert spec["postprocess"]["thresholds"] == [0.4, 0.5, 0.6]
    assert spec["preprocessing"]["spacing_mm"] == 2.0
    assert spec["inference"]["patch_size_vox"] == [16, 16, 16]
    assert spec["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert spec["checkpoint"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()


def test_the_check_tells_another_model_apart(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.ts"
    export_model(checkpoint, out, format="torchscript")
    other = _checkpoint(tmp_path / "other.pt", seed=1)
    assert check_export(out, checkpoint, format="torchscript").ok
    mismatch = check_export(out, other, format="torchscript")
    assert not mismatch.ok and mismatch.max_abs_diff > 1e-2


class _TwoHeads(torch.nn.Module):
    """A segmentation network with a classification head: forward gives both outputs."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.classify = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seg = self.net(x)
        return seg, self.classify(seg.mean(dim=(2, 3, 4)))


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_a_tuple_output_is_exported_whole(fmt: str, checkpoint: Path, tmp_path: Path) -> None:
    loaded = load_model(checkpoint)
    torch.manual_seed(0)
    two = LoadedModel(loaded.path, loaded.sha256, _TwoHeads(loaded.model).eval(),
                      loaded.config, loaded.checkpoint)
    done = export_model(two, tmp_path / "two.model", format=fmt)
    assert done.check.outputs == ("logits", "class_logits") and done.check.ok
    spec = json.loads(done.spec_path.read_text())
    assert [o["name"] for o in spec["outputs"]] == ["logits", "class_logits"]


def test_export_model_faults_are_one_line(checkpoint: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-model", str(tmp_path / "missing.pt"), "--format", "onnx",
                 "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "missing.pt" in err
    # Without the onnx package the command says what to install, in one line.
    code = ("import sys; sys.modules['onnx'] = None; from tumorscope.app.cli import main; "
            f"sys.exit(main(['export-model', {str(checkpoint)!r}, '--format', 'onnx', "
            f"'--out', {str(tmp_path / 'm.onnx')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "pip install onnx" in proc.stderr
    assert not (tmp_path / "m.onnx").exists()
