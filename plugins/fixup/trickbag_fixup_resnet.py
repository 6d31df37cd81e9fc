"""Fixup ResNets for CIFAR-sized images (Zhang, Dauphin & Ma, "Fixup Initialization: Residual
Learning Without Normalization", ICLR 2019): ``fixup_resnet20``, ``fixup_resnet56``,
``fixup_resnet110``.

The CIFAR ResNet of He et al. (``trickbag.models.cifar_resnet``: a 3×3 stem of 16 channels, three
stages of ``n`` basic blocks at 16/32/64 channels, option-A shortcuts, 6n+2 weighted layers) with
every BatchNorm removed and the paper's three rules instead (its Section 3, "Fixup"):

1. the classification layer and the last layer of each residual branch start at 0;
2. every other layer starts with a standard initialisation (He et al. 2015, in its forward,
   ``fan_in`` form: no normalisation layer restores the signal's scale), and the weight layers
   inside the residual branches are then multiplied by ``L^(-1/(2m-2))``: ``L`` residual branches, ``m`` layers per branch (basic
   blocks: ``m = 2``, so ``L^(-1/2)``);
3. a scalar multiplier (``scale``, 1 at the start) in every branch, and a scalar bias (0 at the
   start) before each convolution, linear layer and element-wise activation.

A block computes, as the authors' CIFAR code does::

    branch = scale · conv2(relu(conv1(x + bias1a) + bias1b) + bias2a) + bias2b
    out    = relu(branch + x)                          (identity shortcut)
    out    = relu(branch + shortcut(x + bias1a))       (downsampling shortcut: subsample, zero-pad)

At the start every branch is 0, so each block passes its (non-negative) input through and the
network is the stem followed by the shortcuts; its output is 0 (the classifier is 0).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from trickbag.models.cifar_resnet import PadShortcut

#: model name -> basic blocks per stage (depth 6n + 2)
FIXUP_DEPTHS = {"fixup_resnet20": 3, "fixup_resnet56": 9, "fixup_resnet110": 18}
LAYERS_PER_BRANCH = 2  # m of the paper: two 3×3 convolutions in a basic block's branch


def branch_scale(branches: int, layers_per_branch: int = LAYERS_PER_BRANCH) -> float:
    """Fixup's rescaling of the weight layers inside the residual branches: ``L^(-1/(2m-2))``."""
    if layers_per_branch < 2:
        raise ValueError("Fixup's rescaling needs at least two layers per branch (m >= 2)")
    return branches ** (-1.0 / (2 * layers_per_branch - 2))


class ScalarBias(nn.Module):
    """A learnable scalar added to its input (0 at the start).

    A module whose parameter is called ``bias``, so tricks that treat biases specially (no bias
    decay) recognise it. 0-dimensional: under autocast a bf16/fp16 activation stays in its dtype.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class FixupBasicBlock(nn.Module):
    """Two 3×3 convolutions without normalisation, four scalar biases and one scalar multiplier."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bias1a = ScalarBias()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bias1b = ScalarBias()
        self.relu = nn.ReLU(inplace=True)
        self.bias2a = ScalarBias()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.scale = nn.Parameter(torch.ones(()))
        self.bias2b = ScalarBias()
        # option A, as the core CIFAR ResNets and the authors' code: subsample, zero-pad channels
        self.downsample: nn.Module | None = PadShortcut(stride, cout - cin) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = self.bias1a(x)
        out = self.relu(self.bias1b(self.conv1(shifted)))
        out = self.bias2b(self.conv2(self.bias2a(out)) * self.scale)
        identity = x if self.downsample is None else self.downsample(shifted)
        return self.relu(out + identity)


class FixupResNet(nn.Module):
    """conv3×3(16) + bias + ReLU -> 3 stages × n Fixup blocks (16, 32, 64 channels; stride 2 at
    stages 2 and 3) -> global average pool -> bias -> linear classifier.

    ``rescale = False`` skips rule 2's ``L^(-1/(2m-2))`` and ``zero_init = False`` skips rule 1
    (the branches' last layers and the classifier then keep their He / torch default initialisation):
    the paper's ablations, and what the tests compare Fixup with.
    """

    def __init__(self, n: int, in_channels: int, num_classes: int, *, rescale: bool = True, zero_init: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bias1 = ScalarBias()
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._stage(16, 16, n, 1)
        self.layer2 = self._stage(16, 32, n, 2)
        self.layer3 = self._stage(32, 64, n, 2)
        # adaptive: the same network runs on 8×8 digits, 28×28 MNIST and 32×32 CIFAR
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.bias2 = ScalarBias()
        self.fc = nn.Linear(64, num_classes)

        self.num_branches = 3 * n  # L: one residual branch per block
        self.branch_scale = branch_scale(self.num_branches) if rescale else 1.0
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # standard (He) initialisation first, for every layer
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        for block in self.blocks():
            with torch.no_grad():  # rule 2: only the weight layers inside the residual branches
                block.conv1.weight.mul_(self.branch_scale)
                block.conv2.weight.mul_(self.branch_scale)
            if zero_init:  # rule 1: the branch's last layer
                nn.init.zeros_(block.conv2.weight)
        if zero_init:  # rule 1: the classifier
            nn.init.zeros_(self.fc.weight)
            nn.init.zeros_(self.fc.bias)

    @staticmethod
    def _stage(cin: int, cout: int, n: int, stride: int) -> nn.Sequential:
        blocks = [FixupBasicBlock(cin, cout, stride)]
        blocks += [FixupBasicBlock(cout, cout, 1) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def blocks(self) -> list[FixupBasicBlock]:
        return [m for m in self.modules() if isinstance(m, FixupBasicBlock)]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The output of the last residual stage (N × 64 × H/4 × W/4), before pooling."""
        x = self.relu(self.bias1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.fc(self.bias2(x))


def fixup_resnet(name: str, info: Any, *, rescale: bool = True, zero_init: bool = True) -> FixupResNet:
    """The Fixup ResNet called ``name`` (a key of ``FIXUP_DEPTHS``) for data described by ``info``."""
    return FixupResNet(FIXUP_DEPTHS[name], info.in_channels, info.num_classes, rescale=rescale, zero_init=zero_init)


def scalar_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Fixup's scalar biases and multipliers, and the classifier's bias: the parameters the
    authors' code trains at a tenth of the LR (it selects every name containing 'bias' or 'scale')."""
    found: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, ScalarBias):
            found[id(module.bias)] = module.bias
        elif isinstance(module, FixupBasicBlock):
            found[id(module.scale)] = module.scale
        elif isinstance(module, FixupResNet):
            found[id(module.fc.bias)] = module.fc.bias
    return list(found.values())

