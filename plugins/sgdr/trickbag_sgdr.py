"""SGDR (Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017):
cosine annealing from ``max_lr`` down to ``eta_min`` over a period of ``T_0`` epochs, then a warm
restart at ``max_lr``; each period is ``T_mult`` times longer than the one before.

The schedule is a function of progress in epochs, as ``CosineAnnealingWarmRestarts.step(epoch)``
is when it is given ``epoch + batch / batches`` (the paper's per-batch form, tested against it at
every step). ``T_0`` may be fractional; ``T_mult`` is an integer, as in torch and in the paper, so
restarts fall on whole multiples of ``T_0``. ``restart_decay`` (no torch equivalent) lowers the
peak of each new period: period ``i`` starts at ``max_lr * restart_decay ** i``.
"""
from __future__ import annotations

import math

from pydantic import Field, StrictFloat, StrictInt, model_validator
from trickbag import TrickOptions, TrickSpec, UserError, hookimpl

#: progress / T_0 this close to a restart is on it: ``epoch + step / steps`` rounds either side of
#: an exact multiple (1.2 / 0.4 is 2.9999999999999996), and a restart one step late is a wrong LR
SNAP = 1e-9


class SGDROptions(TrickOptions):
    T_0: StrictFloat = Field(1.0, gt=0, le=1e5, description="epochs until the first restart (may be fractional)")
    T_mult: StrictInt = Field(2, ge=1, le=100, description="each period is T_mult times longer than the previous (an integer, as in the paper and torch; 1: fixed periods)")
    eta_min: StrictFloat = Field(0.0, ge=0, description="LR at the end of every period")
    max_lr: StrictFloat | None = Field(None, gt=0, description="LR at the start, and at each restart before restart_decay (default: optimizer.lr)")
    restart_decay: StrictFloat = Field(1.0, gt=0, le=1, description="multiplies the peak after each restart: period i starts at max_lr * restart_decay**i, never below eta_min (1: off)")

    @model_validator(mode="after")
    def _floor_below_peak(self) -> SGDROptions:
        if self.max_lr is not None and not self.eta_min < self.max_lr:
            raise ValueError(f"eta_min {self.eta_min:g} must be below max_lr {self.max_lr:g}")
        return self


class SGDR:
    def __init__(self, options: SGDROptions) -> None:
        self.options = options

    @hookimpl
    def trickbag_check(self, context):
        # the options model cannot see optimizer.lr, the default max_lr
        o, lr = self.options, context.recipe.optimizer.lr
        if o.max_lr is None and not o.eta_min < lr:
            raise UserError(f"tricks.sgdr.eta_min {o.eta_min:g} must be below max_lr, which defaults to optimizer.lr {lr:g}")

    @hookimpl
    def trickbag_lr_schedule(self, base_lr, context):
        return WarmRestarts(self.options, self.options.max_lr or base_lr)

    @hookimpl
    def trickbag_lr_bounds(self, bounds, context):
        edits = {"tricks.sgdr.max_lr": bounds.max_lr}
        if bounds.base_lr is not None:
            edits["tricks.sgdr.eta_min"] = bounds.base_lr
        elif not self.options.eta_min < bounds.max_lr:
            # a recipe's own floor above the new peak would make the tuned recipe invalid
            edits["tricks.sgdr.eta_min"] = 0.0
            bounds.notes.append(f"tricks.sgdr.eta_min {self.options.eta_min:g} was not below the chosen max_lr: set to 0")
        return edits


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("sgdr", SGDROptions, SGDR, "SGDR: cosine annealing with warm restarts (Loshchilov & Hutter 2017)")


def period_at(x: float, mult: int) -> tuple[int, int, int]:
    """(index, start, length) of the period holding ``x``, all in units of T_0: period ``i`` starts
    at ``(mult**i - 1) / (mult - 1)`` (``i`` when ``mult`` is 1) and lasts ``mult**i``."""
    if mult == 1:
        i = math.floor(x + SNAP)
        return i, i, 1
    i = int(math.log(x * (mult - 1) + 1, mult))  # torch's closed form; float log may miss by one:
    while (mult ** (i + 1) - 1) // (mult - 1) <= x + SNAP:
        i += 1
    while i > 0 and (mult**i - 1) // (mult - 1) > x + SNAP:
        i -= 1
    return i, (mult**i - 1) // (mult - 1), mult**i


class WarmRestarts:
    def __init__(self, o: SGDROptions, max_lr: float) -> None:
        self.T_0, self.T_mult, self.eta_min = o.T_0, o.T_mult, o.eta_min
        self.max_lr, self.decay = max_lr, o.restart_decay

    def __call__(self, progress: float) -> float:
        x = progress / self.T_0
        i, start, length = period_at(x, self.T_mult)
        done = min(max((x - start) / length, 0.0), 1.0)  # T_cur / T_i
        peak = max(self.eta_min, self.max_lr * self.decay**i)
        return self.eta_min + (peak - self.eta_min) * (1 + math.cos(math.pi * done)) / 2
