"""The linear scaling rule (Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
2017, section 2.1): "when the minibatch size is multiplied by k, multiply the learning rate by k".

The recipe's LRs are reference LRs, meant for a global batch of ``reference_batch``; the run trains
at them times

    k = global batch / reference_batch = training.batch_size * world size / reference_batch

A ``trickbag_lr_schedule`` wrapper: it multiplies whatever schedule the inner implementations
returned, floors (``eta_min``) included. Multiplying commutes with the warm-up (also a pointwise
factor), so the two wrappers may come in either recipe order.

``k`` is fixed for the run from the recipe's batch size and does not follow a batch-size schedule:
growing the batch is Smith et al.'s alternative to decaying the LR, and an LR that grew with the
batch would undo it (lr / B, the noise scale, would not fall).

The LR range test sets real LRs at its own global batch and never consults the schedule, so this
trick does nothing to a sweep. Its ``trickbag_lr_bounds`` converts the bounds the sweep measured
into reference LRs (divided by the sweep's k) before the schedule trick writes them.
"""
from __future__ import annotations

from typing import Callable

from pydantic import Field, StrictInt
from trickbag import TrickOptions, TrickSpec, hookimpl


class LinearScalingOptions(TrickOptions):
    reference_batch: StrictInt = Field(
        256, ge=1, le=10**9, description="global batch size the recipe's LRs are meant for (Goyal et al., Bag of Tricks: LR 0.1 at 256)"
    )


class LinearScaling:
    def __init__(self, options: LinearScalingOptions) -> None:
        self.options = options

    def factor(self, global_batch_size: int) -> float:
        return global_batch_size / self.options.reference_batch

    @hookimpl(wrapper=True)
    def trickbag_lr_schedule(self, base_lr, context):
        inner = yield
        # the recipe's batch size (context.global_batch_size), not the one a batch-size trick grows to
        return Scaled(inner, self.factor(context.global_batch_size))

    @hookimpl(tryfirst=True)
    def trickbag_lr_bounds(self, bounds, context):
        # the sweep's LRs were real LRs at its batch: the recipe needs the reference LRs that this
        # trick's factor turns back into them, so convert before any schedule trick writes them
        k, measured = self.factor(bounds.global_batch_size), bounds.max_lr
        bounds.max_lr = measured / k
        if bounds.base_lr is not None:
            bounds.base_lr = bounds.base_lr / k
        bounds.notes.append(
            f"linear_scaling: the range test ran at global batch {bounds.global_batch_size} = {k:.4g} x reference_batch "
            f"{self.options.reference_batch}, so its LRs are divided by {k:.4g} (max_lr {measured:.4g} -> {bounds.max_lr:.4g}): "
            f"the recipe holds reference LRs and the run multiplies them back"
        )


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("linear_scaling", LinearScalingOptions, LinearScaling, "linear scaling rule: LR x global batch / reference_batch (Goyal et al. 2017)")


class Scaled:
    """``k * inner(progress)``."""

    def __init__(self, inner: Callable[[float], float], k: float) -> None:
        self.inner, self.k = inner, k

    def __call__(self, progress: float) -> float:
        return self.inner(progress) * self.k
