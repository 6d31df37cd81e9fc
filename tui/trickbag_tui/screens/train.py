"""Tab 4, training: launch the recipe with the chosen bounds (the saved tuned recipe when there is
one) and watch train/val loss, val accuracy and the LR draw live; ``x`` stops the run at its next
step, keeping the checkpoint of every finished epoch."""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message_pump import MessagePump
from textual.widgets import ProgressBar, Static
from trickbag.errors import PluginError, UserError
from trickbag.hookspecs import hookimpl

from trickbag_tui.messages import TrainEpoch, TrainFinished, TrainStarted, TrainStep
from trickbag_tui.session import Session, shown_path
from trickbag_tui.widgets.plots import LineData, LinePlot, Series, fmt

#: at most this many step points per epoch reach the plots (each one reads the loss: a device sync)
POINTS_PER_EPOCH = 50
TRAIN, VAL, ACC, LR = "cyan", "yellow", "green", "magenta"


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class TrainObserver:
    """An ordinary observer plugin: posts the run's progress to the panel, and raises
    KeyboardInterrupt at the first step after ``stop`` is set (the loop's clean way out)."""

    def __init__(self, target: MessagePump, stop: threading.Event, out_dir: Path) -> None:
        self.target, self.stop, self.out_dir = target, stop, out_dir
        self.every = 1

    @hookimpl
    def trickbag_fit_start(self, context):
        self.every = max(1, context.steps_per_epoch // POINTS_PER_EPOCH)
        self.target.post_message(TrainStarted(self.out_dir, context.recipe, context.epochs, context.steps_per_epoch))

    @hookimpl
    def trickbag_step_end(self, state):
        if self.stop.is_set():
            raise KeyboardInterrupt
        if state.step_in_epoch % self.every == 0:  # by count, not time: the same points every run
            self.target.post_message(TrainStep(state.global_step, state.progress, state.loss.item(), state.lr))

    @hookimpl
    def trickbag_epoch_end(self, state, metrics):
        self.target.post_message(TrainEpoch(dict(metrics)))


class TrainPanel(Vertical):
    BINDINGS = [
        Binding("l", "launch", "Launch", tooltip="train the tuned recipe (or the chosen bounds); watch it"),
        Binding("x", "stop", "Stop", tooltip="stop at the next step; finished epochs are kept"),
    ]
    can_focus = True

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.training = False
        self.stopping = False
        self.out_dir: Path | None = None
        self.epochs = 1.0
        self.steps: list[tuple[float, float, float]] = []  # (progress, loss, lr)
        self.train_label = "train (steps)"  # an opened run folder has epoch means only
        self.rows: list[dict] = []
        self.last = ""
        self.started = 0.0

    def compose(self) -> ComposeResult:
        yield Static(id="train-plan")
        with Horizontal(id="train-progress-row"):
            yield ProgressBar(total=100, show_eta=False, id="train-progress")
        yield Static(id="train-status")
        yield LinePlot("l: launch the run and watch it here", id="train-loss")
        with Horizontal(id="train-bottom"):
            yield LinePlot("", id="train-acc")
            yield LinePlot("", id="train-lr")

    def on_mount(self) -> None:
        self.update_plan()
        if self.session.opened is not None:
            self.show_folder(self.session.opened)
        self.update_status()

    def show_folder(self, folder: Path) -> None:
        """An existing run (``trickbag tui RUN_FOLDER``): its epochs as curves (training loss and LR
        at epoch ends: the folder keeps no step values), how far it got, and how to continue it."""
        from trickbag.runs.summary import read_run

        run = read_run(folder)
        self.out_dir, self.epochs = folder, run.epochs
        self.rows = run.good
        self.steps = [(float(r["progress"]), r["train_loss"], r["lr"]) for r in self.rows]
        self.train_label = "train (epoch means)"
        self.query_one("#train-progress", ProgressBar).update(progress=100 * run.epochs_done / run.epochs)
        where = shown_path(folder)
        best = max((r["val_acc"] for r in self.rows), default=None)
        self.last = f"run folder {where}: {run.status}, {run.epochs_done:g}/{run.epochs:g} epochs" + (
            f", best val_acc {best:.4f}" if best is not None else "")
        if run.status == "interrupted":
            self.last += f"\ncontinue: trickbag run --resume {where}"
        self.redraw()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.training and not self.stopping
        if action == "launch":
            return (not self.training) or None
        return True

    # -- launch and stop ---------------------------------------------------------------------

    def update_plan(self) -> None:
        if self.training:  # the line describes the running run until it ends, whatever the bounds do now
            return
        try:
            recipe, what = self.session.launch_recipe()
        except (UserError, PluginError) as exc:
            self.query_one("#train-plan", Static).update(Text(str(exc), style="red"))
            return
        t = recipe.training
        # the chosen bounds as the schedule trick took them, else the recipe's own LR
        lr = self.session.bounds_line() if self.session.max_lr is not None and self.session.bounds_problem() is None else f"lr {recipe.optimizer.lr:.4g}"
        line = Text.assemble(("l launches ", "bold"), f"{what}: {t.epochs:g} epochs, {lr}")
        line.no_wrap, line.overflow = True, "ellipsis"
        self.query_one("#train-plan", Static).update(line)

    def action_launch(self) -> None:
        if self.training:
            return
        if self.session.sweeping:
            self.notify("the range test is running: let it end or cancel it (esc) first", severity="warning")
            return
        try:
            recipe, _ = self.session.launch_recipe()
        except (UserError, PluginError) as exc:
            self.notify(str(exc), title="cannot launch", severity="error")
            return
        self.out_dir = self.session.run_folder(recipe.name)
        self.epochs = recipe.training.epochs
        self.steps, self.rows, self.last = [], [], ""
        self.train_label = "train (steps)"
        self.started = time.monotonic()
        self.session.launched.append({"out_dir": self.out_dir, "status": "running", "epochs": 0})
        self.session.train_stop.clear()
        self.training, self.stopping = True, False
        self.session.training = True
        self.query_one("#train-progress", ProgressBar).update(progress=0)
        self.redraw()
        self.update_status("preparing the run...")
        self.refresh_bindings()
        self.train(recipe, self.out_dir)

    @work(thread=True, exclusive=True, group="train")
    def train(self, recipe, out_dir: Path) -> None:
        """``fit`` in a thread; the observer speaks for it. Stopping raises KeyboardInterrupt inside
        the loop, which keeps the checkpoint of the last finished epoch."""
        observers = [TrainObserver(self, self.session.train_stop, out_dir), *self.session.observers]
        try:
            summary = self.session.fit_with(recipe, out_dir, observers=observers)
        except KeyboardInterrupt:
            self.post_message(TrainFinished(out_dir, stopped=True))
        except (UserError, PluginError) as exc:
            self.post_message(TrainFinished(out_dir, error=str(exc)))
        except Exception as exc:
            self.post_message(TrainFinished(out_dir, error=f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(TrainFinished(out_dir, summary=summary))

    def action_stop(self) -> None:
        if self.training and not self.stopping:
            self.session.train_stop.set()
            self.stopping = True
            self.update_status("stopping at the next step...")
            self.refresh_bindings()

    # -- messages from the run ---------------------------------------------------------------

    def on_train_started(self, message: TrainStarted) -> None:
        message.stop()
        self.epochs = message.epochs
        self.update_status("training")

    def on_train_step(self, message: TrainStep) -> None:
        message.stop()
        self.steps.append((message.progress, message.loss, message.lr))
        self.query_one("#train-progress", ProgressBar).update(progress=100 * message.progress / self.epochs)
        self.redraw()
        self.update_status("training" if not self.stopping else "stopping at the next step...")

    def on_train_epoch(self, message: TrainEpoch) -> None:
        message.stop()
        self.rows.append(message.metrics)
        self.query_one("#train-progress", ProgressBar).update(progress=100 * message.metrics["progress"] / self.epochs)
        self.redraw()
        self.update_status("training" if not self.stopping else "stopping at the next step...")

    def on_train_finished(self, message: TrainFinished) -> None:
        message.stop()
        self.training, self.stopping = False, False
        self.session.training = False
        where = shown_path(message.out_dir)
        if message.error:
            self.last = f"failed: {message.error}"
            self.notify(message.error, title="training failed", severity="error")
        elif message.stopped:
            done = len(self.rows)
            self.last = f"stopped: {done} finished epoch{'s' * (done != 1)} kept in {where}\ncontinue: trickbag run --resume {where}"
        else:
            s = message.summary or {}
            self.query_one("#train-progress", ProgressBar).update(progress=100)
            self.last = f"done: val_acc {fmt(s.get('final_val_acc'), '.4f')} (best {fmt(s.get('best_val_acc'), '.4f')})\nrun folder: {where}"
        if self.session.launched:
            self.session.launched[-1].update(
                status="failed" if message.error else "stopped" if message.stopped else "done", epochs=len(self.rows),
                val_acc=self.rows[-1]["val_acc"] if self.rows else None)
        self.update_status()
        self.refresh_bindings()
        self.update_plan()

    # -- drawing -----------------------------------------------------------------------------

    def redraw(self) -> None:
        xlim = (0.0, float(self.epochs))
        steps, rows = self.steps, self.rows
        epochs_x = [float(r["progress"]) for r in rows]
        self.query_one("#train-loss", LinePlot).show(LineData([
            Series(self.train_label, [s[0] for s in steps], [s[1] for s in steps], TRAIN),
            Series("val", epochs_x, [r["val_loss"] for r in rows], VAL),
        ], xlim=xlim, title="loss"))
        self.query_one("#train-acc", LinePlot).show(LineData(
            [Series("val acc", epochs_x, [r["val_acc"] for r in rows], ACC)], xlim=xlim, title="val accuracy", legend=False,
        ))
        self.query_one("#train-lr", LinePlot).show(LineData(
            [Series("lr", [s[0] for s in steps], [s[2] for s in steps], LR)], xlim=xlim, title="learning rate", legend=False,
        ))

    def update_status(self, state: str | None = None) -> None:
        """Two lines under the progress bar: what the run is doing (epoch, ETA), its latest numbers
        and the run folder; or how it ended and where, with the command that continues it."""
        if not state:
            self.query_one("#train-status", Static).update(self.last or "idle")
            return
        first, second = [state], [f"run folder: {shown_path(self.out_dir)}" if self.out_dir else ""]
        if self.steps:
            progress, loss, lr = self.steps[-1]
            first.append(f"epoch {min(int(progress) + 1, math.ceil(self.epochs))}/{math.ceil(self.epochs)}")
            elapsed = time.monotonic() - self.started
            if progress > 0:
                first.append(f"ETA {format_seconds(elapsed * (self.epochs - progress) / progress)}")
            second.insert(0, f"loss {loss:.4f}  lr {lr:.3g}" + (f"  val_acc {self.rows[-1]['val_acc']:.4f}" if self.rows else ""))
        self.query_one("#train-status", Static).update("  ".join(first) + "\n" + "  ".join(s for s in second if s))
