import copy
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, update_bn
from trickbag.cli.app import app
from trickbag.data import load_data
from trickbag.engine.evaluate import evaluate
from trickbag.engine.loop import fit
from trickbag.hookspecs import hookimpl
from trickbag.recipe import build_recipe, load_recipe
from trickbag.runs.checkpoint import load_checkpoint
from trickbag.runs.model import load_model
from trickbag.services import resume_recipe
from trickbag.testing import assert_one_line_error, drive_tui, plugin_row, run_trick
from trickbag_swa import default_start
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

DIGITS = {"name": "digits", "val_size": 297}  # 1,500 training samples
CNN = {"name": "small_cnn", "width": 4}  # convs, BatchNorm, a linear head
FOUR_EPOCHS = {"epochs": 4, "batch_size": 100}  # 15 steps an epoch
HEAD = "20.weight"  # small_cnn's linear classifier


def test_listed_by_trickbag_plugins():
    row = plugin_row("swa")
    assert row["distribution"] == "trickbag-swa"
    assert row["hooks"] == ["trickbag_after_step", "trickbag_check", "trickbag_eval_model", "trickbag_fit_start"]
    assert {k: v["default"] for k, v in row["options"].items()} == {"enabled": True, "start_epoch": None, "every": 1, "unit": "epoch"}


def floats(state):
    return {k: v for k, v in state.items() if v.is_floating_point()}


def assert_state_close(actual, expected, **tolerance):
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key].double(), expected[key].double(), **tolerance, msg=key)


class Oracle:
    """torch's AveragedModel (equal averaging) fed the model after the same steps, the snapshots
    themselves, and at every validation: what the run scored against the oracle's average with
    ``update_bn`` over the training batches of the epoch whose end first saw the current average (an
    epoch that added no snapshot reuses them), or the training model before the first snapshot."""

    def __init__(self, snapshot_at):
        self.snapshot_at = snapshot_at  # (epoch, step_in_epoch) -> bool
        self.snapshots, self.checked = [], []

    @hookimpl
    def trickbag_fit_start(self, context):
        self.model, self.train, self.seed = context.model, context.train, context.recipe.training.seed
        self.trick = context.tricks["swa"]
        self.average = AveragedModel(context.model)

    @hookimpl
    def trickbag_after_step(self, model, optimizer, state):
        if self.snapshot_at(state):
            self.average.update_parameters(self.model)
            self.snapshots.append({k: v.detach().double().clone() for k, v in self.model.named_parameters()})

    @hookimpl
    def trickbag_eval_end(self, state, metrics):
        if not self.snapshots:
            assert self.trick.n == 0
            self.checked.append((state.epoch, "model", metrics["val_acc"]))
            return
        if getattr(self, "bn_for", None) != len(self.snapshots):
            oracle = copy.deepcopy(self.average.module)
            update_bn((x for x, _ in self.train.batches(state.batch_size, state.epoch, self.seed)), oracle)
            self.last_oracle, self.bn_for = oracle, len(self.snapshots)
        oracle = self.last_oracle
        assert self.trick.n == len(self.snapshots)
        assert_state_close(self.trick.average.state_dict(), oracle.state_dict(), rtol=1e-5, atol=1e-6)
        self.checked.append((state.epoch, "average", metrics["val_acc"]))


def epoch_ends(start, every, steps=15):
    return lambda s: s.epoch + 1 >= start and s.step_in_epoch == steps - 1 and (s.epoch + 1 - start) % every == 0


@pytest.mark.parametrize("options,snapshot_at,count,first", [
    ({"start_epoch": 2}, epoch_ends(2, 1), 3, 1),
    ({"start_epoch": 1, "every": 2}, epoch_ends(1, 2), 2, 0),
    ({"start_epoch": 3, "unit": "step", "every": 4}, lambda s: s.epoch >= 2 and (s.global_step + 1) % 4 == 0, 8, 2),
    ({}, epoch_ends(4, 1), 1, 3),  # the default start: the epoch after 75% of 4
])
def test_the_average_is_torch_averaged_model_fed_the_same_weights_with_batchnorm_recomputed(options, snapshot_at, count, first):
    """``first``: the 0-based epoch whose validation first scores the average."""
    oracle = Oracle(snapshot_at)
    out = run_trick({"swa": options}, observers=[oracle], data=DIGITS, model=CNN, training=FOUR_EPOCHS)
    trick = out.tricks["swa"]
    assert trick.n == len(oracle.snapshots) == count
    # the parameters: the plain mean of the snapshots
    mean = {k: torch.stack([s[k] for s in oracle.snapshots]).mean(0) for k in oracle.snapshots[0]}
    assert_state_close(dict(trick.average.named_parameters()), mean, rtol=1e-5, atol=1e-6)
    # every validation scored the oracle's model: the training model before the first snapshot, then the average
    assert [(e, what) for e, what, _ in oracle.checked] == [(e, "model" if e < first else "average") for e in range(4)]
    _, val = load_data(build_recipe({"data": DIGITS, "model": CNN}).data, torch.device("cpu"))
    assert out.summary["history"][-1]["val_acc"] == evaluate(oracle.last_oracle, val, 1000, None, torch.device("cpu"))["val_acc"]
    if count > 1:  # the average is not the last weights: the claim has teeth
        assert not torch.allclose(trick.average.state_dict()[HEAD], oracle.model.state_dict()[HEAD], rtol=1e-3)


def test_batchnorm_statistics_are_recomputed_not_copied():
    """The average's running statistics are those of one pass of the average itself over the data:
    not the training model's (which the buffers copy at each snapshot), and different from them."""
    class Model:
        @hookimpl
        def trickbag_fit_start(self, context):
            self.model = context.model

    model = Model()
    out = run_trick({"swa": {"start_epoch": 1}}, observers=[model], data=DIGITS, model=CNN, training={"epochs": 2, "batch_size": 100})
    ours, theirs = out.tricks["swa"].average.state_dict(), model.model.state_dict()
    assert ours["1.num_batches_tracked"].item() == 15  # one pass of 15 batches (momentum None: their mean)
    assert not torch.allclose(ours["1.running_mean"], theirs["1.running_mean"], rtol=1e-3)


def test_before_the_first_snapshot_the_training_model_is_scored(tmp_path):
    """Until start_epoch ends, rows are those of the same run without the trick, and checkpoint.pt
    has no eval_model; from then on best.pt and eval_model hold the average."""
    out = run_trick({"swa": {"start_epoch": 3}}, out_dir=tmp_path / "run", data=DIGITS, model=CNN, training=FOUR_EPOCHS)
    plain = run_trick({}, data=DIGITS, model=CNN, training=FOUR_EPOCHS)
    mine, theirs = out.summary["history"], plain.summary["history"]
    assert [(r["train_loss"], r["val_acc"]) for r in mine[:2]] == [(r["train_loss"], r["val_acc"]) for r in theirs[:2]]
    assert [r["train_loss"] for r in mine] == [r["train_loss"] for r in theirs]  # averaging never touches training
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert saved["tricks"]["swa"]["n"] == 2 and saved["tricks"]["swa"]["start_epoch"] == 3
    assert_state_close(saved["eval_model"], saved["tricks"]["swa"]["average"], rtol=0, atol=0)
    loaded = load_model(tmp_path / "run")
    assert_state_close(loaded.model.state_dict(), saved["eval_model"], rtol=0, atol=0)
    # best.pt holds the weights whose val_acc made them best (the training model's or the average's)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["val_acc"] == max(r["val_acc"] for r in mine)
    loaded.model.load_state_dict(best["model"])
    _, val = load_data(build_recipe({"data": DIGITS, "model": CNN}).data, torch.device("cpu"))
    assert evaluate(loaded.model, val, 1000, None, torch.device("cpu"))["val_acc"] == best["val_acc"]


def test_default_start_and_a_start_after_the_run(tmp_path):
    assert [default_start(e) for e in (1, 2, 4, 10, 10.5, 100)] == [1, 2, 4, 8, 9, 76]
    one_line_error(tmp_path, "[training]\nepochs = 5\n[tricks.swa]\nstart_epoch = 6\n",
                   "tricks.swa.start_epoch 6 is after the run's last epoch (5): nothing would be averaged")


def test_a_range_test_leaves_the_average_alone():
    from trickbag.engine.assemble import prepare_run
    from trickbag.lr_range.sweep import sweep

    recipe = build_recipe({"data": DIGITS, "model": CNN, "training": {"epochs": 1, "batch_size": 100},
                           "tricks": {"swa": {"start_epoch": 1, "unit": "step"}}})
    run = prepare_run(recipe)
    trick, seen = run.tricks["swa"], []

    class Look:
        @hookimpl
        def trickbag_step_end(self, state):
            seen.append(trick.n)

    run.pm.register(Look())
    result = sweep(run, start=1e-4, end=1.0, steps=20)
    assert len(result.lrs) == 20 and seen == [0] * 20  # a snapshot every step otherwise
    assert trick.n == 0 and trick.bn_at == 0 and trick.state_dict()["average"] is None


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
[tricks.swa]
start_epoch = 1
unit = "step"
every = 5
"""


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_trickbag_run_with_the_trick(tmp_path, precision):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(epochs=2, precision=precision))
    result = CliRunner().invoke(app, ["run", str(recipe), "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 0, result.output
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert saved["tricks"]["swa"]["n"] == 6 and saved["tricks"]["swa"]["bn_at"] == 6
    assert_state_close(saved["eval_model"], saved["tricks"]["swa"]["average"], rtol=0, atol=0)
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
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(epochs=1, precision=precision))

    def swept(app):  # the sweep restored the trick: no average yet
        assert app.session.run.tricks["swa"].n == 0

    drive_tui(path, tmp_path / "run", sweep_steps=20, after_sweep=swept)
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert saved["tricks"]["swa"]["n"] == 3 and "eval_model" in saved


def one_line_error(tmp_path, text, *needles):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\n' + text)
    result = CliRunner().invoke(app, ["check", str(recipe)])
    assert_one_line_error(result, *needles)


@pytest.mark.parametrize("table,needle", [
    ("start_epoch = 0", "tricks.swa.start_epoch"),
    ("start_epoch = 2.5", "tricks.swa.start_epoch"),
    ('start_epoch = "3"', "tricks.swa.start_epoch"),
    ("every = 0", "tricks.swa.every"),
    ('unit = "cycle"', "tricks.swa.unit"),
    ("swa_lr = 0.05", "tricks.swa.swa_lr"),
])
def test_check_refuses_bad_options_in_one_line(tmp_path, table, needle):
    one_line_error(tmp_path, f"[tricks.swa]\n{table}\n", needle)


# -- resume: killed mid-run, resumed, the same final weights and the same average -------------

RESUME = {"data": {**DIGITS, "crop_padding": 1}, "model": CNN, "training": {"epochs": 4, "batch_size": 50, "seed": 3, "threads": 1},
          "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
          "tricks": {"one_cycle": {}, "mixup": {"alpha": 0.4}, "swa": {"start_epoch": 1}}}


def assert_same_run(got, want, snapshots=4):
    a, b = load_checkpoint(got / "checkpoint.pt"), load_checkpoint(want / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] and a["tricks"]["swa"]["n"] == b["tricks"]["swa"]["n"] == snapshots
    for key in ("model", "eval_model"):
        assert_state_close(a[key], b[key], rtol=0, atol=0)
    assert_state_close(a["tricks"]["swa"]["average"], b["tricks"]["swa"]["average"], rtol=0, atol=0)
    assert [(r["train_loss"], r["val_acc"]) for r in a["history"]] == [(r["train_loss"], r["val_acc"]) for r in b["history"]]
    best_a, best_b = (torch.load(folder / "best.pt", weights_only=True) for folder in (got, want))
    assert best_a["epoch"] == best_b["epoch"]
    assert_state_close(best_a["model"], best_b["model"], rtol=0, atol=0)


def test_ctrl_c_mid_epoch_resumes_to_identical_weights_and_average(tmp_path):
    fit(build_recipe(RESUME), tmp_path / "reference")

    class CtrlC:
        @hookimpl
        def trickbag_step_end(self, state):
            if state.epoch == 2 and state.step_in_epoch == 17:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(build_recipe(RESUME), tmp_path / "interrupted", observers=[CtrlC()])
    assert load_checkpoint(tmp_path / "interrupted" / "checkpoint.pt")["tricks"]["swa"]["n"] == 2  # the average had begun
    fit(build_recipe(RESUME), tmp_path / "interrupted", resume=True)
    assert_same_run(tmp_path / "interrupted", tmp_path / "reference")


def test_extending_a_run_keeps_the_start_the_average_began_with(tmp_path):
    """--resume --epochs 8 on a 4-epoch run with the default start (epoch 4): the default for 8
    epochs would be 7, but the average already holds epoch 4, so it goes on with 5, 6, 7, 8."""
    raw = {**RESUME, "tricks": {"swa": {}}}
    fit(build_recipe(raw), tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["tricks"]["swa"]["n"] == 1
    fit(resume_recipe(tmp_path / "run", epochs=8), tmp_path / "run", resume=True)
    swa = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["tricks"]["swa"]
    assert (swa["n"], swa["start_epoch"]) == (5, 4)


KILLER = """
import os, signal, sys
from trickbag.engine.loop import fit
from trickbag.hookspecs import hookimpl
from trickbag.recipe import load_recipe

class Kill:
    @hookimpl
    def trickbag_step_end(self, state):
        if state.epoch == 2 and state.step_in_epoch == 17:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind runs

fit(load_recipe(sys.argv[1]), sys.argv[2], observers=[Kill()])
"""


@pytest.mark.slow
def test_sigkilled_run_resumes_to_identical_weights_and_average(tmp_path):
    """A real SIGKILL mid-epoch, after the average has begun (the process kills itself at a fixed
    step, with no cleanup of any kind); resumed from its folder, it ends as a run never interrupted."""
    import tomli_w

    recipe = tmp_path / "r.toml"
    recipe.write_bytes(tomli_w.dumps(RESUME).encode())
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLER), str(recipe), str(tmp_path / "killed")], capture_output=True, text=True, check=False)
    assert killed.returncode == -9, killed.stderr
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["tricks"]["swa"]["n"] == 2
    fit(load_recipe(tmp_path / "killed" / "recipe.toml"), tmp_path / "killed", resume=True)
    fit(load_recipe(recipe), tmp_path / "reference")
    assert_same_run(tmp_path / "killed", tmp_path / "reference")
