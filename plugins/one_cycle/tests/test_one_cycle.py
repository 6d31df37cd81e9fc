from types import SimpleNamespace

import pytest
import torch
from trickbag.testing import plugin_row
from trickbag_one_cycle import OneCycle, OneCycleOptions

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing


def test_listed_by_trickbag_plugins():
    row = plugin_row("one_cycle")
    assert row["hooks"] == ["trickbag_lr_bounds", "trickbag_lr_schedule", "trickbag_momentum_schedule"]
    assert row["options"]["pct_start"]["default"] == 0.3


def torch_trace(steps, spe, epochs, optimizer="sgd", **kw):
    """LR and momentum torch's OneCycleLR gives before each optimizer step."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9) if optimizer == "sgd" else torch.optim.Adam([p], lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, epochs=epochs, steps_per_epoch=spe, **kw)
    lrs, moms = [], []
    for _ in range(steps):
        g = opt.param_groups[0]
        lrs.append(g["lr"])
        moms.append(g["momentum"] if "momentum" in g else g["betas"][0])
        opt.step()
        sched.step()
    return lrs, moms


@pytest.mark.parametrize(
    "kw",
    [
        dict(max_lr=0.4),
        dict(max_lr=1.0, pct_start=0.25, anneal_strategy="linear", div_factor=10.0, final_div_factor=100.0),
        dict(max_lr=0.2, three_phase=True, base_momentum=0.8, max_momentum=0.97),
    ],
)
def test_equals_torch_onecycle_at_every_step(kw):
    spe, epochs = 17, 5
    lrs, moms = torch_trace(spe * epochs, spe, epochs, **kw)
    options = OneCycleOptions(
        max_lr=kw["max_lr"], pct_start=kw.get("pct_start", 0.3), anneal=kw.get("anneal_strategy", "cos"),
        div_factor=kw.get("div_factor", 25.0), final_div_factor=kw.get("final_div_factor", 1e4),
        three_phase=kw.get("three_phase", False), base_momentum=kw.get("base_momentum", 0.85), max_momentum=kw.get("max_momentum", 0.95),
    )
    context = SimpleNamespace(steps_per_epoch=spe, total_steps=spe * epochs)
    trick = OneCycle(options)
    lr_of = trick.trickbag_lr_schedule(base_lr=0.1, context=context)
    mom_of = trick.trickbag_momentum_schedule(base_momentum=0.9, context=context)
    for step in range(spe * epochs):
        assert lr_of(step / spe) == pytest.approx(lrs[step], rel=1e-12, abs=1e-15)
        assert mom_of(step / spe) == pytest.approx(moms[step], rel=1e-12)


def test_lr_bounds_become_max_lr_and_div_factor():
    """The range test's (base, max) land in the options that make the cycle run between them."""
    from trickbag.context import LRBounds

    trick = OneCycle(OneCycleOptions())
    context = SimpleNamespace(steps_per_epoch=10, total_steps=100)
    edits = trick.trickbag_lr_bounds(bounds=LRBounds(max_lr=0.4, base_lr=0.01), context=context)
    assert edits == {"tricks.one_cycle.max_lr": 0.4, "tricks.one_cycle.div_factor": pytest.approx(40.0)}
    tuned = OneCycle(OneCycleOptions(max_lr=0.4, div_factor=edits["tricks.one_cycle.div_factor"]))
    lr_of = tuned.trickbag_lr_schedule(base_lr=1.0, context=context)
    assert lr_of(0.0) == pytest.approx(0.01) and max(lr_of(s / 10) for s in range(100)) == pytest.approx(0.4, rel=1e-3)
    assert trick.trickbag_lr_bounds(bounds=LRBounds(max_lr=0.4), context=context) == {"tricks.one_cycle.max_lr": 0.4}


def test_max_lr_defaults_to_optimizer_lr_and_momentum_can_stay():
    context = SimpleNamespace(steps_per_epoch=10, total_steps=100)
    trick = OneCycle(OneCycleOptions(cycle_momentum=False))
    lr_of = trick.trickbag_lr_schedule(base_lr=0.5, context=context)
    assert max(lr_of(s / 10) for s in range(100)) == pytest.approx(0.5, rel=1e-3)
    assert trick.trickbag_momentum_schedule(base_momentum=0.9, context=context) is None


def test_engine_applies_it_like_torch_with_adam_betas(tmp_path):
    """Through the real loop: the LR and beta1 used at each step equal OneCycleLR's."""
    from trickbag.engine.loop import fit
    from trickbag.hookspecs import hookimpl
    from trickbag.recipe import build_recipe

    seen = []

    class Recorder:
        @hookimpl
        def trickbag_step_end(self, state):
            seen.append((state.lr, state.momentum))

    recipe = build_recipe({
        "data": {"name": "digits", "val_size": 297},
        "model": {"name": "mlp", "width": 16},
        "optimizer": {"name": "adam", "lr": 0.01},
        "training": {"epochs": 2, "batch_size": 100},
        "tricks": {"one_cycle": {}},
    })
    fit(recipe, None, observers=[Recorder()])
    spe = 1500 // 100
    lrs, moms = torch_trace(2 * spe, spe, 2, optimizer="adam", max_lr=0.01)
    assert [lr for lr, _ in seen] == pytest.approx(lrs, rel=1e-12)
    assert [m for _, m in seen] == pytest.approx(moms, rel=1e-12)


def record_run(epochs, tricks, batch_size=100):
    from trickbag.engine.loop import fit
    from trickbag.hookspecs import hookimpl
    from trickbag.recipe import build_recipe

    seen = []

    class Recorder:
        @hookimpl
        def trickbag_step_end(self, state):
            seen.append((state.progress, state.lr, state.momentum))

    recipe = build_recipe({
        "data": {"name": "digits", "val_size": 297},
        "model": {"name": "mlp", "width": 16},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "training": {"epochs": epochs, "batch_size": batch_size, "checkpoint": False},
        "tricks": tricks,
    })
    fit(recipe, None, observers=[Recorder()])
    return seen


@pytest.mark.parametrize("epochs", [1.5, 2.3, 0.4])
def test_fractional_epochs_equal_torch_onecycle(epochs):
    """The loop's step count is the one the cycle is sized with: at 1.5 epochs of 15 steps the run
    takes 23 steps, torch's OneCycleLR(total_steps=23) gives the same LR at each, and the last LR is
    the cycle's minimum (not a jump back up)."""
    from trickbag.engine.plan import nominal_steps

    seen = record_run(epochs, {"one_cycle": {}})
    spe = 1500 // 100
    total = nominal_steps(epochs, spe)
    assert len(seen) == total == {1.5: 23, 2.3: 35, 0.4: 6}[epochs]
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total)
    for progress, lr, momentum in seen:
        assert lr == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        assert momentum == pytest.approx(opt.param_groups[0]["momentum"], rel=1e-12)
        opt.step()
        sched.step()
    assert seen[-1][1] == min(lr for _, lr, _ in seen)


def test_batch_size_schedule_keeps_the_cycle_on_progress():
    """Batch 100 then 300 from epoch 1: the cycle stays keyed on progress (the recipe's steps per
    epoch), so every step lands where OneCycleLR is at progress * 15 (whole steps here, since 15
    is a multiple of 5), and the LR falls steadily after the peak."""
    seen = record_run(3, {"one_cycle": {}, "batch_size_schedule": {"milestones": [1], "factor": 3}})
    spe = 15
    assert len(seen) == 15 + 5 + 5  # 1500 samples: batch 100 -> 15 steps, batch 300 -> 5 steps
    lrs, _ = torch_trace(3 * spe, spe, 3, max_lr=0.1)
    for progress, lr, _ in seen:
        assert lr == pytest.approx(lrs[round(progress * spe)], rel=1e-9)
    assert [round(p * spe) for p, _, _ in seen][15:] == list(range(15, 45, 3))  # every third of torch's steps
    peak = max(range(len(seen)), key=lambda i: seen[i][1])
    after = [lr for _, lr, _ in seen[peak:]]
    assert after == sorted(after, reverse=True)


def test_phases_are_clamped_past_the_end():
    context = SimpleNamespace(steps_per_epoch=10, total_steps=20)
    lr_of = OneCycle(OneCycleOptions()).trickbag_lr_schedule(base_lr=1.0, context=context)
    assert lr_of(2.5) == lr_of(1.9) == pytest.approx(1.0 / 25 / 1e4)  # past the last step: stays at the end
