"""``trickbag compare``: run folders side by side (curves in one PNG, final metrics in one table)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from trickbag.cli.output import err, out, plain


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (trickbag run --out), or an ablation folder (all its runs).")],
    png: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where the figure goes (default compare.png here).")] = None,
) -> None:
    """Plot the training curves of several runs (train/val loss, val accuracy, LR) in one PNG and
    print their final metrics side by side."""
    from rich.table import Table

    from trickbag.errors import UserError
    from trickbag.runs.compare import (
        HEADER,
        expand,
        labels_of,
        plot_compare,
        table_rows,
    )
    from trickbag.runs.summary import read_run

    target = png or Path("compare.png")
    if target.suffix.lower() != ".png":
        raise UserError(f"--out {target}: the figure is a PNG; give a path ending in .png")
    if target.parent != Path() and not target.parent.is_dir():
        raise UserError(f"--out {target}: folder {target.parent} does not exist")
    folders = expand(list(runs))
    loaded = [read_run(folder) for folder in folders]  # every folder checked before anything is drawn
    labels = labels_of(folders)
    table = Table(title="trickbag compare")
    for i, name in enumerate(HEADER):
        table.add_column(name, justify="left" if i < 4 else "right", overflow="fold")
    for row in table_rows(loaded, labels):
        table.add_row(*row)
    out.print(table)
    plot_compare(loaded, labels, target)
    err.print(plain(f"curves of {len(loaded)} runs in {target}"))
