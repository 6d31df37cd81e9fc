"""The schedule against torch's CyclicLR at every step, the options, and the LR bounds."""
from types import SimpleNamespace

import pytest
import torch
from trickbag.context import LRBounds
from trickbag.errors import UserError
from trickbag.testing import plugin_row
from trickbag_cyclical_lr import CyclicalLR, CyclicalLROptions

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing


def test_listed_by_trickbag_plugins():
    row = plugin_row("cyclical_lr")
    assert row["distribution"] == "trickbag-cyclical-lr"
    assert row["hooks"] == ["trickbag_check", "trickbag_lr_bounds", "trickbag_lr_schedule", "trickbag_momentum_schedule"]
    options = row["options"]
    assert options["mode"]["enum"] == ["triangular", "triangular2", "exp_range"]
    assert options["step_size"]["default"] == 2.0 and "2-10" in options["step_size"]["description"]
    assert options["max_lr"]["default"] is None and options["base_lr"]["default"] is None
    assert (options["base_momentum"]["default"], options["max_momentum"]["default"]) == (0.8, 0.9)  # torch's


def torch_cyclic(iterations, step_size_up, optimizer="sgd", **kw):
    """LR and momentum (or beta1) torch's CyclicLR gives before each of ``iterations`` steps."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9) if optimizer == "sgd" else torch.optim.Adam([p], lr=0.1)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, step_size_up=step_size_up, **kw)
    lrs, moms = [], []
    for _ in range(iterations):
        g = opt.param_groups[0]
        lrs.append(g["lr"])
        moms.append(g["momentum"] if "momentum" in g else g["betas"][0])
        opt.step()
        sched.step()
    return lrs, moms


def schedules(spe, **options):
    trick = CyclicalLR(CyclicalLROptions(**options))
    context = SimpleNamespace(steps_per_epoch=spe, total_steps=None)
    return trick.trickbag_lr_schedule(base_lr=1.0, context=context), trick.trickbag_momentum_schedule(base_momentum=0.9, context=context)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
@pytest.mark.parametrize("spe, step_size", [(10, 2.0), (17, 1.5), (7, 0.3)])  # step_size_up 20, 25.5 and 2.1 iterations
def test_equals_torch_cyclic_lr_at_every_step(mode, spe, step_size):
    gamma = 0.6  # per epoch here; per iteration in torch
    lrs, moms = torch_cyclic(
        round(9 * step_size * spe), step_size * spe, base_lr=0.01, max_lr=0.3, mode=mode, gamma=gamma ** (1 / spe),
        cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
    )
    lr_of, mom_of = schedules(spe, mode=mode, step_size=step_size, base_lr=0.01, max_lr=0.3, gamma=gamma,
                              cycle_momentum=True, base_momentum=0.85, max_momentum=0.95)
    for step, (lr, momentum) in enumerate(zip(lrs, moms)):
        assert lr_of(step / spe) == pytest.approx(lr, rel=1e-12, abs=1e-15), step
        assert mom_of(step / spe) == pytest.approx(momentum, rel=1e-12), step


def test_torch_defaults_and_adam_beta1():
    """torch's own defaults (momentum 0.8-0.9), with Adam: beta1 is the cycled momentum."""
    lrs, betas = torch_cyclic(60, 8, optimizer="adam", base_lr=0.001, max_lr=0.006)
    lr_of, beta_of = schedules(4, step_size=2.0, base_lr=0.001, max_lr=0.006, cycle_momentum=True)
    assert [lr_of(s / 4) for s in range(60)] == pytest.approx(lrs, rel=1e-12)
    assert [beta_of(s / 4) for s in range(60)] == pytest.approx(betas, rel=1e-12)


def test_shapes_by_hand():
    """The paper's picture: up for step_size epochs, down for step_size; triangular2 halves the
    amplitude each cycle; exp_range multiplies it by gamma per epoch."""
    tri, _ = schedules(10, step_size=2.0, base_lr=0.1, max_lr=0.5)
    assert [tri(p) for p in (0, 1, 2, 3, 4, 6, 8)] == pytest.approx([0.1, 0.3, 0.5, 0.3, 0.1, 0.5, 0.1])
    tri2, _ = schedules(10, mode="triangular2", step_size=2.0, base_lr=0.1, max_lr=0.5)
    assert [tri2(p) for p in (2, 6, 10)] == pytest.approx([0.5, 0.3, 0.2])
    exp, _ = schedules(10, mode="exp_range", gamma=0.5, step_size=1.0, base_lr=0.1, max_lr=0.5)
    assert [exp(p) for p in (1, 3, 4)] == pytest.approx([0.1 + 0.4 * 0.5, 0.1 + 0.4 * 0.125, 0.1])


def test_defaults_max_lr_is_optimizer_lr_base_a_quarter_and_momentum_left_alone():
    trick = CyclicalLR(CyclicalLROptions())
    context = SimpleNamespace(steps_per_epoch=10, total_steps=100)
    lr_of = trick.trickbag_lr_schedule(base_lr=0.4, context=context)
    assert (lr_of(0.0), lr_of(2.0), lr_of(4.0)) == pytest.approx((0.1, 0.4, 0.1))
    assert trick.trickbag_momentum_schedule(base_momentum=0.9, context=context) is None


@pytest.mark.parametrize("options, needles", [
    ({"base_lr": 0.5, "max_lr": 0.1}, ["tricks.cyclical_lr:", "base_lr 0.5 must be below max_lr 0.1"]),
    ({"base_momentum": 0.95, "max_momentum": 0.9}, ["tricks.cyclical_lr:", "base_momentum 0.95 must not exceed max_momentum 0.9"]),
    ({"step_size": 0}, ["tricks.cyclical_lr.step_size", "greater than 0"]),
    ({"gamma": 1.5}, ["tricks.cyclical_lr.gamma", "less than or equal to 1"]),
    ({"mode": "triangle"}, ["tricks.cyclical_lr.mode", "'triangular'"]),
    ({"cycle_momentum": 1}, ["tricks.cyclical_lr.cycle_momentum"]),
])
def test_bad_options_are_one_line_errors_naming_the_option(options, needles):
    from trickbag.recipe import build_recipe

    with pytest.raises(UserError) as info:
        build_recipe({"tricks": {"cyclical_lr": options}})
    text = str(info.value)
    assert "\n" not in text and all(n in text for n in needles), text


def test_base_lr_above_the_default_max_is_refused_by_the_trick_check():
    trick = CyclicalLR(CyclicalLROptions(base_lr=0.2))
    context = SimpleNamespace(recipe=SimpleNamespace(optimizer=SimpleNamespace(lr=0.1)))
    with pytest.raises(UserError, match=r"tricks.cyclical_lr.base_lr 0.2 must be below max_lr, which defaults to optimizer.lr 0.1"):
        trick.trickbag_check(context=context)
    CyclicalLR(CyclicalLROptions(base_lr=0.05)).trickbag_check(context=context)  # below: fine


def extremes(options, spe=10, epochs=8):
    lr_of, _ = schedules(spe, **options)
    values = [lr_of(s / spe) for s in range(spe * epochs)]
    return min(values), max(values)


def test_lr_bounds_become_base_and_max_lr():
    context = SimpleNamespace(steps_per_epoch=10, total_steps=80)
    trick = CyclicalLR(CyclicalLROptions())
    edits = trick.trickbag_lr_bounds(bounds=LRBounds(max_lr=0.4, base_lr=0.01), context=context)
    assert edits == {"tricks.cyclical_lr.max_lr": 0.4, "tricks.cyclical_lr.base_lr": 0.01}
    assert extremes({"max_lr": 0.4, "base_lr": 0.01}) == pytest.approx((0.01, 0.4))
    # only a maximum: the base stays the default quarter of it
    only_max = trick.trickbag_lr_bounds(bounds=LRBounds(max_lr=0.4), context=context)
    assert only_max == {"tricks.cyclical_lr.max_lr": 0.4}
    assert extremes({"max_lr": 0.4}) == pytest.approx((0.1, 0.4))


def test_lr_bounds_move_a_recipe_base_lr_the_new_max_would_invert():
    bounds = LRBounds(max_lr=0.05)
    edits = CyclicalLR(CyclicalLROptions(base_lr=0.08, max_lr=0.5)).trickbag_lr_bounds(bounds=bounds, context=None)
    assert edits == {"tricks.cyclical_lr.max_lr": 0.05, "tricks.cyclical_lr.base_lr": pytest.approx(0.0125)}
    assert len(bounds.notes) == 1 and "tricks.cyclical_lr.base_lr 0.08" in bounds.notes[0]


def test_readme_example_is_a_valid_recipe():
    import re
    from pathlib import Path

    import tomllib
    from trickbag.recipe import build_recipe

    text = (Path(__file__).parents[1] / "README.md").read_text()
    example = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    assert build_recipe(tomllib.loads(example)).tricks["cyclical_lr"].enabled
