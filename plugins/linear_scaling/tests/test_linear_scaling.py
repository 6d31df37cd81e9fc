"""The linear scaling rule: k x the inner schedule at every step, the talk's 256 -> 8k example with a
gradual warm-up (either recipe order), k fixed under a batch-size schedule, nothing done to a sweep,
bounds divided by the sweep's k, bad options, and two gloo ranks doubling the LR."""
import json
import sys
from types import SimpleNamespace

import pytest
import torch
from trickbag.cli.app import app
from trickbag.context import RunContext
from trickbag.lr_range.bounds import bound_edits
from trickbag.plugins import load_plugins, run_manager
from trickbag.recipe import build_recipe
from trickbag.testing import plugin_row, run_trick, torchrun
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

QUICK = '[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\nwidth = 16\n[training]\nepochs = 1\nbatch_size = 100\n'


def test_listed_by_trickbag_plugins():
    row = plugin_row("linear_scaling")
    assert row["distribution"] == "trickbag-linear-scaling"
    assert row["hooks"] == ["trickbag_lr_bounds", "trickbag_lr_schedule"]
    assert row["options"]["reference_batch"]["default"] == 256


def composed(tricks: dict, *, batch_size: int, world_size: int = 1, epochs: float = 90, steps_per_epoch: int = 10, lr: float = 0.1):
    """The LR schedule pluggy composes from the recipe's tricks (in recipe order), without a run."""
    recipe = build_recipe({"data": {"name": "digits"}, "model": {"name": "mlp"}, "optimizer": {"name": "sgd", "lr": lr},
                           "training": {"epochs": epochs, "batch_size": batch_size}, "tricks": tricks})
    pm, _ = run_manager(recipe.tricks, load_plugins())
    context = RunContext(recipe=recipe, info=SimpleNamespace(), device=torch.device("cpu"), steps_per_epoch=steps_per_epoch,
                         world_size=world_size)
    return pm, context, pm.hook.trickbag_lr_schedule(base_lr=lr, context=context)


@pytest.mark.parametrize("batch_size, world_size, reference, k", [(256, 32, 256, 32.0), (100, 1, 256, 100 / 256), (64, 2, 32, 4.0)])
def test_the_lr_is_k_times_the_inner_schedule_with_k_the_global_batch_over_the_reference(batch_size, world_size, reference, k):
    _, _, plain = composed({"cosine": {}}, batch_size=batch_size, world_size=world_size)
    _, _, scaled = composed({"cosine": {}, "linear_scaling": {"reference_batch": reference}}, batch_size=batch_size, world_size=world_size)
    for p in (0.0, 0.37, 12.5, 45.0, 89.9):
        assert scaled(p) == pytest.approx(k * plain(p), rel=1e-12)


@pytest.mark.parametrize("order", ["warmup first", "linear_scaling first"])
def test_the_talks_example_256_to_8k_with_a_gradual_warmup(order):
    """Goyal et al.: reference LR 0.1 at 256, 32 x 256 = 8192 per step, gradual warm-up from 1/k over 5
    epochs: 0.1 at the start, a straight line to 3.2 at epoch 5, 3.2 after. The same in either order."""
    tricks = {"linear_scaling": {"reference_batch": 256}, "warmup": {"epochs": 5.0, "start_factor": 1 / 32}}
    if order == "warmup first":
        tricks = dict(reversed(list(tricks.items())))
    _, _, lr = composed(tricks, batch_size=256, world_size=32)
    assert lr(0.0) == pytest.approx(0.1, rel=1e-12)
    assert lr(2.5) == pytest.approx(0.1 + (3.2 - 0.1) / 2, rel=1e-12)  # on the straight line
    assert [lr(p) for p in (5.0, 6.0, 30.0, 89.9)] == pytest.approx([3.2] * 4, rel=1e-12)


def test_the_two_orders_give_the_same_lrs_at_every_step():
    a = {"warmup": {"epochs": 1.5, "start_factor": 0.1}, "linear_scaling": {"reference_batch": 32}, "sgdr": {"T_0": 1.0}}
    b = {"linear_scaling": {"reference_batch": 32}, "warmup": {"epochs": 1.5, "start_factor": 0.1}, "sgdr": {"T_0": 1.0}}
    _, _, lr_a = composed(a, batch_size=128, epochs=4)
    _, _, lr_b = composed(b, batch_size=128, epochs=4)
    steps = [i / 10 for i in range(40)]
    assert [lr_a(p) for p in steps] == pytest.approx([lr_b(p) for p in steps], rel=1e-14)
    assert [lr_a(p) for p in steps[15:]] == [lr_b(p) for p in steps[15:]]  # after the warm-up: exactly


def test_through_the_loop_every_step_trains_at_k_times_the_plain_lr():
    plain = run_trick({"one_cycle": {}})
    scaled = run_trick({"one_cycle": {}, "linear_scaling": {"reference_batch": 50}})  # batch 100: k = 2
    assert [s.lr for s in scaled.steps] == pytest.approx([2 * s.lr for s in plain.steps], rel=1e-12)
    assert [s.momentum for s in scaled.steps] == [s.momentum for s in plain.steps]  # momentum untouched


def test_k_does_not_follow_a_batch_size_schedule():
    """Growing the batch replaces an LR decay (Smith et al.): the LR stays k x the recipe's at every
    step, before and after the milestone where the batch triples."""
    tricks = {"batch_size_schedule": {"milestones": [1], "factor": 3}, "linear_scaling": {"reference_batch": 50}}
    run = run_trick(tricks, training={"epochs": 2})
    sizes = sorted({s.batch_size for s in run.steps})
    assert sizes == [100, 300]  # the batch really grew
    assert [s.lr for s in run.steps] == pytest.approx([0.05 * 2] * len(run.steps), rel=1e-12)


def test_the_sweep_is_not_scaled(tmp_path):
    """The range test sets real LRs itself: the same swept LRs with the trick as without it."""
    runner, swept = CliRunner(), {}
    for name, extra in (("plain", ""), ("scaled", "[tricks.linear_scaling]\nreference_batch = 25\n")):
        recipe = tmp_path / f"{name}.toml"
        recipe.write_text(QUICK + extra)
        result = runner.invoke(app, ["lr-find", str(recipe), "--steps", "20", "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        swept[name] = [row.split(",")[1] for row in (tmp_path / name / "lr_find.csv").read_text().splitlines()[1:]]
    assert len(swept["plain"]) == 20 and swept["plain"] == swept["scaled"]


def test_bounds_are_divided_by_the_sweeps_k_before_one_cycle_writes_them():
    """The sweep measured real LRs at global batch 100; with reference 400 (k = 1/4) the recipe must
    hold 4x those, so that the run multiplies them back to the measured ones."""
    pm, context, _ = composed({"linear_scaling": {"reference_batch": 400}, "one_cycle": {}}, batch_size=100, epochs=3)
    edits, notes = bound_edits(pm, context, max_lr=0.4, base_lr=0.04)
    assert edits["tricks.one_cycle.max_lr"] == pytest.approx(1.6)
    assert edits["tricks.one_cycle.div_factor"] == pytest.approx(10.0)  # a ratio: k cancels
    assert any("divided by 0.25" in n for n in notes)
    _, _, trained = composed({"linear_scaling": {"reference_batch": 400}, "one_cycle": {"max_lr": 1.6, "div_factor": 10.0}},
                             batch_size=100, epochs=3)
    assert max(trained(i / 100) for i in range(300)) == pytest.approx(0.4, rel=1e-3)  # the measured maximum


def test_bounds_without_a_schedule_trick_go_to_the_optimizer_lr():
    pm, context, _ = composed({"linear_scaling": {"reference_batch": 50}}, batch_size=100)
    edits, _ = bound_edits(pm, context, max_lr=0.2, base_lr=None)
    assert edits == {"optimizer.lr": pytest.approx(0.1)}


@pytest.mark.parametrize("value, needle", [("0", "reference_batch"), ("256.0", "reference_batch"), ('"big"', "reference_batch")])
def test_bad_options_are_one_line_errors_naming_the_option(tmp_path, value, needle):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(QUICK + f"[tricks.linear_scaling]\nreference_batch = {value}\n")
    result = CliRunner().invoke(app, ["check", str(recipe)])
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="gloo via torchrun")
def test_two_gloo_ranks_double_the_lr(tmp_path):
    """Batch 50 per rank, reference 50: one process trains at 0.05, two ranks (global 100) at 0.1."""
    text = ('[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\nwidth = 16\n[optimizer]\nname = "sgd"\nlr = 0.05\n'
            '[training]\nepochs = 1\nbatch_size = 50\nthreads = 1\n[tricks.linear_scaling]\nreference_batch = 50\n')
    (tmp_path / "r.toml").write_text(text)
    proc = torchrun(["run", str(tmp_path / "r.toml"), "--out", str(tmp_path / "two"), "-q"], fresh=tmp_path / "two")
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = CliRunner().invoke(app, ["run", str(tmp_path / "r.toml"), "--out", str(tmp_path / "one"), "-q"])
    assert one.exit_code == 0, one.output
    lr = {name: json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[-1])["lr"] for name in ("one", "two")}
    assert lr == {"one": pytest.approx(0.05, rel=1e-12), "two": pytest.approx(0.1, rel=1e-12)}
