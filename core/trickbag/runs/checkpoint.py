"""Checkpoints: written atomically (temp file, fsync, rename) and read with ``weights_only=True``.

A crash while writing leaves the previous checkpoint intact; a checkpoint never executes code
when loaded.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from trickbag.errors import PluginError, UserError

CHECKPOINT = "checkpoint.pt"


def save_atomic(obj: Any, path: Path) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint '{path}' not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        # torch's message is a paragraph about weights_only; the type is enough to say what failed
        raise UserError(f"checkpoint '{path}' is unreadable or not a trickbag checkpoint ({type(exc).__name__})") from None
    if not isinstance(obj, dict) or "model" not in obj or "epoch" not in obj:
        raise UserError(f"checkpoint '{path}' is not a trickbag checkpoint (no model/epoch entries)")
    return obj


# What torch.load(weights_only=True) reads back: tensors, plain values and containers of them.
_PLAIN = (torch.Tensor, int, float, bool, str, bytes, type(None), torch.dtype, torch.device, torch.Size)


def checked_state(trick: str, state: Any) -> Any:
    """A trick's ``state_dict()``, refused at save time (naming the trick and where) if it holds
    something a ``weights_only`` load would refuse: otherwise the checkpoint is written fine and
    only the next ``--resume`` finds out, with the trick unnamed."""

    def walk(value: Any, where: str) -> None:
        if isinstance(value, _PLAIN):
            return
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, (str, int)):
                    raise PluginError(f"trick '{trick}': state_dict() has a {type(key).__name__} key at {where or 'the top'}; use str or int keys")
                walk(item, f"{where}[{key!r}]")
            return
        if isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")
            return
        raise PluginError(
            f"trick '{trick}': state_dict() holds a {type(value).__name__} at {where or 'the top'}; checkpoints are read with "
            "weights_only=True, which refuses it (store tensors and plain values: str(path), float(x))"
        )

    walk(state, "")
    return state
