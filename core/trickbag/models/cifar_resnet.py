"""CIFAR ResNets of He et al. 2016 (arXiv:1512.03385, §4.2): ``resnet20`` and ``resnet56``.

Three stages of n basic blocks at 16/32/64 channels on 32×32 inputs, 6n+2 weighted layers.
Layers are named like torchvision's ``BasicBlock`` (``conv1, bn1, conv2, bn2, downsample``) so
that tricks written against torchvision (zero-γ on each block's last BN, Fixup, ZeroInit) find
the same attributes here; they find the blocks with ``isinstance(m, RESIDUAL_BLOCKS)``.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from .registry import register_model

Shortcut = Literal["A", "B"]


class PadShortcut(nn.Module):
    """Option A: identity that subsamples by ``stride`` and zero-pads the new channels.

    Parameter-free, as in the paper's CIFAR experiments (which is why ResNet-20 has 0.27M).
    """

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # pad spec runs from the last dim backwards: (W, W, H, H, C_before, C_after)
        half = self.extra_channels // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


class CifarBasicBlock(nn.Module):
    """Two 3×3 conv-BN layers plus a shortcut; ``bn2`` is the last BN before the addition."""

    def __init__(self, cin: int, cout: int, stride: int = 1, shortcut: Shortcut = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None  # None = identity, as in torchvision
        if stride != 1 or cin != cout:
            if shortcut == "A":
                self.downsample = PadShortcut(stride, cout - cin)
            else:  # option B: 1×1 projection, torchvision's layout
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


# What tricks that act per residual block (zero-γ BN, Fixup, ZeroInit) should look for.
RESIDUAL_BLOCKS = (BasicBlock, Bottleneck, CifarBasicBlock)


class CifarResNet(nn.Module):
    """conv3×3(16) -> 3 stages × n blocks (16, 32, 64; stride 2 at stages 2 and 3) -> pool -> fc."""

    def __init__(self, n: int, in_channels: int, num_classes: int, shortcut: Shortcut = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._stage(16, 16, n, 1, shortcut)
        self.layer2 = self._stage(16, 32, n, 2, shortcut)
        self.layer3 = self._stage(32, 64, n, 2, shortcut)
        # Adaptive pooling: the same network runs on 8×8 digits and 28×28 MNIST, not only 32×32.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            # He et al. init for ReLU nets; fan_out and BN γ=1, β=0 as torchvision does.
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _stage(cin: int, cout: int, n: int, stride: int, shortcut: Shortcut) -> nn.Sequential:
        blocks = [CifarBasicBlock(cin, cout, stride, shortcut)]
        blocks += [CifarBasicBlock(cout, cout, 1, shortcut) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("resnet20")
def resnet20(info: Any, *, shortcut: Shortcut = "A") -> nn.Module:
    """ResNet-20 (n=3, 0.27M parameters with option A)."""
    return CifarResNet(3, info.in_channels, info.num_classes, shortcut)


@register_model("resnet56")
def resnet56(info: Any, *, shortcut: Shortcut = "A") -> nn.Module:
    """ResNet-56 (n=9, 0.85M parameters with option A)."""
    return CifarResNet(9, info.in_channels, info.num_classes, shortcut)
