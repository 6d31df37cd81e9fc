"""engine/plan.py is the only place steps are counted: the loop, RunContext.total_steps, the
progress bar, the momentum table and the TUI preview must all agree with it."""
from __future__ import annotations

import pytest
from trickbag.engine.assemble import plan_context, prepare_run
from trickbag.engine.loop import fit
from trickbag.engine.plan import nominal_steps, plan_run, steps_in_epoch
from trickbag.hookspecs import hookimpl
from trickbag.momentum.constants import run_length
from trickbag.recipe import build_recipe


def test_steps_in_epoch_uses_the_loops_float_test():
    assert steps_in_epoch(1.5, 0, 15) == 15 and steps_in_epoch(1.5, 1, 15) == 8
    assert steps_in_epoch(2, 1, 15) == 15
    # 0.1 * 30 is 3.0000000000000004 in floats: ceil says 4, the loop's test `s / 30 < 0.1` takes 3
    assert steps_in_epoch(0.1, 0, 30) == 3 == sum(1 for s in range(30) if s / 30 < 0.1)
    for epochs in (0.3, 0.7, 1.01, 2.999, 4.5):
        for n in (1, 7, 30, 97):
            for e in range(int(epochs) + 1):
                assert steps_in_epoch(epochs, e, n) == sum(1 for s in range(n) if e + s / n < epochs)


def recipe(epochs, tricks=None):
    return build_recipe({
        "data": {"name": "digits", "val_size": 297},
        "model": {"name": "mlp", "width": 8},
        "optimizer": {"name": "sgd", "lr": 0.05},
        "training": {"epochs": epochs, "batch_size": 100, "checkpoint": False},
        "tricks": tricks or {},
    })


class Count:
    def __init__(self):
        self.steps = 0
        self.per_epoch = {}

    @hookimpl
    def trickbag_epoch_start(self, state):
        self.per_epoch[state.epoch] = state.epoch_steps

    @hookimpl
    def trickbag_step_end(self, state):
        self.steps += 1


@pytest.mark.parametrize(("epochs", "tricks"), [
    (1.5, None), (0.1, None), (2.3, {"batch_size_schedule": {"milestones": [1, 2], "factor": 2}}),
])
def test_every_count_agrees_with_the_loop(epochs, tricks):
    r = recipe(epochs, tricks)
    count = Count()
    fit(r, None, observers=[count])
    run = prepare_run(r)
    plan = plan_run(run.pm.hook, run.context, run.train.num_batches)
    run.release()
    assert count.steps == plan.total_steps == sum(count.per_epoch.values())
    assert list(count.per_epoch.values()) == list(plan.taken_steps)
    assert run_length(r, run.train).run_steps == plan.total_steps  # the momentum table
    if not tricks:
        assert run.context.total_steps == plan.total_steps == nominal_steps(epochs, 15)


def test_plan_progress_points_end_at_the_last_step():
    r = recipe(1.5)
    run = prepare_run(r)
    pm, context = plan_context(r, run.train)
    plan = plan_run(pm.hook, context, run.train.num_batches)
    run.release()
    points = plan.progress_points(200)
    assert len(points) == 23 and points[0] == 0 and points[-1] == pytest.approx(1 + 7 / 15)
    assert plan.batch_size_changes() == [(0, 100)]
