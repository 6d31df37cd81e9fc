
import pytest
import torch
from trickbag.errors import UserError
from trickbag.hookspecs import hookimpl
from trickbag.testing import plugin_row
from trickbag_batch_size_schedule import BatchSizeSchedule, BatchSizeScheduleOptions

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing


def test_listed_by_trickbag_plugins():
    row = plugin_row("batch_size_schedule")
    row = row
    assert row["hooks"] == ["trickbag_batch_size"]
    assert row["options"]["milestones"]["default"] == []
    assert row["options"]["factor"]["default"] == 2.0
    assert row["options"]["max_batch_size"]["default"] is None
    assert row["distribution"] == "trickbag-batch-size-schedule"


def sizes(batch_size, epochs, **options):
    trick = BatchSizeSchedule(BatchSizeScheduleOptions(**options))
    return [trick.trickbag_batch_size(epoch=e, batch_size=batch_size, context=None) for e in range(epochs)]


def test_batch_size_is_multiplied_at_each_milestone():
    assert sizes(128, 8, milestones=[2, 5]) == [128, 128, 256, 256, 256, 512, 512, 512]
    assert sizes(128, 8, milestones=[2, 5], factor=5) == [128, 128, 640, 640, 640, 3200, 3200, 3200]
    assert sizes(100, 5, milestones=[1, 2, 3], factor=1.5) == [100, 150, 225, 338, 338]  # 337.5 rounds to even
    assert sizes(64, 3) == [64, 64, 64]  # no milestones: constant
    assert sizes(64, 3, milestones=[1], factor=1) == [64, 64, 64]


def test_max_batch_size_caps_but_never_lowers_the_recipe_batch_size():
    assert sizes(128, 6, milestones=[1, 2, 3], max_batch_size=300) == [128, 256, 300, 300, 300, 300]
    assert sizes(512, 3, milestones=[1], max_batch_size=300) == [512, 512, 512]


@pytest.mark.parametrize("milestones, message", [
    ([3, 2], "strictly increasing"), ([2, 2], "strictly increasing"), ([0, 4], ">= 1"),
])
def test_bad_milestones_are_one_line_errors_naming_the_option(milestones, message):
    from trickbag.recipe import build_recipe

    with pytest.raises(UserError) as info:
        build_recipe({"tricks": {"batch_size_schedule": {"milestones": milestones}}})
    text = str(info.value)
    assert "tricks.batch_size_schedule.milestones" in text and message in text and "\n" not in text
    with pytest.raises(UserError, match="tricks.batch_size_schedule.factor"):
        build_recipe({"tricks": {"batch_size_schedule": {"factor": 0.5}}})


# -- through the real loop -------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.epochs, self.steps = [], []

    @hookimpl
    def trickbag_epoch_start(self, state):
        self.epochs.append((state.epoch, state.batch_size, state.steps_per_epoch))

    @hookimpl
    def trickbag_transform_batch(self, batch, state):
        self.steps.append({"rows": len(batch.inputs)})

    @hookimpl
    def trickbag_step_end(self, state):
        self.steps[-1].update(epoch=state.epoch, progress=state.progress, lr=state.lr)


def recipe(epochs=2, tricks=None):
    from trickbag.recipe import build_recipe

    return build_recipe({
        "data": {"name": "digits", "val_size": 297},  # 1500 training samples
        "model": {"name": "mlp", "width": 16},
        "optimizer": {"name": "sgd", "lr": 0.05},
        "training": {"epochs": epochs, "batch_size": 50},
        "tricks": tricks if tricks is not None else {
            "batch_size_schedule": {"milestones": [1], "factor": 2},
            "one_cycle": {"max_lr": 0.05, "pct_start": 0.75},
        },
    })


def one_cycle_lrs(total_steps, **kw):
    """torch's OneCycleLR: the LR before each of ``total_steps`` optimizer steps."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, total_steps=total_steps, **kw)
    lrs = []
    for _ in range(total_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_engine_doubles_the_batch_and_keeps_schedules_on_progress(tmp_path):
    from trickbag.engine.loop import fit
    from trickbag.runs.folder import read_metrics

    recorder = Recorder()
    summary = fit(recipe(), tmp_path, observers=[recorder])
    # 1500 samples: 30 steps of 50, then 15 steps of 100
    assert recorder.epochs == [(0, 50, 30), (1, 100, 15)]
    assert [s["rows"] for s in recorder.steps] == [50] * 30 + [100] * 15
    progress = [s["progress"] for s in recorder.steps]
    assert progress == pytest.approx([k / 30 for k in range(30)] + [1 + k / 15 for k in range(15)], abs=1e-12)
    # the one-cycle LR is a function of progress: at progress p it is torch's OneCycleLR at step
    # p * 30 (steps per epoch at the recipe's batch size), even though epoch 1 takes only 15 steps
    torch_lrs = one_cycle_lrs(60, max_lr=0.05, pct_start=0.75)
    assert [s["lr"] for s in recorder.steps] == pytest.approx(torch_lrs[:30] + torch_lrs[30::2], rel=1e-12)
    # the peak sits at pct_start of the run in epochs (torch: step pct_start * 60 - 1 = 44 -> progress 44/30),
    # reached at step 7 of the doubled-batch epoch, not at global step 44 (there are only 45 steps)
    peak = max(range(len(recorder.steps)), key=lambda i: recorder.steps[i]["lr"])
    assert recorder.steps[peak]["lr"] == pytest.approx(0.05, rel=1e-12)
    assert (recorder.steps[peak]["epoch"], progress[peak]) == (1, pytest.approx(44 / 30, abs=1e-12))
    assert progress[peak] == pytest.approx(0.75 * 2 - 1 / 30, abs=1e-12)
    # metrics.jsonl rows carry the batch size of their epoch
    rows = read_metrics(tmp_path)
    assert [(r["epoch"], r["batch_size"], r["steps"], r["progress"]) for r in rows] == [(1, 50, 30, 1), (2, 100, 45, 2)]
    assert summary["history"] == rows
    assert rows[-1]["val_acc"] > 0.5  # it trains (chance is 0.1)


def test_resume_continues_with_the_scheduled_batch_size(tmp_path):
    from trickbag.engine.loop import fit
    from trickbag.runs.folder import read_metrics

    tricks = {"batch_size_schedule": {"milestones": [1, 2], "factor": 2}}
    whole = fit(recipe(3, tricks), tmp_path / "whole")
    fit(recipe(1, tricks), tmp_path / "cut")  # stops after epoch 0: like a run killed there
    recorder = Recorder()
    resumed = fit(recipe(3, tricks), tmp_path / "cut", resume=True, observers=[recorder])
    assert recorder.epochs == [(1, 100, 15), (2, 200, 7)]
    rows = read_metrics(tmp_path / "cut")
    assert [(r["batch_size"], r["steps"]) for r in rows] == [(50, 30), (100, 45), (200, 52)]
    assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in whole["history"]], rel=1e-6)
    assert resumed["history"][-1]["val_acc"] == whole["history"][-1]["val_acc"]
