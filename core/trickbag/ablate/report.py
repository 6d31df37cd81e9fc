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


def _changed(variant: Variant, grid: bool, base: Variant | None) -> str:
    """What the variant changes: in a grid, its --vary values that differ from the baseline's; in a
    trick mode, the tricks it has on."""
    if grid:
        if variant.baseline or base is None:
            return "baseline (first grid point)"
        return " ".join(o for o in variant.overrides if o not in base.overrides)
    return "tricks on: " + ", ".join(variant.tricks_on) if variant.tricks_on else "every trick off"


def rows_of(summaries: list[Summary], todo: list[Variant], seconds: dict[str, float], grid: bool = False) -> list[list[str]]:
    base = next((v for v in todo if v.baseline), None)
    changed = {v.name: _changed(v, grid, base) for v in todo}
    out = []
    for s in summaries:
        sd = "—" if math.isnan(s.sd) else f"{s.sd:.2f}"
        ci = "—" if math.isnan(s.ci) else f"± {s.ci:.2f}"
        out.append([s.variant, changed.get(s.variant, ""), f"{s.mean:.2f} ± {sd}", ci, _pm(s.delta, s.delta_ci),
                    str(s.n) + (f" ({s.diverged} diverged)" if s.diverged else ""), f"{seconds.get(s.variant, 0):.3g}"])
    return out


HEADER = ["variant", "what changed", "val acc % (mean ± sd)", "95% CI of the mean", "Δ vs baseline, points (paired, 95% CI)", "seeds", "s/run"]


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


def seconds_per_run(results: list[dict]) -> dict[str, float]:
    seconds: dict[str, list[float]] = {}
    for r in results:
        seconds.setdefault(r["variant"], []).append(r["seconds"])
    return {k: sum(v) / len(v) for k, v in seconds.items()}


def finish(console, out: Path, todo: list[Variant], results: list[dict], title: str, vary: list[str]) -> list[Summary]:
    """``vary``: the grid's --vary strings (empty for a trick mode)."""
    """The table (printed, ``table.md``) and ``ablation.png`` from the runs' rows."""
    from trickbag.ablate.plot import plot_ablation
    from trickbag.ablate.stats import summarize

    baseline = next(v.name for v in todo if v.baseline)
    summaries = summarize(results, [v.name for v in todo], baseline)
    rows = rows_of(summaries, todo, seconds_per_run(results), grid=bool(vary))
    print_table(console, rows, title)
    write_table(out / "table.md", rows, title)
    if summaries:
        plot_ablation(out / "ablation.png", summaries, results, todo, vary, title)
    return summaries


def summary_line(summaries: list[Summary], out: Path) -> str:
    """Where the results are, and the best variant with its difference to the baseline."""
    if not summaries:
        return f"no finished run in {out}"
    top = max(summaries, key=lambda s: s.mean)
    ci = "" if math.isnan(top.ci) else f" ± {top.ci:.2f}"
    vs = "" if top.delta is None else f", {_pm(top.delta, top.delta_ci)} points vs the baseline"
    return f"best {top.variant}: {top.mean:.2f}%{ci}{vs}; table.md, ablation.png, ablation.jsonl in {out}"
