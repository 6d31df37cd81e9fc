"""Validation: plain cross-entropy and top-1 accuracy, summed on the device, one sync at the end."""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


@torch.no_grad()
def evaluate(model, val, batch_size: int, autocast_dtype: torch.dtype | None, device: torch.device) -> dict[str, float]:
    """Validation loss is always plain cross-entropy against hard labels, whatever the training
    loss was (label smoothing would otherwise inflate it and make runs incomparable)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    with ctx:
        for inputs, targets in val.batches(batch_size):
            outputs = model(inputs).float()
            loss_sum += F.cross_entropy(outputs, targets, reduction="sum")
            correct += (outputs.argmax(dim=1) == targets).sum()
            count += targets.numel()
    model.train(was_training)
    return {"val_loss": loss_sum.item() / max(count, 1), "val_acc": correct.item() / max(count, 1)}
