"""`trickbag schedule` and the timeline behind it: the same LR, momentum and batch size at every step
as the loop trains with, the talk's noise scale, and the step-decay / batch-growth pair whose noise
curves coincide."""
from __future__ import annotations

import csv

import pytest
from trickbag.cli.app import app
from trickbag.engine.timeline import noise_scale, recipe_timeline
from trickbag.recipe import build_recipe, load_recipe
from trickbag.services import bundled_recipes
from trickbag.testing import run_trick
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

RUN_TRICK = {  # run_trick's recipe (trickbag.testing)
    "data": {"name": "digits", "val_size": 297}, "model": {"name": "mlp", "width": 32},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
}


@pytest.mark.parametrize("tricks", [
    {"one_cycle": {}, "batch_size_schedule": {"milestones": [1], "factor": 3}},
    {"warmup": {"epochs": 0.5}, "sgdr": {"T_0": 1.0}, "linear_scaling": {"reference_batch": 50}},
    {"cyclical_lr": {"step_size": 0.7, "cycle_momentum": True}},
])
def test_the_timeline_is_what_the_loop_trains_with_at_every_step(tricks):
    epochs = 2.5
    trained = run_trick(tricks, training={"epochs": epochs})
    t = recipe_timeline(build_recipe({**RUN_TRICK, "training": {"epochs": epochs, "batch_size": 100}, "tricks": tricks}), points=None)
    assert t.total_steps == len(trained.steps) == len(t.steps)
    assert t.progress == [s.progress for s in trained.steps]
    assert t.lr == pytest.approx([s.lr for s in trained.steps], rel=1e-12)
    assert t.momentum == pytest.approx([s.momentum for s in trained.steps], rel=1e-12)
    assert t.batch_size == [s.batch_size for s in trained.steps]
    assert t.noise == pytest.approx([s.lr * (1500 / s.batch_size - 1) for s in trained.steps], rel=1e-12)


def test_noise_scale_is_the_talks_formula():
    assert noise_scale(0.1, 50_000, 128) == pytest.approx(0.1 * (50_000 / 128 - 1))
    assert noise_scale(0.1, 1000, 1000) == 0  # "quick check: when B = N there is no noise"


def test_the_bundled_pair_lowers_the_noise_alike():
    """LR /5 at epochs 5 and 10 vs batch x5 there: the same g in every phase up to the talk's -1
    (g_batch / g_decay = (N - 5^k B) / (N - B), within 10 % for N = 4,000 and B = 16), with 2.4x
    fewer optimizer steps for the batch-growth run."""
    decay, growth = (recipe_timeline(load_recipe(bundled_recipes()[name]), points=None) for name in ("noise-step-decay", "noise-batch-growth"))
    n, b = decay.train_size, decay.batch_size[0]
    assert (n, b) == (4000, 16) and growth.train_size == n
    at_decay = {round(p, 9): g for p, g in zip(decay.progress, decay.noise)}
    compared = 0
    for p, g, size in zip(growth.progress, growth.noise, growth.batch_size):
        if round(p, 9) in at_decay:  # progress both runs step at (every epoch start, and more)
            k = {16: 0, 80: 1, 400: 2}[size]
            assert g / at_decay[round(p, 9)] == pytest.approx((n - 5**k * b) / (n - b), rel=1e-9)
            assert 0.9 < g / at_decay[round(p, 9)] <= 1
            compared += 1
    assert compared >= 15  # every epoch at least
    assert max(decay.noise) / min(decay.noise) == pytest.approx(25, rel=1e-9)  # the LR really fell by 5 twice
    assert (decay.total_steps, growth.total_steps) == (3750, 1550)


def test_schedule_command_prints_plots_and_writes_every_step(tmp_path):
    png, table = tmp_path / "s.png", tmp_path / "s.csv"
    result = CliRunner().invoke(app, ["schedule", "quickstart", "--png", str(png), "--csv", str(table)])
    assert result.exit_code == 0, result.output
    for column in ("epoch", "step", "lr", "momentum", "batch", "g"):
        assert column in result.output
    assert "310 optimizer steps over 10 epochs" in result.output
    assert png.stat().st_size > 10_000
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 310 and rows[0]["step"] == "0" and rows[-1]["step"] == "309"
    assert float(rows[0]["lr"]) == pytest.approx(0.05 / 25)  # one-cycle starts at max_lr / div_factor
    assert float(rows[0]["momentum"]) == pytest.approx(0.95)


@pytest.mark.parametrize("args, needle", [
    (["schedule", "no-such-recipe"], "no-such-recipe"),
    (["schedule", "quickstart", "--png", "/no/such/folder/s.png"], "/no/such/folder"),
    (["schedule", "quickstart", "--set", "tricks.warmup.epochs=20.0"], "tricks.warmup.epochs"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.output
