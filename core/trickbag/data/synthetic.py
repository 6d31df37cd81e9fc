"""``synthetic_cifar10``: random images with the shapes of CIFAR-10, for benchmarks and device checks.

50,000 training and 10,000 test images, 3×32×32 uint8, 10 classes, generated from a fixed seed in
about a second, so a GPU throughput table or a device check needs no data files. Each image is
half noise and half its class's pattern: a random 4×4 grid of colours blown up to 32×32 (cells of
8 pixels survive random crops of ±4 pixels), so a conv net does learn (well above chance within
an epoch) and an LR range test has a curve to read: a loss that never moves would hide a broken
step.
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from .base import RawData, Split
from .embedded import TensorItems

SHAPE = (3, 32, 32)
TRAIN, TEST, CLASSES = 50_000, 10_000, 10


@lru_cache(maxsize=None)
def _arrays() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(20240229)
    cells = torch.randint(0, 256, (CLASSES, SHAPE[0], 4, 4), generator=g, dtype=torch.uint8)
    patterns = cells.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
    y = torch.randint(0, CLASSES, (TRAIN + TEST,), generator=g)
    noise = torch.randint(0, 256, (TRAIN + TEST, *SHAPE), generator=g, dtype=torch.uint8)
    return noise // 2 + patterns[y] // 2, y


def _split(x: Tensor, y: Tensor) -> Split:
    return Split(TensorItems(x, y, 255), y, to_levels=lambda idx: x.index_select(0, idx))


def load() -> RawData:
    x, y = _arrays()
    train = _split(x[:TRAIN], y[:TRAIN])
    test = _split(x[TRAIN:], y[TRAIN:])
    return RawData("synthetic_cifar10", CLASSES, SHAPE[0], SHAPE[1:], train=train, test=test)
