"""Shake-Shake regularisation (Gastaldi, "Shake-Shake regularization", 2017): residual networks
with two branches per block, mixed by a random convex combination forward (α) and an independent
one backward (β), each evaluated at 0.5.

The trick brings two model names through ``trickbag_build_model`` (the networks and the custom
autograd function are in ``trickbag_shake_shake_net``): a recipe with ``[tricks.shake_shake]`` may
say ``[model] name = "shake_shake26_2x32d"`` (or ``shake_shake26_2x64d``). The paper's variants
(its Table 1: Shake-Shake-Image, Shake-Keep-Batch, Shake-Even-Image...) are the trick's options,
validated when the recipe loads and listed by ``trickbag plugins``; ``[model]`` takes none.

Randomness comes from torch's global RNG, which the engine reseeds from (seed, epoch) at every
epoch: seeded runs repeat and resumed runs continue exactly, with no state to checkpoint.
"""
from __future__ import annotations

from pydantic import Field
from trickbag import TrickOptions, TrickSpec, UserError, hookimpl
from trickbag_shake_shake_net import (
    SHAKE_MODELS,
    Backward,
    Forward,
    Level,
    shake_shake_net,
)

NAMES = ", ".join(SHAKE_MODELS)


class ShakeShakeOptions(TrickOptions):
    forward: Forward = Field("shake", description="α of the forward pass: shake (U(0, 1)) or even (0.5)")
    backward: Backward = Field("shake", description="β of the backward pass: shake (U(0, 1), independent of α), even (0.5) or keep (β = α)")
    level: Level = Field("image", description="image: one coefficient per image; batch: one per block for the whole batch")


class ShakeShakeTrick:
    def __init__(self, options: ShakeShakeOptions) -> None:
        self.options = options

    @hookimpl
    def trickbag_check(self, context):
        name = context.recipe.model.name
        if name not in SHAKE_MODELS:
            raise UserError(f"tricks.shake_shake is enabled but model.name '{name}' is not a shake-shake network ({NAMES})")

    @hookimpl
    def trickbag_build_model(self, config, info):
        if config.name not in SHAKE_MODELS:
            return None
        extra = config.builder_options()
        if extra:
            key = min(extra)
            raise UserError(f"model.{key} is not an option of '{config.name}' (options: none; shake-shake's options are in [tricks.shake_shake])")
        o = self.options
        return shake_shake_net(config.name, info, forward=o.forward, backward=o.backward, level=o.level)


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("shake_shake", ShakeShakeOptions, ShakeShakeTrick,
                     "Shake-Shake ResNets: shake_shake26_2x32d / 2x64d, branches mixed by random α forward, β backward")
