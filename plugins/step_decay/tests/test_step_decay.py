"""Step decay against torch's MultiStepLR at every step of a real run, fractional milestones, the
bounds it writes and its option errors."""
import pytest
import torch
from trickbag.cli.app import app
from trickbag.testing import plugin_row, run_trick
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

SPE = 15  # run_trick's digits: 1500 samples at batch 100
QUICK = '[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\nwidth = 16\n[training]\nepochs = 3\nbatch_size = 100\n'


def test_listed_by_trickbag_plugins():
    row = plugin_row("step_decay")
    assert row["distribution"] == "trickbag-step-decay"
    assert row["hooks"] == ["trickbag_check", "trickbag_lr_bounds", "trickbag_lr_schedule"]
    assert row["options"]["gamma"]["default"] == 0.1


def torch_multistep(steps, milestones, gamma, lr=0.05):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=gamma)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("milestones, gamma", [([1, 2], 0.2), ([0.4, 1.2, 2.6], 0.5)])
def test_every_step_equals_torch_multistep_lr(milestones, gamma):
    run = run_trick({"step_decay": {"milestones": milestones, "gamma": gamma}}, training={"epochs": 3})
    expected = torch_multistep(3 * SPE, [round(m * SPE) for m in milestones], gamma)
    assert [s.lr for s in run.steps] == pytest.approx(expected, rel=1e-12)
    assert len({s.lr for s in run.steps}) == len(milestones) + 1  # every milestone really decays


def test_bounds_write_max_lr_and_say_base_lr_is_unused():
    from types import SimpleNamespace

    from trickbag.context import LRBounds
    from trickbag_step_decay import StepDecay, StepDecayOptions

    bounds = LRBounds(max_lr=0.3, base_lr=0.03)
    edits = StepDecay(StepDecayOptions(milestones=[1])).trickbag_lr_bounds(bounds, SimpleNamespace())
    assert edits == {"tricks.step_decay.max_lr": 0.3}
    assert "base_lr unused" in bounds.notes[0]


@pytest.mark.parametrize("table, needle", [
    ("milestones = []", "milestones"),
    ("milestones = [2, 1]", "strictly increasing"),
    ("milestones = [0]", "> 0"),
    ("milestones = [1]\ngamma = 1.5", "gamma"),
    ("milestones = [5]", "inside the run"),
    ("gamma = 0.1", "milestones"),
])
def test_bad_options_are_one_line_errors(tmp_path, table, needle):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(QUICK + "[tricks.step_decay]\n" + table + "\n")
    result = CliRunner().invoke(app, ["check", str(recipe)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.output


def test_lr_find_sweeps_its_own_lrs(tmp_path):
    """The range test replaces the schedule: the same swept LRs with the trick as without it."""
    runner, swept = CliRunner(), {}
    for name, extra in (("plain", ""), ("decayed", "[tricks.step_decay]\nmilestones = [0.1]\ngamma = 0.01\n")):
        recipe = tmp_path / f"{name}.toml"
        recipe.write_text(QUICK + extra)
        result = runner.invoke(app, ["lr-find", str(recipe), "--steps", "20", "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        swept[name] = [row.split(",")[1] for row in (tmp_path / name / "lr_find.csv").read_text().splitlines()[1:]]
    assert len(swept["plain"]) == 20 and swept["plain"] == swept["decayed"]
