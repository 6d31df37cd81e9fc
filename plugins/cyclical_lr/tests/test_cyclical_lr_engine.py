"""Through the real loop and CLI: the LR each step trained at, batch-size changes, the LR bounds'
full path, `trickbag check` and `trickbag lr-find`."""
import csv
import json

import pytest
import torch
import trickbag_cyclical_lr
from trickbag.cli.app import app
from trickbag.testing import assert_one_line_error as one_line_error
from trickbag.testing import run_trick
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

SPE = 15  # run_trick's digits: 1500 training samples at batch 100
QUICK = ["--set", "data.name=digits", "--set", "data.val_size=297", "--set", "model.name=mlp", "--set", "model.width=16"]


def torch_cyclic(iterations, step_size_up, **kw):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, step_size_up=step_size_up, **kw)
    lrs, moms = [], []
    for _ in range(iterations):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    return lrs, moms


@pytest.mark.parametrize("mode, epochs", [("triangular", 1), ("triangular2", 1.6), ("exp_range", 2.3)])
def test_the_loop_trains_at_torch_cyclic_lr_every_step(mode, epochs):
    """LR and momentum the loop used, step by step, fractional last epochs included."""
    options = {"mode": mode, "step_size": 0.2, "base_lr": 0.005, "gamma": 0.5, "cycle_momentum": True}
    run = run_trick({"cyclical_lr": options}, modules=[trickbag_cyclical_lr], training={"epochs": epochs})
    assert len(run.steps) == {1: 15, 1.6: 24, 2.3: 35}[epochs]
    lrs, moms = torch_cyclic(len(run.steps), 0.2 * SPE, base_lr=0.005, max_lr=0.05, mode=mode, gamma=0.5 ** (1 / SPE))
    assert [s.lr for s in run.steps] == pytest.approx(lrs, rel=1e-12)
    assert [s.momentum for s in run.steps] == pytest.approx(moms, rel=1e-12)


def test_batch_size_schedule_keeps_a_cycle_at_two_step_sizes_in_epochs():
    """Batch 100 then 300 from epoch 1 (15 then 5 steps an epoch): a cycle is still 2 x 0.4 = 0.8
    epochs, and exp_range's gamma still shrinks the amplitude per epoch: every step is torch's
    CyclicLR at iteration progress x 15 (the recipe's batch size), not at the step count."""
    options = {"mode": "exp_range", "gamma": 0.5, "step_size": 0.4, "base_lr": 0.01, "max_lr": 0.05, "cycle_momentum": True}
    run = run_trick({"cyclical_lr": options, "batch_size_schedule": {"milestones": [1], "factor": 3}},
                    modules=[trickbag_cyclical_lr], training={"epochs": 3})
    assert [s.batch_size for s in run.steps] == [100] * 15 + [300] * 10
    lrs, moms = torch_cyclic(3 * SPE, 0.4 * SPE, base_lr=0.01, max_lr=0.05, mode="exp_range", gamma=0.5 ** (1 / SPE))
    for s in run.steps:
        assert s.lr == pytest.approx(lrs[round(s.progress * SPE)], rel=1e-9)
        assert s.momentum == pytest.approx(moms[round(s.progress * SPE)], rel=1e-9)
    # minima at 0, 0.8, 1.6, 2.4 epochs and peaks at 0.4, 1.2, 2.0, 2.8, at either batch size
    lows = [s for s in run.steps if round(s.progress / 0.4, 9) % 2 == 0]
    peaks = [s for s in run.steps if round(s.progress / 0.4, 9) % 2 == 1]
    assert [round(s.progress, 9) for s in lows] == [0, 0.8, 1.6, 2.4]
    assert [round(s.progress, 9) for s in peaks] == [0.4, 1.2, 2.0, 2.8]
    assert all(s.lr == pytest.approx(0.01) and s.momentum == pytest.approx(0.9) for s in lows)
    assert all(s.lr == pytest.approx(0.01 + 0.04 * 0.5**s.progress) and s.momentum < 0.9 for s in peaks)


def test_bounds_reach_the_options_through_the_engine():
    """lr-find --apply's path: bound_edits on a prepared run, written into the recipe, make the
    run's schedule span exactly (base_lr, max_lr); the engine's default adds optimizer.lr."""
    from trickbag.engine.assemble import prepare_run
    from trickbag.lr_range.bounds import apply_edits, bound_edits
    from trickbag.recipe import build_recipe

    raw = {"data": {"name": "digits", "val_size": 297}, "model": {"name": "mlp", "width": 16}, "optimizer": {"name": "sgd", "lr": 0.05},
           "training": {"epochs": 4, "batch_size": 100}, "tricks": {"cyclical_lr": {"step_size": 1.0}}}
    run = prepare_run(build_recipe(raw))
    edits, notes = bound_edits(run.pm, run.context, 0.4, 0.01)
    run.release()
    assert edits == {"tricks.cyclical_lr.max_lr": 0.4, "tricks.cyclical_lr.base_lr": 0.01, "optimizer.lr": 0.4} and notes == []
    apply_edits(raw, edits)
    tuned = prepare_run(build_recipe(raw))
    lrs = [tuned.lr_schedule(k / SPE) for k in range(4 * SPE)]
    tuned.release()
    assert (min(lrs), max(lrs)) == pytest.approx((0.01, 0.4))


@pytest.mark.parametrize("table, needles", [
    ("step_size = -2.0", ["tricks.cyclical_lr.step_size", "greater than 0"]),
    ("base_lr = 0.3\nmax_lr = 0.2", ["tricks.cyclical_lr", "base_lr 0.3 must be below max_lr 0.2"]),
    ("base_lr = 0.3", ["tricks.cyclical_lr.base_lr 0.3", "optimizer.lr 0.1"]),  # the trick's own check
    ("[tricks.one_cycle]", ["tricks cyclical_lr and one_cycle both decide trickbag_lr_schedule"]),  # one schedule decider per recipe
])
def test_trickbag_check_refuses_bad_options_in_one_line(tmp_path, table, needles):
    path = tmp_path / "r.toml"
    path.write_text(f"[optimizer]\nlr = 0.1\n\n[tricks.cyclical_lr]\n{table}\n")
    one_line_error(CliRunner().invoke(app, ["check", str(path), *QUICK]), *needles)


def test_lr_find_sweeps_its_own_lrs_at_the_cycle_peak_momentum(tmp_path):
    """The range test replaces the schedule: log-spaced LRs, at the momentum of the LR peak."""
    from trickbag.lr_range.sweep import lr_at

    path = tmp_path / "r.toml"
    path.write_text('[optimizer]\nname = "sgd"\nlr = 0.1\nmomentum = 0.9\n\n[tricks.cyclical_lr]\ncycle_momentum = true\n')
    out = tmp_path / "lr"
    result = CliRunner().invoke(app, ["lr-find", str(path), *QUICK, "--steps", "20", "--start", "1e-4", "--end", "1", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    with open(out / "lr_find.csv") as f:
        lrs = [float(row["lr"]) for row in csv.DictReader(f)]
    assert 5 <= len(lrs) <= 20 and lrs == pytest.approx([lr_at(i, 1e-4, 1, 20, "exp") for i in range(len(lrs))])
    assert json.loads((out / "lr_find.json").read_text())["settings"]["momentum"] == pytest.approx(0.8)
