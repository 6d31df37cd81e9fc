"""The ablation table: printed with rich and written as ``table.md``."""
from __future__ import annotations

import math
from pathlib import Path

from trickbag.ablate.stats import Summary
from trickbag.ablate.variants import Variant


def _pm(mean: float | None, half: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:+.2f} ± {half:.2f}" if half is not None and not math.isnan(half) else f"{mean:+.2f}"


def rows_of(summaries: list[Summary], todo: list[Variant], seconds: dict[str, float]) -> list[list[str]]:
    changed = {v.name: (" ".join(v.overrides) if not v.tricks_on and v.overrides and "enabled=false" not in v.overrides[0]
                        else "tricks on: " + ", ".join(v.tricks_on) if v.tricks_on else "every trick off") for v in todo}
    out = []
    for s in summaries:
        sd = "—" if math.isnan(s.sd) else f"{s.sd:.2f}"
        ci = "—" if math.isnan(s.ci) else f"± {s.ci:.2f}"
        out.append([s.variant, changed.get(s.variant, ""), f"{s.mean:.2f} ± {sd}", ci, _pm(s.delta, s.delta_ci),
                    str(s.n) + (f" ({s.diverged} diverged)" if s.diverged else ""), f"{seconds.get(s.variant, 0):.1f}"])
    return out


HEADER = ["variant", "tricks", "val acc % (mean ± sd)", "95% CI of the mean", "Δ vs baseline, points (paired, 95% CI)", "seeds", "s/run"]


def write_table(path: Path, rows: list[list[str]], title: str) -> None:
    lines = [f"# {title}", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    lines += ["", "Final validation accuracy per run; Δ: mean of the per-seed differences to the baseline run with "
              "the same seed; intervals from Student's t (scipy). A diverged run counts at its last accuracy."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def print_table(console, rows: list[list[str]], title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for i, name in enumerate(HEADER):
        table.add_column(name, justify="left" if i < 2 else "right", overflow="fold")
    for r in rows:
        table.add_row(*r)
    console.print(table)
