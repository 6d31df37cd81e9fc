"""Through the real loop and CLI: the LR each step trained at, batch-size changes, the LR bounds'
full path, `trickbag check` and `trickbag lr-find`."""
import csv

import pytest
import torch
import trickbag_sgdr
from trickbag.cli.app import app
from trickbag.testing import assert_one_line_error as one_line_error
from trickbag.testing import run_trick
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

SPE = 15  # run_trick's digits: 1500 training samples at batch 100
QUICK = ["--set", "data.name=digits", "--set", "data.val_size=297", "--set", "model.name=mlp", "--set", "model.width=16"]


def torch_by_iteration(iterations, max_lr=0.05, **kw):
    """CosineAnnealingWarmRestarts stepped once per batch (T_0 in iterations)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=max_lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, **kw)
    lrs = []
    for _ in range(iterations):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("T_mult, epochs", [(1, 1), (2, 2.3)])
def test_the_loop_trains_at_torch_warm_restarts_every_step(T_mult, epochs):
    """T_0 = 0.4 epochs = 6 iterations; restarts after 6, then 12, 24 iterations with T_mult 2."""
    run = run_trick({"sgdr": {"T_0": 0.4, "T_mult": T_mult, "eta_min": 1e-4}}, modules=[trickbag_sgdr], training={"epochs": epochs})
    assert len(run.steps) == {1: 15, 2.3: 35}[epochs]
    lrs = torch_by_iteration(len(run.steps), T_0=6, T_mult=T_mult, eta_min=1e-4)
    assert [s.lr for s in run.steps] == pytest.approx(lrs, rel=1e-12)
    assert [s.momentum for s in run.steps] == [0.9] * len(run.steps)  # SGDR leaves momentum alone


def test_the_loop_equals_torch_stepped_with_the_float_epoch():
    run = run_trick({"sgdr": {"T_0": 1.0, "T_mult": 1}}, modules=[trickbag_sgdr], training={"epochs": 1.5})
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=1)
    for s in run.steps:
        sched.step(s.progress)
        assert s.lr == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)


def test_batch_size_schedule_keeps_restarts_on_progress():
    """Batch 100 then 300 from epoch 1 (15 then 5 steps an epoch): restarts stay every 0.4 epochs,
    and every step is torch's LR at iteration progress x 15 (the recipe's batch size)."""
    run = run_trick({"sgdr": {"T_0": 0.4, "T_mult": 1}, "batch_size_schedule": {"milestones": [1], "factor": 3}},
                    modules=[trickbag_sgdr], training={"epochs": 3})
    assert [s.batch_size for s in run.steps] == [100] * 15 + [300] * 10
    lrs = torch_by_iteration(3 * SPE, T_0=6)
    assert [s.lr for s in run.steps] == pytest.approx([lrs[round(s.progress * SPE)] for s in run.steps], rel=1e-9, abs=1e-15)
    restarts = [round(s.progress, 9) for s in run.steps if s.lr == pytest.approx(0.05, rel=1e-12)]
    assert restarts == [0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8]


def test_bounds_reach_the_options_through_the_engine():
    """lr-find --apply's path: bound_edits on a prepared run, written into the recipe, make the run
    start at max_lr and anneal to eta_min = base_lr; the engine's default adds optimizer.lr."""
    from trickbag.engine.assemble import prepare_run
    from trickbag.lr_range.bounds import apply_edits, bound_edits
    from trickbag.recipe import build_recipe

    raw = {"data": {"name": "digits", "val_size": 297}, "model": {"name": "mlp", "width": 16}, "optimizer": {"name": "sgd", "lr": 0.05},
           "training": {"epochs": 3, "batch_size": 100}, "tricks": {"sgdr": {"T_0": 1.0, "T_mult": 2}}}
    run = prepare_run(build_recipe(raw))
    edits, notes = bound_edits(run.pm, run.context, 0.4, 0.01)
    run.release()
    assert edits == {"tricks.sgdr.max_lr": 0.4, "tricks.sgdr.eta_min": 0.01, "optimizer.lr": 0.4} and notes == []
    apply_edits(raw, edits)
    tuned = prepare_run(build_recipe(raw))
    lr_of = tuned.lr_schedule
    tuned.release()
    lrs = [lr_of(k / 1000) for k in range(3000)]
    assert (lr_of(0.0), lr_of(1.0), lr_of(3.0)) == (0.4, 0.4, 0.4) and min(lrs) == pytest.approx(0.01, rel=1e-4)


@pytest.mark.parametrize("table, needles", [
    ("T_mult = 2.5", ["tricks.sgdr.T_mult", "integer"]),
    ("T_0 = -1.0", ["tricks.sgdr.T_0", "greater than 0"]),
    ("eta_min = 0.3\nmax_lr = 0.2", ["tricks.sgdr", "eta_min 0.3 must be below max_lr 0.2"]),
    ("eta_min = 0.3", ["tricks.sgdr.eta_min 0.3", "optimizer.lr 0.1"]),  # the trick's own check
    ("[tricks.one_cycle]", ["tricks one_cycle and sgdr both decide trickbag_lr_schedule"]),  # one schedule decider per recipe
])
def test_trickbag_check_refuses_bad_options_in_one_line(tmp_path, table, needles):
    path = tmp_path / "r.toml"
    path.write_text(f"[optimizer]\nlr = 0.1\n\n[tricks.sgdr]\n{table}\n")
    one_line_error(CliRunner().invoke(app, ["check", str(path), *QUICK]), *needles)


def test_lr_find_sweeps_its_own_lrs(tmp_path):
    """The range test replaces the schedule: log-spaced LRs, not the warm restarts."""
    from trickbag.lr_range.sweep import lr_at

    path = tmp_path / "r.toml"
    path.write_text('[optimizer]\nname = "sgd"\nlr = 0.1\n\n[tricks.sgdr]\nT_0 = 0.2\n')
    out = tmp_path / "lr"
    result = CliRunner().invoke(app, ["lr-find", str(path), *QUICK, "--steps", "20", "--start", "1e-4", "--end", "1", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    with open(out / "lr_find.csv") as f:
        lrs = [float(row["lr"]) for row in csv.DictReader(f)]
    assert 5 <= len(lrs) <= 20 and lrs == pytest.approx([lr_at(i, 1e-4, 1, 20, "exp") for i in range(len(lrs))])
