"""``trickbag schedule``: the LR, momentum, batch size and gradient noise scale of a recipe over the
run, from the composed hooks, without training."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from trickbag.cli.app import RecipeArgument, SetOption
from trickbag.cli.output import err, out, plain
from trickbag.errors import UserError
from trickbag.services import load_named_recipe


def schedule(
    recipe: RecipeArgument,
    set_: SetOption = None,
    png: Annotated[Optional[Path], typer.Option("--png", help="Plot file (default <recipe>-schedule.png in the current folder).")] = None,
    csv_path: Annotated[Optional[Path], typer.Option("--csv", help="Also write every step (lr, momentum, batch size, g) to this CSV.")] = None,
    no_plot: Annotated[bool, typer.Option("--no-plot", help="Print the table only.", metavar="")] = False,
) -> None:
    """LR, momentum, batch size and noise scale g = lr(N/B - 1) over the run, as the recipe's tricks
    set them: a table here and a PNG, without training."""
    from trickbag.engine.timeline import recipe_timeline
    from trickbag.engine.timeline_report import plot_timeline, print_timeline, write_csv

    for target in (png, csv_path):
        if target is not None and not target.parent.is_dir():
            raise UserError(f"{target}: folder {target.parent} does not exist")
    path, loaded = load_named_recipe(recipe, set_)
    name = path.stem
    every = csv_path is not None
    t = recipe_timeline(loaded, points=None if every else 2000)
    tricks = ", ".join(loaded.enabled_tricks()) or "no tricks"
    print_timeline(out, t, f"{name}: {tricks}")
    if csv_path is not None:
        write_csv(t, csv_path)
        err.print(plain(f"wrote {csv_path} ({len(t.steps):,} steps)"))
    if not no_plot:
        target = png or Path(f"{name}-schedule.png")
        plot_timeline(t if not every else _thinned(t), target, f"{name}: {tricks}")
        err.print(plain(f"wrote {target}"))


def _thinned(t):
    """The plot needs no more than ~2000 points, even when the CSV holds every step."""
    import dataclasses

    if len(t.steps) <= 2000:
        return t
    keep = sorted({round(i * (len(t.steps) - 1) / 1999) for i in range(2000)})
    pick = lambda xs: None if xs is None else [xs[i] for i in keep]  # noqa: E731
    return dataclasses.replace(t, steps=pick(t.steps), progress=pick(t.progress), lr=pick(t.lr), momentum=pick(t.momentum),
                               batch_size=pick(t.batch_size), noise=pick(t.noise))
