"""The schedule against torch's CosineAnnealingLR at every step, the options, and the LR bounds."""
import math
from types import SimpleNamespace

import pytest
import torch
from trickbag.context import LRBounds
from trickbag.engine.plan import nominal_steps
from trickbag.errors import UserError
from trickbag.testing import plugin_row
from trickbag_cosine import Cosine, CosineOptions

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing


def test_listed_by_trickbag_plugins():
    row = plugin_row("cosine")
    assert row["distribution"] == "trickbag-cosine"
    assert row["hooks"] == ["trickbag_check", "trickbag_lr_bounds", "trickbag_lr_schedule"]
    assert row["options"]["max_lr"]["default"] is None and row["options"]["eta_min"]["default"] == 0.0


def torch_cosine(total_steps, max_lr, eta_min=0.0):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=max_lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, eta_min=eta_min)
    lrs = []
    for _ in range(total_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def schedule(spe, epochs, base_lr=1.0, **options):
    context = SimpleNamespace(steps_per_epoch=spe, total_steps=nominal_steps(epochs, spe))
    return Cosine(CosineOptions(**options)).trickbag_lr_schedule(base_lr=base_lr, context=context)


@pytest.mark.parametrize("spe, epochs, eta_min", [(10, 5, 0.0), (17, 3, 1e-3), (15, 1.5, 0.0), (7, 2.3, 1e-4), (391, 4, 0.0)])
def test_equals_torch_cosine_annealing_at_every_step(spe, epochs, eta_min):
    """T_max = the run's steps as the loop counts them (a fractional last epoch takes ceil of its share)."""
    total = nominal_steps(epochs, spe)
    lrs = torch_cosine(total, 0.4, eta_min)
    lr_of = schedule(spe, epochs, max_lr=0.4, eta_min=eta_min)
    progress = [e + s / spe for e in range(math.ceil(epochs)) for s in range(spe) if e + s / spe < epochs]
    assert len(progress) == total
    # torch's CosineAnnealingLR is recursive: its rounding drifts a little over hundreds of steps
    assert [lr_of(p) for p in progress] == pytest.approx(lrs, rel=1e-9, abs=1e-13)


def test_bag_of_tricks_formula_and_defaults():
    """eta_t = 1/2 (1 + cos(t pi / T)) eta, max_lr = optimizer.lr, eta_min = 0; clamped past the end."""
    lr_of = schedule(10, 4, base_lr=0.2)
    for t in (0, 7, 20, 33, 39):
        assert lr_of(t / 10) == pytest.approx(0.5 * (1 + math.cos(t * math.pi / 40)) * 0.2, rel=1e-12, abs=1e-16)
    assert lr_of(4.0) == lr_of(5.0) == pytest.approx(0.0, abs=1e-16)


@pytest.mark.parametrize("options, needles", [
    ({"eta_min": 0.5, "max_lr": 0.1}, ["tricks.cosine:", "eta_min 0.5 must be below max_lr 0.1"]),
    ({"max_lr": 0}, ["tricks.cosine.max_lr", "greater than 0"]),
    ({"eta_min": -1e-3}, ["tricks.cosine.eta_min", "greater than or equal to 0"]),
    ({"max_lr": "0.1"}, ["tricks.cosine.max_lr"]),
])
def test_bad_options_are_one_line_errors_naming_the_option(options, needles):
    from trickbag.recipe import build_recipe

    with pytest.raises(UserError) as info:
        build_recipe({"tricks": {"cosine": options}})
    text = str(info.value)
    assert "\n" not in text and all(n in text for n in needles), text


def test_eta_min_above_the_default_max_is_refused_by_the_trick_check():
    context = SimpleNamespace(recipe=SimpleNamespace(optimizer=SimpleNamespace(lr=0.1)))
    with pytest.raises(UserError, match=r"tricks.cosine.eta_min 0.2 must be below max_lr, which defaults to optimizer.lr 0.1"):
        Cosine(CosineOptions(eta_min=0.2)).trickbag_check(context=context)
    Cosine(CosineOptions(eta_min=0.01)).trickbag_check(context=context)


def test_lr_bounds_set_the_starting_lr_only():
    """Cosine decays from max_lr to eta_min (0): the range test's base_lr has no place in it."""
    trick = Cosine(CosineOptions())
    with_base = LRBounds(max_lr=0.4, base_lr=0.01)
    assert trick.trickbag_lr_bounds(bounds=with_base, context=None) == {"tricks.cosine.max_lr": 0.4}
    assert with_base.notes == ["cosine decays from max_lr to eta_min 0: base_lr 0.01 unused"]
    assert trick.trickbag_lr_bounds(bounds=LRBounds(max_lr=0.4), context=None) == {"tricks.cosine.max_lr": 0.4}
    lrs = [schedule(10, 3, max_lr=0.4)(k / 10) for k in range(31)]
    assert (max(lrs), min(lrs)) == (0.4, pytest.approx(0.0, abs=1e-16))
    bounds = LRBounds(max_lr=0.05)
    assert Cosine(CosineOptions(eta_min=0.08)).trickbag_lr_bounds(bounds=bounds, context=None) == {"tricks.cosine.max_lr": 0.05, "tricks.cosine.eta_min": 0.0}
    assert len(bounds.notes) == 1 and "tricks.cosine.eta_min 0.08" in bounds.notes[0]


def test_readme_example_is_a_valid_recipe():
    import re
    from pathlib import Path

    import tomllib
    from trickbag.recipe import build_recipe

    text = (Path(__file__).parents[1] / "README.md").read_text()
    example = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    assert build_recipe(tomllib.loads(example)).tricks["cosine"].enabled
