"""The schedule against torch's CosineAnnealingWarmRestarts at every step, restart_decay against the
formula, the options, and the LR bounds."""
import math
from types import SimpleNamespace

import pytest
import torch
from trickbag.context import LRBounds
from trickbag.errors import UserError
from trickbag.testing import plugin_row
from trickbag_sgdr import SGDR, SGDROptions, period_at

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing


def test_listed_by_trickbag_plugins():
    row = plugin_row("sgdr")
    assert row["distribution"] == "trickbag-sgdr"
    assert row["hooks"] == ["trickbag_check", "trickbag_lr_bounds", "trickbag_lr_schedule"]
    options = row["options"]
    assert (options["T_0"]["default"], options["T_mult"]["default"], options["eta_min"]["default"]) == (1.0, 2, 0.0)
    assert options["T_mult"]["type"] == "integer" and options["restart_decay"]["default"] == 1.0
    assert options["max_lr"]["default"] is None


def schedule(base_lr=1.0, **options):
    return SGDR(SGDROptions(**options)).trickbag_lr_schedule(base_lr=base_lr, context=None)


def warm_restarts(max_lr=0.1, **kw):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=max_lr, momentum=0.9)
    return opt, torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, **kw)


@pytest.mark.parametrize("T_0, T_mult, eta_min, spe, epochs", [
    (1, 1, 0.0, 10, 5), (1, 2, 0.0, 10, 15), (2, 2, 1e-3, 7, 14), (1, 3, 1e-4, 6, 13), (3, 1, 0.0, 17, 9),
])
def test_equals_torch_stepped_with_the_float_epoch_at_every_step(T_0, T_mult, eta_min, spe, epochs):
    """torch's per-batch form, ``scheduler.step(epoch + batch / batches)``, with T_0 in epochs: at
    each step torch's LR after step(progress) is ours at that progress (progress computed as the
    loop computes it)."""
    opt, sched = warm_restarts(T_0=T_0, T_mult=T_mult, eta_min=eta_min)
    lr_of = schedule(max_lr=0.1, T_0=float(T_0), T_mult=T_mult, eta_min=eta_min)
    for epoch in range(epochs):
        for step in range(spe):
            progress = epoch + step / spe
            sched.step(progress)
            assert lr_of(progress) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15), progress


@pytest.mark.parametrize("T_0, T_mult, spe", [(0.4, 2, 10), (0.5, 1, 6), (0.3, 3, 10), (1.5, 2, 4), (0.2, 1, 10), (0.2, 2, 15)])
def test_fractional_T_0_equals_torch_counting_iterations(T_0, T_mult, spe):
    """torch wants an integer T_0: count it in iterations (T_0 x steps per epoch) and step once per
    batch; the restarts land on the same steps, though 1.2 / 0.4 is 2.9999999999999996 in floats."""
    steps = round(T_0 * spe)
    opt, sched = warm_restarts(T_0=steps, T_mult=T_mult)
    lr_of = schedule(max_lr=0.1, T_0=T_0, T_mult=T_mult)
    for k in range(40 * steps):
        progress = k // spe + (k % spe) / spe
        assert lr_of(progress) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15), k
        opt.step()
        sched.step()


def test_restarts_exactly_where_torch_float_log_misses_by_one():
    """torch finds the period of a float epoch with a float log, which lands just below an integer at
    some restarts (log base 3 of 243 is 4.999...): there torch gives eta_min, the end of the period
    before, where the restart gives max_lr. Here the period is corrected to the exact restart."""
    opt, sched = warm_restarts(T_0=1, T_mult=3)
    sched.step(121.0)  # restarts at 1, 4, 13, 40, 121
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)
    lr_of = schedule(max_lr=0.1, T_0=1.0, T_mult=3)
    assert lr_of(121.0) == 0.1 and lr_of(121.0 - 1e-6) == pytest.approx(0.0, abs=1e-12)
    assert period_at(121.0, 3) == (5, 121, 243) and period_at(120.999, 3) == (4, 40, 81)
    assert period_at(111.0, 10) == (3, 111, 1000)  # torch: log10(1000) = 2.9999999999999996


def test_restart_decay_lowers_each_peak_by_hand():
    """Periods [0, 1), [1, 3), [3, 7) epochs; peaks 0.4, 0.2, 0.1; eta_min 0.01; formula of the paper
    with eta_max^i = max_lr * restart_decay^i."""
    lr_of = schedule(max_lr=0.4, T_0=1.0, T_mult=2, eta_min=0.01, restart_decay=0.5)

    def by_hand(peak, t_cur, t_i):
        return 0.01 + 0.5 * (peak - 0.01) * (1 + math.cos(math.pi * t_cur / t_i))

    expected = {0.0: 0.4, 0.5: by_hand(0.4, 0.5, 1), 1.0: 0.2, 2.0: by_hand(0.2, 1, 2), 2.5: by_hand(0.2, 1.5, 2),
                3.0: 0.1, 5.0: by_hand(0.1, 2, 4), 6.99: by_hand(0.1, 3.99, 4), 7.0: 0.05}
    assert {p: lr_of(p) for p in expected} == pytest.approx(expected, rel=1e-12)


def test_restart_decay_never_goes_below_eta_min():
    lr_of = schedule(max_lr=0.4, T_0=1.0, T_mult=1, eta_min=0.05, restart_decay=0.1)
    assert lr_of(1.0) == pytest.approx(0.05) and lr_of(1.5) == pytest.approx(0.05) and lr_of(0.5) == pytest.approx(0.225)


def test_max_lr_defaults_to_optimizer_lr():
    lr_of = schedule(base_lr=0.3, T_0=2.0, T_mult=1)
    assert (lr_of(0.0), lr_of(1.0), lr_of(2.0)) == pytest.approx((0.3, 0.15, 0.3))


@pytest.mark.parametrize("options, needles", [
    ({"eta_min": 0.5, "max_lr": 0.1}, ["tricks.sgdr:", "eta_min 0.5 must be below max_lr 0.1"]),
    ({"T_0": 0}, ["tricks.sgdr.T_0", "greater than 0"]),
    ({"T_mult": 0}, ["tricks.sgdr.T_mult", "greater than or equal to 1"]),
    ({"T_mult": 1.5}, ["tricks.sgdr.T_mult", "integer"]),
    ({"restart_decay": 1.2}, ["tricks.sgdr.restart_decay", "less than or equal to 1"]),
    ({"eta_min": -0.1}, ["tricks.sgdr.eta_min"]),
])
def test_bad_options_are_one_line_errors_naming_the_option(options, needles):
    from trickbag.recipe import build_recipe

    with pytest.raises(UserError) as info:
        build_recipe({"tricks": {"sgdr": options}})
    text = str(info.value)
    assert "\n" not in text and all(n in text for n in needles), text


def test_eta_min_above_the_default_max_is_refused_by_the_trick_check():
    context = SimpleNamespace(recipe=SimpleNamespace(optimizer=SimpleNamespace(lr=0.1)))
    with pytest.raises(UserError, match=r"tricks.sgdr.eta_min 0.1 must be below max_lr, which defaults to optimizer.lr 0.1"):
        SGDR(SGDROptions(eta_min=0.1)).trickbag_check(context=context)
    SGDR(SGDROptions(eta_min=0.1, max_lr=0.5)).trickbag_check(context=context)  # its own max_lr: fine


def extremes(options, spe=1000, epochs=3):
    lr_of = schedule(**options)
    values = [lr_of(s / spe) for s in range(spe * epochs)]
    return min(values), max(values)


def test_lr_bounds_become_max_lr_and_eta_min():
    trick = SGDR(SGDROptions())
    edits = trick.trickbag_lr_bounds(bounds=LRBounds(max_lr=0.4, base_lr=0.01), context=None)
    assert edits == {"tricks.sgdr.max_lr": 0.4, "tricks.sgdr.eta_min": 0.01}
    assert extremes({"max_lr": 0.4, "eta_min": 0.01}) == pytest.approx((0.01, 0.4), rel=1e-4)  # min: just before a restart
    assert trick.trickbag_lr_bounds(bounds=LRBounds(max_lr=0.4), context=None) == {"tricks.sgdr.max_lr": 0.4}
    bounds = LRBounds(max_lr=0.05)
    assert SGDR(SGDROptions(eta_min=0.08)).trickbag_lr_bounds(bounds=bounds, context=None) == {"tricks.sgdr.max_lr": 0.05, "tricks.sgdr.eta_min": 0.0}
    assert len(bounds.notes) == 1 and "tricks.sgdr.eta_min 0.08" in bounds.notes[0]


def test_readme_example_is_a_valid_recipe():
    import re
    from pathlib import Path

    import tomllib
    from trickbag.recipe import build_recipe

    text = (Path(__file__).parents[1] / "README.md").read_text()
    example = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    assert build_recipe(tomllib.loads(example)).tricks["sgdr"].enabled
