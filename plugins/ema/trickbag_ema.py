"""An exponential moving average of the weights (Polyak averaging with exponential weights; the EMA
of TensorFlow's ``ExponentialMovingAverage``, timm's ``ModelEmaV2``, torchvision's references),
evaluated instead of the training model.

At fit start the average is a copy of the model (the initial weights, or on ``--resume`` the
restored ones). After every ``every``-th optimizer step (global step numbers k*every, counted from
1), the u-th update (u = 0, 1, 2, ...) moves it towards the model's weights::

    ema <- decay_u * ema + (1 - decay_u) * w          decay_u = decay
                                                    or min(decay, (1 + u) / (10 + u)) with warmup

as ``torch._foreach_lerp_(ema, w, 1 - decay_u)``: what ``torch.optim.swa_utils.AveragedModel``
with ``get_ema_multi_avg_fn(decay)`` and ``use_buffers=True`` computes (tested), without its
device sync per update. Floating-point buffers (BatchNorm running statistics) are averaged the same
way; integer ones (``num_batches_tracked``) are copied from the model (AveragedModel would truncate
an average of them). Validation scores the average (``trickbag_eval_model``); the average is in the
trick's ``state_dict`` (so ``--resume`` continues it exactly), and the engine writes it to
``best.pt`` and ``checkpoint.pt``'s ``eval_model``. A range test leaves it alone.
"""
from __future__ import annotations

import copy
import logging

import torch
from pydantic import Field, StrictBool, StrictFloat, StrictInt
from torch import nn
from trickbag import TrickOptions, TrickSpec, hookimpl

log = logging.getLogger("trickbag")


class EMAOptions(TrickOptions):
    decay: StrictFloat = Field(0.999, ge=0, le=1, description="ema <- decay*ema + (1-decay)*w at each update (1: never moves)")
    warmup: StrictBool = Field(False, description="decay the u-th update (from 0) by min(decay, (1+u)/(10+u)), as TensorFlow's num_updates")
    every: StrictInt = Field(1, ge=1, description="update after every k-th optimizer step (the decay is per update)")


def warmed_decay(decay: float, update: int, warmup: bool) -> float:
    """The decay of update number ``update`` (0 for the first): TensorFlow's ExponentialMovingAverage
    with ``num_updates``, ``min(decay, (1 + u) / (10 + u))``: 0.1, 0.18, 0.25... until it reaches ``decay``."""
    return min(decay, (1 + update) / (10 + update)) if warmup else decay


def initial_weight(decay: float, updates: int, warmup: bool) -> float:
    """What the weights the average started from still weigh in it after ``updates`` updates."""
    if not warmup:
        return decay ** updates
    weight = 1.0
    for u in range(min(updates, 100_000)):
        weight *= warmed_decay(decay, u, True)
    return weight * decay ** max(0, updates - 100_000)


class EMA:
    def __init__(self, options: EMAOptions) -> None:
        self.options = options
        self.average: nn.Module | None = None  # the copy validation scores; made at fit start
        self.updates = 0  # updates since the copy: u of the warm-up
        self._pending: dict | None = None  # an average loaded (--resume) before fit start made the copy
        self._lerped: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])  # (average, model) floating tensors
        self._copied: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])  # integer buffers

    @hookimpl
    def trickbag_check(self, context):
        o = self.options
        updates = context.total_steps // o.every
        left = initial_weight(o.decay, updates, o.warmup)
        if left > 0.1:
            hint = "" if o.warmup else " or warmup = true"
            log.warning("tricks.ema: after the run's %d updates the initial weights still weigh %.0f%% in the average "
                        "(decay %g); lower decay%s, or train longer", updates, 100 * left, o.decay, hint)

    @hookimpl
    def trickbag_fit_start(self, context):
        model = context.model
        self.average = copy.deepcopy(model).requires_grad_(False)  # the same device and memory format
        if self._pending is not None:
            self.average.load_state_dict(self._pending)
            self._pending = None
        self._bind(model)

    def _bind(self, model: nn.Module) -> None:
        """Pair the average's tensors with the model's by name: parameters and floating-point
        buffers are averaged, integer buffers copied. The lists stay valid: the engine loads
        weights in place (resume, the range test's restore)."""
        ours = {**dict(self.average.named_parameters()), **dict(self.average.named_buffers())}
        theirs = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        lerped, copied = ([], []), ([], [])
        for name, mine in ours.items():
            into = lerped if mine.is_floating_point() else copied
            into[0].append(mine)
            into[1].append(theirs[name].detach())
        self._lerped, self._copied = lerped, copied

    @hookimpl
    def trickbag_after_step(self, model, optimizer, state):
        if state.sweep or (state.global_step + 1) % self.options.every:  # a range test's steps are undone anyway
            return
        decay = warmed_decay(self.options.decay, self.updates, self.options.warmup)
        with torch.no_grad():
            if self._lerped[0]:
                torch._foreach_lerp_(self._lerped[0], self._lerped[1], 1.0 - decay)
            for mine, theirs in zip(*self._copied):
                mine.copy_(theirs)
        self.updates += 1

    @hookimpl
    def trickbag_eval_model(self, model, state):
        return self.average

    def state_dict(self) -> dict:
        average = self.average.state_dict() if self.average is not None else self._pending
        return {"average": average, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        average = state["average"]
        if average is None:  # taken before fit start (a range test's snapshot): no copy yet
            self.average, self._pending = None, None
        elif self.average is None:  # --resume: restored before fit start makes the copy
            self._pending = average
        else:
            self.average.load_state_dict(average)  # in place: the bound tensor lists stay valid


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("ema", EMAOptions, EMA, "exponential moving average of the weights, evaluated instead of the model (Polyak averaging)")

