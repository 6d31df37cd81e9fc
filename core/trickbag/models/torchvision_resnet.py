"""ImageNet ResNets from torchvision (``resnet18``, ``resnet50``), untrained, fitted to the data set.

torchvision's own code is used as is (no rewrite): only the stem is swapped when the input has
other than 3 channels, or, with ``small_input``, for the 3×3 stride-1 stem without max-pool
that CIFAR-size images need (the 7×7/2 stem + pool would shrink 32×32 to 8×8 before layer1).
"""
from __future__ import annotations

from typing import Any, Callable

import torchvision
from torch import nn

from .registry import register_model


def _fit(make: Callable[..., nn.Module], info: Any, small_input: bool) -> nn.Module:
    model = make(weights=None, num_classes=info.num_classes)  # weights=None: nothing downloads
    if small_input:
        model.conv1 = nn.Conv2d(info.in_channels, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif info.in_channels != 3:
        model.conv1 = nn.Conv2d(info.in_channels, 64, 7, stride=2, padding=3, bias=False)
    # the new stem gets the init torchvision gives every other conv
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


@register_model("resnet18")
def resnet18(info: Any, *, small_input: bool = False) -> nn.Module:
    """torchvision ResNet-18 (11.2M parameters at 1000 classes)."""
    return _fit(torchvision.models.resnet18, info, small_input)


@register_model("resnet50")
def resnet50(info: Any, *, small_input: bool = False) -> nn.Module:
    """torchvision ResNet-50 (25.6M parameters at 1000 classes)."""
    return _fit(torchvision.models.resnet50, info, small_input)
