"""CutMix (Yun, Han, Oh, Chun, Choe & Yoo, "CutMix: Regularization Strategy to Train Strong
Classifiers with Localizable Features", ICCV 2019): paste a box cut from a partner image into each
training image, and mix the labels in proportion to the areas,

    x~ = M * x_i + (1 - M) * x_j,    y~ = w y_i + (1 - w) y_j,    w = 1 - (box area) / (H W),

with one box per batch, the partners ``j`` a random permutation of the batch, and the box drawn as
torchvision's ``transforms.v2.CutMix`` draws it: ``lam ~ Beta(alpha, alpha)``, a centre uniform
over the pixels, half-sides ``int(0.5 sqrt(1 - lam) W)`` and ``int(0.5 sqrt(1 - lam) H)``, clipped
at the borders; ``w`` is computed after clipping (torchvision's ``lam_adjusted``), so it is the
true share of the image that stayed.

Targets are mixed as probabilities (``Batch.soft_targets()``), so CutMix composes with a trick
that left soft targets before it (mixup, when ``[tricks.mixup]`` comes first in the recipe), and
label smoothing, which acts in the loss, smooths the mixture afterwards.

Randomness as in the mixup plugin: the permutation from ``state.generator`` on the batch's device;
``lam``, the centre and the ``prob`` coin from a host numpy generator seeded by the generator's
seed (reseeded by the loop every epoch from (seed, epoch)), so the box is known on the host
without a device sync, runs replay exactly and a resumed run continues exactly.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field, StrictFloat
from trickbag import TrickOptions, TrickSpec, hookimpl

CUTMIX_SALT = 0x6375746D6978  # "cutmix"


class CutMixOptions(TrickOptions):
    alpha: StrictFloat = Field(1.0, gt=0, description="lam ~ Beta(alpha, alpha) sets the box: side sqrt(1 - lam) of the image's (the paper: 1.0)")
    prob: StrictFloat = Field(1.0, ge=0, le=1, description="probability that a batch is cut and mixed (the paper's code: 0.5 on CIFAR, 1.0 on ImageNet)")


def cutmix_box(lam: float, cy: int, cx: int, height: int, width: int) -> tuple[tuple[int, int, int, int], float]:
    """The box ``(y1, y2, x1, x2)`` (rows ``y1:y2``, columns ``x1:x2``) for ``lam`` and the centre
    ``(cy, cx)``, and the label weight of the original image, ``1 - area / (H W)``: torchvision's
    ``CutMix.make_params`` arithmetic, line for line."""
    r = 0.5 * math.sqrt(1.0 - lam)
    half_w, half_h = int(r * width), int(r * height)
    x1, y1 = max(cx - half_w, 0), max(cy - half_h, 0)
    x2, y2 = min(cx + half_w, width), min(cy + half_h, height)
    return (y1, y2, x1, x2), float(1.0 - (x2 - x1) * (y2 - y1) / (width * height))


class CutMix:
    def __init__(self, options: CutMixOptions) -> None:
        self.alpha, self.prob = options.alpha, options.prob
        self._rng: np.random.Generator | None = None
        self._seeded_from: int | None = None  # initial_seed() of the generator the host RNG was drawn from

    @hookimpl
    def trickbag_epoch_start(self, state):
        self._rng = None  # the loop has just reseeded state.generator: derive a fresh host stream from it

    def draw(self, generator: torch.Generator, height: int, width: int) -> tuple[float, int, int] | None:
        """``(lam, cy, cx)`` for the next batch, or ``None`` when the ``prob`` coin says skip it."""
        rng = self._host_rng(generator)
        if self.prob < 1.0 and rng.random() >= self.prob:
            return None
        lam = float(rng.beta(self.alpha, self.alpha))
        return lam, int(rng.integers(height)), int(rng.integers(width))

    @hookimpl
    def trickbag_transform_batch(self, batch, state):
        x = batch.inputs
        n, _, h, w = x.shape
        drawn = self.draw(state.generator, h, w)
        if drawn is None:
            return
        (y1, y2, x1, x2), weight = cutmix_box(*drawn, h, w)
        perm = torch.randperm(n, generator=state.generator, device=x.device)
        y = batch.soft_targets()
        mixed = x.clone()  # keeps x's memory format (channels_last)
        if y2 > y1 and x2 > x1:
            mixed[:, :, y1:y2, x1:x2] = x[:, :, y1:y2, x1:x2].index_select(0, perm)
        batch.inputs = mixed
        batch.targets = y.mul(weight).add_(y.index_select(0, perm), alpha=1.0 - weight)

    def _host_rng(self, generator: torch.Generator) -> np.random.Generator:
        # host-side (Python ints for the slice, a float for the weight: no device sync), seeded by
        # the generator's seed so it follows every reseed; the salt keeps it apart from mixup's
        seed = generator.initial_seed()
        if self._rng is None or seed != self._seeded_from:
            self._rng = np.random.default_rng([seed, CUTMIX_SALT])
            self._seeded_from = seed
        return self._rng


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("cutmix", CutMixOptions, CutMix, "paste a box from another image of the batch; labels mixed by area")
