"""The CUDA path: run with ``pytest -m gpu`` on a machine with a GPU (benchmarks/device_check.sh).

Skipped without CUDA. What they hold: a training step never waits for the device (checked with
torch's sync debug mode, which raises on ``.item()``, host copies and the like), in bf16 and fp16
(grad scaler + fused optimizer), with the tricks that touch the batch; the device data path gives
the same bits as the CPU DataLoader path; the speed options resolve as documented on CUDA.
"""
from __future__ import annotations

import math

import pytest
import torch
from trickbag.config import DataConfig
from trickbag.data import load_data
from trickbag.engine.assemble import prepare_run
from trickbag.engine.loop import fit
from trickbag.hookspecs import hookimpl
from trickbag.recipe import build_recipe

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

CUDA = torch.device("cuda")


def cifar_recipe(model="resnet20", precision="bf16", tricks=None, **training):
    return build_recipe({
        "data": {"name": "synthetic_cifar10", "val": "test", "subset": 4096, "crop_padding": 4, "flip": True},
        "model": {"name": model},
        "optimizer": {"name": "sgd", "lr": 0.2, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        "training": {"epochs": 2, "batch_size": 256, "precision": precision, "device": "cuda", **training},
        "tricks": tricks or {},
    })


class NoSyncInSteps:
    """Raise on any device sync inside the steps of the second epoch (the first warms cuDNN's
    benchmark and the allocator). Evaluation and the epoch's one loss read-out come after."""

    def __init__(self) -> None:
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


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_training_steps_never_sync_the_device(precision):
    observer = NoSyncInSteps()
    tricks = {"one_cycle": {}, "label_smoothing": {"epsilon": 0.1}, "mixup": {"alpha": 0.2}, "no_bias_decay": {}}
    try:
        summary = fit(cifar_recipe(precision=precision, tricks=tricks, grad_clip=5.0), None, observers=[observer])
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert observer.checked == 4096 // 256  # every step of epoch 2 ran under the check
    assert math.isfinite(summary["history"][-1]["train_loss"])


def test_compiled_steps_never_sync_the_device():
    observer = NoSyncInSteps()
    try:
        summary = fit(cifar_recipe(model="airbench94", compile=True), None, observers=[observer])
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert observer.checked == 4096 // 256 and math.isfinite(summary["history"][-1]["train_loss"])


def test_speed_options_on_cuda():
    run = prepare_run(cifar_recipe())
    try:
        speed = run.context.speed
        assert speed.channels_last and speed.cudnn_benchmark and speed.tf32 and speed.fused_optimizer
        assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
        assert all(g["fused"] for g in run.optimizer.param_groups)
        conv = run.raw_model.conv1.weight
        assert conv.is_cuda and conv.is_contiguous(memory_format=torch.channels_last)
        x, _ = next(iter(run.train.batches(256, 0, 0)))
        assert x.is_cuda and x.is_contiguous(memory_format=torch.channels_last)
        assert run.train.store.dtype == torch.uint8 and run.train.store.is_cuda and run.train.per_batch
    finally:
        run.release()


def test_cuda_batches_equal_the_cpu_dataloader_bits():
    cfg = dict(name="synthetic_cifar10", val="test", subset=2048, crop_padding=4, flip=True)
    gpu, gpu_val = load_data(DataConfig(**cfg, on_device="always"), CUDA)
    cpu, cpu_val = load_data(DataConfig(**cfg, on_device="never", num_workers=0), torch.device("cpu"))
    for (a, ya), (b, yb) in zip(gpu.batches(512, 3, 7), cpu.batches(512, 3, 7), strict=True):
        assert torch.equal(a.cpu(), b) and torch.equal(ya.cpu(), yb)
    for (a, _), (b, _) in zip(gpu_val.batches(1000), cpu_val.batches(1000), strict=True):
        assert torch.equal(a.cpu(), b)
