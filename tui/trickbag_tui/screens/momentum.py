"""Tab 3, momentum time constants: T = -1/ln(beta) in steps and in epochs of this recipe, for the
optimizer's betas and the talk's reference ones (the same table as ``trickbag momentum RECIPE``)."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from trickbag.errors import PluginError, UserError
from trickbag.momentum.constants import momentum_rows
from trickbag.momentum.report import caption, format_epochs, format_steps

from trickbag_tui.session import Session


class MomentumPanel(Vertical):
    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.rows: list = []

    def compose(self) -> ComposeResult:
        table = DataTable(id="momentum-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("beta", "source", "T steps", "T epochs", "warning")
        yield table
        yield Static("waiting for the prepared run...", id="momentum-caption")

    def on_mount(self) -> None:
        self.fill()

    def unavailable(self, why: str) -> None:
        self.query_one("#momentum-caption", Static).update(Text(why, style="red"))

    def fill(self) -> None:
        run = self.session.run
        if run is None:
            return
        try:
            # the prepared run's data: no second load
            self.rows = momentum_rows(self.session.recipe, run.train)
        except (UserError, PluginError) as exc:
            self.query_one("#momentum-caption", Static).update(Text(str(exc), style="red"))
            return
        table = self.query_one(DataTable)
        table.clear()
        for row in self.rows:
            style = "bold" if row["source"] != "reference" else ""
            table.add_row(
                Text(f"{row['beta']:g}", style=style, justify="right"), Text(row["source"], style=style),
                Text(format_steps(row["T_steps"]), style=style, justify="right"),
                Text(format_epochs(row["T_epochs"]), style=style, justify="right"),
                Text(row["warning"] or "", style="yellow"),
            )
        self.query_one("#momentum-caption", Static).update(Text(caption(self.rows), style="dim"))
