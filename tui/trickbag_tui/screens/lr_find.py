"""Tab 1, the LR range test: the sweep runs in a worker thread and draws live; then the cursor
picks ``base_lr`` and ``max_lr`` on the curve, and ``s`` saves them as ``<name>.tuned.toml``."""
from __future__ import annotations

import dataclasses
import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static
from textual.worker import get_current_worker
from trickbag.errors import PluginError, UserError

from trickbag_tui.messages import (
    BoundsChanged,
    SweepFailed,
    SweepFinished,
    SweepStarted,
    SweepSteps,
    TunedSaved,
    VerifyFinished,
    VerifyProgress,
)
from trickbag_tui.screens.sweep_form import SweepForm
from trickbag_tui.session import Session, SweepSettings, shown_path
from trickbag_tui.widgets.lr_curve import (
    BASE,
    CURSOR,
    MAX,
    RAW,
    RECOMMENDED,
    SMOOTH,
    SUGGESTED,
    VERIFIED,
    LRCurve,
    style,
)
from trickbag_tui.widgets.plots import fmt

CURSOR_KEYS = Binding.Group("Cursor", compact=True)


class Batcher:
    """Collects items from a worker thread and hands them on at most every ``every`` seconds."""

    def __init__(self, send, every: float = 0.1) -> None:
        self.send, self.every = send, every
        self.items: list = []
        self.last = time.monotonic()

    def add(self, item) -> None:
        self.items.append(item)
        if time.monotonic() - self.last >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.items:
            self.send(self.items)
            self.items = []
        self.last = time.monotonic()


class LRFindPanel(Vertical):
    """The range test tab. States: idle, running, cancelling, done (``self.state``)."""

    BINDINGS = [
        Binding("left", "move(-1)", "Cursor", group=CURSOR_KEYS, key_display="←",
                tooltip="move the cursor (shift+←→ or PgUp/PgDn: 10 points; Home, End)"),
        Binding("right", "move(1)", "Cursor", group=CURSOR_KEYS, key_display="→",
                tooltip="move the cursor (shift+←→ or PgUp/PgDn: 10 points; Home, End)"),
        Binding("shift+left,pageup", "move(-10)", "Cursor -10", show=False),
        Binding("shift+right,pagedown", "move(10)", "Cursor +10", show=False),
        Binding("home", "move(-1000000)", "First point", show=False),
        Binding("end", "move(1000000)", "Last point", show=False),
        Binding("b", "set_base", "Base", tooltip="set base_lr at the cursor (the schedule trick's lowest LR)"),
        Binding("m", "set_max", "Max", tooltip="set max_lr at the cursor (the schedule trick's peak, optimizer.lr)"),
        Binding("r", "run", "Run", tooltip="run the range test (again) with the current settings"),
        Binding("f", "form", "Settings", tooltip="change start LR, end LR and steps, then run"),
        Binding("z", "zoom", "Zoom", tooltip="narrow the plot to the chosen bounds, or back to the whole sweep"),
        Binding("v", "verify", "Verify", tooltip="train the recipe at max_lr, x1/2 and x2 (lr-find --verify): the winner is marked ✓"),
        Binding("R", "resweep", "Re-sweep", key_display="R", show=False,  # in the help (?): the footer is full at 80 columns
                tooltip="run the range test again between the chosen bounds, for a finer curve there"),
        Binding("s", "save", "Save", tooltip="save <recipe>.tuned.toml (never over the original)"),
        Binding("escape", "cancel", "Cancel", tooltip="cancel the range test (model, optimizer, RNG restored)"),
    ]

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.state = "idle"
        self.ready = session.run is not None
        self.error: str | None = None
        self.verify_done = (0, 0)  # epochs of the verification runs: done, at most

    def compose(self) -> ComposeResult:
        s = self.session.settings
        yield LRCurve(f"r: run the LR range test ({s.start:g} -> {s.end:g}, {s.steps} steps)    f: change its settings", id="lr-curve")
        yield Static(id="lr-status")

    def on_mount(self) -> None:
        self.update_status()

    @property
    def curve(self) -> LRCurve:
        return self.query_one(LRCurve)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.state == "running"  # shown in the footer only while it means something
        if action in ("run", "form"):
            return self.state in ("idle", "done") or None
        if action == "verify":
            return (self.state == "done" and self.session.max_lr is not None) or None
        if action in ("zoom", "resweep"):
            return (self.state == "done" and self.session.base_lr is not None and self.session.max_lr is not None) or None
        return True

    # -- the sweep ---------------------------------------------------------------------------

    def action_run(self) -> None:
        self.start_sweep(self.session.settings)

    def action_verify(self) -> None:
        session = self.session
        if session.max_lr is None or self.state != "done":
            self.notify("run the range test first (r) and choose max_lr (m)", severity="warning")
            return
        if session.training or session.sweeping:
            self.notify("a run or a range test is going on: let it end first", severity="warning")
            return
        session.sweeping = True  # the verification runs hold the CPU/GPU like a sweep does
        self.state, self.verify_done = "verifying", (0, 0)
        self.update_status()
        self.refresh_bindings()
        self.verify(session.max_lr)

    @work(thread=True, exclusive=True, group="sweep")
    def verify(self, lr: float) -> None:
        """lr-find --verify in a thread: epochs are messages, the result marks the curve."""
        from trickbag.lr_range.verify import planned_epochs

        session = self.session
        total, done = planned_epochs(session.recipe, None, 1), [0]

        def on_epoch() -> None:
            done[0] += 1
            self.post_message(VerifyProgress(done[0], total))

        try:
            result = session.verify_with(session.recipe, lr, on_epoch=on_epoch)
        except (UserError, PluginError) as exc:
            self.post_message(VerifyFinished(None, str(exc)))
            return
        except Exception as exc:
            self.post_message(VerifyFinished(None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(VerifyFinished(result))

    def on_verify_progress(self, message: VerifyProgress) -> None:
        message.stop()
        self.verify_done = (message.done, message.total)
        self.update_status()

    def on_verify_finished(self, message: VerifyFinished) -> None:
        message.stop()
        session = self.session
        session.sweeping = False
        self.state = "done"
        if message.error:
            self.notify(message.error, title="verification failed", severity="error")
        else:
            session.verification = message.result
            winner = message.result.winner
            self.curve.set_verified(winner.lr if winner else None)
        self.update_status()
        self.refresh_bindings()

    def action_zoom(self) -> None:
        zoomed = self.curve.zoom()
        self.notify("zoomed to the chosen bounds (z: whole sweep)" if zoomed else "the whole sweep", timeout=2)

    def action_resweep(self) -> None:
        session = self.session
        if session.base_lr is None or session.max_lr is None:
            self.notify("choose both bounds first (b and m on the curve)", severity="warning")
            return
        session.settings = dataclasses.replace(session.settings, start=session.base_lr, end=session.max_lr)
        self.start_sweep(session.settings)

    def action_form(self) -> None:
        if self.state in ("idle", "done"):
            self.app.push_screen(SweepForm(self.session.settings), self._form_done)

    def _form_done(self, settings: SweepSettings | None) -> None:
        if settings is not None:
            self.session.settings = settings
            self.start_sweep(settings)

    def start_sweep(self, settings: SweepSettings) -> None:
        if self.state not in ("idle", "done"):
            return
        if self.session.training:
            self.notify("training is running: stop it first (x on the Train tab)", severity="warning")
            return
        self.session.sweep_cancel.clear()
        self.session.sweeping = True
        self.state = "running"
        self.curve.start(settings.start, settings.end)
        self.update_status()
        self.refresh_bindings()
        self.sweep(settings)

    @work(thread=True, exclusive=True, group="sweep")
    def sweep(self, settings: SweepSettings) -> None:
        """The range test on the prepared run, in a thread: every step is a message; cancel is
        polled before every step; the run is restored bit-for-bit whatever happens."""
        session, worker = self.session, get_current_worker()
        batch = Batcher(lambda steps: self.post_message(SweepSteps(steps)))
        try:
            run = session.ensure_run()
            self.post_message(SweepStarted(settings))
            try:
                result = session.sweep_with(
                    run, settings.start, settings.end, settings.steps, settings.mode, settings.diverge, settings.smooth,
                    on_step=lambda i, lr, loss, smoothed: batch.add((i, lr, loss, smoothed)),
                    should_stop=lambda: session.sweep_cancel.is_set() or worker.is_cancelled,
                )
            finally:
                batch.flush()
        except (UserError, PluginError) as exc:
            self.post_message(SweepFailed(str(exc)))
            return
        except Exception as exc:  # a trick raising mid-sweep: the run is restored, the UI lives on
            self.post_message(SweepFailed(f"{type(exc).__name__}: {exc}"))
            return
        if result.stopped != "cancelled":  # a record of what was shown, as `trickbag lr-find` leaves one
            try:
                folder = session.record_sweep(result)
            except OSError as exc:
                self.app.call_from_thread(self.notify, f"its files could not be written: {exc}", title="range test", severity="warning")
            else:
                self.app.call_from_thread(self.notify, f"lr_find.csv, .json, .png in {shown_path(folder)}", title="range test saved")
        self.post_message(SweepFinished(result))

    def action_cancel(self) -> None:
        if self.state == "running":
            self.session.sweep_cancel.set()
            self.state = "cancelling"
            self.update_status()
            self.refresh_bindings()

    def run_ready(self, error: str | None) -> None:
        """The main screen's news: the run is prepared (or cannot be)."""
        self.ready, self.error = error is None, error
        self.update_status()

    def on_sweep_started(self, message: SweepStarted) -> None:
        message.stop()
        self.ready = True

    def on_sweep_steps(self, message: SweepSteps) -> None:
        message.stop()
        self.curve.extend(message.steps)
        self.update_status()

    def on_sweep_failed(self, message: SweepFailed) -> None:
        message.stop()
        self.state, self.error = "idle", message.error
        self.session.sweeping = False
        self.notify(message.error, title="range test failed", severity="error")
        self.update_status()
        self.refresh_bindings()

    def on_sweep_finished(self, message: SweepFinished) -> None:
        message.stop()
        result, session = message.result, self.session
        session.result = result
        session.sweeping = False
        self.state = "done"
        s = result.suggestions
        suggested = {k: v for k, v in (("base", s.base_lr), ("max", s.max_lr), ("recommended", s.recommended)) if v}
        # the recommendation becomes the chosen max (what `lr-find --apply` writes), the CLR base the base
        if result.stopped != "cancelled" and s.recommended:
            session.set_bounds(s.base_lr if s.base_lr and s.base_lr < s.recommended else None, s.recommended)
        curve = self.curve
        curve.set_bounds(session.base_lr, session.max_lr)
        at = curve.nearest(s.recommended) if s.recommended else None
        curve.interval = s.interval if s.recommended else None
        curve.finish(result.lrs, result.losses, result.smoothed, suggested, at if at is not None else (len(result.lrs) - 1 if result.lrs else None))
        self.update_status()
        self.refresh_bindings()
        self.post_message(BoundsChanged(session.base_lr, session.max_lr))

    # -- cursor and bounds -------------------------------------------------------------------

    def action_move(self, delta: int) -> None:
        self.curve.move(delta)
        self.update_status()

    def _at_cursor(self) -> float | None:
        curve = self.curve
        if self.state in ("running", "cancelling"):
            self.notify("the range test is running: set bounds when it ends (esc cancels it)", severity="warning")
            return None
        if self.state != "done" or curve.cursor is None:
            self.notify("run the range test first (r), then move the cursor with the arrow keys", severity="warning")
            return None
        return curve.lrs[curve.cursor]

    def action_set_base(self) -> None:
        lr = self._at_cursor()
        if lr is None:
            return
        if self.session.max_lr is not None and lr >= self.session.max_lr:
            self.notify(f"base_lr {lr:.3g} must be below max_lr {self.session.max_lr:.3g}: move the cursor left of it",
                        severity="warning")
            return
        self._set_bounds(lr, self.session.max_lr)

    def action_set_max(self) -> None:
        lr = self._at_cursor()
        if lr is None:
            return
        if self.session.base_lr is not None and lr <= self.session.base_lr:
            self.notify(f"max_lr {lr:.3g} must be above base_lr {self.session.base_lr:.3g}: move the cursor right of it",
                        severity="warning")
            return
        self._set_bounds(self.session.base_lr, lr)

    def _set_bounds(self, base_lr: float | None, max_lr: float | None) -> None:
        """Only ordered bounds get here: what the curve shows is what the preview and the launch use."""
        self.session.set_bounds(base_lr, max_lr)
        self.curve.set_bounds(base_lr, max_lr)
        self.update_status()
        self.post_message(BoundsChanged(base_lr, max_lr))

    def action_save(self) -> None:
        try:
            path = self.session.save()
        except UserError as exc:
            self.notify(str(exc), title="not saved", severity="warning")
            return
        except OSError as exc:
            self.notify(f"{exc.strerror}: {exc.filename}", title="not saved", severity="error")
            return
        self.notify(f"saved {path.name}: launch it from the Train tab (4, then l)", title="tuned recipe")
        self.update_status()
        self.post_message(TunedSaved(path))

    # -- the status lines under the plot -----------------------------------------------------

    def update_status(self) -> None:
        session, curve = self.session, self.curve
        lines: list[Text] = []
        i = curve.cursor
        if i is not None and i < len(curve.lrs):
            lines.append(Text.assemble(
                ("cursor ", CURSOR), f"{i + 1}/{len(curve.lrs)}  lr ", (f"{curve.lrs[i]:.3g}", "bold"),
                f"  loss {fmt(curve.losses[i], '.4f')}  smoothed {fmt(curve.smoothed[i], '.4f')}",
            ))
        else:
            lines.append(Text.assemble(("• loss  ", style(RAW)), ("── smoothed loss  ", SMOOTH), ("│ cursor", CURSOR)))
        lines.append(Text.assemble(
            ("chosen ", "bold"), ("│ base_lr ", BASE), fmt(session.base_lr), "  ", ("│ max_lr ", MAX), fmt(session.max_lr),
            ("   b / m: set at the cursor, s: save" if self.state == "done" else ""),
        ))
        result = session.result
        if result is not None and self.state == "done":
            s = result.suggestions
            lines.append(Text.assemble(("suggested ", "bold"), ("▲ ", SUGGESTED), f"base {fmt(s.base_lr)}  max {fmt(s.max_lr)}  ",
                                       ("★ ", RECOMMENDED), f"recommended {fmt(s.recommended)}"))
            # the bar under the curve: where the benchmark found LRs within 0.5 points of the best
            interval = (("━ ", RECOMMENDED), f"likely within 0.5 pt: {fmt(s.interval[0])}–{fmt(s.interval[1])}   ") if s.interval else ()
            lines.append(Text.assemble(*interval, (s.reason, "dim")))
        v = session.verification
        if v is not None and self.state == "done":
            w = v.winner
            margin = v.margin()
            lines.append(Text.assemble(("verified ", "bold"), ("✓ ", VERIFIED), (
                f"{w.lr:.3g} won" + (f" by {margin:.2f} points" if margin is not None else "") + f" ({len(v.candidates)} LRs trained)"
                if w else "no verification run finished")))
        lines.append(self._state_line())
        for line in lines:
            line.no_wrap, line.overflow = True, "ellipsis"
        self.query_one("#lr-status", Static).update(Text("\n").join(lines))

    def _state_line(self) -> Text:
        session, curve, settings = self.session, self.curve, self.session.settings
        sweep = f"{settings.start:g} -> {settings.end:g}, {settings.steps} steps"
        if self.state == "running":
            what = "preparing the run..." if not self.ready else f"step {len(curve.lrs)}/{settings.steps}"
            return Text(f"range test running: {what} ({sweep})  esc: cancel")
        if self.state == "cancelling":
            return Text("cancelling: restoring the model...")
        if self.state == "verifying":
            done, total = self.verify_done
            return Text(f"verifying: training the recipe at max_lr, x1/2 and x2 (epoch {done} of at most {total})")
        if self.state == "done" and session.result is not None:
            r, done = session.result, session.result.settings
            how = {"end": "reached the end", "diverged": "loss diverged", "cancelled": "cancelled, model restored"}[r.stopped]
            line = Text(f"range test {how}: {len(r.lrs)}/{done['steps']} steps, {done['start']:g} -> {done['end']:g}")
            if session.tuned:
                line.append(f"  saved {shown_path(session.tuned)}", style="green")
            else:
                line.append_text(Text.assemble("   ", ("• loss ", style(RAW)), ("── smoothed", SMOOTH)))
            return line
        if self.error:
            return Text(f"error: {self.error}", style="red")
        return Text(f"ready: r runs the range test ({sweep}), f changes it" if self.ready else "preparing the run (data, model)...")
