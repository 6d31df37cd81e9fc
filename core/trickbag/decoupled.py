"""Helpers for tricks that change weights outside the optimizer, every step, scaled by the
schedule (decoupled weight decay, decoupled orthogonality regularisation): the multiplier eta_t,
the schedule's peak it is relative to, and whether an fp16 step is taken at all.

Both plugins used to carry their own copy of these; they live here so that a third such trick
(and its author) finds them once.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

#: the schedule's peak is searched over at most this many of the run's steps (longer runs: evenly spaced)
PEAK_POINTS = 100_000


def schedule_multiplier(state, peak: float) -> float:
    """eta_t = the scheduled LR / its peak. A range test sets the LR itself, from far below to far
    above any schedule's: there eta_t is 1, the update training applies at its peak LR (as the
    sweep holds momentum at its value at the peak)."""
    if state.sweep:
        return 1.0
    return state.lr / peak if peak > 0 else 0.0


def peak_lr(schedule: Callable[[float], float], steps_per_epoch: int, total_steps: int) -> float:
    """The highest LR ``schedule`` gives at the run's steps (at the recipe's batch size); call it
    once, in ``trickbag_fit_start``."""
    stride = max(1, total_steps // PEAK_POINTS)
    return max(schedule(k / steps_per_epoch) for k in range(0, total_steps, stride))


def step_is_taken(optimizer: torch.optim.Optimizer) -> torch.Tensor | float:
    """1.0 when every gradient is finite (fp16's grad scaler then takes the step), else 0.0: a
    device tensor, so asking costs no sync."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return 1.0
    return torch.stack([torch.isfinite(g).all() for g in grads]).all().float()
