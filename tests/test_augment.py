"""Training augmentation: geometry moves image and labels together, intensities touch only
the image's brain, probabilities and ranges are the config's, and a seed fixes everything."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tumorscope.core.config import AUGMENT_RANGES, AugmentConfig, load_config, rules
from tumorscope.core.errors import ConfigError
from tumorscope.core.training.augment import augment_batch

OFF = AugmentConfig(flip=0, rotate_scale=0, elastic=0, intensity=0, remap=0, gamma=0,
                    bias_field=0, blur=0, sharpen=0, low_resolution=0, noise=0)
"""Every transform off: the identity."""
INTENSITY = ("bias_field", "intensity", "remap", "gamma", "blur", "sharpen", "low_resolution",
             "noise")


def _only(**changes: object) -> AugmentConfig:
    return dataclasses.replace(OFF, **changes)


def _batch(b: int = 2, n: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A ball of brain (z-scored noise, 0 outside) holding an off-centre blob of tumour."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32)] * 3,
                                      indexing="ij"))
    ball = ((grid - (n - 1) / 2) ** 2).sum(0).sqrt() < 0.42 * n
    image = torch.randn(b, 4, n, n, n, generator=g) * ball
    blob = ((grid - torch.tensor([0.6 * n, 0.4 * n, 0.5 * n]).view(3, 1, 1, 1)) ** 2
            ).sum(0).sqrt() < 0.2 * n
    core = ((grid - torch.tensor([0.6 * n, 0.4 * n, 0.5 * n]).view(3, 1, 1, 1)) ** 2
            ).sum(0).sqrt() < 0.1 * n
    target = torch.stack([blob, core, core & (grid[0] > 0.6 * n)]).float()
    return image, target.expand(b, -1, -1, -1, -1).clone()


def _run(cfg: AugmentConfig, image: torch.Tensor, target: torch.Tensor, seed: int = 0
         ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return augment_batch(image.clone(), target.clone(), cfg, generator=g)


def test_everything_off_is_the_identity() -> None:
    image, target = _batch()
    out, regions = _run(OFF, image, target)
    assert torch.equal(out, image) and torch.equal(regions, target)
    # Rotation by 0 degrees at scale 1 with no elastic field: the same voxels.
    still = _only(rotate_scale=1, max_rotation_deg=0, scale_range=(1.0, 1.0))
    out, regions = _run(still, image, target)
    torch.testing.assert_close(out, image, atol=1e-5, rtol=0)
    assert torch.equal(regions, target)


@pytest.mark.parametrize("cfg", [
    _only(flip=1),
    _only(rotate_scale=1, max_rotation_deg=60),
    _only(rotate_scale=1, max_rotation_deg=0, scale_range=(0.7, 1.4), anisotropic_scale=1),
    _only(elastic=1, elastic_vox=3.0),
    _only(flip=0.5, rotate_scale=1, max_rotation_deg=180, scale_range=(0.8, 1.25),
          anisotropic_scale=0.5, elastic=1),
], ids=["flip", "rotation", "anisotropic-scale", "elastic", "all-spatial"])
def test_geometry_moves_image_and_labels_together(cfg: AugmentConfig) -> None:
    """A label-shaped image goes through the same map as its labels: thresholded, it is
    the augmented label map, voxel for voxel."""
    _, target = _batch(b=4)
    out, regions = _run(cfg, target.clone(), target)
    assert torch.equal((out > 0.5).float(), regions)
    assert not torch.equal(regions, target)  # something moved
    assert set(regions.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", INTENSITY)
def test_intensity_transforms_touch_only_the_image_inside_the_brain(name: str) -> None:
    image, target = _batch()
    out, regions = _run(_only(**{name: 1}), image, target)
    assert torch.equal(regions, target)
    brain = (image != 0).any(1, keepdim=True).expand_as(image)
    assert torch.equal(out[~brain], torch.zeros_like(out[~brain]))
    assert not torch.allclose(out[brain], image[brain])
    assert torch.isfinite(out).all()


def test_ranges_are_the_configs() -> None:
    image, target = _batch()
    brain = (image != 0).any(1, keepdim=True).expand_as(image)
    doubled = _only(intensity=1, intensity_scale=(2.0, 2.0), intensity_shift=0.0)
    torch.testing.assert_close(_run(doubled, image, target)[0], 2 * image)
    for cfg in (_only(gamma=1, gamma_range=(1.0, 1.0)), _only(noise=1, noise_sigma=0.0),
                _only(low_resolution=1, low_resolution_factor=(1.0, 1.0)),
                _only(bias_field=1, bias_field_strength=0.0),
                _only(remap=1, remap_strength=0.0),
                _only(sharpen=1, sharpen_amount=(0.0, 0.0))):
        torch.testing.assert_close(_run(cfg, image, target)[0], image, atol=1e-5, rtol=0)
    # Noise of a given std adds that much spread.
    noisy = _run(_only(noise=1, noise_sigma=0.5), image, target, seed=3)[0]
    assert float((noisy - image)[brain].std()) < 0.5
    # A bias field is smooth and multiplicative: the ratio to the input varies slowly.
    biased = _run(_only(bias_field=1, bias_field_strength=0.5), image, target)[0]
    assert not torch.allclose(biased, image)


def _log_gain(cfg: AugmentConfig, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per channel, the log of how much the bias field multiplied each brain voxel of sample
    0 (the field multiplies the signal above the channel's floor)."""
    out = _run(cfg, image, target)[0]
    brain = (image[0] != 0).any(0)
    gains = []
    for ch in range(image.shape[1]):
        floor = min(float(image[0, ch][brain].min()), 0.0)
        x, y = image[0, ch][brain] - floor, out[0, ch][brain] - floor
        keep = x > 0.5
        gains.append(torch.log(y[keep] / x[keep]))
    n = min(len(g) for g in gains)
    return torch.stack([g[:n] for g in gains])


def test_a_shared_bias_field_brightens_every_channel_in_the_same_place() -> None:
    image, target = _batch()
    image = image.abs() + 1.0 * (image != 0)  # positive signal, as MR magnitudes are
    corr = {}
    for share in (0.0, 1.0):
        gains = _log_gain(_only(bias_field=1, bias_field_strength=0.5,
                                bias_field_shared=share), image, target)
        corr[share] = torch.corrcoef(gains)[0, 1:]
    # One coil: the channels' fields are one field scaled (correlation 1); independent
    # fields are not (they differ between channels).
    assert (corr[1.0] > 0.99).all(), corr[1.0]
    assert (corr[0.0].abs() < 0.9).all(), corr[0.0]


def test_intensity_curve_keeps_the_order_of_intensities() -> None:
    image, target = _batch()
    out = _run(_only(remap=1, remap_strength=1.0), image, target)[0]
    brain = (image != 0).any(1)
    for s in range(2):
        for ch in range(4):
            x, y = image[s, ch][brain[s]], out[s, ch][brain[s]]
            order = x.argsort()
            assert (y[order].diff() >= -1e-5).all()  # increasing
            torch.testing.assert_close(y.min(), x.min())  # the range is kept
            torch.testing.assert_close(y.max(), x.max())
    assert not torch.allclose(out, image)


def test_thick_slices_smooth_one_axis_per_channel() -> None:
    image, target = _batch(b=1, n=32)
    out = _run(_only(low_resolution=1, low_resolution_factor=(4.0, 4.0)), image, target)[0]
    axes = []
    for ch in range(4):
        rough = [float(out[:, ch].diff(dim=d)[:, 10:21, 10:21, 10:21].abs().mean())
                 for d in (1, 2, 3)]
        assert min(rough) < 0.5 * max(rough), rough
        assert sorted(rough)[1] > 0.8 * max(rough), rough  # the in-plane axes stay sharp
        axes.append(rough.index(min(rough)))
    assert len(set(axes)) > 1  # each sequence has its own slice axis
    half = _run(_only(low_resolution=0.5, low_resolution_factor=(4.0, 4.0)),
                *_batch(b=50, n=8))[0]
    image = _batch(b=50, n=8)[0]
    changed = (half - image).flatten(2).abs().amax(2) > 1e-6  # (sample, channel)
    assert 70 < int(changed.sum()) < 130  # about half of the 200 channels


def test_blur_lowers_and_sharpening_raises_roughness() -> None:
    image, target = _batch()
    inner = (slice(None), slice(None), *[slice(6, 18)] * 3)

    def roughness(x: torch.Tensor) -> float:
        return float(x.diff(dim=2)[inner].abs().mean())

    blurred = _run(_only(blur=1, blur_sigma_vox=(1.0, 1.5)), image, target)[0]
    sharper = _run(_only(sharpen=1, sharpen_amount=(0.5, 1.0)), image, target)[0]
    assert roughness(blurred) < 0.6 * roughness(image)
    assert roughness(sharper) > 1.2 * roughness(image)


@pytest.mark.parametrize("name", ["flip", "rotate_scale", "intensity", "noise", "blur"])
def test_probability_is_per_sample(name: str) -> None:
    image, target = _batch(b=200, n=8)
    target = target * 0  # no labels: only the image tells what happened
    changes = {name: 0.5}
    if name == "rotate_scale":
        changes["max_rotation_deg"] = 90
    out, _ = _run(_only(**changes), image, target)
    changed = (out - image).flatten(1).abs().amax(1) > 1e-6
    expected = 200 * (1 - 0.5**3 if name == "flip" else 0.5)  # flip: per axis
    assert abs(int(changed.sum()) - expected) < 30, int(changed.sum())
    for p in (0.0, 1.0):
        out, _ = _run(_only(**{**changes, name: p}), image, target)
        changed = (out - image).flatten(1).abs().amax(1) > 1e-6
        assert int(changed.sum()) == (0 if p == 0 else 200)


def test_a_seed_fixes_the_augmentation() -> None:
    cfg = load_config("tiny-cpu").augment
    always = {k: 1.0 for k in ("rotate_scale", "elastic", *INTENSITY)}
    cfg = dataclasses.replace(cfg, **{**always, "sharpen": 0.5})
    image, target = _batch(b=3)
    a = _run(cfg, image, target, seed=11)
    b = _run(cfg, image, target, seed=11)
    c = _run(cfg, image, target, seed=12)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_every_augment_field_has_a_rule_and_the_preset_randomises() -> None:
    allowed = rules()
    for field in dataclasses.fields(AugmentConfig):
        assert f"augment.{field.name}" in allowed
        assert "rule" in field.metadata
    tiny = load_config("tiny-cpu").augment
    assert tiny.bias_field > 0 and tiny.low_resolution > 0 and tiny.elastic > 0
    assert tiny.max_rotation_deg >= 20 and tiny.remap > 0


@pytest.mark.parametrize("override, message", [
    ("augment.elastic=1.5", "augment.elastic must be a number >= 0 and <= 1, got 1.5"),
    ("augment.bias_field=-0.1", "augment.bias_field must be a number >= 0 and <= 1"),
    ("augment.elastic_vox=-1", "augment.elastic_vox must be a number >= 0 and <= 32 voxels"),
    ("augment.bias_field_strength=3", "augment.bias_field_strength must be a number >= 0 "
                                      "and <= 2, got 3"),
    ("augment.low_resolution_factor=[0.5, 2]", "each >= 1 and <= 8"),
    ("augment.blur_sigma_vox=[1]", "a list of 2 numbers"),
    ("augment.gamma_range=[0, 1]", "each > 0"),
    ("augment.noise_sigma=.nan", "augment.noise_sigma must be a number >= 0"),
])
def test_bad_values_are_refused_by_name(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config("tiny-cpu", overrides=[override])


@pytest.mark.parametrize("name", AUGMENT_RANGES)
def test_ranges_must_be_min_then_max(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"augment\.{name} must be \[min, max\] with "
                                          r"min <= max, got \[2.5, 1.5\]"):
        load_config("tiny-cpu", overrides=[f"augment.{name}=[2.5, 1.5]"])
