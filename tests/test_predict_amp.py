"""predict --amp: the inference's autocast chosen at predict time, recorded, and checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from builders import train_tiny

from tumorscope.app.cli import main
from tumorscope.core.errors import ConfigError
from tumorscope.core.prediction.predict import predict_run
from tumorscope.core.prediction.sliding_window import sliding_window_logits
from tumorscope.core.store import Run


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path, Path]:
    return train_tiny(tmp_path_factory, "amp")


def test_predict_amp_is_recorded_and_a_change_re_predicts(
        trained: tuple[Run, Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run, root, cache = trained
    ckpt, out = run.checkpoint_path("best"), tmp_path / "pred"
    base = ["predict", "--checkpoint", str(ckpt), "--input", str(root), "--out", str(out),
            "--cache", str(cache), "-q"]
    assert main([*base, "--amp", "off"]) == 0
    autocasts = {r["provenance"]["settings"]["autocast"] for r in Run(out).cases().values()}
    assert autocasts == {"off"}
    capsys.readouterr()
    # One run holds one model's predictions: another autocast is refused, and says so.
    assert main([*base, "--amp", "bf16"]) != 0
    said = capsys.readouterr().err
    assert "autocast off, post" in said and "autocast bfloat16, post" in said, said
    assert main([*base, "--amp", "bf16", "--force"]) == 0
    assert "reused 0, predicted 3" in capsys.readouterr().out
    autocasts = {r["provenance"]["settings"]["autocast"] for r in Run(out).cases().values()}
    assert autocasts == {"bfloat16"}
    with pytest.raises(ConfigError, match=r"amp must be one of .*'half'"):
        predict_run(ckpt, root, out, cache_dir=cache, amp="half", progress=False)


def test_windows_at_once_are_capped_on_the_cpu_without_changing_the_logits() -> None:
    seen: list[int] = []

    def net(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return x[:, :1] * 2.0

    image = torch.randn(1, 40, 40, 40)
    kwargs = dict(roi_size_vox=(32, 32, 32), overlap=0.5, device="cpu")
    few = sliding_window_logits(net, image, batch_windows=1, **kwargs)
    assert set(seen) == {1}
    seen.clear()
    many = sliding_window_logits(net, image, batch_windows=8, **kwargs)
    # 8 windows of 32^3 fit the CPU's budget (128^3 voxels): one batch of all 8.
    assert seen == [8]
    torch.testing.assert_close(few, many)
    seen.clear()
    sliding_window_logits(net, torch.randn(1, 130, 130, 130), batch_windows=4,
                          roi_size_vox=(128, 128, 128), overlap=0.5, device="cpu")
    assert set(seen) == {1} and len(seen) == 8
