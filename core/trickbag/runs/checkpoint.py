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

from trickbag.errors import UserError

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
