from types import SimpleNamespace

import pytest
import torch

from trickbag.testing import plugin_row
from trickbag_one_cycle import OneCycle, OneCycleOptions


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing


def test_listed_by_trickbag_plugins():
    row = plugin_row("one_cycle")
    assert row["hooks"] == ["trickbag_lr_schedule", "trickbag_momentum_schedule"]
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


def test_max_lr_defaults_to_optimizer_lr_and_momentum_can_stay():
    context = SimpleNamespace(steps_per_epoch=10, total_steps=100)
    trick = OneCycle(OneCycleOptions(cycle_momentum=False))
    lr_of = trick.trickbag_lr_schedule(base_lr=0.5, context=context)
    assert max(lr_of(s / 10) for s in range(100)) == pytest.approx(0.5, rel=1e-3)
    assert trick.trickbag_momentum_schedule(base_momentum=0.9, context=context) is None


def test_engine_applies_it_like_torch_with_adam_betas(tmp_path):
    """Through the real loop: the LR and beta1 used at each step equal OneCycleLR's."""
    from trickbag.hookspecs import hookimpl
    from trickbag.engine.loop import fit
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
