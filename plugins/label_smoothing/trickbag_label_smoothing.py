"""Label smoothing (Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
CVPR 2016): train against q' = (1 - epsilon) q + epsilon / K instead of the targets q.

The loss is ``torch.nn.functional.cross_entropy(..., label_smoothing=epsilon)``, torch's own
implementation, which smooths hard targets (class indices) and soft targets (probabilities, as
mixup or cutmix leave them) the same way. Smoothing lives in the loss, not in the batch, so it is
applied exactly once, after every batch transform: mixup's mixed targets are smoothed, never mixed
after smoothing. The cross-entropy with q' is (1 - epsilon) H(q, p) + epsilon H(u, p): the second
term keeps the logits finite (the toy model of the talk has a finite optimum with it and none
without).
"""
from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field, StrictFloat
from trickbag import TrickOptions, TrickSpec, hookimpl


class LabelSmoothingOptions(TrickOptions):
    epsilon: StrictFloat = Field(0.1, ge=0, lt=1, description="smoothing: targets become (1 - epsilon) q + epsilon / num_classes")


class LabelSmoothing:
    def __init__(self, options: LabelSmoothingOptions) -> None:
        self.epsilon = options.epsilon

    @hookimpl
    def trickbag_loss(self, outputs, batch, model, state):
        # hard targets (int64, N) or probabilities (float, N x K): torch smooths both as q' above
        return F.cross_entropy(outputs, batch.targets, label_smoothing=self.epsilon)


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("label_smoothing", LabelSmoothingOptions, LabelSmoothing, "cross-entropy against smoothed targets (1-eps) q + eps/K")
