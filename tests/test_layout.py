"""The memory layout networks run in: channels-last for 3-D on the CPU (measured faster there,
bench_train), as built otherwise; same outputs either way, training and prediction alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from builders import TINY, train_tiny

from tumorscope.core.config import load_config
from tumorscope.core.models import build_model
from tumorscope.core.models.unet import run_format
from tumorscope.core.prediction.predict import predict_run
from tumorscope.core.training.train import _build_state

CPU = torch.device("cpu")


def test_channels_last_only_where_it_was_measured_faster() -> None:
    assert run_format(3, CPU, channels_last=True) == torch.channels_last_3d
    assert run_format(3, CPU, channels_last=False) is None
    assert run_format(2, CPU, channels_last=True) is None  # 2-D on the CPU: not measured
    assert run_format(2, torch.device("cuda"), channels_last=True) == torch.channels_last


@pytest.mark.parametrize("flag, expected", [("true", True), ("false", False)])
def test_training_state_follows_train_channels_last(flag: str, expected: bool) -> None:
    cfg = load_config("tiny-cpu", overrides=[*TINY, f"train.channels_last={flag}"])
    state, _ = _build_state(cfg, CPU)
    # 3x3x3 kernels (a 1x1x1 kernel's strides are both layouts at once)
    weights = [p for p in state.model.parameters() if p.ndim == 5 and p.shape[-1] > 1]
    assert weights and all(
        p.is_contiguous(memory_format=torch.channels_last_3d) == expected for p in weights)


def test_channels_last_gives_the_contiguous_network_s_logits() -> None:
    torch.manual_seed(0)
    net = build_model({"features": [4, 8, 16]}).eval()
    x = torch.randn(2, 4, 24, 24, 24)
    with torch.no_grad():
        plain = net(x)
        fast = net.to(memory_format=torch.channels_last_3d)(
            x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(fast.contiguous(), plain, atol=1e-5, rtol=1e-5)


def test_prediction_is_the_same_labels_in_both_layouts(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    import nibabel as nib

    run, data, cache = train_tiny(tmp_path_factory, "layout", overrides=["train.amp=off"])
    ckpt = run.checkpoint_path("best")
    payload = torch.load(ckpt, weights_only=False)
    payload["config"]["train"]["channels_last"] = False
    plain_ckpt = ckpt.with_name("plain.pt")
    torch.save(payload, plain_ckpt)
    out = tmp_path_factory.mktemp("layout-out")
    import tumorscope.core.prediction.predict as predict_module

    chosen: list[object] = []

    def spy(*args: object, **kwargs: object) -> object:
        chosen.append(run_format(*args, **kwargs))
        return chosen[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(predict_module, "run_format", spy)
        fast = predict_run(ckpt, data, out / "fast", cache_dir=cache, progress=False,
                           postprocess="off")
    assert chosen == [torch.channels_last_3d]  # the checkpoint's channels_last, on the CPU
    plain = predict_run(plain_ckpt, data, out / "plain", cache_dir=cache, progress=False,
                        postprocess="off")
    assert fast.predicted and sorted(fast.predicted) == sorted(plain.predicted)
    for case_id in fast.predicted:
        a = np.asarray(nib.load(fast.run.prediction_path(case_id)).dataobj)
        b = np.asarray(nib.load(plain.run.prediction_path(case_id)).dataobj)
        assert (a == b).mean() > 0.999
