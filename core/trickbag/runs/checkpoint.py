"""Checkpoints: written atomically, checksummed, read with ``weights_only=True`` and validated.

Writing: temp file in the same folder, fsync, then its SHA-256 goes into ``<name>.sha256`` (which
keeps the previous digest too), then ``os.replace``. A kill at any point leaves a checkpoint whose
digest is recorded, the old one or the new one. Reading: the digest must match (a flipped byte is
refused, not loaded into a resumed run), the file must be a torch checkpoint that a
``weights_only`` load accepts (it never executes code), and every entry must have its type; each
failure is one line naming the file and the entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from trickbag.errors import PluginError, UserError

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
DIGEST_SUFFIX = ".sha256"


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_atomic(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` so that a kill, a full disk or an error never leaves a half file
    there, and record its digest first (the previous digest stays valid until the replace)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        digests = {"sha256": _digest(Path(tmp))}
        old = _recorded(path)
        if old:
            digests["previous"] = old[0]
        _write_text_atomic(_digest_path(path), json.dumps(digests))
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def _recorded(path: Path) -> list[str]:
    """The digests a checkpoint may have: the last written, and the one before it."""
    try:
        saved = json.loads(_digest_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [d for d in (saved.get("sha256"), saved.get("previous")) if isinstance(d, str)] if isinstance(saved, dict) else []


def remove_orphans(folder: Path) -> list[Path]:
    """Temp files of writes a kill interrupted (``checkpoint.pt.x1y2.tmp``): never read, removed."""
    removed = []
    for tmp in Path(folder).glob("*.tmp"):
        if tmp.name.split(".")[0] in ("checkpoint", "best", "metrics", "recipe", "run"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


# what the loop writes, with the type each entry must have (the schema a resume relies on)
SCHEMA: dict[str, tuple[type, ...]] = {
    "epoch": (int,), "global_step": (int,), "samples_seen": (int,), "best_val_acc": (float, int), "elapsed": (float, int),
    "model": (dict,), "optimizer": (dict,), "tricks": (dict,), "recipe": (dict,),
}
OPTIONAL = {"history": (list,), "info": (dict,), "scaler": (dict, type(None)),  # absent in version 0.1 checkpoints
            "eval_model": (dict,)}  # only when a trick's trickbag_eval_model answered (EMA, SWA): the weights validation scored


def load_checkpoint(path: Path, schema: dict[str, tuple[type, ...]] | None = None) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint '{path}' not found")
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' is not a file")
    recorded = _recorded(path)
    if recorded and _digest(path) not in recorded:
        raise UserError(f"checkpoint '{path}' is corrupt: its SHA-256 is not the one recorded when it was written")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
        # torch's message is a paragraph about weights_only; the type is enough to say what failed
        raise UserError(f"checkpoint '{path}' is unreadable or not a trickbag checkpoint ({type(exc).__name__})") from None
    if not isinstance(obj, dict) or "model" not in obj or "epoch" not in obj:
        raise UserError(f"checkpoint '{path}' is not a trickbag checkpoint (no model/epoch entries)")
    required = schema or SCHEMA
    for key, types in {**required, **OPTIONAL}.items():
        if key not in obj:
            if key in required:
                raise UserError(f"checkpoint '{path}' has no '{key}' entry")
            continue
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise UserError(f"checkpoint '{path}': '{key}' is a {type(value).__name__}, not a {types[0].__name__}")
    for key in ("epoch", "global_step", "samples_seen"):
        if key in obj and obj[key] < 0:
            raise UserError(f"checkpoint '{path}': '{key}' is {obj[key]}, below 0")
    for key in ("model", "eval_model"):
        if key in obj and not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj[key].items()):
            raise UserError(f"checkpoint '{path}': '{key}' is not a state_dict (names to tensors)")
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
