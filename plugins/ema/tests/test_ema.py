import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from trickbag.cli.app import app
from trickbag.engine.evaluate import evaluate
from trickbag.engine.loop import fit
from trickbag.hookspecs import hookimpl
from trickbag.recipe import build_recipe, load_recipe
from trickbag.runs.checkpoint import load_checkpoint
from trickbag.runs.model import load_model
from trickbag.testing import assert_one_line_error, drive_tui, plugin_row, run_trick
from trickbag_ema import initial_weight, warmed_decay
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

DIGITS = {"name": "digits", "val_size": 297}  # 1,500 training samples
CNN = {"name": "small_cnn", "width": 4}  # convs, BatchNorm (running statistics, num_batches_tracked), a linear head
TWENTY_STEPS = {"epochs": 1, "batch_size": 75}  # 1500 / 75
HEAD = "20.weight"  # small_cnn's linear classifier


def test_listed_by_trickbag_plugins():
    row = plugin_row("ema")
    assert row["distribution"] == "trickbag-ema"
    assert row["hooks"] == ["trickbag_after_step", "trickbag_check", "trickbag_eval_model", "trickbag_fit_start"]
    assert {k: v["default"] for k, v in row["options"].items()} == {"enabled": True, "decay": 0.999, "warmup": False, "every": 1}


class Oracle:
    """torch's AveragedModel with the same decay (and BatchNorm buffers averaged), made from the
    model at fit start and updated after the same optimizer steps. Observers run before the tricks,
    so both see the weights right after each step."""

    def __init__(self, decay, every=1):
        self.decay, self.every, self.weights = decay, every, []

    @hookimpl
    def trickbag_fit_start(self, context):
        self.model = context.model
        self.average = AveragedModel(context.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
        self.average.update_parameters(context.model)  # n_averaged 0: a copy of the starting weights
        self.weights.append({k: v.double() for k, v in context.model.state_dict().items()})

    @hookimpl
    def trickbag_after_step(self, model, optimizer, state):
        self.weights.append({k: v.double() for k, v in self.model.state_dict().items()})
        if (state.global_step + 1) % self.every == 0:
            self.average.update_parameters(self.model)
            self.at_update = {k: v.clone() for k, v in self.model.state_dict().items()}  # the model at the last update


def floats(state):
    """The averaged part of a state_dict (integer buffers, BatchNorm's num_batches_tracked, follow the model)."""
    return {k: v for k, v in state.items() if v.is_floating_point()}


def assert_state_close(actual, expected, **tolerance):
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key].double(), expected[key].double(), **tolerance, msg=key)


@pytest.mark.parametrize("decay,every", [(0.9, 1), (0.8, 3), (0.0, 1)])
def test_the_average_is_torch_averaged_model_with_the_same_decay(decay, every):
    oracle = Oracle(decay, every)
    out = run_trick({"ema": {"decay": decay, "every": every}}, observers=[oracle], data=DIGITS, model=CNN, training=TWENTY_STEPS)
    trick = out.tricks["ema"]
    assert trick.updates == 20 // every
    mine, theirs, model = trick.average.state_dict(), oracle.average.module.state_dict(), oracle.at_update
    floats = {k for k, v in mine.items() if v.is_floating_point()}
    assert any("running_var" in k for k in floats) and any("num_batches_tracked" in k for k in mine)
    assert_state_close({k: mine[k] for k in floats}, {k: theirs[k] for k in floats}, rtol=1e-6, atol=1e-7)
    for key in set(mine) - floats:  # integer buffers follow the model (AveragedModel would truncate their average)
        assert torch.equal(mine[key], model[key]), key
    if decay == 0.0:  # no memory: the average is the model
        assert_state_close({k: mine[k] for k in floats}, {k: model[k] for k in floats}, rtol=0, atol=0)
    else:  # and it is not the model: the claim has teeth
        assert not torch.allclose(mine[HEAD], model[HEAD], rtol=1e-3)


def test_warmup_is_the_tensorflow_decay_formula():
    assert [warmed_decay(0.999, u, True) for u in range(3)] == [pytest.approx(0.1), pytest.approx(2 / 11), pytest.approx(0.25)]
    assert warmed_decay(0.5, 10, True) == 0.5 and warmed_decay(0.999, 0, False) == 0.999
    oracle = Oracle(decay=0.95)  # for its record of the weights after each step
    out = run_trick({"ema": {"decay": 0.95, "warmup": True}}, observers=[oracle], data=DIGITS, model=CNN, training=TWENTY_STEPS)
    # by hand, in float64: ema_0 = w_0; ema <- d_u ema + (1 - d_u) w_{u+1}, d_u = min(0.95, (1 + u) / (10 + u))
    ema = dict(oracle.weights[0])
    for u, w in enumerate(oracle.weights[1:]):
        d = min(0.95, (1 + u) / (10 + u))
        ema = {k: d * ema[k] + (1 - d) * w[k] if w[k].is_floating_point() else w[k] for k in ema}
    mine = out.tricks["ema"].average.state_dict()
    floats = {k for k, v in mine.items() if v.is_floating_point()}
    assert_state_close({k: mine[k] for k in floats}, {k: ema[k] for k in floats}, rtol=1e-5, atol=1e-6)
    # and the warm-up matters: without it the starting weights would still weigh 0.95^20 = 36%
    assert initial_weight(0.95, 20, False) == pytest.approx(0.95**20)
    assert initial_weight(0.95, 20, True) == pytest.approx(torch.tensor([min(0.95, (1 + u) / (10 + u)) for u in range(20)]).prod().item())
    assert initial_weight(0.95, 20, True) < 1e-3


def test_validation_scores_the_average_and_best_pt_holds_it(tmp_path):
    """decay = 1: the average never moves, so every epoch scores the initial model; best.pt and
    checkpoint.pt's eval_model hold the initial weights, checkpoint.pt's model the trained ones."""
    from trickbag.data import load_data

    class Start:
        @hookimpl
        def trickbag_fit_start(self, context):
            self.weights = {k: v.clone() for k, v in context.model.state_dict().items()}

    start = Start()
    out = run_trick({"ema": {"decay": 1.0}}, observers=[start], out_dir=tmp_path / "run", data=DIGITS, model=CNN, training={"epochs": 2})
    plain = run_trick({}, data=DIGITS, model=CNN, training={"epochs": 2})
    _, val = load_data(build_recipe({"data": DIGITS, "model": CNN}).data, torch.device("cpu"))
    first = load_model(tmp_path / "run")  # the evaluated weights: the average
    assert_state_close(floats(first.model.state_dict()), floats(start.weights), rtol=0, atol=0)
    scored = evaluate(first.model, val, 1000, None, torch.device("cpu"))
    assert [h["val_acc"] for h in out.summary["history"]] == [scored["val_acc"]] * 2
    assert [h["train_loss"] for h in out.summary["history"]] == [h["train_loss"] for h in plain.summary["history"]]
    assert plain.summary["history"][-1]["val_acc"] > scored["val_acc"] + 0.3  # the trained model scores far better
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    for weights in (best["model"], saved["eval_model"], saved["tricks"]["ema"]["average"]):
        assert_state_close(floats(weights), floats(start.weights), rtol=0, atol=0)
    assert not torch.equal(saved["model"][HEAD], start.weights[HEAD])


def test_load_model_scores_the_last_val_acc(tmp_path):
    out = run_trick({"ema": {"decay": 0.9}}, out_dir=tmp_path / "run", data=DIGITS, model=CNN, training={"epochs": 2})
    from trickbag.data import load_data

    _, val = load_data(build_recipe({"data": DIGITS, "model": CNN}).data, torch.device("cpu"))
    loaded, trained = load_model(tmp_path / "run"), load_model(tmp_path / "run", weights="trained")
    last = out.summary["history"][-1]
    assert evaluate(loaded.model, val, 1000, None, torch.device("cpu"))["val_acc"] == last["val_acc"]
    assert_state_close(trained.model.state_dict(), load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"], rtol=0, atol=0)
    assert not torch.equal(loaded.model.state_dict()[HEAD], trained.model.state_dict()[HEAD])


def test_a_range_test_leaves_the_average_alone():
    """lr-find calls fit_start and the step hooks, never eval_model: the average is not updated
    there, and the trick's state (no average before fit start) is restored afterwards."""
    from trickbag.engine.assemble import prepare_run
    from trickbag.lr_range.sweep import sweep

    recipe = build_recipe({"data": DIGITS, "model": CNN, "training": {"batch_size": 100}, "tricks": {"ema": {"decay": 0.5}}})
    run = prepare_run(recipe)
    trick = run.tricks["ema"]
    seen = []

    class Look:
        @hookimpl
        def trickbag_step_end(self, state):
            seen.append((trick.updates, trick.average is not None))

    run.pm.register(Look())
    result = sweep(run, start=1e-4, end=1.0, steps=20)
    assert len(result.lrs) == 20 and seen == [(0, True)] * 20  # made at fit start, never updated
    assert trick.average is None and trick.updates == 0 and trick.state_dict() == {"average": None, "updates": 0}


RECIPE = """
[data]
name = "digits"
val_size = 297
[model]
name = "small_cnn"
width = 4
[optimizer]
name = "sgd"
lr = 0.05
momentum = 0.9
[training]
epochs = {epochs}
batch_size = 100
precision = "{precision}"
threads = 1
[tricks.ema]
decay = 0.9
warmup = true
"""


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_trickbag_run_with_the_trick(tmp_path, precision):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(epochs=2, precision=precision))
    result = CliRunner().invoke(app, ["run", str(recipe), "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 0, result.output
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert saved["tricks"]["ema"]["updates"] == 30 and saved["eval_model"].keys() == saved["model"].keys()
    assert_state_close(saved["eval_model"], saved["tricks"]["ema"]["average"], rtol=0, atol=0)
    assert (saved["scaler"] is not None) == (precision == "fp16")


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_lr_find_command_runs_with_the_trick(tmp_path, precision):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(epochs=1, precision=precision))
    result = CliRunner().invoke(app, ["lr-find", str(recipe), "--steps", "20", "--out", str(tmp_path / "lr")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "lr" / "lr_find.json").read_text())["steps"] == 20


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_the_tui_sweeps_and_trains_with_the_trick(tmp_path, monkeypatch, precision):
    """The TUI's range test (r) and training tab (4, l) with the trick: the sweep restores it, the
    launched run finishes with the average evaluated and checkpointed."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(epochs=1, precision=precision))

    def swept(app):  # the sweep restored the trick: no average yet
        assert app.session.run.tricks["ema"].average is None

    drive_tui(path, tmp_path / "run", sweep_steps=20, after_sweep=swept)
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert saved["tricks"]["ema"]["updates"] == 15 and "eval_model" in saved


def one_line_error(tmp_path, text, *needles):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\n' + text)
    result = CliRunner().invoke(app, ["check", str(recipe)])
    assert_one_line_error(result, *needles)


@pytest.mark.parametrize("table,needle", [
    ("decay = 1.5", "tricks.ema.decay"),
    ("decay = -0.1", "tricks.ema.decay"),
    ('decay = "0.99"', "tricks.ema.decay"),
    ("warmup = 1", "tricks.ema.warmup"),
    ("every = 0", "tricks.ema.every"),
    ("every = 2.0", "tricks.ema.every"),
    ("device = 'cpu'", "tricks.ema.device"),
])
def test_check_refuses_bad_options_in_one_line(tmp_path, table, needle):
    one_line_error(tmp_path, f"[tricks.ema]\n{table}\n", needle)


def test_ema_and_swa_together_are_refused_in_one_line(tmp_path):
    pytest.importorskip("trickbag_swa")
    one_line_error(tmp_path, "[tricks.ema]\n[tricks.swa]\n", "tricks ema and swa both decide trickbag_eval_model")


def test_check_warns_when_the_run_is_too_short_for_the_decay(tmp_path, caplog):
    from trickbag.engine.assemble import prepare_run

    with caplog.at_level("WARNING", logger="trickbag"):
        prepare_run(build_recipe({"data": DIGITS, "model": CNN, "training": {"epochs": 1, "batch_size": 100}, "tricks": {"ema": {}}})).release()
    assert "tricks.ema: after the run's 15 updates the initial weights still weigh 99% in the average (decay 0.999)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="trickbag"):
        prepare_run(build_recipe({"data": DIGITS, "model": CNN, "training": {"epochs": 1, "batch_size": 100}, "tricks": {"ema": {"decay": 0.8}}})).release()
    assert "tricks.ema" not in caplog.text


# -- resume: killed mid-run, resumed, the same final weights and the same average -------------

RESUME = {"data": {**DIGITS, "crop_padding": 1}, "model": CNN, "training": {"epochs": 3, "batch_size": 50, "seed": 3, "threads": 1},
          "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
          "tricks": {"one_cycle": {}, "mixup": {"alpha": 0.4}, "ema": {"decay": 0.95, "warmup": True, "every": 2}}}


def assert_same_run(got, want):
    a, b = load_checkpoint(got / "checkpoint.pt"), load_checkpoint(want / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 3 and a["tricks"]["ema"]["updates"] == b["tricks"]["ema"]["updates"] == 45
    for key in ("model", "eval_model"):
        assert_state_close(a[key], b[key], rtol=0, atol=0)
    assert_state_close(a["tricks"]["ema"]["average"], b["tricks"]["ema"]["average"], rtol=0, atol=0)
    assert [(r["train_loss"], r["val_acc"]) for r in a["history"]] == [(r["train_loss"], r["val_acc"]) for r in b["history"]]
    best_a, best_b = (torch.load(folder / "best.pt", weights_only=True) for folder in (got, want))
    assert best_a["epoch"] == best_b["epoch"]
    assert_state_close(best_a["model"], best_b["model"], rtol=0, atol=0)


def test_ctrl_c_mid_epoch_resumes_to_identical_weights_and_average(tmp_path):
    fit(build_recipe(RESUME), tmp_path / "reference")

    class CtrlC:
        @hookimpl
        def trickbag_step_end(self, state):
            if state.epoch == 1 and state.step_in_epoch == 17:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(build_recipe(RESUME), tmp_path / "interrupted", observers=[CtrlC()])
    assert load_checkpoint(tmp_path / "interrupted" / "checkpoint.pt")["epoch"] == 1
    fit(build_recipe(RESUME), tmp_path / "interrupted", resume=True)
    assert_same_run(tmp_path / "interrupted", tmp_path / "reference")


KILLER = """
import os, signal, sys
from trickbag.engine.loop import fit
from trickbag.hookspecs import hookimpl
from trickbag.recipe import load_recipe

class Kill:
    @hookimpl
    def trickbag_step_end(self, state):
        if state.epoch == 1 and state.step_in_epoch == 17:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind runs

fit(load_recipe(sys.argv[1]), sys.argv[2], observers=[Kill()])
"""


@pytest.mark.slow
def test_sigkilled_run_resumes_to_identical_weights_and_average(tmp_path):
    """A real SIGKILL mid-epoch: the training process kills itself at a fixed step (so the kill
    always lands mid-run, after one checkpoint), with no cleanup of any kind; the run is then
    resumed from its folder and ends as a run never interrupted (both in this process, one thread)."""
    import tomli_w

    recipe = tmp_path / "r.toml"
    recipe.write_bytes(tomli_w.dumps(RESUME).encode())
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLER), str(recipe), str(tmp_path / "killed")], capture_output=True, text=True, check=False)
    assert killed.returncode == -9, killed.stderr
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["epoch"] == 1
    fit(load_recipe(tmp_path / "killed" / "recipe.toml"), tmp_path / "killed", resume=True)
    fit(load_recipe(recipe), tmp_path / "reference")
    assert_same_run(tmp_path / "killed", tmp_path / "reference")
