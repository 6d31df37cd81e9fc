"""One-cycle policy (Smith & Topin, "Super-Convergence", 2018): LR up then down in one cycle,
momentum cycled the opposite way, as torch's ``OneCycleLR`` defines it.

The schedule is a pure function of progress in epochs. Progress maps to the step count torch
would use (``progress * steps_per_epoch`` at the recipe's batch size), so a test can compare it
with ``torch.optim.lr_scheduler.OneCycleLR`` at every step, and a batch-size trick may change the
number of steps per epoch without moving the cycle.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, StrictBool, StrictFloat
from trickbag import TrickOptions, TrickSpec, hookimpl


class OneCycleOptions(TrickOptions):
    max_lr: StrictFloat | None = Field(None, gt=0, description="peak LR (default: optimizer.lr)")
    pct_start: StrictFloat = Field(0.3, gt=0, lt=1, description="fraction of the run spent increasing the LR")
    div_factor: StrictFloat = Field(25.0, ge=1, description="initial LR = max_lr / div_factor")
    final_div_factor: StrictFloat = Field(1e4, ge=1, description="final LR = initial LR / final_div_factor")
    anneal: Literal["cos", "linear"] = Field("cos", description="shape of each phase")
    three_phase: StrictBool = Field(False, description="fastai/Smith's third phase: back to the initial LR, then annihilate")
    cycle_momentum: StrictBool = Field(True, description="cycle momentum inversely to the LR")
    base_momentum: StrictFloat = Field(0.85, ge=0, lt=1, description="momentum at the LR peak")
    max_momentum: StrictFloat = Field(0.95, ge=0, lt=1, description="momentum at the start and end")


class OneCycle:
    def __init__(self, options: OneCycleOptions) -> None:
        self.options = options

    @hookimpl
    def trickbag_lr_schedule(self, base_lr, context):
        o = self.options
        peak = o.max_lr or base_lr
        initial = peak / o.div_factor
        return Cycle(context.steps_per_epoch, context.total_steps, o, (initial, peak, initial / o.final_div_factor, initial))

    @hookimpl
    def trickbag_lr_bounds(self, bounds, context):
        # the cycle starts at max_lr / div_factor: the range test's base_lr
        edits = {"tricks.one_cycle.max_lr": bounds.max_lr}
        if bounds.base_lr is not None:
            edits["tricks.one_cycle.div_factor"] = bounds.max_lr / bounds.base_lr
        return edits

    @hookimpl
    def trickbag_momentum_schedule(self, base_momentum, context):
        o = self.options
        if not o.cycle_momentum:
            return None
        return Cycle(context.steps_per_epoch, context.total_steps, o, (o.max_momentum, o.base_momentum, o.max_momentum, o.max_momentum))


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("one_cycle", OneCycleOptions, OneCycle, "one-cycle LR and momentum policy (super-convergence)")


def anneal(start: float, end: float, pct: float, shape: str) -> float:
    if shape == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


class Cycle:
    """``values`` = (start, peak, end, middle): the value at the start, at the end of the warm
    phase, at the end of the run, and (three-phase only) at the end of the second phase."""

    def __init__(self, steps_per_epoch: int, total_steps: int, o: OneCycleOptions, values: tuple[float, float, float, float]):
        start, peak, end, middle = values
        self.steps_per_epoch, self.shape = steps_per_epoch, o.anneal
        # phase boundaries in steps, exactly as torch's OneCycleLR places them
        if o.three_phase:
            self.phases = [
                (float(o.pct_start * total_steps) - 1, start, peak),
                (float(2 * o.pct_start * total_steps) - 2, peak, middle),
                (total_steps - 1, middle, end),
            ]
        else:
            self.phases = [(float(o.pct_start * total_steps) - 1, start, peak), (total_steps - 1, peak, end)]

    def __call__(self, progress: float) -> float:
        step = progress * self.steps_per_epoch
        begin = 0.0
        last = len(self.phases) - 1
        for i, (stop, a, b) in enumerate(self.phases):
            if step <= stop or i == last:
                # clamped: a progress past the last step (a preview's end point) stays at the end
                pct = min(1.0, max(0.0, (step - begin) / (stop - begin)))
                return anneal(a, b, pct, self.shape)
            begin = stop
        raise AssertionError("unreachable")
