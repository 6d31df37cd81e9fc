"""Learning-rate warm-up (Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
2017, section 2.2): low learning rates for the first epochs, while the weights change fast and a
large LR (the linear scaling rule's k * eta) would make them explode.

A ``trickbag_lr_schedule`` wrapper around whatever schedule the inner implementations returned (a
schedule trick's, or the engine's constant ``optimizer.lr``). Before progress ``epochs`` it
multiplies that schedule pointwise by

    gradual:   start_factor + (1 - start_factor) * progress / epochs     (torch's LinearLR)
    constant:  start_factor                                              (torch's ConstantLR)

and from ``epochs`` on it returns the inner schedule's own value, so after the warm-up the run
trains at exactly the LRs it would have without it.

Why multiply pointwise rather than ramp toward the inner value at the end of the warm-up: it is what
torch's LinearLR / ConstantLR do chained with another scheduler (tested against ChainedScheduler),
it keeps the shape of a schedule that moves during the warm-up (an SGDR restart, a cycle), and it
commutes with the linear scaling rule, so the recipe order of the two wrappers does not matter. With
a constant inner LR, Goyal et al.'s setting (their first decay is at epoch 30), the two readings
give the same LRs. Momentum is not touched.
"""
from __future__ import annotations

from typing import Callable, Literal

from pydantic import Field, StrictFloat, model_validator
from trickbag import TrickOptions, TrickSpec, UserError, hookimpl

#: progress this close below the end of the warm-up is at its end: ``epoch + step / steps`` can round
#: just under an exact boundary (1 + 9/25 < 1.36), and a step still at start_factor there would make a
#: constant warm-up one step too long and the LR after it not exactly the inner schedule's
SNAP = 1e-9


class WarmupOptions(TrickOptions):
    mode: Literal["gradual", "constant"] = Field(
        "gradual", description="gradual: linear ramp of the factor from start_factor to 1; constant: start_factor throughout, then a jump to 1"
    )
    epochs: StrictFloat = Field(5.0, gt=0, le=1e5, description="length of the warm-up in epochs, may be fractional (Goyal et al.: 5); shorter than the run")
    start_factor: StrictFloat = Field(
        1 / 3, ge=0, lt=1,
        description="the schedule's LR is multiplied by this at the start (Goyal et al.: 1/k, the reference LR; torch's LinearLR and ConstantLR: 1/3)",
    )

    @model_validator(mode="after")
    def _constant_warmup_trains(self) -> WarmupOptions:
        if self.mode == "constant" and self.start_factor == 0:
            raise ValueError('start_factor 0 with mode "constant" would train at LR 0 for the whole warm-up')
        return self


class Warmup:
    def __init__(self, options: WarmupOptions) -> None:
        self.options = options

    @hookimpl
    def trickbag_check(self, context):
        # the options model cannot see training.epochs
        warm, run = self.options.epochs, context.epochs
        if not warm < run:
            raise UserError(f"tricks.warmup.epochs {warm:g} must be shorter than the run (training.epochs {run:g}): the schedule would never start")

    @hookimpl(wrapper=True)
    def trickbag_lr_schedule(self, base_lr, context):
        inner = yield
        return WarmedUp(inner, self.options)


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("warmup", WarmupOptions, Warmup, "gradual or constant LR warm-up around any schedule (Goyal et al. 2017)")


class WarmedUp:
    """``inner(progress) * factor(progress)`` during the warm-up, ``inner(progress)`` after it."""

    def __init__(self, inner: Callable[[float], float], o: WarmupOptions) -> None:
        self.inner, self.epochs, self.start, self.gradual = inner, o.epochs, o.start_factor, o.mode == "gradual"

    def factor(self, progress: float) -> float:
        if progress >= self.epochs - SNAP:
            return 1.0
        if self.gradual:
            return self.start + (1 - self.start) * progress / self.epochs
        return self.start

    def __call__(self, progress: float) -> float:
        if progress >= self.epochs - SNAP:
            return self.inner(progress)  # the inner schedule's own value, not x 1.0 of a rounded factor
        return self.inner(progress) * self.factor(progress)
