"""How many steps a run takes, and at which batch size: the one place that counts them.

The loop, ``RunContext.total_steps`` (what one-cycle sizes its cycle with), the progress bar, the
momentum table and the TUI's schedule preview all count through here, so a fractional last epoch
or a batch-size schedule can never make two of them disagree by a step.

Progress is in epochs: step ``s`` of epoch ``e`` (0-based) with ``n`` steps per epoch is at
``e + s / n``, and the loop takes step ``s`` only while that is below ``training.epochs``.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import pluggy

    from trickbag.context import RunContext


def steps_in_epoch(epochs: float, epoch: int, steps_per_epoch: int) -> int:
    """Steps the loop takes in ``epoch``: all ``steps_per_epoch``, or those of a fractional last
    epoch, counted with the loop's own float test ``epoch + s / n < epochs``."""
    n = steps_per_epoch
    if epochs - epoch >= 1:
        return n
    k = max(0, min(n, math.ceil((epochs - epoch) * n)))
    while k > 0 and epoch + (k - 1) / n >= epochs:  # float rounding either way: the loop's test decides
        k -= 1
    while k < n and epoch + k / n < epochs:
        k += 1
    return k


def batch_size_for(hook: pluggy.HookRelay, epoch: int, context: RunContext) -> int:
    """The per-device batch size of ``epoch``: a batch-size trick's answer, else the recipe's."""
    recipe_size = context.recipe.training.batch_size
    return hook.trickbag_batch_size(epoch=epoch, batch_size=recipe_size, context=context) or recipe_size


@dataclass(frozen=True)
class RunPlan:
    """The run epoch by epoch, without training: batch size, steps per full epoch, steps taken."""

    epochs: float
    steps_per_epoch: int  # at the recipe's batch size: what schedules map progress to steps with
    batch_sizes: tuple[int, ...]  # per device, for each epoch
    full_steps: tuple[int, ...]  # steps of each epoch if it ran whole (at its batch size)
    taken_steps: tuple[int, ...]  # steps the loop takes in each epoch

    @property
    def total_steps(self) -> int:
        return sum(self.taken_steps)

    def progress_at(self, k: int) -> float:
        """Progress (epochs) at the start of global step ``k`` (0-based)."""
        starts = self._starts()
        epoch = bisect.bisect_right(starts, k) - 1
        return epoch + (k - starts[epoch]) / self.full_steps[epoch]

    def progress_points(self, points: int) -> list[float]:
        """Progress of up to ``points`` steps spread evenly over the run, first and last included."""
        total = self.total_steps
        n = min(points, total)
        picks = sorted({round(i * (total - 1) / max(n - 1, 1)) for i in range(n)})
        return [self.progress_at(k) for k in picks]

    def epoch_of(self, k: int) -> int:
        """The epoch (0-based) that global step ``k`` belongs to."""
        return bisect.bisect_right(self._starts(), k) - 1

    def batch_size_changes(self) -> list[tuple[int, int]]:
        """(epoch, batch size) where the batch size takes a new value, starting at epoch 0."""
        out: list[tuple[int, int]] = []
        for epoch, size in enumerate(self.batch_sizes):
            if not out or out[-1][1] != size:
                out.append((epoch, size))
        return out

    def _starts(self) -> list[int]:
        starts = [0]
        for taken in self.taken_steps:
            starts.append(starts[-1] + taken)
        return starts


def plan_run(hook: pluggy.HookRelay, context: RunContext, num_batches: Callable[[int], int]) -> RunPlan:
    """Ask the batch-size hook for every epoch and count the steps; ``num_batches(global_batch)``
    is the training source's (``TrainSource.num_batches``)."""
    epochs, world = context.epochs, context.world_size
    sizes, full, taken = [], [], []
    for epoch in range(math.ceil(epochs)):
        size = batch_size_for(hook, epoch, context)
        n = num_batches(size * world)
        sizes.append(size)
        full.append(n)
        taken.append(steps_in_epoch(epochs, epoch, n))
    return RunPlan(epochs, context.steps_per_epoch, tuple(sizes), tuple(full), tuple(taken))


def nominal_steps(epochs: float, steps_per_epoch: int) -> int:
    """Steps of the run if every epoch had ``steps_per_epoch`` (the recipe's batch size)."""
    return sum(steps_in_epoch(epochs, e, steps_per_epoch) for e in range(math.ceil(epochs)))
