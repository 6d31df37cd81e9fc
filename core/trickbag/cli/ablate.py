"""``trickbag ablate``: what each trick of a recipe buys, over seeds, on this machine, a Ray cluster
or any scheduler."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from trickbag.cli.app import SetOption
from trickbag.cli.output import err, out, plain


def ablate(
    recipe: Annotated[Optional[str], typer.Argument(help="Recipe file, or the name of a bundled recipe.")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="each | cumulative (default) | leave-one-out")] = None,
    vary: Annotated[Optional[list[str]], typer.Option("--vary", help="A grid instead of a mode: KEY=V1,V2,... (repeatable).")] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per variant (0, 1, ...).")] = 3,
    epochs: Annotated[Optional[float], typer.Option("--epochs", help="Train every run this many epochs instead of the recipe's.")] = None,
    set_: SetOption = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Ablation folder (default runs/<recipe>-ablate-<mode>).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Runs at a time (local: worker processes sharing the cores; ray: over the cluster).")] = 1,
    backend: Annotated[str, typer.Option("--backend", help="local (this machine) | ray (a Ray cluster; pip install 'trickbag[ray]').")] = "local",
    gpus_per_run: Annotated[float, typer.Option("--gpus-per-run", help="ray: GPUs each run asks the cluster for (e.g. 1, or 0.5 to share).")] = 0.0,
    print_commands: Annotated[bool, typer.Option("--print-commands", help="Train nothing: print the trickbag run command of every run, one per line (for a Slurm array or any scheduler).")] = False,
    collect_dir: Annotated[Optional[Path], typer.Option("--collect", help="Train nothing: build the table and plot from the run folders in this ablation folder.")] = None,
) -> None:
    """Train the recipe's variants (tricks switched off by --mode, or a --vary grid) over seeds;
    print and write the table (ablation.jsonl, table.md) and ablation.png. Rerunning the command
    resumes it."""
    from trickbag.ablate.backends import check_backend
    from trickbag.ablate.live import AblationProgress
    from trickbag.ablate.report import finish, summary_line
    from trickbag.ablate.runner import Plan, prepare, run_ablation, write_rows
    from trickbag.ablate.variants import GRID
    from trickbag.errors import UserError
    from trickbag.services import resolve_recipe

    if collect_dir is not None:
        if recipe is not None or vary or mode or set_ or print_commands:
            raise UserError("--collect reads everything from the ablation folder; drop RECIPE, --mode, --vary, --set and --print-commands")
        _collect(collect_dir)
        return
    if recipe is None:
        raise UserError("missing RECIPE (a TOML file or a bundled recipe name; see `trickbag recipes`), or --collect DIR")
    if vary and mode:
        raise UserError("--mode and --vary: give one (--vary makes a grid over recipe keys, --mode switches tricks off)")
    check_backend(backend, jobs)
    if gpus_per_run < 0 or (gpus_per_run and backend != "ray"):
        raise UserError(f"--gpus-per-run {gpus_per_run:g}: a number >= 0, with --backend ray (locally every run uses the recipe's device)")
    mode = GRID if vary else (mode or "cumulative")
    path = resolve_recipe(recipe)
    target = out_dir or Path("runs") / f"{path.stem}-ablate-{mode}"
    plan = Plan(path, tuple(set_ or ()), mode, seeds, epochs, target, tuple(vary or ()))
    if print_commands:
        from trickbag.ablate.collect import commands

        todo, _ = prepare(plan)  # writes the folder's description, so that --collect can read it
        for line in commands(plan, todo, recipe):
            out.print(plain(line))
        err.print(plain(f"{len(todo) * seeds} runs; when they are done: trickbag ablate --collect {target}"))
        return
    live = AblationProgress(err)
    try:
        with live:
            todo, results = run_ablation(plan, live.on_run, jobs=jobs, backend=backend, gpus_per_run=gpus_per_run)
    except KeyboardInterrupt:
        err.print(plain(f"interrupted: finished runs are kept in {target} (interrupted ones keep their epochs); "
                        f"run the same command again to continue"))
        raise typer.Exit(130) from None
    write_rows(target, results)
    summaries = finish(out, target, todo, results, f"{path.stem}: {mode}, {seeds} seeds", list(vary or ()))
    err.print(plain(f"done: {live.summary()}; {summary_line(summaries, target)}"))


def _collect(folder: Path) -> None:
    from trickbag.ablate.collect import collect
    from trickbag.ablate.report import finish, summary_line
    from trickbag.ablate.runner import write_rows

    header, todo, rows, missing = collect(folder)
    if missing:
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        err.print(plain(f"warning: {len(missing)} runs missing or unfinished, left out of the table: {shown}"))
    write_rows(folder, rows)
    summaries = finish(out, folder, todo, rows, f"{header.get('recipe', folder.name)}: {header.get('mode')}, collected", header.get("vary", []))
    err.print(plain(f"collected {len(rows)} runs; {summary_line(summaries, folder)}"))
