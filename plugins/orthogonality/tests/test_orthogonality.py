import math

import pytest
import torch
from torch import nn
from trickbag.hookspecs import hookimpl
from trickbag.testing import assert_one_line_error, plugin_row, run_trick
from trickbag_orthogonality import regularised_weights
from trickbag_orthogonality_penalty import orthogonality_gradient, orthogonality_penalty

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

DIGITS = {"name": "digits", "val_size": 297}  # 1,500 training samples
CNN = {"name": "small_cnn", "width": 12}  # first conv (12, 1*3*3): more rows than columns; the others fewer
TWENTY_STEPS = {"epochs": 1, "batch_size": 75}


def test_listed_by_trickbag_plugins():
    row = plugin_row("orthogonality")
    assert row["distribution"] == "trickbag-orthogonality"
    assert row["hooks"] == ["trickbag_after_backward", "trickbag_fit_start", "trickbag_loss"]
    assert {k: v["default"] for k, v in row["options"].items()} == {
        "enabled": True, "strength": 1e-4, "mode": "coupled", "multiplier": "schedule", "layers": "all"}


def literal_penalty(weight):
    """The talk's formula as written, W (out, rest) and the Gram matrix W^T W (rest x rest), whatever its size."""
    w = weight.reshape(weight.shape[0], -1)
    return (w.T @ w - torch.eye(w.shape[1], dtype=w.dtype)).pow(2).sum()


SHAPES = [(10, 32), (32, 10), (8, 3, 3, 3), (16, 1, 3, 3), (6, 2, 5), (7, 7)]


@pytest.mark.parametrize("shape", SHAPES)
def test_closed_form_gradient_is_autograd_of_the_penalty(shape):
    torch.manual_seed(0)
    weight = (0.3 * torch.randn(shape, dtype=torch.float64)).requires_grad_()
    (autograd,) = torch.autograd.grad(literal_penalty(weight), weight)
    torch.testing.assert_close(orthogonality_gradient(weight.detach()), autograd)
    w = weight.detach().reshape(shape[0], -1)
    torch.testing.assert_close(orthogonality_gradient(weight.detach()).reshape(w.shape), 4 * w @ (w.T @ w - torch.eye(w.shape[1], dtype=w.dtype)))


@pytest.mark.parametrize("shape", SHAPES)
def test_the_smaller_gram_differs_from_the_literal_penalty_by_a_constant(shape):
    """||W^T W - I_rest||^2 = ||W W^T - I_out||^2 + (rest - out): the same gradient, the small
    Gram's penalty is 0 at an orthogonal weight."""
    torch.manual_seed(1)
    weight = 0.3 * torch.randn(shape, dtype=torch.float64)
    out, rest = shape[0], math.prod(shape[1:])
    assert orthogonality_penalty(weight).item() == pytest.approx(literal_penalty(weight).item() - max(0, rest - out), rel=1e-9)
    orthogonal = torch.linalg.qr(torch.randn(max(out, rest), min(out, rest), dtype=torch.float64)).Q  # orthonormal columns
    orthogonal = (orthogonal if out >= rest else orthogonal.T).reshape(shape)
    assert orthogonality_penalty(orthogonal).item() == pytest.approx(0.0, abs=1e-12)
    assert literal_penalty(orthogonal).item() == pytest.approx(max(0, rest - out), abs=1e-9)


def test_penalty_is_float32_under_bf16_autocast():
    torch.manual_seed(2)
    weight = nn.Parameter(0.2 * torch.randn(24, 40))
    expected = orthogonality_penalty(weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = orthogonality_penalty(weight)
        assert (weight @ weight.T).dtype == torch.bfloat16  # what a bare matmul would have done
    assert under.dtype == torch.float32 and torch.equal(under, expected)


def test_regularised_weights_are_conv_and_linear_weights_only():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ConvTranspose2d(8, 4, 2), nn.Conv1d(4, 4, 1, bias=False),
                        nn.Flatten(), nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    net[7].weight = net[5].weight  # tied: regularised once
    conv, transposed, conv1d, linear = net[0], net[2], net[3], net[5]
    assert [id(w) for w in regularised_weights(net, "all")] == [id(conv.weight), id(conv1d.weight), id(linear.weight)]
    assert [id(w) for w in regularised_weights(net, "conv")] == [id(conv.weight), id(conv1d.weight)]
    assert id(transposed.weight) not in {id(w) for w in regularised_weights(net, "all")}


class Tape:
    """Observer: every step's W_{t-1}, gradient and LR (observers run before the tricks, so before
    the decoupled step), and W_t after the optimizer step."""

    def __init__(self):
        self.steps = []

    @hookimpl
    def trickbag_fit_start(self, context):
        self.model = context.model

    @hookimpl
    def trickbag_after_backward(self, model, state):
        self.steps.append({
            "lr": state.lr,
            "before": {n: p.detach().clone() for n, p in self.model.named_parameters()},
            "grad": {n: p.grad.detach().clone() for n, p in self.model.named_parameters()},
        })

    @hookimpl
    def trickbag_step_end(self, state):
        self.steps[-1]["after"] = {n: p.detach().clone() for n, p in self.model.named_parameters()}


def target_names(model, layers="all"):
    kinds = (nn.Conv2d, nn.Linear) if layers == "all" else (nn.Conv2d,)
    weights = {id(m.weight) for m in model.modules() if isinstance(m, kinds)}
    return {n for n, p in model.named_parameters() if id(p) in weights}


def autograd_penalty_gradient(weight):
    weight = weight.detach().clone().requires_grad_()
    return torch.autograd.grad(literal_penalty(weight), weight)[0]


def close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("layers", ["all", "conv"])
def test_decoupled_step_is_eta_lambda_times_the_autograd_gradient_at_every_step(layers):
    """Plain SGD under one-cycle: W_t = W_{t-1} - eta_t lambda grad P(W_{t-1}) - lr_t g_t, grad P by
    autograd of the literal penalty, eta_t = lr_t / max_lr; every other parameter takes the SGD step only."""
    lam, alpha = 0.01, 0.1
    tape = Tape()
    run_trick({"one_cycle": {"max_lr": alpha, "cycle_momentum": False}, "orthogonality": {"mode": "decoupled", "strength": lam, "layers": layers}},
              observers=[tape], data=DIGITS, model=CNN, training=TWENTY_STEPS, optimizer={"name": "sgd", "lr": alpha, "momentum": 0.0})
    targets = target_names(tape.model, layers)
    assert len(targets) == (6 if layers == "all" else 5)
    for s in tape.steps:
        eta = s["lr"] / alpha
        for n, w in s["before"].items():
            expected = w - s["lr"] * s["grad"][n]
            if n in targets:
                expected = expected - eta * lam * autograd_penalty_gradient(w)
            close(s["after"][n], expected)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_coupled_adds_lambda_times_the_penalty_to_the_first_loss(precision):
    lam = 0.01
    sections = {"optimizer": {"name": "sgd", "lr": 0.05}, "training": {"precision": precision}}
    tape = Tape()
    plain = run_trick({}, data=DIGITS, model=CNN, **sections)
    coupled = run_trick({"orthogonality": {"strength": lam}}, observers=[tape], data=DIGITS, model=CNN, **sections)
    targets = target_names(tape.model)
    expected = lam * sum(literal_penalty(w).item() - max(0, w[0].numel() - w.shape[0]) for n, w in tape.steps[0]["before"].items() if n in targets)
    assert expected > 1e-2
    assert coupled.steps[0].loss - plain.steps[0].loss == pytest.approx(expected, rel=1e-4)


def final_weights(tricks, **sections):
    tape = Tape()
    run_trick(tricks, observers=[tape], data=DIGITS, model={"name": "mlp", "width": 48}, **sections)
    return tape.steps[-1]["after"]


@pytest.mark.parametrize("optimizer,same", [({"name": "sgd", "momentum": 0.0, "lr": 0.05}, True), ({"name": "adam", "lr": 0.01}, False)])
def test_coupled_and_decoupled_agree_under_plain_sgd_and_differ_under_adam(optimizer, same):
    """The talk's point: Adam divides the penalty's gradient by the data's sqrt(v) when coupled;
    decoupled, the step is lr*lambda*grad P whatever the optimizer. Plain SGD cannot tell them apart."""
    lam = 0.05
    sections = {"optimizer": optimizer, "training": {"epochs": 1, "batch_size": 100}}
    coupled = final_weights({"orthogonality": {"strength": lam}}, **sections)
    decoupled = final_weights({"orthogonality": {"strength": lam, "mode": "decoupled", "multiplier": "lr"}}, **sections)
    plain = final_weights({}, **sections)
    for n in coupled:
        if same:
            close(decoupled[n], coupled[n])
    if not same:
        # the two differ by far more than rounding, on the scale of the penalty's own effect
        effect = max((coupled[n] - plain[n]).abs().max().item() for n in coupled)
        gap = max((coupled[n] - decoupled[n]).abs().max().item() for n in coupled)
        assert gap > 0.1 * effect > 1e-4


class InfiniteGradient(torch.autograd.Function):
    """The loss unchanged forward, an infinite gradient backward: what makes fp16's scaler skip a step."""

    @staticmethod
    def forward(ctx, loss):
        return loss.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.inf


class PoisonStep:
    def __init__(self, step):
        self.step = step

    @hookimpl(wrapper=True)
    def trickbag_loss(self, outputs, batch, model, state):
        loss = yield
        return InfiniteGradient.apply(loss) if state.global_step == self.step else loss


def test_fp16_step_skipped_by_the_grad_scaler_is_skipped_by_the_decoupled_step():
    tape = Tape()
    run_trick({"orthogonality": {"mode": "decoupled", "strength": 0.01}}, observers=[PoisonStep(3), tape], data=DIGITS,
              optimizer={"name": "adam", "lr": 0.01}, training={"precision": "fp16"})
    for i, s in enumerate(tape.steps):
        unchanged = all(torch.equal(s["after"][n], s["before"][n]) for n in s["before"])
        assert unchanged == (i == 3), i


def test_range_test_steps_at_the_peak_multiplier_and_restores_everything():
    """During lr-find the LR is the sweep's: eta_t = 1, and afterwards weights, groups and the trick are as before."""
    from trickbag.engine.assemble import prepare_run
    from trickbag.lr_range.sweep import sweep
    from trickbag.recipe import build_recipe

    lam = 0.01
    recipe = build_recipe({"data": DIGITS, "model": {"name": "mlp", "width": 16}, "training": {"batch_size": 100},
                           "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0},
                           "tricks": {"one_cycle": {"cycle_momentum": False}, "orthogonality": {"mode": "decoupled", "strength": lam}}})
    tape = Tape()
    run = prepare_run(recipe, observers=[tape])
    before = {n: p.detach().clone() for n, p in run.raw_model.named_parameters()}
    trick_vars = dict(vars(run.tricks["orthogonality"]))
    result = sweep(run, start=1e-4, end=1.0, steps=20)
    assert len(result.lrs) == 20
    targets = target_names(run.raw_model)
    for s in tape.steps:
        for n, w in s["before"].items():
            expected = w - s["lr"] * s["grad"][n] - (lam * autograd_penalty_gradient(w) if n in targets else 0)
            close(s["after"][n], expected)
    for n, p in run.raw_model.named_parameters():
        assert torch.equal(p, before[n]), n
    assert vars(run.tricks["orthogonality"]) == trick_vars


RECIPE = """
[data]
name = "digits"
val_size = 297
[model]
name = "small_cnn"
width = 4
[optimizer]
name = "adam"
lr = 0.01
[training]
epochs = 1
batch_size = 100
[tricks.one_cycle]
[tricks.orthogonality]
mode = "{mode}"
"""


@pytest.mark.parametrize("mode", ["coupled", "decoupled"])
def test_lr_find_command_runs_with_the_trick(tmp_path, mode):
    from trickbag.cli.app import app
    from typer.testing import CliRunner

    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(mode=mode))
    result = CliRunner().invoke(app, ["lr-find", str(recipe), "--steps", "20", "--out", str(tmp_path / "lr")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lr" / "lr_find.json").exists()


@pytest.mark.parametrize("text,needles", [
    ("strength = -0.1\n", ["tricks.orthogonality.strength", "greater than 0"]),
    ('strength = "1e-4"\n', ["tricks.orthogonality.strength"]),  # a string where a float is expected
    ('mode = "both"\n', ["tricks.orthogonality.mode"]),
    ('layers = "linear"\n', ["tricks.orthogonality.layers"]),
    ('multiplier = "lr"\n', ["tricks.orthogonality", "multiplier = 'lr'", "mode = 'decoupled'"]),
])
def test_check_refuses_bad_options_in_one_line(tmp_path, text, needles):
    from trickbag.cli.app import app
    from typer.testing import CliRunner

    recipe = tmp_path / "r.toml"
    recipe.write_text('[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\n[tricks.orthogonality]\n' + text)
    result = CliRunner().invoke(app, ["check", str(recipe)])
    assert_one_line_error(result, *needles)


def test_interrupted_run_resumes_to_identical_weights(tmp_path):
    """Nothing to checkpoint: the weights to regularise and the peak LR are found again at fit start."""
    from trickbag.engine.loop import fit
    from trickbag.recipe import build_recipe
    from trickbag.runs.checkpoint import load_checkpoint

    raw = {"data": DIGITS, "model": {"name": "mlp", "width": 16}, "training": {"epochs": 3, "batch_size": 100},
           "optimizer": {"name": "adam", "lr": 0.01}, "tricks": {"one_cycle": {}, "orthogonality": {"mode": "decoupled", "strength": 0.01}}}
    fit(build_recipe(raw), tmp_path / "reference")

    class CtrlC:
        @hookimpl
        def trickbag_step_end(self, state):
            if state.epoch == 1 and state.step_in_epoch == 5:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(build_recipe(raw), tmp_path / "interrupted", observers=[CtrlC()])
    fit(build_recipe(raw), tmp_path / "interrupted", resume=True)
    want, got = (load_checkpoint(tmp_path / run / "checkpoint.pt")["model"] for run in ("reference", "interrupted"))
    for key in want:
        assert torch.equal(got[key], want[key]), key
