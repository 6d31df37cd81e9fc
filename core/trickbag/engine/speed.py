"""The speed options of ``[training]``, resolved for the device a run lands on.

``"auto"`` turns an option on where it pays: channels_last for conv nets, cuDNN benchmark, TF32
and fused optimizers on CUDA. ``true`` where an option does nothing (TF32 on a CPU) is ignored
with one info line, never an error, so one recipe runs on a laptop and on a GPU node alike.

The cuDNN/TF32/determinism switches are process-wide in torch: :class:`BackendFlags` records them
before a run sets them and puts them back afterwards, so a notebook or the TUI that trains two
recipes in one process does not carry the first one's settings into the second.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from trickbag.config import TrainingConfig

log = logging.getLogger("trickbag")

#: optimizers (by recipe name) for which torch has a fused implementation
FUSED_OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class Speed:
    """What the run actually uses (``RunContext.speed``); every field is a plain bool."""

    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"
    cudnn_benchmark: bool = False
    tf32: bool = False
    fused_optimizer: bool = False


def _cuda_only(name: str, value: object, device: torch.device, default: bool) -> bool:
    if value == "auto":
        return default
    if value and device.type != "cuda":
        log.info("training.%s = true applies to CUDA only: ignored on %s", name, device.type)
        return False
    return bool(value)


def resolve_speed(training: TrainingConfig, optimizer_name: str, device: torch.device, model: nn.Module) -> Speed:
    cuda = device.type == "cuda"
    convolutional = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if training.channels_last == "auto":
        channels_last = cuda and convolutional
    else:
        channels_last = bool(training.channels_last)  # honoured on every device: CPUs have channels_last kernels too
    benchmark = _cuda_only("cudnn_benchmark", training.cudnn_benchmark, device, cuda and not training.deterministic)
    if benchmark and training.deterministic:
        log.info("training.cudnn_benchmark = true conflicts with deterministic = true: benchmark off")
        benchmark = False
    fused = training.fused_optimizer
    if fused == "auto":
        fused = cuda and optimizer_name in FUSED_OPTIMIZERS
    elif fused and optimizer_name not in FUSED_OPTIMIZERS:
        log.info("training.fused_optimizer = true: torch has no fused %s, using the plain one", optimizer_name)
        fused = False
    return Speed(
        channels_last=channels_last, compile=training.compile, compile_mode=training.compile_mode,
        cudnn_benchmark=benchmark, tf32=_cuda_only("tf32", training.tf32, device, cuda), fused_optimizer=bool(fused),
    )


class BackendFlags:
    """Set torch's process-wide switches for a run; :meth:`restore` puts back what was there."""

    def __init__(self, speed: Speed, deterministic: bool) -> None:
        self.saved = (
            torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
            torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        torch.backends.cudnn.benchmark = speed.cudnn_benchmark
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = speed.tf32
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

    def restore(self) -> None:
        benchmark, cudnn_tf32, matmul_tf32, det, warn_only = self.saved
        torch.backends.cudnn.benchmark = benchmark
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
