"""lr-find --verify: the recommendation checked by training the recipe itself."""
from __future__ import annotations

import json

import pytest
import tomllib
from trickbag.cli.app import app
from trickbag.lr_range.verify import verify
from trickbag.recipe import build_recipe
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")

RAW = {
    "data": {"name": "digits", "val_size": 297},
    "model": {"name": "mlp", "width": 32},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "training": {"epochs": 2, "batch_size": 100},
}


def test_verify_picks_the_clearly_better_lr():
    """1e-4 barely moves an MLP in 2 epochs; 256 times it trains: the verification says so."""
    v = verify(build_recipe(RAW), 1e-4, factors=(1.0, 256.0), extend=0)
    assert [c.factor for c in v.candidates] == [1.0, 256.0] and v.winner.factor == 256.0
    low, high = v.candidates
    assert high.score > low.score + 0.2 and v.margin() == pytest.approx(100 * (high.score - low.score))
    assert v.seeds == [0] and v.to_dict()["verified"] == pytest.approx(0.0256)


def test_successive_halving_prunes_a_clear_loser_after_its_first_epoch():
    v = verify(build_recipe({**RAW, "training": {**RAW["training"], "epochs": 3}}), 0.05, factors=(1.0, 1 / 512), extend=0)
    good, bad = v.candidates
    assert good.pruned_at is None and bad.pruned_at == 1 and bad.score is None and v.winner is good


def test_an_edge_that_wins_is_extended():
    """The recommendation is far too low: x2 wins, so x4 is tried, then x8."""
    v = verify(build_recipe(RAW), 1e-4, factors=(1.0, 0.5, 2.0), extend=2)
    assert [c.factor for c in v.candidates] == [1.0, 0.5, 2.0, 4.0, 8.0]


def test_seeds_are_reported(tmp_path):
    v = verify(build_recipe({**RAW, "training": {**RAW["training"], "seed": 7, "epochs": 1}}), 0.05, seeds=2, factors=(1.0,), extend=0)
    assert v.seeds == [7, 8] and len(v.candidates[0].accuracies) == 2


def test_the_cli_verifies_reports_and_applies_the_winner(tmp_path):
    src = tmp_path / "r.toml"
    src.write_text('[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\nwidth = 32\n'
                   '[optimizer]\nname = "sgd"\nlr = 0.05\nmomentum = 0.9\n[training]\nepochs = 1\nbatch_size = 100\n')
    result = CliRunner().invoke(app, ["lr-find", str(src), "--steps", "60", "--start", "1e-5", "--out", str(tmp_path / "lr"),
                                      "--verify", "--apply"])
    assert result.exit_code == 0, result.output
    assert "verify: 3 candidate LRs x 1 seed(s), up to 3 epochs at about" in result.stderr  # the time estimate
    assert "verification: the recipe trained 1 epochs at each LR, seeds 0" in result.stdout and "verified: " in result.stdout
    saved = json.loads((tmp_path / "lr" / "verify.json").read_text())
    tuned = tomllib.loads((tmp_path / "r.tuned.toml").read_text())
    assert tuned["optimizer"]["lr"] == float(f"{saved['verified']:.4g}")
    assert "--verify --apply (the LR that won the verification runs)" in (tmp_path / "r.tuned.toml").read_text()
