"""Training augmentations on batched tensors: flips, rotation/scale, intensity, gamma, noise."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tumorscope.core.config import AugmentConfig


def _rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) angles in radians about i, j, k -> (B, 3, 3) rotation matrices."""
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], 1)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], 1)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], 1)
    return rx.view(-1, 3, 3) @ ry.view(-1, 3, 3) @ rz.view(-1, 3, 3)


def augment_batch(
    image: torch.Tensor, target: torch.Tensor, cfg: AugmentConfig, *,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment ``image`` (B, C, X, Y, Z) and its region ``target`` (B, K, X, Y, Z) together.

    Spatial transforms (flip, rotation + scaling through one ``grid_sample``) move image
    and target alike; intensity transforms touch the image only. Probabilities and ranges
    come from ``cfg``; all randomness from ``generator`` so a run is reproducible.
    """
    b = image.shape[0]
    dev = image.device

    def draw(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator).to(dev)

    for axis in range(3):
        flip = draw(b) < cfg.flip
        if flip.any():
            image[flip] = image[flip].flip(axis + 2)
            target[flip] = target[flip].flip(axis + 2)

    spatial = draw(b) < cfg.rotate_scale
    if spatial.any():
        n = int(spatial.sum())
        max_rad = math.radians(cfg.max_rotation_deg)
        angles = (draw(n, 3) * 2 - 1) * max_rad
        lo, hi = cfg.scale_range
        scale = lo + draw(n, 1, 1) * (hi - lo)
        theta = torch.zeros(n, 3, 4, device=dev)
        theta[:, :, :3] = _rotation_matrices(angles) / scale
        grid = F.affine_grid(theta, list(image[spatial].shape), align_corners=False)
        image[spatial] = F.grid_sample(image[spatial], grid, mode="bilinear",
                                       padding_mode="zeros", align_corners=False)
        warped = F.grid_sample(target[spatial].float(), grid, mode="bilinear",
                               padding_mode="zeros", align_corners=False)
        target[spatial] = (warped > 0.5).to(target.dtype)

    c = image.shape[1]
    inten = (draw(b, 1, 1, 1, 1) < cfg.intensity).float()
    factor = 1 + inten * (draw(b, c, 1, 1, 1) * 0.4 - 0.2)
    shift = inten * (draw(b, c, 1, 1, 1) * 0.4 - 0.2)
    image = image * factor + shift

    gamma_on = draw(b) < cfg.gamma
    if gamma_on.any():
        sub = image[gamma_on]
        gamma = (0.7 + draw(int(gamma_on.sum()), 1, 1, 1, 1) * 0.8)
        lo = sub.amin(dim=(2, 3, 4), keepdim=True)
        span = (sub.amax(dim=(2, 3, 4), keepdim=True) - lo).clamp_min(1e-6)
        image[gamma_on] = ((sub - lo) / span).pow(gamma) * span + lo

    noise_on = (draw(b, 1, 1, 1, 1) < cfg.noise).float()
    if noise_on.any():
        sigma = draw(b, 1, 1, 1, 1) * 0.1
        noise = torch.randn(image.shape, generator=generator).to(dev)
        image = image + noise_on * sigma * noise
    return image, target
