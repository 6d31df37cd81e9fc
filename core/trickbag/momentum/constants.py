"""Momentum time constants (the talk's AdamW slides, "how to interpret the momentum term").

Momentum is an exponential moving average of gradients: a gradient ``t`` steps old weighs
``beta**t = exp(-t / T)`` in it, so ``T = -1 / ln(beta)`` optimizer steps is how long the average
takes to forget a gradient down to ``1/e`` of its weight (0.9 -> ~10 steps, 0.999 -> ~1000). T is
counted in steps, so it means something only next to the run's own lengths: an epoch and the run.

``momentum_rows(recipe)`` gives T in steps and in epochs for every beta the recipe's optimizer uses
(SGD/RMSprop momentum, Adam's beta1 and beta2, the range a momentum schedule such as one-cycle
cycles through) and for the talk's reference betas, with a warning where

* T exceeds the run (:data:`RUN_FRACTION` of its steps): the average never forgets its start,
  and a schedule that moves momentum acts on a quantity that cannot follow it ("when you train
  with a small number of batches you need to decrease T");
* T is under :data:`EPOCH_FRACTION` of an epoch: the average spans so few batches that it hardly
  smooths the gradient noise (beta 0.5 on a data set of a thousand batches per epoch).

Steps per epoch are the engine's own (``TrainSource.num_batches``: floor(train size / global
batch)) at the recipe's batch size; the run's length counts every epoch at the batch size the
recipe's tricks give it (a batch-size schedule shortens the run in steps). One device is assumed,
as ``trickbag run`` without torchrun.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from trickbag.engine.assemble import plan_context
from trickbag.engine.plan import plan_run

if TYPE_CHECKING:
    from trickbag.data import TrainSource
    from trickbag.recipe import Recipe

#: the betas of the talk's table
REFERENCE_BETAS = (0.5, 0.9, 0.95, 0.99, 0.995, 0.999)
#: warn when T is longer than this fraction of the run (in steps)
RUN_FRACTION = 1.0
#: warn when T is shorter than this fraction of an epoch (in steps)
EPOCH_FRACTION = 0.01
#: optimizers whose momentum is Adam's ``betas`` (the engine's and the usual plugin ones)
ADAM_FAMILY = ("adam", "adamw", "nadam", "radam", "adamax", "lamb")


class MomentumRow(TypedDict):
    beta: float
    source: str  # "optimizer momentum", "Adam beta1", "Adam beta2", "scheduled min/max" or "reference"
    T_steps: float  # -1 / ln(beta)
    T_epochs: float  # T_steps / steps per epoch
    warning: str | None
    steps_per_epoch: int  # of this recipe, at its batch size
    run_steps: int  # optimizer steps in the whole run


@dataclass(frozen=True)
class RunLength:
    steps_per_epoch: int  # at the recipe's batch size
    run_steps: int  # in the whole run, every epoch at the batch size the tricks give it


def time_constant(beta: float) -> float:
    """``T = -1 / ln(beta)``: steps after which an EMA with factor ``beta`` weighs a gradient ``1/e``."""
    if not 0 < beta < 1:
        raise ValueError(f"beta {beta!r}: a time constant needs 0 < beta < 1")
    return -1.0 / math.log(beta)


def run_length(recipe: Recipe, train: TrainSource) -> RunLength:
    """Steps per epoch (at the recipe's batch size) and in the whole run (at the tricks' batch sizes)."""
    pm, context = plan_context(recipe, train)
    plan = plan_run(pm.hook, context, train.num_batches)
    return RunLength(context.steps_per_epoch, max(1, plan.total_steps))


def recipe_betas(recipe: Recipe, train: TrainSource) -> list[tuple[float, str]]:
    """(beta, source) for every EMA factor the recipe's optimizer uses, its momentum schedule included."""
    opt = recipe.optimizer
    adam = opt.name.lower() in ADAM_FAMILY
    base = opt.betas[0] if adam else opt.momentum
    out: list[tuple[float, str]] = []
    if adam:
        out += [(opt.betas[0], "Adam beta1"), (opt.betas[1], "Adam beta2")]
    elif opt.momentum > 0:
        out.append((opt.momentum, "optimizer momentum"))
    pm, context = plan_context(recipe, train)
    schedule = pm.hook.trickbag_momentum_schedule(base_momentum=base, context=context)  # as setup.py asks for it
    if schedule is not None:
        epochs = recipe.training.epochs
        values = [schedule(epochs * i / 1000) for i in range(1001)]  # a cycle's extremes, within 0.1 % of the run
        low, high = min(values), max(values)
        if low != high or low != base:
            out += [(low, "scheduled min"), (high, "scheduled max")]
    return [(b, s) for b, s in out if 0 < b < 1]


def _warning(t: float, length: RunLength) -> str | None:
    if t > RUN_FRACTION * length.run_steps:
        return "T > the run"
    if t < EPOCH_FRACTION * length.steps_per_epoch:
        return f"T < {EPOCH_FRACTION:.0%} of an epoch"
    return None


def momentum_rows(recipe: Recipe, train: TrainSource | None = None) -> list[MomentumRow]:
    """The recipe's betas, then the reference betas: T in steps and epochs, with warnings.

    ``train`` (a prepared run's ``run.train``) saves loading the data set again."""
    if train is None:
        import torch

        from trickbag.data import load_data

        train, _ = load_data(recipe.data, torch.device("cpu"))  # embedded sets: milliseconds
    length = run_length(recipe, train)
    rows: list[MomentumRow] = []
    for beta, source in [*recipe_betas(recipe, train), *((b, "reference") for b in REFERENCE_BETAS)]:
        t = time_constant(beta)
        rows.append(MomentumRow(
            beta=beta, source=source, T_steps=t, T_epochs=t / length.steps_per_epoch, warning=_warning(t, length),
            steps_per_epoch=length.steps_per_epoch, run_steps=length.run_steps,
        ))
    return rows
