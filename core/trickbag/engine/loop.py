"""The training loop. One file, read top to bottom; every trick acts through a hook call.

Progress is measured in epochs as a float: the LR and momentum are pure functions of it, so a trick
may change the batch size between epochs and every schedule still lands where it should.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from trickbag.context import TrainState
from trickbag.engine.assemble import Run, base_momentum, prepare_run
from trickbag.engine.device import autocast_dtype
from trickbag.engine.evaluate import evaluate
from trickbag.engine.step import (
    begin_epoch,
    epoch_batches,
    live,
    make_train_step,
    set_momentum,
)
from trickbag.errors import UserError
from trickbag.plugins import Catalog, blamed
from trickbag.recipe import Recipe
from trickbag.runs import checkpoint as ckpt
from trickbag.runs import folder as rundir
from trickbag.runs.checkpoint import checked_state


class Diverged(UserError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def fit(
    recipe: Recipe,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    observers: Iterable[object] = (),
    catalog: Catalog | None = None,
) -> dict[str, Any]:
    """Train ``recipe``; write ``recipe.toml``, ``metrics.jsonl`` and ``checkpoint.pt`` to ``out_dir``
    (nothing is written when it is ``None``). With ``resume``, continue the run saved there."""
    out = Path(out_dir) if out_dir is not None else None
    threads = torch.get_num_threads()  # training.threads must not leak into the caller's process
    try:
        run = prepare_run(recipe, out, observers, catalog)
        try:
            with blamed(run.pm):  # a trick that raises is named, with its hook, in one line
                return _train(run, out, resume)
        finally:
            run.release()
    finally:
        torch.set_num_threads(threads)


def _train(run: Run, out: Path | None, resume: bool) -> dict[str, Any]:
    recipe, hook, training = run.recipe, run.pm.hook, run.recipe.training
    writer = out is not None and run.rank == 0  # only rank 0 writes files
    state = TrainState(epochs=training.epochs, world_size=run.world_size, rank=run.rank)
    state.generator = torch.Generator(device=run.device)
    state.momentum = base_momentum(run.optimizer)  # what a fixed-momentum run reports in its rows
    history: list[dict[str, Any]] = []
    start_epoch, best, elapsed = 0, 0.0, 0.0

    # -- resume: weights, optimizer, scaler and tricks' state; data order and RNG follow the epoch
    if resume and not (out / ckpt.CHECKPOINT).exists():
        # interrupted before its first epoch finished: nothing to restore, it starts from epoch 1
        if rundir.read_metrics(out):
            raise UserError(f"--resume {out}: metrics.jsonl has rows but there is no {ckpt.CHECKPOINT} to continue from")
    elif resume:
        saved = ckpt.load_checkpoint(out / ckpt.CHECKPOINT)
        if saved["epoch"] >= math.ceil(training.epochs):
            raise UserError(f"--resume {out}: the run already finished ({saved['epoch']} epochs)")
        _restore(run, saved)
        start_epoch, state.global_step, state.samples_seen = saved["epoch"], saved["global_step"], saved["samples_seen"]
        best, elapsed = saved["best_val_acc"], saved["elapsed"]
        history = rundir.truncate_metrics(out, start_epoch) if writer else []
    elif writer:
        rundir.create(out, recipe.to_toml())

    hook.trickbag_fit_start(context=run.context)
    precision = autocast_dtype(training.precision)
    step_end = live(hook.trickbag_step_end)
    train_step = make_train_step(run)
    lr_of, momentum_of, group_scales, optimizer = run.lr_schedule, run.momentum_schedule, run.group_scales, run.optimizer
    run.model.train()

    for epoch in range(start_epoch, math.ceil(training.epochs)):
        # -- epoch setup: per-epoch seeds (exact resume), batch size (a trick may grow it)
        t0 = time.perf_counter()
        steps = begin_epoch(run, state, epoch)
        samples_per_step = state.batch_size * run.world_size
        hook.trickbag_epoch_start(state=state)
        losses: list[torch.Tensor] = []  # averaged once per epoch: no device sync per step

        # state.epoch_steps: all of the epoch's steps, or those of a fractional last epoch (plan.py)
        for step, (inputs, targets) in zip(range(state.epoch_steps), epoch_batches(run, state)):
            progress = epoch + step / steps

            # -- schedules: LR (times each group's lr_scale) and momentum at this progress
            lr = lr_of(progress)
            for group, scale in group_scales:
                group["lr"] = lr * scale
            if momentum_of is not None:
                state.momentum = set_momentum(optimizer, momentum_of(progress))
            state.lr, state.progress, state.step_in_epoch = lr, progress, step

            # -- the step: batch transforms, forward + loss, backward, optimizer step (step.py)
            state.loss = train_step(inputs, targets, state)

            # -- bookkeeping stays on the device
            losses.append(state.loss)
            state.global_step += 1
            state.samples_seen += samples_per_step
            if step_end:
                step_end(state=state)

        # -- evaluate, then stop on divergence before the good checkpoint is overwritten
        train_loss = torch.stack(losses).float().mean().item() if losses else float("nan")
        if losses and not math.isfinite(train_loss):
            where = f" (last good checkpoint kept in {out})" if writer else ""
            raise Diverged(f"training diverged in epoch {epoch + 1}: loss is {train_loss}{where}")
        metrics = evaluate(run.model, run.val, training.eval_batch_size, precision, run.device)
        hook.trickbag_eval_end(state=state, metrics=metrics)
        seconds = time.perf_counter() - t0
        elapsed += seconds
        best = max(best, metrics["val_acc"])
        row = {
            "epoch": epoch + 1, "progress": round(min(epoch + 1, training.epochs), 6), "train_loss": train_loss,
            **metrics, "lr": state.lr, "momentum": state.momentum, "batch_size": state.batch_size, "steps": state.global_step,
            "seconds": round(seconds, 4),
        }
        state.metrics = row
        history.append(row)

        # -- checkpoint first, then the metrics row: a kill in between never loses a finished epoch
        if writer:
            if training.checkpoint:
                ckpt.save_atomic(_snapshot(run, state, epoch + 1, best, elapsed), out / ckpt.CHECKPOINT)
            rundir.append_metrics(out, row)
        hook.trickbag_epoch_end(state=state, metrics=row)

    summary = {"best_val_acc": best, "final_val_acc": history[-1]["val_acc"] if history else None, "seconds": elapsed, "epochs": len(history), "history": history}
    hook.trickbag_fit_end(state=state, summary=summary)
    return summary


def _snapshot(run: Run, state: TrainState, epochs_done: int, best: float, elapsed: float) -> dict[str, Any]:
    return {
        "epoch": epochs_done, "global_step": state.global_step, "samples_seen": state.samples_seen,
        "best_val_acc": best, "elapsed": elapsed,
        "model": run.raw_model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "tricks": {name: checked_state(name, obj.state_dict()) for name, obj in run.tricks.items() if hasattr(obj, "state_dict")},
        "recipe": run.recipe.to_dict(),
        "info": dataclasses.asdict(run.train.info),  # rebuilds the model without loading the data (runs/model.py)
    }


def _restore(run: Run, saved: dict[str, Any]) -> None:
    try:
        run.raw_model.load_state_dict(saved["model"])
        run.optimizer.load_state_dict(saved["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"checkpoint does not match the recipe's model/optimizer: {first}") from None
    if run.scaler is not None and saved.get("scaler"):
        run.scaler.load_state_dict(saved["scaler"])
    for name, obj in run.tricks.items():
        if not hasattr(obj, "load_state_dict"):
            continue
        if name not in saved.get("tricks", {}):  # resuming without it would silently start it afresh
            raise UserError(f"--resume: the checkpoint holds no state for trick '{name}', which the recipe enables "
                            "(it was added after the run started, or its plugin saved none)")
        obj.load_state_dict(saved["tricks"][name])
    # load_state_dict replaced the optimizer's group dicts: point the LR setter at the new ones
    run.group_scales = [(g, g.get("lr_scale", 1.0)) for g in run.optimizer.param_groups]
