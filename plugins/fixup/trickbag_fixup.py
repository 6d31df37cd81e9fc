"""Fixup (Zhang, Dauphin & Ma, "Fixup Initialization: Residual Learning Without Normalization",
ICLR 2019), the talk's ZeroInit: residual networks without any normalisation layer, trained stably
at the learning rate of their BatchNorm twins thanks to their initialisation.

The trick brings three model names through ``trickbag_build_model`` (the networks are in
``trickbag_fixup_resnet``): a recipe with ``[tricks.fixup]`` may say ``[model] name =
"fixup_resnet20"`` (or ``fixup_resnet56``, ``fixup_resnet110``). Its options are the
``[tricks.fixup]`` table: ``[model]`` takes no options for these names.

``scalar_lr_scale`` (0.1 by default) follows the authors' code: their CIFAR script gives the scalar
biases and multipliers (and the classifier's bias) a tenth of the LR, with the same weight decay as
everything else. It is applied in ``trickbag_param_groups`` as an ``lr_scale`` on those parameters.
"""
from __future__ import annotations

from pydantic import Field, StrictBool, StrictFloat
from trickbag import TrickOptions, TrickSpec, UserError, hookimpl
from trickbag_fixup_resnet import FIXUP_DEPTHS, fixup_resnet, scalar_parameters

NAMES = ", ".join(FIXUP_DEPTHS)


class FixupOptions(TrickOptions):
    rescale: StrictBool = Field(True, description="multiply the residual branches' initial weights by L^(-1/(2m-2)) (rule 2; false: the ablation)")
    zero_init: StrictBool = Field(True, description="start each branch's last layer and the classifier at 0 (rule 1; false: the ablation)")
    scalar_lr_scale: StrictFloat = Field(
        0.1, gt=0, le=10, description="LR multiplier of the scalar biases, multipliers and classifier bias (the authors' code: 0.1)"
    )


class Fixup:
    def __init__(self, options: FixupOptions) -> None:
        self.options = options

    @hookimpl
    def trickbag_check(self, context):
        name = context.recipe.model.name
        if name not in FIXUP_DEPTHS:
            raise UserError(f"tricks.fixup is enabled but model.name '{name}' is not a Fixup network ({NAMES})")

    @hookimpl
    def trickbag_build_model(self, config, info):
        if config.name not in FIXUP_DEPTHS:
            return None
        extra = config.builder_options()
        if extra:
            key = min(extra)
            raise UserError(f"model.{key} is not an option of '{config.name}' (options: none; Fixup's options are in [tricks.fixup])")
        return fixup_resnet(config.name, info, rescale=self.options.rescale, zero_init=self.options.zero_init)

    @hookimpl
    def trickbag_param_groups(self, model, groups, config):
        scale = self.options.scalar_lr_scale
        scalars = {id(p) for p in scalar_parameters(model)}
        if scale == 1.0 or not scalars:
            return
        out = []
        for group in groups:  # split every group (no_bias_decay's too): keys kept, lr_scale multiplied
            params = list(group["params"])
            rest = [p for p in params if id(p) not in scalars]
            mine = [p for p in params if id(p) in scalars]
            if rest:
                out.append({**group, "params": rest})
            if mine:
                out.append({**group, "params": mine, "lr_scale": group.get("lr_scale", 1.0) * scale,
                            "name": f"{group.get('name', 'group')}.fixup_scalars"})
        groups[:] = out


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("fixup", FixupOptions, Fixup, "Fixup ResNets without normalisation: fixup_resnet20/56/110 (ZeroInit)")
