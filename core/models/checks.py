"""Checks of a config's model and loss options against the model code, before any work starts.

They live here, beside the models, because checking an architecture or a loss needs their
code (and torch); :mod:`tumorscope.core.config` checks every other key without it.
"""

from __future__ import annotations

import math
from pathlib import Path

from tumorscope.core.config import Config, show
from tumorscope.core.errors import ConfigError
from tumorscope.core.models.losses import check_loss_options, check_loss_terms
from tumorscope.core.models.unet import UNetConfig


def check_model(cfg: Config) -> Config:
    """Check ``cfg.model`` as a :class:`UNetConfig` and that ``data.patch_size_vox`` fits a
    3-D one (a multiple of 2 ** (depth - 1), more than one bottleneck voxel under instance
    norm), and that an ``encoder_weights_path`` is a file; normalises ``cfg.model`` in place
    and returns ``cfg``."""
    if not isinstance(cfg.model, dict):
        raise ConfigError(f"section 'model' must be a mapping, got {show(cfg.model)}")
    unet = UNetConfig.from_dict(cfg.model, key="model")
    plain = {**unet.to_dict(), "encoder_weights_path": unet.encoder_weights_path}
    cfg.model = {k: plain[k] for k in cfg.model}
    weights = unet.encoder_weights_path
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"model.encoder_weights_path must be a file holding a state dict of "
                          f"the {unet.encoder} encoder, got {show(weights)}: no such file")
    if unet.spatial_dims != 3:
        return cfg  # data.patch_size_vox sizes 3-D patches; 2-D inputs are checked per batch
    patch, divisor = cfg.data.patch_size_vox, unet.size_divisor
    if any(p % divisor for p in patch):
        raise ConfigError(
            f"data.patch_size_vox must be multiples of {divisor} (2 ** (depth - 1) for "
            f"model.features {list(unet.features)}), got {show(patch)}")
    if unet.norm == "instance" and math.prod(p // divisor for p in patch) < 2:
        raise ConfigError(
            f"data.patch_size_vox {show(patch)} leaves a single bottleneck voxel for "
            f"model.features {list(unet.features)}, which instance norm cannot normalise; "
            f"make one axis at least {2 * divisor}")
    return cfg


def check_loss(cfg: Config) -> Config:
    """Check ``loss.name`` and ``loss.options`` against the loss classes, or with
    ``loss.terms`` each term's name, weight and options; normalises them and returns ``cfg``."""
    if cfg.loss.terms:
        cfg.loss.terms, cfg.loss.options = check_loss_terms(
            cfg.loss.terms, cfg.loss.options, key="loss")
    else:
        cfg.loss.options = check_loss_options(cfg.loss.name, cfg.loss.options, key="loss")
    return cfg


def check_model_and_loss(cfg: Config) -> Config:
    """:func:`check_model` then :func:`check_loss`; errors name the key; returns ``cfg``."""
    return check_loss(check_model(cfg))
