"""Sliding-window inference: grid, weights, padding, mirroring, and agreement with MONAI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from tumorscope.core.errors import ConfigError
from tumorscope.core.prediction.sliding_window import (
    gaussian_importance,
    sliding_window_logits,
    window_grid,
)


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv3d(4, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(6, 3, 3, padding=1)
    ).eval()


@pytest.mark.parametrize("overlap", [0.25, 0.5])
def test_matches_monai_sliding_window_inference(overlap: float) -> None:
    net = _net()
    image = torch.randn(4, 37, 30, 26)
    roi = (16, 16, 16)
    ours = sliding_window_logits(net, image, roi_size_vox=roi, overlap=overlap, batch_windows=3)
    theirs = sliding_window_inference(image[None], roi, 3, net, overlap=overlap,
                                      mode="gaussian", sigma_scale=0.125)[0]
    assert ours.shape == theirs.shape == (3, 37, 30, 26)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_image_smaller_than_window_is_padded_and_cropped_back() -> None:
    net = _net()
    image = torch.randn(4, 10, 20, 12)
    out = sliding_window_logits(net, image, roi_size_vox=(16, 16, 16), overlap=0.5)
    assert out.shape == (3, 10, 20, 12)
    theirs = sliding_window_inference(image[None], (16, 16, 16), 1, net, overlap=0.5,
                                      mode="gaussian")[0]
    torch.testing.assert_close(out, theirs, atol=1e-5, rtol=1e-4)


def test_single_window_equals_plain_forward_for_any_batch_size() -> None:
    net = _net()
    image = torch.randn(4, 16, 16, 16)
    with torch.no_grad():
        direct = net(image[None])[0]
    for batch in (1, 4):
        out = sliding_window_logits(net, image, roi_size_vox=(16, 16, 16), batch_windows=batch)
        torch.testing.assert_close(out, direct)


def test_mirroring_of_a_symmetric_predictor_changes_nothing_and_of_a_skewed_one_does() -> None:
    image = torch.randn(4, 20, 20, 20)

    def identity(x: torch.Tensor) -> torch.Tensor:
        return x[:, :3]

    plain = sliding_window_logits(identity, image, roi_size_vox=(8, 8, 8))
    mirrored = sliding_window_logits(identity, image, roi_size_vox=(8, 8, 8),
                                     mirror_axes=(0, 1, 2))
    torch.testing.assert_close(plain, mirrored)

    def ramp(x: torch.Tensor) -> torch.Tensor:  # depends on position inside the window
        r = torch.arange(x.shape[2], dtype=x.dtype).view(1, 1, -1, 1, 1)
        return x[:, :3] * 0 + r

    a = sliding_window_logits(ramp, image, roi_size_vox=(8, 8, 8))
    b = sliding_window_logits(ramp, image, roi_size_vox=(8, 8, 8), mirror_axes=(0,))
    assert not torch.allclose(a, b)
    assert torch.allclose(b, torch.full_like(b, 3.5))  # mirrored ramp averages to its mean


def test_grid_covers_every_voxel_and_weights_are_positive() -> None:
    shape, roi = (37, 30, 26), (16, 16, 16)
    covered = np.zeros(shape, bool)
    for st in window_grid(shape, roi, overlap=0.5):
        covered[tuple(slice(s, s + r) for s, r in zip(st, roi, strict=True))] = True
    assert covered.all()
    w = gaussian_importance(roi)
    assert w.min() >= 1e-3 and 0.8 < w.max() <= 1.0


def test_bad_arguments_raise_config_error() -> None:
    net = _net()
    with pytest.raises(ConfigError, match="overlap must be >= 0 and < 1, got 1.5"):
        sliding_window_logits(net, torch.zeros(4, 8, 8, 8), roi_size_vox=(8, 8, 8), overlap=1.5)
    with pytest.raises(ConfigError, match=r"\(C, X, Y, Z\)"):
        sliding_window_logits(net, torch.zeros(8, 8, 8), roi_size_vox=(8, 8, 8))
    with pytest.raises(ConfigError, match="mirror_axes"):
        sliding_window_logits(net, torch.zeros(4, 8, 8, 8), roi_size_vox=(8, 8, 8),
                              mirror_axes=(3,))
