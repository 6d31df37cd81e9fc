"""The CUDA path (``pytest -m gpu``; skipped without CUDA): the decay never syncs the device, with
torch's fused AdamW under fp16's grad scaler (where the decay's own finite-gradient check matters),
with bf16, and with sgdw."""
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


@pytest.mark.parametrize("optimizer,precision,mode", [("adamw", "fp16", "decoupled"), ("adamw", "bf16", "decoupled"),
                                                      ("sgdw", "fp16", "decoupled"), ("adamw", "fp16", "l2")])
def test_steps_never_sync_the_device(optimizer, precision, mode):
    observer = NoSyncInSecondEpoch()
    try:
        # fit, not run_trick: run_trick reads every step's loss, a sync by design
        recipe = build_recipe({
            "tricks": {"one_cycle": {}, "no_bias_decay": {}, "decoupled_weight_decay": {"mode": mode}},
            "data": {"name": "digits", "val_size": 297}, "model": {"name": "small_cnn", "width": 16},
            "optimizer": {"name": optimizer, "lr": 0.01, "weight_decay": 0.05},
            "training": {"epochs": 2, "batch_size": 100, "precision": precision, "device": "cuda"},
        })
        summary = fit(recipe, None, observers=[observer])
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert observer.checked == 15 and math.isfinite(summary["history"][-1]["train_loss"])
