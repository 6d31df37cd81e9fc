"""The LR range test in the terminal: a live progress line during the sweep, a table afterwards."""
from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from trickbag.lr_range.sweep import LRFindResult


class LiveSweep:
    def __init__(self, console: Console, steps: int) -> None:
        self.progress = Progress(
            TextColumn("[bold]lr-find"), BarColumn(), MofNCompleteColumn(),
            TextColumn("lr {task.fields[lr]}  loss {task.fields[loss]}"), TimeElapsedColumn(), console=console,
        )
        self.task = self.progress.add_task("sweep", total=steps, lr="-", loss="-")
        self.progress.start()

    def update(self, i: int, lr: float, loss: float, smoothed: float) -> None:
        self.progress.update(self.task, completed=i + 1, lr=f"{lr:.3g}", loss=f"{smoothed:.4f}")

    def close(self) -> None:
        self.progress.stop()


def print_suggestions(console: Console, result: LRFindResult) -> None:
    s = result.suggestions
    table = Table(title=f"LR range test: {len(result.lrs)} steps, stopped: {result.stopped}, {result.seconds:.1f}s")
    table.add_column("rule")
    table.add_column("lr", justify="right")
    table.add_column("how")
    for name, rule in s.rules.items():
        table.add_row(name, f"{rule.lr:.3g}" if rule.lr else "-", Text(rule.note))
    console.print(table)
    if s.base_lr and s.max_lr:
        console.print(f"bounds: base_lr {s.base_lr:.3g}, max_lr {s.max_lr:.3g}")
    if s.recommended:
        console.print(Text.assemble((f"recommended: {s.recommended:.3g}", "bold"), f"  ({s.reason})"))
        if s.interval:
            lo, hi = s.interval
            console.print(f"likely within 0.5 accuracy points of the best: {lo:.3g} to {hi:.3g} "
                          "(what benchmarks/lr_suggestion.py measured around such recommendations; --verify checks it on yours)")
    else:
        console.print(Text(s.reason))  # "no recommendation: <why>"
