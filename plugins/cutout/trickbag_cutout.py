"""Cutout (DeVries & Taylor, "Improved Regularization of Convolutional Neural Networks with
Cutout", 2017): during training, zero a ``size`` × ``size`` square of every image, its centre drawn
uniformly over the image, the square clipped where it crosses the border.

``size`` is in pixels, the paper's unit (16 on CIFAR-10, 8 on CIFAR-100, 20 on SVHN). The square
covers rows ``cy - size // 2 .. cy - size // 2 + size - 1`` (and the same for columns), so it is
exactly ``size`` pixels wide before clipping; for an even ``size`` this is the paper's code
(``y1 = clip(cy - size // 2)``, ``y2 = clip(cy + size // 2)``), for an odd one the paper's code
would cut ``size - 1`` pixels. Batches arrive normalised, so a zero is the data set's mean pixel,
as in the paper (Cutout after ``Normalize``). The mask is built on the device, one square per image,
with the centres (and the ``prob`` coins) drawn from ``state.generator``: runs repeat and resume
exactly, with no device sync. Only training batches pass through ``trickbag_transform_batch``:
evaluation sees whole images.
"""
from __future__ import annotations

import torch
from pydantic import Field, StrictFloat, StrictInt
from trickbag import TrickOptions, TrickSpec, UserError, hookimpl


class CutoutOptions(TrickOptions):
    size: StrictInt = Field(16, ge=1, description="side of the zeroed square in pixels (the paper: 16 on CIFAR-10, 8 on CIFAR-100, 20 on SVHN); at most the image's side")
    prob: StrictFloat = Field(1.0, ge=0, le=1, description="probability that an image gets a square (the paper: 1)")


def cutout_mask(cy: torch.Tensor, cx: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """N x H x W bool, True inside each image's square: rows ``[cy - size // 2, cy - size // 2 + size)``
    and the same for columns, clipped to the image (rows and columns outside it do not exist)."""
    top, left = cy - size // 2, cx - size // 2
    rows = torch.arange(height, device=cy.device)
    cols = torch.arange(width, device=cx.device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size)
    return in_rows[:, :, None] & in_cols[:, None, :]


class Cutout:
    def __init__(self, options: CutoutOptions) -> None:
        self.size, self.prob = options.size, options.prob

    @hookimpl
    def trickbag_check(self, context):
        h, w = context.info.image_size
        if self.size > min(h, w):
            raise UserError(f"tricks.cutout.size {self.size} is larger than the {h}x{w} images of {context.info.name} "
                            f"(at most {min(h, w)} pixels)")

    @hookimpl
    def trickbag_transform_batch(self, batch, state):
        x = batch.inputs
        n, _, h, w = x.shape
        generator = state.generator
        cy = torch.randint(h, (n,), generator=generator, device=x.device)
        cx = torch.randint(w, (n,), generator=generator, device=x.device)
        mask = cutout_mask(cy, cx, self.size, h, w)
        if self.prob < 1.0:
            chosen = torch.rand(n, generator=generator, device=x.device) < self.prob
            mask &= chosen[:, None, None]
        # one square per image, the same in every channel; clone keeps x's memory format (channels_last)
        batch.inputs = x.clone().masked_fill_(mask.unsqueeze(1), 0.0)


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("cutout", CutoutOptions, Cutout, "zero a random square of every training image")
