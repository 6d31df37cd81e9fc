"""Through the real loop and CLI: around every schedule the LR after the warm-up is exactly the
schedule's and during it the schedule's times the factor; torch's chained schedulers; fractional
epochs, batch-size changes, momentum; `trickbag check` and `trickbag lr-find`."""
import csv
import functools

import pytest
import torch
from trickbag.cli.app import app
from trickbag.testing import assert_one_line_error as one_line_error
from trickbag.testing import run_trick
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

SPE = 15  # run_trick's digits: 1500 training samples at batch 100
WARM = 0.4  # epochs: the first 6 of the 15 steps
QUICK = ["--set", "data.name=digits", "--set", "data.val_size=297", "--set", "model.name=mlp", "--set", "model.width=16"]

# each schedule trick in a setting where it moves during the warm-up
INNER = {
    "constant": {},  # no schedule trick: the engine's constant optimizer.lr
    "one_cycle": {"one_cycle": {}},
    "sgdr": {"sgdr": {"T_0": 0.2, "T_mult": 1}},  # a restart inside the warm-up (0.2) and at its end (0.4)
    "cosine": {"cosine": {}},
    "cyclical_lr": {"cyclical_lr": {"step_size": 0.3, "cycle_momentum": True}},
    "step_decay": {"step_decay": {"milestones": [0.2, 0.6], "gamma": 0.5}},  # a decay inside the warm-up, one after
}


@functools.lru_cache
def plain(name, epochs=1, batch_schedule=False):
    """The steps of the same run without warm-up (cached: several tests compare with it)."""
    tricks = dict(INNER[name])
    if batch_schedule:
        tricks["batch_size_schedule"] = {"milestones": [1], "factor": 3}
    return tuple(run_trick(tricks, training={"epochs": epochs}).steps)


def factor(mode, progress, epochs=WARM, start=1 / 3):
    return start + (1 - start) * progress / epochs if mode == "gradual" else start


@pytest.mark.parametrize("mode", ["gradual", "constant"])
@pytest.mark.parametrize("name", INNER)
def test_after_the_warmup_the_loop_trains_at_exactly_the_inner_schedule(name, mode):
    """Every step: inner x factor during the warm-up, the inner schedule's own LR (==) after it;
    momentum (cycled by one_cycle and cyclical_lr here) as without the warm-up."""
    base = plain(name)
    run = run_trick({**INNER[name], "warmup": {"mode": mode, "epochs": WARM}})
    assert [s.progress for s in run.steps] == [s.progress for s in base] and len(base) == SPE
    warm = [(s, b) for s, b in zip(run.steps, base) if s.progress < WARM]
    assert len(warm) == 6
    assert [s.lr for s, _ in warm] == pytest.approx([b.lr * factor(mode, b.progress) for _, b in warm], rel=1e-12)
    assert all(s.lr < b.lr for s, b in warm[1 if mode == "gradual" else 0:])  # the warm-up really lowers them
    assert [s.lr for s in run.steps[6:]] == [b.lr for b in base[6:]]  # exactly, not approx
    assert [s.momentum for s in run.steps] == [b.momentum for b in base]  # momentum is not touched


def torch_chained(steps, *make):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.ChainedScheduler([m(opt) for m in make])
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def linear(opt):
    return torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / 3, total_iters=6)


def constant(opt):
    return torch.optim.lr_scheduler.ConstantLR(opt, factor=1 / 3, total_iters=6)


def cosine(opt):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=SPE)


@pytest.mark.parametrize("name, mode, torch_parts", [
    ("constant", "gradual", [linear]),
    ("constant", "constant", [constant]),
    ("cosine", "gradual", [linear, cosine]),
    ("cosine", "constant", [constant, cosine]),
])
def test_the_loop_equals_torch_linear_or_constant_lr_chained_with_the_schedule(name, mode, torch_parts):
    run = run_trick({**INNER[name], "warmup": {"mode": mode, "epochs": WARM}})
    assert [s.lr for s in run.steps] == pytest.approx(torch_chained(SPE, *torch_parts), rel=1e-12)


def test_fractional_warmup_and_run_epochs():
    """A 1.5-epoch run (23 steps) with a 0.5-epoch warm-up (7.5 steps: the 8 steps before progress
    0.5 are warmed), around cosine."""
    base = plain("cosine", epochs=1.5)
    run = run_trick({"cosine": {}, "warmup": {"epochs": 0.5}}, training={"epochs": 1.5})
    assert len(run.steps) == len(base) == 23
    assert [s.lr for s in run.steps[:8]] == pytest.approx([b.lr * factor("gradual", b.progress, 0.5) for b in base[:8]], rel=1e-12)
    assert [s.lr for s in run.steps[8:]] == [b.lr for b in base[8:]]


def test_batch_size_schedule_keeps_the_warmup_in_epochs():
    """Batch 100 then 300 from epoch 1 (15 then 5 steps an epoch), warm-up 1.4 epochs: it ends at
    progress 1.4 (2 steps into the larger batch), the ramp is linear in progress across the change,
    and the LR after it is the cosine's own."""
    base = plain("cosine", epochs=3, batch_schedule=True)
    tricks = {"cosine": {}, "batch_size_schedule": {"milestones": [1], "factor": 3}, "warmup": {"epochs": 1.4}}
    run = run_trick(tricks, training={"epochs": 3})
    assert [s.batch_size for s in run.steps] == [100] * 15 + [300] * 10
    warm = [i for i, s in enumerate(run.steps) if s.lr != base[i].lr]
    assert warm == list(range(17)) and run.steps[17].progress == pytest.approx(1.4)
    assert [s.lr for s in run.steps[:17]] == pytest.approx([b.lr * factor("gradual", b.progress, 1.4) for b in base[:17]], rel=1e-12)


@pytest.mark.parametrize("table, needles", [
    ("epochs = 5.0", ["tricks.warmup.epochs 5 must be shorter than the run (training.epochs 3)"]),  # the trick's own check
    ("epochs = 3", ["tricks.warmup.epochs 3 must be shorter than the run"]),
    ("start_factor = 1.5", ["tricks.warmup.start_factor", "less than 1"]),
    ('mode = "linear"', ["tricks.warmup.mode"]),
    ('mode = "constant"\nstart_factor = 0.0', ["tricks.warmup", 'start_factor 0 with mode "constant"']),
])
def test_trickbag_check_refuses_bad_options_in_one_line(tmp_path, table, needles):
    path = tmp_path / "r.toml"
    path.write_text(f"[optimizer]\nlr = 0.1\n\n[training]\nepochs = 3\n\n[tricks.warmup]\n{table}\n")
    one_line_error(CliRunner().invoke(app, ["check", str(path), *QUICK]), *needles)


def test_trickbag_check_accepts_a_warmup_around_a_schedule(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text("[training]\nepochs = 3\n\n[tricks.sgdr]\n\n[tricks.warmup]\nepochs = 0.5\n")
    result = CliRunner().invoke(app, ["check", str(path), *QUICK])
    assert result.exit_code == 0, result.output


def test_lr_find_sweeps_its_own_lrs(tmp_path):
    """The range test sets the LR itself: log-spaced, not warmed up."""
    from trickbag.lr_range.sweep import lr_at

    path = tmp_path / "r.toml"
    path.write_text('[optimizer]\nname = "sgd"\nlr = 0.1\n\n[training]\nepochs = 3\n\n[tricks.warmup]\nepochs = 2.0\nstart_factor = 0.01\n')
    out = tmp_path / "lr"
    result = CliRunner().invoke(app, ["lr-find", str(path), *QUICK, "--steps", "20", "--start", "1e-4", "--end", "1", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    with open(out / "lr_find.csv") as f:
        lrs = [float(row["lr"]) for row in csv.DictReader(f)]
    assert 5 <= len(lrs) <= 20 and lrs == pytest.approx([lr_at(i, 1e-4, 1, 20, "exp") for i in range(len(lrs))])
