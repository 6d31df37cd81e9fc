"""The small form that reruns the range test with another start, end and number of steps."""
from __future__ import annotations

import dataclasses

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static
from trickbag.errors import UserError

from trickbag_tui.session import SweepSettings


class SweepForm(ModalScreen[SweepSettings | None]):
    """Enter (in any field) runs with the new settings, Escape keeps the old ones."""

    BINDINGS = [Binding("escape", "dismiss_form", "Close")]

    def __init__(self, settings: SweepSettings) -> None:
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        s = self.settings
        with Vertical(id="form"):
            yield Static("LR range test settings", classes="form-title")
            with Grid(id="form-grid"):
                yield Label("start LR")
                yield Input(f"{s.start:g}", id="start", type="number")
                yield Label("end LR")
                yield Input(f"{s.end:g}", id="end", type="number")
                yield Label("steps")
                yield Input(str(s.steps), id="steps", type="integer")
            yield Static("", id="form-error")
            with Horizontal(id="form-buttons"):
                yield Button("Run", variant="primary", id="form-run")
                yield Button("Cancel", id="form-cancel")

    def on_mount(self) -> None:
        self.query_one("#start", Input).focus()

    def read(self) -> SweepSettings | None:
        try:
            values = {key: self.query_one(f"#{key}", Input).value.strip() for key in ("start", "end", "steps")}
            settings = dataclasses.replace(self.settings, start=float(values["start"]), end=float(values["end"]), steps=int(values["steps"]))
            settings.check()
        except ValueError:
            self.query_one("#form-error", Static).update("start and end are LRs (1e-7), steps a whole number")
            return None
        except UserError as exc:
            self.query_one("#form-error", Static).update(str(exc).replace("--", ""))
            return None
        return settings

    @on(Input.Submitted)
    @on(Button.Pressed, "#form-run")
    def submit(self) -> None:
        settings = self.read()
        if settings is not None:
            self.dismiss(settings)

    @on(Button.Pressed, "#form-cancel")
    def action_dismiss_form(self) -> None:
        self.dismiss(None)
