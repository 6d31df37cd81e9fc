"""The training loop. One file, read top to bottom; every trick acts through a hook call.

Progress is measured in epochs as a float: the LR and momentum are pure functions of it, so a trick
may change the batch size between epochs and every schedule still lands where it should.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from trickbag.context import TrainState
from trickbag.engine.assemble import Run, base_momentum, prepare_run
from trickbag.engine.checkpoints import best_weights, restore, snapshot
from trickbag.engine.device import autocast_dtype
from trickbag.engine.evaluate import evaluate, model_to_evaluate
from trickbag.engine.health import chance_warning, explosion
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
from trickbag.runs.checkpoint import BEST, CHECKPOINT, load_checkpoint, save_atomic
from trickbag.runs.folder import RunFolder, read_metrics

log = logging.getLogger("trickbag")


class Diverged(UserError):
    """Training diverged (a NaN, infinite or exploded loss); the last good checkpoint is kept."""


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
    folder = RunFolder(out) if out is not None and run.rank == 0 else None  # only rank 0 writes files
    try:
        return _train_in(run, out, resume, folder)
    finally:
        if folder is not None:
            folder.close()


def _train_in(run: Run, out: Path | None, resume: bool, folder: RunFolder | None) -> dict[str, Any]:
    recipe, hook, training = run.recipe, run.pm.hook, run.recipe.training
    state = TrainState(epochs=training.epochs, world_size=run.world_size, rank=run.rank)
    state.generator = torch.Generator(device=run.device)
    state.momentum = base_momentum(run.optimizer)  # what a fixed-momentum run reports in its rows
    history: list[dict[str, Any]] = []
    start_epoch, best, elapsed, first_loss = 0, 0.0, 0.0, math.nan  # first_loss: the run's first step (health.py)

    # -- the run folder: locked; a resume restores weights, optimizer, scaler, tricks' state and the
    # metrics history (data order and RNG follow the epoch); the metrics file is rebuilt from it
    if folder is not None:
        folder.reopen() if resume else folder.create(recipe.to_toml(), recipe.name)
    if resume and (out / CHECKPOINT).exists():
        saved = load_checkpoint(out / CHECKPOINT)
        if saved["epoch"] >= math.ceil(training.epochs):
            raise UserError(f"--resume {out}: the run already finished ({saved['epoch']} epochs)")
        restore(run, saved)
        start_epoch, state.global_step, state.samples_seen = saved["epoch"], saved["global_step"], saved["samples_seen"]
        best, elapsed, first_loss = saved["best_val_acc"], saved["elapsed"], saved.get("first_loss", math.nan)
        history = saved.get("history") or [r for r in read_metrics(out) if r["epoch"] <= start_epoch]  # version 0.1: no history
    # (a resume without a checkpoint was interrupted before its first epoch: it starts from epoch 1)
    if folder is not None:
        folder.write_metrics(history)
        if resume:
            folder.write_recipe(recipe.to_toml())  # what continues now (--epochs may have extended it)

    hook.trickbag_fit_start(context=run.context)
    precision = autocast_dtype(training.precision)
    step_end, eval_model = live(hook.trickbag_step_end), live(hook.trickbag_eval_model)
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

        # -- evaluate; a diverged epoch (NaN, or a finite explosion) never replaces the good checkpoint
        train_loss = torch.stack(losses).float().mean().item() if losses else float("nan")
        if losses and math.isnan(first_loss):
            first_loss = losses[0].float().item()
        finite = math.isfinite(train_loss)
        # the model validation scores: the training model, or a trick's weight average (EMA, SWA)
        evaluated = model_to_evaluate(eval_model, run.raw_model, state) if finite else None
        scored = evaluated if evaluated is not None else run.model
        metrics = evaluate(scored, run.val, training.eval_batch_size, precision, run.device) if finite else {"val_loss": float("nan"), "val_acc": 0.0}
        seconds = time.perf_counter() - t0
        row = {
            "epoch": epoch + 1, "progress": round(min(epoch + 1, training.epochs), 6), "train_loss": train_loss,
            **metrics, "lr": state.lr, "momentum": state.momentum, "batch_size": state.batch_size, "steps": state.global_step,
            "seconds": round(seconds, 4),
        }
        why = explosion(train_loss, metrics["val_loss"], run.train.info.num_classes, first_loss) if losses else None
        if why:
            if folder is not None:  # the diverged epoch is recorded, outside the checkpoint's history
                folder.write_metrics([*history, {**row, "diverged": True}])
            raise Diverged(f"training diverged in epoch {epoch + 1}: {why}; " + _kept(history, out))
        hook.trickbag_eval_end(state=state, metrics=metrics)
        elapsed += seconds
        state.metrics = row
        history.append(row)

        # -- best.pt, then the checkpoint (it carries the history), then metrics.jsonl from it: a
        # kill between two of them redoes this epoch on resume, bit for bit, and rewrites them all
        if folder is not None:
            try:
                if training.checkpoint:
                    if row["val_acc"] > best or epoch == 0:
                        save_atomic(best_weights(run, row, evaluated), out / BEST)  # the weights row's val_acc describes
                    save_atomic({**snapshot(run, state, epoch + 1, max(best, row["val_acc"]), elapsed, history, evaluated), "first_loss": first_loss},
                                out / CHECKPOINT)
                folder.write_metrics(history)
            except OSError as exc:  # a full disk, a folder gone: the files already there are whole
                raise UserError(f"run folder '{out}': writing epoch {epoch + 1} failed ({exc.strerror or type(exc).__name__}); "
                                + _kept(history[:-1], out)) from None
        best = max(best, row["val_acc"])
        hook.trickbag_epoch_end(state=state, metrics=row)

    warning = chance_warning(history, run.train.info.num_classes)
    if warning and run.rank == 0:
        log.warning(warning)
    summary = {"best_val_acc": best, "final_val_acc": history[-1]["val_acc"] if history else None, "seconds": elapsed, "epochs": len(history), "history": history}
    hook.trickbag_fit_end(state=state, summary=summary)
    return summary


def _kept(history: list[dict[str, Any]], out: Path | None) -> str:
    if out is None:
        return "nothing was written"
    if not history:
        return f"no epoch had finished, so {out} holds no checkpoint"
    last = history[-1]
    return f"the checkpoint of epoch {last['epoch']} (val_acc {last['val_acc']:.4f}) is kept in {out}"
