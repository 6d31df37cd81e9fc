"""``trickbag tui [RECIPE]``: a thin Textual app that pushes the main screen (or the recipe picker)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App
from textual.binding import Binding
from textual.screen import ModalScreen

from trickbag_tui.messages import RecipePicked
from trickbag_tui.session import Session, SweepSettings

if TYPE_CHECKING:
    from trickbag.engine.assemble import Run
    from trickbag.recipe import Recipe


class TrickbagApp(App[None]):
    CSS_PATH = Path(__file__).with_name("trickbag.tcss")  # absolute: subclasses elsewhere find it too
    TITLE = "trickbag"
    ENABLE_COMMAND_PALETTE = False  # every key is in the footer and behind ?
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?", tooltip="this help"),
        Binding("q", "quit", "Quit", tooltip="quit (a range test or run stops at its next step)"),
    ]

    def __init__(
        self,
        path: Path | None = None,
        recipe: Recipe | None = None,
        overrides: list[str] | tuple[str, ...] = (),
        *,
        sweep: SweepSettings | None = None,
        runs_root: Path = Path("runs"),
        out_dir: Path | None = None,
        run: Run | None = None,
        observers: list[object] | None = None,
        opened: Path | None = None,
    ) -> None:
        """``opened``: a run folder whose recipe this is, shown in the Train tab; ``sweep``: the range test's first settings; ``runs_root``/``out_dir``: where launched runs
        go (default ``runs/<name>-<time>``); ``run``: an already prepared run of ``recipe`` (tests share
        one); ``observers``: extra training observers."""
        super().__init__()
        self.overrides = list(overrides)
        self.options = dict(sweep=sweep, runs_root=runs_root, out_dir=out_dir, observers=observers)
        self.session: Session | None = None
        if recipe is not None:
            self.session = Session(path, recipe, self.overrides, run=run, opened=opened, **self.options)

    def on_mount(self) -> None:
        if self.session is not None:
            self.open_session()
        else:
            from trickbag_tui.screens.picker import RecipePicker

            self.push_screen(RecipePicker(self.overrides))

    def open_session(self) -> None:
        from trickbag_tui.screens.main import MainScreen

        self.sub_title = self.session.name
        self.push_screen(MainScreen(self.session))

    def on_recipe_picked(self, message: RecipePicked) -> None:
        if message.recipe is None:
            self.notify(message.error or "cannot load", title=message.path.name, severity="error")
            return
        self.session = Session(message.path, message.recipe, self.overrides, **self.options)
        self.pop_screen()
        self.open_session()

    def action_help(self) -> None:
        from trickbag_tui.screens.help import HelpScreen, as_bindings

        screen = self.screen
        if isinstance(screen, ModalScreen):  # no help over a dialog (or over itself)
            return
        sections = screen.help_sections() if hasattr(screen, "help_sections") else [("Keys", as_bindings(self.BINDINGS))]
        self.push_screen(HelpScreen(sections))

    async def action_quit(self) -> None:
        self.stop_workers()
        self.exit()

    def on_unmount(self) -> None:
        self.stop_workers()

    def stop_workers(self) -> None:
        """Thread workers cannot be killed: ask the sweep and the run to stop at their next step,
        so quitting never waits for a whole run (finished epochs are kept)."""
        if self.session is not None:
            self.session.stop_all()


def run_app(path: Path | None, recipe: Recipe | None, overrides: list[str], opened: Path | None = None) -> None:
    """What ``trickbag tui`` calls: the recipe already loaded and validated (or none: pick one);
    ``opened``: the run folder it came from."""
    app = TrickbagApp(path, recipe, overrides, opened=opened)
    try:
        app.run()
    finally:
        app.stop_workers()
        print_launched(app.session)


def print_launched(session: Session | None) -> None:
    """After the screen is gone: where the runs launched from it are, and how to continue them."""
    if session is None or not session.launched:
        return
    from rich.console import Console
    from rich.text import Text

    from trickbag_tui.session import shown_path

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    for run in session.launched:
        where = shown_path(run["out_dir"])
        line = f"run {where}: {run['status']}, {run['epochs']} epoch(s) finished"
        if run.get("val_acc") is not None:
            line += f", val_acc {run['val_acc']:.4f}"
        if run["status"] != "done":
            line += f"; continue with  trickbag run --resume {where}"
        console.print(Text(line))
