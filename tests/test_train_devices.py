"""Device and precision choices: CUDA paths' logic checked on CPU, and a real CUDA run when
a GPU is present (skipped cleanly without one)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from builders import write_case

from tumorscope.core.config import load_config
from tumorscope.core.errors import ConfigError
from tumorscope.core.training.train import autocast_dtype, lr_factor, resolve_device, train

SHAPE = (36, 36, 28)


def test_autocast_choice_per_device() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None
    assert autocast_dtype("auto", cuda) is torch.bfloat16
    assert autocast_dtype("fp16", cuda) is torch.float16
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("off", cuda) is None


def test_device_resolution() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_schedules_end_at_zero_and_warm_up() -> None:
    assert lr_factor(100, total_steps=100, schedule="poly") == 0
    assert lr_factor(100, total_steps=100, schedule="cosine") == pytest.approx(0)
    assert lr_factor(0, total_steps=100, schedule="poly", warmup_steps=10) == pytest.approx(0.1)
    assert lr_factor(50, total_steps=100, schedule="constant") == 1.0


def _tiny(tmp_path: Path, *extra: str):
    data = tmp_path / "data"
    for i in range(3):
        write_case(data, f"BraTS2021_{i:05d}", shape=SHAPE, seed=i)
    return load_config("tiny-cpu", overrides=[
        "model.features=[4, 8, 16]", "data.patch_size_vox=16", "data.spacing_mm=null",
        "train.epochs=1", "train.steps_per_epoch=2", f"data.root={data}",
        f"data.cache_dir={tmp_path / 'cache'}", *extra])


def test_bf16_autocast_and_ema_train_on_cpu(tmp_path: Path) -> None:
    cfg = _tiny(tmp_path, "train.amp=bf16", "train.ema=0.9", "optim.name=sgd")
    run = train(cfg, tmp_path / "run", progress=False)
    ckpt = torch.load(run.checkpoint_path("last"), weights_only=False)
    assert ckpt["ema"] is not None
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_with_autocast_and_channels_last(tmp_path: Path) -> None:
    cfg = _tiny(tmp_path, "train.device=cuda", "train.amp=auto", "data.num_workers=2")
    run = train(cfg, tmp_path / "run", progress=False)
    assert run.log_rows()[0]["voxels_per_s"] > 0


def test_fp16_trains_with_a_gradient_scaler_that_resumes(tmp_path: Path) -> None:
    """fp16 autocast needs loss scaling (its gradients underflow otherwise); bf16 none. The
    scaler's state is in the checkpoint and comes back on resume."""
    from tumorscope.core.training.train import _build_state

    cfg = _tiny(tmp_path, "train.amp=fp16")
    assert _build_state(cfg, torch.device("cpu"), torch.float16)[0].scaler is not None
    assert _build_state(cfg, torch.device("cpu"), torch.bfloat16)[0].scaler is None
    assert _build_state(cfg, torch.device("cpu"), None)[0].scaler is None
    run = train(cfg, tmp_path / "run", progress=False)
    ckpt = torch.load(run.checkpoint_path("last"), weights_only=False)
    assert ckpt["scaler"] is not None and ckpt["scaler"]["scale"] > 0
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    more = _tiny(tmp_path, "train.amp=fp16", "train.epochs=2")
    resumed = train(more, tmp_path / "run", resume=True, progress=False)
    again = torch.load(resumed.checkpoint_path("last"), weights_only=False)
    assert again["step"] == 4 and again["scaler"]["scale"] > 0
    bf16 = train(_tiny(tmp_path, "train.amp=bf16"), tmp_path / "bf16", progress=False)
    assert torch.load(bf16.checkpoint_path("last"), weights_only=False)["scaler"] is None
