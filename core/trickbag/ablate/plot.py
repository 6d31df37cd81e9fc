"""``ablation.png``: each variant's mean final accuracy with its 95 % interval and every seed as a
dot; a 2-key ``--vary`` grid as a heat map (AdamW's Figure 2), a 3-key grid as one heat map per
value of the first key, side by side on one colour scale."""
from __future__ import annotations

import math
from pathlib import Path

from trickbag.ablate.stats import Summary
from trickbag.ablate.variants import Variant, axes_of

#: heat-map colours span at most this many points below the best cell, so that a diverged corner
#: does not flatten the differences between the good cells (every cell still prints its number)
HEAT_SPAN = 15.0


def _value(variant: Variant, index: int) -> str:
    return variant.overrides[index].partition("=")[2]


def is_heat_map(vary: list[str]) -> bool:
    axes = axes_of(vary) if vary else []
    return len(axes) in (2, 3) and all(len(vals) > 1 for _, vals in axes[-2:])


def ablation_figure(summaries: list[Summary], rows: list[dict], todo: list[Variant], vary: list[str], title: str):
    """The figure (heat maps for a 2- or 3-key grid, intervals otherwise); the caller closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if is_heat_map(vary):
        return _heat_maps(plt, summaries, todo, axes_of(vary), title)
    return _intervals(plt, summaries, rows, todo, title)


def plot_ablation(path: Path, summaries: list[Summary], rows: list[dict], todo: list[Variant], vary: list[str], title: str) -> None:
    import matplotlib.pyplot as plt

    fig = ablation_figure(summaries, rows, todo, vary, title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _intervals(plt, summaries: list[Summary], rows: list[dict], todo: list[Variant], title: str):
    names = [s.variant for s in summaries]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(names)))
    ys = range(len(names))[::-1]  # first variant (the baseline) on top, like the table
    for y, s in zip(ys, summaries):
        seeds = [100 * r["final_val_acc"] for r in rows if r["variant"] == s.variant]
        ax.scatter(seeds, [y] * len(seeds), s=14, color="0.55", zorder=2, label="a seed" if y == ys[0] else None)
        err = None if math.isnan(s.ci) else s.ci
        ax.errorbar(s.mean, y, xerr=err, fmt="o", color="C0" if not s.diverged else "C3", capsize=4, zorder=3,
                    label="mean, 95% CI" if y == ys[0] else None)
    base = next((s for s, v in zip(summaries, todo) if v.baseline), None)
    if base is not None:
        ax.axvline(base.mean, color="C1", ls="--", lw=1, label=f"baseline mean ({base.variant})")
    ax.set_yticks(list(ys), names)
    ax.set_xlabel("final validation accuracy, %")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / (1 + 0.4 * len(names))), ncol=3, fontsize=8, frameon=False)
    return fig


def _heat_maps(plt, summaries: list[Summary], todo: list[Variant], axes: list[tuple[str, list[str]]], title: str):
    import numpy as np

    by = {s.variant: s for s in summaries}
    (ykey, yvals), (xkey, xvals) = axes[-2], axes[-1]
    panels = axes[0][1] if len(axes) == 3 else [None]
    means = [s.mean for s in summaries]
    vmax = max(means) if means else 100.0
    vmin = max(min(means, default=0.0), vmax - HEAT_SPAN)
    fig, grid = plt.subplots(1, len(panels), figsize=(1.2 + 1.3 * len(xvals) * len(panels), 1.4 + 0.9 * len(yvals)), squeeze=False)
    image = None
    for p, panel in enumerate(panels):
        ax = grid[0][p]
        cells = np.full((len(yvals), len(xvals)), np.nan)
        text = {}
        for v in todo:
            if v.name not in by or (panel is not None and _value(v, 0) != panel):
                continue
            i, j = yvals.index(_value(v, len(axes) - 2)), xvals.index(_value(v, len(axes) - 1))
            s = by[v.name]
            cells[i, j] = s.mean
            text[i, j] = f"{s.mean:.1f}" + ("" if math.isnan(s.ci) else f"\n±{s.ci:.1f}") + ("\n(div)" if s.diverged else "")
        image = ax.imshow(cells, cmap="viridis", vmin=vmin, vmax=vmax, origin="lower", aspect="auto")
        for (i, j), label in text.items():
            ax.text(j, i, label, ha="center", va="center", fontsize=7, color="white" if cells[i, j] < (vmin + vmax) / 2 else "black")
        ax.set_xticks(range(len(xvals)), xvals)
        ax.set_yticks(range(len(yvals)), yvals)
        ax.set_xlabel(xkey)
        if p == 0:
            ax.set_ylabel(ykey)
        if panel is not None:
            ax.set_title(f"{axes[0][0]} = {panel}", fontsize=9)
    fig.colorbar(image, ax=grid[0].tolist(), label="final val acc %, mean over seeds")
    fig.suptitle(title)
    return fig
