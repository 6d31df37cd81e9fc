"""The main screen: five tabs on one recipe, switched with 1-5. It prepares the recipe's run once
in a worker and tells the tabs when it is ready or when the bounds change."""
from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Header, TabbedContent, TabPane, Tabs
from trickbag.errors import PluginError, UserError

from trickbag_tui.messages import BoundsChanged, RunReady, TunedSaved
from trickbag_tui.screens.lr_find import LRFindPanel
from trickbag_tui.screens.momentum import MomentumPanel
from trickbag_tui.screens.schedule import SchedulePanel
from trickbag_tui.screens.train import TrainPanel
from trickbag_tui.screens.tricks import TricksPanel
from trickbag_tui.session import Session

TABS = (  # (id, key, label)
    ("lr", "1", "LR range test"),
    ("schedule", "2", "Schedule"),
    ("momentum", "3", "Momentum"),
    ("train", "4", "Train"),
    ("tricks", "5", "Tricks"),
)
PANELS = {"lr": LRFindPanel, "schedule": SchedulePanel, "momentum": MomentumPanel, "train": TrainPanel, "tricks": TricksPanel}


class MainScreen(Screen[None]):
    BINDINGS = [Binding(key, f"tab('{tab}')", label, show=False) for tab, key, label in TABS]

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="train" if self.session.opened is not None else "lr"):
            for tab, key, label in TABS:
                with TabPane(f"{key} {label}", id=tab):
                    yield PANELS[tab](self.session, id=f"{tab}-panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Tabs).can_focus = False  # keys follow the tab's content; 1-5 switch tabs
        self.focus_tab("train" if self.session.opened is not None else "lr")
        if self.session.run is None:
            self.prepare()
        else:
            self.post_message(RunReady())

    @work(thread=True, exclusive=True, group="prepare")
    def prepare(self) -> None:
        """Data, model, optimizer and tricks, once: the range test sweeps this run, the previews read it."""
        try:
            self.session.ensure_run()
        except (UserError, PluginError) as exc:
            self.post_message(RunReady(str(exc)))
        except Exception as exc:
            self.post_message(RunReady(f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(RunReady())

    # -- tabs --------------------------------------------------------------------------------

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # A burst of tab keys (3 5 1 in 0.1 s) leaves activations queued for tabs already left.
        # Focusing a widget in one of those would make TabbedContent switch back to it, whose own
        # event then switches again: an endless cycle. Only the tab that is active now takes focus.
        if event.pane.id == self.query_one(TabbedContent).active:
            self.focus_tab(event.pane.id)

    def focus_tab(self, tab: str) -> None:
        """Focus the tab's main widget, so the footer shows that tab's keys."""
        pane = self.query_one(f"#{tab}", TabPane)
        tables = pane.query(DataTable)
        target: Widget = tables.first() if tables else pane.query_one("LRCurve, SchedulePanel, TrainPanel")
        target.focus()
        if tab == "schedule":
            self.query_one(SchedulePanel).redraw()

    # -- news for the tabs -------------------------------------------------------------------

    def on_run_ready(self, message: RunReady) -> None:
        self.query_one(LRFindPanel).run_ready(message.error)
        if message.error:
            self.notify(message.error, title="cannot prepare the run", severity="error", timeout=30)
            self.query_one(SchedulePanel).unavailable(message.error)
            self.query_one(MomentumPanel).unavailable(message.error)
            return
        self.query_one(SchedulePanel).redraw()
        self.query_one(MomentumPanel).fill()

    def on_bounds_changed(self, message: BoundsChanged) -> None:
        self.query_one(SchedulePanel).redraw()
        self.query_one(TrainPanel).update_plan()

    def on_tuned_saved(self, message: TunedSaved) -> None:
        self.query_one(TrainPanel).update_plan()

    def help_sections(self) -> list:
        from trickbag_tui.screens.help import as_bindings

        return [
            ("Range test (tab 1)", as_bindings(LRFindPanel.BINDINGS)),
            ("Train (tab 4)", as_bindings(TrainPanel.BINDINGS)),
            ("Everywhere", [Binding("1,2,3,4,5", "", "Tabs", tooltip="tabs: " + ", ".join(label for *_, label in TABS))]
             + as_bindings(self.app.BINDINGS)),
        ]
