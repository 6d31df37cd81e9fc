"""Training and validation data: ``load_data(cfg.data, device)`` -> (TrainSource, ValSource).

Small data sets live on the training device as one normalised tensor (``device_loader``); larger
ones stream through a DataLoader (``dataloader_source``). Both give the same batches for the same
(seed, epoch), so where the data lives is a performance choice only.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..config import DataConfig
from ..errors import UserError, did_you_mean
from . import embedded, imagefolder, torchvision_sets
from .base import DataInfo, RawData, TrainSource, ValSource
from .dataloader_source import LoaderTrainSource, LoaderValSource
from .device_loader import DeviceTrainSource, DeviceValSource
from .prepare import holdout, split_stats, tensor_stats

__all__ = ["DATASETS", "DataInfo", "TrainSource", "ValSource", "load_data"]

DATASETS = ("mnist5k", "digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder")

# on_device = "auto" holds a data set on the device when its float32 tensors take less than this:
# GPUs have the memory and gain the most; on CPU/MPS the training process shares RAM with everything.
DEVICE_BYTES = {"cuda": 4 << 30}
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


def _normalise(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    # The same float32 sub/div as torchvision's Normalize, so both back ends give identical pixels.
    shape = (1, -1, 1, 1)
    return x.sub_(torch.tensor(mean).view(shape)).div_(torch.tensor(std).view(shape))


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
    _check_labels(raw, raw.train.targets, "training")
    _check_labels(raw, val_split.targets, "validation")
    y_train, y_val = raw.train.targets[train_idx], val_split.targets[val_idx]

    c, (h, w) = raw.in_channels, raw.image_size
    nbytes = (len(train_idx) + len(val_idx)) * c * h * w * 4
    if _on_device(cfg.on_device, nbytes, device):
        x_train = raw.train.to_tensor(train_idx)
        mean, std = tensor_stats(x_train)
        info = DataInfo(cfg.name, raw.num_classes, c, (h, w), len(train_idx), len(val_idx), mean, std)
        x_val = _normalise(val_split.to_tensor(val_idx), mean, std)
        x_train = _normalise(x_train, mean, std)
        train = DeviceTrainSource(info, x_train.to(device), y_train.to(device), cfg.crop_padding, cfg.flip)
        return train, DeviceValSource(info, x_val.to(device), y_val.to(device))

    mean, std = split_stats(raw.train, train_idx, cfg.split_seed)
    info = DataInfo(cfg.name, raw.num_classes, c, (h, w), len(train_idx), len(val_idx), mean, std)
    train = LoaderTrainSource(
        info, raw.train.dataset, train_idx, device, cfg.crop_padding, cfg.flip, cfg.num_workers
    )
    return train, LoaderValSource(info, val_split.dataset, val_idx, device, cfg.num_workers)
