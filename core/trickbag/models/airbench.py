"""``airbench94``: the network of Keller Jordan's airbench94 (CIFAR-10 to 94% in seconds on one GPU).

The layer widths and structure of airbench94's ``make_net``: a 2×2 "whitening" convolution to
24 channels, then three conv groups (64, 256, 256 channels), each conv3×3 -> max-pool 2 -> BN ->
GELU -> conv3×3 -> BN -> GELU, a max-pool over what is left, a linear layer without bias and
a fixed output scale of 1/9. As in airbench, BatchNorm has no learnable scale (only a bias),
momentum 0.4 (airbench's 0.6 in its own convention) and eps 1e-12, and every 3×3 conv starts as
an identity on its first input channels (dirac init: an implicit residual).

Left to tricks, not built in: airbench's data-dependent whitening init of the first layer (frozen
there; here it trains from torch's default init), lookahead/EMA, test-time augmentation, its
decoupled hyper-parameters. The model is used by the GPU throughput benchmark as a fast,
launch-bound workload next to the ResNets.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import UserError
from .registry import check_range, register_model


class FixedScaleBatchNorm(nn.BatchNorm2d):
    """BatchNorm with γ frozen at 1 (airbench trains only the shift)."""

    def __init__(self, features: int) -> None:
        super().__init__(features, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


class IdentityInitConv(nn.Conv2d):
    """3×3 'same' conv without bias whose first ``in_channels`` filters start as the identity."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            nn.init.dirac_(self.weight[: self.in_channels])


class ConvGroup(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            IdentityInitConv(cin, cout), nn.MaxPool2d(2), FixedScaleBatchNorm(cout), nn.GELU(),
            IdentityInitConv(cout, cout), FixedScaleBatchNorm(cout), nn.GELU(),
        )


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


@register_model("airbench94")
def airbench94(info: Any, *, width: int = 64) -> nn.Module:
    """airbench94's network (about 2M parameters at width 64); inputs of at least 16×16 pixels."""
    check_range("width", width, width >= 1, ">= 1")
    h, w = info.image_size
    if min(h, w) < 16:  # a 2×2 conv then three 2×2 pools must leave at least one pixel
        raise UserError(f"model airbench94 needs images of at least 16x16 pixels, the data has {h}x{w}")
    whiten = 2 * info.in_channels * 2 * 2  # airbench: 2 * 3 * kernel_size**2 = 24 for RGB
    widths = (width, 4 * width, 4 * width)
    return nn.Sequential(
        nn.Conv2d(info.in_channels, whiten, 2, padding=0, bias=True),
        nn.GELU(),
        ConvGroup(whiten, widths[0]),
        ConvGroup(widths[0], widths[1]),
        ConvGroup(widths[1], widths[2]),
        nn.AdaptiveMaxPool2d(1),  # airbench's MaxPool2d(3) on its 3×3 maps: a global max
        nn.Flatten(),
        nn.Linear(widths[2], info.num_classes, bias=False),
        Scale(1 / 9),
    )

