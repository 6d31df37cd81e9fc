"""Cyclical learning rates (Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017):
the LR goes linearly from ``base_lr`` up to ``max_lr`` and back down, again and again; momentum may
cycle the opposite way, as torch's ``CyclicLR`` does with ``cycle_momentum``.

The paper counts in iterations; here everything is in epochs, because a schedule is a function of
progress: ``step_size`` (half a cycle) is in epochs, and ``exp_range``'s ``gamma`` shrinks the
amplitude per epoch. So a cycle is ``2 * step_size`` epochs whatever the batch size, and a
batch-size trick that changes the steps per epoch mid-run moves no cycle. With ``step_size_up =
step_size * steps_per_epoch`` and torch's per-iteration gamma ``= gamma ** (1 / steps_per_epoch)``
it equals ``CyclicLR`` at every step (tested).
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, StrictBool, StrictFloat, model_validator
from trickbag import TrickOptions, TrickSpec, UserError, hookimpl

#: the paper's rule of thumb: base_lr is a third or a quarter of max_lr
BASE_FRACTION = 0.25


class CyclicalLROptions(TrickOptions):
    mode: Literal["triangular", "triangular2", "exp_range"] = Field(
        "triangular", description="triangular: fixed bounds; triangular2: amplitude halved every cycle; exp_range: amplitude times gamma per epoch")
    step_size: StrictFloat = Field(
        2.0, gt=0, le=1e5, description="half a cycle, in epochs (may be fractional); the paper recommends 2-10 epochs, i.e. 2-10 x the iterations in an epoch")
    max_lr: StrictFloat | None = Field(None, gt=0, description="upper LR bound (default: optimizer.lr)")
    base_lr: StrictFloat | None = Field(None, gt=0, description="lower LR bound (default: max_lr / 4, the paper's rule of thumb)")
    gamma: StrictFloat = Field(
        1.0, gt=0, le=1, description="exp_range: amplitude multiplier per epoch (torch's per-iteration gamma is gamma ** (1 / steps_per_epoch))")
    cycle_momentum: StrictBool = Field(False, description="cycle momentum inversely to the LR (torch's CyclicLR does by default; the CLR paper does not)")
    base_momentum: StrictFloat = Field(0.8, ge=0, lt=1, description="momentum at max_lr (with cycle_momentum)")
    max_momentum: StrictFloat = Field(0.9, ge=0, lt=1, description="momentum at base_lr (with cycle_momentum)")

    @model_validator(mode="after")
    def _bounds_in_order(self) -> CyclicalLROptions:
        if self.base_lr is not None and self.max_lr is not None and not self.base_lr < self.max_lr:
            raise ValueError(f"base_lr {self.base_lr:g} must be below max_lr {self.max_lr:g}")
        if self.base_momentum > self.max_momentum:
            raise ValueError(f"base_momentum {self.base_momentum:g} must not exceed max_momentum {self.max_momentum:g}")
        return self


class CyclicalLR:
    def __init__(self, options: CyclicalLROptions) -> None:
        self.options = options

    @hookimpl
    def trickbag_check(self, context):
        # the options model cannot see optimizer.lr, the default max_lr
        o = self.options
        if o.base_lr is not None and o.max_lr is None and not o.base_lr < context.recipe.optimizer.lr:
            raise UserError(f"tricks.cyclical_lr.base_lr {o.base_lr:g} must be below max_lr, "
                            f"which defaults to optimizer.lr {context.recipe.optimizer.lr:g}")

    @hookimpl
    def trickbag_lr_schedule(self, base_lr, context):
        top = self.options.max_lr or base_lr
        bottom = self.options.base_lr or top * BASE_FRACTION
        return CyclicalValue(Triangle(self.options), bottom, top)

    @hookimpl
    def trickbag_momentum_schedule(self, base_momentum, context):
        o = self.options
        if not o.cycle_momentum:
            return None
        # inverse to the LR: max_momentum at base_lr, base_momentum at max_lr
        return CyclicalValue(Triangle(o), o.max_momentum, o.base_momentum)

    @hookimpl
    def trickbag_lr_bounds(self, bounds, context):
        edits = {"tricks.cyclical_lr.max_lr": bounds.max_lr}
        if bounds.base_lr is not None:
            edits["tricks.cyclical_lr.base_lr"] = bounds.base_lr
        elif self.options.base_lr is not None and not self.options.base_lr < bounds.max_lr:
            # a recipe's own base_lr above the new max would make the tuned recipe invalid
            edits["tricks.cyclical_lr.base_lr"] = bounds.max_lr * BASE_FRACTION
            bounds.notes.append(f"tricks.cyclical_lr.base_lr {self.options.base_lr:g} was not below the chosen max_lr: set to max_lr / 4")
        return edits


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("cyclical_lr", CyclicalLROptions, CyclicalLR, "cyclical learning rates: triangular, triangular2, exp_range (Smith 2017)")


class Triangle:
    """The paper's triangle wave times the mode's amplitude scale, as a function of progress in
    epochs: 0 at the bounds' low end, 1 at the high end."""

    def __init__(self, o: CyclicalLROptions) -> None:
        self.step_size, self.mode, self.gamma = o.step_size, o.mode, o.gamma

    def __call__(self, progress: float) -> float:
        cycle = math.floor(1 + progress / (2 * self.step_size))
        x = abs(progress / self.step_size - 2 * cycle + 1)
        return max(0.0, 1 - x) * self.scale(cycle, progress)

    def scale(self, cycle: int, progress: float) -> float:
        if self.mode == "triangular2":
            return 1 / 2.0 ** (cycle - 1)
        if self.mode == "exp_range":
            return self.gamma**progress  # per epoch: the same decay whatever the batch size
        return 1.0


class CyclicalValue:
    """``low + (high - low) * triangle(progress)``: the LR (low = base_lr), or the momentum (low =
    max_momentum, high = base_momentum: it falls while the LR rises)."""

    def __init__(self, triangle: Triangle, low: float, high: float) -> None:
        self.triangle, self.low, self.high = triangle, low, high

    def __call__(self, progress: float) -> float:
        return self.low + (self.high - self.low) * self.triangle(progress)
