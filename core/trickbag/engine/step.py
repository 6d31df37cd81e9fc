"""One training step and the start of an epoch, shared by the training loop and the LR finder, so
the finder measures exactly the step that training will take (tricks, precision, clipping)."""
from __future__ import annotations

import contextlib
from typing import Callable

import torch

from trickbag.context import Batch, TrainState
from trickbag.engine.assemble import Run
from trickbag.engine.device import autocast_dtype, epoch_seed, reseed_global
from trickbag.engine.plan import batch_size_for, steps_in_epoch

Step = Callable[[torch.Tensor, torch.Tensor, TrainState], torch.Tensor]


def live(caller):
    """The hook caller, or None when no plugin implements the hook."""
    return caller if caller.get_hookimpls() else None


def begin_epoch(run: Run, state: TrainState, epoch: int) -> int:
    """Reseed from (seed, epoch), ask tricks for the batch size; returns the steps of a full epoch
    (``state.epoch_steps`` says how many the loop takes in this one)."""
    training = run.recipe.training
    seed = epoch_seed(training.seed, epoch)
    reseed_global(seed, run.device)  # per-epoch seeds: a resumed run replays exactly
    state.generator.manual_seed(seed)
    state.epoch, state.batch_size = epoch, batch_size_for(run.pm.hook, epoch, run.context)
    state.steps_per_epoch = run.train.num_batches(state.batch_size * run.world_size)
    state.epoch_steps = steps_in_epoch(training.epochs, epoch, state.steps_per_epoch)
    return state.steps_per_epoch


def epoch_batches(run: Run, state: TrainState):
    """This rank's batches of the epoch: every rank draws the same global batch and keeps its slice,
    so data order does not depend on the world size."""
    bs, world, rank = state.batch_size, run.world_size, run.rank
    batches = run.train.batches(bs * world, state.epoch, run.recipe.training.seed)
    if world == 1:
        return batches
    return ((x[rank * bs:(rank + 1) * bs], y[rank * bs:(rank + 1) * bs]) for x, y in batches)


def make_train_step(run: Run) -> Step:
    """Build the step once, binding everything it needs: the step itself runs millions of times."""
    hook, training = run.pm.hook, run.recipe.training
    model, optimizer, scaler = run.model, run.optimizer, run.scaler
    precision = autocast_dtype(training.precision)
    amp = (lambda: torch.autocast(run.device.type, dtype=precision)) if precision else contextlib.nullcontext
    # per-step hooks nobody implements are skipped outright: a call costs ~1 us, a step of a
    # small MLP ~200 us, and the engine must stay within 5% of a hand-written loop
    transform_batch, after_backward, after_step = live(hook.trickbag_transform_batch), live(hook.trickbag_after_backward), live(hook.trickbag_after_step)
    loss_of, clip, params, num_classes = hook.trickbag_loss, training.grad_clip, list(run.raw_model.parameters()), run.train.info.num_classes

    def step(inputs: torch.Tensor, targets: torch.Tensor, state: TrainState) -> torch.Tensor:
        # -- batch transforms on the device (mixup, cutmix...)
        batch = Batch(inputs, targets, num_classes)
        if transform_batch:
            transform_batch(batch=batch, state=state)

        # -- forward and loss under the precision context
        with amp():
            outputs = model(batch.inputs)
            loss = loss_of(outputs=outputs, batch=batch, model=model, state=state)

        # -- backward, clipping, gradient hooks, optimizer step
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # hooks and clipping see true gradients
        else:
            loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        if after_backward:
            after_backward(model=model, state=state)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if after_step:
            after_step(model=model, optimizer=optimizer, state=state)
        return loss.detach()

    return step


def set_lr(run: Run, lr: float) -> None:
    for group, scale in run.group_scales:
        group["lr"] = lr * scale


def set_momentum(optimizer: torch.optim.Optimizer, value: float) -> float:
    for group in optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (value, group["betas"][1])
        else:
            group["momentum"] = value
    return value
