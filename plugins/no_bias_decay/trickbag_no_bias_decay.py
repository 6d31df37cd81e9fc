"""No bias decay (Jia et al., "Highly Scalable Deep Learning Training System with Mixed-Precision:
Training ImageNet in Four Minutes", 2018; one of the "Bag of Tricks for Image Classification with
Convolutional Neural Networks", He et al., CVPR 2019): apply weight decay to the weights of
convolutions and linear layers only, not to biases nor to the affine weights (gamma) and shifts
(beta) of normalisation layers.

Implemented in ``trickbag_param_groups``: every existing group is split into a decay group (same
settings) and a no-decay group (same settings, ``weight_decay = 0``), so the trick composes with
tricks that split or annotate groups before it (``lr_scale`` and any other key is kept). Which
parameters are exempt is decided by the module that owns them, not by parameter names:

* every parameter of a normalisation layer (BatchNorm*, SyncBatchNorm, InstanceNorm*, LayerNorm,
  GroupNorm, RMSNorm, and subclasses);
* the bias of any module (its parameter registered as ``bias``, or ``bias_*`` / ``*_bias`` as
  ``nn.RNN`` and ``nn.MultiheadAttention`` name theirs);
* with ``exclude_embeddings``, the weights of ``nn.Embedding`` / ``nn.EmbeddingBag``.

A parameter shared by several modules (tied weights) is exempt when any owner exempts it.
"""
from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, StrictBool
from torch import nn
from trickbag import TrickOptions, TrickSpec, hookimpl

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm1d/2d/3d, SyncBatchNorm, InstanceNorm1d/2d/3d, lazy variants
    nn.LayerNorm,
    nn.GroupNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)


class NoBiasDecayOptions(TrickOptions):
    exclude_embeddings: StrictBool = Field(False, description="also exempt nn.Embedding weights from weight decay")


class NoBiasDecay:
    def __init__(self, options: NoBiasDecayOptions) -> None:
        self.options = options

    @hookimpl
    def trickbag_param_groups(self, model, groups, config):
        exempt = no_decay_parameters(model, self.options.exclude_embeddings)
        groups[:] = split_groups(groups, exempt)


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("no_bias_decay", NoBiasDecayOptions, NoBiasDecay, "no weight decay on biases and normalisation weights")


def is_bias(name: str) -> bool:
    return name == "bias" or name.startswith("bias_") or name.endswith("_bias")


def no_decay_parameters(model: nn.Module, exclude_embeddings: bool = False) -> set[int]:
    """``id()`` of every parameter exempt from weight decay, decided by the owning module's type."""
    exempt: set[int] = set()
    for module in model.modules():
        whole = isinstance(module, NORM_TYPES) or (exclude_embeddings and isinstance(module, EMBEDDING_TYPES))
        for name, param in module.named_parameters(recurse=False):
            if whole or is_bias(name):
                exempt.add(id(param))
    return exempt


def split_groups(groups: list[dict[str, Any]], exempt: set[int]) -> list[dict[str, Any]]:
    """Each group becomes (decay part, no-decay part with ``weight_decay = 0``); empty parts are dropped."""
    out = []
    for group in groups:
        params = group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        name = group.get("name", "group")
        decay = [p for p in params if id(p) not in exempt]
        no_decay = [p for p in params if id(p) in exempt]
        if decay:
            out.append({**group, "params": decay})
        if no_decay:
            out.append({**group, "params": no_decay, "weight_decay": 0.0, "name": f"{name}.no_decay"})
    return out
