"""The ablation's live display: runs done / total, elapsed, ETA and the best variant so far, with
one permanent line per finished run above the bar (the bar is transient: nothing stale is left
behind, and on a pipe or in CI only the lines print)."""
from __future__ import annotations

import statistics
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class AblationProgress:
    def __init__(self, console: Console, total: int | None = None) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]ablation"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"), TextColumn("{task.fields[best]}"),
            console=console, transient=True, disable=not console.is_terminal,
        )
        self.task = self.progress.add_task("runs", total=total, eta="-", best="")
        self.started = time.monotonic()
        self.made = 0  # runs trained or resumed here (skipped ones say nothing about the pace)
        self.how: dict[str, int] = {}
        self.accs: dict[str, list[float]] = {}

    def __enter__(self) -> AblationProgress:
        self.started = time.monotonic()
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def best(self) -> tuple[str, float, int] | None:
        """The variant with the best mean final accuracy so far (points), and its seeds so far."""
        if not self.accs:
            return None
        name = max(self.accs, key=lambda k: statistics.mean(self.accs[k]))
        return name, 100 * statistics.mean(self.accs[name]), len(self.accs[name])

    def on_run(self, row: dict, how: str, done: int, total: int) -> None:
        self.how[how] = self.how.get(how, 0) + 1
        self.accs.setdefault(row["variant"], []).append(row["final_val_acc"])
        if how != "skipped":
            self.made += 1
        # wall time per run made so far: with --jobs J this already counts the J at a time
        eta = _clock((time.monotonic() - self.started) / self.made * (total - done)) if self.made else "-"
        name, mean, n = self.best()  # type: ignore[misc]  # a row was just added
        best = f"best {name} {mean:.2f}% ({n} seed{'s' if n > 1 else ''})"
        self.progress.update(self.task, completed=done, total=total, eta=eta, best=best)
        state = "diverged" if row["diverged"] else f"val acc {100 * row['final_val_acc']:.2f}%"
        self.progress.console.print(Text(f"[{done}/{total}] {row['variant']} seed {row['seed']}: {state} ({how}); {best}"))

    def summary(self) -> str:
        made = ", ".join(f"{n} {how}" for how, n in sorted(self.how.items()))
        return f"{sum(self.how.values())} runs ({made}) in {_clock(time.monotonic() - self.started)}"
