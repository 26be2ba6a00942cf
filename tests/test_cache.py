"""Preprocessing once into the .npy cache: crop, z-score, provenance, invalidation."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from tumorscope.app.cli import main
from tumorscope.core.data.cases import discover, load_case
from tumorscope.core.data.preprocess import case_cache_dir, preprocess_case
from tumorscope.core.data.volumes import bounding_box, brain_mask, crop, uncrop, zscore


def test_cache_round_trip_and_provenance(brats2021_root: Path, tmp_path: Path) -> None:
    case = discover(brats2021_root)[0]
    cached = preprocess_case(case, tmp_path / "cache")
    source = load_case(case)
    assert isinstance(cached.image, np.memmap) and cached.image.dtype == np.float32
    assert cached.image.shape[0] == 4 and cached.image.shape[1:] == cached.box.shape
    assert cached.box.original_shape == source.shape
    assert cached.box.shape < source.shape  # the zero border was cropped away
    np.testing.assert_array_equal(cached.affine, source.affine)
    assert cached.spacing_mm == (1.0, 1.0, 1.0)
    # The label maps back onto the source grid exactly.
    np.testing.assert_array_equal(uncrop(np.asarray(cached.label), cached.box), source.label)
    # z-score over brain voxels.
    mask = crop(brain_mask(source.image), cached.box)
    for c in range(4):
        values = cached.image[c][mask]
        assert abs(values.mean()) < 1e-4 and abs(values.std() - 1) < 1e-3
        assert not cached.image[c][~mask].any()


def test_cache_is_reused_then_invalidated_by_a_changed_source(brats2021_root: Path,
                                                              tmp_path: Path) -> None:
    case = discover(brats2021_root)[0]
    cache = tmp_path / "cache"
    preprocess_case(case, cache)
    meta = case_cache_dir(case, cache) / "meta.json"
    first = meta.stat().st_mtime_ns
    time.sleep(0.01)
    preprocess_case(case, cache)
    assert meta.stat().st_mtime_ns == first  # reused, not rebuilt
    t1 = case.images["t1"]
    os.utime(t1, ns=(time.time_ns(), time.time_ns()))
    preprocess_case(case, cache)
    assert meta.stat().st_mtime_ns != first  # rebuilt after the source changed
    leftovers = [p.name for p in meta.parent.iterdir() if ".tmp" in p.name]
    assert leftovers == []


def test_interrupted_build_without_meta_is_rebuilt(brats2021_root: Path, tmp_path: Path) -> None:
    case = discover(brats2021_root)[0]
    cache = tmp_path / "cache"
    cached = preprocess_case(case, cache)
    folder = case_cache_dir(case, cache)
    expected = np.array(cached.image)
    (folder / "meta.json").unlink()
    np.save(folder / "image.npy", np.zeros(3))  # garbage left by a crash
    again = preprocess_case(case, cache)
    np.testing.assert_array_equal(again.image, expected)


def test_bounding_box_margin_and_empty_mask() -> None:
    mask = np.zeros((10, 10, 10), bool)
    assert bounding_box(mask).shape == (10, 10, 10)
    mask[0, 5, 9] = True
    box = bounding_box(mask, margin_vox=2)
    assert box.start == (0, 3, 7) and box.stop == (3, 8, 10)


def test_zscore_constant_channel_is_zero_not_nan() -> None:
    image = np.ones((2, 4, 4, 4), np.float32)
    image[1] = np.arange(64).reshape(4, 4, 4)
    out, means, stds = zscore(image, np.ones((4, 4, 4), bool))
    assert np.isfinite(out).all() and not out[0].any()
    assert stds[0] == 1.0 and means[1] == pytest.approx(31.5)


def test_preprocess_cli(brats2021_root: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preprocess", str(brats2021_root), "--cache", str(tmp_path / "c"), "-q"]) == 0
    assert "2 case(s) cached" in capsys.readouterr().out
    assert len(list((tmp_path / "c" / "preprocessed").glob("native/*/meta.json"))) == 2


def test_cache_at_target_spacing_resamples_after_crop(brats2021_root: Path,
                                                      tmp_path: Path) -> None:
    case = discover(brats2021_root)[0]
    native = preprocess_case(case, tmp_path / "c")
    coarse = preprocess_case(case, tmp_path / "c", target_spacing_mm=2.0)
    assert coarse.spacing_mm == (2.0, 2.0, 2.0) and coarse.box == native.box
    assert coarse.image.shape[1:] == tuple(round(s / 2) for s in native.box.shape)
    assert coarse.label is not None
    assert set(np.unique(coarse.label)) <= {0, 1, 2, 4}  # nearest keeps labels labels
    # Tumour volume in mm^3 is kept to within a few percent by the resampling.
    vol_native = np.count_nonzero(native.label)
    vol_coarse = np.count_nonzero(coarse.label) * 8
    assert abs(vol_coarse - vol_native) / vol_native < 0.2


def test_truncated_cache_entry_rebuilds_itself_saying_so(
        brats2021_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    case = discover(brats2021_root)[0]
    first = np.array(preprocess_case(case, tmp_path / "cache").image)
    npy = case_cache_dir(case, tmp_path / "cache") / "image.npy"
    npy.write_bytes(npy.read_bytes()[: npy.stat().st_size // 2])
    with caplog.at_level("WARNING"):
        again = preprocess_case(case, tmp_path / "cache")
    assert "damaged" in caplog.text and case.case_id in caplog.text
    np.testing.assert_array_equal(np.asarray(again.image), first)


def test_touch_or_copy_back_keeps_the_entry_another_content_rebuilds_it(
        brats2021_root: Path, tmp_path: Path) -> None:
    """Content decides, not mtime: a touched file is the same input; the same size and
    mtime with other bytes (``cp -p`` of another scan) is not."""
    cases = discover(brats2021_root)
    case, other = cases[0], cases[1]
    preprocess_case(case, tmp_path / "cache")
    meta = case_cache_dir(case, tmp_path / "cache") / "meta.json"
    npy = case_cache_dir(case, tmp_path / "cache") / "image.npy"
    assert '"sha256"' in meta.read_text()
    stamp = npy.stat().st_mtime_ns
    time.sleep(0.01)
    os.utime(case.images["t1"])  # touch
    preprocess_case(case, tmp_path / "cache")
    assert npy.stat().st_mtime_ns == stamp  # same bytes: not rebuilt
    target = case.images["flair"]
    st_before = target.stat()
    target.write_bytes(other.images["flair"].read_bytes())
    os.utime(target, ns=(st_before.st_atime_ns, st_before.st_mtime_ns))
    time.sleep(0.01)
    preprocess_case(case, tmp_path / "cache")
    assert npy.stat().st_mtime_ns != stamp  # rebuilt from the new content


def test_an_entry_changed_after_the_fact_is_rebuilt(
        brats2021_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Same-size damage to an array, or a tampered geometry in meta.json, is never used."""
    import json

    case = discover(brats2021_root)[0]
    first = preprocess_case(case, tmp_path / "cache")
    image, affine = np.array(first.image), np.array(first.affine)
    folder = case_cache_dir(case, tmp_path / "cache")
    npy = folder / "image.npy"
    raw = bytearray(npy.read_bytes())
    raw[-4000:] = b"\xff" * 4000  # other voxels, same size
    npy.write_bytes(bytes(raw))
    with caplog.at_level("WARNING"):
        again = preprocess_case(case, tmp_path / "cache")
    assert "image.npy is not the array written at build time" in caplog.text
    np.testing.assert_array_equal(np.asarray(again.image), image)
    meta = json.loads((folder / "meta.json").read_text())
    meta["affine"][0][3] = 50.0
    (folder / "meta.json").write_text(json.dumps(meta))
    caplog.clear()
    with caplog.at_level("WARNING"):
        third = preprocess_case(case, tmp_path / "cache")
    assert "meta.json was changed after it was written" in caplog.text
    np.testing.assert_array_equal(third.affine, affine)


def test_an_edited_meta_json_is_never_used(brats2021_root: Path, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """A crop box moved by hand (same size, so no shape check could see it) is refused."""
    import json

    case = discover(brats2021_root)[0]
    first = preprocess_case(case, tmp_path / "cache")
    start = list(first.box.start)
    meta_path = case_cache_dir(case, tmp_path / "cache") / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["crop_box"]["start"][0] += 1
    meta["crop_box"]["stop"][0] += 1
    meta_path.write_text(json.dumps(meta))
    with caplog.at_level("WARNING"):
        again = preprocess_case(case, tmp_path / "cache")
    assert "meta.json was changed after it was written" in caplog.text
    assert list(again.box.start) == start
