"""Cosine learning-rate decay (He et al., "Bag of Tricks for Image Classification with Convolutional
Neural Networks", CVPR 2019, section 5.1; from SGDR without its restarts): over the whole run,

    lr_t = eta_min + (max_lr - eta_min) * (1 + cos(pi * t / T)) / 2

with ``t`` the step and ``T`` the run's steps, as torch's ``CosineAnnealingLR(T_max=total_steps)``
(tested at every step). The step is ``progress * steps_per_epoch`` at the recipe's batch size, so
the decay is a function of progress in epochs and a batch-size trick does not move it.
"""
from __future__ import annotations

import math

from pydantic import Field, StrictFloat, model_validator
from trickbag import TrickOptions, TrickSpec, UserError, hookimpl


class CosineOptions(TrickOptions):
    max_lr: StrictFloat | None = Field(None, gt=0, description="LR at the start (default: optimizer.lr)")
    eta_min: StrictFloat = Field(0.0, ge=0, description="LR the decay ends at (Bag of Tricks: 0)")

    @model_validator(mode="after")
    def _floor_below_peak(self) -> CosineOptions:
        if self.max_lr is not None and not self.eta_min < self.max_lr:
            raise ValueError(f"eta_min {self.eta_min:g} must be below max_lr {self.max_lr:g}")
        return self


class Cosine:
    def __init__(self, options: CosineOptions) -> None:
        self.options = options

    @hookimpl
    def trickbag_check(self, context):
        # the options model cannot see optimizer.lr, the default max_lr
        o, lr = self.options, context.recipe.optimizer.lr
        if o.max_lr is None and not o.eta_min < lr:
            raise UserError(f"tricks.cosine.eta_min {o.eta_min:g} must be below max_lr, which defaults to optimizer.lr {lr:g}")

    @hookimpl
    def trickbag_lr_schedule(self, base_lr, context):
        o = self.options
        return CosineDecay(o.max_lr or base_lr, o.eta_min, context.steps_per_epoch, context.total_steps)

    @hookimpl
    def trickbag_lr_bounds(self, bounds, context):
        # the decay starts at max_lr and ends at eta_min (0, as in Bag of Tricks): base_lr has no place
        edits = {"tricks.cosine.max_lr": bounds.max_lr}
        if bounds.base_lr is not None:
            bounds.notes.append(f"cosine decays from max_lr to eta_min {self.options.eta_min:g}: base_lr {bounds.base_lr:.3g} unused")
        if not self.options.eta_min < bounds.max_lr:
            # a recipe's own floor above the new peak would make the tuned recipe invalid
            edits["tricks.cosine.eta_min"] = 0.0
            bounds.notes.append(f"tricks.cosine.eta_min {self.options.eta_min:g} was not below the chosen max_lr: set to 0")
        return edits


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("cosine", CosineOptions, Cosine, "cosine LR decay over the run (Bag of Tricks)")


class CosineDecay:
    def __init__(self, max_lr: float, eta_min: float, steps_per_epoch: int, total_steps: int) -> None:
        self.max_lr, self.eta_min = max_lr, eta_min
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps

    def __call__(self, progress: float) -> float:
        # clamped: past the last step (a preview's end point) it stays at eta_min, where torch's
        # CosineAnnealingLR would start climbing again
        done = min(progress * self.steps_per_epoch / self.total_steps, 1.0)
        return self.eta_min + (self.max_lr - self.eta_min) * (1 + math.cos(math.pi * done)) / 2
