"""The run's schedules step by step, without training: LR, momentum, batch size and the gradient
noise scale, as the recipe's tricks compose them through the same hooks the loop asks.

The noise scale is the talk's ``g = lr * (N / B - 1)`` (Smith et al., "Don't Decay the Learning
Rate, Increase the Batch Size", 2018): N training samples, B the global batch of the step. Decaying
the LR by k and growing the batch by k lower g alike (exactly when N >> B), which is why the two
are alternatives. ``trickbag schedule`` prints and plots it; the TUI's schedule tab draws it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pluggy

from trickbag.context import RunContext
from trickbag.engine.plan import RunPlan, plan_run

#: steps sampled for a plot or a preview: every step of short runs, evenly spread ones of long runs
DEFAULT_POINTS = 2000


def noise_scale(lr: float, train_size: int, global_batch: int) -> float:
    """``g = lr * (N / B - 1)``: 0 when the batch is the whole training set."""
    return lr * (train_size / global_batch - 1)


def recipe_momentum(optimizer_config) -> float:
    """The momentum the optimizer starts from, read from the recipe (no optimizer built): Adam's
    beta1, else ``optimizer.momentum``. What the momentum schedule hook is given as its base."""
    from trickbag.momentum.constants import ADAM_FAMILY

    if optimizer_config.name.lower() in ADAM_FAMILY:
        return optimizer_config.betas[0]
    return optimizer_config.momentum


@dataclass(frozen=True)
class Timeline:
    """Sampled optimizer steps of a run and what the schedules set at each."""

    steps: list[int]  # global step, 0-based
    progress: list[float]  # epochs (float) at the start of each sampled step
    lr: list[float]  # of the first parameter group (others multiply it by their lr_scale)
    momentum: list[float] | None  # None: the optimizer has no momentum
    batch_size: list[int]  # global batch of each sampled step (per device x world size)
    noise: list[float]  # g = lr * (N / B - 1)
    train_size: int  # N
    total_steps: int
    steps_per_epoch: int  # at the recipe's batch size
    epochs: float
    batch_size_changes: list[tuple[int, int]] = field(default_factory=list)  # (epoch, per-device size), epoch 0 first

    def rows(self, at_most: int = 24) -> list[int]:
        """Indices of the sampled steps worth a table row: the first step of every epoch (or an even
        spread of them on long runs), every step where the batch size changes, and the last step."""
        epoch_starts, changes, last_epoch = [], [], -1
        for i, p in enumerate(self.progress):
            if int(p) != last_epoch:
                epoch_starts.append(i)
                last_epoch = int(p)
            if i and self.batch_size[i] != self.batch_size[i - 1]:
                changes.append(i)
        if len(epoch_starts) > at_most:
            stride = -(-len(epoch_starts) // at_most)
            epoch_starts = epoch_starts[::stride]
        return sorted({*epoch_starts, *changes, len(self.progress) - 1})


def timeline(pm: pluggy.PluginManager, context: RunContext, num_batches, train_size: int, base_momentum: float | None,
             points: int | None = DEFAULT_POINTS) -> Timeline:
    """Ask the recipe's tricks for their schedules and the batch size of every epoch, and evaluate
    them at ``points`` steps spread over the run (every step when ``points`` is None or larger).

    ``pm`` and ``context`` as ``plan_context`` (or a prepared run) give them; ``num_batches`` is
    the training source's (``TrainSource.num_batches``)."""
    recipe = context.recipe
    lr_of = pm.hook.trickbag_lr_schedule(base_lr=recipe.optimizer.lr, context=context)
    momentum_of = None
    if base_momentum is not None:
        momentum_of = pm.hook.trickbag_momentum_schedule(base_momentum=base_momentum, context=context)
    plan: RunPlan = plan_run(pm.hook, context, num_batches)
    total = plan.total_steps
    n = total if points is None else min(points, total)
    picks = sorted({round(i * (total - 1) / max(n - 1, 1)) for i in range(n)}) if total else []
    progress = [plan.progress_at(k) for k in picks]
    batch = [plan.batch_sizes[plan.epoch_of(k)] * context.world_size for k in picks]
    lr = [float(lr_of(p)) for p in progress]
    if momentum_of is not None:
        momentum = [float(momentum_of(p)) for p in progress]
    else:
        momentum = None if base_momentum is None else [base_momentum] * len(progress)
    return Timeline(
        steps=picks, progress=progress, lr=lr, momentum=momentum, batch_size=batch,
        noise=[noise_scale(a, train_size, b) for a, b in zip(lr, batch)], train_size=train_size, total_steps=total,
        steps_per_epoch=context.steps_per_epoch, epochs=recipe.training.epochs, batch_size_changes=plan.batch_size_changes(),
    )


def recipe_timeline(recipe, points: int | None = DEFAULT_POINTS) -> Timeline:
    """The timeline of a recipe on one process, from the recipe alone: loads the training data set
    (the embedded ones in milliseconds) to count its samples, builds no model and no optimizer."""
    import torch

    from trickbag.data import load_data
    from trickbag.engine.assemble import plan_context

    train, _ = load_data(recipe.data, torch.device("cpu"))
    pm, context = plan_context(recipe, train)
    pm.hook.trickbag_check(context=context)  # a warm-up longer than the run... refused here as in a run
    return timeline(pm, context, train.num_batches, train.info.train_size, recipe_momentum(recipe.optimizer), points)
