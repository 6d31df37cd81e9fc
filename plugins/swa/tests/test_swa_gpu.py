"""The CUDA path (``pytest -m gpu``; skipped without CUDA): snapshots every few steps never sync the
device, under fp16's grad scaler and bf16; the average and its recomputed BatchNorm statistics
stay on the device, and validation scores it."""
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
    def trickbag_fit_start(self, context):
        self.trick = context.tricks["swa"]

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
def test_snapshots_never_sync_the_device(precision):
    observer = NoSyncInSecondEpoch()
    try:
        recipe = build_recipe({
            "tricks": {"swa": {"start_epoch": 1, "unit": "step", "every": 3}},
            "data": {"name": "digits", "val_size": 297}, "model": {"name": "small_cnn", "width": 16},
            "optimizer": {"name": "adamw", "lr": 0.01},  # fused on CUDA: fp16's scaler steps it without a sync
            "training": {"epochs": 2, "batch_size": 100, "precision": precision, "device": "cuda"},
        })
        summary = fit(recipe, None, observers=[observer])
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert observer.checked == 15 and math.isfinite(summary["history"][-1]["train_loss"])
    trick = observer.trick
    assert trick.n == 10 and trick.bn_at == 10
    assert all(v.device.type == "cuda" for v in trick.average.state_dict().values())
