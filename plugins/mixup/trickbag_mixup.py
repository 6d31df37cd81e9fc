"""mixup (Zhang, Cisse, Dauphin & Lopez-Paz, "mixup: Beyond Empirical Risk Minimization", ICLR 2018):
train on convex combinations of pairs of examples and of their labels,

    x~ = lam x_i + (1 - lam) x_j,    y~ = lam y_i + (1 - lam) y_j,    lam ~ Beta(alpha, alpha),

with one ``lam`` per batch and the partner ``j`` given by a random permutation of the batch (the
paper's "one epoch of mixup" code). Targets are mixed as probabilities (``Batch.soft_targets()``:
one-hot when they were class indices), so mixup composes with a trick that left soft targets
before it, and label smoothing, which acts in the loss, smooths the mixture afterwards.

Randomness is reproducible from ``state.generator`` without a device sync per step: the
permutation is drawn from ``state.generator`` on the batch's device, and ``lam`` (and the
``prob`` coin) from a host-side numpy generator seeded by one draw from ``state.generator``
whenever the loop reseeds it (every epoch, from (seed, epoch)), so a run replays exactly and a
resumed run continues exactly. numpy's ``Generator.beta`` is an exact Beta sampler.
"""
from __future__ import annotations

import numpy as np
import torch
from pydantic import Field, StrictFloat
from trickbag import TrickOptions, TrickSpec, hookimpl

MIXUP_SALT = 0x6D69787570  # "mixup"


class MixupOptions(TrickOptions):
    alpha: StrictFloat = Field(0.2, gt=0, description="lam ~ Beta(alpha, alpha); small alpha keeps lam near 0 or 1 (the paper: 0.1-0.4 on ImageNet)")
    prob: StrictFloat = Field(1.0, ge=0, le=1, description="probability that a batch is mixed")


class Mixup:
    def __init__(self, options: MixupOptions) -> None:
        self.alpha, self.prob = options.alpha, options.prob
        self._rng: np.random.Generator | None = None
        self._seeded_from: int | None = None  # initial_seed() of the generator the host RNG was drawn from

    @hookimpl
    def trickbag_epoch_start(self, state):
        self._rng = None  # the loop has just reseeded state.generator: draw a fresh host seed from it

    @hookimpl
    def trickbag_transform_batch(self, batch, state):
        generator = state.generator
        rng = self._host_rng(generator)
        if self.prob < 1.0 and rng.random() >= self.prob:
            return
        lam = float(rng.beta(self.alpha, self.alpha))
        x = batch.inputs
        if not x.is_floating_point():
            raise TypeError(f"mixup needs floating-point inputs, got {x.dtype}")
        perm = torch.randperm(x.shape[0], generator=generator, device=x.device)
        y = batch.soft_targets()
        # index_select, not x[perm]: same result without advanced indexing's overhead
        batch.inputs = x.mul(lam).add_(x.index_select(0, perm), alpha=1.0 - lam)
        batch.targets = y.mul(lam).add_(y.index_select(0, perm), alpha=1.0 - lam)

    def _host_rng(self, generator: torch.Generator) -> np.random.Generator:
        # lam is drawn on the host (a Python float for mul/add, no device sync), from a numpy stream
        # seeded by the generator's seed: host-side, so even on a GPU nothing waits for the device,
        # and it changes whenever the loop reseeds (every epoch: exact resume). The salt keeps this
        # stream apart from any other trick that seeds from the same number.
        seed = generator.initial_seed()
        if self._rng is None or seed != self._seeded_from:
            self._rng = np.random.default_rng([seed, MIXUP_SALT])
            self._seeded_from = seed
        return self._rng


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("mixup", MixupOptions, Mixup, "train on convex combinations of example pairs and their labels")
