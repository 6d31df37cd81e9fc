"""Decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR
2019): SGDW and AdamW as the paper's Algorithms 1 and 2, or L2 in the loss, in one recipe switch.

* ``mode = "decoupled"``: every step, just before the optimizer's update, each decayed parameter
  becomes ``x_{t-1} - eta_t * lambda * x_{t-1}``. Adam's (and RMSprop's) update does not depend on
  x, only on the gradients already computed, so this is Algorithm 2's line 12 exactly; with SGD it
  is Algorithm 1's line 9 when the optimizer is ``sgdw`` (the paper's momentum buffer, see
  ``trickbag_sgdw``). ``eta_t`` is the schedule multiplier, the scheduled LR divided by its peak
  over the run; with ``multiplier = "lr"`` the group's LR takes its place (torch's AdamW:
  ``x <- x - lr * lambda * x``).
* ``mode = "l2"``: ``lambda/2 * ||x||^2`` is added to the loss (coupled: the optimizer sees
  ``g + lambda * x``, the paper's "L2 regularization" variants of both algorithms).

lambda is the recipe's ``optimizer.weight_decay``, per group: a group's own ``weight_decay``
(no_bias_decay's 0 for biases and norms) wins. The trick moves it out of the optimizer (whose
``weight_decay`` becomes 0, so nothing decays twice) into the group key ``decoupled_weight_decay``.
With ``normalized``, ``optimizer.weight_decay`` is the paper's lambda_norm (its appendix on
normalized weight decay) and lambda = lambda_norm * sqrt(b / (B * T)): b the batch per step, B the
training samples, T the epochs.
"""
from __future__ import annotations

import logging
import math
import weakref
from typing import Literal

import torch
from pydantic import Field, StrictBool, model_validator
from trickbag import TrickOptions, TrickSpec, UserError, hookimpl
from trickbag.decoupled import peak_lr, schedule_multiplier, step_is_taken
from trickbag_sgdw import LRInBufferSGD

log = logging.getLogger("trickbag")

#: the param-group key holding the group's lambda once the optimizer's own weight_decay is 0
KEY = "decoupled_weight_decay"


class DecoupledWeightDecayOptions(TrickOptions):
    mode: Literal["decoupled", "l2"] = Field(
        "decoupled", description="decoupled: x <- x - eta_t*lambda*x before each step (SGDW/AdamW); l2: add lambda/2*||x||^2 to the loss"
    )
    multiplier: Literal["schedule", "lr"] = Field(
        "schedule", description="decoupled decay per step: eta_t*lambda with eta_t = LR / peak LR (the paper), or lr*lambda (torch's AdamW)"
    )
    normalized: StrictBool = Field(
        False, description="optimizer.weight_decay is the paper's lambda_norm: lambda = lambda_norm*sqrt(batch / (train samples * epochs))"
    )

    @model_validator(mode="after")
    def _multiplier_needs_decoupled(self) -> DecoupledWeightDecayOptions:
        if self.mode == "l2" and self.multiplier != "schedule":
            raise ValueError(f"multiplier = '{self.multiplier}' applies to mode = 'decoupled' only (in l2 mode the optimizer scales lambda*x)")
        return self


class DecoupledWeightDecay:
    def __init__(self, options: DecoupledWeightDecayOptions) -> None:
        self.options = options
        # set in fit_start (a resumed run or a range test recomputes them: nothing to checkpoint)
        self.peak_lr = 1.0
        self.lambda_scale = 1.0  # sqrt(b / (B * T)) when normalized
        self.fp16 = False
        self.optimizer = None  # weakref: a range test deep-copies a trick's attributes, never the optimizer

    @hookimpl
    def trickbag_check(self, context):
        config = context.recipe.optimizer
        if config.name == "sgdw" and config.nesterov:
            raise UserError("optimizer.nesterov = true: sgdw is the paper's Algorithm 1, which has no Nesterov form (use optimizer.name = 'sgd')")
        if config.weight_decay == 0:
            log.warning("tricks.decoupled_weight_decay: optimizer.weight_decay is 0, so there is nothing to decay")

    @hookimpl(trylast=True)  # after every other trick's split (no_bias_decay's zeros), whatever the recipe order
    def trickbag_param_groups(self, model, groups, config):
        for group in groups:
            group[KEY] = group.get("weight_decay", config.weight_decay)
            group["weight_decay"] = 0.0

    @hookimpl
    def trickbag_create_optimizer(self, param_groups, config, context):
        if config.name == "sgdw":
            return LRInBufferSGD(param_groups, lr=config.lr, momentum=config.momentum)
        return None  # adam, adamw, sgd...: the engine builds them, with weight_decay 0 in every group

    @hookimpl
    def trickbag_fit_start(self, context):
        self.optimizer = weakref.ref(context.optimizer)
        self.peak_lr = peak_lr(context.lr_schedule, context.steps_per_epoch, context.total_steps)
        self.fp16 = context.recipe.training.precision == "fp16"
        if self.options.normalized:
            self.lambda_scale = normalized_scale(context.global_batch_size, context.info.train_size, context.epochs)

    @hookimpl
    def trickbag_after_backward(self, model, state):
        if self.options.mode != "decoupled":
            return
        optimizer = self.optimizer()
        eta = schedule_multiplier(state, self.peak_lr)
        # fp16: the grad scaler skips a step with a non-finite gradient; the decay must skip it too
        taken = step_is_taken(optimizer) if self.fp16 else 1.0
        with torch.no_grad():
            for group in optimizer.param_groups:
                lam = group.get(KEY, 0.0) * self.lambda_scale
                params = [p for p in group["params"] if p.grad is not None]  # those the optimizer steps, as torch's AdamW
                if lam == 0 or not params:
                    continue
                rate = lam * (group["lr"] if self.options.multiplier == "lr" else eta)
                torch._foreach_mul_(params, 1 - rate * taken)  # x_{t-1} <- (1 - eta_t lambda) x_{t-1}, then the step

    @hookimpl(wrapper=True)
    def trickbag_loss(self, outputs, batch, model, state):
        loss = yield
        if self.options.mode != "l2":
            return loss
        return loss + l2_penalty(self.optimizer().param_groups, self.lambda_scale)


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec(
        "decoupled_weight_decay", DecoupledWeightDecayOptions, DecoupledWeightDecay,
        "SGDW/AdamW: weight decay decoupled from the gradient, scaled by the schedule multiplier (or L2 in the loss)",
    )




def normalized_scale(batch_size: int, train_size: int, epochs: float) -> float:
    """sqrt(b / (B * T)): lambda = lambda_norm * this (Loshchilov & Hutter's appendix on normalized weight decay)."""
    return math.sqrt(batch_size / (train_size * epochs))



def l2_penalty(groups, lambda_scale: float) -> torch.Tensor | float:
    """sum over groups of lambda_g/2 * ||x||^2 (pow and sum are not autocast ops: float32 under bf16)."""
    total = 0.0
    for group in groups:
        lam = group.get(KEY, 0.0) * lambda_scale
        if lam:
            total = total + lam / 2 * sum(p.pow(2).sum() for p in group["params"] if p.requires_grad)
    return total
