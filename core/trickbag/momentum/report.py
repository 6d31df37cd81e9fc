"""The momentum time-constant table in the terminal (rich) and its text pieces, shared with the TUI."""
from __future__ import annotations

from typing import TYPE_CHECKING

from trickbag.momentum.constants import EPOCH_FRACTION, MomentumRow

if TYPE_CHECKING:
    from rich.console import Console


def format_steps(t: float) -> str:
    return f"{t:.2f}" if t < 10 else f"{t:,.1f}"


def format_epochs(t: float) -> str:
    return f"{t:.3g}" if t < 1000 else f"{t:,.0f}"


def caption(rows: list[MomentumRow]) -> str:
    spe, run = (rows[0]["steps_per_epoch"], rows[0]["run_steps"]) if rows else (0, 0)
    return (f"T = -1/ln(beta): steps until a gradient weighs 1/e in the average. This recipe: {spe} steps "
            f"per epoch, {run} in the run. Warnings: T longer than the run (it never forgets its start), "
            f"or under {EPOCH_FRACTION:.0%} of an epoch (it hardly averages the gradient noise).")


def print_momentum(console: Console, rows: list[MomentumRow]) -> None:
    """The rows as a rich table, the recipe's betas first, warnings in the last column."""
    from rich.table import Table

    table = Table(title="momentum time constants", caption=caption(rows), caption_justify="left")
    table.add_column("beta", justify="right")
    table.add_column("source")
    table.add_column("T steps", justify="right")
    table.add_column("T epochs", justify="right")
    table.add_column("warning", style="yellow")
    for row in rows:
        table.add_row(
            f"{row['beta']:g}", row["source"], format_steps(row["T_steps"]), format_epochs(row["T_epochs"]), row["warning"] or "",
            style="bold" if row["source"] != "reference" else None,
        )
    console.print(table)
