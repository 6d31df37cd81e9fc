"""Hook specifications: the only way a trick acts on training.

Read like pytest's ``hookspec.py``: one typed, docstring-only function per hook, grouped by the
loop phase that calls it. Every hook is called with keyword arguments. Call rules:

* plain hooks: every implementation is called (newest registered first), results collected;
* ``firstresult``: stops at the first implementation that returns something other than ``None``
  (exactly one trick decides; the engine's own default is registered ``trylast``);
* hooks marked "wrappable": a trick may surround the decision with ``@hookimpl(wrapper=True)``
  and ``result = yield`` to change what the inner implementations produced (warmup around a
  schedule, distillation around the loss).

Two kinds of plugin object implement these hooks. The module an entry point names (group
``trickbag``) implements the *discovery* hook ``trickbag_declare_tricks``. When a recipe enables a
trick, the engine creates that trick's object with its validated options and registers it in the
run's plugin manager; that object implements the *run* hooks below. A trick that is not enabled
has no object in the run, so it costs nothing.

``docs/hooks.md`` maps every trick of the talk to these hooks; ``tests/test_hook_contract.py``
fails when a hook here is missing from that document or has no test.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # only for annotations: keep importing this module cheap
    import torch
    from torch import nn

    from trickbag.config import ModelConfig, OptimizerConfig
    from trickbag.context import Batch, LRBounds, RunContext, TrainState
    from trickbag.data import DataInfo
    from trickbag.plugins import TrickSpec

hookspec = pluggy.HookspecMarker("trickbag")
hookimpl = pluggy.HookimplMarker("trickbag")

#: A schedule maps progress (epochs as a float, 0 at the start) to a value (an LR, a momentum).
Schedule = Callable[[float], float]


# --------------------------------------------------------------------------------------------
# Discovery (called on the catalog of installed plugins, not during a run)
# --------------------------------------------------------------------------------------------


@hookspec
def trickbag_declare_tricks() -> TrickSpec | list[TrickSpec]:
    """Declare the trick(s) this plugin module provides.

    Return a :class:`trickbag.TrickSpec` (or a list of them): the trick's name, the pydantic
    model of its options (validated when a recipe loads, printed by ``trickbag plugins``), and the
    factory that builds the per-run object implementing the run hooks from validated options.

    Called on every installed plugin; all results are collected.
    """


# --------------------------------------------------------------------------------------------
# Setup: once per run, before the first step, in this order
# --------------------------------------------------------------------------------------------


@hookspec
def trickbag_check(context: RunContext) -> None:
    """Check what only this trick can know is wrong, before any work: raise
    :class:`trickbag.UserError` with one line naming the option (``tricks.distillation.teacher
    '/runs/x' holds no checkpoint.pt``). The CLI prints it and exits with code 2.

    Called first in every run's setup, so ``trickbag check``, ``trickbag run``, ``lr-find`` and
    the TUI all refuse the recipe before training. Option types and ranges are already validated
    by the trick's options model; this is for what needs the file system, the data or other tricks.

    All implementations are called.
    """


@hookspec(firstresult=True)
def trickbag_build_model(config: ModelConfig, info: DataInfo) -> nn.Module | None:
    """Build the model named by ``config.name`` for data described by ``info``.

    A trick that brings an architecture (shake-shake, Fixup ResNets) returns it when the name is
    its own; otherwise returns ``None``. The engine's registry answers last.

    Stops at the first non-None result.
    """


@hookspec
def trickbag_configure_model(model: nn.Module, info: DataInfo, context: RunContext) -> None:
    """Change the built model in place: architecture tweaks and initialisation.

    Called after the model is built and seeded, before it moves to the device, on resume too
    (the checkpoint's weights are loaded afterwards). ResNet-B/C/D rewrite stems and shortcuts
    here; zero-gamma BN and ZeroInit set initial weights here.

    All implementations are called.
    """


@hookspec
def trickbag_param_groups(model: nn.Module, groups: list[dict[str, Any]], config: OptimizerConfig) -> None:
    """Edit the optimizer's parameter groups in place before the optimizer is built.

    ``groups`` starts as ``[{"params": [all trainable parameters], "name": "all"}]``. A trick may
    split it (no bias decay puts biases and normalisation weights in a group with
    ``weight_decay=0``) or add per-group keys (``lr_scale``, multiplied into the scheduled LR).
    Each implementation sees the edits of the ones called before it.

    All implementations are called.
    """


@hookspec(firstresult=True)
def trickbag_create_optimizer(
    param_groups: list[dict[str, Any]], config: OptimizerConfig, context: RunContext
) -> torch.optim.Optimizer | None:
    """Build the optimizer for ``config.name`` (AdamW, SGDW, LARS...).

    Return ``None`` when the name is not yours. The engine's default builds torch's SGD, Adam,
    AdamW and RMSprop, with ``fused=True`` when ``context.speed.fused_optimizer`` is set (CUDA by
    default): honour it too if your optimizer has a fused or foreach form. The parameters are
    already on ``context.device``.

    Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def trickbag_lr_schedule(base_lr: float, context: RunContext) -> Schedule | None:
    """Return the learning rate as a pure function of progress (epochs, float).

    A schedule trick (one-cycle, cyclical, SGDR, cosine) returns its schedule. Wrappable:
    warmup and the linear scaling rule wrap whatever the inner implementations returned. The
    engine's default is the constant ``base_lr``. The function is evaluated before every step and
    also to preview the schedule before training.

    Stops at the first non-None result; wrappers then see it.
    """


@hookspec(firstresult=True)
def trickbag_momentum_schedule(base_momentum: float, context: RunContext) -> Schedule | None:
    """Return momentum (SGD ``momentum``, Adam ``betas[0]``) as a pure function of progress.

    One-cycle's momentum cycling returns its schedule. ``None`` everywhere leaves momentum as the
    optimizer was built. Wrappable like the LR schedule.

    Stops at the first non-None result; wrappers then see it.
    """


@hookspec
def trickbag_lr_bounds(bounds: LRBounds, context: RunContext) -> dict[str, Any] | None:
    """Turn LR bounds chosen with the range test into recipe values: return the edits as
    ``{dotted recipe key: value}``, e.g. ``{"tricks.cyclical_lr.base_lr": 0.004,
    "tricks.cyclical_lr.max_lr": 0.1}``.

    ``bounds.max_lr`` is the highest LR the run should train at (the CLR ``max_lr``, one-cycle's
    peak, SGDR's and cosine's starting LR); ``bounds.base_lr`` the lowest (the CLR ``base_lr``,
    one-cycle's initial LR; ``None`` when only a maximum was chosen). Both are LRs the optimizer
    sees at ``bounds.global_batch_size``, the batch the range test ran at. ``lr-find --apply``,
    ``--verify`` and the TUI's save write the merged edits into a copy of the recipe, so a schedule
    trick answers for its own options and nobody else needs to know their names.

    A trick that rescales the schedule's LR (the linear scaling rule) converts the bounds in place
    first, with ``@hookimpl(tryfirst=True)``, and returns ``None``. The engine's default (called
    last) sets ``optimizer.lr`` = ``bounds.max_lr``. Edits of the same key must agree.

    Called by previews, outside training (``context`` has no model or optimizer). All
    implementations are called; each sees the bounds the previous ones left.
    """


@hookspec(firstresult=True)
def trickbag_batch_size(epoch: int, batch_size: int, context: RunContext) -> int | None:
    """Return the per-device batch size for ``epoch`` (0-based), given the recipe's ``batch_size``.

    Called at the start of every epoch; when the answer changes, the loader is rebuilt. Schedules
    keep working because they are keyed on progress in epochs, not on step counts.

    Stops at the first non-None result.
    """


@hookspec
def trickbag_fit_start(context: RunContext) -> None:
    """Observe (or finish preparing) the run before the first step.

    ``context`` holds the model, optimizer, schedules, data info and the resolved recipe. Load a
    teacher for distillation, warn about a momentum time constant out of proportion, open a log.

    All implementations are called.
    """


# --------------------------------------------------------------------------------------------
# Every step: batch -> forward + loss -> backward -> optimizer step
# --------------------------------------------------------------------------------------------


@hookspec
def trickbag_epoch_start(state: TrainState) -> None:
    """Observe the start of an epoch (``state.epoch``, ``state.batch_size`` for it).

    By now the global torch RNG and ``state.generator`` are reseeded from ``(seed, epoch)``, so a
    trick may derive its own per-epoch randomness here (and resume replays it exactly).

    All implementations are called.
    """


@hookspec
def trickbag_transform_batch(batch: Batch, state: TrainState) -> None:
    """Change the training batch in place, after it is on the device.

    ``batch.inputs`` and ``batch.targets`` may be replaced: mixup, cutmix and cutout act here.
    Targets may become soft (``float`` probabilities of shape N x classes, see
    :meth:`Batch.soft_targets`); the loss accepts both. Use ``state.generator`` for randomness so
    runs are repeatable and resumable.

    All implementations are called; each sees the batch the previous one left.
    """


@hookspec(firstresult=True)
def trickbag_loss(outputs: torch.Tensor, batch: Batch, model: nn.Module, state: TrainState) -> torch.Tensor | None:
    """Return the training loss of ``outputs`` against ``batch.targets`` (a scalar tensor).

    Runs inside the precision context (autocast). Label smoothing returns its smoothed
    cross-entropy; the engine's default is plain cross-entropy (hard or soft targets). Wrappable:
    distillation and coupled orthogonality regularisation wrap the inner loss and add terms
    (``batch.inputs`` is there for a teacher's forward pass).

    Stops at the first non-None result; wrappers then see it.
    """


@hookspec
def trickbag_after_backward(model: nn.Module, state: TrainState) -> None:
    """Act on gradients after backward, before the optimizer step.

    Gradients are unscaled (fp16) and already clipped when ``training.grad_clip`` is set.
    Gradient noise or per-layer gradient statistics go here.

    All implementations are called.
    """


@hookspec
def trickbag_after_step(model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainState) -> None:
    """Act on weights right after the optimizer step.

    Decoupled regularisers apply here (orthogonality regularisation in its decoupled form,
    weight decay scaled by the schedule multiplier), as do weight averages (EMA, SWA).

    All implementations are called.
    """


@hookspec
def trickbag_step_end(state: TrainState) -> None:
    """Observe a finished step: ``state.loss`` (a detached tensor: calling ``.item()`` syncs the
    device, so do it sparingly), ``state.lr``, ``state.momentum``, ``state.progress``.

    All implementations are called.
    """


# --------------------------------------------------------------------------------------------
# Epoch end and run end
# --------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def trickbag_eval_model(model: nn.Module, state: TrainState) -> nn.Module | None:
    """Return the module validation should score instead of the training model: a weight average
    (EMA, SWA) the trick keeps. ``None`` evaluates the training model.

    Called once per epoch, right after its last step and before validation (``state.epoch`` is the
    epoch just finished); not called by an LR range test, which evaluates nothing. ``model`` is the
    plain training model (not DDP- or compile-wrapped). The answer must have the same architecture
    (its ``state_dict`` has the model's keys) and sit on ``context.device``; prepare it here if it
    needs to (SWA recomputes its BatchNorm statistics over ``context.train``). The module answered
    is what the epoch's ``val_loss``/``val_acc`` describe, so ``best.pt`` holds its weights, and
    ``checkpoint.pt`` keeps them as ``eval_model`` (what ``load_model`` returns) beside the training
    weights under ``model`` (what ``--resume`` continues). The average itself must also be in the
    trick's ``state_dict()``, so a resumed run continues it exactly.

    Stops at the first non-None result; two enabled tricks implementing it are refused.
    """


@hookspec
def trickbag_eval_end(state: TrainState, metrics: dict[str, float]) -> None:
    """Observe validation results (``val_loss``, ``val_acc``) of the epoch just finished.

    All implementations are called.
    """


@hookspec
def trickbag_epoch_end(state: TrainState, metrics: dict[str, float]) -> None:
    """Observe the epoch's full metrics row (the one written to ``metrics.jsonl``), after the
    checkpoint is written.

    All implementations are called.
    """


@hookspec
def trickbag_fit_end(state: TrainState, summary: dict[str, Any]) -> None:
    """Observe the end of the run (``summary`` has ``best_val_acc``, ``seconds``, ``epochs``).

    Called on normal completion only.

    All implementations are called.
    """
