"""A run with a weight average (ema) and shake-shake's random branch mixing, interrupted mid-epoch
and resumed, ends exactly as the run never interrupted: training weights, averaged weights, the
average inside the trick's state, the metrics and best.pt (issue 11's resume acceptance)."""
from __future__ import annotations

import pytest
import torch
from trickbag.engine.loop import fit
from trickbag.hookspecs import hookimpl
from trickbag.recipe import build_recipe
from trickbag.runs.checkpoint import load_checkpoint

pytest.importorskip("trickbag_ema")
pytest.importorskip("trickbag_shake_shake")
pytestmark = pytest.mark.usefixtures("single_thread")  # exact comparisons within one process

RECIPE = {
    "data": {"name": "digits", "val_size": 297}, "model": {"name": "shake_shake26_2x32d"},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
    "training": {"epochs": 2, "batch_size": 100, "seed": 5, "threads": 1},
    "tricks": {"shake_shake": {}, "ema": {"decay": 0.9, "warmup": True}, "one_cycle": {}},
}


def same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_interrupted_ema_and_shake_shake_run_resumes_exactly(tmp_path):
    fit(build_recipe(RECIPE), tmp_path / "reference")

    class CtrlC:
        @hookimpl
        def trickbag_step_end(self, state):
            if state.epoch == 1 and state.step_in_epoch == 7:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(build_recipe(RECIPE), tmp_path / "resumed", observers=[CtrlC()])
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 1  # the kill landed mid-run
    fit(build_recipe(RECIPE), tmp_path / "resumed", resume=True)

    a, b = (load_checkpoint(tmp_path / name / "checkpoint.pt") for name in ("resumed", "reference"))
    assert a["epoch"] == b["epoch"] == 2
    same(a["model"], b["model"])  # training weights
    same(a["eval_model"], b["eval_model"])  # the averaged weights validation scored
    same(a["tricks"]["ema"]["average"], b["tricks"]["ema"]["average"])
    assert a["tricks"]["ema"]["updates"] == b["tricks"]["ema"]["updates"] == 30
    assert [(r["train_loss"], r["val_acc"]) for r in a["history"]] == [(r["train_loss"], r["val_acc"]) for r in b["history"]]
    best_a, best_b = (torch.load(tmp_path / name / "best.pt", weights_only=True) for name in ("resumed", "reference"))
    same(best_a["model"], best_b["model"])
