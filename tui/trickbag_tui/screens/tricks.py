"""Tab 5, the tricks: installed plugins, which the recipe enables, and the highlighted one's
hooks and options (the recipe's value next to the default)."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static
from trickbag.plugins import InstalledTrick, load_plugins

from trickbag_tui.session import Session


def _show(value: object) -> str:
    return "-" if value is None else repr(value) if isinstance(value, str) else str(value)


class TricksPanel(Vertical):
    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.tricks: dict[str, InstalledTrick] = dict(sorted(load_plugins().tricks.items()))

    def compose(self) -> ComposeResult:
        table = DataTable(id="tricks-table", cursor_type="row")
        table.add_columns("trick", "version", "recipe", "summary")
        enabled = set(self.session.recipe.enabled_tricks())
        for name, trick in self.tricks.items():
            where = Text("on", style="bold green") if name in enabled else Text("off" if name in self.session.recipe.tricks else "", style="dim")
            summary = trick.spec.summary if len(trick.spec.summary) <= 34 else trick.spec.summary[:33] + "…"
            table.add_row(name, trick.version, where, summary, key=name)
        yield table
        with VerticalScroll(id="trick-detail"):
            yield Static(id="trick-options")

    def on_mount(self) -> None:
        if not self.tricks:
            self.query_one("#trick-options", Static).update("no tricks installed (pip install a trickbag-<trick> package)")
        else:
            self.show(next(iter(self.tricks)))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value in self.tricks:
            self.show(event.row_key.value)

    def show(self, name: str) -> None:
        trick = self.tricks[name]
        in_recipe = self.session.recipe.tricks.get(name)
        table = Table(box=None, padding=(0, 1), expand=True, show_edge=False)
        table.add_column("option", style="bold", no_wrap=True)
        table.add_column("recipe", no_wrap=True)
        table.add_column("default", style="dim", no_wrap=True)
        table.add_column("description", ratio=1)
        for key, info in trick.spec.options.model_fields.items():
            value = getattr(in_recipe, key) if in_recipe is not None else None
            table.add_row(key, _show(value) if in_recipe is not None else "", _show(info.default), info.description or "")
        hooks = ", ".join(h.removeprefix("trickbag_") for h in trick.hooks)
        head = Text.assemble((name, "bold"), f" {trick.version} ({trick.distribution}): {trick.spec.summary}\nhooks: ", (hooks, "cyan"))
        from rich.console import Group

        self.query_one("#trick-options", Static).update(Group(head, table))
