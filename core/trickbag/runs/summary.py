"""What a run folder holds, read without loading a model: its recipe, its epochs done of the
total, its best and final metrics, and whether it finished, was interrupted or diverged (for
``trickbag compare`` and any listing of runs)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trickbag.errors import UserError
from trickbag.runs.folder import METRICS, RECIPE, read_metrics


@dataclass(frozen=True)
class RunSummary:
    folder: Path
    recipe: object  # trickbag.recipe.Recipe, as the folder's recipe.toml says
    rows: list[dict]  # metrics.jsonl
    status: str  # "finished" | "interrupted" | "diverged" | "not started"

    @property
    def epochs_done(self) -> float:
        return float(self.rows[-1]["progress"]) if self.rows else 0.0

    @property
    def epochs(self) -> float:
        return float(self.recipe.training.epochs)  # type: ignore[attr-defined]

    @property
    def good(self) -> list[dict]:
        """The rows of epochs that did not diverge."""
        return [r for r in self.rows if not r.get("diverged")]

    @property
    def seconds(self) -> float:
        return sum(r.get("seconds", 0.0) for r in self.rows)


def read_run(folder: str | Path) -> RunSummary:
    """The folder's summary; a folder that is not a run folder: one-line UserError."""
    from trickbag.recipe import load_recipe

    folder = Path(folder)
    if not (folder / RECIPE).is_file() or not (folder / METRICS).exists():
        raise UserError(f"'{folder}' is not a run folder (no {RECIPE} and {METRICS}; trickbag run --out makes one)")
    recipe = load_recipe(folder / RECIPE)
    rows = read_metrics(folder)
    if not rows:
        status = "not started"
    elif rows[-1].get("diverged"):
        status = "diverged"
    elif rows[-1]["progress"] >= recipe.training.epochs - 1e-9:
        status = "finished"
    else:
        status = "interrupted"
    return RunSummary(folder, recipe, rows, status)


def find_runs(root: Path, max_depth: int = 4) -> list[Path]:
    """Run folders (they hold ``run.json``) under ``root``, down to ``max_depth`` levels (an
    ablation's runs are three down: ``root/<ablation>/<variant>/seed-<k>``)."""
    import os

    from trickbag.runs.folder import MARKER

    found = []
    base = len(root.parts)
    for here, dirs, files in os.walk(root):
        path = Path(here)
        if MARKER in files:
            found.append(path)
            dirs[:] = []  # a run folder holds no runs (its tensorboard/ and such are its own)
        elif len(path.parts) - base >= max_depth:
            dirs[:] = []
    return found


def is_running(folder: Path) -> bool:
    """Another process holds the run folder's lock (a run or resume in progress)."""
    from filelock import FileLock, Timeout

    from trickbag.runs.folder import LOCK

    if not (folder / LOCK).exists():
        return False
    lock = FileLock(folder / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    except OSError:  # a read-only copy: nobody can be training there
        return False
    lock.release()
    return False


def recipe_name(folder: Path) -> str | None:
    import json

    from trickbag.runs.folder import MARKER

    try:
        name = json.loads((folder / MARKER).read_text(encoding="utf-8")).get("recipe")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None
