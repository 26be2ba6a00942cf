"""Tests of the 3D UNet family: shapes per option, config round-trip, errors, training."""

from __future__ import annotations

import doctest
import json

import pytest
import torch

from tumorscope.core.errors import ConfigError
from tumorscope.core.models import (
    UNet,
    UNetConfig,
    build_model,
    count_parameters,
    doubling_features,
    logits_to_regions,
)
from tumorscope.core.models import blocks as blocks_module
from tumorscope.core.models import unet as unet_module
from tumorscope.core.models.losses import DeepSupervisionLoss, DiceBCELoss

SHAPE = (32, 16, 24)  # anisotropic on purpose; every size a multiple of 8 (depth <= 4)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def sphere_case(size: int = 32, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic (1, 4, S, S, S) image and its nested (1, 3, S, S, S) WT/TC/ET spheres."""
    g = torch.Generator().manual_seed(seed)
    ax = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    r = torch.sqrt(ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2)
    target = torch.stack([r < 11, r < 7, r < 4]).float()
    noise = 0.3 * torch.randn(4, size, size, size, generator=g)
    image = target.sum(0, keepdim=True).repeat(4, 1, 1, 1) + noise
    return image[None], target[None]


COMBINATIONS = [
    pytest.param({}, id="instance-leakyrelu-transpose"),
    pytest.param(
        {"norm": "group", "act": "gelu", "upsample": "trilinear", "residual": True},
        id="group-gelu-trilinear-residual",
    ),
    pytest.param(
        {"norm": "batch", "act": "relu", "attention": True, "dropout": 0.2},
        id="batch-relu-attention-dropout",
    ),
    pytest.param(
        {"norm": "group", "act": "gelu", "residual": True, "attention": True},
        id="group-gelu-residual-attention",
    ),
    pytest.param(
        {"deep_supervision": True, "upsample": "trilinear", "features": (8, 16, 32, 64)},
        id="deep-supervision-4-levels",
    ),
    pytest.param(
        {
            "norm": "group",
            "act": "gelu",
            "residual": True,
            "attention": True,
            "deep_supervision": True,
            "deep_supervision_heads": 1,
            "features": (8, 16, 32, 64),
        },
        id="everything-1-lower-head",
    ),
]


@pytest.mark.parametrize("options", COMBINATIONS)
def test_output_shapes(options: dict) -> None:
    cfg = UNetConfig.tiny(**options)
    net = build_model(cfg)
    x = torch.randn(2, 4, *SHAPE)

    net.train()
    out = net(x)
    if cfg.deep_supervision:
        assert isinstance(out, list)
        assert len(out) == 1 + cfg.num_lower_heads
        for level, head in enumerate(out):
            assert head.shape == (2, 3, *(s // 2**level for s in SHAPE))
    else:
        assert isinstance(out, torch.Tensor)
        assert out.shape == (2, 3, *SHAPE)

    net.eval()
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 3, *SHAPE)
    assert torch.isfinite(out).all()


def test_deep_supervision_heads_default_to_every_lower_level() -> None:
    assert UNetConfig.tiny(deep_supervision=True).num_lower_heads == 1
    assert UNetConfig.classic(deep_supervision=True).num_lower_heads == 3
    assert UNetConfig.classic().num_lower_heads == 0


def test_any_size_divisible_by_two_to_depth_minus_one() -> None:
    net = build_model(UNetConfig.tiny()).eval()  # depth 3: multiples of 4
    with torch.no_grad():
        assert net(torch.randn(1, 4, 8, 12, 20)).shape == (1, 3, 8, 12, 20)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((1, 4, 30, 32, 32), "30"),  # not a multiple of 4
        ((1, 4, 32, 32), "(N, 4, X, Y, Z)"),  # 4-D
        ((1, 2, 32, 32, 32), "(1, 2, 32, 32, 32)"),  # wrong channel count
        ((1, 4, 4, 4, 4), "single bottleneck voxel"),  # instance norm over one voxel
    ],
)
def test_bad_input_shape_raises_config_error(shape: tuple[int, ...], expected: str) -> None:
    net = build_model(UNetConfig.tiny()).eval()
    with pytest.raises(ConfigError) as info:
        net(torch.zeros(shape))
    assert expected in str(info.value)


def test_channels_last_3d_matches_contiguous() -> None:
    cfg = UNetConfig.tiny(residual=True, attention=True, upsample="trilinear", norm="group")
    net = build_model(cfg).eval()
    x = torch.randn(1, 4, *SHAPE)
    with torch.no_grad():
        ref = net(x)
        net_cl = net.to(memory_format=torch.channels_last_3d)
        out = net_cl(x.to(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def classic_parameter_formula(in_channels: int = 4, out_channels: int = 3) -> int:
    """Parameters of the plain 3D UNet 64..1024, counted by hand from the architecture."""
    f = (64, 128, 256, 512, 1024)
    total, cin = 0, in_channels
    for c in f:  # encoder stage: two bias-free 3^3 convs, two affine norms
        total += 27 * cin * c + 27 * c * c + 2 * 2 * c
        cin = c
    for i in range(3, -1, -1):  # 2^3 transposed conv with bias, then a stage on 2 * f[i]
        total += 8 * f[i + 1] * f[i] + f[i]
        total += 27 * 2 * f[i] * f[i] + 27 * f[i] * f[i] + 2 * 2 * f[i]
    return total + f[0] * out_channels + out_channels  # 1x1x1 head


def test_classic_config_builds_with_expected_parameter_count() -> None:
    cfg = UNetConfig.classic()
    assert cfg.features == (64, 128, 256, 512, 1024)
    assert cfg.size_divisor == 16
    net = build_model(cfg).eval()
    n = count_parameters(net)
    assert 85e6 < n < 95e6  # ~90 M: the 2-D UNet's 31 M with 3^3 instead of 3^2 kernels
    assert n == classic_parameter_formula()
    with torch.no_grad():  # smallest cheap input: the bottleneck keeps 2 x 1 x 1 voxels
        assert net(torch.randn(1, 4, 32, 16, 16)).shape == (1, 3, 32, 16, 16)


def test_tiny_config_is_small() -> None:
    n = count_parameters(build_model(UNetConfig.tiny()))
    assert 50_000 < n < 100_000


def test_count_parameters_trainable_only() -> None:
    net = build_model(UNetConfig.tiny())
    total = count_parameters(net)
    for p in net.encoders.parameters():
        p.requires_grad_(False)
    frozen = sum(p.numel() for p in net.encoders.parameters())
    assert count_parameters(net, trainable_only=True) == total - frozen
    assert count_parameters(net) == total


def test_doubling_features() -> None:
    assert doubling_features(8, depth=3) == (8, 16, 32)
    assert UNetConfig(features=doubling_features(64, depth=5)) == UNetConfig.classic()
    with pytest.raises(ConfigError):
        doubling_features(0, depth=3)


def test_config_round_trip_rebuilds_identical_network() -> None:
    cfg = UNetConfig.tiny(
        norm="group",
        act="gelu",
        upsample="trilinear",
        residual=True,
        attention=True,
        attention_heads=8,
        num_groups=4,
        dropout=0.1,
        deep_supervision=True,
        deep_supervision_heads=1,
    )
    stored = json.loads(json.dumps(cfg.to_dict()))  # what a checkpoint keeps
    assert stored["features"] == [8, 16, 32]
    assert UNetConfig.from_dict(stored) == cfg

    net, rebuilt = build_model(cfg), build_model(stored)
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    assert shapes == {k: v.shape for k, v in rebuilt.state_dict().items()}
    rebuilt.load_state_dict(net.state_dict())
    x = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), rebuilt.eval()(x))


def test_default_config_is_buildable_and_documented() -> None:
    net = UNet()
    assert net.config == UNetConfig()
    assert net.config.in_channels == 4 and net.config.out_channels == 3
    assert build_model(None).config == UNetConfig()


@pytest.mark.parametrize(
    ("options", "bad_value"),
    [
        ({"norm": "layer"}, "'layer'"),
        ({"act": "tanh"}, "'tanh'"),
        ({"upsample": "nearest"}, "'nearest'"),
        ({"features": (8,)}, "(8,)"),
        ({"features": (8, 0, 16)}, "0"),
        ({"features": "8,16"}, "'8,16'"),
        ({"dropout": 1.0}, "1.0"),
        ({"in_channels": 0}, "0"),
        ({"residual": "yes"}, "'yes'"),
        ({"norm": "group", "num_groups": 3}, "num_groups=3"),
        ({"attention": True, "attention_heads": 5}, "got 5"),
        ({"deep_supervision": True, "deep_supervision_heads": 2}, "got 2"),
        ({"deep_supervision": True, "features": (8, 16)}, "(8, 16)"),
    ],
)
def test_invalid_options_raise_config_error(options: dict, bad_value: str) -> None:
    with pytest.raises(ConfigError) as info:
        UNetConfig.tiny(**options)
    assert bad_value in str(info.value)


def test_choice_errors_list_allowed_values() -> None:
    with pytest.raises(ConfigError, match=r"\['instance', 'group', 'batch'\], got 'layer'"):
        UNetConfig(norm="layer")


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="depht"):
        UNetConfig.from_dict({"features": [8, 16, 32], "depht": 3})
    with pytest.raises(ConfigError, match="mapping"):
        build_model([8, 16, 32])  # type: ignore[arg-type]


def test_logits_to_regions() -> None:
    logits = torch.tensor([[-3.0, 0.0, 0.5, 3.0]])
    assert logits_to_regions(logits).tolist() == [[False, False, True, True]]
    assert logits_to_regions(logits, threshold=0.7).tolist() == [[False, False, False, True]]
    assert logits_to_regions(logits).dtype == torch.bool
    with pytest.raises(ConfigError, match="1.5"):
        logits_to_regions(logits, threshold=1.5)


def test_gradients_reach_every_parameter() -> None:
    cfg = UNetConfig.tiny(residual=True, attention=True, deep_supervision=True, norm="group")
    net = build_model(cfg).train()
    x, y = sphere_case(16)
    loss = DeepSupervisionLoss(DiceBCELoss())(net(x), y)
    loss.backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_few_adam_steps_reduce_dice_bce_on_a_sphere() -> None:
    x, y = sphere_case(32)
    net = build_model(UNetConfig.tiny(deep_supervision=True)).train()
    loss_fn = DeepSupervisionLoss(DiceBCELoss())
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.92 * losses[0], losses


@pytest.mark.parametrize("module", [blocks_module, unet_module])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("options", [{}, {"attention_gates": True}, {"residual": True}])
def test_inference_frees_each_decoder_input_once_used_and_changes_no_value(
        options: dict, channels_last: bool) -> None:
    """At inference a decoder stage runs layer by layer, so its joined input (skip and
    up-sampled features, the largest tensor of the pass) is freed as soon as the first
    layer has used it, and is laid out as the convolution's weights are; outputs are
    bit-identical to the module calls on torch.cat's join."""
    import weakref

    net = build_model(UNetConfig.tiny(**options)).eval()
    x = torch.randn(1, 4, *SHAPE)
    if channels_last:  # as predict runs on the CPU
        net = net.to(memory_format=torch.channels_last_3d)
        x = x.to(memory_format=torch.channels_last_3d)
    with torch.enable_grad():
        reference = net(x).detach()  # grad on: each stage called as a module
    decoder = net.decoders[-1]  # the full-resolution stage
    leaves = unet_module._layers(decoder)
    seen: dict[str, object] = {}

    def grab(module: torch.nn.Module, args: tuple) -> None:
        seen["input"] = weakref.ref(args[0])
        seen["channels last"] = not args[0].is_contiguous()

    def check(module: torch.nn.Module, args: tuple) -> None:
        seen["alive at the next layer"] = seen["input"]() is not None

    hooks = [leaves[0].register_forward_pre_hook(grab)]
    if len(leaves) > 1:
        hooks.append(leaves[1].register_forward_pre_hook(check))
    try:
        with torch.no_grad():
            out = net(x)
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.equal(out, reference)
    assert seen["channels last"] is channels_last
    if options.get("residual"):  # not a plain chain: called whole, its input kept
        assert leaves == [decoder]
    else:
        assert len(leaves) >= 6 and seen["alive at the next layer"] is False
