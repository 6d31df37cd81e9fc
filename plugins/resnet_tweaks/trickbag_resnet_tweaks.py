"""ResNet-B, ResNet-C and ResNet-D (He et al., "Bag of Tricks for Image Classification with
Convolutional Neural Networks", CVPR 2019, section 4.2, Figure 2): three tweaks of the ResNet
architecture, applied in place to the torchvision ResNets (``resnet18``, ``resnet50``).

* **A**, the original ResNet (He et al. 2016): the first block of stages 2-4 downsamples with a
  stride-2 *1×1* convolution, the first of its path A, which so ignores three quarters of its input.
* **B**: the stride moves to the 3×3 convolution of path A. torchvision's ResNets are built this
  way ("ResNet v1.5"), so B changes nothing.
* **C** = B + a deep stem: the 7×7 stride-2 input convolution becomes three 3×3 convolutions with
  32, 32 and 64 output channels, the first with stride 2 (BN and ReLU between them; the model's own
  ``bn1``/``relu``/``maxpool`` follow the last as before).
* **D** = C + in the projection shortcut (path B) of every downsampling block, a 2×2 average pool
  with stride 2 before the 1×1 convolution, whose stride becomes 1: the shortcut sees every input
  pixel instead of one in four.

Implemented in ``trickbag_configure_model``, after the model is built and seeded and before the
optimizer exists, so the new stem's parameters are trained; the new convolutions get torchvision's
init (Kaiming normal, fan-out) and the new BNs γ = 1, β = 0. Existing modules keep their weights:
A and D only change strides and insert a parameter-free pool. The stride of the deep stem's first
convolution is that of the convolution it replaces (1 with ``model.small_input = true``), and its
input channels too, so output shapes never change.

Basic blocks (``resnet18``) have two 3×3 convolutions and torchvision strides the first, as the
original paper did: A and B are the same network there, torchvision's. C and D apply as for
bottlenecks.
"""
from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from trickbag import TrickOptions, TrickSpec, UserError, hookimpl

log = logging.getLogger("trickbag")

Variant = Literal["A", "B", "C", "D"]
STEM_WIDTHS = (32, 32)  # the deep stem's first two convolutions (the third keeps the stem's 64)


class ResNetTweaksOptions(TrickOptions):
    variant: Variant = Field(
        "D",
        description="A: stride in the first 1×1 conv (original ResNet); B: stride in the 3×3 conv (torchvision); "
        "C: B + deep 3×3 stem; D: C + 2×2 avg-pool before the 1×1 shortcut conv",
    )


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def stride_in_first_1x1(model: ResNet) -> int:
    """ResNet-A: in every bottleneck whose 3×3 conv strides, move that stride to the 1×1 conv before
    it (output shapes are unchanged: a 1×1 conv without padding and a padded 3×3 conv give the same
    size). Basic blocks are left alone. Returns the number of blocks changed."""
    changed = 0
    for block in model.modules():
        if isinstance(block, Bottleneck) and _pair(block.conv2.stride) != (1, 1):
            block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)
            changed += 1
    return changed


def _conv3x3(cin: int, cout: int, stride) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init of every conv
    return conv


def deep_stem(model: ResNet) -> None:
    """ResNet-C: ``model.conv1`` becomes conv3×3(32, stride s) - BN - ReLU - conv3×3(32) - BN - ReLU -
    conv3×3(64), with s and the input channels of the convolution it replaces."""
    old = model.conv1
    if not isinstance(old, nn.Conv2d):
        raise UserError(f"tricks.resnet_tweaks: the model's stem conv1 is a {type(old).__name__}, not a Conv2d: it was already rewritten")
    a, b = STEM_WIDTHS
    model.conv1 = nn.Sequential(
        _conv3x3(old.in_channels, a, old.stride), nn.BatchNorm2d(a), nn.ReLU(inplace=True),
        _conv3x3(a, b, 1), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
        _conv3x3(b, old.out_channels, 1),
    )


def avg_pool_shortcuts(model: ResNet) -> int:
    """ResNet-D: every projection shortcut ``Sequential(conv1×1 stride s, BN)`` with s > 1 becomes
    ``Sequential(AvgPool2d(s, s), conv1×1 stride 1, BN)`` (the same conv and BN modules). The pool
    rounds up and averages only real pixels, so odd sizes give the same shape as the strided conv.
    Returns the number of shortcuts changed."""
    changed = 0
    for block in model.modules():
        if not isinstance(block, (BasicBlock, Bottleneck)) or block.downsample is None:
            continue
        conv = block.downsample[0]
        if not isinstance(conv, nn.Conv2d):
            continue  # not torchvision's (conv, BN) projection: leave it
        stride = _pair(conv.stride)
        if stride == (1, 1):
            continue  # resnet50's layer1: a projection for the channels only
        conv.stride = (1, 1)
        pool = nn.AvgPool2d(stride, stride=stride, ceil_mode=True, count_include_pad=False)
        block.downsample = nn.Sequential(pool, *block.downsample)
        changed += 1
    return changed


def apply_variant(model: ResNet, variant: Variant) -> None:
    """Rewrite a torchvision ResNet (built as B) into ``variant`` in place."""
    if variant == "A":
        stride_in_first_1x1(model)
    if variant in ("C", "D"):
        deep_stem(model)
    if variant == "D":
        avg_pool_shortcuts(model)


class ResNetTweaks:
    def __init__(self, options: ResNetTweaksOptions) -> None:
        self.options = options

    @hookimpl
    def trickbag_configure_model(self, model, info, context):
        variant = self.options.variant
        name = context.recipe.model.name if context is not None and context.recipe is not None else type(model).__name__
        if not isinstance(model, ResNet):
            raise UserError(
                f"tricks.resnet_tweaks: model.name {name!r} is not a torchvision ResNet; variants A-D rewrite resnet18 "
                "and resnet50 (the CIFAR resnet20/resnet56 have a 3×3 stem and no such shortcuts)"
            )
        bottlenecks = any(isinstance(m, Bottleneck) for m in model.modules())
        if variant == "B" or (variant == "A" and not bottlenecks):
            log.info(f"tricks.resnet_tweaks: variant {variant} is {name} as torchvision builds it (nothing to change)")
        apply_variant(model, variant)


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("resnet_tweaks", ResNetTweaksOptions, ResNetTweaks, "ResNet-A/B/C/D: stride placement, deep stem, avg-pool shortcut (He et al. 2019)")
