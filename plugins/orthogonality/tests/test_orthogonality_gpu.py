"""The CUDA path (``pytest -m gpu``; skipped without CUDA): the penalty and the decoupled step never
sync the device, under fp16's grad scaler with a fused Adam and under bf16, on channels_last conv
weights."""
import math

import pytest
import torch
from trickbag.engine.loop import fit
from trickbag.hookspecs import hookimpl
from trickbag.recipe import build_recipe

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


class NoSyncInSecondEpoch:
    def __init__(self):
        self.checked = 0

    @hookimpl
    def trickbag_epoch_start(self, state):
        if state.epoch == 1:
            torch.cuda.set_sync_debug_mode("error")

    @hookimpl
    def trickbag_step_end(self, state):
        if torch.cuda.get_sync_debug_mode():
            self.checked += 1
        if state.step_in_epoch == state.steps_per_epoch - 1:
            torch.cuda.set_sync_debug_mode(0)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("mode", ["coupled", "decoupled"])
def test_steps_never_sync_the_device(precision, mode):
    observer = NoSyncInSecondEpoch()
    try:
        # fit, not run_trick: run_trick reads every step's loss, a sync by design
        recipe = build_recipe({
            "tricks": {"one_cycle": {}, "orthogonality": {"mode": mode, "strength": 1e-3}},
            "data": {"name": "digits", "val_size": 297}, "model": {"name": "small_cnn", "width": 16},
            "optimizer": {"name": "adam", "lr": 0.01},
            "training": {"epochs": 2, "batch_size": 100, "precision": precision, "device": "cuda"},
        })
        summary = fit(recipe, None, observers=[observer])
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert observer.checked == 15 and math.isfinite(summary["history"][-1]["train_loss"])
