"""Fault battery for the run store, predict and evaluate, through the real CLI.

Each test crafts a fault from real NIfTI files and real checkpoints in a temporary folder,
runs ``tumorscope`` as a subprocess, and checks the exit code, that no traceback is shown,
that the message names the file and the fault, and that nothing written before changed
unless it should have.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from builders import write_case

from tumorscope.core.config import load_config
from tumorscope.core.models import build_model
from tumorscope.core.store import Run
from tumorscope.core.training.train import train

SHAPE = (36, 36, 28)
TINY = [
    "model.features=[4, 8, 16]", "data.patch_size_vox=16", "data.spacing_mm=null",
    "data.batch_size=2", "train.steps_per_epoch=3", "train.val_every_epochs=1",
    "train.threads=1", "optim.lr=0.01", "train.epochs=2",
]
IDS = [f"BraTS2021_{i:05d}" for i in range(4)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A labelled cohort of four cases and two checkpoints trained on it (another seed)."""
    root = tmp_path_factory.mktemp("faults")
    data = root / "cohort"
    for i, case_id in enumerate(IDS):
        write_case(data, case_id, shape=SHAPE, seed=i)
    out: dict[str, Path] = {"root": root, "data": data, "cache": root / "cache"}
    for name, seed in (("a", 0), ("b", 1)):
        cfg = load_config("tiny-cpu", overrides=[*TINY, f"data.root={data}",
                                                 f"data.cache_dir={out['cache']}",
                                                 f"train.seed={seed}"])
        run = train(cfg, root / f"train_{name}", progress=False)
        out[name] = run.checkpoint_path("best")
    return out


def cli(*args: str | Path, cache: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUMORSCOPE_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "tumorscope.app.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def predict(world: dict[str, Path], out: Path, *extra: str | Path, ckpt: str = "a",
            data: Path | None = None) -> subprocess.CompletedProcess:
    return cli("predict", "--checkpoint", world[ckpt], "--input", data or world["data"],
               "--out", out, "--cache", world["cache"], "-q", *extra, cache=world["cache"])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def copy_cohort(world: dict[str, Path], dest: Path, ids: list[str] = IDS) -> Path:
    for case_id in ids:
        shutil.copytree(world["data"] / case_id, dest / case_id)
    return dest


# ------------------------------------------------------------------ provenance and reuse

def test_reuse_only_when_inputs_checkpoint_and_settings_match(world: dict[str, Path],
                                                              tmp_path: Path) -> None:
    data = copy_cohort(world, tmp_path / "data")
    out = tmp_path / "run"
    first = predict(world, out, data=data)
    assert first.returncode == 0, first.stderr
    assert "reused 0, predicted 4 (new:" in first.stdout
    run = Run(out)
    record = run.case_record(IDS[0])
    assert record.provenance["checkpoint"]["sha256"] and record.prediction["sha256"]
    assert set(record.provenance["sources"]) == {"t1", "t1ce", "t2", "flair"}
    assert run.config()["predict"]["checkpoint_sha256"] == record.checkpoint_sha256
    before = snapshot(out / "predictions")

    again = predict(world, out, data=data)
    assert again.returncode == 0 and "reused 4, predicted 0" in again.stdout, again.stdout
    assert snapshot(out / "predictions") == before

    # Another patient's images copied over case 0, size and mtime made to match the old
    # files: only the content says it changed.
    for src in sorted((data / IDS[1]).iterdir()):
        dst = data / IDS[0] / src.name.replace(IDS[1], IDS[0])
        if "seg" in dst.name:
            continue
        st = dst.stat()
        content = src.read_bytes()
        dst.write_bytes(content)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = predict(world, out, data=data)
    assert changed.returncode == 0, changed.stderr
    assert f"reused 3, predicted 1 (inputs changed: {IDS[0]})" in changed.stdout
    after = snapshot(out / "predictions")
    assert after[f"{IDS[0]}.nii.gz"] != before[f"{IDS[0]}.nii.gz"]
    assert all(after[k] == v for k, v in before.items() if not k.startswith(IDS[0]))


def test_other_checkpoint_or_settings_refused_then_forced(world: dict[str, Path],
                                                          tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert predict(world, out).returncode == 0
    before = snapshot(out)
    refused = predict(world, out, ckpt="b")
    assert refused.returncode == 2
    line = one_line_error(refused, str(world["a"]), str(world["b"]), "--force", "--out")
    assert "holds predictions of" in line
    assert snapshot(out) == before

    mirrored = predict(world, out, "--mirror")
    assert mirrored.returncode == 2
    one_line_error(mirrored, "mirroring off", "mirroring on")
    assert snapshot(out) == before

    forced = predict(world, out, "--force", ckpt="b")
    assert forced.returncode == 0, forced.stderr
    assert "predicted 4 (forced:" in forced.stdout
    run = Run(out)
    shas = {r.checkpoint_sha256 for r in run.case_records().values()}
    assert shas == {run.config()["predict"]["checkpoint_sha256"]}
    assert run.config()["predict"]["checkpoint"] == str(world["b"].resolve())


def test_force_onto_a_subset_removes_the_replaced_models_other_cases(
        world: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert predict(world, out).returncode == 0
    subset = copy_cohort(world, tmp_path / "subset", IDS[:2])
    forced = predict(world, out, "--force", ckpt="b", data=subset)
    assert forced.returncode == 0, forced.stderr
    assert "removed 2 prediction(s) of the replaced model" in forced.stdout
    run = Run(out)
    assert run.case_ids() == IDS[:2]
    assert sorted(run.case_records()) == IDS[:2]
    assert {r["case_id"] for r in run.metrics_rows()} == set(IDS[:2])


# ------------------------------------------------------------------ crashes and concurrency

def test_kill_9_mid_write_leaves_no_case_and_is_cleaned(world: dict[str, Path],
                                                        tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert predict(world, out).returncode == 0
    target = Run(out).prediction_path("BraTS2021_99999")
    code = ("import os, signal\n"
            "from tumorscope.core.data.nifti import atomic_path\n"
            f"cm = atomic_path({str(target)!r})\n"
            "tmp = cm.__enter__()\n"
            "tmp.write_bytes(b'half a file')\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p for p in target.parent.iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1 and leftovers[0].name.endswith(".tmp.nii.gz")
    assert Run(out).case_ids() == IDS  # never listed as a case
    render_free = cli("evaluate", out, "-q", cache=world["cache"])
    assert render_free.returncode == 0, render_free.stderr
    assert predict(world, out).returncode == 0
    assert not leftovers[0].exists()


def test_kill_9_during_predict_keeps_every_finished_case(world: dict[str, Path],
                                                         tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUMORSCOPE_CACHE": str(world["cache"])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tumorscope.app.cli", "predict", "--checkpoint", world["a"],
         "--input", world["data"], "--out", out, "--cache", world["cache"], "-q", "--mirror"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cases = Run(out).cases_path
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if cases.is_file() and cases.stat().st_size > 2:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    run = Run(out)
    recorded = sorted(run.case_records())  # valid JSON, whatever the moment of the kill
    assert recorded, "the first finished case was recorded before the kill"
    assert set(recorded) <= set(run.case_ids())
    resumed = predict(world, out, "--mirror")
    assert resumed.returncode == 0, resumed.stderr
    assert f"reused {len(recorded)}, predicted {4 - len(recorded)}" in resumed.stdout


def test_two_concurrent_predicts_record_every_case(world: dict[str, Path],
                                                   tmp_path: Path) -> None:
    halves = [copy_cohort(world, tmp_path / "h1", IDS[:2]),
              copy_cohort(world, tmp_path / "h2", IDS[2:])]
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUMORSCOPE_CACHE": str(world["cache"])}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tumorscope.app.cli", "predict", "--checkpoint", world["a"],
         "--input", half, "--out", out, "--cache", world["cache"], "-q"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for half in halves]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    run = Run(out)
    assert sorted(run.case_records()) == IDS == run.case_ids()
    assert {r["case_id"] for r in run.metrics_rows()} == set(IDS)


# ------------------------------------------------------------------ evaluate never destroys

def test_evaluate_keeps_scores_it_cannot_recompute(world: dict[str, Path],
                                                   tmp_path: Path) -> None:
    data = copy_cohort(world, tmp_path / "data")
    out = tmp_path / "run"
    assert predict(world, out, data=data).returncode == 0
    run = Run(out)
    metrics = run.metrics_path.read_bytes()

    elsewhere = tmp_path / "other"
    write_case(elsewhere, "BraTS2021_00777", shape=SHAPE)
    wrong_labels = cli("evaluate", out, "--labels", elsewhere, "-q", cache=world["cache"])
    assert wrong_labels.returncode == 2
    one_line_error(wrong_labels, "no prediction could be scored", "left as it was")
    assert run.metrics_path.read_bytes() == metrics

    # One label file moved away: that case keeps its rows, marked stale; the rest rescored.
    label = data / IDS[1] / f"{IDS[1]}_seg.nii.gz"
    label.rename(tmp_path / "moved_seg.nii.gz")
    partial = cli("evaluate", out, "-q", cache=world["cache"])
    assert partial.returncode == 1 and "Traceback" not in partial.stderr
    assert f"not scored {IDS[1]}" in partial.stderr and "moved" not in partial.stderr
    assert str(label) in partial.stderr and "does not exist" in partial.stderr
    rows = run.metrics_rows()
    assert len(rows) == 12
    stale = {r["case_id"] for r in rows if str(r["status"]).startswith("stale:")}
    assert stale == {IDS[1]}
    assert IDS[1] not in run.dice_by_region() and IDS[0] in run.dice_by_region()

    shutil.rmtree(run.predictions_dir)
    before = run.metrics_path.read_bytes()
    gone = cli("evaluate", out, "-q", cache=world["cache"])
    assert gone.returncode == 2
    one_line_error(gone, f"no prediction found in {run.predictions_dir}")
    assert run.metrics_path.read_bytes() == before


def test_evaluate_reorients_same_grid_and_refuses_another(world: dict[str, Path],
                                                          tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert predict(world, out).returncode == 0
    run = Run(out)
    dice_before = run.dice_by_region()
    # Predictions from another tool: a folder of label maps without predict's records,
    # scored against --labels. (Predictions that predict recorded and someone then changed
    # are refused instead: see test_files_predict_did_not_write_are_never_scored_as_its_own.)
    run.cases_path.unlink()
    # Case 0: the same world grid stored with axis 0 flipped and axes 1, 2 swapped.
    path = run.prediction_path(IDS[0])
    img = nib.load(path)
    data = np.asarray(img.dataobj)
    ornt = np.array([[0, -1], [2, 1], [1, 1]])
    moved = nib.orientations.apply_orientation(data, ornt)
    affine = img.affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
    nib.save(nib.Nifti1Image(moved, affine), path)
    # Case 1: shifted by 3 mm: another grid.
    shifted = run.prediction_path(IDS[1])
    img = nib.load(shifted)
    affine = img.affine.copy()
    affine[:3, 3] += 3.0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), shifted)

    proc = cli("evaluate", out, "--labels", world["data"], "-q", cache=world["cache"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"not scored {IDS[1]}" in proc.stderr and "does not match the ground truth" \
        in proc.stderr and str(shifted) in proc.stderr
    rows = {(r["case_id"], r["region"]): r for r in run.metrics_rows()}
    for region, value in dice_before[IDS[0]].items():
        assert rows[(IDS[0], region)]["dice"] == pytest.approx(value)
        assert rows[(IDS[0], region)]["status"] == "ok"
    assert str(rows[(IDS[1], "WT")]["status"]).startswith("stale:")


def test_a_score_of_a_changed_prediction_is_never_current(world: dict[str, Path],
                                                          tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert predict(world, out).returncode == 0
    run = Run(out)
    assert set(run.dice_by_region()) == set(IDS)
    path = run.prediction_path(IDS[2])
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), path)
    problems = run.score_problems()
    assert set(problems) == {IDS[2]} and "changed" in problems[IDS[2]]
    assert IDS[2] not in run.dice_by_region()
    # evaluate will not score a prediction predict did not write: it keeps the case stale.
    rescored = cli("evaluate", out, "-q", cache=world["cache"])
    assert rescored.returncode == 1, rescored.stderr
    assert "scored 0, unchanged 3, not scored 1" in rescored.stdout
    assert IDS[2] not in run.dice_by_region()
    # The hand-made prediction is not what predict recorded: predict makes it again.
    again = predict(world, out)
    assert f"reused 3, predicted 1 (prediction file changed: {IDS[2]})" in again.stdout
    assert set(run.dice_by_region()) == set(IDS)


# ------------------------------------------------------------------ damaged run files

@pytest.mark.parametrize("damage, fault", [
    (b"case_id,region,dice\nA,WT,0.5\x00\x00\n", "NUL bytes"),
    (b"case_id,region,dice\nA,WT,zero point five\n", "dice = 'zero point five' is not a"),
    (b"case_id,region,dice,hd95_monai_mm\nA,WT,0.5,1.0\nA,TC,0.", "line 3 has 3 field(s)"),
    (bytes(range(256)) * 4, "binary data"),
    (b"case_id,region,dice\nA,WT,inf\n", "dice = inf is impossible"),
    (b"case_id,region,dice\nA,WT,-5\n", "dice = -5 is impossible (expected a number in"),
    (b"case_id,region,hd95_monai_mm\nA,WT,-1.0\n", "hd95_monai_mm = -1.0 is impossible"),
    (b"case_id,region,dice\nA,WT,0.5\nB,WT,0.4\nA,WT,0.5\n",
     "line 4 repeats case A region WT (first on line 2)"),
    (b"case_id,region,dice,jaccard\nA,WT,0.95,0.118\n", "contradict each other"),
], ids=["nul", "text-in-number", "truncated-row", "binary", "inf-dice", "negative-dice",
        "negative-hd95", "duplicate-row", "dice-vs-jaccard"])
def test_damaged_metrics_csv_is_named_and_kept(world: dict[str, Path], tmp_path: Path,
                                               damage: bytes, fault: str) -> None:
    out = tmp_path / "run"
    assert predict(world, out).returncode == 0
    Run(out).metrics_path.write_bytes(damage)
    proc = cli("evaluate", out, "-q", cache=world["cache"])
    assert proc.returncode == 2
    one_line_error(proc, "metrics.csv", fault)
    assert Run(out).metrics_path.read_bytes() == damage


@pytest.mark.parametrize("content, fault", [
    ("[1, 2, 3]", "must map case ids to records, got list"),
    ('{"A": "x"}', "case 'A': expected an object, got str"),
    ('{"A": {"images": ["t1.nii.gz"]}}', "'images' must map modality names"),
], ids=["list", "entry-not-object", "images-not-mapping"])
def test_cases_json_of_the_wrong_shape_is_named(world: dict[str, Path], tmp_path: Path,
                                                content: str, fault: str) -> None:
    out = tmp_path / "run"
    assert predict(world, out).returncode == 0
    Run(out).cases_path.write_text(content)
    for proc in (cli("evaluate", out, "-q", cache=world["cache"]), predict(world, out)):
        assert proc.returncode == 2
        one_line_error(proc, "cases.json", fault)


# ------------------------------------------------------------------ checkpoints

def _doctored(world: dict[str, Path], tmp_path: Path, name: str, change) -> Path:
    ckpt = torch.load(world["a"], map_location="cpu", weights_only=False)
    change(ckpt)
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


def test_checkpoint_faults_are_refused_once_by_name(world: dict[str, Path],
                                                    tmp_path: Path) -> None:
    def wider(c):
        c["model_config"]["features"] = [4, 8, 32]

    def no_config(c):
        del c["config"]

    def bad_config(c):
        c["config"]["train"]["epochs"] = "many"

    def two_channels(c):
        net = build_model({**c["model_config"], "in_channels": 2})
        c["model_config"] = net.config.to_dict()
        c["model"] = net.state_dict()
        c["ema"] = None

    def renamed(c):
        c["model"]["surprise.weight"] = c["model"].pop(next(iter(c["model"])))
        c["ema"] = None

    def nan_weights(c):
        c["model"][next(iter(c["model"]))].fill_(float("nan"))
        c["ema"] = None

    def other_regions(c):
        c["regions"] = ["ET", "TC", "WT"]

    def two_outputs(c):
        net = build_model({**c["model_config"], "out_channels": 2})
        c["model_config"] = net.config.to_dict()
        c["model"] = net.state_dict()
        c["ema"] = None

    cases = [(wider, "weights do not match the recorded architecture"),
             (nan_weights, "non-finite value(s)"),
             (two_outputs, "network gives 2 output channel(s)"),
             (other_regions, "outputs are the regions ['ET', 'TC', 'WT']"),
             (no_config, "holds no training config"),
             (bad_config, "recorded training config is invalid"),
             (two_channels, "network takes 2 input channel(s)"),
             (renamed, "weight ")]
    for i, (change, fault) in enumerate(cases):
        path = _doctored(world, tmp_path, f"doctored{i}.pt", change)
        out = tmp_path / f"run{i}"
        proc = cli("predict", "--checkpoint", path, "--input", world["data"], "--out", out,
                   "-q", cache=world["cache"])
        assert proc.returncode == 2, (fault, proc.stderr)
        line = one_line_error(proc, str(path), fault)
        assert proc.stderr.count(fault) == 1, line  # once, not once per case
        assert not Run(out).predictions_dir.exists()


# ------------------------------------------------------------------ resume under its own config

def test_resume_refuses_another_config_and_extends_epochs(world: dict[str, Path],
                                                          tmp_path: Path) -> None:
    run_dir = tmp_path / "train"
    shutil.copytree(world["root"] / "train_a", run_dir)
    base = ["train", "--config", "tiny-cpu", "--data", world["data"], "--out", run_dir,
            "--resume", "-q", *[a for t in TINY for a in ("--set", t)],
            "--set", f"data.cache_dir={world['cache']}"]
    before = snapshot(run_dir)
    other_lr = cli(*base, "--set", "optim.lr=0.5", cache=world["cache"])
    assert other_lr.returncode == 2
    one_line_error(other_lr, "cannot resume with another config", "optim.lr is 0.01 in the "
                   "run, 0.5 now", "new --out")
    fewer = cli(*base, "--set", "train.epochs=1", cache=world["cache"])
    assert fewer.returncode == 2
    one_line_error(fewer, "has trained 6 steps already")
    assert snapshot(run_dir) == before
    # Without --config, --resume continues the run as configured: only epochs changes.
    longer = cli("train", "--data", world["data"], "--out", run_dir, "--resume", "-q",
                 "--set", "train.epochs=3", cache=world["cache"])
    assert longer.returncode == 0, longer.stderr
    config = Run(run_dir).config()
    assert config["train"]["epochs"] == 3 and config["optim"]["lr"] == 0.01
    assert config["model"]["features"] == [4, 8, 16]
    assert len(Run(run_dir).log_rows()) == 3
    wider = cli("train", "--data", world["data"], "--out", run_dir, "--resume", "-q",
                "--set", "model.features=[8,16,32]", cache=world["cache"])
    assert wider.returncode == 2
    one_line_error(wider, "model.features is [4, 8, 16] in the run, [8, 16, 32] now")


def test_diverging_training_stops_and_never_writes_nan_weights(world: dict[str, Path],
                                                               tmp_path: Path) -> None:
    out = tmp_path / "diverge"
    proc = cli("train", "--config", "tiny-cpu", "--data", world["data"], "--out", out, "-q",
               *[a for t in TINY for a in ("--set", t)], "--set", "optim.lr=1e12",
               "--set", "optim.grad_clip=null", "--set", f"data.cache_dir={world['cache']}",
               cache=world["cache"])
    assert proc.returncode == 2
    one_line_error(proc, "training diverged", "optim.lr")
    for ckpt in Run(out).checkpoint_dir.glob("*.pt"):
        state = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
        assert all(bool(torch.isfinite(t).all()) for t in state.values()
                   if t.is_floating_point()), ckpt


def test_concurrent_predicts_of_two_models_cannot_both_claim_a_run(world: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUMORSCOPE_CACHE": str(world["cache"])}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tumorscope.app.cli", "predict", "--checkpoint", world[name],
         "--input", world["data"], "--out", out, "--cache", world["cache"], "-q"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")]
    results = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], results
    loser = results[[p.returncode for p in procs].index(2)][1]
    assert "holds predictions of" in loser and "Traceback" not in loser
    run = Run(out)
    shas = {r.checkpoint_sha256 for r in run.case_records().values()}
    assert shas == {run.predict_claim()["checkpoint_sha256"]}


def test_interrupted_force_leaves_no_mixed_score_and_resumes(world: dict[str, Path],
                                                             tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert predict(world, out).returncode == 0
    sha_a = Run(out).predict_claim()["checkpoint_sha256"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUMORSCOPE_CACHE": str(world["cache"])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tumorscope.app.cli", "predict", "--checkpoint", world["b"],
         "--input", world["data"], "--out", out, "--cache", world["cache"], "-q", "--force",
         "--mirror"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = Run(out)
    sha_b = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        claim = run.predict_claim() if run.config_path.is_file() else None
        records = run.case_records() if claim else {}
        if claim and claim["checkpoint_sha256"] != sha_a and any(
                r.checkpoint_sha256 == claim["checkpoint_sha256"] for r in records.values()):
            sha_b = claim["checkpoint_sha256"]
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert sha_b is not None
    records = run.case_records()
    old = [c for c, r in records.items() if r.checkpoint_sha256 != sha_b]
    # Whatever the moment of the kill, no score of the replaced model passes as current.
    assert not set(old) & set(run.dice_by_region())
    for case_id in old:
        assert "another checkpoint" in run.score_problems().get(case_id, "another checkpoint")
    resumed = predict(world, out, "--mirror", ckpt="b")
    assert resumed.returncode == 0, resumed.stderr
    assert {r.checkpoint_sha256 for r in run.case_records().values()} == {sha_b}
    assert set(run.dice_by_region()) == set(IDS)


def test_inputs_or_truth_changed_after_the_fact_are_never_current(world: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    data = copy_cohort(world, tmp_path / "data")
    out = tmp_path / "run"
    assert predict(world, out, data=data).returncode == 0
    run = Run(out)
    # Case 0's label redrawn 3 voxels off, its mtime put back; case 2's flair by case 3's
    # (cp -p keeps the mtime).
    label = data / IDS[0] / f"{IDS[0]}_seg.nii.gz"
    st = label.stat()
    img = nib.load(label)
    nib.save(nib.Nifti1Image(np.roll(np.asarray(img.dataobj), 3, axis=0), img.affine), label)
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns))
    shutil.copy2(data / IDS[3] / f"{IDS[3]}_flair.nii.gz",
                 data / IDS[2] / f"{IDS[2]}_flair.nii.gz")
    problems = run.score_problems()
    assert "ground truth changed" in problems[IDS[0]]
    assert "flair image changed since it was predicted" in problems[IDS[2]]
    assert set(run.dice_by_region()) == {IDS[1], IDS[3]}
    proc = cli("evaluate", out, "-q", cache=world["cache"])
    assert proc.returncode == 1
    assert f"not scored {IDS[2]}" in proc.stderr and "run tumorscope predict again" in proc.stderr
    assert "scored 1, unchanged 2" in proc.stdout  # case 0 rescored against its new label
    assert set(run.dice_by_region()) == {IDS[0], IDS[1], IDS[3]}


def test_the_printed_table_is_the_mean_and_the_true_median(world: dict[str, Path],
                                                           tmp_path: Path) -> None:
    import statistics

    out = tmp_path / "run"
    proc = predict(world, out)
    assert proc.returncode == 0
    rows = Run(out).current_metrics_rows()
    for region in ("WT", "TC", "ET"):
        sel = [r for r in rows if r["region"] == region]
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(region))
        _, n, mean, median = line.split()
        assert int(n) == len(sel) == 4
        assert float(mean) == pytest.approx(statistics.fmean(r["dice"] for r in sel), abs=5e-4)
        assert float(median) == pytest.approx(statistics.median(r["hd95_monai_mm"] for r in sel),
                                              abs=5e-3)


def test_files_predict_did_not_write_are_never_scored_as_its_own(world: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert predict(world, out).returncode == 0
    run = Run(out)
    (run.predictions_dir / "notes.nii.gz").write_text("hello")
    # Case 1's prediction replaced by hand with case 0's (cp -p).
    shutil.copy2(run.prediction_path(IDS[0]), run.prediction_path(IDS[1]))
    assert run.case_ids() == IDS and [p.name for p in run.stray_files()] == ["notes.nii.gz"]
    proc = cli("evaluate", out, "-q", cache=world["cache"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "ignored" in proc.stderr and "notes.nii.gz" in proc.stderr
    assert f"not scored {IDS[1]}: its prediction file is not the one tumorscope predict" \
        in proc.stderr
    assert "without ground truth" not in proc.stdout
    assert set(run.dice_by_region()) == set(IDS) - {IDS[1]}
    again = predict(world, out)
    assert f"predicted 1 (prediction file changed: {IDS[1]})" in again.stdout
    assert set(run.dice_by_region()) == set(IDS)


def test_a_training_stopped_before_its_first_saved_epoch_is_not_trained_over(
        world: dict[str, Path], tmp_path: Path) -> None:
    run_dir = tmp_path / "train"
    shutil.copytree(world["root"] / "train_a", run_dir)
    (run_dir / "checkpoints" / "last.pt").unlink()  # as a kill between best.pt and last.pt
    log = Run(run_dir).log_path.read_bytes()
    base = ["train", "--config", "tiny-cpu", "--data", world["data"], "--out", run_dir, "-q",
            *[a for t in TINY for a in ("--set", t)], "--set",
            f"data.cache_dir={world['cache']}"]
    resumed = cli(*base, "--resume", cache=world["cache"])
    assert resumed.returncode == 2
    one_line_error(resumed, "no checkpoints/last.pt", "new --out")
    fresh = cli(*base, cache=world["cache"])
    assert fresh.returncode == 2
    one_line_error(fresh, "already holds a training run")
    assert Run(run_dir).log_path.read_bytes() == log


def test_predict_a_split_of_the_training_run(world: dict[str, Path], tmp_path: Path) -> None:
    run_dir = tmp_path / "train"
    shutil.copytree(world["root"] / "train_a", run_dir)
    split = Run(run_dir).split()
    ckpt = run_dir / "checkpoints" / "best.pt"
    proc = cli("predict", "--checkpoint", ckpt, "--input", world["data"], "--out", run_dir,
               "--cache", world["cache"], "--split", "val", "-q", cache=world["cache"])
    assert proc.returncode == 0, proc.stderr
    assert Run(run_dir).case_ids() == split["val"]
    none = cli("predict", "--checkpoint", ckpt, "--input", world["data"], "--out", run_dir,
               "--cache", world["cache"], "--split", "test", "-q", cache=world["cache"])
    assert none.returncode == 2
    one_line_error(none, "--split test", "lists no test cases", "data.test_fraction")
