"""Training and validation data: ``load_data(cfg.data, device)`` -> (TrainSource, ValSource).

Small data sets live on the training device as uint8 levels, augmented and normalised there
(``device_loader``); larger ones stream through a DataLoader (``dataloader_source``). Both give the
same batches, bit for bit, for the same (seed, epoch), so where the data lives is a performance
choice only. Sources have a ``memory_format`` (channels_last for conv nets on GPUs, set by the
engine) in which they hand out batches.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..config import DataConfig
from ..errors import UserError, did_you_mean
from . import embedded, imagefolder, synthetic, torchvision_sets
from .base import DataInfo, RawData, TrainSource, ValSource
from .dataloader_source import LoaderTrainSource, LoaderValSource
from .device_loader import DeviceTrainSource, DeviceValSource
from .prepare import holdout, split_stats
from .sampling import generator

__all__ = ["DATASETS", "DataInfo", "TrainSource", "ValSource", "load_data"]

DATASETS = ("mnist5k", "digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder", "synthetic_cifar10")

# on_device = "auto" holds a data set on the device when its uint8 tensors take less than this:
# GPUs have the memory and gain the most (CIFAR-10 is 180 MB); on CPU/MPS the training process
# shares RAM with everything.
DEVICE_BYTES = {"cuda": 8 << 30}
OTHER_BYTES = 1 << 30


def _read(cfg: DataConfig) -> RawData:
    if cfg.name not in DATASETS:
        raise UserError(f"data.name '{cfg.name}' is unknown{did_you_mean(cfg.name, DATASETS)} (known: {', '.join(DATASETS)})")
    if cfg.image_size is not None and cfg.name != "imagefolder":
        raise UserError(f"data.image_size applies to imagefolder only, not to {cfg.name}")
    if cfg.name in ("mnist5k", "digits"):
        return embedded.load(cfg.name)
    if cfg.name == "imagefolder":
        return imagefolder.load(cfg, cfg.num_workers)
    if cfg.name == "synthetic_cifar10":
        return synthetic.load()
    return torchvision_sets.load(cfg)


def _check_labels(raw: RawData, targets: Tensor, split: str) -> None:
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= raw.num_classes):
        raise UserError(
            f"{raw.name} {split} labels run from {int(targets.min())} to {int(targets.max())}, "
            f"outside 0..{raw.num_classes - 1}"
        )


def _on_device(mode: str, nbytes: int, device: torch.device) -> bool:
    if mode != "auto":
        return mode == "always"
    return nbytes < DEVICE_BYTES.get(device.type, OTHER_BYTES)


def _subset(train_idx: Tensor, cfg: DataConfig) -> Tensor:
    """A seeded random subset of the training indices (data.subset), sorted like the holdout."""
    if cfg.subset is None:
        return train_idx
    if cfg.subset > len(train_idx):
        raise UserError(f"data.subset {cfg.subset} is larger than the {len(train_idx)} training samples of {cfg.name}")
    pick = torch.randperm(len(train_idx), generator=generator("subset", cfg.split_seed))[: cfg.subset]
    return train_idx[pick.sort().values]


def load_data(cfg: DataConfig, device: torch.device) -> tuple[TrainSource, ValSource]:
    raw = _read(cfg)
    if cfg.val == "test":
        if raw.test is None:
            raise UserError(f"data.val = 'test' but {cfg.name} has no test split; use data.val = 'holdout'")
        val_split = raw.test
        train_idx, val_idx = torch.arange(len(raw.train)), torch.arange(len(raw.test))
        for split, idx in (("training", train_idx), ("test", val_idx)):
            if not len(idx):
                raise UserError(f"{cfg.name} under '{cfg.root}' has an empty {split} split")
    else:
        val_split = raw.train
        train_idx, val_idx = holdout(len(raw.train), cfg.val_size, cfg.split_seed, cfg.name)
    train_idx = _subset(train_idx, cfg)
    _check_labels(raw, raw.train.targets, "training")
    _check_labels(raw, val_split.targets, "validation")
    y_train, y_val = raw.train.targets[train_idx], val_split.targets[val_idx]

    # Both back ends normalise with the same statistics, computed the same way, so a batch is the
    # same bits whichever holds the data.
    mean, std = split_stats(raw.train, train_idx, cfg.split_seed)
    c, (h, w) = raw.in_channels, raw.image_size
    info = DataInfo(cfg.name, raw.num_classes, c, (h, w), len(train_idx), len(val_idx), mean, std)
    nbytes = (len(train_idx) + len(val_idx)) * c * h * w  # held as uint8
    if _on_device(cfg.on_device, nbytes, device):
        x_train = raw.train.to_levels(train_idx).to(device)
        x_val = val_split.to_levels(val_idx).to(device)
        train = DeviceTrainSource(info, x_train, y_train.to(device), raw.train.levels, cfg.crop_padding, cfg.flip)
        return train, DeviceValSource(info, x_val, y_val.to(device), val_split.levels)

    train = LoaderTrainSource(
        info, raw.train.dataset, train_idx, device, cfg.crop_padding, cfg.flip, cfg.num_workers
    )
    return train, LoaderValSource(info, val_split.dataset, val_idx, device, cfg.num_workers)
