"""Tests of the model family: 2-D / 3-D, attention gates, UNet++ and pruning, the class head,
the smp EfficientNet-B0 network, checkpoints of every option and their config errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tumorscope.core.config import Config, LossConfig, config_from_dict
from tumorscope.core.errors import ConfigError
from tumorscope.core.models.blocks import AttentionGate
from tumorscope.core.models.checkpoints import load_model, save_checkpoint
from tumorscope.core.models.checks import check_model_and_loss
from tumorscope.core.models.losses import build_loss, class_cross_entropy
from tumorscope.core.models.unet import (
    UNet,
    UNetConfig,
    build_model,
    count_parameters,
    split_output,
)

FEATURES = (4, 8, 16)
SIZES = {2: (32, 32), 3: (16, 16, 16)}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def family(**options: object) -> UNetConfig:
    return UNetConfig(**{"features": FEATURES, **options})  # type: ignore[arg-type]


def segmentations(output: object) -> list[torch.Tensor]:
    segmentation, _ = split_output(output)  # type: ignore[arg-type]
    return segmentation if isinstance(segmentation, list) else [segmentation]


@pytest.mark.parametrize("deep_supervision", [False, True], ids=["single", "ds"])
@pytest.mark.parametrize("classes", [0, 3], ids=["seg", "cls3"])
@pytest.mark.parametrize("gates", [False, True], ids=["plain", "gates"])
@pytest.mark.parametrize("architecture", ["unet", "unetpp"])
@pytest.mark.parametrize("dims", [2, 3], ids=["2d", "3d"])
def test_forward_follows_the_output_contract(dims: int, architecture: str, gates: bool,
                                             classes: int, deep_supervision: bool) -> None:
    cfg = family(spatial_dims=dims, architecture=architecture, attention_gates=gates,
                 classes=classes, deep_supervision=deep_supervision)
    net = build_model(cfg)
    size = SIZES[dims]
    x = torch.randn(2, 4, *size)

    out = net.train()(x)
    assert isinstance(out, tuple) == (classes > 0)
    segmentation, logits = split_output(out)
    if deep_supervision:
        assert isinstance(segmentation, list) and len(segmentation) == cfg.num_outputs == 2
        # UNet: full resolution then 1/2; UNet++: every top-row output at full resolution.
        second = size if architecture == "unetpp" else tuple(s // 2 for s in size)
        assert [tuple(s.shape) for s in segmentation] == [(2, 3, *size), (2, 3, *second)]
    else:
        assert isinstance(segmentation, torch.Tensor)
        assert segmentation.shape == (2, 3, *size)
    if classes:
        assert logits is not None and logits.shape == (2, classes)
    else:
        assert logits is None

    with torch.no_grad():
        segmentation, logits = split_output(net.eval()(x))
    assert isinstance(segmentation, torch.Tensor) and segmentation.shape == (2, 3, *size)
    assert torch.isfinite(segmentation).all()
    assert (logits is None) == (classes == 0)


@pytest.mark.parametrize("dims", [2, 3])
def test_the_same_class_builds_2d_or_3d_layers(dims: int) -> None:
    net = build_model(family(spatial_dims=dims, architecture="unetpp", attention_gates=True,
                             upsample="trilinear", residual=True, classes=2))
    assert type(net) is UNet
    convs = {type(m) for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd)}
    norms = {type(m).__name__ for m in net.modules() if "Norm" in type(m).__name__}
    assert convs == ({nn.Conv2d} if dims == 2 else {nn.Conv3d})
    assert norms == {f"InstanceNorm{dims}d"}
    with pytest.raises(ConfigError, match=r"\(N, 4, H, W\)" if dims == 2 else r"X, Y, Z"):
        net(torch.zeros(1, 4, *([16] * (5 - dims))))  # the other dimensionality


@pytest.mark.parametrize("architecture", ["unet", "unetpp"])
def test_every_new_parameter_gets_a_gradient(architecture: str) -> None:
    cfg = family(spatial_dims=2, architecture=architecture, attention_gates=True, classes=2,
                 deep_supervision=True, attention=True)
    net = build_model(cfg).train()
    loss_fn = build_loss(LossConfig(), cfg)
    loss_fn(net(torch.randn(2, 4, 32, 32)), (torch.rand(2, 3, 32, 32) > 0.5).float(),
            torch.tensor([0, 1])).backward()
    assert [n for n, p in net.named_parameters() if p.grad is None] == []
    assert any(n.startswith("gates.") for n, _ in net.named_parameters())
    assert any(n.startswith("classifier.") for n, _ in net.named_parameters())


def test_attention_gate_weights_the_skip_from_the_gating_signal() -> None:
    gate = AttentionGate(4, 8, spatial_dims=2)
    skip, g = torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4)
    alpha = gate.attention(skip, g)
    assert alpha.shape == (2, 1, 8, 8)
    assert bool(((alpha > 0) & (alpha < 1)).all())
    torch.testing.assert_close(gate(skip, g), skip * alpha)
    assert not torch.allclose(gate.attention(skip, 3 * g), alpha)  # g steers the weights


def test_gates_change_the_network_only_where_asked() -> None:
    plain, gated = family(spatial_dims=2), family(spatial_dims=2, attention_gates=True)
    a, b = build_model(plain).state_dict(), build_model(gated).state_dict()
    assert set(a) < set(b)
    assert {k.split(".")[0] for k in set(b) - set(a)} == {"gates"}


def test_unetpp_pruning_levels_give_the_sub_network_outputs() -> None:
    cfg = family(features=(4, 8, 16, 32), spatial_dims=2, architecture="unetpp",
                 deep_supervision=True)
    full = build_model(cfg)
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        supervised = full.train()(x)  # [X0,3, X0,2, X0,1]; instance norm: as in eval
    outputs = {}
    for level in (1, 2, 3):
        net = build_model(dataclasses.replace(cfg, prune_level=level))
        net.load_state_dict(full.state_dict())
        calls: list[str] = []
        for name, module in net.decoders.items():
            module.register_forward_hook(lambda *_, name=name, calls=calls: calls.append(name))
        with torch.no_grad():
            outputs[level] = net.eval()(x)
        assert outputs[level].shape == (2, 3, 32, 32)
        # Only the nodes X[i, j] with i + j <= level run: level * (level + 1) / 2 of them.
        assert len(calls) == level * (level + 1) // 2
        torch.testing.assert_close(outputs[level], supervised[3 - level])
    assert not torch.allclose(outputs[1], outputs[2])
    assert not torch.allclose(outputs[2], outputs[3])
    with torch.no_grad():  # the default is the deepest node
        torch.testing.assert_close(full.eval()(x), outputs[3])


def test_pruned_unetpp_with_a_class_head_still_reads_the_bottleneck() -> None:
    cfg = family(spatial_dims=2, architecture="unetpp", deep_supervision=True, classes=2)
    full = build_model(cfg)
    pruned = build_model(dataclasses.replace(cfg, prune_level=1))
    pruned.load_state_dict(full.state_dict())
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        (_, full_logits), (seg, logits) = full.eval()(x), pruned.eval()(x)
    assert seg.shape == (2, 3, 32, 32)
    torch.testing.assert_close(logits, full_logits)


def toy_multitask_batch(n: int = 8, size: int = 32) -> tuple[torch.Tensor, ...]:
    """2-D images with one square tumour each; its class shows as which channel is bright."""
    g = torch.Generator().manual_seed(1)
    image = 0.3 * torch.randn(n, 4, size, size, generator=g)
    target = torch.zeros(n, 3, size, size)
    labels = torch.arange(n) % 2
    for k in range(n):
        side = int(torch.randint(8, 13, (1,), generator=g))
        r, c = (int(v) for v in torch.randint(0, size - side, (2,), generator=g))
        target[k, :, r:r + side, c:c + side] = 1.0
        image[k, 0, r:r + side, c:c + side] += 1.0
        image[k, 1 + int(labels[k]), r:r + side, c:c + side] += 1.5
    return image, target, labels


def test_a_few_steps_learn_segmentation_and_classification_together() -> None:
    image, target, labels = toy_multitask_batch()
    cfg = family(spatial_dims=2, classes=2, attention_gates=True)
    net = build_model(cfg).train()
    loss_fn = build_loss(LossConfig(class_weight=1.0), cfg)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)

    def parts() -> tuple[float, float]:
        with torch.no_grad():
            seg, logits = net(image)
            return (float(loss_fn.segmentation(seg, target)),
                    float(class_cross_entropy(logits, labels)))

    seg_first, ce_first = parts()
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = loss_fn(net(image), target, labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    seg_last, ce_last = parts()
    assert losses[0] == pytest.approx(seg_first + ce_first, rel=1e-4)
    assert losses[-1] < 0.75 * losses[0], losses
    assert seg_last < 0.85 * seg_first, (seg_first, seg_last)
    assert ce_last < 0.7 * ce_first, (ce_first, ce_last)


def _save(path: Path, cfg: UNetConfig, net: nn.Module, model_config: dict | None = None) -> Path:
    plain = cfg.to_dict() if model_config is None else model_config
    save_checkpoint(path, {"model_config": plain, "model": net.state_dict(),
                           "config": Config(model=dict(plain)).to_dict()})
    return path


def _same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        (seg_a, cls_a), (seg_b, cls_b) = split_output(a.eval()(x)), split_output(b.eval()(x))
    torch.testing.assert_close(seg_a, seg_b)
    assert (cls_a is None) == (cls_b is None)
    if cls_a is not None:
        torch.testing.assert_close(cls_a, cls_b)


ROUND_TRIPS = [
    pytest.param({"spatial_dims": 2, "attention_gates": True, "classes": 3,
                  "class_hidden": 12, "class_dropout": 0.3}, id="2d-gates-class-head"),
    pytest.param({"spatial_dims": 2, "architecture": "unetpp", "deep_supervision": True,
                  "prune_level": 1, "upsample": "trilinear"}, id="2d-unetpp-pruned"),
    pytest.param({"spatial_dims": 3, "architecture": "unetpp", "attention_gates": True,
                  "classes": 2, "residual": True, "norm": "group", "num_groups": 4},
                 id="3d-unetpp-gates-class-head"),
]


@pytest.mark.parametrize("options", ROUND_TRIPS)
def test_checkpoint_round_trip_of_every_new_option(tmp_path: Path, options: dict) -> None:
    cfg = family(**options)
    net = build_model(cfg)
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    loaded = load_model(_save(tmp_path / "ckpt.pt", cfg, net))
    assert loaded.model.config == cfg
    _same_outputs(net, loaded.model, torch.randn(2, 4, *SIZES[cfg.spatial_dims]))


def test_a_checkpoint_written_before_the_new_options_loads_as_3d(tmp_path: Path) -> None:
    cfg = UNetConfig.tiny()
    net = build_model(cfg)
    new = ("spatial_dims", "architecture", "attention_gates", "prune_level", "classes",
           "class_hidden", "class_dropout", "encoder", "encoder_weights_path")
    old = {k: v for k, v in cfg.to_dict().items() if k not in new}
    loaded = load_model(_save(tmp_path / "old.pt", cfg, net, model_config=old))
    assert loaded.model.config == cfg and loaded.model.config.spatial_dims == 3
    _same_outputs(net, loaded.model, torch.randn(1, 4, 16, 16, 16))


MODEL_FAULTS = [
    ({"spatial_dims": 4}, "model.spatial_dims", "4"),
    ({"spatial_dims": 2.0}, "model.spatial_dims", "2.0"),
    ({"architecture": "unet3+"}, "model.architecture", "'unet3+'"),
    ({"attention_gates": "yes"}, "model.attention_gates", "'yes'"),
    ({"architecture": "unetpp", "deep_supervision": True, "prune_level": 0},
     "model.prune_level", "0"),
    ({"architecture": "unetpp", "deep_supervision": True, "prune_level": 3},
     "model.prune_level", "3"),
    ({"prune_level": 1}, "model.prune_level", "'unet'"),
    ({"architecture": "unetpp", "prune_level": 1}, "model.prune_level", "deep_supervision"),
    ({"architecture": "unetpp", "deep_supervision": True, "deep_supervision_heads": 1},
     "model.deep_supervision_heads", "1"),
    ({"classes": 1}, "model.classes", "1"),
    ({"classes": -2}, "model.classes", "-2"),
    ({"classes": True}, "model.classes", "True"),
    ({"classes": 2, "class_hidden": 0}, "model.class_hidden", "0"),
    ({"classes": 2, "class_dropout": 1.0}, "model.class_dropout", "1.0"),
    ({"encoder": "resnet50"}, "model.encoder", "'resnet50'"),
    ({"encoder_weights_path": "w.pt"}, "model.encoder_weights_path", "'w.pt'"),
    ({"encoder": "efficientnet-b0"}, "model.spatial_dims", "3"),
    ({"encoder": "efficientnet-b0", "spatial_dims": 2, "norm": "batch"}, "model.norm",
     "'batch'"),
    ({"encoder": "efficientnet-b0", "spatial_dims": 2, "features": [8, 16]},
     "model.features", "(8, 16)"),
    ({"encoder": "efficientnet-b0", "spatial_dims": 2, "deep_supervision": True},
     "model.deep_supervision", "True"),
]


@pytest.mark.parametrize(("options", "key", "shown"), MODEL_FAULTS)
def test_model_faults_are_one_line_naming_the_key(options: dict, key: str, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        base = {} if "encoder" in options else {"features": list(FEATURES)}
        UNetConfig.from_dict({**base, **options}, key="model")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(key), message
    assert shown in message, message


def test_check_model_accepts_a_2d_model_and_names_a_missing_weights_file(tmp_path: Path) -> None:
    raw = {"model": {"features": [4, 8, 16], "spatial_dims": 2, "architecture": "unetpp",
                     "classes": 3}, "data": {"patch_size_vox": [20, 20, 20]}}
    cfg = check_model_and_loss(config_from_dict(raw))  # a 3-D patch size is not its concern
    assert cfg.model["spatial_dims"] == 2
    missing = str(tmp_path / "nowhere.pt")
    raw["model"] = {"encoder": "efficientnet-b0", "spatial_dims": 2,
                    "encoder_weights_path": missing}
    with pytest.raises(ConfigError, match="model.encoder_weights_path") as info:
        check_model_and_loss(config_from_dict(raw))
    assert missing in str(info.value) and "\n" not in str(info.value)


def test_importing_the_models_does_not_import_smp() -> None:
    code = ("import sys, tumorscope.core.models, tumorscope.core.models.smp_models; "
            "print('segmentation_models_pytorch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr[-2000:]


# ---------------------------------------------------------------- smp EfficientNet-B0

EFFICIENTNET = {"encoder": "efficientnet-b0", "spatial_dims": 2}


@pytest.fixture(scope="module")
def smp_net() -> nn.Module:
    torch.manual_seed(0)
    return build_model(UNetConfig(**EFFICIENTNET, classes=3, class_dropout=0.2))


def test_smp_efficientnet_b0_with_aux_head_follows_the_contract(smp_net: nn.Module) -> None:
    x = torch.randn(2, 4, 32, 64)
    seg, logits = smp_net.train()(x)
    assert seg.shape == (2, 3, 32, 64) and logits.shape == (2, 3)
    with torch.no_grad():
        seg, logits = split_output(smp_net.eval()(x))
    assert seg.shape == (2, 3, 32, 64) and logits is not None and logits.shape == (2, 3)
    assert smp_net.config.size_divisor == 32
    with pytest.raises(ConfigError, match="multiple of 32"):
        smp_net(torch.zeros(1, 4, 48, 32))
    total = count_parameters(smp_net)
    assert total == sum(p.numel() for p in smp_net.net.parameters())
    encoder = sum(p.numel() for p in smp_net.net.encoder.parameters())
    for p in smp_net.net.encoder.parameters():
        p.requires_grad_(False)
    try:
        assert count_parameters(smp_net, trainable_only=True) == total - encoder
    finally:
        for p in smp_net.net.encoder.parameters():
            p.requires_grad_(True)


def test_smp_checkpoint_round_trip(tmp_path: Path, smp_net: nn.Module) -> None:
    cfg = smp_net.config
    loaded = load_model(_save(tmp_path / "smp.pt", cfg, smp_net))
    assert loaded.model.config == cfg
    _same_outputs(smp_net, loaded.model, torch.randn(2, 4, 32, 32))


def test_smp_unetpp_builds_without_a_head() -> None:
    net = build_model(UNetConfig(**EFFICIENTNET, architecture="unetpp")).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 4, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 32, 32)


def test_smp_encoder_weights_load_from_a_local_file(tmp_path: Path, smp_net: nn.Module) -> None:
    torch.manual_seed(1)
    donor = build_model(UNetConfig(**EFFICIENTNET)).net.encoder  # 4 input channels
    path = tmp_path / "encoder.pt"
    torch.save(donor.state_dict(), path)
    cfg = UNetConfig(**EFFICIENTNET, encoder_weights_path=str(path))
    net = build_model(cfg)
    got, want = net.net.encoder.state_dict(), donor.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert cfg.to_dict()["encoder_weights_path"] is None  # a checkpoint never reads it again

    torch.manual_seed(2)  # ImageNet-style weights: a 3-channel stem, adapted to 4 channels
    rgb = build_model(UNetConfig(**EFFICIENTNET, in_channels=3)).net.encoder
    torch.save(rgb.state_dict(), path)
    stem = build_model(cfg).net.encoder._conv_stem.weight
    source = rgb._conv_stem.weight.detach()
    torch.testing.assert_close(stem.detach(), source[:, [0, 1, 2, 0]] * 0.75)


@pytest.mark.parametrize("content", ["foreign", "not-torch"])
def test_smp_weights_that_do_not_fit_are_one_line_naming_the_file(
        tmp_path: Path, smp_net: nn.Module, content: str) -> None:
    path = tmp_path / "bad.pt"
    if content == "foreign":
        torch.save(nn.Linear(3, 2).state_dict(), path)
    else:
        path.write_text("no weights here")
    with pytest.raises(ConfigError) as info:
        build_model(UNetConfig(**EFFICIENTNET, encoder_weights_path=str(path)))
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "model.encoder_weights_path" in message
