"""TTA disagreement: the variance of the mirrored passes, and the maps' provenance in a run."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from builders import write_case

from tumorscope.app.cli import main
from tumorscope.core.prediction.maps import MAX_VARIANCE, read_region_maps
from tumorscope.core.prediction.sliding_window import (
    sliding_window_logits,
    sliding_window_predict,
)
from tumorscope.core.store import Run

SHAPE = (32, 32, 24)


def test_variance_of_mirrored_passes_is_that_of_their_probabilities() -> None:
    image = torch.randn(4, 8, 8, 8)

    def ramp(x: torch.Tensor) -> torch.Tensor:  # logits grow along the window's first axis
        r = torch.arange(x.shape[2], dtype=x.dtype).view(1, 1, -1, 1, 1) - 3.5
        return x[:, :3] * 0 + r

    out = sliding_window_predict(ramp, image, roi_size_vox=(8, 8, 8), mirror_axes=(0,),
                                 tta_variance=True)
    # One window, two passes: the plain ramp and the mirrored one, sigmoid(r), sigmoid(-r).
    r = torch.arange(8, dtype=torch.float32) - 3.5
    p, q = torch.sigmoid(r), torch.sigmoid(-r)
    expected = ((p - q) / 2) ** 2
    assert out.tta_variance is not None and out.tta_variance.shape == (3, 8, 8, 8)
    torch.testing.assert_close(out.tta_variance[1, :, 4, 4], expected)
    torch.testing.assert_close(out.logits, sliding_window_logits(
        ramp, image, roi_size_vox=(8, 8, 8), mirror_axes=(0,)))
    assert float(out.tta_variance.max()) <= MAX_VARIANCE


def test_symmetric_predictor_and_no_mirroring_have_no_disagreement() -> None:
    image = torch.randn(4, 12, 10, 9)

    def identity(x: torch.Tensor) -> torch.Tensor:
        return x[:, :3]

    mirrored = sliding_window_predict(identity, image, roi_size_vox=(8, 8, 8),
                                      mirror_axes=(0, 1, 2), tta_variance=True)
    assert mirrored.tta_variance is not None
    assert float(mirrored.tta_variance.abs().max()) < 1e-6
    assert sliding_window_predict(identity, image, roi_size_vox=(8, 8, 8),
                                  tta_variance=True).tta_variance is None
    assert sliding_window_predict(identity, image, roi_size_vox=(8, 8, 8),
                                  mirror_axes=(0,)).tta_variance is None


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(data, checkpoint, cache): two small cases and a 1-step tiny training."""
    base = tmp_path_factory.mktemp("tta")
    data, cache = base / "D", base / "C"
    for i in range(2):
        write_case(data, f"BraTS2021_{i:05d}", shape=SHAPE, seed=i)
    assert main(["train", "--config", "tiny-cpu", "--data", str(data), "--out", str(base / "T"),
                 "--set", "train.epochs=1", "--set", "train.steps_per_epoch=1",
                 "--set", "model.features=[4,8,16]", "--set", "data.patch_size_vox=16",
                 "--set", "data.spacing_mm=null", "--set", "train.val_every_epochs=1",
                 "--set", f"data.cache_dir={cache}", "-q"]) == 0
    return data, base / "T" / "checkpoints" / "best.pt", cache


def _predict(trained: tuple[Path, Path, Path], out: Path, *extra: str) -> None:
    data, checkpoint, cache = trained
    assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(data), "--out",
                 str(out), "--cache", str(cache), "-q", *extra]) == 0


def test_maps_belong_to_the_prediction_beside_them(trained: tuple[Path, Path, Path],
                                                   tmp_path: Path) -> None:
    run = Run(tmp_path / "R")
    _predict(trained, run.path, "--mirror", "--save-probabilities")
    case = "BraTS2021_00000"
    variance = read_region_maps(run.tta_variance_path(case))
    probability = read_region_maps(run.probabilities_path(case))
    assert variance.data.shape == probability.data.shape == (*SHAPE, 3)
    assert 0 <= variance.data.min() and variance.data.max() <= MAX_VARIANCE
    assert variance.data.max() > 0  # an untrained net is not mirror-symmetric
    np.testing.assert_allclose(variance.affine, nib.load(run.prediction_path(case)).affine)
    assert run.case_ids() == ["BraTS2021_00000", "BraTS2021_00001"]  # maps are no cases
    assert run.stray_files() == []

    # Mirroring off: the settings changed, so the variance of the old passes goes.
    _predict(trained, run.path, "--save-probabilities", "--force")
    assert run.probabilities_path(case).is_file()
    assert not run.tta_variance_path(case).exists()
    # Mirroring on again, without probabilities asked: neither map is this prediction's.
    _predict(trained, run.path, "--mirror", "--force")
    assert not run.probabilities_path(case).exists()
    assert not run.tta_variance_path(case).exists()
    # Asking for the maps of a current prediction makes them, variance included.
    _predict(trained, run.path, "--mirror", "--save-probabilities")
    assert run.probabilities_path(case).is_file() and run.tta_variance_path(case).is_file()
    # A case forgotten (its model replaced with --force on a subset) takes its maps along.
    other = "BraTS2021_00001"
    assert run.tta_variance_path(other).is_file()
    assert run.forget_cases([other]) == [other]
    assert not run.tta_variance_path(other).exists()
    assert not run.probabilities_path(other).exists()
    assert run.case_ids() == [case]
