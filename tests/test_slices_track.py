"""The 2-D track's pieces on real synthetic figshare files: preprocessing, augmentation, scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tumorscope.core.config import AugmentConfig
from tumorscope.core.data.slice_datasets import discover_slices, read_slice
from tumorscope.core.data.slice_preprocess import head_mask, prepare_slice
from tumorscope.core.data.synthetic_2d import make_figshare_demo
from tumorscope.core.scoring.classification import classification_scores
from tumorscope.core.scoring.distances import hd95_slice_mm
from tumorscope.core.training.augment import augment_batch


@pytest.fixture(scope="module")
def figshare_dir(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("fig") / "data"
    make_figshare_demo(out, n_patients=4, seed=3, progress=False)
    return out


def test_prepared_slice_is_normalised_resized_and_keeps_the_tumour(figshare_dir) -> None:
    ds = discover_slices(figshare_dir)
    s = read_slice(ds.slices[0])
    p = prepare_slice(s, size_px=128)
    assert p.image.shape == (1, 128, 128) and p.target.shape == (1, 128, 128)
    inside = p.image[0] != 0
    # z-scored inside the head: mean about 0, std about 1 (clipped at the percentiles)
    assert abs(float(p.image[0][inside].mean())) < 0.05
    assert 0.8 < float(p.image[0][inside].std()) < 1.2
    # the tumour keeps its share of the slice through the 4x downsampling (area-based)
    share_before = float(s.mask.mean())
    share_after = float(p.target.mean())
    assert share_before > 0 and abs(share_after - share_before) < 0.15 * share_before
    assert p.class_index == s.tumour_type - 1
    # the background is not assumed zero: an offset added to every pixel gives the same mask
    offset = np.asarray(s.image, np.float32) + 300.0
    assert (head_mask(offset) == head_mask(np.asarray(s.image, np.float32))).mean() > 0.99


def test_2d_augmentation_moves_image_and_target_together() -> None:
    cfg = AugmentConfig(flip=0.5, rotate_scale=1.0, elastic=1.0, elastic_vox=2.0,
                        anisotropic_scale=0.5, intensity=0.0, gamma=0.0, noise=0.0)
    image = torch.zeros(6, 1, 64, 64)
    image[:, :, 8:56, 8:56] = 1.0
    target = torch.zeros(6, 1, 64, 64)
    target[:, :, 18:34, 30:46] = 1.0
    image[target.bool()] = 5.0
    out, moved = augment_batch(image.clone(), target.clone(), cfg,
                               generator=torch.Generator().manual_seed(1))
    assert out.shape == image.shape and moved.shape == target.shape
    assert not torch.equal(moved, target)  # something moved
    for i in range(6):
        bright = out[i, 0] > 3.0
        # where the target went, the bright tumour went: they overlap almost entirely
        inter = float((bright & (moved[i, 0] > 0)).sum())
        assert inter / max(float(moved[i, 0].sum()), 1.0) > 0.85
    again, again_t = augment_batch(image.clone(), target.clone(), cfg,
                                   generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, out) and torch.equal(again_t, moved)  # seeded: reproducible


def test_hd95_of_slices_matches_monai_2d() -> None:
    from monai.metrics import compute_hausdorff_distance

    rng = np.random.default_rng(0)
    for _ in range(5):
        truth = np.zeros((60, 50), bool)
        pred = np.zeros((60, 50), bool)
        a, b = rng.integers(5, 25, 2)
        truth[a:a + 20, b:b + 15] = True
        c, d = rng.integers(5, 25, 2)
        pred[c:c + 18, d:d + 20] = True
        spacing = (0.7, 1.3)
        ref = compute_hausdorff_distance(torch.from_numpy(pred)[None, None].float(),
                                         torch.from_numpy(truth)[None, None].float(),
                                         percentile=95, spacing=spacing)
        assert hd95_slice_mm(pred, truth, spacing_mm=spacing) == pytest.approx(
            float(ref), abs=1e-4)
    empty = np.zeros((10, 20), bool)
    assert hd95_slice_mm(empty, empty) == 0.0
    assert hd95_slice_mm(pred[:10, :20] | True, empty, spacing_mm=(1, 2)) == pytest.approx(
        math.hypot(10, 40))


def test_classification_scores_match_hand_counts() -> None:
    true = [0, 0, 1, 1, 1, 2, 2, 2, 2]
    pred = [0, 1, 1, 1, 2, 2, 2, 2, 0]
    s = classification_scores(true, pred, class_names=("meningioma", "glioma", "pituitary"))
    assert s.accuracy == pytest.approx(6 / 9)
    # meningioma: tp 1, fp 1, fn 1 -> F1 0.5; glioma: tp 2, fp 1, fn 1 -> 2/3; pituitary:
    # tp 3, fp 1, fn 1 -> 0.75
    assert s.per_class["meningioma"]["f1"] == pytest.approx(0.5)
    assert s.per_class["glioma"]["f1"] == pytest.approx(2 / 3)
    assert s.per_class["pituitary"]["f1"] == pytest.approx(0.75)
    assert s.macro_f1 == pytest.approx((0.5 + 2 / 3 + 0.75) / 3)
    assert s.confusion == ((1, 1, 0), (0, 2, 1), (1, 0, 3))
    none = classification_scores([-1, -1], [0, 1], class_names=("a", "b"))
    assert none.n == 0 and math.isnan(none.accuracy)
