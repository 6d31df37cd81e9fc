"""Data sets too big for the device: a torch DataLoader over the source data set, with workers.

The random choices of an epoch are drawn in the main process (``sampling.epoch_plan``) and travel
to the workers inside the sampled keys ``(index, dy, dx, flip)``. Items are then transformed by
torchvision's functional crop/flip/to_tensor/normalize, so augmentation depends only on
(seed, epoch): not on which worker reads an item, nor on how many epochs a persistent worker has
run (exact resume), and it is the same, sample for sample, as on the device path.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torchvision.transforms.functional as TF
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from .base import DataInfo, TrainSource, ValSource
from .sampling import epoch_plan

Key = tuple[int, int, int, bool]  # (dataset index, crop top, crop left, flip); top -1: no crop


class _Items(Dataset):
    def __init__(self, base: Dataset, info: DataInfo, padding: int) -> None:
        self.base, self.padding = base, padding
        self.size = info.image_size
        self.mean, self.std = list(info.mean), list(info.std)

    def __getitem__(self, key: Key) -> tuple[Tensor, int]:
        index, top, left, flip = key
        img, label = self.base[index]
        if top >= 0:  # RandomCrop(padding): zero padding on the raw image, then the drawn window
            img = TF.crop(TF.pad(img, self.padding, fill=0), top, left, *self.size)
        if flip:
            img = TF.hflip(img)
        if not isinstance(img, Tensor):  # PIL from torchvision's readers; the embedded sets are tensors
            img = TF.to_tensor(img)
        return TF.normalize(img, self.mean, self.std), label


class _KeyBatches(Sampler[list[Key]]):
    """A batch sampler re-armed before every epoch. The DataLoader (and its persistent workers) stays
    the same; only the keys and the batch size change, so a mid-run batch-size change costs nothing."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.batch_size, self.count = 1, 0

    def arm(self, keys: list[Key], batch_size: int, count: int) -> None:
        self.keys, self.batch_size, self.count = keys, batch_size, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[list[Key]]:
        keys, bs = self.keys, self.batch_size
        for b in range(self.count):
            yield keys[b * bs : (b + 1) * bs]


class _Loader:
    def __init__(self, items: _Items, device: torch.device, num_workers: int) -> None:
        self.device, self.sampler = device, _KeyBatches()
        self.loader = DataLoader(
            items,
            batch_sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            # Given so the DataLoader seeds its workers from here rather than drawing from the global RNG.
            generator=torch.Generator(),
        )

    def run(self, keys: list[Key], batch_size: int, count: int, memory_format: torch.memory_format) -> Iterator[tuple[Tensor, Tensor]]:
        # Armed inside the generator, when iteration starts, so a batches() call made early cannot
        # re-arm the sampler under an epoch still running.
        self.sampler.arm(keys, batch_size, count)
        # pinned batches (pin_memory on CUDA) copy without blocking the host; the layout change rides
        # on the same copy
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True, memory_format=memory_format), y.to(self.device, non_blocking=True)


class LoaderTrainSource(TrainSource):
    def __init__(self, info: DataInfo, base: Dataset, indices: Tensor, device: torch.device,
                 padding: int, flip: bool, num_workers: int) -> None:
        self.info, self.indices, self.padding, self.flip = info, indices, padding, flip
        self._loader = _Loader(_Items(base, info, padding), device, num_workers)

    def batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        n = self.info.train_size
        plan = epoch_plan(n, seed, epoch, self.padding, self.flip)
        index = self.indices[plan.perm].tolist()
        top = plan.dy.tolist() if plan.dy is not None else [-1] * n
        left = plan.dx.tolist() if plan.dx is not None else [-1] * n
        flip = plan.flip.tolist() if plan.flip is not None else [False] * n
        return self._loader.run(list(zip(index, top, left, flip)), batch_size, self.num_batches(batch_size), self.memory_format)


class LoaderValSource(ValSource):
    def __init__(self, info: DataInfo, base: Dataset, indices: Tensor, device: torch.device,
                 num_workers: int) -> None:
        self.info = info
        self.keys: list[Key] = [(i, -1, -1, False) for i in indices.tolist()]
        self._loader = _Loader(_Items(base, info, 0), device, num_workers)

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self._loader.run(self.keys, batch_size, math.ceil(len(self.keys) / batch_size), self.memory_format)
