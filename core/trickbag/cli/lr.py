"""The LR range test command: lr-find."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from trickbag.cli.app import RecipeArgument, SetOption, flag
from trickbag.cli.info import plugins_header
from trickbag.cli.output import err, out, plain
from trickbag.services import load_named_recipe

NOTHING_TO_APPLY = 3  # exit code: --apply found no recommendation on the curve


def check_outputs(target: Path, recipe_path: Path | None, name: str) -> None:
    """Refuse before sweeping, not after: an --out that is a file or cannot be written, and an
    --apply whose tuned copy cannot be written next to the recipe."""
    from trickbag.errors import UserError

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
    apply: Annotated[bool, flag("--apply", help="Write <recipe>.tuned.toml with the recommended LR filled in (exit code 3 when there is none).")] = False,
) -> None:
    """LR range test: sweep the LR over the recipe's real training step, suggest LR bounds, restore everything."""
    from trickbag.engine.assemble import prepare_run
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
    # a bundled recipe lives inside the package: its tuned copy goes to the current folder instead
    where = tuned_path(Path.cwd() / path.name) if not Path(recipe).exists() else None
    source = provenance(result, target, s.recommended, s.base_lr, "trickbag lr-find --apply") if s.recommended else ""
    tuned = apply_bounds(path, s.recommended, s.base_lr, set_, where, source) if apply and s.recommended else None
    if as_json:
        sys.stdout.write(json.dumps({**result.to_dict(), "out": str(target), "tuned_recipe": str(tuned) if tuned else None}, indent=2) + "\n")
    else:
        print_suggestions(out, result)
        out.print(plain(f"files: {target}/lr_find.csv, lr_find.json, lr_find.png"))
        if tuned:
            out.print(plain(f"tuned recipe: {tuned}"))
    if apply and tuned is None:
        err.print(plain(f"--apply: no recommendation on this curve, nothing written; widen the sweep "
                        f"(--start {start / 100:g} --end {end * 10:g}) or give it more --steps"))
        raise typer.Exit(NOTHING_TO_APPLY)
