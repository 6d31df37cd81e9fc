"""Assembling a run: device, data, model, optimizer and schedules, each decided through hooks.

Everything here happens once per run, so clarity wins over speed. The per-step work lives in
``loop.py``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pluggy
import torch
from torch import nn

from trickbag.context import RunContext
from trickbag.data import TrainSource, ValSource, load_data
from trickbag.engine.device import seed_everything, select_device
from trickbag.engine.speed import BackendFlags, resolve_speed
from trickbag.errors import UserError
from trickbag.plugins import Catalog, blamed, load_plugins, run_manager
from trickbag.recipe import Recipe


@dataclass
class Run:
    recipe: Recipe
    pm: pluggy.PluginManager
    tricks: dict[str, object]  # enabled trick objects by name (their state goes in checkpoints)
    context: RunContext
    model: nn.Module  # what the loop calls (DDP- or compile-wrapped when asked)
    raw_model: nn.Module  # the plain module: its state_dict is what checkpoints hold
    optimizer: torch.optim.Optimizer
    train: TrainSource
    val: ValSource
    lr_schedule: Callable[[float], float]
    momentum_schedule: Callable[[float], float] | None
    scaler: torch.amp.GradScaler | None
    device: torch.device
    world_size: int = 1
    rank: int = 0
    group_scales: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    flags: BackendFlags | None = None  # torch's process-wide cuDNN/TF32 switches as this run set them

    def release(self) -> None:
        """Put torch's process-wide switches back as they were before :func:`prepare_run`."""
        if self.flags is not None:
            self.flags.restore()
            self.flags = None


def base_momentum(optimizer: torch.optim.Optimizer) -> float | None:
    group = optimizer.param_groups[0]
    if "betas" in group:
        return group["betas"][0]
    return group.get("momentum")


def _distributed() -> tuple[int, int]:
    """(world_size, rank) under torchrun, which sets these variables; (1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return world, rank


def prepare_run(recipe: Recipe, out_dir: Path | None = None, observers: Iterable[object] = (), catalog: Catalog | None = None) -> Run:
    training = recipe.training
    world, rank = _distributed()
    device = select_device(training.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if training.threads:
        torch.set_num_threads(training.threads)
    seed_everything(training.seed)

    train, val = load_data(recipe.data, device)
    pm, tricks = run_manager(recipe.tricks, catalog or load_plugins(), observers)
    # every rank draws the same global batch and keeps its slice, so data order is the same
    # whatever the world size (see loop.py)
    if training.batch_size * world > train.info.train_size:  # it would train on one short batch, logged as the recipe's
        raise UserError(f"training.batch_size {training.batch_size}" + (f" x {world} devices" if world > 1 else "")
                        + f" is larger than the {train.info.train_size:,} training samples of {train.info.name}")
    steps = train.num_batches(training.batch_size * world)
    context = RunContext(recipe=recipe, info=train.info, device=device, steps_per_epoch=steps, world_size=world, rank=rank,
                         out_dir=out_dir, tricks=tricks, train=train)
    with blamed(pm):  # a trick that raises in a setup hook is named, with its hook, in one line
        return _assemble(recipe, pm, tricks, context, train, val)


def _assemble(recipe: Recipe, pm: pluggy.PluginManager, tricks: dict[str, object], context: RunContext,
              train: TrainSource, val: ValSource) -> Run:
    training, hook, device, world = recipe.training, pm.hook, context.device, context.world_size

    # -- tricks check what only they can (a teacher's run folder exists...), before any work
    hook.trickbag_check(context=context)

    # -- model: built (a trick may bring the architecture), then tweaked and initialised in place
    try:
        raw_model = hook.trickbag_build_model(config=recipe.model, info=train.info)
    except UserError as exc:
        raise UserError(f"{exc}{_model_bringers(recipe) if 'is unknown' in str(exc) else ''}") from None
    hook.trickbag_configure_model(model=raw_model, info=train.info, context=context)
    speed = context.speed = resolve_speed(training, recipe.optimizer.name, device, raw_model)
    memory_format = torch.channels_last if speed.channels_last else torch.contiguous_format
    raw_model = raw_model.to(device=device, memory_format=memory_format)
    train.memory_format = val.memory_format = memory_format  # batches arrive in the model's layout
    context.model = raw_model  # from here on, hooks given the context can see the model

    # -- optimizer: parameter groups first (no bias decay), then the optimizer itself
    groups: list[dict[str, Any]] = [{"params": [p for p in raw_model.parameters() if p.requires_grad], "name": "all"}]
    hook.trickbag_param_groups(model=raw_model, groups=groups, config=recipe.optimizer)
    optimizer = hook.trickbag_create_optimizer(param_groups=groups, config=recipe.optimizer, context=context)
    context.optimizer = optimizer

    # -- schedules: pure functions of progress in epochs
    lr_schedule = hook.trickbag_lr_schedule(base_lr=recipe.optimizer.lr, context=context)
    momentum = base_momentum(optimizer)
    momentum_schedule = None
    if momentum is not None:
        momentum_schedule = hook.trickbag_momentum_schedule(base_momentum=momentum, context=context)

    # -- wrappers: DDP first, then torch.compile around it (torch's recommended order: the compiled
    # graph then breaks at DDP's bucket boundaries and overlaps communication with backward)
    model: nn.Module = raw_model
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if speed.compile:
        model = torch.compile(model, mode=speed.compile_mode)
    scaler = torch.amp.GradScaler(device.type) if training.precision == "fp16" else None

    context.lr_schedule, context.momentum_schedule = lr_schedule, momentum_schedule
    return Run(
        recipe=recipe, pm=pm, tricks=tricks, context=context, model=model, raw_model=raw_model, optimizer=optimizer,
        train=train, val=val, lr_schedule=lr_schedule, momentum_schedule=momentum_schedule, scaler=scaler,
        device=device, world_size=world, rank=context.rank,
        group_scales=[(g, g.get("lr_scale", 1.0)) for g in optimizer.param_groups],
        flags=BackendFlags(speed, training.deterministic),  # last: nothing above may leave them set
    )


def _model_bringers(recipe: Recipe) -> str:
    """For an unknown model name: the installed tricks that bring models but are not enabled (a
    model such as fixup_resnet20 exists only while its trick's table is in the recipe)."""
    enabled = set(recipe.enabled_tricks())
    bringers = sorted(name for name, t in load_plugins().tricks.items() if "trickbag_build_model" in t.hooks and name not in enabled)
    if not bringers:
        return ""
    return "; tricks that bring models: " + ", ".join(bringers) + f" (enable one with [tricks.{bringers[0]}])"


def plan_context(recipe: Recipe, train: TrainSource):
    """A plugin manager with the recipe's tricks and a run context, without model or optimizer: what
    previews (momentum table, schedule plot) ask the tricks' hooks without building a run."""
    pm, _ = run_manager(recipe.tricks, load_plugins())
    per_epoch = train.num_batches(recipe.training.batch_size)
    return pm, RunContext(recipe=recipe, info=train.info, device=torch.device("cpu"), steps_per_epoch=per_epoch)
