"""The objects hooks receive: the batch, the per-step training state and the run context.

Plain dataclasses with ``slots`` so attribute access stays cheap in the per-step hot path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from trickbag.engine.speed import Speed

if TYPE_CHECKING:
    from torch import nn

    from trickbag.data import DataInfo, TrainSource
    from trickbag.recipe import Recipe


@dataclass(slots=True)
class Batch:
    """One training batch on the device. ``targets`` are class indices (int64, shape N) or, after
    a trick such as mixup, probabilities (float, shape N x num_classes)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    num_classes: int

    @property
    def is_soft(self) -> bool:
        return self.targets.is_floating_point()

    def soft_targets(self) -> torch.Tensor:
        """Targets as probabilities (one-hot when they were hard)."""
        if self.is_soft:
            return self.targets
        # float32 whatever the inputs are (uint8 images, fp16 under a cast): the loss runs in fp32
        return torch.nn.functional.one_hot(self.targets, self.num_classes).float()


@dataclass(slots=True)
class TrainState:
    """Where the run is. Progress is in epochs (float) because the batch size may change mid-run."""

    epochs: float  # run length in epochs
    epoch: int = 0  # current epoch, 0-based
    step_in_epoch: int = 0
    global_step: int = 0  # optimizer steps taken so far
    progress: float = 0.0  # epochs completed, fractional
    samples_seen: int = 0  # training samples seen (global, all ranks)
    batch_size: int = 0  # per-device batch size of the current epoch
    steps_per_epoch: int = 0  # steps of a full epoch at the current batch size (progress = epoch + step / this)
    epoch_steps: int = 0  # steps the loop takes in the current epoch (fewer in a fractional last epoch)
    lr: float = 0.0
    momentum: float | None = None
    loss: torch.Tensor | None = None  # last step's training loss, detached, still on the device
    generator: torch.Generator | None = None  # tricks' randomness, reseeded from (seed, epoch)
    world_size: int = 1
    rank: int = 0
    metrics: dict[str, float] = field(default_factory=dict)  # last epoch's metrics row
    sweep: bool = False  # True during an LR range test: its steps are undone afterwards


@dataclass
class RunContext:
    """Everything a trick may need to prepare itself: handed to setup hooks and ``fit_start``."""

    recipe: Recipe
    info: DataInfo
    device: torch.device
    steps_per_epoch: int  # with the recipe's batch size (a batch-size trick changes it later)
    world_size: int = 1
    rank: int = 0
    out_dir: Path | None = None
    model: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    lr_schedule: Callable[[float], float] | None = None
    momentum_schedule: Callable[[float], float] | None = None
    speed: Speed = field(default_factory=Speed)  # channels_last, compile, fused optimizer... as resolved for the device
    tricks: dict[str, object] = field(default_factory=dict)  # the run objects of the enabled tricks, by name
    # the training data, for a trick that needs a pass over it outside the steps (SWA's BatchNorm
    # statistics): train.batches(batch_size, epoch, seed) is a pure function of (seed, epoch), so
    # drawing from it never moves the run's own data order; None outside a run (previews)
    train: TrainSource | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs(self) -> float:
        return self.recipe.training.epochs

    @property
    def batch_size(self) -> int:
        """Per-device batch size from the recipe."""
        return self.recipe.training.batch_size

    @property
    def global_batch_size(self) -> int:
        """Samples per optimizer step over all devices (what the linear scaling rule keys on)."""
        return self.recipe.training.batch_size * self.world_size

    @property
    def total_steps(self) -> int:
        """Optimizer steps in the run at the recipe's batch size, counted as the loop counts them
        (``engine/plan.py``): a fractional last epoch takes ``ceil`` of its share of steps."""
        from trickbag.engine.plan import nominal_steps

        return max(1, nominal_steps(self.epochs, self.steps_per_epoch))


@dataclass
class LRBounds:
    """LR bounds chosen with the range test, on their way into a recipe (``trickbag_lr_bounds``).

    Both are LRs the optimizer sees at ``global_batch_size`` (the batch the range test ran at). A
    trick that rescales the LR (linear scaling) converts them in place before the schedule trick
    writes its options."""

    max_lr: float
    base_lr: float | None = None
    global_batch_size: int = 1
    notes: list[str] = field(default_factory=list)  # one line per conversion, shown to the user
