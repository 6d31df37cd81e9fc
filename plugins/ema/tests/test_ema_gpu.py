"""The CUDA path (``pytest -m gpu``; skipped without CUDA): updating the average every step never
syncs the device (torch's AveragedModel would, reading ``n_averaged`` back at each update), under
fp16's grad scaler and bf16, and the average still equals AveragedModel's."""
import math

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from trickbag.engine.loop import fit
from trickbag.hookspecs import hookimpl
from trickbag.recipe import build_recipe

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


class NoSyncInSecondEpoch:
    """Sync debug mode 'error' over the second epoch's steps (validation, which syncs by design, is
    outside them); an AveragedModel oracle updated after the same steps, outside the checked span."""

    def __init__(self, decay):
        self.checked, self.decay = 0, decay

    @hookimpl
    def trickbag_fit_start(self, context):
        self.model, self.trick = context.model, context.tricks["ema"]
        self.oracle = AveragedModel(context.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
        self.oracle.update_parameters(context.model)

    @hookimpl
    def trickbag_epoch_start(self, state):
        if state.epoch == 1:
            torch.cuda.set_sync_debug_mode("error")

    @hookimpl
    def trickbag_step_end(self, state):
        mode = torch.cuda.get_sync_debug_mode()
        self.checked += bool(mode)
        torch.cuda.set_sync_debug_mode(0)
        self.oracle.update_parameters(self.model)  # it syncs: outside the checked span
        if state.step_in_epoch < state.steps_per_epoch - 1:
            torch.cuda.set_sync_debug_mode(mode)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_updates_never_sync_the_device_and_match_averaged_model(precision):
    observer = NoSyncInSecondEpoch(0.9)
    try:
        recipe = build_recipe({
            "tricks": {"one_cycle": {}, "ema": {"decay": 0.9}},
            "data": {"name": "digits", "val_size": 297}, "model": {"name": "small_cnn", "width": 16},
            "optimizer": {"name": "adamw", "lr": 0.01},  # fused on CUDA: fp16's scaler steps it without a sync
            "training": {"epochs": 2, "batch_size": 100, "precision": precision, "device": "cuda"},
        })
        summary = fit(recipe, None, observers=[observer])
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert observer.checked == 15 and math.isfinite(summary["history"][-1]["train_loss"])
    mine, theirs = observer.trick.average.state_dict(), observer.oracle.module.state_dict()
    for key, value in mine.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, theirs[key], rtol=1e-5, atol=1e-6, msg=key)
        assert value.device.type == "cuda"
