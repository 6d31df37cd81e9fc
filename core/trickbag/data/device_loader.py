"""Data sets held as one normalised float32 tensor on the training device (airbench94 style).

No DataLoader and no workers: each epoch permutes, crops and flips the whole training set with a
few tensor ops, then batches are views of the result, so a training step pays only for two slices.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from .base import DataInfo, TrainSource, ValSource
from .sampling import EpochPlan, epoch_plan


def pad_images(x: Tensor, padding: int, fill: Tensor) -> Tensor:
    """Pad N×C×H×W with a per-channel value: the normalised value of raw black, so padding is the
    zero padding of torchvision's RandomCrop(padding) applied before Normalize."""
    n, c, h, w = x.shape
    out = fill.to(x).view(1, c, 1, 1).expand(n, c, h + 2 * padding, w + 2 * padding).contiguous()
    out[:, :, padding : padding + h, padding : padding + w] = x
    return out


def _crops_strided(store: Tensor, plan: EpochPlan, size: tuple[int, int]) -> Tensor:
    # Every crop of every image is a window of the flat storage at offset
    # n*C*Hp*Wp + dy*Wp + dx with strides (Hp*Wp, Wp, 1). One overlapping as_strided view covers all of
    # them, so the epoch's permutation and crops are a single memory-bound index_select.
    n, c, hp, wp = store.shape
    h, w = size
    span = (c - 1) * hp * wp + (h - 1) * wp + w
    windows = store.as_strided((store.numel() - span + 1, c, h, w), (1, hp * wp, wp, 1), store.storage_offset())
    offsets = plan.perm * (c * hp * wp) + plan.dy * wp + plan.dx
    return windows.index_select(0, offsets.to(store.device))


def _crops_indexed(store: Tensor, plan: EpochPlan, size: tuple[int, int]) -> Tensor:
    # The same gather by advanced indexing, for backends (MPS) where overlapping views are risky.
    h, w = size
    dev = store.device
    rows = (plan.dy[:, None] + torch.arange(h))[:, None, :, None].to(dev)
    cols = (plan.dx[:, None] + torch.arange(w))[:, None, None, :].to(dev)
    chans = torch.arange(store.shape[1], device=dev)[None, :, None, None]
    return store[plan.perm.to(dev)[:, None, None, None], chans, rows, cols]


def augment(store: Tensor, plan: EpochPlan, size: tuple[int, int]) -> Tensor:
    """The epoch's images in plan order, cropped and flipped; a fresh contiguous tensor."""
    if plan.dy is None:
        x = store.index_select(0, plan.perm.to(store.device))
    elif store.device.type in ("cpu", "cuda"):
        x = _crops_strided(store, plan, size)
    else:
        x = _crops_indexed(store, plan, size)
    if plan.flip is not None:
        idx = plan.flip.nonzero().squeeze(1).to(store.device)
        x.index_copy_(0, idx, x.index_select(0, idx).flip(3))
    return x


class DeviceTrainSource(TrainSource):
    def __init__(self, info: DataInfo, x: Tensor, y: Tensor, padding: int, flip: bool) -> None:
        self.info, self.y, self.padding, self.flip = info, y, padding, flip
        # Only the padded copy is kept; its centre is the un-augmented data.
        fill = -torch.tensor(info.mean) / torch.tensor(info.std)
        self.store = pad_images(x, padding, fill) if padding else x

    def batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        plan = epoch_plan(self.info.train_size, seed, epoch, self.padding, self.flip)
        x = augment(self.store, plan, self.info.image_size)
        y = self.y.index_select(0, plan.perm.to(self.y.device))
        # split() makes every batch view in one C++ call; the last, short one is dropped (drop_last).
        n = self.num_batches(batch_size)
        return zip(x.split(batch_size)[:n], y.split(batch_size)[:n])


class DeviceValSource(ValSource):
    def __init__(self, info: DataInfo, x: Tensor, y: Tensor) -> None:
        self.info, self.x, self.y = info, x, y

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        return zip(self.x.split(batch_size), self.y.split(batch_size))
