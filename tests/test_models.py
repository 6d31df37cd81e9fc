"""The model registry: every built-in builds for the data sets' shapes, the CIFAR ResNets match
He et al. 2016, and bad ``[model]`` options are reported as one line naming the key."""
from __future__ import annotations

import types

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock
from trickbag.errors import UserError
from trickbag.models import (
    MODELS,
    RESIDUAL_BLOCKS,
    CifarBasicBlock,
    build_model,
    register_model,
)


def make_info(in_channels: int = 1, size: int = 28, num_classes: int = 10) -> types.SimpleNamespace:
    """Stand-in for ``trickbag.data.DataInfo`` (same fields)."""
    return types.SimpleNamespace(
        name="fake", num_classes=num_classes, in_channels=in_channels, image_size=(size, size),
        train_size=100, val_size=10, mean=(0.5,) * in_channels, std=(0.25,) * in_channels,
    )


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_backward(model: nn.Module, info: types.SimpleNamespace, batch: int = 2) -> None:
    x = torch.randn(batch, info.in_channels, *info.image_size)
    out = model(x)
    assert out.shape == (batch, info.num_classes)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


SHAPES = {"mnist": make_info(1, 28, 10), "digits": make_info(1, 8, 10), "cifar100": make_info(3, 32, 100)}
# resnet50 on 28×28 and 8×8 adds only run time: its stem is resnet18's, tested on every shape.
CASES = [(m, s) for m in ["mlp", "small_cnn", "resnet20", "resnet56", "resnet18"] for s in SHAPES] + [("resnet50", "cifar100")]


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_builds_and_trains_on_each_shape(name: str, shape: str) -> None:
    torch.manual_seed(0)
    info = SHAPES[shape]
    forward_backward(build_model(name, info, {}), info)


def test_the_builtin_models_are_registered() -> None:
    assert {"mlp", "small_cnn", "resnet20", "resnet56", "resnet18", "resnet50"} <= set(MODELS)


# --- CIFAR ResNets: He et al. 2016, §4.2 and Table 6 -------------------------------------------

@pytest.mark.parametrize(("name", "n", "millions"), [("resnet20", 3, 0.27), ("resnet56", 9, 0.85)])
def test_cifar_resnet_size_and_depth_match_the_paper(name: str, n: int, millions: float) -> None:
    model = build_model(name, make_info(3, 32, 10), {})
    assert n_params(model) == pytest.approx(millions * 1e6, rel=0.03)
    # 6n+2 weighted layers: the first conv, 2 convs per block × 3n blocks, the classifier.
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == 6 * n + 2
    assert sum(isinstance(m, CifarBasicBlock) for m in model.modules()) == 3 * n


def test_option_a_shortcut_is_parameter_free_and_option_b_projects() -> None:
    info = make_info(3, 32, 10)
    a, b = build_model("resnet20", info, {}), build_model("resnet20", info, {"shortcut": "B"})
    downsampling_a = [blk.downsample for blk in a.modules() if isinstance(blk, CifarBasicBlock) and blk.downsample is not None]
    assert len(downsampling_a) == 2  # entering stage 2 and stage 3
    assert all(n_params(d) == 0 for d in downsampling_a)
    # option B: a 1×1 conv + BN at each of the two transitions (16->32, 32->64)
    assert n_params(b) - n_params(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    forward_backward(b, info)


def test_option_a_shortcut_subsamples_and_zero_pads() -> None:
    block = CifarBasicBlock(16, 32, stride=2).downsample
    x = torch.randn(2, 16, 8, 8)
    y = block(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])  # the old channels in the middle, zeros around
    assert not y[:, :8].any() and not y[:, 24:].any()


def test_residual_blocks_are_laid_out_like_torchvision() -> None:
    block = next(m for m in build_model("resnet20", make_info(3, 32), {}).modules() if isinstance(m, CifarBasicBlock))
    for attr in ("conv1", "bn1", "conv2", "bn2", "downsample"):
        assert hasattr(block, attr) and hasattr(BasicBlock(16, 16), attr)
    assert isinstance(block.bn2, nn.BatchNorm2d)
    # zero-γ finds the last BN of each block by the same rule in both model families
    for name in ("resnet20", "resnet18", "resnet50"):
        model = build_model(name, make_info(3, 32), {})
        blocks = [m for m in model.modules() if isinstance(m, RESIDUAL_BLOCKS)]
        assert blocks and all(isinstance(getattr(b, "bn3", None) or b.bn2, nn.BatchNorm2d) for b in blocks)


def test_cifar_resnet_uses_kaiming_init() -> None:
    conv = build_model("resnet56", make_info(3, 32), {}).layer3[0].conv2  # 64 -> 64, 3×3
    expected_std = (2 / (64 * 9)) ** 0.5  # fan_out = 64 · 3 · 3
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.05)


# --- torchvision ResNets ------------------------------------------------------------------------

def test_resnet18_follows_input_channels_and_classes() -> None:
    model = build_model("resnet18", make_info(1, 28, 7), {})
    assert model.conv1.in_channels == 1 and model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert model.fc.out_features == 7
    assert isinstance(build_model("resnet18", make_info(3, 32), {}).conv1, nn.Conv2d)


def test_small_input_stem_keeps_cifar_resolution() -> None:
    info = make_info(3, 32, 10)
    model = build_model("resnet18", info, {"small_input": True})
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1)
    assert stem(torch.randn(1, 3, 32, 32)).shape[-2:] == (32, 32)  # the 7×7/2 stem + pool gives 8×8
    default = build_model("resnet18", info, {})
    assert nn.Sequential(default.conv1, default.maxpool)(torch.randn(1, 3, 32, 32)).shape[-2:] == (8, 8)


# --- small models and their options -------------------------------------------------------------

def test_mlp_width_and_depth() -> None:
    model = build_model("mlp", make_info(1, 8, 10), {"width": 32, "depth": 3})
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 32), (32, 32), (32, 10)]
    assert len([m for m in build_model("mlp", make_info(1, 8, 10), {"depth": 0}).modules() if isinstance(m, nn.Linear)]) == 1


def test_small_cnn_width_and_dropout() -> None:
    model = build_model("small_cnn", make_info(1, 28, 10), {"width": 8, "dropout": 0.25})
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 16, 16, 32]
    assert next(m for m in model.modules() if isinstance(m, nn.Dropout)).p == 0.25
    build_model("small_cnn", make_info(1, 28, 10), {"dropout": 0})  # a TOML integer is a fine float


@pytest.mark.parametrize(("name", "options"), [("mlp", {}), ("small_cnn", {"width": 16})])
def test_small_models_learn_the_digits(name: str, options: dict) -> None:
    """A real (embedded) data set, 5 epochs of plain SGD: catches a model that builds but cannot learn."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16
    x, y = (x - x.mean()) / x.std(), torch.tensor(y)
    order = torch.randperm(len(y))
    train, val = order[:1497], order[1497:]
    model = build_model(name, make_info(1, 8, 10), options)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    for _ in range(5):
        for batch in train[torch.randperm(len(train))].split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[val]).argmax(1) == y[val]).float().mean().item()
    assert accuracy >= 0.93


# --- errors the user sees: one line, naming the culprit -----------------------------------------

def user_error(name: str, options: dict) -> str:
    with pytest.raises(UserError) as caught:
        build_model(name, make_info(), options)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unknown_model_suggests_the_closest_name() -> None:
    message = user_error("resnet21", {})
    assert message.startswith("model.name 'resnet21' is unknown; did you mean 'resnet20'? (known: ")
    assert "small_cnn" in message and "resnet56" in message
    assert "did you mean" not in user_error("transformer", {})


def test_unknown_option_suggests_the_closest_option() -> None:
    assert user_error("small_cnn", {"widht": 8}) == "model.widht is not an option of 'small_cnn'; did you mean 'width'?"
    message = user_error("mlp", {"zzz": 1})
    assert message.startswith("model.zzz is not an option of 'mlp'") and "width, depth" in message
    # info is not an option: the data set decides channels and classes
    assert user_error("mlp", {"info": None}).startswith("model.info is not an option of 'mlp'")


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("small_cnn", {"width": "wide"}, "model.width must be int, got str 'wide'"),
        ("small_cnn", {"width": 1.5}, "model.width must be int, got float 1.5"),
        ("small_cnn", {"width": True}, "model.width must be int, got bool True"),
        ("small_cnn", {"dropout": "0.1"}, "model.dropout must be float, got str '0.1'"),
        ("resnet18", {"small_input": 1}, "model.small_input must be bool, got int 1"),
        ("resnet20", {"shortcut": "C"}, "model.shortcut must be one of 'A', 'B', got str 'C'"),
        ("small_cnn", {"width": 0}, "model.width must be >= 1, got 0"),
        ("small_cnn", {"dropout": 1.0}, "model.dropout must be in [0, 1), got 1.0"),
        ("mlp", {"depth": -1}, "model.depth must be >= 0, got -1"),
    ],
)
def test_wrong_option_values_are_named(name: str, options: dict, expected: str) -> None:
    assert user_error(name, options) == expected


def test_plugins_can_register_a_model() -> None:
    @register_model("test_linear")
    def test_linear(info, *, bias: bool = True) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(info.in_channels * info.image_size[0] * info.image_size[1], info.num_classes, bias=bias))

    try:
        assert build_model("test_linear", make_info(1, 8, 3), {"bias": False})[1].bias is None
        assert user_error("test_linear", {"bias": "no"}) == "model.bias must be bool, got str 'no'"
    finally:
        del MODELS["test_linear"]


def test_airbench94_has_its_make_net_layout() -> None:
    """Keller Jordan's airbench94 make_net: 24-channel 2×2 whitening conv, conv groups of 64/256/256,
    BatchNorm that learns only its shift, dirac-initialised 3×3 convs, a bias-free head scaled by 1/9."""
    info = make_info(3, 32, 10)
    model = build_model("airbench94", info, {})
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 24, (2, 2)), (24, 64, (3, 3)), (64, 64, (3, 3)), (64, 256, (3, 3)), (256, 256, (3, 3)), (256, 256, (3, 3)), (256, 256, (3, 3))
    ]
    weights = 3 * 24 * 4 + 24 + 9 * (24 * 64 + 64 * 64 + 64 * 256 + 3 * 256 * 256) + 256 * 10
    bn = 2 * (64 + 64 + 256 + 256 + 256 + 256)  # frozen scale + learned shift
    assert n_params(model) == weights + bn == 1_972_792
    assert all(not m.weight.requires_grad and m.bias.requires_grad for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    for conv in convs[1:]:
        ident = torch.zeros_like(conv.weight[: conv.in_channels])
        nn.init.dirac_(ident)
        assert torch.equal(conv.weight[: conv.in_channels], ident) and conv.bias is None
    head = model[-2]
    assert isinstance(head, nn.Linear) and head.bias is None and model[-1].factor == pytest.approx(1 / 9)
    forward_backward(model, info)
    forward_backward(build_model("airbench94", make_info(1, 28, 10), {}), make_info(1, 28, 10))
    with pytest.raises(UserError, match="airbench94 needs images of at least 16x16"):
        build_model("airbench94", make_info(1, 8, 10), {})
