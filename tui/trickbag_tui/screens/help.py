"""``?``: every key, read from the bindings themselves (so the help cannot drift from them), and
the keyboard flow from range test to training."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

FLOW = (
    "r  run the range test; the curve draws live (esc cancels it)\n"
    "←→ move the cursor along the curve; b / m set base_lr / max_lr there\n"
    "s  save <recipe>.tuned.toml; 2 previews the schedule with the bounds\n"
    "4  open the Train tab; l launches the run; x stops it (epochs are kept)"
)

KEY_NAMES = {"left": "←", "right": "→", "shift+left": "shift+←", "shift+right": "shift+→", "escape": "esc", "question_mark": "?"}


def keys_table(title: str, bindings: list[Binding]) -> Table:
    """The footer's bindings (``show``) and the hidden ones that have a ``tooltip`` (no room in the
    footer), with that long text; neighbours that share a description (← and →) share a row."""
    table = Table(title=title, title_justify="left", title_style="bold", box=None, show_header=False, padding=(0, 2, 0, 1))
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("what")
    rows: list[tuple[list[str], str, str]] = []
    for b in bindings:
        if not (b.show or b.tooltip) or not b.description:
            continue
        keys = [KEY_NAMES.get(k, k) for k in b.key.split(",")]
        if rows and rows[-1][1] == b.description:
            rows[-1][0].extend(keys)
        else:
            rows.append((keys, b.description, b.tooltip or b.description))
    for keys, _, text in rows:
        table.add_row(" ".join(keys) if all(len(k) == 1 for k in keys) else " / ".join(keys), text)
    return table


def as_bindings(items) -> list[Binding]:
    return [b if isinstance(b, Binding) else Binding(*b) for b in items]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, sections: list[tuple[str, list[Binding]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help") as scroll:
            scroll.border_title = "trickbag keys"
            yield Static(Text(FLOW), classes="help-flow")
            for title, bindings in self.sections:
                yield Static(keys_table(title, bindings))
            yield Static(Text("esc, ? or q closes this help", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
