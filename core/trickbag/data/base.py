"""The data interface the training loop sees, and the source form every data set is read into.

Readers (``embedded``, ``torchvision_sets``, ``imagefolder``) return a :class:`RawData`; ``load_data``
splits and normalises it and hands it to one of two back ends (``device_loader`` or
``dataloader_source``) that both implement :class:`TrainSource` / :class:`ValSource`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

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

    def num_batches(self, batch_size: int) -> int:
        # drop_last: every step sees a full batch, except a set smaller than one batch (one short step).
        return max(1, self.info.train_size // batch_size)

    def batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        """(inputs float32 N×C×H×W normalised, targets int64), both on the training device."""
        raise NotImplementedError


class ValSource:
    """Validation batches in a fixed order, without augmentation, keeping the last partial batch."""

    info: DataInfo

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        raise NotImplementedError


@dataclass
class Split:
    """One split (train or test) of a data set in its source form, before holdout and normalisation."""

    # item i -> (PIL image or C×H×W float tensor in [0, 1], int label): what a DataLoader reads.
    dataset: Dataset[Any]
    targets: Tensor  # int64 labels, known without decoding any image
    # indices -> float32 N×C×H×W in [0, 1]: the whole split at once, vectorised where the source allows.
    to_tensor: Callable[[Tensor], Tensor]
    # False when to_tensor decodes image files: statistics then use a sample rather than every image.
    in_memory: bool = True

    def __len__(self) -> int:
        return len(self.targets)


@dataclass
class RawData:
    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    train: Split
    test: Split | None  # None: the data set has no official test split (holdout only)
