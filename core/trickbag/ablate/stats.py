"""Means, Student-t confidence intervals and seed-paired differences (scipy's t quantiles)."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


def t_half_width(values: list[float], level: float = 0.95) -> float:
    """Half-width of the confidence interval of the mean; nan with fewer than 2 values."""
    from scipy import stats

    if len(values) < 2:
        return math.nan
    return float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))


@dataclass(frozen=True)
class Summary:
    variant: str
    n: int
    mean: float
    sd: float
    ci: float  # 95 % half-width of the mean
    delta: float | None = None  # mean seed-paired difference to the baseline (points)
    delta_ci: float | None = None
    diverged: int = 0


def summarize(rows: list[dict], order: list[str], baseline: str, key: str = "final_val_acc") -> list[Summary]:
    """One summary per variant in ``order``: accuracies in points; a diverged run counts at its
    recorded accuracy (chance or worse), so it pulls the mean down instead of vanishing."""
    by: dict[str, dict[int, dict]] = {}
    for r in rows:
        by.setdefault(r["variant"], {})[r["seed"]] = r
    base = by.get(baseline, {})
    out = []
    for name in order:
        runs = by.get(name)
        if not runs:
            continue
        acc = [100 * r[key] for r in runs.values()]
        delta = delta_ci = None
        if name != baseline and base:
            diffs = [100 * (runs[s][key] - base[s][key]) for s in runs if s in base]
            if diffs:
                delta, delta_ci = statistics.mean(diffs), t_half_width(diffs)
        out.append(Summary(name, len(acc), statistics.mean(acc), statistics.stdev(acc) if len(acc) > 1 else math.nan,
                           t_half_width(acc), delta, delta_ci, sum(1 for r in runs.values() if r.get("diverged"))))
    return out
