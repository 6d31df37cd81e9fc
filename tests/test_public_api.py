"""What docs/plugin-api.md promises beyond the hooks: rebuilding a run's model, and run_trick."""
from __future__ import annotations

import types

import pytest
import torch
import trickbag
from trickbag import TrickOptions, TrickSpec, UserError, hookimpl
from trickbag.data import load_data
from trickbag.engine.evaluate import evaluate
from trickbag.plugins import Catalog
from trickbag.recipe import build_recipe
from trickbag.runs.folder import read_metrics
from trickbag.testing import run_trick

RAW = {
    "data": {"name": "digits", "val_size": 297},
    "model": {"name": "small_cnn", "width": 8},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "training": {"epochs": 2, "batch_size": 100},
    "tricks": {"label_smoothing": {}},
}


def test_load_model_gives_back_the_trained_model(tmp_path):
    recipe = build_recipe(RAW)
    trickbag.fit(recipe, tmp_path / "run")
    before = torch.random.get_rng_state()
    loaded = trickbag.load_model(tmp_path / "run")
    assert torch.equal(torch.random.get_rng_state(), before)  # loading never moves the caller's random stream
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in loaded.model.state_dict().items())
    assert not loaded.model.training and loaded.epoch == 2 and loaded.recipe.to_dict() == recipe.to_dict()
    _, val = load_data(recipe.data, torch.device("cpu"))
    assert loaded.info == val.info
    metrics = evaluate(loaded.model, val, 1000, None, torch.device("cpu"))
    assert metrics["val_acc"] == read_metrics(tmp_path / "run")[-1]["val_acc"]  # same process, same bits


def test_load_model_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        trickbag.load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="checkpoint.pt' not found"):
        trickbag.load_model(tmp_path / "empty")


def test_build_model_applies_the_recipes_architecture_tricks():
    class Marks:
        def __init__(self, options):
            pass

        @hookimpl
        def trickbag_configure_model(self, model, info, context):
            with torch.no_grad():
                model[-1].bias.fill_(7.0)

    module = types.ModuleType("trickbag_marks")
    module.trickbag_declare_tricks = hookimpl(lambda: TrickSpec("marks", TrickOptions, Marks, "marks the head"))
    catalog = Catalog().load(extra_modules=[module])
    recipe = build_recipe({**RAW, "model": {"name": "mlp", "width": 8}, "tricks": {"marks": {}}}, catalog=catalog)
    model = trickbag.build_model(recipe, catalog=catalog)
    assert torch.all(model[-1].bias == 7.0)


def test_run_trick_records_every_step():
    out = run_trick({"one_cycle": {}}, training={"epochs": 2})
    assert len(out.steps) == 30 and [round(s.progress * 15) for s in out.steps] == list(range(30))
    assert out.steps[0].lr < out.steps[10].lr and out.steps[0].momentum == pytest.approx(0.95)
    assert set(out.tricks) == {"one_cycle"} and len(out.summary["history"]) == 2
