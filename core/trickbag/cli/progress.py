"""The run's terminal display as an ordinary observer plugin: the loop knows nothing about it.

A live bar for the epoch in progress (transient: it leaves no stale bar behind when the run ends
or is interrupted) and one permanent line per finished epoch. With ``live=False`` (``-q``) only
the epoch lines print.
"""
from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from trickbag.hookspecs import hookimpl


class ProgressBar:
    REFRESH = 0.25  # seconds between loss read-outs (each one syncs the device)

    def __init__(self, console: Console | None = None, live: bool = True, header: Text | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live, self.header = live, header
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, transient=True, disable=not live,
        )
        self.task = None
        self.last = 0.0

    @hookimpl
    def trickbag_fit_start(self, context):
        if self.header is not None:
            self.console.print(self.header)
        self.progress.start()

    @hookimpl
    def trickbag_epoch_start(self, state):
        if self.task is not None:
            self.progress.remove_task(self.task)
        epochs = int(-(-state.epochs // 1))
        self.task = self.progress.add_task("train", total=state.epoch_steps, epoch=f"{state.epoch + 1}/{epochs}", loss="-", lr="-")

    @hookimpl
    def trickbag_step_end(self, state):
        if not self.live or state.sweep:
            return
        now = time.monotonic()
        if now - self.last < self.REFRESH:
            self.progress.advance(self.task)
            return
        self.last = now
        self.progress.update(self.task, advance=1, loss=f"{state.loss.item():.4f}", lr=f"{state.lr:.3g}")

    @hookimpl
    def trickbag_epoch_end(self, state, metrics):
        self.progress.update(self.task, completed=state.epoch_steps)
        self.progress.console.print(Text(
            f"epoch {metrics['epoch']:>3}  train_loss {metrics['train_loss']:.4f}  val_loss {metrics['val_loss']:.4f}  "
            f"val_acc {metrics['val_acc']:.4f}  lr {metrics['lr']:.3g}  {metrics['seconds']:.1f}s"
        ))

    def close(self) -> None:
        self.progress.stop()
