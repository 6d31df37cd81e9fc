"""Validation: plain cross-entropy and top-1 accuracy, summed on the device, one sync at the end; and
the model it scores, which a trick may replace by a weight average (``trickbag_eval_model``)."""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from trickbag.errors import PluginError


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


def model_to_evaluate(ask, model: torch.nn.Module, state) -> torch.nn.Module | None:
    """What ``trickbag_eval_model`` answers (a trick's weight average), or ``None`` for the training
    model; ``ask`` is the hook caller, ``None`` when no trick implements it. The answer is checked
    to be a module with the model's ``state_dict`` keys: ``best.pt`` and ``checkpoint.pt`` store its
    weights as the model's, so another architecture would be a checkpoint nothing can load."""
    if ask is None:
        return None
    answer = ask(model=model, state=state)
    if answer is None:
        return None
    who = " and ".join(f"'{i.plugin_name}'" for i in ask.get_hookimpls()) or "a plugin"
    if not isinstance(answer, torch.nn.Module):
        raise PluginError(f"{who}: trickbag_eval_model returned a {type(answer).__name__}, not a torch module (or None)")
    mine, theirs = model.state_dict().keys(), answer.state_dict().keys()
    if mine != theirs:
        odd = sorted(set(theirs) ^ set(mine))
        raise PluginError(f"{who}: trickbag_eval_model returned a module whose state_dict does not match the model's "
                          f"(first differing key: {odd[0] if odd else 'the order'}); return a copy of the model, not a wrapper")
    return answer
