"""The LR range test command: lr-find."""
from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from trickbag.cli.app import RecipeArgument, SetOption, flag
from trickbag.cli.info import plugins_header
from trickbag.cli.output import err, out, plain
from trickbag.errors import UserError
from trickbag.services import load_named_recipe

NOTHING_TO_APPLY = 3  # exit code: --apply found no recommendation on the curve


def run_verification(recipe, recommended: float, seeds: int, epochs: float | None, budget: float | None, quiet: bool):
    """The verification runs with a progress bar and, after the first epoch, a time estimate."""
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from trickbag.lr_range.verify import planned_epochs, verify

    total = planned_epochs(recipe, epochs, seeds)
    progress = Progress(TextColumn("[bold]verify"), BarColumn(), MofNCompleteColumn(), TextColumn("epochs"), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=err, transient=True, disable=quiet)
    task = progress.add_task("verify", total=total)
    started, told = time.perf_counter(), []

    def on_epoch() -> None:
        progress.advance(task)
        if not told and not quiet:
            each = time.perf_counter() - started
            told.append(each)
            err.print(plain(f"verify: 3 candidate LRs x {seeds} seed(s), up to {total} epochs at about {each:.1f}s each: "
                            f"at most {each * (total - 1):.0f}s more (pruning cuts it)"))

    with progress:
        return verify(recipe, recommended, seeds=seeds, epochs=epochs, budget=budget, on_epoch=on_epoch)


def print_verification(console, v) -> None:
    from rich.table import Table

    table = Table(title=f"verification: the recipe trained {v.epochs:g} epochs at each LR, seeds {', '.join(map(str, v.seeds))}")
    table.add_column("lr", justify="right")
    table.add_column("x recommended", justify="right")
    table.add_column("val_acc", justify="right")
    table.add_column("seconds", justify="right")
    for c in sorted(v.candidates, key=lambda c: c.lr):
        if c.pruned_at is not None:
            acc = f"pruned after epoch {c.pruned_at}"
        elif len(c.accuracies) > 1:
            acc = f"{100 * statistics.mean(c.accuracies):.2f} ± {100 * statistics.stdev(c.accuracies):.2f} %"
        else:
            acc = f"{100 * c.accuracies[0]:.2f} %"
        table.add_row(f"{c.lr:.3g}", f"{c.factor:g}", acc, f"{c.seconds:.0f}")
    console.print(table)
    w = v.winner
    if w is None:
        console.print(plain("verify: no candidate finished"))
        return
    margin = v.margin()
    by = f" by {margin:.2f} points over the next" if margin is not None else ""
    if w.factor == 1:
        console.print(plain(f"verified: the recommendation {w.lr:.3g} won{by}"))
    else:
        console.print(plain(f"verified: {w.lr:.3g} (x{w.factor:g} the recommendation {v.recommended:.3g}) won{by}"))


def check_outputs(target: Path, recipe_path: Path | None, name: str) -> None:
    """Refuse before sweeping, not after: an --out that is a file or cannot be written, and an
    --apply whose tuned copy cannot be written next to the recipe."""

    if target.exists() and not target.is_dir():
        raise UserError(f"--out '{target}' is a file, not a folder")
    probe = target if target.is_dir() else next((p for p in target.parents if p.exists()), Path.cwd())
    if not os.access(probe, os.W_OK):
        raise UserError(f"--out '{target}': cannot write in '{probe}'")
    if recipe_path is not None:
        folder = recipe_path.parent if Path(name).exists() else Path.cwd()  # a bundled recipe's copy goes to the cwd
        if not os.access(folder, os.W_OK):
            raise UserError(f"--apply: cannot write the tuned copy in '{folder}'")


def lr_find_command(
    recipe: RecipeArgument,
    # --start-lr / --end-lr: under torchrun, whose own parser mistakes --start for --start-method
    start: Annotated[float, typer.Option("--start", "--start-lr", help="First LR of the sweep.")] = 1e-7,
    end: Annotated[float, typer.Option("--end", "--end-lr", help="Last LR of the sweep.")] = 10.0,
    steps: Annotated[int, typer.Option(help="Training steps, one LR each.")] = 100,
    mode: Annotated[str, typer.Option(help="exp (log-spaced LRs) or linear.")] = "exp",
    diverge: Annotated[float, typer.Option(help="Stop when the smoothed loss exceeds this many times its best.")] = 4.0,
    smooth: Annotated[float, typer.Option(help="EMA factor of the smoothed loss (bias-corrected).")] = 0.98,
    set_: SetOption = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for lr_find.csv/.json/.png (default runs/<recipe>-lr-find-<time>).")] = None,
    as_json: Annotated[bool, flag("--json", help="Print the suggestions as JSON.")] = False,
    apply: Annotated[bool, flag("--apply", help="Write <recipe>.tuned.toml with the recommended (or verified) LR filled in (exit code 3 when there is none).")] = False,
    verify_: Annotated[bool, flag("--verify", help="Train the recipe at the recommendation, x1/2 and x2 (further out while an edge wins), prune losers by successive halving, report the winner.")] = False,
    verify_seeds: Annotated[int, typer.Option("--verify-seeds", help="Seeds per candidate LR (the recipe's seed, then the next ones).")] = 1,
    verify_epochs: Annotated[Optional[float], typer.Option("--verify-epochs", help="Epochs of each verification run (default: the recipe's).")] = None,
    verify_budget: Annotated[Optional[float], typer.Option("--verify-budget", help="Seconds after which no new candidate starts.")] = None,
) -> None:
    """LR range test: sweep the LR over the recipe's real training step, suggest LR bounds, restore everything."""
    from trickbag.engine.assemble import prepare_run
    from trickbag.lr_range.bounds import bound_edits
    from trickbag.lr_range.outputs import (
        apply_bounds,
        provenance,
        tuned_path,
        write_outputs,
    )
    from trickbag.lr_range.report import LiveSweep, print_suggestions
    from trickbag.lr_range.sweep import check_settings, sweep
    from trickbag.runs.folder import default_out_dir

    check_settings(start, end, steps, mode, diverge, smooth)
    if verify_ and (verify_seeds < 1 or (verify_epochs is not None and not 0 < verify_epochs <= 1e5)
                    or (verify_budget is not None and not verify_budget > 0)):
        raise UserError("--verify-seeds must be >= 1, --verify-epochs and --verify-budget > 0")
    path, loaded = load_named_recipe(recipe, set_)
    target = out_dir or default_out_dir(f"{path.stem}-lr-find")
    rank0 = os.environ.get("RANK", "0") == "0"
    check_outputs(target, path if apply else None, recipe)  # before the sweep, not after it
    run_ = prepare_run(loaded, target)
    if rank0:
        err.print(plugins_header(loaded))
    live = LiveSweep(err, steps) if rank0 and not as_json else None
    try:
        result = sweep(run_, start, end, steps, mode, diverge, smooth, on_step=live.update if live else None)
    except KeyboardInterrupt:
        if live:
            live.close()
        err.print("interrupted: model, optimizer and RNG restored; nothing written")
        raise typer.Exit(130) from None
    finally:
        if live:
            live.close()
        run_.release()
    if not rank0:
        return
    write_outputs(result, target, loaded.to_dict())
    s = result.suggestions
    if not as_json:
        print_suggestions(out, result)
        out.print(plain(f"files: {target}/lr_find.csv, lr_find.json, lr_find.png"))
    chosen, how = s.recommended, "trickbag lr-find --apply"
    verification = None
    if verify_ and s.recommended:
        try:
            verification = run_verification(loaded, s.recommended, verify_seeds, verify_epochs, verify_budget, quiet=as_json)
        except KeyboardInterrupt:
            err.print(plain(f"interrupted during the verification runs: the range test's files are in {target}; nothing applied"))
            raise typer.Exit(130) from None
        (target / "verify.json").write_text(json.dumps(verification.to_dict(), indent=2), encoding="utf-8")
        if verification.winner is not None:
            chosen, how = verification.winner.lr, "trickbag lr-find --verify --apply (the LR that won the verification runs)"
        if not as_json:
            print_verification(out, verification)
    # a bundled recipe lives inside the package: its tuned copy goes to the current folder instead
    where = tuned_path(Path.cwd() / path.name) if not Path(recipe).exists() else None
    base = s.base_lr if chosen and s.base_lr and s.base_lr < chosen else None
    source = provenance(result, target, chosen, base, how) if chosen else ""
    tuned = None
    if apply and chosen:
        # the enabled schedule trick says which of its options take the bounds (trickbag_lr_bounds)
        edits, notes = bound_edits(run_.pm, run_.context, chosen, base)
        for note in notes:
            out.print(plain(note))
        tuned = apply_bounds(path, edits, set_, where, source)
    if as_json:
        sys.stdout.write(json.dumps({**result.to_dict(), "out": str(target), "tuned_recipe": str(tuned) if tuned else None,
                                     "verification": verification.to_dict() if verification else None}, indent=2) + "\n")
    elif tuned:
        out.print(plain(f"tuned recipe: {tuned}"))
    if verify_ and not s.recommended:
        err.print(plain("--verify: no recommendation on this curve, nothing to verify; widen the sweep"))
    if apply and tuned is None:
        err.print(plain(f"--apply: no recommendation on this curve, nothing written; widen the sweep "
                        f"(--start {start / 100:g} --end {end * 10:g}) or give it more --steps"))
        raise typer.Exit(NOTHING_TO_APPLY)
