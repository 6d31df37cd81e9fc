"""The data interface the training loop sees, and the source form every data set is read into.

Readers (``embedded``, ``torchvision_sets``, ``imagefolder``) return a :class:`RawData`; ``load_data``
splits and normalises it and hands it to one of two back ends (``device_loader`` or
``dataloader_source``) that both implement :class:`TrainSource` / :class:`ValSource`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset


@dataclass(frozen=True)
class DataInfo:
    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]  # (H, W)
    train_size: int  # samples in the training split
    val_size: int  # samples in the validation split
    mean: tuple[float, ...]  # per-channel normalisation applied to every batch
    std: tuple[float, ...]


class TrainSource:
    """Shuffled, augmented training batches; randomness comes only from (seed, epoch)."""

    info: DataInfo
    # the layout batches are handed out in: the engine sets channels_last for conv nets on GPUs
    memory_format: torch.memory_format = torch.contiguous_format

    def num_batches(self, batch_size: int) -> int:
        # drop_last: every step sees a full batch, except a set smaller than one batch (one short step).
        return max(1, self.info.train_size // batch_size)

    def batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        """(inputs float32 N×C×H×W normalised, targets int64), both on the training device."""
        raise NotImplementedError


class ValSource:
    """Validation batches in a fixed order, without augmentation, keeping the last partial batch."""

    info: DataInfo
    memory_format: torch.memory_format = torch.contiguous_format

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        raise NotImplementedError


@dataclass
class Split:
    """One split (train or test) of a data set in its source form, before holdout and normalisation.

    Every data set here is integer grey levels (uint8 files, 0..255; scikit-learn's digits 0..16),
    so a split hands out uint8 and ``levels``, the value of white: on the device the data stays
    uint8 (a quarter of float32's memory) and becomes float per batch."""

    # item i -> (PIL image or C×H×W float tensor in [0, 1], int label): what a DataLoader reads.
    dataset: Dataset[Any]
    targets: Tensor  # int64 labels, known without decoding any image
    # indices -> uint8 N×C×H×W levels: the whole split at once, vectorised where the source allows.
    to_levels: Callable[[Tensor], Tensor]
    levels: int = 255
    # False when to_levels decodes image files: statistics then use a sample rather than every image.
    in_memory: bool = True

    def __len__(self) -> int:
        return len(self.targets)

    def to_tensor(self, indices: Tensor) -> Tensor:
        """float32 N×C×H×W in [0, 1]: the same arithmetic as torchvision's ``to_tensor``."""
        return levels_to_unit(self.to_levels(indices), self.levels)


def levels_to_unit(x: Tensor, levels: int) -> Tensor:
    return x.to(torch.float32, memory_format=torch.contiguous_format).div_(levels)


@dataclass
class RawData:
    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    train: Split
    test: Split | None  # None: the data set has no official test split (holdout only)
