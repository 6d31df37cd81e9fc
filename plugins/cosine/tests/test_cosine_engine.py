"""Through the real loop and CLI: the LR each step trained at, batch-size changes, the LR bounds'
full path, `trickbag check` and `trickbag lr-find`."""
import csv

import pytest
import torch
import trickbag_cosine
from trickbag.cli.app import app
from trickbag.testing import assert_one_line_error as one_line_error
from trickbag.testing import run_trick
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

SPE = 15  # run_trick's digits: 1500 training samples at batch 100
QUICK = ["--set", "data.name=digits", "--set", "data.val_size=297", "--set", "model.name=mlp", "--set", "model.width=16"]


def torch_cosine(total_steps, max_lr=0.05, eta_min=0.0):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=max_lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, eta_min=eta_min)
    lrs = []
    for _ in range(total_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("epochs, steps", [(1, 15), (1.5, 23), (2.3, 35)])
def test_the_loop_trains_at_torch_cosine_annealing_every_step(epochs, steps):
    """T_max = the steps the loop takes: at 1.5 epochs of 15 steps, 23 (ceil 22.5)."""
    run = run_trick({"cosine": {"eta_min": 1e-4}}, modules=[trickbag_cosine], training={"epochs": epochs})
    assert len(run.steps) == steps
    assert [s.lr for s in run.steps] == pytest.approx(torch_cosine(steps, eta_min=1e-4), rel=1e-12)
    assert [s.momentum for s in run.steps] == [0.9] * steps  # cosine leaves momentum alone


def test_batch_size_schedule_keeps_the_decay_on_progress():
    """Batch 100 then 300 from epoch 1 (15 then 5 steps an epoch): every step is torch's LR at
    iteration progress x 15 of a 45-iteration run, so the run still ends near eta_min."""
    run = run_trick({"cosine": {}, "batch_size_schedule": {"milestones": [1], "factor": 3}},
                    modules=[trickbag_cosine], training={"epochs": 3})
    assert [s.batch_size for s in run.steps] == [100] * 15 + [300] * 10
    lrs = torch_cosine(3 * SPE)
    assert [s.lr for s in run.steps] == pytest.approx([lrs[round(s.progress * SPE)] for s in run.steps], rel=1e-9, abs=1e-15)
    assert run.steps[-1].lr == pytest.approx(lrs[42], rel=1e-9) and run.steps[-1].lr < 0.003  # progress 2.8


def test_bounds_reach_the_options_through_the_engine():
    """lr-find --apply's path: bound_edits on a prepared run, written into the recipe, make the run
    start at max_lr; base_lr is unused (the decay ends at eta_min = 0)."""
    from trickbag.engine.assemble import prepare_run
    from trickbag.lr_range.bounds import apply_edits, bound_edits
    from trickbag.recipe import build_recipe

    raw = {"data": {"name": "digits", "val_size": 297}, "model": {"name": "mlp", "width": 16}, "optimizer": {"name": "sgd", "lr": 0.05},
           "training": {"epochs": 2, "batch_size": 100}, "tricks": {"cosine": {}}}
    run = prepare_run(build_recipe(raw))
    edits, notes = bound_edits(run.pm, run.context, 0.4, 0.01)
    run.release()
    assert edits == {"tricks.cosine.max_lr": 0.4, "optimizer.lr": 0.4}
    assert notes == ["cosine decays from max_lr to eta_min 0: base_lr 0.01 unused"]  # the user is told, not silently ignored
    apply_edits(raw, edits)
    tuned = prepare_run(build_recipe(raw))
    lrs = [tuned.lr_schedule(k / SPE) for k in range(2 * SPE + 1)]
    tuned.release()
    assert (max(lrs), min(lrs)) == (0.4, pytest.approx(0.0, abs=1e-16))


@pytest.mark.parametrize("table, needles", [
    ("eta_min = -0.5", ["tricks.cosine.eta_min", "greater than or equal to 0"]),
    ("eta_min = 0.3\nmax_lr = 0.2", ["tricks.cosine", "eta_min 0.3 must be below max_lr 0.2"]),
    ("eta_min = 0.3", ["tricks.cosine.eta_min 0.3", "optimizer.lr 0.1"]),  # the trick's own check
    ("[tricks.one_cycle]", ["tricks cosine and one_cycle both decide trickbag_lr_schedule"]),  # one schedule decider per recipe
])
def test_trickbag_check_refuses_bad_options_in_one_line(tmp_path, table, needles):
    path = tmp_path / "r.toml"
    path.write_text(f"[optimizer]\nlr = 0.1\n\n[tricks.cosine]\n{table}\n")
    one_line_error(CliRunner().invoke(app, ["check", str(path), *QUICK]), *needles)


def test_lr_find_sweeps_its_own_lrs(tmp_path):
    """The range test replaces the schedule: log-spaced LRs, not the decay."""
    from trickbag.lr_range.sweep import lr_at

    path = tmp_path / "r.toml"
    path.write_text('[optimizer]\nname = "sgd"\nlr = 0.1\n\n[tricks.cosine]\n')
    out = tmp_path / "lr"
    result = CliRunner().invoke(app, ["lr-find", str(path), *QUICK, "--steps", "20", "--start", "1e-4", "--end", "1", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    with open(out / "lr_find.csv") as f:
        lrs = [float(row["lr"]) for row in csv.DictReader(f)]
    assert 5 <= len(lrs) <= 20 and lrs == pytest.approx([lr_at(i, 1e-4, 1, 20, "exp") for i in range(len(lrs))])
