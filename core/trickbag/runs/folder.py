"""The run folder: the resolved recipe, one metrics row per epoch, and the checkpoint."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from trickbag.errors import UserError

RECIPE = "recipe.toml"
METRICS = "metrics.jsonl"


def default_out_dir(recipe_name: str, root: Path = Path("runs")) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{recipe_name}-{stamp}"
    n = 1
    while path.exists():  # two runs started in the same second
        n += 1
        path = root / f"{recipe_name}-{stamp}-{n}"
    return path


def create(out_dir: Path, recipe_toml: str) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out '{out_dir}': cannot create the run folder ({exc.strerror})") from None
    if (out_dir / METRICS).exists() and (out_dir / METRICS).stat().st_size > 0:
        raise UserError(f"--out '{out_dir}' already holds a run (use --resume {out_dir} to continue it, or another --out)")
    (out_dir / RECIPE).write_text(recipe_toml, encoding="utf-8")
    (out_dir / METRICS).write_text("", encoding="utf-8")


def append_metrics(out_dir: Path, row: dict[str, Any]) -> None:
    with open(out_dir / METRICS, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def read_metrics(out_dir: Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_metrics(out_dir: Path, epochs_done: int) -> list[dict[str, Any]]:
    """On resume, forget rows of epochs the checkpoint does not cover (a kill between the two writes)."""
    rows = [r for r in read_metrics(out_dir) if r["epoch"] <= epochs_done]
    (out_dir / METRICS).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows
