"""Soft orthogonality regularisation (Brock et al., "Neural Photo Editing with Introspective
Adversarial Networks", ICLR 2017; "SO" in Bansal, Chen & Wang, "Can We Gain More from
Orthogonality Regularizations in Training Deep CNNs?", NeurIPS 2018): push every convolution and
linear weight W towards orthogonality with the penalty

    lambda * sum_W ||W^T W - I||_F^2        (the smaller Gram matrix: see trickbag_orthogonality_penalty)

in one of two ways, the distinction Loshchilov & Hutter draw for weight decay:

* ``mode = "coupled"``: the penalty is added to the loss, so the optimizer sees its gradient
  with the data's, and an adaptive optimizer (Adam) rescales both by the same per-weight factors;
* ``mode = "decoupled"``: the optimizer never sees it. Just before each optimizer step,
  W_{t-1} <- W_{t-1} - eta_t * lambda * 4 W_{t-1} (W_{t-1}^T W_{t-1} - I), as AdamW applies its
  decay to x_{t-1}. eta_t is the schedule multiplier (scheduled LR / its peak over the run) or,
  with ``multiplier = "lr"``, the group's LR: then plain SGD takes exactly the coupled step.

The decoupled step is taken in ``trickbag_after_backward``, not after the optimizer's step: the
gradient of the penalty must be the one at W_{t-1}, as in Algorithm 2's ``w * x_{t-1}``; Adam's and
SGD's updates depend on the gradients already computed, not on W, so nothing else changes.
"""
from __future__ import annotations

import logging
import weakref
from typing import Literal

import torch
from pydantic import Field, StrictFloat, model_validator
from torch import nn
from trickbag import TrickOptions, TrickSpec, hookimpl
from trickbag.decoupled import peak_lr, schedule_multiplier, step_is_taken
from trickbag_orthogonality_penalty import orthogonality_gradient, orthogonality_penalty

log = logging.getLogger("trickbag")



class OrthogonalityOptions(TrickOptions):
    strength: StrictFloat = Field(1e-4, gt=0, le=1e3, description="lambda in lambda * sum ||W^T W - I||_F^2 over the regularised weights")
    mode: Literal["coupled", "decoupled"] = Field(
        "coupled", description="coupled: the penalty is added to the loss; decoupled: W <- W - eta_t*lambda*grad before each step, outside the optimizer"
    )
    multiplier: Literal["schedule", "lr"] = Field(
        "schedule", description="decoupled step: eta_t*lambda (eta_t = LR / peak LR) or lr*lambda (plain SGD then equals coupled)"
    )
    layers: Literal["all", "conv"] = Field("all", description="all: convolution and linear weights; conv: convolutions only (the classifier stays free)")

    @model_validator(mode="after")
    def _multiplier_needs_decoupled(self) -> OrthogonalityOptions:
        if self.mode == "coupled" and self.multiplier != "schedule":
            raise ValueError(f"multiplier = '{self.multiplier}' applies to mode = 'decoupled' only (a coupled penalty is scaled by the optimizer)")
        return self


class Orthogonality:
    def __init__(self, options: OrthogonalityOptions) -> None:
        self.options = options
        # set in fit_start (a resumed run or a range test recomputes them: nothing to checkpoint)
        # (optimizer group index, indices of its regularised weights), found once in fit_start:
        # indices, not tensors, because a range test deep-copies a trick's attributes
        self.positions: tuple[tuple[int, tuple[int, ...]], ...] = ()
        self.peak_lr = 1.0
        self.fp16 = False
        self.optimizer = None  # weakref, for the same reason

    @hookimpl
    def trickbag_fit_start(self, context):
        weight_ids = {id(w) for w in regularised_weights(context.model, self.options.layers)}
        if not weight_ids:
            log.warning("tricks.orthogonality: the model has no %s weights to regularise", "convolution" if self.options.layers == "conv" else "convolution or linear")
        self.optimizer = weakref.ref(context.optimizer)
        # frozen weights are in no group, so never regularised; the groups' order and contents
        # survive an optimizer load_state_dict (resume), only their dicts are replaced
        self.positions = tuple((g, tuple(j for j, p in enumerate(group["params"]) if id(p) in weight_ids))
                               for g, group in enumerate(context.optimizer.param_groups))
        self.peak_lr = peak_lr(context.lr_schedule, context.steps_per_epoch, context.total_steps)
        self.fp16 = context.recipe.training.precision == "fp16"

    @hookimpl(wrapper=True)
    def trickbag_loss(self, outputs, batch, model, state):
        loss = yield
        if self.options.mode != "coupled":
            return loss
        penalty = sum(orthogonality_penalty(w) for _, weights in self.weights_by_group() for w in weights)
        return loss + self.options.strength * penalty

    @hookimpl
    def trickbag_after_backward(self, model, state):
        if self.options.mode != "decoupled":
            return
        eta = schedule_multiplier(state, self.peak_lr)
        # fp16: the grad scaler skips a step with a non-finite gradient; this update must skip it too
        taken = step_is_taken(self.optimizer()) if self.fp16 else 1.0
        with torch.no_grad():
            for group, weights in self.weights_by_group():
                rate = self.options.strength * (group["lr"] if self.options.multiplier == "lr" else eta)
                for w in weights:
                    if w.grad is not None:  # a weight the optimizer does not step this time is left alone too
                        w.sub_(orthogonality_gradient(w) * (rate * taken))

    def weights_by_group(self):
        """(optimizer group, its regularised weights), from the positions found in fit_start: no
        search through every parameter at every step."""
        groups = self.optimizer().param_groups
        for g, indices in self.positions:
            params = groups[g]["params"]
            yield groups[g], [params[j] for j in indices]


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("orthogonality", OrthogonalityOptions, Orthogonality,
                     "soft orthogonality lambda*||W^T W - I||^2 of conv/linear weights, in the loss or decoupled from the optimizer")


def regularised_weights(model: nn.Module, layers: str) -> list[nn.Parameter]:
    """Weights of Conv1d/2d/3d (not transposed convolutions, whose weight is laid out (in, out, ...))
    and, with ``layers = "all"``, of nn.Linear; a weight shared by several modules once."""
    found: dict[int, nn.Parameter] = {}
    for module in model.modules():
        conv = isinstance(module, nn.modules.conv._ConvNd) and not module.transposed
        if conv or (layers == "all" and isinstance(module, nn.Linear)):
            found.setdefault(id(module.weight), module.weight)
    return list(found.values())


