"""A rich progress bar as an ordinary observer plugin: the loop knows nothing about it."""
from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from trickbag.hookspecs import hookimpl


class ProgressBar:
    REFRESH = 0.25  # seconds between loss read-outs (each one syncs the device)

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, transient=False,
        )
        self.task = None
        self.last = 0.0

    @hookimpl
    def trickbag_fit_start(self, context):
        self.progress.start()

    @hookimpl
    def trickbag_epoch_start(self, state):
        total = min(state.steps_per_epoch, max(1, round((state.epochs - state.epoch) * state.steps_per_epoch)))
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task("train", total=total, epoch=f"{state.epoch + 1}/{int(-(-state.epochs // 1))}", loss="-", lr="-")

    @hookimpl
    def trickbag_step_end(self, state):
        now = time.monotonic()
        if now - self.last < self.REFRESH:
            self.progress.advance(self.task)
            return
        self.last = now
        self.progress.update(self.task, advance=1, loss=f"{state.loss.item():.4f}", lr=f"{state.lr:.3g}")

    @hookimpl
    def trickbag_epoch_end(self, state, metrics):
        self.progress.update(self.task, completed=self.progress.tasks[-1].total)
        self.progress.console.print(
            f"epoch {metrics['epoch']:>3}  train_loss {metrics['train_loss']:.4f}  val_loss {metrics['val_loss']:.4f}  "
            f"val_acc {metrics['val_acc']:.4f}  lr {metrics['lr']:.3g}  {metrics['seconds']:.1f}s"
        )

    def close(self) -> None:
        self.progress.stop()
