"""The LR range test (Smith 2017, "Cyclical Learning Rates"): train with the LR rising every step,
record the loss, then put everything back exactly as it was.

The sweep runs the recipe's real training step (``step.py``: its tricks, precision, clipping and
batch transforms) with one LR per step. Model, optimizer, grad scaler, tricks and every RNG are
snapshotted in memory before the first step and restored bit-for-bit afterwards, whether the sweep
ends, diverges, is cancelled, or raises. Data order needs no restoring: batches are a pure function
of (seed, epoch).
"""
from __future__ import annotations

import contextlib
import copy
import math
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import numpy as np
import torch

from trickbag.context import TrainState
from trickbag.engine.assemble import Run, prepare_run
from trickbag.engine.plan import plan_run
from trickbag.engine.step import (
    begin_epoch,
    epoch_batches,
    live,
    make_train_step,
    set_lr,
    set_momentum,
)
from trickbag.errors import PluginError, UserError
from trickbag.lr_range.facts import facts_of
from trickbag.lr_range.suggest import Suggestions, adjust_for_recipe, suggest
from trickbag.plugins import culprit
from trickbag.recipe import Recipe

Mode = Literal["exp", "linear"]


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # raw training loss of each step (all ranks averaged)
    smoothed: list[float]  # bias-corrected exponential moving average of ``losses``
    stopped: str  # "end", "diverged" or "cancelled"
    suggestions: Suggestions
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings, "stopped": self.stopped, "seconds": round(self.seconds, 4), "steps": len(self.lrs),
            **self.suggestions.to_dict(),
        }


def lr_at(i: int, start: float, end: float, steps: int, mode: Mode) -> float:
    """The LR of sweep step ``i`` (0-based): from ``start`` to ``end`` inclusive over ``steps`` steps."""
    t = i / max(steps - 1, 1)
    if mode == "exp":
        return start * (end / start) ** t
    return start + (end - start) * t


def check_settings(start: float, end: float, steps: int, mode: str, diverge: float, beta: float) -> None:
    if not (start > 0 and end > start):
        raise UserError(f"--start {start:g} and --end {end:g}: need 0 < start < end")
    if steps < 5:
        raise UserError(f"--steps {steps}: need at least 5 steps")
    if mode not in ("exp", "linear"):
        raise UserError(f"--mode '{mode}' is unknown (exp or linear)")
    if diverge <= 1:
        raise UserError(f"--diverge {diverge:g}: must be > 1 (stop when the smoothed loss exceeds diverge x its best)")
    if not 0 <= beta < 1:
        raise UserError(f"--smooth {beta:g}: must be in [0, 1)")


def sweep(
    run: Run,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    mode: Mode = "exp",
    diverge: float = 4.0,
    beta: float = 0.98,
    on_step: Callable[[int, float, float, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> LRFindResult:
    """Run the range test on a prepared run and restore it afterwards.

    ``on_step(i, lr, loss, smoothed)`` is called after every step (live plots); ``should_stop()``
    is polled before every step (a UI's cancel button). Ctrl-C restores, then re-raises.
    """
    check_settings(start, end, steps, mode, diverge, beta)
    snapshot = Snapshot.take(run)
    t0 = time.perf_counter()
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    stopped = "end"
    hook = run.pm.hook
    step_end = live(hook.trickbag_step_end)
    momentum = momentum_at_peak(run)
    try:
        run.model.train()
        train_step = make_train_step(run)
        state = TrainState(epochs=run.recipe.training.epochs, world_size=run.world_size, rank=run.rank, sweep=True)
        state.generator = torch.Generator(device=run.device)
        if momentum is not None:  # sweep the optimizer that will train at the LRs being tested
            state.momentum = set_momentum(run.optimizer, momentum)
        # the hooks a real run calls around its steps, so a trick that prepares itself there (a
        # teacher loaded in fit_start, per-epoch draws in epoch_start) works in a sweep too; eval_end,
        # epoch_end and fit_end are not called: a sweep trains no epoch to its end and evaluates nothing
        hook.trickbag_fit_start(context=run.context)
        avg, best, epoch = 0.0, math.inf, 0
        while len(lrs) < steps and stopped == "end":
            steps_in_epoch = begin_epoch(run, state, epoch)
            hook.trickbag_epoch_start(state=state)
            for i, (inputs, targets) in enumerate(epoch_batches(run, state)):
                if len(lrs) == steps:
                    break
                if should_stop is not None and should_stop():
                    stopped = "cancelled"
                    break
                n = len(lrs)
                lr = lr_at(n, start, end, steps, mode)
                set_lr(run, lr)
                state.lr, state.progress, state.step_in_epoch = lr, epoch + i / steps_in_epoch, i
                state.loss = train_step(inputs, targets, state)
                state.global_step += 1
                state.samples_seen += state.batch_size * run.world_size
                if step_end:
                    step_end(state=state)
                loss = _mean_over_ranks(state.loss, run.world_size)
                # bias-corrected EMA (fastai's recorder): early values are not dragged towards 0
                avg = beta * avg + (1 - beta) * loss
                smooth = avg / (1 - beta ** (n + 1))
                lrs.append(lr)
                losses.append(loss)
                smoothed.append(smooth)
                if on_step is not None:
                    on_step(n, lr, loss, smooth)
                if not math.isfinite(smooth) or smooth > diverge * best:
                    stopped = "diverged"  # every rank saw the same averaged loss: all stop here
                    break
                best = min(best, smooth)
            epoch += 1
    except Exception as exc:  # a trick that raised is named, with its hook, in one line
        blame = None if isinstance(exc, (UserError, PluginError)) else culprit(run.pm, exc)
        if blame:
            raise PluginError(blame) from exc
        raise
    finally:
        with uninterruptible():  # a second Ctrl-C must not leave the run half restored
            snapshot.restore(run)
    settings = {"start": start, "end": end, "steps": steps, "mode": mode, "diverge": diverge, "smooth": beta, "momentum": momentum}
    facts = facts_of(run)
    # fastai skips a tenth of the *planned* steps; the recipe then corrects what the curve says
    suggestions = adjust_for_recipe(suggest(lrs, losses, smoothed, num_it=steps), facts)
    return LRFindResult(lrs, losses, smoothed, stopped, suggestions, time.perf_counter() - t0, {**settings, "recipe": facts.to_dict()})


def momentum_at_peak(run: Run) -> float | None:
    """The momentum (or Adam's beta1) the recipe's momentum schedule gives where its LR schedule
    peaks: what the optimizer has when it trains at the high LRs a range test measures. One-cycle
    cycles momentum down to 0.85 at its LR peak, so sweeping at the optimizer's 0.9 would measure
    another optimizer than the one that trains. None without a momentum schedule (the optimizer's
    own momentum is what trains)."""
    if run.momentum_schedule is None:
        return None
    plan = plan_run(run.pm.hook, run.context, run.train.num_batches)
    peak = max(plan.progress_points(1000), key=run.lr_schedule)
    return float(run.momentum_schedule(peak))


def lr_find(recipe: Recipe, out_dir: Path | None = None, observers: Iterable[object] = (), **settings: Any) -> LRFindResult:
    """The range test as a function: prepare the recipe's run, sweep (``settings`` as in
    :func:`sweep`), and write ``lr_find.csv``, ``.json`` and ``.png`` to ``out_dir`` (rank 0)."""
    from trickbag.lr_range.outputs import write_outputs

    run = prepare_run(recipe, out_dir, observers)
    result = sweep(run, **settings)
    if out_dir is not None and run.rank == 0:
        write_outputs(result, Path(out_dir), recipe.to_dict())
    return result


def _mean_over_ranks(loss: torch.Tensor, world: int) -> float:
    if world > 1:  # all ranks must make the same divergence decision
        loss = loss.float().clone()
        torch.distributed.all_reduce(loss)  # SUM works on every backend (gloo has no AVG)
        loss /= world
    return float(loss.item())


@dataclass
class Snapshot:
    """Everything a sweep can change, copied in memory."""

    model: dict[str, torch.Tensor]
    training_mode: bool
    optimizer_state: dict[Any, dict[str, Any]]
    optimizer_groups: list[dict[str, Any]]
    scaler: dict[str, Any] | None
    tricks: dict[str, Any]
    rng: dict[str, Any]

    @classmethod
    def take(cls, run: Run) -> "Snapshot":
        return cls(
            model={k: v.detach().clone() for k, v in run.raw_model.state_dict().items()},
            training_mode=run.raw_model.training,
            optimizer_state={p: _clone(s) for p, s in run.optimizer.state.items()},
            optimizer_groups=[{k: _clone(v) for k, v in g.items() if k != "params"} for g in run.optimizer.param_groups],
            scaler=_clone(run.scaler.state_dict()) if run.scaler is not None else None,
            # copies: a torch-style state_dict hands out live tensors that the sweep's steps change
            tricks={name: _clone(obj.state_dict()) if hasattr(obj, "state_dict") else copy.deepcopy(vars(obj)) for name, obj in run.tricks.items()},
            rng={
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
                "python": random.getstate(),
                "numpy": np.random.get_state(),
            },
        )

    def restore(self, run: Run) -> None:
        with torch.no_grad():
            for key, value in run.raw_model.state_dict().items():
                value.copy_(self.model[key])  # in place: parameters keep their identity (optimizer, DDP)
        run.raw_model.train(self.training_mode)
        # the optimizer's state and group dicts are restored in place, so references to them stay valid
        run.optimizer.state.clear()
        run.optimizer.state.update({p: _clone(s) for p, s in self.optimizer_state.items()})
        for group, saved in zip(run.optimizer.param_groups, self.optimizer_groups):
            for key in [k for k in group if k != "params" and k not in saved]:
                del group[key]
            group.update(_clone(saved))
        if self.scaler is not None:
            run.scaler.load_state_dict(_clone(self.scaler))
        for name, obj in run.tricks.items():
            if hasattr(obj, "load_state_dict"):
                obj.load_state_dict(_clone(self.tricks[name]))
            else:
                vars(obj).clear()
                vars(obj).update(copy.deepcopy(self.tricks[name]))
        torch.set_rng_state(self.rng["torch"])
        if self.rng["cuda"] is not None:
            torch.cuda.set_rng_state_all(self.rng["cuda"])
        random.setstate(self.rng["python"])
        np.random.set_state(self.rng["numpy"])


@contextlib.contextmanager
def uninterruptible():
    """Hold SIGINT (Ctrl-C) until the block is done, then raise it: a restore either happens whole
    or not at all. Only the main thread receives signals; elsewhere this is a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    return copy.deepcopy(value)
