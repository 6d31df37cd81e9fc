"""The ``trickbag`` command line (Typer): the app, its global options, and the error contract.

Exit codes: 0 done; 1 a plugin failed (the message names trick, distribution and hook); 2 bad
input (recipe, option, path, checkpoint: one line naming the culprit, never a traceback); 3
``lr-find --apply`` found nothing to apply; 130 interrupted (Ctrl-C), finished work kept.

The commands live by subject: ``train.py`` (run, tui), ``lr.py`` (lr-find), ``info.py``
(check, plugins, recipes, momentum, version),
``schedule.py`` (schedule), ``ablate.py`` (ablate), ``compare.py`` (compare), ``listing.py`` (runs).
"""
from __future__ import annotations

import functools
from typing import Annotated, Callable, Optional

import typer

from trickbag import __version__
from trickbag.cli.output import err, labelled, out, setup_logging
from trickbag.errors import PluginError, UserError

# rich_markup_mode=None: click's plain help, which does not print <bool> after every flag
app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False, rich_markup_mode=None,
                  help="trickbag: train PyTorch models; every trick is a plugin.")

SetOption = Annotated[
    Optional[list[str]], typer.Option("--set", "-s", help="Override a recipe value: section.key=value (repeatable).")
]
RecipeArgument = Annotated[str, typer.Argument(help="Recipe file, or the name of a bundled recipe.")]


def flag(*names: str, help: str):
    """A boolean switch, shown in help without a value placeholder."""
    return typer.Option(*names, help=help, metavar="")


def guarded(command: Callable) -> Callable:
    """Turn user mistakes into ``error: ...`` and exit code 2, a raising plugin into exit code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            err.print(labelled("error", exc))
            raise typer.Exit(2) from None
        except PluginError as exc:
            err.print(labelled("error", exc))
            raise typer.Exit(1) from None

    return wrapper


def _print_version(value: bool) -> None:
    if value:
        out.print(f"trickbag {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True, metavar="")] = False,
) -> None:
    """trickbag: train PyTorch models; every trick is a plugin."""
    setup_logging()  # the engine's info lines (speed options ignored on this device...) and warnings


def _register() -> None:
    from trickbag.cli import ablate, compare, info, listing, lr, schedule, train

    for command in (train.run, lr.lr_find_command, ablate.ablate, compare.compare, listing.runs, info.momentum, schedule.schedule, train.tui, info.check, info.plugins, info.recipes, info.version):
        name = "lr-find" if command is lr.lr_find_command else command.__name__
        app.command(name)(guarded(command))


_register()


def main() -> None:
    app()
