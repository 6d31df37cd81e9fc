"""The run folder: the resolved recipe, one metrics row per epoch, the checkpoints, and a lock.

What holds for a run folder (the README's reliability paragraph says the same):

* ``run.json`` marks a folder trickbag made; ``--out`` refuses a folder that holds anything else
  (a user's own files are never replaced) or that already holds a run (use ``--resume``);
* ``run.lock`` is held (``filelock``, an OS lock released even by ``kill -9``) while a process
  trains into the folder: a second process is refused, never interleaved;
* every file is written atomically (temp file, fsync, rename): a kill leaves the old version or
  the new one, never a torn or empty file;
* the checkpoint is the source of truth: it carries the metrics history, and ``metrics.jsonl`` is
  rewritten from it on resume (a row lost or torn by a kill comes back).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from trickbag import __version__
from trickbag.errors import UserError
from trickbag.runs.checkpoint import BEST, CHECKPOINT, DIGEST_SUFFIX, remove_orphans

RECIPE = "recipe.toml"
METRICS = "metrics.jsonl"
MARKER = "run.json"
LOCK = "run.lock"
OWN = {RECIPE, METRICS, MARKER, LOCK, CHECKPOINT, BEST, CHECKPOINT + DIGEST_SUFFIX, BEST + DIGEST_SUFFIX}


def default_out_dir(recipe_name: str, root: Path = Path("runs")) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{recipe_name}-{stamp}"
    n = 1
    while path.exists():  # two runs started in the same second
        n += 1
        path = root / f"{recipe_name}-{stamp}-{n}"
    return path


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: a kill leaves the old file or the new one."""
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


def _oserror(path: Path, what: str, exc: OSError) -> UserError:
    return UserError(f"run folder '{path}': cannot {what} ({exc.strerror or type(exc).__name__})")


class RunFolder:
    """One run folder, locked by this process from :meth:`create` or :meth:`reopen` to :meth:`close`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock: FileLock | None = None

    # -- opening -----------------------------------------------------------------------------

    def create(self, recipe_toml: str, recipe_name: str | None = None) -> None:
        """A new run: the folder must be new or empty. ``recipe_name`` goes into run.json (for
        ``trickbag runs``)."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise UserError(f"--out '{path}' is a file, not a folder")
        if path.is_dir():
            try:
                entries = sorted(p.name for p in path.iterdir())
            except OSError as exc:
                raise _oserror(path, "read it", exc) from None
            if MARKER in entries or CHECKPOINT in entries or (RECIPE in entries and METRICS in entries):
                raise UserError(f"--out '{path}' already holds a run (continue it with  trickbag run --resume {path}, or choose another --out)")
            if entries:
                shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
                raise UserError(f"--out '{path}' holds files that are not a trickbag run ({shown}): choose a new or empty folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _oserror(path, "create it", exc) from None
        self._acquire()
        try:
            write_atomic(path / MARKER, json.dumps({"trickbag": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                    "recipe": recipe_name}))
            write_atomic(path / RECIPE, recipe_toml)
            write_atomic(path / METRICS, "")
        except OSError as exc:
            self.close()
            raise _oserror(path, "write there", exc) from None

    def reopen(self) -> None:
        """An existing run, to resume: locked, and the temp files of interrupted writes removed."""
        if not (self.path / RECIPE).is_file():
            raise UserError(f"--resume '{self.path}' is not a run folder (no {RECIPE})")
        self._acquire()
        remove_orphans(self.path)

    def _acquire(self) -> None:
        lock = FileLock(self.path / LOCK, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise UserError(f"run folder '{self.path}' is in use by another trickbag process (it holds {LOCK})") from None
        except OSError as exc:
            raise _oserror(self.path, "lock it", exc) from None
        self._lock = lock

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- metrics -----------------------------------------------------------------------------

    def write_recipe(self, recipe_toml: str) -> None:
        if (self.path / RECIPE).read_text(encoding="utf-8") != recipe_toml:
            write_atomic(self.path / RECIPE, recipe_toml)

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """All rows, atomically (the whole file is a few kilobytes: rewriting beats a torn append)."""
        write_atomic(self.path / METRICS, "".join(json.dumps(r) + "\n" for r in rows))


def read_metrics(out_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl`` that parse (for readers such as the TUI and tests; a resume
    takes its rows from the checkpoint instead)."""
    path = Path(out_dir) / METRICS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows.append(row)
    return rows
