"""The ``trickbag`` command line (Typer). Bad input exits with code 2 and one line, never a traceback."""
from __future__ import annotations

import functools
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console

from trickbag import __version__
from trickbag.errors import PluginError, UserError
from trickbag.services import bundled_recipes, resolve_recipe

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False, help="trickbag: train PyTorch models; every trick is a plugin.")
err = Console(stderr=True, highlight=False, soft_wrap=True)  # one error = one line, never wrapped
out = Console(highlight=False, soft_wrap=True)

SetOption = Annotated[
    Optional[list[str]], typer.Option("--set", "-s", help="Override a recipe value: section.key=value (repeatable).")
]


def guarded(command: Callable) -> Callable:
    """Turn user mistakes into ``error: ...`` and exit code 2, a raising plugin into exit code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            err.print(f"[red]error:[/red] {exc}", markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except PluginError as exc:
            err.print(f"[red]error:[/red] {exc}", markup=True, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def plugins_header(recipe=None) -> str:
    from trickbag.plugins import load_plugins

    catalog = load_plugins()
    enabled = set(recipe.enabled_tricks()) if recipe is not None else set()
    parts = [f"{name} {t.version}" + (" \\[on]" if name in enabled else "") for name, t in sorted(catalog.tricks.items())]
    return "plugins: " + (", ".join(parts) if parts else "none installed")


@app.command()
@guarded
def run(
    recipe: Annotated[Optional[str], typer.Argument(help="Recipe file, or the name of a bundled recipe.")] = None,
    set_: SetOption = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default runs/<recipe>-<time>).")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the interrupted run in this folder.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a recipe: progress bar, one metrics row per epoch, checkpoint every epoch."""
    from trickbag.engine.loop import fit
    from trickbag.cli.progress import ProgressBar
    from trickbag.recipe import load_recipe
    from trickbag.runs.folder import RECIPE, default_out_dir

    if resume is not None:
        if recipe is not None or set_:
            raise UserError("--resume takes the recipe saved in the run folder; drop RECIPE and --set")
        if not (resume / RECIPE).exists():
            raise UserError(f"--resume '{resume}' is not a run folder (no {RECIPE})")
        loaded, target = load_recipe(resume / RECIPE), resume
    else:
        if recipe is None:
            raise UserError("missing RECIPE (a TOML file or a bundled recipe name; see `trickbag recipes`)")
        path = resolve_recipe(recipe)
        loaded = load_recipe(path, set_)
        target = out_dir or default_out_dir(path.stem)
    rank0 = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 talks
    if rank0:
        err.print(plugins_header(loaded))
    bar = None if quiet or not rank0 else ProgressBar(err)
    try:
        summary = fit(loaded, target, resume=resume is not None, observers=[bar] if bar else [])
    except KeyboardInterrupt:
        err.print(f"interrupted: finished epochs are kept; continue with  trickbag run --resume {target}")
        raise typer.Exit(130) from None
    finally:
        if bar is not None:
            bar.close()
    if rank0:
        out.print(f"done: best val_acc {summary['best_val_acc']:.4f}, final val_acc {summary['final_val_acc']:.4f}, "
                  f"{summary['seconds']:.1f}s training, run folder {target}")


@app.command("lr-find")
@guarded
def lr_find_command(
    recipe: Annotated[str, typer.Argument(help="Recipe file, or the name of a bundled recipe.")],
    # --start-lr / --end-lr: under torchrun, whose own parser mistakes --start for --start-method
    start: Annotated[float, typer.Option("--start", "--start-lr", help="First LR of the sweep.")] = 1e-7,
    end: Annotated[float, typer.Option("--end", "--end-lr", help="Last LR of the sweep.")] = 10.0,
    steps: Annotated[int, typer.Option(help="Training steps, one LR each.")] = 100,
    mode: Annotated[str, typer.Option(help="exp (log-spaced LRs) or linear.")] = "exp",
    diverge: Annotated[float, typer.Option(help="Stop when the smoothed loss exceeds this many times its best.")] = 4.0,
    smooth: Annotated[float, typer.Option(help="EMA factor of the smoothed loss (bias-corrected).")] = 0.98,
    set_: SetOption = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for lr_find.csv/.json/.png (default runs/<recipe>-lr-find-<time>).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the suggestions as JSON.")] = False,
    apply: Annotated[bool, typer.Option("--apply", help="Write <recipe>.tuned.toml with the recommended LR filled in.")] = False,
) -> None:
    """LR range test: sweep the LR over the recipe's real training step, suggest LR bounds, restore everything."""
    from trickbag.lr_range.sweep import check_settings, sweep
    from trickbag.lr_range.outputs import apply_bounds, tuned_path, write_outputs
    from trickbag.lr_range.report import LiveSweep, print_suggestions
    from trickbag.recipe import load_recipe
    from trickbag.runs.folder import default_out_dir
    from trickbag.engine.assemble import prepare_run

    check_settings(start, end, steps, mode, diverge, smooth)
    path = resolve_recipe(recipe)
    loaded = load_recipe(path, set_)
    target = out_dir or default_out_dir(f"{path.stem}-lr-find")
    rank0 = os.environ.get("RANK", "0") == "0"
    if rank0:
        err.print(plugins_header(loaded))
    run_ = prepare_run(loaded, target)
    live = LiveSweep(err, steps) if rank0 and not as_json else None
    try:
        result = sweep(run_, start, end, steps, mode, diverge, smooth, on_step=live.update if live else None)
    except KeyboardInterrupt:
        err.print("interrupted: model, optimizer and RNG restored; nothing written")
        raise typer.Exit(130) from None
    finally:
        if live:
            live.close()
    if not rank0:
        return
    write_outputs(result, target, loaded.to_dict())
    s = result.suggestions
    # a bundled recipe lives inside the package: its tuned copy goes to the current folder instead
    where = tuned_path(Path.cwd() / path.name) if not Path(recipe).exists() else None
    tuned = apply_bounds(path, s.recommended, s.base_lr, set_, where) if apply and s.recommended else None
    if as_json:
        sys.stdout.write(json.dumps({**result.to_dict(), "out": str(target), "tuned_recipe": str(tuned) if tuned else None}, indent=2) + "\n")
        return
    print_suggestions(out, result)
    out.print(f"files: {target}/lr_find.csv, lr_find.json, lr_find.png")
    if apply and tuned is None:
        out.print("--apply: no recommendation on this curve, nothing written")
    elif tuned:
        out.print(f"tuned recipe: {tuned}")


@app.command()
@guarded
def momentum(
    recipe: Annotated[str, typer.Argument(help="Recipe file, or the name of a bundled recipe.")],
    set_: SetOption = None,
) -> None:
    """Momentum time constants T = -1/ln(beta) in steps and in epochs of this recipe, with warnings."""
    from trickbag.momentum.constants import momentum_rows
    from trickbag.momentum.report import print_momentum
    from trickbag.recipe import load_recipe

    loaded = load_recipe(resolve_recipe(recipe), set_)
    print_momentum(out, momentum_rows(loaded))


@app.command()
@guarded
def tui(
    recipe: Annotated[Optional[str], typer.Argument(help="Recipe file, or the name of a bundled recipe.")] = None,
    set_: SetOption = None,
) -> None:
    """The terminal UI: live LR range test, schedule preview, momentum time constants, training curves."""
    from trickbag.recipe import load_recipe
    try:
        from trickbag_tui.app import run_app
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("trickbag_tui", "textual", "textual_plotext"):
            raise UserError(f"the terminal UI is not installed ({exc.name} missing): pip install ./tui from a trickbag checkout") from None
        raise

    path = resolve_recipe(recipe) if recipe else None
    loaded = load_recipe(path, set_) if path else None  # bad input fails here, before the screen opens
    run_app(path, loaded, set_ or [])


@app.command()
@guarded
def check(
    recipe: Annotated[str, typer.Argument(help="Recipe file, or the name of a bundled recipe.")],
    set_: SetOption = None,
) -> None:
    """Validate a recipe and its tricks (data, model, optimizer, schedules) without training; print it resolved."""
    from trickbag.recipe import load_recipe
    from trickbag.engine.assemble import prepare_run

    loaded = load_recipe(resolve_recipe(recipe), set_)
    run = prepare_run(loaded)  # builds everything a run needs, so a bad model option or data path shows here
    err.print(plugins_header(loaded))
    err.print(f"ok: {run.train.info.train_size} training / {run.train.info.val_size} validation samples, "
              f"{sum(p.numel() for p in run.raw_model.parameters()):,} parameters, {run.context.steps_per_epoch} steps per epoch")
    sys.stdout.write(loaded.to_toml())


@app.command()
@guarded
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """List installed tricks: name, version, hooks implemented, options with defaults."""
    from trickbag.plugins import load_plugins

    catalog = load_plugins()
    rows = []
    for name, t in sorted(catalog.tricks.items()):
        schema = t.spec.options.model_json_schema()
        options = {
            key: {"type": prop.get("type", prop.get("anyOf", "?")), "default": prop.get("default"), "description": prop.get("description", ""),
                  **{k: prop[k] for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum") if k in prop}}
            for key, prop in schema.get("properties", {}).items()
        }
        rows.append({"name": name, "distribution": t.distribution, "version": t.version, "summary": t.spec.summary, "hooks": t.hooks, "options": options})
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not rows:
        out.print("no tricks installed (pip install a trickbag-<trick> package, or check TRICKBAG_PLUGINS)")
    for row in rows:
        out.print(f"[bold]{row['name']}[/bold] {row['version']}  {row['summary']}")
        out.print(f"  hooks: {', '.join(h.removeprefix('trickbag_') for h in row['hooks'])}")
        for key, opt in row["options"].items():
            out.print(f"  {key} = {opt['default']!r}  {opt['description']}")


@app.command()
@guarded
def recipes() -> None:
    """List the bundled recipes with their one-line descriptions."""
    for name, path in sorted(bundled_recipes().items()):
        description = tomllib.loads(path.read_text(encoding="utf-8")).get("description", "")
        out.print(f"[bold]{name:<24}[/bold] {description}")


@app.command()
def version() -> None:
    """Print the version."""
    out.print(f"trickbag {__version__}")


def main() -> None:
    app()
