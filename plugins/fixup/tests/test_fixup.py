import math

import pytest
import torch
from torch import nn
from trickbag.config import ModelConfig
from trickbag.data import DataInfo
from trickbag.hookspecs import hookimpl
from trickbag.testing import plugin_row
from trickbag_fixup import Fixup, FixupOptions
from trickbag_fixup_resnet import (
    FIXUP_DEPTHS,
    FixupBasicBlock,
    ScalarBias,
    branch_scale,
    scalar_parameters,
)

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

CIFAR = DataInfo(name="cifar10", num_classes=10, in_channels=3, image_size=(32, 32), train_size=50000, val_size=10000,
                 mean=(0.5,) * 3, std=(0.25,) * 3)
BRANCHES = {"fixup_resnet20": 9, "fixup_resnet56": 27, "fixup_resnet110": 54}


def test_listed_by_trickbag_plugins():
    row = plugin_row("fixup")
    assert row["distribution"] == "trickbag-fixup"
    assert row["hooks"] == ["trickbag_build_model", "trickbag_check", "trickbag_param_groups"]
    assert {k: v["default"] for k, v in row["options"].items()} == {
        "enabled": True, "rescale": True, "zero_init": True, "scalar_lr_scale": 0.1}


def build(name, info=CIFAR, seed=0, **options):
    torch.manual_seed(seed)
    return Fixup(FixupOptions(**options)).trickbag_build_model(config=ModelConfig(name=name), info=info)


def test_answers_only_for_its_own_names():
    trick = Fixup(FixupOptions())
    for name in ("resnet20", "small_cnn", "fixup_resnet32", "shake_shake26_2x32d"):
        assert trick.trickbag_build_model(config=ModelConfig(name=name), info=CIFAR) is None
    for name in FIXUP_DEPTHS:
        assert build(name).num_branches == BRANCHES[name]


def test_branch_scale_is_L_to_the_minus_one_over_2m_minus_2():
    assert branch_scale(9) == pytest.approx(1 / 3)
    assert branch_scale(54) == pytest.approx(54 ** -0.5)
    assert branch_scale(8, 3) == pytest.approx(8 ** -0.25)  # m = 3: L^(-1/4)
    with pytest.raises(ValueError):
        branch_scale(9, 1)


@pytest.mark.parametrize("name", list(FIXUP_DEPTHS))
def test_branch_weights_are_he_times_the_fixup_factor(name):
    """Same seed with and without the rescaling: the branches' first convolutions differ by exactly
    L^(-1/2), and their spread is He's (fan_in) times that factor; the stem is not rescaled."""
    fixup, plain = build(name), build(name, rescale=False)
    L, factor = BRANCHES[name], BRANCHES[name] ** -0.5
    assert fixup.branch_scale == pytest.approx(factor) and plain.branch_scale == 1.0
    blocks, plain_blocks = fixup.blocks(), plain.blocks()
    assert len(blocks) == L
    for block, twin in zip(blocks, plain_blocks):
        torch.testing.assert_close(block.conv1.weight, twin.conv1.weight * factor, rtol=1e-6, atol=0)
    torch.testing.assert_close(fixup.conv1.weight, plain.conv1.weight, rtol=0, atol=0)
    # both layers of a branch are rescaled (visible when the last one is not zeroed afterwards)
    for block, twin in zip(build(name, zero_init=False).blocks(), build(name, rescale=False, zero_init=False).blocks()):
        torch.testing.assert_close(block.conv2.weight, twin.conv2.weight * factor, rtol=1e-6, atol=0)
    for block in blocks:  # He (fan_in) times the factor: sqrt(2 / (c_in · 3 · 3)) · L^(-1/2)
        conv = block.conv1
        expected = math.sqrt(2.0 / (conv.in_channels * 9)) * factor
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.06)  # >= 2,304 draws each
        assert conv.weight.mean().abs().item() < 0.1 * expected


@pytest.mark.parametrize("name", list(FIXUP_DEPTHS))
def test_last_layers_and_classifier_start_at_zero_scalars_at_their_values(name):
    model = build(name)
    blocks = model.blocks()
    for block in blocks:
        assert torch.count_nonzero(block.conv2.weight) == 0
        assert torch.count_nonzero(block.conv1.weight) == block.conv1.weight.numel()
        assert block.scale.item() == 1.0 and block.scale.dim() == 0
        for bias in (block.bias1a, block.bias1b, block.bias2a, block.bias2b):
            assert bias.bias.item() == 0.0 and bias.bias.dim() == 0
    assert torch.count_nonzero(model.fc.weight) == 0 and torch.count_nonzero(model.fc.bias) == 0
    assert not any(isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)) for m in model.modules())
    # one bias before each conv / linear / activation: 4 per block, the stem's and the classifier's
    assert sum(isinstance(m, ScalarBias) for m in model.modules()) == 4 * len(blocks) + 2
    # and the network is the identity on the stem's output: the logits are exactly 0
    x = torch.randn(4, 3, 32, 32)
    assert torch.count_nonzero(model(x)) == 0
    # zero_init = false keeps the He initialisation (rescaled) of conv2 and torch's of the classifier
    ablated = build(name, zero_init=False)
    assert all(torch.count_nonzero(b.conv2.weight) == b.conv2.weight.numel() for b in ablated.blocks())
    assert torch.count_nonzero(ablated.fc.weight) == ablated.fc.weight.numel()


def test_block_computes_the_fixup_formula():
    """relu(scale · conv2(relu(conv1(x + b1a) + b1b) + b2a) + b2b + shortcut), every scalar
    set to a distinct value, for a plain block and a downsampling one (option A: subsample, pad)."""
    import torch.nn.functional as F

    torch.manual_seed(3)
    for cin, cout, stride in ((16, 16, 1), (16, 32, 2)):
        block = FixupBasicBlock(cin, cout, stride).double()
        with torch.no_grad():
            for value, p in zip((0.3, -0.2, 0.5, -0.7, 1.7), (block.bias1a.bias, block.bias1b.bias, block.bias2a.bias, block.bias2b.bias, block.scale)):
                p.fill_(value)
            block.conv2.weight.normal_(0, 0.1)
        x = torch.randn(2, cin, 8, 8, dtype=torch.float64)
        b1a, b1b, b2a, b2b, scale = 0.3, -0.2, 0.5, -0.7, 1.7
        branch = scale * F.conv2d(F.relu(F.conv2d(x + b1a, block.conv1.weight, stride=stride, padding=1) + b1b) + b2a,
                                  block.conv2.weight, padding=1) + b2b
        shortcut = x  # the identity; a downsampling shortcut sees x + b1a, as in the authors' code
        if stride != 1:
            extra = cout - cin
            shortcut = F.pad((x + b1a)[:, :, ::2, ::2], (0, 0, 0, 0, extra // 2, extra - extra // 2))
        torch.testing.assert_close(block(x), F.relu(branch + shortcut))


def feature_variance(name, **options):
    model = build(name, **options)
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.features(x).var().item()


def test_output_variance_at_init_stays_order_one_with_depth_and_explodes_without_rescaling():
    """The measure: variance of the last residual stage's output (before pooling; the classifier is
    0) on 16 random N(0, 1) CIFAR images. Measured: Fixup 0.21 / 0.22 / 0.20 at 20 / 56 / 110
    layers; rules 2-3 alone (last layers not zeroed) 0.21 / 0.21 / 0.19; standard init without
    normalisation 130 / 6e7 / 4e18."""
    fixup = {n: feature_variance(n) for n in FIXUP_DEPTHS}
    rescaled = {n: feature_variance(n, zero_init=False) for n in FIXUP_DEPTHS}
    standard = {n: feature_variance(n, rescale=False, zero_init=False) for n in FIXUP_DEPTHS}
    for variances in (fixup, rescaled):
        assert all(0.05 < v < 2 for v in variances.values()), variances
        assert 0.5 < variances["fixup_resnet110"] / variances["fixup_resnet20"] < 2, variances
    assert standard["fixup_resnet20"] > 20 * rescaled["fixup_resnet20"]
    assert standard["fixup_resnet56"] > 1e6 and standard["fixup_resnet110"] > 1e15, standard
    assert standard["fixup_resnet110"] > 1e6 * standard["fixup_resnet56"]  # grows exponentially with depth


@pytest.mark.parametrize("channels,size,classes", [(1, 8, 10), (1, 28, 10), (1, 32, 10), (3, 32, 10), (3, 32, 100)])
def test_builds_for_the_data_shapes(channels, size, classes):
    info = DataInfo(name="x", num_classes=classes, in_channels=channels, image_size=(size, size), train_size=100, val_size=10,
                    mean=(0.5,) * channels, std=(0.25,) * channels)
    model = build("fixup_resnet20", info=info, zero_init=False)
    x = torch.randn(2, channels, size, size)
    out = model(x)
    assert out.shape == (2, classes) and torch.isfinite(out).all()
    down = math.ceil(math.ceil(size / 2) / 2)
    assert model.features(x).shape == (2, 64, down, down)


def test_model_options_are_refused():
    from trickbag import UserError

    with pytest.raises(UserError, match=r"model.width is not an option of 'fixup_resnet20'.*\[tricks.fixup\]"):
        Fixup(FixupOptions()).trickbag_build_model(config=ModelConfig(name="fixup_resnet20", width=3), info=CIFAR)


def test_options_are_validated():
    from pydantic import ValidationError

    for bad in ({"scalar_lr_scale": 0.0}, {"scalar_lr_scale": -0.1}, {"scalar_lr_scale": 11.0}, {"rescale": "yes"},
                {"zero_init": 1}, {"rescal": True}):
        with pytest.raises(ValidationError):
            FixupOptions(**bad)


# -- through the engine ------------------------------------------------------------------------

DIGITS = {"name": "digits", "val_size": 297}


def raw_recipe(tricks, model="fixup_resnet20", epochs=1, **training):
    return {"data": DIGITS, "model": {"name": model},
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
            "training": {"epochs": epochs, "batch_size": 100, "checkpoint": False, **training}, "tricks": tricks}


@pytest.mark.parametrize("order", [["fixup"], ["fixup", "no_bias_decay"], ["no_bias_decay", "fixup"]])
def test_scalars_get_a_tenth_of_the_lr_in_their_own_groups(order):
    from trickbag.engine.assemble import prepare_run
    from trickbag.recipe import build_recipe

    run = prepare_run(build_recipe(raw_recipe({n: {} for n in order})))
    try:
        model, groups = run.raw_model, run.optimizer.param_groups
        scalars = {id(p) for p in scalar_parameters(model)}
        assert len(scalars) == 4 * 9 + 2 + 9 + 1  # biases, stem/classifier biases, multipliers, fc.bias
        seen = []
        for g in groups:
            ids = {id(p) for p in g["params"]}
            seen += list(ids)
            assert ids <= scalars or not ids & scalars  # a group holds scalars only or none
            assert run.group_scales[[x[0] for x in run.group_scales].index(g)][1] == (0.1 if ids <= scalars else 1.0)
        assert sorted(seen) == sorted(id(p) for p in model.parameters())  # a partition
        if "no_bias_decay" in order:  # biases undecayed, the multipliers and weights decayed
            decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
            assert all(decay[id(b.scale)] == 5e-4 for b in model.blocks())
            assert all(decay[id(b.bias1a.bias)] == 0.0 for b in model.blocks())
            assert decay[id(model.fc.bias)] == 0.0 and decay[id(model.fc.weight)] == 5e-4
        else:
            assert all(g["weight_decay"] == 5e-4 for g in groups)
    finally:
        run.release()
    one = prepare_run(build_recipe(raw_recipe({"fixup": {"scalar_lr_scale": 1.0}})))
    assert len(one.optimizer.param_groups) == 1
    one.release()


def test_scalars_step_at_the_scaled_lr_in_a_real_run():
    from trickbag.engine.loop import fit
    from trickbag.recipe import build_recipe

    lrs = []

    class Watch:
        @hookimpl
        def trickbag_after_step(self, model, optimizer, state):
            lrs.append(sorted(g["lr"] for g in optimizer.param_groups))

    fit(build_recipe(raw_recipe({"fixup": {"scalar_lr_scale": 0.25}}, epochs=0.2)), None, observers=[Watch()])
    assert lrs and all(pair == pytest.approx([0.0125, 0.05]) for pair in lrs)


def test_trains_without_normalisation_at_the_bn_lr_where_standard_init_diverges():
    """Digits, SGD Nesterov at 0.05 (quickstart-plain's LR), 3 epochs: Fixup-ResNet-20 learns
    (measured 0.87 validation accuracy); the same net with standard init diverges."""
    from trickbag.engine.loop import Diverged, fit
    from trickbag.recipe import build_recipe

    summary = fit(build_recipe(raw_recipe({"fixup": {}}, epochs=3)), None)
    assert summary["final_val_acc"] > 0.7
    with pytest.raises(Diverged):
        fit(build_recipe(raw_recipe({"fixup": {"rescale": False, "zero_init": False}}, epochs=3)), None)


def write_recipe(tmp_path, model="fixup_resnet20", extra=""):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[data]\nname = "digits"\nval_size = 297\n[model]\nname = "{model}"\n'
                      f'[optimizer]\nlr = 0.05\n[training]\nepochs = 1\nbatch_size = 100\n[tricks.fixup]\n{extra}')
    return recipe


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_run_command_with_mixed_precision(tmp_path, precision):
    import json

    from trickbag.cli.app import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["run", str(write_recipe(tmp_path)), "--set", "training.epochs=0.3", "--set",
                                      f"training.precision={precision}", "--set", "training.device=cpu",
                                      "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and math.isfinite(rows[0]["train_loss"])
    # the run folder rebuilds through the trick
    from trickbag import load_model

    loaded = load_model(tmp_path / "run")
    assert isinstance(loaded.model.layer1[0], FixupBasicBlock)


def test_lr_find_command_runs_with_the_trick(tmp_path):
    from trickbag.cli.app import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["lr-find", str(write_recipe(tmp_path)), "--steps", "20", "--out", str(tmp_path / "lr")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lr" / "lr_find.json").exists()


@pytest.mark.parametrize("model,text,needles", [
    ("fixup_resnet20", "scalar_lr_scale = 0.0\n", ["tricks.fixup.scalar_lr_scale", "greater than 0"]),
    ("fixup_resnet20", 'rescale = "no"\n', ["tricks.fixup.rescale"]),
    ("fixup_resnet20", "zero_init = 0\n", ["tricks.fixup.zero_init"]),
    ("fixup_resnet20", "rescal = false\n", ["tricks.fixup.rescal", "did you mean 'rescale'"]),
    ("resnet20", "", ["tricks.fixup is enabled", "model.name 'resnet20'", "fixup_resnet20"]),
])
def test_check_refuses_bad_options_in_one_line(tmp_path, model, text, needles):
    from trickbag.cli.app import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["check", str(write_recipe(tmp_path, model, text))])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(("plugins: ", "warning: "))]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_check_without_the_trick_does_not_know_the_name(tmp_path):
    from trickbag.cli.app import app
    from typer.testing import CliRunner

    recipe = tmp_path / "r.toml"
    recipe.write_text('[data]\nname = "digits"\n[model]\nname = "fixup_resnet20"\n')
    result = CliRunner().invoke(app, ["check", str(recipe)])
    assert result.exit_code == 2 and "model.name 'fixup_resnet20' is unknown" in result.stderr
    assert "tricks that bring models: fixup" in result.stderr  # the engine says which trick to enable
    assert len(result.stderr.strip().splitlines()) == 1
    enabled = CliRunner().invoke(app, ["check", str(recipe), "--set", "tricks.fixup.enabled=true"])
    assert enabled.exit_code == 0, enabled.output
    assert "268,105 parameters" in enabled.stderr
