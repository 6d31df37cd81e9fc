"""Shake-Shake ResNets for CIFAR-sized images (Gastaldi, "Shake-Shake regularization", 2017):
``shake_shake26_2x32d`` and ``shake_shake26_2x64d``.

As in the paper's code (``models/shakeshake.lua`` and ``models/shakeshakeblock.lua`` of
github.com/xgastaldi/shake-shake, built on fb.resnet.torch):

* stem: 3×3 convolution to 16 channels, BatchNorm (no ReLU: every branch begins with one);
* three stages of ``(depth − 2) / 6`` blocks (4 for depth 26) at ``w``, ``2w``, ``4w`` channels
  (``w`` = 32 or 64, the "2×32d" / "2×64d"), stride 2 at the first block of stages 2 and 3;
* a block: two residual branches ``ReLU-Conv3×3-BN-ReLU-Conv3×3-BN`` mixed by the shake-shake
  function, plus a shortcut: the identity, or where the channels change ``ReLU`` then two 1×1
  convolutions of ``c_out/2`` channels, one on the subsampled input and one on the input shifted by
  one pixel right and down then subsampled, concatenated, then BatchNorm;
* ReLU, global average pooling, linear classifier.

Initialisation as fb.resnet.torch: convolutions ``N(0, 2/(k·k·c_out))`` (He, ``fan_out``), no conv
bias, BatchNorm γ = 1 and β = 0, the classifier's bias 0 (its weight torch's default).

**The shake-shake function.** In training, a block returns ``shortcut + α·x1 + (1 − α)·x2`` and
its backward pass sends ``β·g`` to branch 1 and ``(1 − β)·g`` to branch 2, with α and β drawn
independently from U(0, 1) (``ShakeShake``, a ``torch.autograd.Function``). ``forward`` and
``backward`` choose each coefficient among the paper's "shake" (random), "even" (0.5) and, for β,
"keep" (β = α); ``level`` draws one coefficient per image ("image") or one per block and batch
("batch"). In evaluation α = β = 0.5 and nothing is drawn.

**Randomness.** α and β come from torch's global RNG on the input's device, both drawn in the
forward pass (the paper's code draws β during the backward pass: the same distribution, independent
of α either way). The engine reseeds the global RNG from (seed, epoch) at every epoch and the LR
range test restores it, so a seeded run repeats exactly and a resumed run continues exactly, with
no state of the trick's own to checkpoint; outside trickbag the model behaves like any module that
uses dropout.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

Forward = Literal["shake", "even"]
Backward = Literal["shake", "even", "keep"]
Level = Literal["image", "batch"]

#: model name -> (depth, width of the first stage)
SHAKE_MODELS = {"shake_shake26_2x32d": (26, 32), "shake_shake26_2x64d": (26, 64)}


class ShakeShake(torch.autograd.Function):
    """``α·x1 + (1 − α)·x2`` forward; ``β·g`` and ``(1 − β)·g`` to ``x1`` and ``x2`` backward.

    ``alpha`` and ``beta`` broadcast against the branches (N×1×1×1 per image, 1×1×1×1 per batch)
    and get no gradient.
    """

    @staticmethod
    def forward(ctx, x1: torch.Tensor, x2: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(beta)
        return alpha * x1 + (1 - alpha) * x2

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (beta,) = ctx.saved_tensors
        g1 = beta * grad if ctx.needs_input_grad[0] else None
        g2 = (1 - beta) * grad if ctx.needs_input_grad[1] else None
        return g1, g2, None, None


def draw_coefficients(n: int, device: torch.device, forward: Forward = "shake", backward: Backward = "shake",
                      level: Level = "image") -> tuple[torch.Tensor, torch.Tensor]:
    """(α, β) of one block for a batch of ``n``, float32, from the global RNG: α first, then β
    (only "shake" draws)."""
    shape = (n, 1, 1, 1) if level == "image" else (1, 1, 1, 1)
    alpha = torch.rand(shape, device=device) if forward == "shake" else torch.full(shape, 0.5, device=device)
    if backward == "keep":
        beta = alpha
    elif backward == "shake":
        beta = torch.rand(shape, device=device)
    else:
        beta = torch.full(shape, 0.5, device=device)
    return alpha, beta


def _branch(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ReLU(inplace=False),  # not in place: the other branch and the shortcut read the same input
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
    )


class ShakeShortcut(nn.Module):
    """ReLU, then two 1×1 convolutions to ``cout/2`` channels each (one on the subsampled input, one
    on the input shifted one pixel right and down, then subsampled), concatenated, BatchNorm."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, cout // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(cin, cout - cout // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        shifted = F.pad(x, (1, -1, 1, -1))  # Lua's SpatialZeroPadding(1, -1, 1, -1)
        s = self.stride
        return self.bn(torch.cat([self.conv1(x[:, :, ::s, ::s]), self.conv2(shifted[:, :, ::s, ::s])], dim=1))


class ShakeBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, forward: Forward = "shake", backward: Backward = "shake",
                 level: Level = "image") -> None:
        super().__init__()
        self.branch1 = _branch(cin, cout, stride)
        self.branch2 = _branch(cin, cout, stride)
        self.shortcut: nn.Module | None = ShakeShortcut(cin, cout, stride) if stride != 1 or cin != cout else None
        self.shake_forward, self.shake_backward, self.level = forward, backward, level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.branch1(x), self.branch2(x)
        identity = x if self.shortcut is None else self.shortcut(x)
        if self.training:
            alpha, beta = draw_coefficients(x.shape[0], x.device, self.shake_forward, self.shake_backward, self.level)
            mixed = ShakeShake.apply(x1, x2, alpha.to(x1.dtype), beta.to(x1.dtype))
        else:  # evaluation: α = β = 0.5, nothing drawn
            mixed = 0.5 * x1 + 0.5 * x2
        return identity + mixed

    def extra_repr(self) -> str:
        return f"forward={self.shake_forward!r}, backward={self.shake_backward!r}, level={self.level!r}"


class ShakeShakeNet(nn.Module):
    def __init__(self, depth: int, width: int, in_channels: int, num_classes: int, forward: Forward = "shake",
                 backward: Backward = "shake", level: Level = "image") -> None:
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"shake-shake depth must be 6n + 2 with n >= 1, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        mode = {"forward": forward, "backward": backward, "level": level}
        stages, cin = [], 16
        for i, (cout, stride) in enumerate(((width, 1), (2 * width, 2), (4 * width, 2))):
            blocks = [ShakeBlock(cin if j == 0 else cout, cout, stride if j == 0 else 1, **mode) for j in range(n)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # the paper's 8×8 average pool on 32×32 inputs; any size here
        self.fc = nn.Linear(4 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.fc.bias)

    def blocks(self) -> list[ShakeBlock]:
        return [m for m in self.modules() if isinstance(m, ShakeBlock)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x))
        x = self.relu(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def shake_shake_net(name: str, info: Any, *, forward: Forward = "shake", backward: Backward = "shake",
                    level: Level = "image") -> ShakeShakeNet:
    """The network called ``name`` (a key of ``SHAKE_MODELS``) for data described by ``info``."""
    depth, width = SHAKE_MODELS[name]
    return ShakeShakeNet(depth, width, info.in_channels, info.num_classes, forward, backward, level)
