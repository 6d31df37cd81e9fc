"""Step learning-rate decay: the LR multiplied by ``gamma`` at each epoch milestone, the schedule of
the ResNet papers (Goyal et al. 2017: /10 at epochs 30, 60 and 80) and the baseline that Smith et
al. ("Don't Decay the Learning Rate, Increase the Batch Size", 2018) replace by growing the batch:

    lr(progress) = max_lr * gamma ** (number of milestones <= progress)

torch's ``MultiStepLR`` with milestones at ``milestone * steps_per_epoch`` steps (tested at every
step). Milestones are epochs keyed on progress, so they may be fractional, and a batch-size schedule
does not move them. Momentum is not touched.
"""
from __future__ import annotations

from pydantic import Field, StrictFloat, StrictInt, field_validator
from trickbag import TrickOptions, TrickSpec, UserError, hookimpl

#: progress this close below a milestone is at it: ``epoch + step / steps`` can round just under a
#: fractional milestone, and the decay would then come one step late
SNAP = 1e-9


class StepDecayOptions(TrickOptions):
    milestones: list[StrictFloat | StrictInt] = Field(
        ..., min_length=1, description="epochs (may be fractional, strictly increasing, > 0) at which the LR is multiplied by gamma"
    )
    gamma: StrictFloat = Field(0.1, gt=0, lt=1, description="multiplier at each milestone (Goyal et al.: 0.1; Smith et al.'s comparison: 0.2)")
    max_lr: StrictFloat | None = Field(None, gt=0, description="LR before the first milestone (default: optimizer.lr)")

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if any(m <= 0 for m in value):
            raise ValueError("milestones must be epochs > 0")
        if any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError("milestones must be strictly increasing")
        return [float(m) for m in value]


class StepDecay:
    def __init__(self, options: StepDecayOptions) -> None:
        self.options = options

    @hookimpl
    def trickbag_check(self, context):
        late = [m for m in self.options.milestones if m >= context.epochs]
        if late:
            raise UserError(f"tricks.step_decay.milestones {late} must fall inside the run (training.epochs {context.epochs:g})")

    @hookimpl
    def trickbag_lr_schedule(self, base_lr, context):
        return Steps(self.options.max_lr or base_lr, self.options.gamma, self.options.milestones)

    @hookimpl
    def trickbag_lr_bounds(self, bounds, context):
        # the decay starts at max_lr and only falls from there: a range test's base_lr has no place
        if bounds.base_lr is not None:
            bounds.notes.append(f"step_decay starts at max_lr and multiplies it by {self.options.gamma:g} at each milestone: base_lr unused")
        return {"tricks.step_decay.max_lr": bounds.max_lr}


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("step_decay", StepDecayOptions, StepDecay, "step LR decay: x gamma at epoch milestones (MultiStepLR)")


class Steps:
    def __init__(self, lr: float, gamma: float, milestones: list[float]) -> None:
        self.lr, self.gamma, self.milestones = lr, gamma, milestones

    def __call__(self, progress: float) -> float:
        passed = sum(1 for m in self.milestones if progress >= m - SNAP)
        return self.lr * self.gamma**passed
