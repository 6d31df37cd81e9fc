"""Stochastic weight averaging (Izmailov, Podoprikhin, Garipov, Vetrov & Wilson, "Averaging Weights
Leads to Wider Optima and Better Generalization", UAI 2018): the equal average of the weights at
the end of every epoch from ``start_epoch`` on (or every ``every`` epochs, or every ``every``
optimizer steps), with BatchNorm statistics recomputed for the average, evaluated instead of the
training model.

The n-th snapshot (n = 1, 2, ...) updates the average as ``torch.optim.swa_utils.AveragedModel``
does (tested against it): the first is copied, then ``swa <- swa + (w - swa) / n`` (``_foreach_lerp_``
with weight 1/n), so after n snapshots ``swa = (w_1 + ... + w_n) / n``. Buffers follow the model
(AveragedModel's ``use_buffers=False``). Before each evaluation whose average changed since the
last one, the BatchNorm running statistics of the average are recomputed with
``torch.optim.swa_utils.update_bn``: one pass, in float32, over the training data of the epoch just
finished (``context.train``: augmented, the per-device batch size, the whole set on every rank),
each batch weighing the same (BatchNorm's cumulative average, ``momentum=None``). Until the first
snapshot the training model is evaluated. The average is in the trick's ``state_dict`` (``--resume``
continues it exactly) and the engine writes it to ``best.pt`` and ``checkpoint.pt``'s
``eval_model``. A range test leaves it alone.

SWA's own learning rate (the paper's constant or cyclical ``swa_lr``, torch's ``SWALR``) is a
schedule: it belongs to ``trickbag_lr_schedule`` and is not part of this trick; combine it with a
schedule trick that ends on the LR you want to average at.
"""
from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from pydantic import Field, StrictInt
from torch import nn
from trickbag import TrickOptions, TrickSpec, UserError, hookimpl


class SWAOptions(TrickOptions):
    start_epoch: StrictInt | None = Field(
        None, ge=1, description="first epoch (numbered from 1, as metrics.jsonl) averaged; default: the one after 75% of the run"
    )
    every: StrictInt = Field(1, ge=1, description="average every k epochs (unit = epoch) or every k optimizer steps (unit = step)")
    unit: Literal["epoch", "step"] = Field("epoch", description="epoch: the weights at the end of an epoch (the paper); step: after an optimizer step")


def default_start(epochs: float) -> int:
    """The paper starts averaging after 75% of the training budget: the epoch after it."""
    return math.floor(0.75 * math.ceil(epochs)) + 1


class SWA:
    def __init__(self, options: SWAOptions) -> None:
        self.options = options
        self.start = options.start_epoch or 1  # resolved against the run's length in trickbag_check
        self.average: nn.Module | None = None  # made at fit start; holds the average once n > 0
        self.n = 0  # snapshots averaged
        self.bn_at = 0  # n when the BatchNorm statistics were last recomputed
        self.train, self.seed = None, 0
        self._pending: dict | None = None  # an average loaded (--resume) before fit start made the copy
        self._params: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])  # (average, model) parameters
        self._buffers: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])

    @hookimpl
    def trickbag_check(self, context):
        last = math.ceil(context.epochs)
        # a resumed average then keeps the start it began with (load_state_dict): --resume --epochs
        # moves the default start, and the average would otherwise stop until it is reached again
        self.start = self.options.start_epoch or default_start(context.epochs)
        if self.start > last:
            raise UserError(f"tricks.swa.start_epoch {self.start} is after the run's last epoch ({last}): nothing would be averaged")

    @hookimpl
    def trickbag_fit_start(self, context):
        model = context.model
        self.train, self.seed = context.train, context.recipe.training.seed
        self.average = copy.deepcopy(model).requires_grad_(False)
        if self._pending is not None:
            self.average.load_state_dict(self._pending)
            self._pending = None
        params = dict(model.named_parameters())
        buffers = dict(model.named_buffers())
        self._params = ([p for _, p in self.average.named_parameters()], [params[n].detach() for n, _ in self.average.named_parameters()])
        self._buffers = ([b for _, b in self.average.named_buffers()], [buffers[n] for n, _ in self.average.named_buffers()])

    @hookimpl
    def trickbag_after_step(self, model, optimizer, state):
        if state.sweep or state.epoch + 1 < self.start:
            return
        if self.options.unit == "epoch":
            if state.step_in_epoch != state.epoch_steps - 1 or (state.epoch + 1 - self.start) % self.options.every:
                return
        elif (state.global_step + 1) % self.options.every:
            return
        self.add_snapshot()

    def add_snapshot(self) -> None:
        mine, theirs = self._params
        with torch.no_grad():
            floats = [i for i, p in enumerate(mine) if p.is_floating_point()]
            if self.n == 0 or len(floats) < len(mine):
                for i, p in enumerate(mine):
                    if self.n == 0 or i not in floats:
                        p.copy_(theirs[i])
            if self.n > 0 and floats:
                torch._foreach_lerp_([mine[i] for i in floats], [theirs[i] for i in floats], 1.0 / (self.n + 1))
            for b_mine, b_theirs in zip(*self._buffers):
                b_mine.copy_(b_theirs)
        self.n += 1

    @hookimpl
    def trickbag_eval_model(self, model, state):
        if self.n == 0:
            return None  # nothing averaged yet: the training model is scored
        if self.bn_at != self.n:
            self.recompute_bn(state)
        return self.average

    def recompute_bn(self, state) -> None:
        """BatchNorm statistics of the average: one pass over the epoch's training batches
        (``update_bn`` resets them and returns at once for a model without BatchNorm)."""
        batches = self.train.batches(state.batch_size, state.epoch, self.seed)
        torch.optim.swa_utils.update_bn((inputs for inputs, _ in batches), self.average)
        self.bn_at = self.n

    def state_dict(self) -> dict:
        average = None
        if self.n > 0:
            average = self.average.state_dict() if self.average is not None else self._pending
        return {"average": average, "n": self.n, "bn_at": self.bn_at, "start_epoch": self.start}

    def load_state_dict(self, state: dict) -> None:
        self.n, self.bn_at = int(state["n"]), int(state["bn_at"])
        if self.n > 0:
            self.start = int(state["start_epoch"])
        average = state["average"]
        if average is None:  # nothing averaged yet: the copy's values do not matter (the first snapshot copies)
            self._pending = None
        elif self.average is None:  # --resume: restored before fit start makes the copy
            self._pending = average
        else:
            self.average.load_state_dict(average)  # in place: the bound tensor lists stay valid


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("swa", SWAOptions, SWA, "stochastic weight averaging from an epoch on, BatchNorm recomputed, evaluated instead of the model")
