import json
import math

import pytest
import torch
from trickbag.config import ModelConfig
from trickbag.data import DataInfo
from trickbag.hookspecs import hookimpl
from trickbag.testing import plugin_row
from trickbag_shake_shake import ShakeShakeOptions, ShakeShakeTrick
from trickbag_shake_shake_net import (
    SHAKE_MODELS,
    ShakeBlock,
    ShakeShake,
    ShakeShakeNet,
    draw_coefficients,
)

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

CIFAR = DataInfo(name="cifar10", num_classes=10, in_channels=3, image_size=(32, 32), train_size=50000, val_size=10000,
                 mean=(0.5,) * 3, std=(0.25,) * 3)
DIGITS_INFO = DataInfo(name="digits", num_classes=10, in_channels=1, image_size=(8, 8), train_size=1500, val_size=297,
                       mean=(0.5,), std=(0.25,))


def test_listed_by_trickbag_plugins():
    row = plugin_row("shake_shake")
    assert row["distribution"] == "trickbag-shake-shake"
    assert row["hooks"] == ["trickbag_build_model", "trickbag_check"]
    assert {k: v["default"] for k, v in row["options"].items()} == {
        "enabled": True, "forward": "shake", "backward": "shake", "level": "image"}
    assert row["options"]["backward"]["enum"] == ["shake", "even", "keep"]


def build(name="shake_shake26_2x32d", info=CIFAR, seed=0, **options):
    torch.manual_seed(seed)
    return ShakeShakeTrick(ShakeShakeOptions(**options)).trickbag_build_model(config=ModelConfig(name=name), info=info)


def test_answers_only_for_its_own_names():
    trick = ShakeShakeTrick(ShakeShakeOptions())
    for name in ("resnet20", "fixup_resnet20", "shake_shake26_2x96d"):
        assert trick.trickbag_build_model(config=ModelConfig(name=name), info=CIFAR) is None
    assert isinstance(build(), ShakeShakeNet)


@pytest.mark.parametrize("name,paper", [("shake_shake26_2x32d", 2.9e6), ("shake_shake26_2x64d", 11.7e6)])
def test_parameter_counts_match_the_paper(name, paper):
    """The paper's Table: 26 2x32d has 2.9M parameters, 26 2x64d 11.7M (CIFAR-10, 32×32×3).
    Measured: 2,923,162 and 11,653,978: the paper's counts to 2 significant digits and to 0.1M."""
    model = build(name)
    count = sum(p.numel() for p in model.parameters())
    assert float(f"{count:.2g}") == float(f"{paper:.2g}")
    assert round(count / 1e5) == round(paper / 1e5)  # and to the 0.1M the paper prints
    assert len(model.blocks()) == 12  # (26 - 2) / 6 = 4 blocks per stage
    width = SHAKE_MODELS[name][1]
    assert [s[0].branch1[1].out_channels for s in (model.layer1, model.layer2, model.layer3)] == [width, 2 * width, 4 * width]


@pytest.mark.parametrize("channels,size,classes", [(1, 8, 10), (1, 28, 10), (1, 32, 10), (3, 32, 10), (3, 32, 100)])
def test_builds_for_the_data_shapes(channels, size, classes):
    info = DataInfo(name="x", num_classes=classes, in_channels=channels, image_size=(size, size), train_size=100, val_size=10,
                    mean=(0.5,) * channels, std=(0.25,) * channels)
    model = build(info=info)
    out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, classes) and torch.isfinite(out).all()


def test_projection_shortcut_is_the_papers_two_shifted_paths():
    """ReLU; a 1×1 conv of the subsampled input and one of the input shifted one pixel right and
    down (Lua's SpatialZeroPadding(1, -1, 1, -1)) then subsampled; concatenated; BatchNorm."""
    import torch.nn.functional as F

    torch.manual_seed(4)
    block = ShakeBlock(4, 8, 2).double().eval()
    shortcut = block.shortcut
    with torch.no_grad():
        shortcut.bn.running_mean.normal_()
        shortcut.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    r = F.relu(x)
    shifted = torch.zeros_like(r)
    shifted[:, :, 1:, 1:] = r[:, :, :-1, :-1]
    paths = torch.cat([F.conv2d(r[:, :, ::2, ::2], shortcut.conv1.weight), F.conv2d(shifted[:, :, ::2, ::2], shortcut.conv2.weight)], 1)
    bn = shortcut.bn
    expected = (paths - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
    with torch.no_grad():
        torch.testing.assert_close(shortcut(x), expected)
        assert block(x).shape == (2, 8, 4, 4)
    assert ShakeBlock(8, 8, 1).shortcut is None  # the identity where nothing changes


# -- the shake-shake function --------------------------------------------------------------------


def test_custom_autograd_routes_beta_g_and_one_minus_beta_g():
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    alpha = torch.rand(5, 1, 1, 1, generator=g, dtype=torch.float64)
    beta = torch.rand(5, 1, 1, 1, generator=g, dtype=torch.float64)
    grad = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)
    out = ShakeShake.apply(x1, x2, alpha, beta)
    torch.testing.assert_close(out, alpha * x1 + (1 - alpha) * x2, rtol=0, atol=0)
    out.backward(grad)
    torch.testing.assert_close(x1.grad, beta * grad, rtol=0, atol=0)
    torch.testing.assert_close(x2.grad, (1 - beta) * grad, rtol=0, atol=0)
    assert not torch.allclose(x1.grad, alpha * grad)  # not the true gradient of the forward
    # with beta = alpha ("keep") it is the true gradient of alpha x1 + (1 - alpha) x2
    assert torch.autograd.gradcheck(lambda a, b: ShakeShake.apply(a, b, alpha, alpha), (x1.detach().requires_grad_(), x2.detach().requires_grad_()))


MODES = [(f, b, lv) for f in ("shake", "even") for b in ("shake", "even", "keep") for lv in ("image", "batch")]


def run_block(block, x, seed):
    """Train-mode forward and backward of a block, returning its output, the branch outputs and the
    gradients that reached them."""
    seen = {}

    def keep(name):
        def hook(module, args, output):
            seen[name] = output.detach().clone()
            output.register_hook(lambda g: seen.__setitem__(name + ".grad", g.detach().clone()))
        return hook

    handles = [block.branch1.register_forward_hook(keep("x1")), block.branch2.register_forward_hook(keep("x2"))]
    torch.manual_seed(seed)
    out = block(x)
    grad = torch.randn_like(out)
    out.backward(grad)
    for h in handles:
        h.remove()
    return out.detach(), grad, seen


@pytest.mark.parametrize("forward,backward,level", MODES)
def test_block_mixes_with_the_drawn_alpha_and_routes_the_drawn_beta(forward, backward, level):
    torch.manual_seed(1)
    block = ShakeBlock(4, 4, 1, forward, backward, level).double().train()
    x = torch.randn(6, 4, 5, 5, dtype=torch.float64)
    out, grad, seen = run_block(block, x, seed=7)
    torch.manual_seed(7)  # the same draws, in the block's order
    alpha, beta = (c.double() for c in draw_coefficients(6, x.device, forward, backward, level))
    torch.testing.assert_close(out, x + alpha * seen["x1"] + (1 - alpha) * seen["x2"])
    torch.testing.assert_close(seen["x1.grad"], beta * grad)
    torch.testing.assert_close(seen["x2.grad"], (1 - beta) * grad)
    a, b = alpha.flatten(), beta.flatten()
    assert len(a) == (6 if level == "image" else 1)
    assert torch.all(a == 0.5) if forward == "even" else (len(a) == 1 or len(set(a.tolist())) == 6)
    if backward == "keep":
        assert torch.equal(b, a)
    elif backward == "even":
        assert torch.all(b == 0.5)
    else:
        assert not torch.equal(b, a) and torch.all((b > 0) & (b < 1))


def test_alpha_and_beta_are_independent_uniform_draws():
    from scipy import stats

    torch.manual_seed(0)
    alpha, beta = (c.flatten() for c in draw_coefficients(20000, torch.device("cpu")))
    for c in (alpha, beta):
        assert stats.kstest(c.numpy(), "uniform").pvalue > 1e-3
    assert abs(torch.corrcoef(torch.stack([alpha, beta]))[0, 1].item()) < 0.03  # sd ~ 0.007


def test_evaluation_is_deterministic_and_uses_one_half():
    torch.manual_seed(2)
    block = ShakeBlock(4, 8, 2).double().eval()
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    rng = torch.get_rng_state()
    with torch.no_grad():
        first, second = block(x), block(x)
        expected = block.shortcut(x) + 0.5 * block.branch1(x) + 0.5 * block.branch2(x)
    assert torch.equal(first, second)
    torch.testing.assert_close(first, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(torch.get_rng_state(), rng)  # evaluation draws nothing
    model = build(info=DIGITS_INFO).eval()
    xs = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(xs), model(xs))


def test_train_mode_is_random_and_even_even_is_not():
    xs = torch.randn(8, 1, 8, 8)
    shaken = build(info=DIGITS_INFO).train()
    even = build(info=DIGITS_INFO, forward="even", backward="even").train()
    with torch.no_grad():
        a, b = shaken(xs), shaken(xs)
        assert not torch.allclose(a, b)
        assert torch.equal(even(xs), even(xs))  # BatchNorm uses the batch's statistics either way
    torch.manual_seed(5)
    with torch.no_grad():
        c = shaken(xs)
    torch.manual_seed(5)
    with torch.no_grad():
        assert torch.equal(shaken(xs), c)  # the randomness is the global RNG's


def test_model_options_are_refused():
    from trickbag import UserError

    with pytest.raises(UserError, match=r"model.depth is not an option of 'shake_shake26_2x32d'.*\[tricks.shake_shake\]"):
        ShakeShakeTrick(ShakeShakeOptions()).trickbag_build_model(config=ModelConfig(name="shake_shake26_2x32d", depth=20), info=CIFAR)


def test_options_are_validated():
    from pydantic import ValidationError

    for bad in ({"forward": "keep"}, {"backward": "random"}, {"level": "pixel"}, {"forward": 1}, {"mode": "shake"}):
        with pytest.raises(ValidationError):
            ShakeShakeOptions(**bad)


# -- through the engine ------------------------------------------------------------------------

SMALL = {"name": "digits", "val_size": 100, "subset": 100}  # 4 steps of 25 per epoch


def raw_recipe(epochs=3, seed=0, **options):
    return {"data": SMALL, "model": {"name": "shake_shake26_2x32d"},
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
            "training": {"epochs": epochs, "batch_size": 25, "seed": seed}, "tricks": {"shake_shake": options}}


class Weights:
    """Keeps the run's model, to read its weights once the run is over."""

    @hookimpl
    def trickbag_fit_start(self, context):
        self.model = context.model

    def state(self):
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def weights_after(raw):
    from trickbag.engine.loop import fit
    from trickbag.recipe import build_recipe

    raw = {**raw, "training": {**raw["training"], "checkpoint": False}}
    watch = Weights()
    fit(build_recipe(raw), None, observers=[watch])
    return watch.state()


def test_seeded_runs_repeat_and_the_shaking_changes_them():
    shaken, again = weights_after(raw_recipe(epochs=1)), weights_after(raw_recipe(epochs=1))
    even = weights_after(raw_recipe(epochs=1, forward="even", backward="even"))
    other_seed = weights_after(raw_recipe(epochs=1, seed=1))
    assert all(torch.equal(shaken[k], again[k]) for k in shaken)  # a seeded run repeats exactly
    assert not torch.equal(shaken["fc.weight"], even["fc.weight"])  # the coefficients reach the weights
    assert not torch.equal(shaken["fc.weight"], other_seed["fc.weight"])


def test_an_interrupted_run_resumes_to_identical_weights(tmp_path):
    from trickbag.engine.loop import fit
    from trickbag.recipe import build_recipe
    from trickbag.runs.checkpoint import load_checkpoint

    raw = raw_recipe()
    fit(build_recipe(raw), tmp_path / "reference")

    class CtrlC:
        @hookimpl
        def trickbag_step_end(self, state):
            if state.epoch == 1 and state.step_in_epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(build_recipe(raw), tmp_path / "interrupted", observers=[CtrlC()])
    assert load_checkpoint(tmp_path / "interrupted" / "checkpoint.pt")["epoch"] == 1
    fit(build_recipe(raw), tmp_path / "interrupted", resume=True)
    want, got = (load_checkpoint(tmp_path / run / "checkpoint.pt")["model"] for run in ("reference", "interrupted"))
    for key in want:
        assert torch.equal(got[key], want[key]), key


RECIPE = """
[data]
name = "digits"
val_size = 40
subset = 40
[model]
name = "{model}"
{model_extra}[optimizer]
lr = 0.05
[training]
epochs = 1
batch_size = 20
[tricks.shake_shake]
{extra}"""


def write_recipe(tmp_path, model="shake_shake26_2x32d", extra="", model_extra=""):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(model=model, extra=extra, model_extra=model_extra))
    return recipe


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_run_command_with_mixed_precision(tmp_path, precision):
    from trickbag.cli.app import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["run", str(write_recipe(tmp_path)), "--set", "training.epochs=0.3", "--set",
                                      f"training.precision={precision}", "--set", "training.device=cpu",
                                      "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and math.isfinite(rows[0]["train_loss"])
    from trickbag import load_model

    assert isinstance(load_model(tmp_path / "run").model, ShakeShakeNet)  # rebuilt through the trick


def test_lr_find_command_runs_with_the_trick(tmp_path):
    from trickbag.cli.app import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["lr-find", str(write_recipe(tmp_path)), "--steps", "20", "--out", str(tmp_path / "lr")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lr" / "lr_find.json").exists()


@pytest.mark.parametrize("model,text,model_extra,needles", [
    ("shake_shake26_2x32d", 'forward = "keep"\n', "", ["tricks.shake_shake.forward", "'shake' or 'even'"]),
    ("shake_shake26_2x32d", 'backward = "random"\n', "", ["tricks.shake_shake.backward"]),
    ("shake_shake26_2x32d", 'level = "pixel"\n', "", ["tricks.shake_shake.level"]),
    ("shake_shake26_2x32d", 'mode = "shake"\n', "", ["tricks.shake_shake.mode"]),
    ("shake_shake26_2x32d", "", "depth = 20\n", ["model.depth is not an option of 'shake_shake26_2x32d'", "[tricks.shake_shake]"]),
    ("resnet20", "", "", ["tricks.shake_shake is enabled", "model.name 'resnet20'", "shake_shake26_2x32d"]),
])
def test_check_refuses_bad_options_in_one_line(tmp_path, model, text, model_extra, needles):
    from trickbag.cli.app import app
    from typer.testing import CliRunner

    recipe = write_recipe(tmp_path, model, text, model_extra)
    result = CliRunner().invoke(app, ["check", str(recipe)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(("plugins: ", "warning: "))]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_check_without_the_trick_does_not_know_the_name(tmp_path):
    from trickbag.cli.app import app
    from typer.testing import CliRunner

    recipe = tmp_path / "r.toml"
    recipe.write_text('[data]\nname = "digits"\n[model]\nname = "shake_shake26_2x64d"\n')
    result = CliRunner().invoke(app, ["check", str(recipe)])
    assert result.exit_code == 2 and "model.name 'shake_shake26_2x64d' is unknown" in result.stderr
    enabled = CliRunner().invoke(app, ["check", str(recipe), "--set", "tricks.shake_shake.enabled=true"])
    assert enabled.exit_code == 0, enabled.output
