"""The one mesh cache: keyed by the source's content and the parameters, one folder per source."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tumorscope.render import mesh_cache  # noqa: E402
from tumorscope.render.mesh_cache import (  # noqa: E402
    MANIFEST,
    cached_brain_surface,
    cached_region_meshes,
)

AFFINE = np.array([[-2.0, 0, 0, 100.0], [0, 2.0, 0, -40.0], [0, 0, 2.0, 7.0], [0, 0, 0, 1]])


def _write_label(path: Path, lab: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(lab, AFFINE), path)


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> dict[str, int]:
    """Replace ``mesh_cache.<name>`` by a wrapper counting its calls in the returned dict."""
    calls = {"n": 0}
    real = getattr(mesh_cache, name)

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(mesh_cache, name, counting)
    return calls


def test_cache_hit_returns_identical_meshes_without_recomputing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = np.zeros((30, 30, 30), np.uint8)
    lab[5:25, 6:22, 7:20] = 2
    lab[10:18, 10:16, 10:15] = 4
    src, cache = tmp_path / "seg.nii.gz", tmp_path / "meshes" / "case"
    _write_label(src, lab)

    calls = _count_calls(monkeypatch, "region_meshes")
    first = cached_region_meshes(src, cache)
    assert calls["n"] == 1
    files = sorted(cache.glob("*.vtp"))
    assert len(files) == 3
    mtimes = [f.stat().st_mtime_ns for f in files]
    manifest = json.loads((cache / "meshes.json").read_text())
    assert set(manifest["files"]) == {"WT", "TC", "ET"}

    again = cached_region_meshes(src, cache)
    assert calls["n"] == 1
    assert [f.stat().st_mtime_ns for f in sorted(cache.glob("*.vtp"))] == mtimes
    for name in first:
        assert np.array_equal(first[name].points, again[name].points)
        assert np.array_equal(first[name].faces, again[name].faces)

    # A name not cached yet is added without redoing the others.
    cached_region_meshes(src, cache, names=["ET", "label_4"])
    assert calls["n"] == 2
    assert [f.stat().st_mtime_ns for f in files] == mtimes

    # Other options or new file content invalidate the cache, and stale files go.
    cached_region_meshes(src, cache, smooth_iterations=5)
    assert calls["n"] == 3
    lab[lab == 4] = 1
    _write_label(src, lab)
    rebuilt = cached_region_meshes(src, cache)
    assert calls["n"] == 4
    assert rebuilt["ET"].n_points == 0
    assert len(list(cache.glob("*.vtp"))) == 3

    # A touched but unchanged file is recognised by its content hash.
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    cached_region_meshes(src, cache)
    assert calls["n"] == 4


def test_cache_reads_brats2023_labels(tmp_path: Path) -> None:
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[5:15, 5:15, 5:15] = 3  # enhancing in BraTS 2023
    _write_label(tmp_path / "seg.nii.gz", lab)
    meshes = cached_region_meshes(tmp_path / "seg.nii.gz", tmp_path / "c",
                                  names=["ET"], convention="brats2023")
    assert meshes["ET"].n_points > 0


def test_brain_surface_is_cached_with_the_same_keys(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    img = np.zeros((30, 30, 30), np.float32)
    img[5:25, 4:26, 6:24] = 100.0
    src, cache = tmp_path / "t1.nii.gz", tmp_path / "brain"
    nib.save(nib.Nifti1Image(img, AFFINE), src)
    calls = _count_calls(monkeypatch, "brain_surface")
    first = cached_brain_surface(src, cache)
    assert first.n_points > 0 and calls["n"] == 1
    manifest = json.loads((cache / MANIFEST).read_text())
    assert set(manifest["files"]) == {"brain"} and manifest["params"]["simplify_mm"] == 3.0
    again = cached_brain_surface(src, cache)
    assert calls["n"] == 1 and np.array_equal(first.points, again.points)
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    cached_brain_surface(src, cache)  # touched, same bytes: still cached
    assert calls["n"] == 1
    img[5:25, 4:26, 6:12] = 0.0
    nib.save(nib.Nifti1Image(img, AFFINE), src)
    cached_brain_surface(src, cache)
    assert calls["n"] == 2 and len(list(cache.glob("*.vtp"))) == 1


def test_a_read_only_run_caches_in_a_temp_folder(tmp_path: Path) -> None:
    """Run in a child that root's file-access override is taken from, so the folder's
    mode really refuses the write (the suite runs as root)."""
    import subprocess
    import sys

    from builders import drop_root_file_access

    from tumorscope.core.store import Run

    run = Run(tmp_path / "run")
    run.path.mkdir()
    assert mesh_cache.mesh_folder(run, "c1", "truth") == run.mesh_dir("c1") / "truth"
    run.path.chmod(0o555)
    code = ("import os, sys; from pathlib import Path; from tumorscope.core.store import Run;"
            "from tumorscope.render import mesh_cache;"
            f"run = Run(Path({str(run.path)!r}));"
            "assert not os.access(run.path, os.W_OK), 'still writable';"
            "print(mesh_cache.mesh_folder(run, 'c1', 'brain'))")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, preexec_fn=drop_root_file_access)
    finally:
        run.path.chmod(0o755)
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = Path(proc.stdout.strip())
    assert not folder.is_relative_to(run.path) and folder.parts[-2:] == ("c1", "brain")


def test_display_meshes_are_cached_simplified_and_follow_their_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's simplified surfaces are read back, not simplified again, and are rebuilt
    (with the full ones) as soon as the label file's content changes."""
    lab = np.zeros((60, 60, 60), np.uint8)
    lab[5:55, 6:50, 7:52] = 2
    lab[15:40, 15:40, 15:40] = 4
    src, cache = tmp_path / "seg.nii.gz", tmp_path / "meshes" / "case"
    _write_label(src, lab)
    calls = _count_calls(monkeypatch, "simplify_to")
    full = cached_region_meshes(src, cache)
    small = mesh_cache.cached_display_meshes(src, cache, max_triangles=800)
    assert calls["n"] == 3
    assert all(small[r].n_cells <= 1200 < full[r].n_cells for r in ("WT", "TC", "ET"))
    again = mesh_cache.cached_display_meshes(src, cache, max_triangles=800)
    assert calls["n"] == 3  # read from display-800/, not simplified again
    assert all(np.array_equal(small[r].points, again[r].points) for r in small)
    assert len(list(cache.glob("*.vtp"))) == 3  # the full surfaces stay beside them
    monkeypatch.setattr(mesh_cache, "SIMPLIFY_VERSION", mesh_cache.SIMPLIFY_VERSION + 1)
    mesh_cache.cached_display_meshes(src, cache, max_triangles=800)
    assert calls["n"] == 6  # another simplification: made again, never reused
    calls["n"] = 3

    lab[:] = 0
    lab[20:30, 20:30, 20:30] = 4  # a new prediction: only ET, a small cube
    _write_label(src, lab)
    changed = mesh_cache.cached_display_meshes(src, cache, max_triangles=800, names=["ET"])
    assert calls["n"] == 4
    assert changed["ET"].bounds[1] - changed["ET"].bounds[0] < 25.0  # 10 voxels of 2 mm
    rebuilt = cached_region_meshes(src, cache, names=["ET"])["ET"]  # the full one, rebuilt too
    assert np.allclose(rebuilt.bounds, changed["ET"].bounds, atol=1.0)
    with pytest.raises(mesh_cache.ConfigError, match="max_triangles"):
        mesh_cache.cached_display_meshes(src, cache, max_triangles=0)
