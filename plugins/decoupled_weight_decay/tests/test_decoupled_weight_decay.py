import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from trickbag.hookspecs import hookimpl
from trickbag.testing import assert_one_line_error, plugin_row, run_trick
from trickbag_decoupled_weight_decay import (
    KEY,
    DecoupledWeightDecay,
    DecoupledWeightDecayOptions,
    normalized_scale,
)
from trickbag_sgdw import LRInBufferSGD

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

DIGITS = {"name": "digits", "val_size": 297}  # 1,500 training samples
CNN = {"name": "small_cnn", "width": 4}  # convs without bias, BatchNorm, a linear classifier with bias
TWENTY_STEPS = {"epochs": 1, "batch_size": 75}  # 1500 / 75


def test_listed_by_trickbag_plugins():
    row = plugin_row("decoupled_weight_decay")
    assert row["distribution"] == "trickbag-decoupled-weight-decay"
    assert row["hooks"] == ["trickbag_after_backward", "trickbag_check", "trickbag_create_optimizer", "trickbag_fit_start",
                            "trickbag_loss", "trickbag_param_groups"]
    assert {k: v["default"] for k, v in row["options"].items()} == {"enabled": True, "mode": "decoupled", "multiplier": "schedule", "normalized": False}


class Tape:
    """Observer: every step's x_{t-1}, gradient, LR and momentum (observers run before the tricks,
    so before the decay), and x_t after the optimizer step."""

    def __init__(self):
        self.steps = []

    @hookimpl
    def trickbag_fit_start(self, context):
        self.model, self.optimizer = context.model, context.optimizer

    @hookimpl
    def trickbag_after_backward(self, model, state):
        self.steps.append({
            "lr": state.lr, "momentum": state.momentum,
            "before": {n: p.detach().clone() for n, p in self.model.named_parameters()},
            "grad": {n: p.grad.detach().clone() for n, p in self.model.named_parameters()},
        })

    @hookimpl
    def trickbag_step_end(self, state):
        self.steps[-1]["after"] = {n: p.detach().clone() for n, p in self.model.named_parameters()}


def decayed_by_type(model, lam):
    """What no_bias_decay promises, decided here independently: lambda for conv/linear weights, 0 for the rest."""
    weights = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    return {n: lam if id(p) in weights else 0.0 for n, p in model.named_parameters()}


def close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("order", ["no_bias_decay first", "decoupled_weight_decay first"])
def test_sgdw_is_algorithm_1_at_every_step_under_one_cycle(order):
    """Algorithm 1 (SGDW) transcribed literally: m_t = beta m_{t-1} + eta_t alpha g_t,
    x_t = x_{t-1} - m_t - eta_t lambda x_{t-1}, with eta_t = lr_t / max_lr under one-cycle (LR and
    momentum both cycled), no_bias_decay's groups honoured in either recipe order."""
    lam, alpha = 0.05, 0.2
    tricks = {"one_cycle": {"max_lr": alpha}, "no_bias_decay": {}, "decoupled_weight_decay": {}}
    if order != "no_bias_decay first":
        tricks = {"decoupled_weight_decay": {}, "one_cycle": {"max_lr": alpha}, "no_bias_decay": {}}
    tape = Tape()
    run_trick(tricks, observers=[tape], data=DIGITS, model=CNN, training=TWENTY_STEPS,
              optimizer={"name": "sgdw", "lr": alpha, "momentum": 0.9, "weight_decay": lam})
    assert [(g["name"], g["weight_decay"], g[KEY]) for g in tape.optimizer.param_groups] == [("all", 0.0, lam), ("all.no_decay", 0.0, 0.0)]
    decay = decayed_by_type(tape.model, lam)
    assert len(tape.steps) == 20 and len({s["lr"] for s in tape.steps}) == 20  # a non-constant schedule
    m = {n: torch.zeros_like(x) for n, x in tape.steps[0]["before"].items()}
    x = dict(tape.steps[0]["before"])  # the algorithm's own trajectory, fed the run's gradients
    for s in tape.steps:
        eta, beta = s["lr"] / alpha, s["momentum"]
        for n in m:
            m[n] = beta * m[n] + eta * alpha * s["grad"][n]
            close(s["after"][n], s["before"][n] - m[n] - eta * decay[n] * s["before"][n])  # this step, from the run's x_{t-1}
            x[n] = x[n] - m[n] - eta * decay[n] * x[n]
    for n in x:
        close(tape.steps[-1]["after"][n], x[n])  # every parameter after 20 steps


@pytest.mark.parametrize("name,precision", [("adamw", "fp32"), ("adam", "fp32"), ("adamw", "bf16")])
def test_adamw_is_algorithm_2_at_every_step(name, precision):
    """Algorithm 2 (AdamW) transcribed literally, x_t = x_{t-1} - eta_t (alpha m^_t / (sqrt(v^_t) + eps)
    + lambda x_{t-1}), under one-cycle: 'adam' and 'adamw' are the same optimizer under the trick
    (the engine's AdamW would decay a second time otherwise), and bf16 autocast changes nothing."""
    lam, alpha, (b1, b2), eps = 0.1, 0.01, (0.9, 0.999), 1e-8
    tape = Tape()
    run_trick({"one_cycle": {"max_lr": alpha, "cycle_momentum": False}, "no_bias_decay": {}, "decoupled_weight_decay": {}},
              observers=[tape], data=DIGITS, model=CNN, training={**TWENTY_STEPS, "precision": precision},
              optimizer={"name": name, "lr": alpha, "weight_decay": lam})
    decay = decayed_by_type(tape.model, lam)
    m = {n: torch.zeros_like(x) for n, x in tape.steps[0]["before"].items()}
    v = {n: torch.zeros_like(z) for n, z in m.items()}
    for t, s in enumerate(tape.steps, start=1):
        eta = s["lr"] / alpha
        for n in m:
            g, x = s["grad"][n], s["before"][n]
            m[n] = b1 * m[n] + (1 - b1) * g
            v[n] = b2 * v[n] + (1 - b2) * g * g
            m_hat, v_hat = m[n] / (1 - b1 ** t), v[n] / (1 - b2 ** t)
            close(s["after"][n], x - eta * (alpha * m_hat / (v_hat.sqrt() + eps) + decay[n] * x))


def final_weights(tricks, **sections):
    tape = Tape()
    run_trick(tricks, observers=[tape], data=DIGITS, model=CNN, **sections)
    return tape.steps[-1]["after"]


def test_multiplier_lr_is_torch_adamw():
    """multiplier = 'lr' is torch's convention, x <- x - lr lambda x: the same run as torch's AdamW."""
    sections = {"optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 0.1}, "training": TWENTY_STEPS}
    torch_adamw = final_weights({"one_cycle": {}, "no_bias_decay": {}}, **sections)
    mine = final_weights({"one_cycle": {}, "no_bias_decay": {}, "decoupled_weight_decay": {"multiplier": "lr"}},
                         **{**sections, "optimizer": {**sections["optimizer"], "name": "adam"}})
    for n in torch_adamw:
        close(mine[n], torch_adamw[n])


@pytest.mark.parametrize("optimizer", [{"name": "sgd", "momentum": 0.0}, {"name": "sgd", "momentum": 0.9}, {"name": "adam"}])
def test_l2_mode_is_torch_coupled_weight_decay(optimizer):
    """mode = 'l2' adds lambda/2 ||x||^2 to the loss: its gradient lambda x is what torch's SGD and
    Adam add to the gradient for weight_decay = lambda (coupled)."""
    sections = {"optimizer": {**optimizer, "lr": 0.05 if optimizer["name"] == "sgd" else 0.01, "weight_decay": 0.05}, "training": TWENTY_STEPS}
    coupled = final_weights({"one_cycle": {}}, **sections)
    mine = final_weights({"one_cycle": {}, "decoupled_weight_decay": {"mode": "l2"}}, **sections)
    for n in coupled:
        close(mine[n], coupled[n])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_l2_mode_adds_half_lambda_squared_norm_to_the_first_loss(precision):
    """Same weights and batch at step 0: the two losses differ by lambda/2 ||x_0||^2 over the decayed
    parameters (computed in float32 under bf16 autocast too)."""
    lam = 0.05
    sections = {"optimizer": {"name": "sgd", "lr": 0.05, "weight_decay": lam}, "training": {"precision": precision}}
    tape = Tape()
    plain = run_trick({"no_bias_decay": {}}, data=DIGITS, model=CNN, **sections)
    l2 = run_trick({"no_bias_decay": {}, "decoupled_weight_decay": {"mode": "l2"}}, observers=[tape], data=DIGITS, model=CNN, **sections)
    decay = decayed_by_type(tape.model, lam)
    expected = sum(decay[n] / 2 * x.pow(2).sum().item() for n, x in tape.steps[0]["before"].items())
    assert expected > 1e-3
    assert l2.steps[0].loss - plain.steps[0].loss == pytest.approx(expected, rel=1e-4)


def test_normalized_lambda_is_lambda_norm_times_sqrt_b_over_BT():
    assert normalized_scale(128, 50_000, 200) == pytest.approx(math.sqrt(128 / (50_000 * 200)))
    lam_norm, epochs = 0.2, 2.0
    sections = {"optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": lam_norm}, "training": {"epochs": epochs, "batch_size": 100}}
    normed = run_trick({"decoupled_weight_decay": {"normalized": True}}, data=DIGITS, **sections)
    scale = math.sqrt(100 / (1500 * epochs))
    assert normed.tricks["decoupled_weight_decay"].lambda_scale == pytest.approx(scale)
    # the same run as giving lambda = lambda_norm sqrt(b / (B T)) directly
    a = final_weights({"decoupled_weight_decay": {"normalized": True}}, **sections)
    b = final_weights({"decoupled_weight_decay": {}}, **{**sections, "optimizer": {**sections["optimizer"], "weight_decay": lam_norm * scale}})
    for n in a:
        close(a[n], b[n])


def manual_trick(multiplier="schedule", lam=0.1, group_lr=0.4, peak=0.4):
    """The trick outside the engine, on one parameter of ones with a zero gradient (only the decay moves it)."""
    trick = DecoupledWeightDecay(DecoupledWeightDecayOptions(multiplier=multiplier))
    p = nn.Parameter(torch.ones(3))
    groups = [{"params": [p], "name": "all"}]
    trick.trickbag_param_groups(model=None, groups=groups, config=SimpleNamespace(weight_decay=lam))
    optimizer = torch.optim.SGD(groups, lr=group_lr)
    context = SimpleNamespace(optimizer=optimizer, lr_schedule=lambda progress: peak if progress < 1 else peak / 4, steps_per_epoch=10,
                              total_steps=20, recipe=SimpleNamespace(training=SimpleNamespace(precision="fp32")))
    trick.trickbag_fit_start(context=context)
    p.grad = torch.zeros_like(p)
    return trick, p, optimizer  # the trick holds the optimizer weakly: the caller keeps it alive


def shrink(trick, p, lr, sweep=False):
    with torch.no_grad():
        p.fill_(1.0)
    trick.trickbag_after_backward(model=None, state=SimpleNamespace(lr=lr, sweep=sweep))
    return 1 - p.detach()[0].item()


def test_decay_is_scaled_by_the_schedule_multiplier():
    trick, p, _optimizer = manual_trick(lam=0.1, peak=0.4)
    assert trick.peak_lr == 0.4
    assert shrink(trick, p, lr=0.4) == pytest.approx(0.1)  # eta_t = 1 at the peak: lambda itself
    assert shrink(trick, p, lr=0.2) == pytest.approx(0.05)  # half the multiplier, half the decay
    assert shrink(trick, p, lr=0.1) == pytest.approx(0.025)
    assert shrink(trick, p, lr=0.01, sweep=True) == pytest.approx(0.1)  # a range test: the decay at the peak


def test_multiplier_lr_scales_the_decay_by_the_group_lr():
    trick, p, _optimizer = manual_trick(multiplier="lr", lam=0.1, group_lr=0.3)
    assert shrink(trick, p, lr=0.4) == pytest.approx(0.03)  # lr * lambda, whatever the schedule's multiplier


def test_torch_sgd_momentum_is_not_algorithm_1_under_a_schedule_but_sgdw_is():
    """Why 'sgdw' exists: torch's SGD multiplies the whole momentum buffer by today's LR; the
    paper's buffer holds each gradient times the LR it was taken at. Equal at a constant LR."""
    def trajectory(optimizer_class, lrs):
        p = nn.Parameter(torch.tensor([1.0, -2.0]))
        optimizer = optimizer_class([p], lr=lrs[0], momentum=0.9)
        for i, lr in enumerate(lrs):
            optimizer.param_groups[0]["lr"] = lr
            p.grad = torch.tensor([0.5, 1.0]) * (i + 1)
            optimizer.step()
        return p.detach()

    def algorithm_1(lrs):
        x, m = torch.tensor([1.0, -2.0]), torch.zeros(2)
        for i, lr in enumerate(lrs):
            m = 0.9 * m + lr * torch.tensor([0.5, 1.0]) * (i + 1)
            x = x - m
        return x

    constant, scheduled = [0.1] * 5, [0.1, 0.2, 0.4, 0.2, 0.1]
    close(trajectory(torch.optim.SGD, constant), algorithm_1(constant))
    close(trajectory(LRInBufferSGD, constant), algorithm_1(constant))
    close(trajectory(LRInBufferSGD, scheduled), algorithm_1(scheduled))
    assert not torch.allclose(trajectory(torch.optim.SGD, scheduled), algorithm_1(scheduled), rtol=1e-3)


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


def test_fp16_step_skipped_by_the_grad_scaler_is_not_decayed():
    tape = Tape()
    run_trick({"decoupled_weight_decay": {}}, observers=[PoisonStep(3), tape], data=DIGITS,
              optimizer={"name": "adamw", "lr": 0.01, "weight_decay": 0.1}, training={"precision": "fp16"})
    for i, s in enumerate(tape.steps):
        unchanged = all(torch.equal(s["after"][n], s["before"][n]) for n in s["before"])
        assert unchanged == (i == 3), i


def test_range_test_decays_at_the_peak_multiplier_and_restores_everything():
    """During lr-find the LR is the sweep's: eta_t = 1 (the decay at the schedule's peak), and
    afterwards weights, groups and the trick are as before."""
    from trickbag.engine.assemble import prepare_run
    from trickbag.lr_range.sweep import sweep
    from trickbag.recipe import build_recipe

    lam = 0.01
    recipe = build_recipe({"data": DIGITS, "model": {"name": "mlp", "width": 16}, "training": {"batch_size": 100},
                           "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": lam},
                           "tricks": {"one_cycle": {"cycle_momentum": False}, "decoupled_weight_decay": {}}})
    tape = Tape()
    run = prepare_run(recipe, observers=[tape])
    before = {n: p.detach().clone() for n, p in run.raw_model.named_parameters()}
    groups = [{k: v for k, v in g.items() if k != "params"} for g in run.optimizer.param_groups]
    trick_vars = dict(vars(run.tricks["decoupled_weight_decay"]))
    result = sweep(run, start=1e-4, end=1.0, steps=20)
    assert len(result.lrs) == 20
    for s in tape.steps:  # torch SGD without momentum: x_t = (1 - lambda) x_{t-1} - lr g
        for n in s["before"]:
            close(s["after"][n], (1 - lam) * s["before"][n] - s["lr"] * s["grad"][n])
    for n, p in run.raw_model.named_parameters():
        assert torch.equal(p, before[n]), n
    assert [{k: v for k, v in g.items() if k != "params"} for g in run.optimizer.param_groups] == groups
    assert vars(run.tricks["decoupled_weight_decay"]) == trick_vars


RECIPE = """
[data]
name = "digits"
val_size = 297
[model]
name = "mlp"
width = 16
[optimizer]
name = "{optimizer}"
lr = 0.01
weight_decay = 0.05
[training]
epochs = 1
batch_size = 100
[tricks.one_cycle]
[tricks.no_bias_decay]
[tricks.decoupled_weight_decay]
mode = "{mode}"
"""


@pytest.mark.parametrize("optimizer,mode", [("sgdw", "decoupled"), ("adamw", "l2")])
def test_lr_find_command_runs_with_the_trick(tmp_path, optimizer, mode):
    from trickbag.cli.app import app
    from typer.testing import CliRunner

    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(optimizer=optimizer, mode=mode))
    result = CliRunner().invoke(app, ["lr-find", str(recipe), "--steps", "20", "--out", str(tmp_path / "lr")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lr" / "lr_find.json").exists()


def one_line_error(tmp_path, text, *needles):
    from trickbag.cli.app import app
    from typer.testing import CliRunner

    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    result = CliRunner().invoke(app, ["check", str(recipe)])
    assert_one_line_error(result, *needles)


@pytest.mark.parametrize("text,needles", [
    ('[tricks.decoupled_weight_decay]\nmultiplier = "torch"\n', ["tricks.decoupled_weight_decay.multiplier"]),
    ('[tricks.decoupled_weight_decay]\nnormalized = 1\n', ["tricks.decoupled_weight_decay.normalized"]),
    ('[tricks.decoupled_weight_decay]\nmode = "l2"\nmultiplier = "lr"\n', ["tricks.decoupled_weight_decay", "multiplier = 'lr'", "mode = 'decoupled'"]),
    ('[optimizer]\nname = "sgdw"\nnesterov = true\n[tricks.decoupled_weight_decay]\n', ["optimizer.nesterov", "sgdw"]),
])
def test_check_refuses_bad_options_in_one_line(tmp_path, text, needles):
    one_line_error(tmp_path, '[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\n' + text, *needles)


def test_interrupted_run_resumes_to_identical_weights(tmp_path):
    """Nothing to checkpoint: the peak LR is found again at fit start, sgdw's buffers are optimizer state."""
    from trickbag.engine.loop import fit
    from trickbag.recipe import build_recipe
    from trickbag.runs.checkpoint import load_checkpoint

    raw = {"data": DIGITS, "model": {"name": "mlp", "width": 16}, "training": {"epochs": 3, "batch_size": 100},
           "optimizer": {"name": "sgdw", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.05},
           "tricks": {"one_cycle": {}, "no_bias_decay": {}, "decoupled_weight_decay": {"normalized": True}}}
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
