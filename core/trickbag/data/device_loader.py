"""Data sets held on the training device as uint8 grey levels (airbench94 style).

No DataLoader and no workers. The store is the training split as uint8 N×C×H×W, zero-padded
once for random crops (raw black, as torchvision's ``RandomCrop(padding)`` pads before
``Normalize``): a quarter of the float32 memory, so CIFAR-10 takes 150 MB. Each epoch's random
choices are drawn on the CPU (``sampling.epoch_plan``, identical on every machine and to the
DataLoader path) and copied to the device once; then every batch is gathered, cropped, flipped
and normalised on the device with a few tensor ops and no host round trip:

* on accelerators, batch by batch, so nothing the size of the epoch is ever materialised in
  float and the step never waits for the host (no ``.item()``, no host tensors);
* on the CPU, the whole epoch at once and batches are views of it: the same ops on one big
  tensor, which costs a small model far less than a dozen tiny ops per step.

Both give bit-identical batches: the same uint8 gather, then the same float32 ``/ levels``,
``- mean``, ``/ std`` as ``to_tensor`` and ``Normalize`` on the DataLoader path.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import DataInfo, TrainSource, ValSource
from .sampling import EpochPlan, epoch_plan


def crop_windows(store: Tensor, size: tuple[int, int]) -> Tensor:
    """Every crop of every image of the padded ``store`` as one overlapping view.

    The crop of image n at (dy, dx) is the window of the flat storage at offset
    n*C*Hp*Wp + dy*Wp + dx with strides (Hp*Wp, Wp, 1); indexing this view's first dimension with
    :func:`crop_offsets` gathers any set of crops in a single memory-bound ``index_select``."""
    n, c, hp, wp = store.shape
    h, w = size
    span = (c - 1) * hp * wp + (h - 1) * wp + w
    return store.as_strided((store.numel() - span + 1, c, h, w), (1, hp * wp, wp, 1), store.storage_offset())


def crop_offsets(store: Tensor, index: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    _, c, hp, wp = store.shape
    return index * (c * hp * wp) + dy * wp + dx


def crops_strided(store: Tensor, index: Tensor, dy: Tensor, dx: Tensor, size: tuple[int, int]) -> Tensor:
    """Images ``index`` of the padded ``store``, each cropped at its (dy, dx): one gather."""
    return crop_windows(store, size).index_select(0, crop_offsets(store, index, dy, dx))


def crops_indexed(store: Tensor, index: Tensor, dy: Tensor, dx: Tensor, size: tuple[int, int]) -> Tensor:
    """The same gather by advanced indexing, for backends (MPS) where overlapping views are risky."""
    h, w = size
    dev = store.device
    rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]
    chans = torch.arange(store.shape[1], device=dev)[None, :, None, None]
    return store[index[:, None, None, None], chans, rows, cols]


def flip_where(x: Tensor, flip: Tensor) -> Tensor:
    """Mirror the images whose ``flip`` is true. ``torch.where`` rather than ``nonzero`` + index:
    nonzero must ask the device how many there are, a sync per batch."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


class Normalise:
    """uint8 levels -> float32 ``(x / levels - mean) / std``, in the memory format asked for.

    The arithmetic and its order are those of torchvision's ``to_tensor`` then ``Normalize`` (the
    DataLoader path), so both paths produce the same bits; the layout does not change a value."""

    def __init__(self, info: DataInfo, levels: int, device: torch.device) -> None:
        # A device tensor, not a Python number: CUDA divides by a host scalar as a multiplication by
        # its reciprocal (one bit off); by a tensor it divides exactly, like the CPU.
        self.levels = torch.tensor(float(levels), device=device)
        self.mean = torch.tensor(info.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(info.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def __call__(self, x: Tensor, memory_format: torch.memory_format) -> Tensor:
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device, memory_format=memory_format)
        return out.copy_(x).div_(self.levels).sub_(self.mean).div_(self.std)


def _to_device(plan: EpochPlan, device: torch.device) -> EpochPlan:
    """One copy per epoch; pinned and non-blocking on CUDA so the host never waits for the GPU."""
    if device.type == "cpu":
        return plan
    cuda = device.type == "cuda"

    def move(t: Tensor | None) -> Tensor | None:
        if t is None:
            return None
        return (t.pin_memory() if cuda else t).to(device, non_blocking=cuda)

    return EpochPlan(move(plan.perm), move(plan.dy), move(plan.dx), move(plan.flip))


class DeviceTrainSource(TrainSource):
    def __init__(self, info: DataInfo, x: Tensor, y: Tensor, levels: int, padding: int, flip: bool) -> None:
        """``x``: the training split as uint8 levels (N×C×H×W) on the device; ``y``: int64 labels there."""
        self.info, self.y, self.padding, self.flip = info, y, padding, flip
        self.device = x.device
        # Only the padded copy is kept; its centre is the un-augmented data.
        self.store = F.pad(x, (padding,) * 4) if padding else x.contiguous()
        self.normalise = Normalise(info, levels, x.device)
        self.per_batch = x.device.type != "cpu"
        self.strided = x.device.type in ("cpu", "cuda")
        self._windows = crop_windows(self.store, info.image_size) if self.strided and padding else None

    def _images(self, index: Tensor, dy: Tensor | None, dx: Tensor | None, flip: Tensor | None) -> Tensor:
        if dy is None:
            x = self.store.index_select(0, index)
        elif self.strided:
            x = self._windows.index_select(0, crop_offsets(self.store, index, dy, dx))
        else:
            x = crops_indexed(self.store, index, dy, dx, self.info.image_size)
        if flip is not None:
            x = flip_where(x, flip)
        return self.normalise(x, self.memory_format)

    def batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        plan = _to_device(epoch_plan(self.info.train_size, seed, epoch, self.padding, self.flip), self.device)
        n = self.num_batches(batch_size)  # drop_last: the short last batch is not trained on
        if not self.per_batch:
            x = self._images(plan.perm, plan.dy, plan.dx, plan.flip)
            y = self.y.index_select(0, plan.perm)
            return zip(x.split(batch_size)[:n], y.split(batch_size)[:n])
        return self._each_batch(plan, batch_size, n)

    def _each_batch(self, plan: EpochPlan, bs: int, n: int) -> Iterator[tuple[Tensor, Tensor]]:
        # Whatever can be done for the whole epoch in one op is (labels in epoch order, the crop
        # offsets): a step then pays for a few slices (views) and the ops on its own batch only.
        labels = self.y.index_select(0, plan.perm)
        if plan.dy is not None and self.strided:
            offsets = crop_offsets(self.store, plan.perm, plan.dy, plan.dx)
            def images(s: slice) -> Tensor:
                return self._windows.index_select(0, offsets[s])
        else:
            def images(s: slice) -> Tensor:
                dy, dx = (None, None) if plan.dy is None else (plan.dy[s], plan.dx[s])
                if dy is None:
                    return self.store.index_select(0, plan.perm[s])
                return crops_indexed(self.store, plan.perm[s], dy, dx, self.info.image_size)
        for b in range(n):
            s = slice(b * bs, (b + 1) * bs)
            x = images(s)
            if plan.flip is not None:
                x = flip_where(x, plan.flip[s])
            yield self.normalise(x, self.memory_format), labels[s]


class DeviceValSource(ValSource):
    def __init__(self, info: DataInfo, x: Tensor, y: Tensor, levels: int) -> None:
        """``x``: the validation split as uint8 levels on the device, normalised batch by batch."""
        self.info, self.x, self.y = info, x, y
        self.normalise = Normalise(info, levels, x.device)

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in zip(self.x.split(batch_size), self.y.split(batch_size)):
            yield self.normalise(x, self.memory_format), y
