"""The CUDA path (``pytest -m gpu``; skipped without CUDA): logging every step never syncs the
device (the sampled losses stay on it until the epoch ends), and the logged losses are the run's."""
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from trickbag.engine.loop import fit
from trickbag.hookspecs import hookimpl
from trickbag.recipe import build_recipe

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


class NoSyncInSecondEpoch:
    """Sync debug mode 'error' over the second epoch's steps, the plugin's step_end included (this
    observer's runs last); validation and the epoch's one read of the losses are outside it."""

    def __init__(self):
        self.checked = 0

    @hookimpl
    def trickbag_epoch_start(self, state):
        if state.epoch == 1:
            torch.cuda.set_sync_debug_mode("error")

    @hookimpl(trylast=True)
    def trickbag_step_end(self, state):
        self.checked += bool(torch.cuda.get_sync_debug_mode())
        if state.step_in_epoch == state.epoch_steps - 1:
            torch.cuda.set_sync_debug_mode(0)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_logging_never_syncs_the_device(tmp_path, precision):
    observer = NoSyncInSecondEpoch()
    try:
        recipe = build_recipe({
            "tricks": {"one_cycle": {}, "tensorboard": {"every": 1}},
            "data": {"name": "digits", "val_size": 297}, "model": {"name": "small_cnn", "width": 16},
            "optimizer": {"name": "adamw", "lr": 0.01},
            "training": {"epochs": 2, "batch_size": 100, "precision": precision, "device": "cuda"},
        })
        fit(recipe, tmp_path / "run", observers=[observer])
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert observer.checked == 15
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 31))
