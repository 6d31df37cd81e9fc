"""The TensorBoard plugin: the event file read back with TensorBoard's EventAccumulator holds the
run's own numbers: the sampled step losses (as the loop computed them), LR, momentum, batch size,
noise scale, every epoch metric, the recipe; a resumed run does not log a step twice."""
from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from trickbag.engine.loop import fit
from trickbag.hookspecs import hookimpl
from trickbag.recipe import build_recipe
from trickbag.runs.folder import read_metrics
from trickbag.services import resume_recipe

pytestmark = pytest.mark.usefixtures("single_thread")

RAW = {
    "data": {"name": "digits", "val_size": 297},
    "model": {"name": "mlp", "width": 16},
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "training": {"epochs": 2, "batch_size": 100},
    "tricks": {"one_cycle": {}, "tensorboard": {"every": 3}},
}


class Steps:
    """What the loop computed at every step (this observer may sync: it is the test's)."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[float, float, float]] = {}

    @hookimpl
    def trickbag_step_end(self, state):
        self.rows[state.global_step] = (state.loss.item(), state.lr, state.momentum)


def scalars(folder) -> EventAccumulator:
    acc = EventAccumulator(str(folder / "tensorboard"))
    acc.Reload()
    return acc


def test_the_event_file_holds_the_runs_numbers(tmp_path):
    steps = Steps()
    fit(build_recipe(RAW), tmp_path / "run", observers=[steps])
    acc = scalars(tmp_path / "run")
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [s for s in sorted(steps.rows) if s % 3 == 0]
    for e in loss:
        assert e.value == pytest.approx(steps.rows[e.step][0], rel=1e-6)
    assert [e.value for e in acc.Scalars("train/lr")] == pytest.approx([steps.rows[e.step][1] for e in loss], rel=1e-6)
    assert [e.value for e in acc.Scalars("train/momentum")] == pytest.approx([steps.rows[e.step][2] for e in loss], rel=1e-6)
    assert {e.value for e in acc.Scalars("train/batch_size")} == {100}
    noise = acc.Scalars("train/noise_scale")[0]
    assert noise.value == pytest.approx(steps.rows[noise.step][1] * (1500 / 100 - 1), rel=1e-6)  # 1797 - 297 samples
    rows = read_metrics(tmp_path / "run")
    assert [e.value for e in acc.Scalars("epoch/val_acc")] == pytest.approx([r["val_acc"] for r in rows])
    assert [e.value for e in acc.Scalars("epoch/val_loss")] == pytest.approx([r["val_loss"] for r in rows])
    assert [e.step for e in acc.Scalars("epoch/val_acc")] == [r["steps"] for r in rows]
    assert "width = 16" in acc.Tensors("recipe/text_summary")[0].tensor_proto.string_val[0].decode()


def test_a_resumed_run_logs_each_step_once(tmp_path):
    class StopAfterEpoch1:
        @hookimpl
        def trickbag_step_end(self, state):
            if state.epoch == 1 and state.step_in_epoch == 7:
                raise KeyboardInterrupt

    raw = {**RAW, "training": {"epochs": 3, "batch_size": 100}}
    with pytest.raises(KeyboardInterrupt):
        fit(build_recipe(raw), tmp_path / "run", observers=[StopAfterEpoch1()])
    fit(resume_recipe(tmp_path / "run"), tmp_path / "run", resume=True)
    acc = scalars(tmp_path / "run")
    steps = [e.step for e in acc.Scalars("train/lr")]
    assert steps == sorted(set(steps)) and steps[-1] == 45 and steps == list(range(3, 46, 3))
    assert [e.step for e in acc.Scalars("epoch/val_acc")] == [15, 30, 45]


def test_a_range_test_and_a_run_without_folder_log_nothing(tmp_path):
    fit(build_recipe(RAW), None)  # no folder: nothing to write, no error
    from trickbag.lr_range.sweep import lr_find

    lr_find(build_recipe(RAW), tmp_path / "lr", steps=10)
    assert not list(tmp_path.rglob("events.out.tfevents*"))


def test_the_loss_is_not_read_every_step(tmp_path, monkeypatch):
    """Reading a loss is a device sync: the plugin reads the sampled ones once per epoch."""
    reads = []

    class CountingTorch:  # the plugin's `torch`, counting how many losses each read gathers
        def __getattr__(self, name):
            return getattr(torch, name)

        def stack(self, tensors, *args, **kwargs):
            reads.append(len(tensors))
            return torch.stack(tensors, *args, **kwargs)

    monkeypatch.setattr("trickbag_tensorboard.torch", CountingTorch())
    fit(build_recipe(RAW), tmp_path / "run")
    assert reads == [5, 5]  # 15 steps per epoch, every 3rd: one read of 5 losses per epoch
