"""Momentum time constants: the talk's table, the formula against torch's own momentum buffer,
the warnings, and ``trickbag momentum``."""
from __future__ import annotations

import math

import pytest
import torch
from trickbag.cli.app import app
from trickbag.momentum.constants import (
    EPOCH_FRACTION,
    REFERENCE_BETAS,
    momentum_rows,
    run_length,
    time_constant,
)
from trickbag.recipe import build_recipe, load_recipe
from trickbag.services import bundled_recipes
from typer.testing import CliRunner

DIGITS = {"data": {"name": "digits", "val_size": 297}, "model": {"name": "small_cnn", "width": 8}}


def recipe(optimizer=None, training=None, tricks=None):
    return build_recipe({**DIGITS, "optimizer": optimizer or {}, "training": training or {}, "tricks": tricks or {}})


# the talk's slide ("Example: AdamOptimizer"): beta -> T
TALK = {0.5: 1.44, 0.9: 10, 0.95: 20, 0.99: 100, 0.995: 200, 0.999: 1000}


@pytest.mark.parametrize("beta", sorted(TALK))
def test_the_talks_table(beta):
    t = time_constant(beta)
    assert t == -1 / math.log(beta)  # exactly the formula
    assert t == pytest.approx(TALK[beta], rel=0.06)  # the slide's rounded "~" values
    # and the usual closed form it rounds: 1/(1-beta) - 1/2 (9.49, 19.5, 99.5, 199.5, 999.5)
    if beta >= 0.9:
        assert t == pytest.approx(1 / (1 - beta) - 0.5, abs=0.01)


def test_reference_betas_are_the_talks():
    assert REFERENCE_BETAS == tuple(sorted(TALK))


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_time_constant_needs_a_beta_in_0_1(bad):
    with pytest.raises(ValueError):
        time_constant(bad)


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99])
def test_torch_momentum_forgets_an_impulse_to_1_over_e_after_T_steps(beta):
    """SGD's momentum buffer (dampening 0) after a unit gradient then zeros: buf_t = beta**t;
    it crosses 1/e between steps floor(T) and ceil(T), and beta**T is exactly 1/e."""
    p = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([p], lr=1.0, momentum=beta)
    t = time_constant(beta)
    buffers = []
    for step in range(math.ceil(t) + 1):
        p.grad = torch.tensor(1.0 if step == 0 else 0.0)
        opt.step()
        buffers.append(opt.state[p]["momentum_buffer"].item())
    assert buffers == pytest.approx([beta**k for k in range(len(buffers))], rel=1e-6)
    assert buffers[math.floor(t)] >= math.exp(-1) >= buffers[math.ceil(t)]
    assert beta**t == pytest.approx(math.exp(-1), rel=1e-12)


def test_adam_second_moment_is_the_same_average():
    """Adam's ``exp_avg_sq`` is an EMA with beta2: a squared-gradient impulse decays as beta2**t."""
    beta2 = 0.99
    p = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.Adam([p], lr=1e-3, betas=(0.9, beta2))
    t = time_constant(beta2)
    values = []
    for step in range(math.ceil(t) + 1):
        p.grad = torch.tensor(1.0 if step == 0 else 0.0)
        opt.step()
        values.append(opt.state[p]["exp_avg_sq"].item())
    first = values[0]  # (1 - beta2) * g**2
    assert values[math.floor(t)] / first >= math.exp(-1) >= values[math.ceil(t)] / first


def test_rows_of_sgd_recipe():
    r = recipe({"name": "sgd", "momentum": 0.9}, {"epochs": 4, "batch_size": 100})
    rows = momentum_rows(r)
    assert [(row["beta"], row["source"]) for row in rows] == [(0.9, "optimizer momentum")] + [(b, "reference") for b in REFERENCE_BETAS]
    # digits: 1,797 - 297 held out = 1,500 training samples; 15 steps of 100 per epoch, 60 in the run
    assert {(row["steps_per_epoch"], row["run_steps"]) for row in rows} == {(15, 60)}
    for row in rows:
        assert row["T_steps"] == time_constant(row["beta"])
        assert row["T_epochs"] == pytest.approx(row["T_steps"] / 15)
    warned = {row["beta"] for row in rows if row["warning"]}
    assert warned == {0.99, 0.995, 0.999}  # T = 99.5, 199.5, 999.5 > 60 steps
    assert all(row["warning"] == "T > the run" for row in rows if row["warning"])


def test_rows_of_adam_recipe_name_both_betas():
    rows = momentum_rows(recipe({"name": "adam", "lr": 1e-3, "betas": [0.8, 0.98]}))
    assert [(row["beta"], row["source"]) for row in rows[:2]] == [(0.8, "Adam beta1"), (0.98, "Adam beta2")]


def test_tiny_fraction_of_an_epoch_warns():
    # batch 1: 1,500 steps per epoch; 1 % of an epoch is 15 steps: beta 0.5 (1.44) and 0.9 (9.49) warn
    rows = momentum_rows(recipe({"name": "sgd", "momentum": 0.95}, {"epochs": 1, "batch_size": 1}))
    limit = EPOCH_FRACTION * 1500
    for row in rows:
        assert (row["warning"] is not None) == (row["T_steps"] < limit), row
    assert {row["beta"] for row in rows if row["warning"]} == {0.5, 0.9}


def test_momentum_schedule_extremes_and_batch_size_milestones():
    r = recipe({"name": "sgd", "momentum": 0.9}, {"epochs": 4, "batch_size": 100},
               {"one_cycle": {"base_momentum": 0.8, "max_momentum": 0.97}, "batch_size_schedule": {"milestones": [2], "factor": 3}})
    rows = momentum_rows(r)
    scheduled = {row["source"]: row["beta"] for row in rows if row["source"].startswith("scheduled")}
    assert scheduled == {"scheduled min": pytest.approx(0.8), "scheduled max": pytest.approx(0.97)}
    # epochs 0-1 at batch 100 (15 steps each), epochs 2-3 at batch 300 (5 steps each)
    assert rows[0]["run_steps"] == 40
    import torch as _torch
    from trickbag.data import load_data

    train, _ = load_data(r.data, _torch.device("cpu"))
    assert run_length(r, train).run_steps == 40


def test_fractional_epochs_count_the_steps_the_loop_takes():
    rows = momentum_rows(recipe({"name": "sgd"}, {"epochs": 2.5, "batch_size": 100}))
    assert rows[0]["run_steps"] == 15 + 15 + 8  # the loop stops the last epoch at progress 2.5


def test_cli_momentum_prints_the_table():
    result = CliRunner().invoke(app, ["momentum", "quickstart"])
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("momentum time constants", "optimizer momentum", "reference", "999.5", "9.49", "1.44", "T > the run", "T = -1/ln(beta)"):
        assert text in out
    # quickstart: 4,000 training digits, batch 128: 31 steps per epoch, 310 in its 10 epochs
    assert "31 steps per epoch, 310 in the run" in out.replace("\n", " ")
    rows = momentum_rows(load_recipe(bundled_recipes()["quickstart"]))
    assert [r["beta"] for r in rows if r["warning"]] == [0.999]


def test_cli_momentum_bad_recipe_is_one_line():
    result = CliRunner().invoke(app, ["momentum", "nope"])
    assert result.exit_code == 2
    assert "not found" in result.output
