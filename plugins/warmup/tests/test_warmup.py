"""The warm-up factor against torch's LinearLR / ConstantLR, its boundary, the options and the check."""
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomllib
import torch
from trickbag.errors import UserError
from trickbag.recipe import build_recipe
from trickbag.testing import plugin_row
from trickbag_warmup import Warmup, WarmupOptions

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing


def test_listed_by_trickbag_plugins():
    row = plugin_row("warmup")
    assert row["distribution"] == "trickbag-warmup"
    assert row["hooks"] == ["trickbag_check", "trickbag_lr_schedule"]
    assert (row["options"]["mode"]["default"], row["options"]["epochs"]["default"]) == ("gradual", 5.0)
    assert row["options"]["start_factor"]["default"] == pytest.approx(1 / 3)


def warmed(inner, **options):
    """The wrapper's answer around ``inner``, as pluggy would hand it the inner schedule."""
    wrapper = Warmup(WarmupOptions(**options)).trickbag_lr_schedule(base_lr=None, context=None)
    next(wrapper)
    with pytest.raises(StopIteration) as done:
        wrapper.send(inner)
    return done.value.value


def torch_lrs(steps, make, lr=0.1):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr, momentum=0.9)
    sched = make(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("spe, epochs, start_factor", [(15, 0.4, 1 / 3), (10, 2.0, 0.25), (391, 5.0, 1 / 32), (7, 1.0, 0.0)])
def test_gradual_equals_torch_linear_lr_around_a_constant(spe, epochs, start_factor):
    """W = epochs x spe warm-up steps; afterwards the constant itself."""
    warm = round(epochs * spe)
    # torch's LinearLR refuses start_factor 0 (Bag of Tricks' ramp from 0): 1e-300 is as close
    lrs = torch_lrs(warm + 5, lambda opt: torch.optim.lr_scheduler.LinearLR(opt, start_factor=start_factor or 1e-300, total_iters=warm))
    lr_of = warmed(lambda p: 0.1, epochs=epochs, start_factor=start_factor)
    got = [lr_of(k / spe) for k in range(warm + 5)]
    assert got == pytest.approx(lrs, rel=1e-12, abs=1e-15)
    assert got[warm:] == [0.1] * 5 and got[0] == 0.1 * start_factor


@pytest.mark.parametrize("spe, epochs, start_factor", [(15, 0.4, 1 / 3), (10, 2.0, 0.1)])
def test_constant_equals_torch_constant_lr_around_a_constant(spe, epochs, start_factor):
    warm = round(epochs * spe)
    lrs = torch_lrs(warm + 5, lambda opt: torch.optim.lr_scheduler.ConstantLR(opt, factor=start_factor, total_iters=warm))
    lr_of = warmed(lambda p: 0.1, mode="constant", epochs=epochs, start_factor=start_factor)
    assert [lr_of(k / spe) for k in range(warm + 5)] == pytest.approx(lrs, rel=1e-12)
    assert lr_of((warm - 1) / spe) == pytest.approx(0.1 * start_factor) and lr_of(warm / spe) == 0.1


def test_the_ramp_multiplies_the_inner_schedule_pointwise():
    """Not a ramp toward the inner value at the end of the warm-up: inner(p) x factor(p)."""
    inner = lambda p: 1.0 + p  # noqa: E731
    lr_of = warmed(inner, epochs=2.0, start_factor=0.2)
    assert lr_of(0.0) == pytest.approx(0.2) and lr_of(1.0) == pytest.approx(2.0 * 0.6) and lr_of(1.5) == pytest.approx(2.5 * 0.8)
    assert [lr_of(p) for p in (2.0, 2.5, 7.25)] == [inner(p) for p in (2.0, 2.5, 7.25)]


def test_a_progress_rounded_just_below_the_end_is_at_the_end():
    """epoch + step / steps lands 1 ulp below the warm-up's end (1 + 9/25 < 1.36): that step already
    trains at the inner schedule's exact LR, as torch's ConstantLR(total_iters=34) would."""
    assert 1 + 9 / 25 < 1.36
    inner = lambda p: 0.1 * (3 - p)  # noqa: E731
    for mode in ("gradual", "constant"):
        lr_of = warmed(inner, mode=mode, epochs=1.36, start_factor=0.5)
        assert lr_of(1 + 9 / 25) == inner(1 + 9 / 25)
        assert lr_of(1 + 8 / 25) < inner(1 + 8 / 25)
    assert warmed(inner, epochs=1.36).factor(math.nextafter(1.36, 0)) == 1.0


@pytest.mark.parametrize("options, needles", [
    ({"start_factor": 1.0}, ["tricks.warmup.start_factor", "less than 1"]),
    ({"start_factor": -0.1}, ["tricks.warmup.start_factor", "greater than or equal to 0"]),
    ({"start_factor": "0.1"}, ["tricks.warmup.start_factor"]),
    ({"epochs": 0.0}, ["tricks.warmup.epochs", "greater than 0"]),
    ({"mode": "linear"}, ["tricks.warmup.mode", "gradual", "constant"]),
    ({"mode": "constant", "start_factor": 0.0}, ["tricks.warmup", 'start_factor 0 with mode "constant"']),
    ({"momentum": 0.9}, ["tricks.warmup.momentum"]),  # the trick has no momentum option: it leaves momentum alone
])
def test_bad_options_are_one_line_errors_naming_the_option(options, needles):
    with pytest.raises(UserError) as info:
        build_recipe({"tricks": {"warmup": options}})
    text = str(info.value)
    assert "\n" not in text and all(n in text for n in needles), text


def test_a_warmup_not_shorter_than_the_run_is_refused_by_the_trick_check():
    for run_epochs in (3, 2.5):
        context = SimpleNamespace(epochs=run_epochs)
        with pytest.raises(UserError, match=rf"tricks.warmup.epochs 5 must be shorter than the run \(training.epochs {run_epochs:g}\)"):
            Warmup(WarmupOptions()).trickbag_check(context=context)
    Warmup(WarmupOptions(epochs=2.5)).trickbag_check(context=SimpleNamespace(epochs=3))
    with pytest.raises(UserError, match="tricks.warmup.epochs 3"):
        Warmup(WarmupOptions(epochs=3.0)).trickbag_check(context=SimpleNamespace(epochs=3))


def test_readme_example_is_a_valid_recipe():
    text = (Path(__file__).parents[1] / "README.md").read_text()
    example = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    recipe = build_recipe(tomllib.loads(example))
    assert recipe.tricks["warmup"].start_factor == 1 / 32 and recipe.tricks["linear_scaling"].reference_batch == 256
