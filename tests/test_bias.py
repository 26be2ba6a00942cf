"""Bias-field correction: a coil's field is removed from real NIfTI files through the cache,
tumour contrast survives it, and a checkpoint trained with it predicts with it."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from builders import TINY

from tumorscope.core.config import load_config
from tumorscope.core.data.bias import BIAS_FIELD_VERSION, estimate_bias_field
from tumorscope.core.data.cases import MODALITIES, discover
from tumorscope.core.data.preprocess import case_cache_dir, preprocess_case
from tumorscope.core.errors import ConfigError

SPACING_MM = 1.5
SHAPE = (72, 80, 60)
# (T1, T1ce, T2, FLAIR) per tissue, white matter = 1
TISSUES = {"wm": (1.0, 1.0, 1.0, 1.0), "gm": (0.7, 0.72, 1.3, 1.2),
           "csf": (0.2, 0.2, 2.5, 0.3), "edema": (0.7, 0.7, 2.0, 1.8)}


def _phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four channels of a head-like phantom (WM core, GM shell, ventricles, a tumour),
    its label map and its brain mask."""
    rng = np.random.default_rng(seed)
    idx = np.indices(SHAPE).astype(float) * SPACING_MM
    centre = np.array(SHAPE, float)[:, None, None, None] * SPACING_MM / 2
    radii = np.array([48.0, 54.0, 40.0])[:, None, None, None]
    r = np.sqrt((((idx - centre) / radii) ** 2).sum(0))
    brain = r < 1
    gm = brain & (r > 0.85)
    vent = sum(((((idx - centre - np.array(o)[:, None, None, None])
                  / np.array([5.0, 14.0, 8.0])[:, None, None, None]) ** 2).sum(0) < 1)
               for o in ([-9.0, 0, 0], [9.0, 0, 0])).astype(bool)
    tumour = np.sqrt(((idx - centre - np.array([22.0, 18.0, 6.0])[:, None, None, None])
                      ** 2).sum(0)) < 13
    tissue = np.where(gm, 1, 0)
    tissue[vent] = 2
    tissue[tumour & brain] = 3
    table = np.array([TISSUES[k] for k in ("wm", "gm", "csf", "edema")], np.float32)
    image = np.moveaxis(table[tissue], -1, 0) * brain
    image *= 1.0 + 0.02 * rng.standard_normal(image.shape).astype(np.float32)
    label = np.where(tumour & brain, 2, 0).astype(np.uint8)
    return np.clip(image, 0, None).astype(np.float32), label, brain


def _coil_field() -> np.ndarray:
    """A smooth field of up to +-35 %, partly shared by the four channels, as a coil's."""
    x, y, z = (np.linspace(-1, 1, n)[:, None, None] if a == 0 else
               np.linspace(-1, 1, n)[None, :, None] if a == 1 else
               np.linspace(-1, 1, n)[None, None, :] for a, n in enumerate(SHAPE))
    shared = 0.25 * x + 0.1 * np.cos(2.0 * y) + 0.08 * z
    return np.stack([np.exp(shared + 0.05 * (c - 1.5) * y) for c in range(4)]).astype(
        np.float32)


def _write(root: Path, case_id: str, image: np.ndarray, label: np.ndarray) -> None:
    folder = root / case_id
    folder.mkdir(parents=True)
    affine = np.diag([SPACING_MM, SPACING_MM, SPACING_MM, 1.0])
    for c, m in enumerate(MODALITIES):
        # Integer scanner units, as BraTS's files hold them.
        units = np.round(image[c] * 800).astype(np.int16)
        nib.save(nib.Nifti1Image(units, affine), folder / f"{case_id}_{m}.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), folder / f"{case_id}_seg.nii.gz")


def test_a_coil_field_is_removed_through_the_cache_and_tumour_contrast_kept(
        tmp_path: Path) -> None:
    image, label, brain = _phantom()
    _write(tmp_path / "clean", "C1", image, label)
    _write(tmp_path / "biased", "C1", image * _coil_field(), label)
    cache = tmp_path / "cache"
    clean = preprocess_case(discover(tmp_path / "clean")[0], cache)
    biased_case = discover(tmp_path / "biased")[0]
    off = preprocess_case(biased_case, cache)
    corrected = preprocess_case(biased_case, cache, bias_correction="white_matter")

    # Both live side by side in the cache, each saying how it was made.
    assert case_cache_dir(biased_case, cache) != case_cache_dir(
        biased_case, cache, bias_correction="white_matter")
    assert (off.meta["bias_correction"], corrected.meta["bias_correction"]) == (
        "off", "white_matter")

    inside = np.asarray(clean.image[0]) != 0
    err_off = np.abs(np.asarray(off.image) - clean.image)[:, inside].mean()
    err_corrected = np.abs(np.asarray(corrected.image) - clean.image)[:, inside].mean()
    assert err_corrected < 0.4 * err_off, (err_corrected, err_off)

    # The tumour stays as bright against white matter on T2 and FLAIR as without the field.
    crop_label = np.asarray(clean.label)
    wm = inside & (crop_label == 0) & (np.asarray(clean.image[3]) < 0.5)
    for c in (2, 3):
        def contrast(cached, c=c):
            return float(cached.image[c][crop_label > 0].mean() - cached.image[c][wm].mean())
        assert contrast(corrected) == pytest.approx(contrast(clean), rel=0.2)


def test_an_entry_corrected_by_an_earlier_estimate_is_rebuilt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tumorscope.core.data import preprocess

    image, label, _ = _phantom()
    _write(tmp_path / "data", "C1", image * _coil_field(), label)
    case = discover(tmp_path / "data")[0]
    first = preprocess_case(case, tmp_path / "cache", bias_correction="white_matter")
    assert first.meta["bias_version"] == BIAS_FIELD_VERSION
    again = preprocess_case(case, tmp_path / "cache", bias_correction="white_matter")
    assert again.meta["meta_sha256"] == first.meta["meta_sha256"]  # reused
    monkeypatch.setattr(preprocess, "BIAS_FIELD_VERSION", BIAS_FIELD_VERSION + 1)
    rebuilt = preprocess_case(case, tmp_path / "cache", bias_correction="white_matter")
    assert rebuilt.meta["bias_version"] == BIAS_FIELD_VERSION + 1


def test_a_clean_image_keeps_a_flat_field_and_too_little_brain_gets_none() -> None:
    image, _, brain = _phantom(seed=1)
    field = estimate_bias_field(image, brain, spacing_mm=(SPACING_MM,) * 3)
    assert field.shape == image.shape and field.dtype == np.float32
    assert float(np.abs(np.log(field[:, brain])).max()) < 0.08
    assert (field[:, ~brain] == 1).all()

    speck = np.zeros(brain.shape, bool)
    speck[30:33, 30:33, 30:33] = True
    assert (estimate_bias_field(image, speck, spacing_mm=(SPACING_MM,) * 3) == 1).all()


def test_the_option_is_checked_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="white_matter"):
        load_config("tiny-cpu", overrides=["data.bias_correction=n4"])
    image, label, _ = _phantom()
    _write(tmp_path, "C1", image, label)
    with pytest.raises(ConfigError, match="white_matter"):
        preprocess_case(discover(tmp_path)[0], tmp_path / "cache",
                        bias_correction="n4")  # type: ignore[arg-type]


def test_a_checkpoint_trained_with_it_predicts_with_it(tmp_path: Path) -> None:
    from tumorscope.core.prediction.predict import predict_run
    from tumorscope.core.store import Run
    from tumorscope.core.training.train import train

    image, label, _ = _phantom()
    root = tmp_path / "data"
    for i in range(3):
        _write(root, f"BraTS2021_{i:05d}", image * _coil_field() ** (i / 2), label)
    cache = tmp_path / "cache"
    cfg = load_config("tiny-cpu", overrides=[*TINY, f"data.root={root}",
                                             f"data.cache_dir={cache}",
                                             "data.bias_correction=white_matter"])
    run = train(cfg, tmp_path / "run", progress=False)
    out = tmp_path / "pred"
    predict_run(run.checkpoint_path("best"), root, out, cache_dir=cache, progress=False)
    records = Run(out).cases()
    assert len(records) == 3
    for record in records.values():
        assert record["provenance"]["settings"]["bias_correction"] == \
            f"white_matter v{BIAS_FIELD_VERSION}"
    # Training and prediction both read the corrected entries, none uncorrected.
    grids = {p.name for p in (cache / "preprocessed").iterdir()}
    assert grids == {"native-white_matter"}, grids
