"""Without a recipe on the command line: pick one of the bundled recipes."""
from __future__ import annotations

from pathlib import Path

import tomllib
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList, Static
from textual.widgets.option_list import Option
from trickbag.errors import PluginError, UserError

from trickbag_tui.messages import RecipePicked


def bundled() -> dict[str, Path]:
    """The bundled recipes by name, sorted; tuned copies (``*.tuned*.toml``) are not recipes to offer."""
    from trickbag.services import bundled_recipes

    return {name: path for name, path in sorted(bundled_recipes().items()) if ".tuned" not in name}


class RecipePicker(Screen[None]):
    BINDINGS = [Binding("enter", "pick", "Open", show=True)]

    def __init__(self, overrides: list[str] | None = None) -> None:
        super().__init__()
        self.overrides = overrides or []
        self.recipes = bundled()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Pick a bundled recipe (or start with  trickbag tui RECIPE.toml)", id="picker-title")
        options = []
        for name, path in self.recipes.items():
            description = tomllib.loads(path.read_text(encoding="utf-8")).get("description", "")
            options.append(Option(Text.assemble((name, "bold"), "\n", (description, "dim")), id=name))
        yield OptionList(*options, id="picker")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.load(self.recipes[event.option.id])

    def action_pick(self) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is not None:
            self.load(self.recipes[options.get_option_at_index(options.highlighted).id])

    @work(thread=True, exclusive=True, group="pick")
    def load(self, path: Path) -> None:
        """Loading validates the recipe and imports its tricks: off the UI thread."""
        from trickbag.recipe import load_recipe

        try:
            self.app.post_message(RecipePicked(path, load_recipe(path, self.overrides)))
        except (UserError, PluginError) as exc:
            self.app.post_message(RecipePicked(path, None, str(exc)))
