"""``trickbag ablate``: what each trick of a recipe buys (first increment: modes, seeds, resume, table)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from trickbag.cli.app import RecipeArgument, SetOption
from trickbag.cli.output import err, out, plain


def ablate(
    recipe: RecipeArgument,
    mode: Annotated[Optional[str], typer.Option("--mode", help="each | cumulative (default) | leave-one-out")] = None,
    vary: Annotated[Optional[list[str]], typer.Option("--vary", help="A grid instead of a mode: KEY=V1,V2,... (repeatable).")] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per variant (0, 1, ...).")] = 3,
    epochs: Annotated[Optional[float], typer.Option("--epochs", help="Train every run this many epochs instead of the recipe's.")] = None,
    set_: SetOption = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Ablation folder (default runs/<recipe>-ablate-<mode>).")] = None,
) -> None:
    """Train the recipe's variants (tricks switched off by --mode) over seeds; print and write the
    table (ablation.jsonl, table.md). Rerunning the command resumes it."""
    from trickbag.ablate.report import print_table, rows_of, write_table
    from trickbag.ablate.runner import Plan, run_ablation
    from trickbag.ablate.stats import summarize
    from trickbag.ablate.variants import GRID
    from trickbag.errors import UserError
    from trickbag.services import resolve_recipe

    if vary and mode:
        raise UserError("--mode and --vary: give one (--vary makes a grid over recipe keys, --mode switches tricks off)")
    mode = GRID if vary else (mode or "cumulative")
    path = resolve_recipe(recipe)
    target = out_dir or Path("runs") / f"{path.stem}-ablate-{mode}"
    plan = Plan(path, tuple(set_ or ()), mode, seeds, epochs, target, tuple(vary or ()))
    best: list[float] = []

    def told(row: dict, how: str, i: int, total: int) -> None:
        best.append(row["final_val_acc"])
        state = "diverged" if row["diverged"] else f"val acc {100 * row['final_val_acc']:.2f}%"
        err.print(plain(f"[{i}/{total}] {row['variant']} seed {row['seed']}: {state} ({how}); best so far {100 * max(best):.2f}%"))

    try:
        todo, results = run_ablation(plan, told)
    except KeyboardInterrupt:
        err.print(plain(f"interrupted: finished runs are kept in {target}; run the same command again to continue"))
        raise typer.Exit(130) from None
    baseline = next(v.name for v in todo if v.baseline)
    summaries = summarize(results, [v.name for v in todo], baseline)
    seconds: dict[str, list[float]] = {}
    for r in results:
        seconds.setdefault(r["variant"], []).append(r["seconds"])
    rows = rows_of(summaries, todo, {k: sum(v) / len(v) for k, v in seconds.items()})
    title = f"{path.stem}: {mode}, {seeds} seeds"
    print_table(out, rows, title)
    write_table(target / "table.md", rows, title)
    top = max(summaries, key=lambda s: s.mean)
    err.print(plain(f"done: {len(results)} runs in {target}; best variant {top.variant} at {top.mean:.2f}% (table.md, ablation.jsonl)"))
