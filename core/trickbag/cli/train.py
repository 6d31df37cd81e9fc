"""Commands that train or open the terminal UI: run, tui."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from trickbag.cli.app import SetOption, flag
from trickbag.cli.info import plugins_header
from trickbag.cli.output import err, out, plain, quiet_logging
from trickbag.errors import UserError
from trickbag.services import load_named_recipe, resume_recipe


def run(
    recipe: Annotated[Optional[str], typer.Argument(help="Recipe file, or the name of a bundled recipe.")] = None,
    set_: SetOption = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default runs/<recipe>-<time>).")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the interrupted run in this folder.")] = None,
    epochs: Annotated[Optional[float], typer.Option("--epochs", help="With --resume: train to this many epochs instead (extends a finished run).")] = None,
    quiet: Annotated[bool, flag("--quiet", "-q", help="No live progress bar (epoch rows and the summary still print).")] = False,
) -> None:
    """Train a recipe: progress bar, one metrics row per epoch, checkpoint every epoch."""
    from trickbag.cli.progress import ProgressBar
    from trickbag.engine.loop import fit
    from trickbag.runs.checkpoint import CHECKPOINT
    from trickbag.runs.folder import default_out_dir

    if resume is not None:
        if recipe is not None or set_:
            raise UserError("--resume takes the recipe saved in the run folder; drop RECIPE and --set (--epochs extends the run)")
        loaded, target = resume_recipe(resume, epochs), resume
    else:
        if epochs is not None:
            raise UserError("--epochs goes with --resume; for a new run use --set training.epochs=N")
        if recipe is None:
            raise UserError("missing RECIPE (a TOML file or a bundled recipe name; see `trickbag recipes`)")
        path, loaded = load_named_recipe(recipe, set_)
        target = out_dir or default_out_dir(path.stem)
    rank0 = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 talks
    # the plugins header prints when training starts: bad input found while preparing the run
    # stays the one line on stderr
    bar = ProgressBar(err, live=not quiet, header=plugins_header(loaded)) if rank0 else None
    try:
        summary = fit(loaded, target, resume=resume is not None, observers=[bar] if bar else [])
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        if (target / CHECKPOINT).exists():
            err.print(plain(f"interrupted: finished epochs are kept in {target}; continue with  trickbag run --resume {target}"))
        else:
            err.print(plain(f"interrupted before the first epoch finished: nothing to keep yet; "
                            f"trickbag run --resume {target} starts it again from epoch 1"))
        raise typer.Exit(130) from None
    finally:
        if bar is not None:
            bar.close()
    if rank0:
        final = summary["final_val_acc"]
        accuracy = f"best val_acc {summary['best_val_acc']:.4f}, final val_acc {final:.4f}" if final is not None else "no epoch trained"
        out.print(plain(f"done: {accuracy}, {summary['seconds']:.1f}s training, run folder {target}"))


def tui(
    recipe: Annotated[Optional[str], typer.Argument(help="Recipe file, the name of a bundled recipe, or a run folder (its curves in the Train tab).")] = None,
    set_: SetOption = None,
) -> None:
    """The terminal UI: live LR range test, schedule preview, momentum time constants, training curves."""

    try:
        from trickbag_tui.app import run_app
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("trickbag_tui", "textual", "textual_plotext"):
            raise UserError(f"the terminal UI is not installed ({exc.name} missing): pip install ./tui from a trickbag checkout") from None
        raise

    opened = None
    if recipe and Path(recipe).is_dir():  # a run folder: its recipe, and its curves in the Train tab
        from trickbag.runs.folder import RECIPE
        from trickbag.runs.summary import read_run

        if set_:
            raise UserError(f"'{recipe}' is a run folder: it opens with the recipe it ran; drop --set")
        opened = Path(recipe)
        read_run(opened)  # not a run folder: one line, before the screen opens
        recipe = str(opened / RECIPE)
    path, loaded = load_named_recipe(recipe, set_) if recipe else (None, None)  # bad input fails here, before the screen opens
    quiet_logging()  # the screen shows messages its own way; lines on stderr would tear it
    run_app(path, loaded, set_ or [], opened)
