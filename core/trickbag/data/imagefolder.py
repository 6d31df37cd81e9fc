"""``imagefolder``: torchvision's ImageFolder (one sub-folder per class) at data.root.

With ``train/`` and ``val/`` sub-folders, ``val = "test"`` validates on ``val/``; otherwise the
validation set is a holdout of the (only) training tree.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import torch
from PIL import Image
from torch import Tensor
from torchvision import datasets, transforms
from torchvision.transforms.functional import pil_to_tensor

from ..config import DataConfig
from ..errors import UserError
from .base import RawData, Split


def _folder(path: str) -> datasets.ImageFolder:
    try:
        return datasets.ImageFolder(path)
    except (FileNotFoundError, OSError) as exc:  # no class folders, or class folders without images
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"data.root '{path}' is not an image folder tree: {first}") from None


def _first_size(ds: datasets.ImageFolder) -> tuple[int, int]:
    path = ds.samples[0][0]
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except OSError as exc:
        raise UserError(f"cannot read image '{path}': {exc}") from None


def _split(ds: datasets.ImageFolder, size: tuple[int, int], num_workers: int) -> Split:
    # Every image is resized to one size (data.image_size, else the first image's), so mixed sizes
    # batch cleanly; resizing an image that already has that size costs only a copy.
    ds.transform = transforms.Resize(size)

    def decode(i: int) -> Tensor:
        try:
            return pil_to_tensor(ds[i][0])
        except OSError as exc:
            raise UserError(f"cannot read image '{ds.samples[i][0]}': {exc}") from None

    def to_levels(idx: Tensor) -> Tensor:
        # Threads, not DataLoader workers: PIL decodes without the GIL, and a bad file raises a
        # one-line UserError here instead of a worker's re-wrapped traceback.
        items = idx.tolist()
        if num_workers > 0:
            with ThreadPoolExecutor(num_workers) as pool:
                images = list(pool.map(decode, items))
        else:
            images = [decode(i) for i in items]
        out = torch.empty(len(items), 3, *size, dtype=torch.uint8)
        for k, img in enumerate(images):
            out[k] = img
        return out

    return Split(ds, torch.as_tensor(ds.targets, dtype=torch.int64), to_levels, in_memory=False)


def load(cfg: DataConfig, num_workers: int) -> RawData:
    if cfg.root is None:
        raise UserError("data.root is not set: imagefolder reads its class sub-folders from there")
    if os.path.exists(cfg.root) and not os.path.isdir(cfg.root):
        raise UserError(f"data.root '{cfg.root}' is a file, not a folder")
    if not os.path.isdir(cfg.root):
        raise UserError(f"data.root '{cfg.root}' does not exist")
    train_dir, val_dir = os.path.join(cfg.root, "train"), os.path.join(cfg.root, "val")
    has_split = os.path.isdir(train_dir) and os.path.isdir(val_dir)
    if cfg.val == "test" and not has_split:
        raise UserError(f"data.val = 'test' needs train/ and val/ sub-folders in data.root '{cfg.root}'")
    train = _folder(train_dir if has_split else cfg.root)
    size = (cfg.image_size, cfg.image_size) if cfg.image_size else _first_size(train)
    test = None
    if cfg.val == "test":
        test = _folder(val_dir)
        if test.classes != train.classes:
            raise UserError(f"data.root '{cfg.root}': the class folders of val/ differ from those of train/")
        test = _split(test, size, num_workers)
    # The default loader converts every image to RGB, so grey-scale trees have 3 channels too.
    return RawData("imagefolder", len(train.classes), 3, size, _split(train, size, num_workers), test)
