"""The LR range test: bit-exact restore (normal end, divergence, Ctrl-C, a raising trick, cancel),
the real training step with tricks and precision, the CLI outputs, DDP."""
from __future__ import annotations

import copy
import csv
import json
import random

import numpy as np
import pytest
import torch
from trickbag.cli.app import app
from trickbag.context import TrainState
from trickbag.engine.assemble import prepare_run
from trickbag.engine.step import begin_epoch, epoch_batches, make_train_step
from trickbag.errors import PluginError
from trickbag.hookspecs import hookimpl
from trickbag.lr_range.sweep import lr_at, lr_find, sweep
from trickbag.plugins import Catalog, TrickOptions, TrickSpec
from trickbag.recipe import build_recipe
from trickbag.testing import torchrun
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")

BASE = {
    "data": {"name": "digits", "val_size": 297, "crop_padding": 1},
    "model": {"name": "small_cnn", "width": 8},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
    "training": {"epochs": 2, "batch_size": 64},
}


def recipe(tricks=None, **over):
    raw = copy.deepcopy(BASE)
    for section, values in over.items():
        raw[section].update(values)
    raw["tricks"] = tricks or {}
    return build_recipe(raw)


def trained_run(r):
    """A run that has taken a few real steps, so the optimizer has momentum buffers to protect."""
    run = prepare_run(r)
    state = TrainState(epochs=2)
    state.generator = torch.Generator()
    begin_epoch(run, state, 0)
    step = make_train_step(run)
    for _, (x, y) in zip(range(3), epoch_batches(run, state)):
        step(x, y, state)
    torch.manual_seed(1234)  # a known global RNG state to compare against
    random.seed(5)
    np.random.seed(6)
    return run


def comparable(value):
    if isinstance(value, np.random.Generator):
        return value.bit_generator.state  # its repr holds an address, its state is what matters
    return copy.deepcopy(value)


def everything(run):
    """Every tensor and value the sweep could change, copied."""
    opt = run.optimizer
    return {
        "model": {k: v.clone() for k, v in run.raw_model.state_dict().items()},
        "opt_state": {i: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in opt.state[p].items()} for i, p in enumerate(run.raw_model.parameters())},
        "groups": [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
        "group_ids": [id(g) for g in opt.param_groups],
        "rng": (torch.get_rng_state().clone(), random.getstate(), np.random.get_state()[1].copy()),
        "training": run.raw_model.training,
        "tricks": {n: {k: comparable(v) for k, v in vars(o).items()} for n, o in run.tricks.items()},
    }


def assert_identical(before, after):
    assert before["model"].keys() == after["model"].keys()
    for key in before["model"]:
        assert torch.equal(before["model"][key], after["model"][key]), key
    for i in before["opt_state"]:
        assert before["opt_state"][i].keys() == after["opt_state"][i].keys()
        for key, value in before["opt_state"][i].items():
            assert torch.equal(value, after["opt_state"][i][key]) if torch.is_tensor(value) else value == after["opt_state"][i][key]
    assert before["groups"] == after["groups"] and before["group_ids"] == after["group_ids"]
    assert torch.equal(before["rng"][0], after["rng"][0])
    assert before["rng"][1] == after["rng"][1] and np.array_equal(before["rng"][2], after["rng"][2])
    assert before["training"] == after["training"]
    for name in before["tricks"]:
        assert before["tricks"][name] == after["tricks"][name]


def test_restored_bit_for_bit_after_a_normal_end():
    run = trained_run(recipe({"mixup": {"alpha": 0.4}}))
    before = everything(run)
    result = sweep(run, start=1e-5, end=1e-2, steps=40)
    assert result.stopped == "end" and len(result.lrs) == 40  # 40 steps cross an epoch boundary (23 per epoch)
    assert_identical(before, everything(run))


def test_restored_after_divergence():
    run = trained_run(recipe())
    before = everything(run)
    result = sweep(run, start=1e-3, end=1e4, steps=100)
    assert result.stopped == "diverged" and len(result.lrs) < 100
    assert_identical(before, everything(run))


def test_restored_after_ctrl_c():
    run = trained_run(recipe())
    before = everything(run)

    def interrupt(i, lr, loss, smoothed):
        if i == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(run, steps=50, on_step=interrupt)
    assert_identical(before, everything(run))


def test_restored_after_a_trick_raises():
    class Breaks:
        @hookimpl
        def trickbag_after_step(self, model, optimizer, state):
            if state.lr > 1e-4:
                raise RuntimeError("boom")

    r = recipe()
    run = prepare_run(r, observers=[Breaks()])
    before = everything(run)
    with pytest.raises(PluginError, match="raised in trickbag_after_step: RuntimeError: boom"):
        sweep(run, steps=60)
    assert_identical(before, everything(run))


def test_cancel_keeps_the_partial_curve_and_restores():
    run = trained_run(recipe())
    before = everything(run)
    calls = []
    result = sweep(run, steps=50, should_stop=lambda: len(calls) >= 12, on_step=lambda *a: calls.append(a))
    assert result.stopped == "cancelled" and len(result.lrs) == 12
    assert_identical(before, everything(run))


def test_sweep_uses_the_real_step_with_tricks_and_precision():
    seen = []

    class Look:
        @hookimpl(wrapper=True)
        def trickbag_loss(self, outputs, batch, model, state):
            seen.append((outputs.dtype, batch.is_soft, state.lr))
            return (yield)

    r = recipe({"mixup": {"alpha": 0.4}, "label_smoothing": {}}, training={"precision": "bf16"})
    run = prepare_run(r, observers=[Look()])
    result = sweep(run, start=1e-4, end=1.0, steps=20)
    assert [lr for _, _, lr in seen] == pytest.approx(result.lrs)
    assert all(dtype == torch.bfloat16 and soft for dtype, soft, _ in seen)
    assert result.lrs == pytest.approx([lr_at(i, 1e-4, 1.0, 20, "exp") for i in range(20)])
    assert result.lrs[0] == pytest.approx(1e-4) and result.lrs[-1] == pytest.approx(1.0)


def test_works_with_the_batch_size_schedule():
    r = recipe({"batch_size_schedule": {"milestones": [1], "factor": 2}})
    result = lr_find(r, None, start=1e-4, end=1e-1, steps=30)
    assert len(result.lrs) == 30


def test_linear_mode_and_smoothing_is_bias_corrected():
    run = trained_run(recipe())
    result = sweep(run, start=1e-4, end=1e-2, steps=10, mode="linear", beta=0.9)
    assert np.allclose(np.diff(result.lrs), (1e-2 - 1e-4) / 9)
    avg = 0.0
    for i, loss in enumerate(result.losses):
        avg = 0.9 * avg + 0.1 * loss
        assert result.smoothed[i] == pytest.approx(avg / (1 - 0.9 ** (i + 1)))
    assert result.smoothed[0] == pytest.approx(result.losses[0])  # no drag towards zero at the start


runner = CliRunner()
QUICK = ["--set", "data.name=digits", "--set", "data.val_size=297", "--set", "model.name=small_cnn", "--set", "model.width=8"]


def test_cli_writes_csv_json_png_and_applies_without_touching_the_original(tmp_path):
    src = tmp_path / "my.toml"
    src.write_text("# my recipe\n[optimizer]\nname = \"sgd\"\nlr = 0.01  # about the old value\nmomentum = 0.9  # keep this comment\n\n[tricks.one_cycle]\n")
    original = src.read_text()
    out = tmp_path / "lr"
    result = runner.invoke(app, ["lr-find", str(src), *QUICK, "--steps", "60", "--out", str(out), "--apply"])
    assert result.exit_code == 0, result.output
    with open(out / "lr_find.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "lr", "loss", "smoothed_loss"] and 10 <= len(rows) <= 60
    data = json.loads((out / "lr_find.json").read_text())
    assert {"rules", "base_lr", "max_lr", "recommended", "reason", "recipe", "settings"} <= set(data)
    assert data["recipe"]["data"]["name"] == "digits"
    assert (out / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert src.read_text() == original
    tuned = tmp_path / "my.tuned.toml"
    text = tuned.read_text()
    assert "# keep this comment" in text and "# my recipe" in text
    assert "# about the old value" not in text and "chosen with the LR range test" in text  # a comment made false is replaced
    import tomllib

    parsed = tomllib.loads(text)
    assert parsed["optimizer"]["lr"] == pytest.approx(data["recommended"], rel=1e-3)
    assert parsed["tricks"]["one_cycle"]["max_lr"] == pytest.approx(data["recommended"], rel=1e-3)
    assert parsed["data"]["name"] == "digits"  # the --set overrides travel with it
    again = runner.invoke(app, ["lr-find", str(src), *QUICK, "--steps", "30", "--out", str(tmp_path / "lr2"), "--apply"])
    assert again.exit_code == 0 and (tmp_path / "my.tuned-2.toml").exists()  # never over an existing file


def test_cli_json_output():
    result = runner.invoke(app, ["lr-find", "quickstart", *QUICK, "--steps", "30", "--json", "--out", "/tmp/trickbag-lr-json-test"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["steps"] <= 30 and "valley" in data["rules"]


@pytest.mark.parametrize("args,needle", [
    (["--start", "0"], "--start"), (["--start", "1", "--end", "0.1"], "--end"), (["--steps", "2"], "--steps"),
    (["--mode", "cubic"], "--mode"), (["--diverge", "1"], "--diverge"),
])
def test_cli_bad_settings(args, needle):
    result = runner.invoke(app, ["lr-find", "quickstart", *args])
    assert result.exit_code == 2 and needle in result.stderr and "Traceback" not in result.output


@pytest.mark.slow
def test_ddp_ranks_stop_together_and_only_rank0_writes(tmp_path):
    recipe_file = tmp_path / "r.toml"
    recipe_file.write_text('[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\n[training]\nbatch_size = 32\nthreads = 1\n')
    proc = torchrun(["lr-find", str(recipe_file), "--steps", "200", "--start-lr", "1e-3", "--end-lr", "1e4", "--out", str(tmp_path / "out"), "--json"], fresh=tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["stopped"] == "diverged" and data["steps"] < 200
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["lr_find.csv", "lr_find.json", "lr_find.png"]


def test_fp16_sweep_restores_the_grad_scaler():
    run = trained_run(recipe(training={"precision": "fp16"}))
    before_scaler = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in run.scaler.state_dict().items()}
    before = everything(run)
    result = sweep(run, start=1e-3, end=1e4, steps=60)  # diverges: the scaler backs off on inf grads
    assert result.stopped == "diverged"
    assert_identical(before, everything(run))
    after = run.scaler.state_dict()
    assert before_scaler.keys() == after.keys()
    for key, value in before_scaler.items():
        assert (torch.equal(value, after[key]) if torch.is_tensor(value) else value == after[key]), key


# --- tricks that prepare themselves in fit_start or hold torch-style state -------------------------


EVENTS: list[str] = []  # outside the trick: the sweep restores the trick's own attributes


class NeedsFitStart:
    """Like a distillation trick: its teacher exists only after fit_start, as docs/hooks.md says."""

    def __init__(self, options):
        self.teacher = None

    @hookimpl
    def trickbag_fit_start(self, context):
        self.teacher = copy.deepcopy(context.model).eval()
        EVENTS.append("fit_start")

    @hookimpl
    def trickbag_epoch_start(self, state):
        EVENTS.append("epoch_start")

    @hookimpl
    def trickbag_transform_batch(self, batch, state):
        if self.teacher is None:
            raise RuntimeError("no teacher: fit_start was not called")

    @hookimpl
    def trickbag_step_end(self, state):
        assert state.sweep and state.loss is not None
        EVENTS.append("step_end")


class LiveEMA:
    """A torch-style stateful trick: ``state_dict`` hands out the live tensors it keeps updating."""

    def __init__(self, options):
        self.shadow = None

    @hookimpl
    def trickbag_after_step(self, model, optimizer, state):
        if self.shadow is None:
            self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
        for key, value in model.state_dict().items():
            if key in self.shadow:
                self.shadow[key].lerp_(value, 0.5)  # in place, as torch's AveragedModel does

    def state_dict(self):
        return {"shadow": self.shadow}

    def load_state_dict(self, state):
        self.shadow = state["shadow"]


def trick_catalog():
    import types

    module = types.ModuleType("trickbag_test_stateful")
    module.trickbag_declare_tricks = hookimpl(lambda: [
        TrickSpec("needs_fit_start", TrickOptions, NeedsFitStart, "teacher from fit_start"),
        TrickSpec("live_ema", TrickOptions, LiveEMA, "EMA with live state"),
    ])
    return Catalog().load(extra_modules=[module])


def test_a_sweep_calls_fit_start_epoch_start_and_step_end():
    catalog = trick_catalog()
    r = build_recipe({**copy.deepcopy(BASE), "tricks": {"needs_fit_start": {}}}, catalog=catalog)
    run = prepare_run(r, catalog=catalog)
    EVENTS.clear()
    result = sweep(run, start=1e-5, end=1e-2, steps=40)  # 23 steps per epoch: two epochs start
    assert result.stopped == "end"
    assert EVENTS == ["fit_start", "epoch_start"] + ["step_end"] * 23 + ["epoch_start"] + ["step_end"] * 17
    assert run.tricks["needs_fit_start"].teacher is None  # restored as it was before the sweep


def test_stateful_trick_is_restored_exactly():
    catalog = trick_catalog()
    r = build_recipe({**copy.deepcopy(BASE), "tricks": {"live_ema": {}}}, catalog=catalog)
    run = prepare_run(r, catalog=catalog)
    state = TrainState(epochs=2)
    state.generator = torch.Generator()
    begin_epoch(run, state, 0)
    step = make_train_step(run)
    for _, (x, y) in zip(range(3), epoch_batches(run, state)):  # the EMA now holds an average
        step(x, y, state)
    ema = run.tricks["live_ema"]
    before = {k: v.clone() for k, v in ema.shadow.items()}
    sweep(run, start=1e-4, end=1.0, steps=30)
    assert before.keys() == ema.shadow.keys()
    assert all(torch.equal(before[k], ema.shadow[k]) for k in before)


def test_restore_is_not_interrupted_by_a_second_ctrl_c(monkeypatch):
    """Ctrl-C during the restore (a second one, right after the first) is held until the restore is
    done, then raised: the run is never left half restored."""
    import os
    import signal

    from trickbag.lr_range import sweep as sweep_module

    run = trained_run(recipe())
    before = everything(run)
    original = sweep_module.Snapshot.restore

    def restore_with_a_signal(self, run_):
        os.kill(os.getpid(), signal.SIGINT)  # arrives while restoring
        original(self, run_)

    monkeypatch.setattr(sweep_module.Snapshot, "restore", restore_with_a_signal)

    def interrupt(i, lr, loss, smoothed):
        if i == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(run, steps=50, on_step=interrupt)
    assert_identical(before, everything(run))


def test_apply_with_nothing_to_apply_exits_3_and_says_how_to_widen(tmp_path):
    """A sweep too narrow to show a fall: one 'no recommendation' line, nothing written, exit code 3
    (not 0: a script must not go on with an untuned recipe), and how to widen the sweep."""
    src = tmp_path / "my.toml"
    src.write_text("[optimizer]\nname = \"sgd\"\nlr = 0.01\n")
    result = runner.invoke(app, ["lr-find", str(src), *QUICK, "--steps", "10", "--start", "1e-9", "--end", "1e-8",
                                 "--out", str(tmp_path / "lr"), "--apply"])
    assert result.exit_code == 3, result.output
    assert result.stdout.count("no recommendation") == 1 and "no recommendation: no recommendation" not in result.stdout
    assert "--apply: no recommendation on this curve, nothing written; widen the sweep (--start 1e-11 --end 1e-07)" in result.stderr
    assert not list(tmp_path.glob("*.tuned*.toml")) and (tmp_path / "lr" / "lr_find.csv").exists()


def test_the_sweep_runs_at_the_momentum_that_trains_at_its_peak_lr():
    """One-cycle cycles momentum 0.95 -> 0.85 (at the LR peak) -> 0.95: the sweep, which measures
    high LRs, runs at 0.85 rather than the optimizer's own 0.9, then gives the optimizer back."""
    seen = []

    class Look:
        @hookimpl
        def trickbag_step_end(self, state):
            seen.append((state.momentum, state.lr))

    run = prepare_run(recipe({"one_cycle": {"base_momentum": 0.8, "max_momentum": 0.97}}), observers=[Look()])
    before = [g["momentum"] for g in run.optimizer.param_groups]
    result = sweep(run, start=1e-4, end=1.0, steps=20)
    # the momentum of the step where the run's LR is highest (one-cycle's peak falls between two steps)
    assert all(m == result.settings["momentum"] for m, _ in seen) and len(seen) == 20
    assert result.settings["momentum"] == pytest.approx(0.8, abs=1e-3)
    assert [g["momentum"] for g in run.optimizer.param_groups] == before == [0.9]
    plain = prepare_run(recipe())
    assert sweep(plain, start=1e-4, end=1.0, steps=10).settings["momentum"] is None  # no schedule: the optimizer's own


def test_the_sweep_records_what_the_recipe_says_and_shows_the_interval(tmp_path, monkeypatch):
    """The recipe's side of the recommendation (schedule, length, momentum, batch) is recorded with
    the sweep, and the benchmark's 0.5-point interval is drawn around the recommendation: in the
    printed suggestions, in lr_find.json and in lr_find.png."""
    from rich.console import Console
    from trickbag.lr_range import suggest as suggest_module
    from trickbag.lr_range.outputs import read_outputs, write_outputs
    from trickbag.lr_range.report import print_suggestions

    monkeypatch.setattr(suggest_module, "WITHIN_HALF_POINT", (0.5, 3.0))
    run = prepare_run(recipe({"one_cycle": {}}))
    result = sweep(run, start=1e-4, end=10.0, steps=60)
    facts = result.settings["recipe"]
    assert facts == {"schedule": "one_cycle", "total_steps": 2 * run.context.steps_per_epoch, "steps_per_epoch": run.context.steps_per_epoch,
                     "epochs": 2, "momentum": pytest.approx(0.85, abs=1e-3), "optimizer": "sgd", "batch_size": 64}
    s = result.suggestions
    assert s.recommended and s.interval == (pytest.approx(s.recommended * 0.5), pytest.approx(s.recommended * 3.0))
    console = Console(record=True, width=200)
    print_suggestions(console, result)
    assert f"likely within 0.5 accuracy points of the best: {s.interval[0]:.3g} to {s.interval[1]:.3g}" in console.export_text()
    write_outputs(result, tmp_path, run.recipe.to_dict())
    assert read_outputs(tmp_path).suggestions.interval == s.interval and (tmp_path / "lr_find.png").stat().st_size > 0
    plain = prepare_run(recipe())
    assert sweep(plain, start=1e-4, end=10.0, steps=10).settings["recipe"]["schedule"] == "constant"
