"""Chosen LR bounds reach every schedule trick: `lr-find --apply` and the TUI's save write them
through `trickbag_lr_bounds` into one_cycle, cyclical_lr, sgdr, cosine (with a warm-up around it)
or, with no schedule trick, `optimizer.lr`; the tuned recipe then trains at the chosen peak."""
from __future__ import annotations

import json

import pytest
import tomllib
from trickbag.cli.app import app
from trickbag.engine.timeline import recipe_timeline
from trickbag.recipe import load_recipe
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

BASE = ('[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\nwidth = 16\n'
        '[optimizer]\nname = "sgd"\nlr = 0.05\nmomentum = 0.9\n[training]\nepochs = 3\nbatch_size = 100\n')

# schedule tables, and where (max, base) must land: {key: "max" | "base" | "max/base"}
CASES = {
    "one_cycle": ("[tricks.one_cycle]\n", {"tricks.one_cycle.max_lr": "max", "tricks.one_cycle.div_factor": "max/base"}),
    "cyclical_lr": ("[tricks.cyclical_lr]\nstep_size = 1.0\n", {"tricks.cyclical_lr.max_lr": "max", "tricks.cyclical_lr.base_lr": "base"}),
    "sgdr": ("[tricks.sgdr]\nT_0 = 1.0\n", {"tricks.sgdr.max_lr": "max", "tricks.sgdr.eta_min": "base"}),
    "cosine+warmup": ("[tricks.warmup]\nepochs = 0.5\n[tricks.cosine]\n", {"tricks.cosine.max_lr": "max"}),
    "no schedule trick": ("", {"optimizer.lr": "max"}),
}


def lookup(raw: dict, key: str):
    for part in key.split("."):
        raw = raw[part]
    return raw


def expected(rule: str, max_lr: float, base_lr: float | None) -> float:
    value = {"max": max_lr, "base": base_lr, "max/base": max_lr / base_lr if base_lr else None}[rule]
    return float(f"{value:.4g}")  # written with 4 significant digits


def check_tuned(tuned, rules, max_lr, base_lr, tables):
    raw = tomllib.loads(tuned.read_text(encoding="utf-8"))
    for key, rule in rules.items():
        if rule != "max" and base_lr is None:
            continue
        assert lookup(raw, key) == pytest.approx(expected(rule, max_lr, base_lr), rel=1e-12), key
    trained = recipe_timeline(load_recipe(tuned), points=None)
    inner = trained
    if "warmup" in tables:
        assert raw["tricks"]["warmup"]["epochs"] == 0.5  # the wrapper's table is left as it was
        inner = recipe_timeline(load_recipe(tuned, ["tricks.warmup.enabled=false"]), points=None)
        after = [i for i, p in enumerate(trained.progress) if p >= 0.5]
        assert [trained.lr[i] for i in after] == [inner.lr[i] for i in after]  # the schedule itself after the warm-up
    # the schedule trains at the chosen peak, and no higher (one-cycle's peak falls between two steps
    # here, 12.5 steps into the cycle: the nearest step is within 1 %)
    written = float(f"{max_lr:.4g}")
    assert max(inner.lr) <= written * (1 + 1e-12)
    assert max(inner.lr) == pytest.approx(written, rel=1e-2 if "one_cycle" in tables else 1e-9)


@pytest.mark.parametrize("case", CASES)
def test_lr_find_apply_writes_the_bounds_where_the_schedule_takes_them(tmp_path, case):
    tables, rules = CASES[case]
    recipe = tmp_path / "r.toml"
    recipe.write_text(BASE + tables)
    result = CliRunner().invoke(app, ["lr-find", str(recipe), "--apply", "--json", "--out", str(tmp_path / "sweep")])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout[result.stdout.index("{"):])
    chosen = answer["recommended"]
    base = answer["base_lr"] if answer["base_lr"] and answer["base_lr"] < chosen else None
    assert chosen and answer["tuned_recipe"]
    check_tuned(tmp_path / "r.tuned.toml", rules, chosen, base, tables)


@pytest.mark.parametrize("case", CASES)
def test_the_tuis_save_writes_the_bounds_where_the_schedule_takes_them(tmp_path, case):
    from trickbag_tui.session import Session

    tables, rules = CASES[case]
    recipe = tmp_path / "r.toml"
    recipe.write_text(BASE + tables)
    session = Session(recipe, load_recipe(recipe))
    session.set_bounds(0.0123, 0.321)
    tuned = session.save()
    assert tuned == tmp_path / "r.tuned.toml"
    check_tuned(tuned, rules, 0.321, 0.0123, tables)
    line = session.bounds_line()
    assert ("no schedule trick takes base_lr" in line) == (case == "no schedule trick")
