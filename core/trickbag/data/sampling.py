"""Seeds and per-epoch random draws, shared by both back ends.

Everything random about an epoch (order, crop offsets, flips) is drawn here from one CPU
``torch.Generator`` seeded from (seed, epoch), so the same pair gives bit-identical batches after a
resume, the global RNG is never touched, and the device and DataLoader paths see the same samples.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from any values: hashing (not adding) keeps (seed, epoch) pairs apart, takes negatives."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def generator(*parts: object) -> torch.Generator:
    # A CPU generator even for CUDA training: CPU draws are identical on every machine, and the
    # few index tensors per epoch are moved to the device afterwards.
    return torch.Generator().manual_seed(derive_seed(*parts))


@dataclass
class EpochPlan:
    """The random choices of one epoch, one entry per position in the epoch's order."""

    perm: Tensor  # int64 positions into the training split
    dy: Tensor | None  # crop offsets in [0, 2 * padding] (None: no crop)
    dx: Tensor | None
    flip: Tensor | None  # bool (None: no flip)


def epoch_plan(n: int, seed: int, epoch: int, padding: int, flip: bool) -> EpochPlan:
    g = generator("train", seed, epoch)
    perm = torch.randperm(n, generator=g)
    dy = dx = flips = None
    if padding > 0:
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=g)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=g)
    if flip:
        flips = torch.randint(0, 2, (n,), generator=g).bool()
    return EpochPlan(perm, dy, dx, flips)
