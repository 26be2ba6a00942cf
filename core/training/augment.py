"""Training augmentations on batched 2-D or 3-D tensors: what real scans differ by, per sample."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tumorscope.core.config import AugmentConfig

ELASTIC_GRID_VOX = 12
"""Spacing of the elastic field's control points, in patch voxels (24 mm on a 2 mm grid)."""
BIAS_GRID = 3
"""Control points of the bias field per axis across a patch: one smooth bump or slope."""
REMAP_POINTS = 6
"""Control points of the random intensity curve, evenly spread over a channel's range."""
_LINEAR = {2: "bilinear", 3: "trilinear"}


def _spatial_axes(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


def _rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) angles in radians about i, j, k -> (B, 3, 3) rotation matrices; (B, 1) in-plane
    angles -> (B, 2, 2)."""
    c, s = torch.cos(angles), torch.sin(angles)
    if angles.shape[1] == 1:
        return torch.stack([c[:, 0], -s[:, 0], s[:, 0], c[:, 0]], 1).view(-1, 2, 2)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], 1)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], 1)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], 1)
    return rx.view(-1, 3, 3) @ ry.view(-1, 3, 3) @ rz.view(-1, 3, 3)


class _Draw:
    """Uniform and normal draws from one CPU generator, moved to the batch's device: the
    same seed gives the same augmentation on any device."""

    def __init__(self, generator: torch.Generator, device: torch.device) -> None:
        self.generator, self.device = generator, device

    def uniform(self, lo: float, hi: float, *shape: int) -> torch.Tensor:
        return (lo + torch.rand(*shape, generator=self.generator) * (hi - lo)).to(self.device)

    def normal(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator).to(self.device)

    def chosen(self, probability: float, n: int) -> torch.Tensor:
        """(n,) bool: which samples get a transform applied with ``probability``."""
        return self.uniform(0.0, 1.0, n) < probability


def _spatial(image: torch.Tensor, target: torch.Tensor, cfg: AugmentConfig, draw: _Draw
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation about every axis (in the plane in 2-D), isotropic or per-axis scaling and an
    elastic field, as one ``grid_sample`` of image (bilinear) and target (bilinear, then
    > 0.5) through one map."""
    b, dims = image.shape[0], image.ndim - 2
    rotate = draw.chosen(cfg.rotate_scale, b)
    elastic = draw.chosen(cfg.elastic, b) & (cfg.elastic_vox > 0)
    moved = rotate | elastic
    if not moved.any():
        return image, target
    n = int(moved.sum())
    max_rad = math.radians(cfg.max_rotation_deg)
    angles = draw.uniform(-max_rad, max_rad, n, 3 if dims == 3 else 1)
    lo, hi = cfg.scale_range
    scale = draw.uniform(lo, hi, n, 1).expand(n, dims).clone()
    per_axis = draw.chosen(cfg.anisotropic_scale, n)
    scale[per_axis] = draw.uniform(lo, hi, n, dims)[per_axis]
    keep = ~rotate[moved]  # elastic only: no rotation, no scaling
    angles[keep] = 0.0
    scale[keep] = 1.0
    theta = torch.zeros(n, dims, dims + 1, device=image.device)
    theta[:, :, :dims] = _rotation_matrices(angles) / scale[:, None, :]
    size = list(image[moved].shape)
    grid = F.affine_grid(theta, size, align_corners=False)
    spatial = size[2:]
    coarse = [max(2, math.ceil(s / ELASTIC_GRID_VOX) + 1) for s in spatial]
    field = draw.normal(n, dims, *coarse) * cfg.elastic_vox
    field *= elastic[moved].float().view(n, *[1] * (dims + 1))
    field = F.interpolate(field, size=spatial, mode=_LINEAR[dims], align_corners=True)
    # voxels -> normalised coordinates; grid's last axis runs over the spatial dims reversed
    per_vox = torch.tensor([2.0 / s for s in reversed(spatial)], device=image.device)
    grid = grid + field.permute(0, *range(2, dims + 2), 1) * per_vox
    image[moved] = F.grid_sample(image[moved], grid, mode="bilinear", padding_mode="zeros",
                                 align_corners=False)
    warped = F.grid_sample(target[moved].float(), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    target[moved] = (warped > 0.5).to(target.dtype)
    return image, target


def _gaussian_blur(x: torch.Tensor, sigma_vox: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, *spatial) blurred by a Gaussian of ``sigma_vox`` (N, dims) per sample and
    axis (separable, edges replicated)."""
    dims = x.ndim - 2
    conv = F.conv3d if dims == 3 else F.conv2d
    out = []
    for sample, sigmas in zip(x, sigma_vox, strict=True):
        y = sample[None]
        c = y.shape[1]
        for axis, sigma in enumerate(sigmas.tolist()):
            if sigma <= 0.05:
                continue
            radius = max(1, math.ceil(3 * sigma))
            t = torch.arange(-radius, radius + 1, dtype=y.dtype, device=y.device)
            kernel = torch.exp(-0.5 * (t / sigma) ** 2)
            kernel = (kernel / kernel.sum()).view([1, 1] + [len(t) if d == axis else 1
                                                            for d in range(dims)])
            pad = [0] * (2 * dims)
            pad[2 * (dims - 1 - axis)] = pad[2 * (dims - 1 - axis) + 1] = radius
            y = conv(F.pad(y, pad, mode="replicate"), kernel.expand(c, 1, *kernel.shape[2:]),
                     groups=c)
        out.append(y[0])
    return torch.stack(out)


def _remap(x: torch.Tensor, inside: torch.Tensor, strength: float, draw: _Draw
           ) -> torch.Tensor:
    """A random increasing piecewise-linear curve per sample and channel (as MONAI's
    ``RandHistogramShift``): tissues keep their order but not their spacing, so the contrast
    between any two changes. ``strength`` 0 keeps the identity, 1 a curve with uniformly
    random control points between the channel's lowest and highest brain value."""
    n, c = x.shape[:2]
    big = torch.finfo(x.dtype).max
    lo = torch.where(inside, x, big).amin(dim=_spatial_axes(x), keepdim=True)
    hi = torch.where(inside, x, -big).amax(dim=_spatial_axes(x), keepdim=True)
    span = (hi - lo).clamp_min(1e-6)
    ref = torch.linspace(0.0, 1.0, REMAP_POINTS, device=x.device)
    free = draw.uniform(0.0, 1.0, n, c, REMAP_POINTS - 2).sort(dim=2).values
    moved = torch.cat([ref[:1].expand(n, c, 1), free, ref[-1:].expand(n, c, 1)], dim=2)
    knots = (1 - strength) * ref + strength * moved  # (n, c, points), increasing
    u = ((x - lo) / span).clamp(0, 1).flatten(2) * (REMAP_POINTS - 1)
    i = u.floor().clamp_max(REMAP_POINTS - 2).long()
    left, right = knots.gather(2, i), knots.gather(2, i + 1)
    y = left + (u - i) * (right - left)
    return y.view_as(x) * span + lo


def _low_resolution(x: torch.Tensor, factors: torch.Tensor, axes: torch.Tensor
                    ) -> torch.Tensor:
    """Thick slices: each channel of ``x`` (N, C, *spatial) averaged over ``factors`` (N, C)
    voxels along its ``axes`` (N, C) and interpolated back, as a 2-D acquisition resampled
    onto a fine grid; a factor of 1 or less leaves its channel as it is. Each sequence of a
    session is acquired on its own, so each channel has its own slice axis."""
    out = x.clone()
    size = list(x.shape[2:])
    for s, c in (factors > 1).nonzero().tolist():
        axis = int(axes[s, c])
        low = list(size)
        low[axis] = max(2, round(size[axis] / float(factors[s, c])))
        y = F.interpolate(x[s, c][None, None], size=low, mode="area")
        out[s, c] = F.interpolate(y, size=size, mode=_LINEAR[len(size)],
                                  align_corners=False)[0, 0]
    return out


def augment_batch(
    image: torch.Tensor, target: torch.Tensor, cfg: AugmentConfig, *,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment ``image`` (B, C, X, Y, Z, z-scored, 0 outside the brain; or a 2-D slice batch
    (B, C, H, W)) and its region ``target`` (B, K, *spatial) together.

    Spatial transforms (flips; rotation about every axis with isotropic or per-axis scaling
    and an elastic field, through one ``grid_sample``) move image and target alike. Then,
    on the image only, per sample and per channel: a smooth multiplicative bias field (its
    log partly common to all channels with ``bias_field_shared``, as one coil's is),
    contrast and brightness, a random increasing intensity curve, gamma, Gaussian blur or
    unsharp-mask sharpening, thick slices along a random axis (per channel: each sequence
    has its own), and Gaussian noise.
    Intensity transforms leave the background 0, as preprocessing writes it.
    Probabilities (per sample) and ranges come from ``cfg``; every draw from ``generator``
    (on the CPU), so a seeded run is reproducible on any device. ``image`` and ``target``
    may be changed in place.

    >>> g = torch.Generator().manual_seed(0)
    >>> img, tgt = torch.randn(2, 4, 16, 16, 16), torch.zeros(2, 3, 16, 16, 16)
    >>> out, regions = augment_batch(img, tgt, AugmentConfig(), generator=g)
    >>> tuple(out.shape), tuple(regions.shape)
    ((2, 4, 16, 16, 16), (2, 3, 16, 16, 16))
    """
    b, c = image.shape[:2]
    dims = image.ndim - 2
    if dims not in (2, 3) or target.shape[0] != b or target.shape[2:] != image.shape[2:]:
        raise ValueError(f"augment_batch needs image (B, C, *spatial) with 2 or 3 spatial "
                         f"axes and a target of the same B and spatial size, got "
                         f"{tuple(image.shape)} and {tuple(target.shape)}")
    draw = _Draw(generator, image.device)
    axes_all = _spatial_axes(image)
    ones = [1] * dims

    for axis in range(dims):
        flip = draw.chosen(cfg.flip, b)
        if flip.any():
            image[flip] = image[flip].flip(axis + 2)
            target[flip] = target[flip].flip(axis + 2)
    image, target = _spatial(image, target, cfg, draw)

    brain = (image != 0).any(dim=1, keepdim=True)
    image = image.clone()

    def per_channel_floor(x: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        big = torch.finfo(x.dtype).max
        return torch.where(inside, x, big).amin(dim=axes_all, keepdim=True).clamp_max(0.0)

    on = draw.chosen(cfg.bias_field, b)
    if on.any():
        n = int(on.sum())
        strength = draw.uniform(0.0, cfg.bias_field_strength, n, c, *ones)
        coarse = draw.normal(n, c, *[BIAS_GRID] * dims)
        if cfg.bias_field_shared > 0:
            # Drawn only when asked, so a config without it keeps its seeded draws.
            common = draw.normal(n, 1, *[BIAS_GRID] * dims)
            share = cfg.bias_field_shared
            coarse = math.sqrt(share) * common + math.sqrt(1.0 - share) * coarse
        log_field = F.interpolate(coarse, size=list(image.shape[2:]), mode=_LINEAR[dims],
                                  align_corners=True) * strength
        sub = image[on]
        # A coil's field multiplies the signal, whose zero sits near the darkest tissue.
        floor = per_channel_floor(sub, brain[on])
        image[on] = (sub - floor) * torch.exp(log_field) + floor

    on = draw.chosen(cfg.intensity, b)
    if on.any():
        n = int(on.sum())
        factor = draw.uniform(*cfg.intensity_scale, n, c, *ones)
        shift = draw.uniform(-cfg.intensity_shift, cfg.intensity_shift, n, c, *ones)
        image[on] = image[on] * factor + shift

    on = draw.chosen(cfg.remap, b)
    if on.any():
        image[on] = _remap(image[on], brain[on], cfg.remap_strength, draw)

    on = draw.chosen(cfg.gamma, b)
    if on.any():
        sub = image[on]
        gamma = draw.uniform(*cfg.gamma_range, int(on.sum()), c, *ones)
        inside = brain[on]
        lo = per_channel_floor(sub, inside)
        hi = torch.where(inside, sub, -torch.finfo(sub.dtype).max).amax(dim=axes_all,
                                                                          keepdim=True)
        span = (hi - lo).clamp_min(1e-6)
        image[on] = ((sub - lo) / span).clamp(0, 1).pow(gamma) * span + lo

    blur = draw.chosen(cfg.blur, b)
    sharpen = draw.chosen(cfg.sharpen, b) & ~blur
    sigma = draw.uniform(*cfg.blur_sigma_vox, b, dims)
    amount = draw.uniform(*cfg.sharpen_amount, b, 1, *ones)
    if blur.any():
        image[blur] = _gaussian_blur(image[blur], sigma[blur])
    if sharpen.any():
        sub = image[sharpen]
        smooth = _gaussian_blur(sub, torch.ones(int(sharpen.sum()), dims, device=image.device))
        image[sharpen] = sub + amount[sharpen] * (sub - smooth)

    thick = draw.uniform(0.0, 1.0, b, c) < cfg.low_resolution  # per channel
    factors = draw.uniform(*cfg.low_resolution_factor, b, c) * thick
    axes = (draw.uniform(0.0, float(dims), b, c).floor().clamp_max(dims - 1)).long()
    if thick.any():
        image = _low_resolution(image, factors, axes)

    on = draw.chosen(cfg.noise, b)
    if on.any():
        n = int(on.sum())
        sigma_noise = draw.uniform(0.0, cfg.noise_sigma, n, 1, *ones)
        image[on] = image[on] + sigma_noise * draw.normal(n, *image.shape[1:])
    return image * brain, target
