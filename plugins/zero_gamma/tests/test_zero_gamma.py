"""Zero-γ BN: torchvision's ``zero_init_residual=True`` is the oracle for resnet18/50; for the CIFAR
ResNets every residual block must be exactly ``relu(shortcut(x))`` at initialisation; models without
residual blocks are refused; the trick trains, runs in bf16/fp16, sweeps and resumes."""
import functools
import json

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from trickbag.cli.app import app
from trickbag.data import DataInfo
from trickbag.engine.loop import fit
from trickbag.models import RESIDUAL_BLOCKS
from trickbag.models.torchvision_resnet import _fit
from trickbag.recipe import build_recipe
from trickbag.runs.model import build_model
from trickbag.testing import assert_one_line_error as one_line_error
from trickbag.testing import plugin_row
from trickbag_zero_gamma import last_bn
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

CIFAR = DataInfo("fake", 10, 3, (32, 32), 100, 10, (0.5,) * 3, (0.25,) * 3)
IMAGENET = DataInfo("fake", 1000, 3, (224, 224), 100, 10, (0.5,) * 3, (0.25,) * 3)
DIGITS = ["--set", "data.name=digits", "--set", "data.val_size=100"]


def model(name, tricks, info=CIFAR, seed=0, **options):
    """The recipe's model exactly as a run builds it (build_model + configure_model hooks), seeded."""
    recipe = build_recipe({"model": {"name": name, **options}, "tricks": tricks})
    torch.manual_seed(seed)
    return build_model(recipe, info)


def test_listed_by_trickbag_plugins():
    row = plugin_row("zero_gamma")
    assert row["hooks"] == ["trickbag_configure_model"]
    assert list(row["options"]) == ["enabled"]
    assert row["distribution"] == "trickbag-zero-gamma"


# -- oracle 1: torchvision's zero_init_residual=True -------------------------------------------------

@pytest.mark.parametrize("name, info, small_input", [
    ("resnet18", IMAGENET, False), ("resnet18", CIFAR, True), ("resnet50", IMAGENET, False),
])
def test_torchvision_resnets_equal_zero_init_residual(name, info, small_input):
    """Same seed: the trick's initial state dict is torchvision's with zero_init_residual=True, every
    tensor equal (the trick draws no random number, so nothing else moves)."""
    ours = model(name, {"zero_gamma": {}}, info, small_input=small_input).state_dict()
    torch.manual_seed(0)
    make = functools.partial(getattr(torchvision.models, name), zero_init_residual=True)
    oracle = _fit(make, info, small_input).state_dict()  # the registry's builder, with torchvision's flag
    assert list(ours) == list(oracle)
    for key in oracle:
        assert torch.equal(ours[key], oracle[key]), key
    # and the oracle does differ from the plain model, in exactly the zeroed γ's
    plain = model(name, {}, info, small_input=small_input).state_dict()
    differ = [k for k in oracle if not torch.equal(plain[k], oracle[k])]
    last = "bn2" if name == "resnet18" else "bn3"
    assert differ and all(k.endswith(f"{last}.weight") for k in differ)
    assert len(differ) == {"resnet18": 8, "resnet50": 16}[name]


# -- oracle 2: every CIFAR residual block is relu(shortcut(x)) at initialisation -------------------

def block_inputs(block, generator):
    """A post-ReLU activation (what a block receives) of the block's input channels."""
    return torch.relu(torch.randn(4, block.conv1.in_channels, 12, 12, generator=generator))


def shortcut(block, x):
    return x if block.downsample is None else block.downsample(x)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("shortcut_option", ["A", "B"])
@pytest.mark.parametrize("name, blocks", [("resnet20", 9), ("resnet56", 27)])
def test_every_cifar_block_is_relu_of_its_shortcut(name, blocks, shortcut_option, mode):
    """CifarBasicBlock computes relu(bn2(conv2(...)) + shortcut(x)); with γ = β = 0 the branch is
    exactly 0 in train mode (batch statistics) and in eval mode (running statistics), so the block is
    relu(shortcut(x)) bit for bit, and the identity itself on a post-ReLU input without projection."""
    net = model(name, {"zero_gamma": {}}, shortcut=shortcut_option)
    getattr(net, mode)()
    g = torch.Generator().manual_seed(1)
    found = [m for m in net.modules() if isinstance(m, RESIDUAL_BLOCKS)]
    assert len(found) == blocks
    with torch.no_grad():
        for block in found:
            x = block_inputs(block, g)
            out = block(x.clone())
            assert torch.equal(out, torch.relu(shortcut(block, x))), block
            if block.downsample is None:
                assert torch.equal(out, x)
    # without the trick no block is (control: the assertion above can fail)
    plain = getattr(model(name, {}, shortcut=shortcut_option), mode)()
    with torch.no_grad():
        for block in (m for m in plain.modules() if isinstance(m, RESIDUAL_BLOCKS)):
            x = block_inputs(block, g)
            assert not torch.equal(block(x.clone()), torch.relu(shortcut(block, x)))


def test_whole_cifar_network_is_stem_shortcuts_pool_fc():
    """At initialisation resnet20 is the stem, the 9 shortcuts (3 subsampling-and-padding), the pool
    and the classifier: the logits are equal to those of that shallow net."""
    net = model("resnet20", {"zero_gamma": {}}).train()
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = net(x)
        h = net.relu(net.bn1(net.conv1(x)))
        for block in (m for m in net.modules() if isinstance(m, RESIDUAL_BLOCKS)):
            h = torch.relu(shortcut(block, h))
        assert torch.equal(logits, net.fc(torch.flatten(net.avgpool(h), 1)))


@pytest.mark.parametrize("name, blocks", [("resnet20", 9), ("resnet56", 27), ("resnet18", 8), ("resnet50", 16)])
def test_only_the_last_bn_gamma_of_each_block_changes(name, blocks):
    info = IMAGENET if name in ("resnet18", "resnet50") else CIFAR
    ours, plain = model(name, {"zero_gamma": {}}, info), model(name, {}, info)
    zeroed = {id(last_bn(m).weight) for m in ours.modules() if isinstance(m, RESIDUAL_BLOCKS)}
    assert len(zeroed) == blocks
    for (key, p), q in zip(ours.named_parameters(), plain.parameters()):
        if id(p) in zeroed:
            assert torch.equal(p, torch.zeros_like(p)) and p.requires_grad, key
            assert torch.equal(q, torch.ones_like(q)), key  # was γ = 1
        else:
            assert torch.equal(p, q), key
    for (key, b), c in zip(ours.named_buffers(), plain.buffers()):
        assert torch.equal(b, c), key


def test_zeroed_gammas_are_in_the_optimizer_and_trained():
    """configure_model runs before the optimizer is built: the zeroed γ's are trained like any other."""
    seen = {}

    class Spy:
        from trickbag import hookimpl

        @hookimpl
        def trickbag_fit_start(self, context):
            seen["model"] = context.model
            gammas = [last_bn(m).weight for m in context.model.modules() if isinstance(m, RESIDUAL_BLOCKS)]
            seen["start"] = [g.detach().clone() for g in gammas]
            in_groups = {id(p) for group in context.optimizer.param_groups for p in group["params"]}
            seen["in_optimizer"] = all(id(g) in in_groups for g in gammas)

    recipe = build_recipe({"data": {"name": "digits", "val_size": 100}, "model": {"name": "resnet20"},
                           "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
                           "training": {"epochs": 0.1, "batch_size": 50, "checkpoint": False}, "tricks": {"zero_gamma": {}}})
    fit(recipe, None, observers=[Spy()])
    assert seen["in_optimizer"]
    assert all(torch.equal(g, torch.zeros_like(g)) for g in seen["start"])
    trained = [last_bn(m).weight for m in seen["model"].modules() if isinstance(m, RESIDUAL_BLOCKS)]
    assert all(g.abs().max() > 0 for g in trained)  # every block's γ left zero


# -- refusals and options ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "small_cnn"])
def test_a_model_without_residual_blocks_is_refused_in_one_line(tmp_path, name):
    path = tmp_path / "r.toml"
    path.write_text(f'[model]\nname = "{name}"\n\n[tricks.zero_gamma]\n')
    one_line_error(CliRunner().invoke(app, ["check", str(path), *DIGITS]), "tricks.zero_gamma", f"model.name '{name}'", "no residual block")


@pytest.mark.parametrize("table, needles", [
    ('enabled = "yes"', ["tricks.zero_gamma.enabled"]),
    ("gamma = 0.0", ["tricks.zero_gamma", "gamma"]),
])
def test_bad_options_are_one_line_errors_naming_the_option(tmp_path, table, needles):
    path = tmp_path / "r.toml"
    path.write_text(f'[model]\nname = "resnet20"\n\n[tricks.zero_gamma]\n{table}\n')
    one_line_error(CliRunner().invoke(app, ["check", str(path), *DIGITS]), *needles)


def test_disabled_trick_leaves_the_model_alone(tmp_path):
    """enabled = false on a model without blocks is not refused (the trick has no object)."""
    path = tmp_path / "r.toml"
    path.write_text('[model]\nname = "small_cnn"\nwidth = 4\n\n[tricks.zero_gamma]\nenabled = false\n')
    result = CliRunner().invoke(app, ["check", str(path), *DIGITS])
    assert result.exit_code == 0, result.output


# -- real runs: precision, LR range test, checkpoints -----------------------------------------------

RUN = '[model]\nname = "resnet20"\n\n[optimizer]\nname = "sgd"\nlr = 0.05\n\n[training]\nepochs = 0.1\nbatch_size = 50\n\n[tricks.zero_gamma]\n'


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_tiny_run_then_resume_and_load(tmp_path, precision):
    """A short `trickbag run` in bf16/fp16 on the CPU, then `--resume` extends it and
    `load_model` rebuilds the zero-γ model and loads the checkpoint's weights."""
    from trickbag import load_model
    from trickbag.runs.checkpoint import load_checkpoint

    path = tmp_path / "r.toml"
    path.write_text(RUN)
    out = tmp_path / "run"
    sets = [*DIGITS, "--set", f'training.precision="{precision}"']
    result = CliRunner().invoke(app, ["run", str(path), *sets, "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["run", "--resume", str(out), "--epochs", "1.1", "-q"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["progress"] == pytest.approx(1.1)
    assert all(r["train_loss"] == r["train_loss"] for r in rows)  # not NaN
    loaded = load_model(out)
    saved = load_checkpoint(out / "checkpoint.pt")["model"]
    state = loaded.model.state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    # the γ's trained away from their zero start
    assert all(last_bn(m).weight.abs().max() > 0 for m in loaded.model.modules() if isinstance(m, RESIDUAL_BLOCKS))


def test_lr_find_runs_with_the_trick(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(RUN)
    out = tmp_path / "lr"
    result = CliRunner().invoke(app, ["lr-find", str(path), *DIGITS, "--steps", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "lr_find.json").exists()


def test_gradient_flows_into_the_zeroed_gamma():
    """γ = 0 kills the gradient of the branch's convolutions at the first step, not of γ itself."""
    net = model("resnet20", {"zero_gamma": {}}).train()
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    F.cross_entropy(net(x), torch.arange(8)).backward()
    block = net.layer2[1]
    assert block.bn2.weight.grad.abs().max() > 0
    assert torch.equal(block.conv2.weight.grad, torch.zeros_like(block.conv2.weight))
    assert isinstance(block.bn2, nn.BatchNorm2d)
