"""What load_data does before choosing a back end: the holdout split and the normalisation statistics."""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import UserError
from .base import Split
from .sampling import generator

# Image files are decoded to measure mean/std; beyond this many a random sample is accurate enough.
STATS_SAMPLE = 10_000
STATS_CHUNK = 2_048


def holdout(n: int, val_size: int, split_seed: int, name: str) -> tuple[Tensor, Tensor]:
    """(train indices, val indices), each sorted, from a permutation seeded by split_seed alone."""
    if val_size >= n:
        raise UserError(
            f"data.val_size {val_size} leaves no training samples ({name} has {n} in its training split)"
        )
    perm = torch.randperm(n, generator=generator("holdout", split_seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel sum and sum of squares of N×C×H×W in float64 (float32 sums drift on large sets)."""
    x = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    return x.sum(1), (x * x).sum(1)


def finish(total: Tensor, total_sq: Tensor, count: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    # A constant channel would divide by zero; leave it unscaled.
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return tuple(mean.tolist()), tuple(std.tolist())


def split_stats(split: Split, indices: Tensor, seed: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std of the training split streamed in chunks, so a set too big for memory can be measured."""
    if not split.in_memory and len(indices) > STATS_SAMPLE:
        indices = indices[torch.randperm(len(indices), generator=generator("stats", seed))[:STATS_SAMPLE]]
    total = total_sq = None
    count = 0
    for chunk in indices.split(STATS_CHUNK):
        x = split.to_tensor(chunk)
        s, sq = moments(x)
        total, total_sq = (s, sq) if total is None else (total + s, total_sq + sq)
        count += x.numel() // x.shape[1]
    return finish(total, total_sq, count)
