"""Batch-size schedule (Smith, Kindermans, Ying & Le, "Don't Decay the Learning Rate, Increase the
Batch Size", ICLR 2018): where a step schedule would divide the learning rate by ``factor``,
multiply the batch size by ``factor`` instead. The noise scale of SGD, about lr * N / B, falls the
same way, with ``factor`` times fewer optimizer steps after each milestone.

The batch size of epoch ``e`` (0-based) is ``batch_size * factor ** (number of milestones <= e)``,
capped at ``max_batch_size``. The engine rebuilds the loader when the answer changes; LR and
momentum schedules are functions of progress in epochs, so they stay where they were planned (a
one-cycle peak at 30 % of the run is still at 30 % of the run). The answer depends on the epoch
only, so a resumed run continues with the right batch size.
"""
from __future__ import annotations

from pydantic import Field, StrictFloat, StrictInt, field_validator
from trickbag import TrickOptions, TrickSpec, hookimpl


class BatchSizeScheduleOptions(TrickOptions):
    milestones: list[int] = Field([], description="epochs (0-based, strictly increasing, >= 1) from which the batch size is multiplied by factor")
    factor: StrictFloat = Field(2.0, ge=1, description="multiplier of the batch size at each milestone (the paper: 5, where the LR was divided by 5)")
    max_batch_size: StrictInt | None = Field(None, ge=1, description="per-device cap (never below the recipe's training.batch_size)")

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(m < 1 for m in value):
            raise ValueError("milestones must be epochs >= 1 (epoch 0 is training.batch_size itself)")
        if any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError("milestones must be strictly increasing")
        return value


class BatchSizeSchedule:
    def __init__(self, options: BatchSizeScheduleOptions) -> None:
        self.options = options

    @hookimpl
    def trickbag_batch_size(self, epoch, batch_size, context):
        return scheduled_batch_size(epoch, batch_size, self.options)


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("batch_size_schedule", BatchSizeScheduleOptions, BatchSizeSchedule, "increase the batch size at milestones instead of decaying the LR")


def scheduled_batch_size(epoch: int, batch_size: int, o: BatchSizeScheduleOptions) -> int:
    passed = sum(1 for m in o.milestones if m <= epoch)
    size = round(batch_size * o.factor**passed)
    if o.max_batch_size is not None:
        size = max(batch_size, min(size, o.max_batch_size))
    return size
