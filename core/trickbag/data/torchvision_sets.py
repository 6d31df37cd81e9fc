"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 in their official on-disk formats, read by torchvision."""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor
from torchvision import datasets

from ..config import DataConfig
from ..errors import UserError
from .base import RawData, Split


class _AcceptExisting:
    """torchvision checks CIFAR files against the official md5 sums, which rejects re-packed copies and the
    small files the tests write. Accept any file that exists (torchvision's reading code still parses it);
    a download (data.download = true) still verifies the archive's checksum."""

    base_folder: str
    train_list: list[list[Any]]
    test_list: list[list[Any]]

    def _check_integrity(self) -> bool:
        folder = os.path.join(self.root, self.base_folder)  # type: ignore[attr-defined]
        return all(os.path.isfile(os.path.join(folder, f)) for f, _ in self.train_list + self.test_list)


class CIFAR10(_AcceptExisting, datasets.CIFAR10):
    meta = {**datasets.CIFAR10.meta, "md5": None}  # md5 None: torchvision's check_integrity tests existence only


class CIFAR100(_AcceptExisting, datasets.CIFAR100):
    meta = {**datasets.CIFAR100.meta, "md5": None}


# name -> (class, label for messages, classes, files torchvision expects under root, for the message)
SETS: dict[str, tuple[type, str, int, str]] = {
    # MNIST's own check is existence only, and its folder is named after the class: use it unchanged.
    "mnist": (datasets.MNIST, "MNIST", 10, "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "fashion_mnist": (
        datasets.FashionMNIST, "Fashion-MNIST", 10, "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"
    ),
    "cifar10": (CIFAR10, "CIFAR-10", 10, "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}"),
    "cifar100": (CIFAR100, "CIFAR-100", 100, "cifar-100-python/{train,test,meta}"),
}


def _one_line(exc: BaseException) -> str:
    # torchvision's download errors span lines (one per mirror); a UserError must be a single line.
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return (text[:300] + "...") if len(text) > 300 else text or type(exc).__name__


def _open(name: str, root: str, train: bool, download: bool) -> Any:
    cls, label, _, expected = SETS[name]
    try:
        return cls(root, train=train, download=False)
    except RuntimeError as exc:
        if "not found" not in str(exc):
            raise UserError(f"cannot read the {label} files under '{root}': {_one_line(exc)}") from exc
        if not download:
            raise UserError(
                f"no {label} files under '{root}' (expected {expected}; set data.download = true to fetch them)"
            ) from None
    except Exception as exc:  # a truncated or foreign file: torchvision's parsers raise all sorts
        raise UserError(f"cannot read the {label} files under '{root}': {_one_line(exc)}") from exc
    try:
        return cls(root, train=train, download=True)
    except Exception as exc:
        raise UserError(f"downloading {label} into '{root}' failed: {_one_line(exc)}") from exc


def _split(ds: Any) -> Split:
    if isinstance(ds.data, Tensor):  # MNIST family: uint8 N×H×W tensor
        data = ds.data.unsqueeze(1)
        targets = ds.targets.to(torch.int64)
    else:  # CIFAR: uint8 N×H×W×C numpy array
        data = torch.from_numpy(ds.data).permute(0, 3, 1, 2)
        targets = torch.as_tensor(ds.targets, dtype=torch.int64)

    def to_levels(idx: Tensor) -> Tensor:
        return data.index_select(0, idx).contiguous()

    return Split(ds, targets, to_levels)


def load(cfg: DataConfig) -> RawData:
    if cfg.root is None:
        raise UserError(f"data.root is not set: {cfg.name} is read from files in that folder")
    if os.path.exists(cfg.root) and not os.path.isdir(cfg.root):
        raise UserError(f"data.root '{cfg.root}' is a file, not a folder")
    if not cfg.download and not os.path.isdir(cfg.root):
        label, expected = SETS[cfg.name][1], SETS[cfg.name][3].split("/")[0]
        raise UserError(f"data.root '{cfg.root}' does not exist: set data.download = true to fetch {label} into it, "
                        f"or data.root to the folder that holds {expected}/")
    train = _split(_open(cfg.name, cfg.root, True, cfg.download))
    test = _split(_open(cfg.name, cfg.root, False, cfg.download)) if cfg.val == "test" else None
    channels, h, w = train.to_levels(torch.empty(0, dtype=torch.int64)).shape[1:]
    return RawData(cfg.name, SETS[cfg.name][2], channels, (h, w), train=train, test=test)
