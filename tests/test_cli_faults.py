"""Faults against the real command line, run as a subprocess: the demo cohort never writes
over a real dataset, OS errors are told in words (which path, what is wrong), render sizes
are checked before any work, and nothing is written outside the folders the user named.

Each test asserts the exit code, that no traceback is printed, that the one-line message
names the path or flag and the fault, and that nothing written before changed.
"""

from __future__ import annotations

import ctypes
import doctest
import errno
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from builders import write_case

from tumorscope.core import oserrors
from tumorscope.core.data.cases import COHORT_FILE
from tumorscope.core.oserrors import describe_os_error, temp_target

# --------------------------------------------------------------------------- helpers


def cli(*args: str | Path, env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tumorscope.app.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          env=base if env is None else {**base, **env}, preexec_fn=preexec_fn)


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """Assert exit 2, no traceback and one line on stderr holding every one of ``words``."""
    err = result.stderr
    assert result.returncode == 2, (result.returncode, err)
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and ": error: " in err, err
    for word in words:
        assert word in err, (word, err)
    return err


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file below ``folder``: content hash and modification time."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def real_dataset(root: Path) -> Path:
    """Two small real BraTS 2021 cases and the dataset's own metadata tables."""
    for i in range(2):
        write_case(root, f"BraTS2021_{i:05d}", seed=i)
    (root / "name_mapping.csv").write_text(
        "Grade,BraTS_2021_subject_ID\nHGG,BraTS2021_00000\nLGG,BraTS2021_00001\n")
    (root / "survival_info.csv").write_text(
        "Brats21ID,Age,Survival_days\nBraTS2021_00000,60.5,289\n")
    return root


def own_marker(folder: Path, *, seed: int = 0, n_cases: int = 1) -> None:
    """What demo-data writes first into a folder (the cohort marker), without the cases."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / COHORT_FILE).write_text(json.dumps({
        "synthetic": True, "generator": "tumorscope demo-data", "seed": seed,
        "n_cases": n_cases, "note": "synthetic tumours in ICBM152 anatomy, not patient data"}))


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mount a 64 KiB tmpfs (extra mount options allowed, e.g. "ro"); skip if not permitted."""
    mounted: list[Path] = []

    def mount(name: str, *options: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", ",".join(("size=64k", *options)), "tmpfs",
             str(folder)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip("a full or read-only disk needs a small tmpfs, and mounting one is "
                        f"not permitted here: {result.stderr.strip() or result.returncode}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], capture_output=True)


def _without_root_override() -> None:
    # Root ignores permission bits through CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH: drop
    # them from the child's bounding set so it meets a read-only folder as a user would.
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


# --------------------------------------------------------------------------- 4. demo-data


def test_demo_data_refuses_a_real_dataset_and_changes_nothing(tmp_path: Path) -> None:
    root = real_dataset(tmp_path / "demo_data")
    before = snapshot(root)
    result = cli("demo-data", "--out", root, "--cases", "1", "-q")
    one_line_error(result, str(root), "4 entries not written by tumorscope demo-data",
                   "BraTS2021_00000, BraTS2021_00001, name_mapping.csv, ...",
                   "choose an empty folder")
    assert snapshot(root) == before
    assert not (root / COHORT_FILE).exists()


def test_demo_data_refuses_foreign_files_beside_or_inside_its_own_cohort(
        tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    own_marker(out)
    write_case(out, "BraTS2021_00007")  # a real case copied in beside the demo cohort
    (out / "TSDemo_00000").mkdir()
    (out / "TSDemo_00000" / "notes.txt").write_text("mine")
    before = snapshot(out)
    result = cli("demo-data", "--out", out, "--cases", "1", "-q")
    one_line_error(result, str(out), "2 entries not written by tumorscope demo-data "
                               "(BraTS2021_00007, TSDemo_00000/notes.txt)")
    assert snapshot(out) == before


@pytest.mark.parametrize("args, words", [
    (["--seed", "3"], ["made with seed 0, got seed 3"]),
    (["--cases", "1"], ["holds a demo cohort of 2 cases (seed 0), asked for 1"]),
])
def test_demo_data_refuses_other_parameters_for_its_own_cohort(
        tmp_path: Path, args: list[str], words: list[str]) -> None:
    out = tmp_path / "cohort"
    own_marker(out, seed=0, n_cases=2)
    before = snapshot(out)
    one_line_error(cli("demo-data", "--out", out, *args, "-q"), *words)
    assert snapshot(out) == before


def test_demo_data_writes_a_new_folder_and_reuses_it_unchanged(tmp_path: Path) -> None:
    out = tmp_path / "new" / "demo_data"
    first = cli("demo-data", "--out", out, "--cases", "1", "-q")
    assert first.returncode == 0, first.stderr
    written = snapshot(out)
    assert sorted(written) == [
        "TSDemo_00000/TSDemo_00000_flair.nii.gz", "TSDemo_00000/TSDemo_00000_seg.nii.gz",
        "TSDemo_00000/TSDemo_00000_t1.nii.gz", "TSDemo_00000/TSDemo_00000_t1ce.nii.gz",
        "TSDemo_00000/TSDemo_00000_t2.nii.gz", "name_mapping.csv", "survival_info.csv",
        COHORT_FILE]
    # Its own folder is reused as it is (what `tumorscope demo` relies on to rerun).
    again = cli("demo-data", "--out", out, "--cases", "1", "-q")
    assert again.returncode == 0, again.stderr
    assert snapshot(out) == written


def test_a_real_case_copied_into_a_demo_cohort_is_not_listed_synthetic(tmp_path: Path) -> None:
    """Before: the cohort marker labelled every case of its folder synthetic."""
    out = tmp_path / "demo_data"
    made = cli("demo-data", "--out", out, "--cases", "1", "-q")
    assert made.returncode == 0, made.stderr
    write_case(out, "BraTS2021_00001")  # a patient's scan, copied in afterwards
    result = cli("check", out)
    assert result.returncode == 0 and "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("BraTS2021_00001  ") and "synthetic" not in lines[0], lines
    assert lines[1].startswith("TSDemo_00000  ") and lines[1].endswith("  synthetic  ok")
    assert lines[-1] == "2 case(s): 2 ok, 0 bad"


# --------------------------------------------------------------------------- 8. OS errors


def _proc_is_procfs() -> bool:
    try:
        with open("/proc/self/mounts") as fh:
            return any(line.split()[1:3] == ["/proc", "proc"] for line in fh)
    except OSError:
        return False


@pytest.mark.skipif(not _proc_is_procfs(), reason="needs Linux's /proc")
@pytest.mark.parametrize("command, target", [
    (["demo-data", "--cases", "1", "-q", "--out"], "/proc/tsout"),
    (["preprocess", "{data}", "-q", "--cache"], "/proc/tsout/cache"),
])
def test_an_output_that_cannot_be_created_says_so(tmp_path: Path, command: list[str],
                                                  target: str) -> None:
    """Before: "/proc/tsout does not exist", as if an input were missing."""
    data = tmp_path / "data"
    write_case(data, "BraTS2021_00000")
    command = [str(data) if a == "{data}" else a for a in command]
    one_line_error(cli(*command, target),
                   "error: cannot create /proc/tsout (/proc is on a proc file system, a view "
                   "of the kernel that cannot hold files; choose a folder on a disk)")


def test_creating_below_a_missing_folder_names_that_folder(tmp_path: Path) -> None:
    target = tmp_path / "gone" / "run"
    with pytest.raises(FileNotFoundError) as info:
        target.mkdir()
    assert describe_os_error(info.value) == (
        f"cannot create {target} (its folder {tmp_path / 'gone'} does not exist)")
    assert describe_os_error(info.value, {"--out": target}) == describe_os_error(info.value)


def test_a_missing_input_still_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "best.pt"
    with pytest.raises(FileNotFoundError) as info:
        open(missing, "rb")
    for flags in ({}, {"--checkpoint": missing}, {"--out": tmp_path / "run"}):
        assert describe_os_error(info.value, flags) == f"{missing} does not exist"
    # The output itself, or a path below it whose folder is missing, was being created; a
    # file missing from an existing output folder may have been read.
    assert describe_os_error(info.value, {"--out": tmp_path}) == f"{missing} does not exist"
    out = tmp_path / "run"
    for path in (out, out / "predictions" / "a.nii.gz"):
        made = FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        assert describe_os_error(made, {"--out": out}).startswith(f"cannot create {path} (")



@pytest.mark.parametrize("command", [
    ["demo-data", "--cases", "1", "-q", "--out"],
    ["train", "-q", "--data", "nowhere", "--out"],
    ["predict", "--checkpoint", "none.pt", "--input", "nowhere", "-q", "--out"],
    ["render", "nowhere", "-q", "--out"],
    ["preprocess", "nowhere", "-q", "--cache"],
])
def test_a_file_where_a_folder_is_needed_is_named_with_its_option(
        tmp_path: Path, command: list[str]) -> None:
    blocker = tmp_path / "x"
    blocker.write_text("my notes")
    for target in (blocker, blocker / "sub"):
        result = cli(*command, target)
        one_line_error(result, f"{blocker} is a file; {command[-1]} needs a folder")
    assert blocker.read_text() == "my notes"


def test_disk_full_names_the_file_not_its_temporary(
        tmp_path: Path, tmpfs: Callable[..., Path]) -> None:
    data = tmp_path / "data"
    write_case(data, "BraTS2021_00000")
    before = snapshot(data)
    full = tmpfs("full")
    err = one_line_error(cli("preprocess", data, "--cache", full, "-q"),
                         "disk full while writing ", str(full), "/image.npy")
    assert ".tmp" not in err
    err = one_line_error(cli("demo-data", "--out", full / "demo", "--cases", "1", "-q"),
                         f"disk full while writing {full / 'demo' / 'TSDemo_00000'}/"
                         "TSDemo_00000_t1.nii.gz")
    assert ".tmp" not in err
    assert not [p for p in full.rglob(".*") if ".tmp" in p.name], "temporaries left behind"
    assert snapshot(data) == before


def test_read_only_file_system_is_said_before_any_work(
        tmp_path: Path, tmpfs: Callable[..., Path]) -> None:
    ro = tmpfs("ro", "ro")
    one_line_error(cli("demo-data", "--out", ro / "demo", "--cases", "1", "-q"),
                   f"read-only file system: cannot write {ro / 'demo'}")
    data = tmp_path / "data"
    write_case(data, "BraTS2021_00000")
    one_line_error(cli("preprocess", data, "--cache", ro / "cache", "-q"),
                   "read-only file system: cannot write ", str(ro))


def test_permission_denied_names_the_path(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    drop = _without_root_override if os.geteuid() == 0 else None
    try:
        one_line_error(cli("demo-data", "--out", locked / "demo", "--cases", "1", "-q",
                           preexec_fn=drop),
                       f"permission denied: cannot write {locked / 'demo'}")
        data = tmp_path / "data"
        write_case(data, "BraTS2021_00000")
        one_line_error(cli("preprocess", data, "--cache", locked, "-q", preexec_fn=drop),
                       "permission denied: cannot write ", str(locked))
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("name, target", [
    (".BraTS2021_00001.nii.gz.ab12cd_9.tmp.nii.gz", "BraTS2021_00001.nii.gz"),
    (".BraTS2021_00001.nii.gz.node_3-4242.ab12cd_9.tmp.nii.gz", "BraTS2021_00001.nii.gz"),
    (".metrics.csv.host-1.k3j.tmp.csv", "metrics.csv"),
    (".cases.json.q1w2e3r4.tmp.json", "cases.json"),
    (".image.npy.h-7.x.tmp.npy", "image.npy"),
    (".LOCK.h-7.x.tmp", "LOCK"),
    ("BraTS2021_00001.nii.gz", "BraTS2021_00001.nii.gz"),
])
def test_temporary_names_map_to_their_target(name: str, target: str) -> None:
    assert temp_target(Path("runs/x/predictions") / name) == Path("runs/x/predictions") / target


@pytest.mark.parametrize("exc, flags, words", [
    (OSError(errno.ENOSPC, "No space left on device",
             "runs/x/predictions/.BraTS2021_00001.nii.gz.h-2.abc.tmp.nii.gz"), {},
     "disk full while writing runs/x/predictions/BraTS2021_00001.nii.gz"),
    (OSError(errno.ENOSPC, "No space left on device"), {},
     "disk full (no space left on device)"),
    (PermissionError(errno.EACCES, "Permission denied", "runs/x"), {},
     "permission denied: cannot write runs/x"),
    (OSError(errno.EROFS, "Read-only file system", "runs/x"), {},
     "read-only file system: cannot write runs/x"),
    (OSError(errno.EDQUOT, "Disk quota exceeded", "runs/x/a.csv"), {},
     "disk quota exceeded while writing runs/x/a.csv"),
    (OSError(errno.EIO, "Input/output error", "d/a.nii.gz"), {},
     "input/output error (failing disk or lost network share) on d/a.nii.gz"),
])
def test_errno_words(exc: OSError, flags: dict, words: str) -> None:
    assert describe_os_error(exc, flags) == words


def test_a_real_full_device_names_the_file() -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    with pytest.raises(OSError) as info:
        with open("/dev/full", "w") as fh:
            fh.write("x" * 100_000)
    assert describe_os_error(info.value) == "disk full while writing /dev/full"


def test_oserrors_docstring_examples() -> None:
    result = doctest.testmod(oserrors, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- 5. render size


@pytest.mark.parametrize("flag, value", [
    ("--width", "0"), ("--width", "-5"), ("--width", "100000"), ("--height", "0"),
    ("--height", "8193"),
])
def test_render_size_is_checked_before_anything_else(
        tmp_path: Path, flag: str, value: str) -> None:
    # The run folder does not even exist: the size is refused first, before any meshing.
    out = tmp_path / "png"
    one_line_error(cli("render", tmp_path / "no_run", "--out", out, flag, value, "-q"),
                   f"{flag} must be a pixel count in 16..8192, got {value}")
    assert not out.exists()


# --------------------------------------------------------------------------- 9. locations


def test_commands_write_only_where_they_were_told(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("XDG_") and k not in ("MPLCONFIGDIR", "TUMORSCOPE_CACHE")}
    env.update(HOME=str(home), OMP_NUM_THREADS="1")

    def run(*args: str | Path, **extra: str) -> None:
        result = subprocess.run([sys.executable, "-m", "tumorscope.app.cli", *map(str, args)],
                                capture_output=True, text=True, timeout=120,
                                env={**env, **extra})
        assert result.returncode == 0, result.stderr

    data = tmp_path / "empty"
    data.mkdir()
    run("demo-data", "--out", data, "--cases", "1", "-q")  # an empty folder is fine
    run("preprocess", data, "--cache", tmp_path / "flag_cache", "-q")
    run("preprocess", data, "-q", TUMORSCOPE_CACHE=str(tmp_path / "env_cache"))
    assert list(home.rglob("*")) == [], "a command wrote into $HOME"
    for cache in ("flag_cache", "env_cache"):
        assert list((tmp_path / cache).rglob("meta.json")), cache
    # Told nothing, the cache goes to its documented default, ~/.cache/tumorscope.
    run("preprocess", data, "-q")
    assert {p.relative_to(home).parts[:2] for p in home.rglob("*")} == {
        (".cache",), (".cache", "tumorscope")}
