"""Zero-γ BatchNorm (Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
2017, section 5.1; "Bag of Tricks for Image Classification with Convolutional Neural Networks",
He et al., CVPR 2019, section 3.1): initialise γ = 0 in the BatchNorm that closes the residual
branch of every residual block, so that each block computes ``relu(0 + shortcut(x))`` at the start
of training: the network starts as a shallower one and the blocks grow in as γ is trained.

Implemented in ``trickbag_configure_model``, after the model is built and seeded, before the
optimizer exists (so γ is trained as usual). Blocks are found by type, with
``isinstance(module, trickbag.models.RESIDUAL_BLOCKS)``: torchvision's ``BasicBlock`` (``bn2``),
``Bottleneck`` (``bn3``) and the CIFAR ResNets' ``CifarBasicBlock`` (``bn2``). This is exactly what
torchvision's ``zero_init_residual=True`` does, and it draws no random numbers, so the rest of the
initialisation is unchanged. β is left at its initial 0.

A model without any residual block (``mlp``, ``small_cnn``, ``airbench94``) is refused with one
line: the trick would silently do nothing, and an ablation "with zero-γ" would measure nothing.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck
from trickbag import TrickOptions, TrickSpec, UserError, hookimpl
from trickbag.models import RESIDUAL_BLOCKS


class ZeroGammaOptions(TrickOptions):
    """No options besides ``enabled``: which BN is zeroed follows from the block's structure."""


def last_bn(block: nn.Module) -> nn.Module:
    """The BatchNorm that closes the residual branch: ``bn3`` of a bottleneck, ``bn2`` of a basic block."""
    return block.bn3 if isinstance(block, Bottleneck) else block.bn2


def residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, RESIDUAL_BLOCKS)]


def zero_gamma(model: nn.Module) -> int:
    """Set γ = 0 in the last BN of every residual block of ``model``; returns how many were zeroed.

    Raises ``UserError`` when there is none, or when a block's last BN has no γ (``affine=False``)."""
    blocks = residual_blocks(model)
    for name, block in blocks:
        bn = last_bn(block)
        if getattr(bn, "weight", None) is None:
            raise UserError(f"tricks.zero_gamma: the last BatchNorm of residual block '{name}' has no γ (affine=False): nothing to zero")
        with torch.no_grad():
            bn.weight.zero_()
    return len(blocks)


class ZeroGamma:
    def __init__(self, options: ZeroGammaOptions) -> None:
        self.options = options
        self.zeroed = 0  # blocks zeroed in this run (for tests and curiosity)

    @hookimpl
    def trickbag_configure_model(self, model, info, context):
        self.zeroed = zero_gamma(model)
        if not self.zeroed:
            name = context.recipe.model.name if context is not None and context.recipe is not None else type(model).__name__
            raise UserError(
                f"tricks.zero_gamma: model.name {name!r} has no residual block (zero-γ needs a ResNet: resnet20, resnet56, "
                "resnet18, resnet50); remove [tricks.zero_gamma] or set enabled = false"
            )


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("zero_gamma", ZeroGammaOptions, ZeroGamma, "γ = 0 in the last BN of every residual block (Goyal et al. 2017)")
