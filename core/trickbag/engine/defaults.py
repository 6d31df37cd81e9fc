"""The engine's own answers to the deciding hooks, registered ``trylast`` so any trick overrides them.

Nothing here is a trick: plain cross-entropy, a constant learning rate, torch's optimizers and the
model registry. They live behind the same hooks so the loop has one code path.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from trickbag.errors import UserError, did_you_mean
from trickbag.hookspecs import hookimpl

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


def _constant(value: float, progress: float) -> float:
    return value


class EngineDefaults:
    @hookimpl(trylast=True)
    def trickbag_build_model(self, config, info):
        from trickbag.models import build_model

        try:
            return build_model(config.name, info, config.builder_options())
        except (MemoryError, RuntimeError, ValueError, OverflowError) as exc:  # e.g. width = 10**9: no allocation fits
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"model '{config.name}' cannot be built with options {config.builder_options()}: {first[:200]}") from None

    @hookimpl(trylast=True)
    def trickbag_create_optimizer(self, param_groups, config, context):
        name = config.name
        # fused kernels (one launch for all parameters) where the run asked for them; None lets
        # torch pick its foreach default
        fused = True if context is not None and context.speed.fused_optimizer else None
        if name == "sgd":
            return torch.optim.SGD(
                param_groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay, fused=fused
            )
        if name == "adam":
            return torch.optim.Adam(param_groups, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay, fused=fused)
        if name == "adamw":
            return torch.optim.AdamW(param_groups, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay, fused=fused)
        if name == "rmsprop":
            return torch.optim.RMSprop(
                param_groups, lr=config.lr, momentum=config.momentum, eps=config.eps, weight_decay=config.weight_decay
            )
        raise UserError(f"optimizer.name '{name}' is unknown{did_you_mean(name, OPTIMIZERS)} (built in: {', '.join(OPTIMIZERS)}; plugins may add more)")

    @hookimpl(trylast=True)
    def trickbag_lr_schedule(self, base_lr, context):
        return functools.partial(_constant, base_lr)

    @hookimpl(trylast=True)
    def trickbag_lr_bounds(self, bounds, context):
        # without a schedule trick the run trains at optimizer.lr throughout; with one, optimizer.lr
        # still names the run's peak LR for readers of the recipe
        return {"optimizer.lr": bounds.max_lr}

    @hookimpl(trylast=True)
    def trickbag_loss(self, outputs, batch, model, state):
        # cross_entropy takes class indices or probabilities, so soft targets (mixup) need no branch
        return F.cross_entropy(outputs, batch.targets)
