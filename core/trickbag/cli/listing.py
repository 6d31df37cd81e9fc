"""``trickbag runs``: the run folders under a folder, newest first, so users find the one to
``--resume`` or to ``compare``."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from trickbag.cli.output import err, out, plain

STATUS_STYLE = {"finished": "green", "interrupted": "yellow", "diverged": "red", "running": "cyan", "not started": "dim"}


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"


def runs(
    folder: Annotated[Optional[Path], typer.Argument(help="Where to look (default: runs).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Show the newest N (0: all).")] = 30,
) -> None:
    """List run folders (recipe, tricks, epochs done/total, best val_acc, finished / interrupted /
    diverged / running), newest first."""
    from rich.table import Table
    from rich.text import Text

    from trickbag.errors import UserError
    from trickbag.runs.folder import METRICS
    from trickbag.runs.summary import find_runs, is_running, read_run, recipe_name

    root = folder or Path("runs")
    if not root.is_dir():
        raise UserError(f"'{root}' is not a folder (trickbag run writes its run folders under runs/ by default)")
    if limit < 0:
        raise UserError(f"--limit {limit}: 0 (all) or more")

    def changed(p: Path) -> float:
        return (p / METRICS).stat().st_mtime if (p / METRICS).exists() else p.stat().st_mtime

    found = sorted(find_runs(root), key=changed, reverse=True)
    if not found:
        err.print(plain(f"no run folders under {root}"))
        return
    shown = found[:limit] if limit else found
    table = Table(title=f"runs under {root}: {len(found)}" + (f", newest {len(shown)}" if len(shown) < len(found) else ""))
    for i, name in enumerate(["run", "recipe", "tricks", "epochs", "best val acc %", "status", "changed"]):
        table.add_column(name, justify="right" if i in (3, 4) else "left", overflow="fold")
    resumable = []
    now = time.time()
    for path in shown:
        try:
            run = read_run(path)
        except UserError as exc:  # a folder whose recipe no longer loads (a plugin uninstalled...)
            table.add_row(Text(str(path.relative_to(root))), "?", "?", "?", "?", Text("unreadable", style="red"), Text(str(exc)[:60]))
            continue
        status = "running" if run.status in ("interrupted", "not started") and is_running(path) else run.status
        if status == "interrupted":
            resumable.append(path)
        best = max((r["val_acc"] for r in run.good), default=None)
        table.add_row(Text(str(path.relative_to(root))), Text(recipe_name(path) or "—"),
                      Text(", ".join(run.recipe.enabled_tricks()) or "—"),  # type: ignore[attr-defined]
                      f"{run.epochs_done:g}/{run.epochs:g}", "—" if best is None else f"{100 * best:.2f}",
                      Text(status, style=STATUS_STYLE.get(status, "")), _age(now - changed(path)))
    out.print(table)
    if resumable:
        err.print(plain(f"continue an interrupted run with  trickbag run --resume {resumable[0]}"))
