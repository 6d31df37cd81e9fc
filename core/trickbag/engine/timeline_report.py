"""A timeline for people: a rich table in the terminal, a four-panel PNG, a CSV of every sampled step."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from trickbag.engine.timeline import Timeline

if TYPE_CHECKING:
    from rich.console import Console

CAPTION = ("g = lr x (N/B - 1), the gradient noise scale (Smith et al. 2018): decaying the LR by k or growing the "
           "batch B by k lowers it alike. N = {n} training samples.")


def print_timeline(console: Console, t: Timeline, title: str) -> None:
    """One row per epoch start (an even spread of them on long runs), batch-size change and the last step."""
    from rich.table import Table

    table = Table(title=title, caption=CAPTION.format(n=f"{t.train_size:,}"), caption_justify="left")
    for name in ("epoch", "step", "lr", "momentum", "batch", "g"):
        table.add_column(name, justify="right")
    for i in t.rows():
        table.add_row(
            f"{t.progress[i]:.3g}", f"{t.steps[i]:,}", f"{t.lr[i]:.4g}", "-" if t.momentum is None else f"{t.momentum[i]:.4g}",
            f"{t.batch_size[i]:,}", f"{t.noise[i]:.4g}",
        )
    console.print(table)
    console.print(f"{t.total_steps:,} optimizer steps over {t.epochs:g} epochs ({t.steps_per_epoch} per epoch at the recipe's batch size)")


def write_csv(t: Timeline, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["step", "epoch", "lr", "momentum", "batch_size", "noise_scale"])
        for i in range(len(t.steps)):
            w.writerow([t.steps[i], repr(t.progress[i]), repr(t.lr[i]), "" if t.momentum is None else repr(t.momentum[i]),
                        t.batch_size[i], repr(t.noise[i])])


def plot_timeline(t: Timeline, path: Path, title: str) -> None:
    """LR, momentum, batch size and g over epochs, one panel each, batch-size changes marked."""
    import matplotlib

    matplotlib.use("Agg")  # files only: servers, CI
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(8, 8.5), dpi=110, sharex=True)
    panels = [("learning rate", t.lr, "C0"), ("momentum", t.momentum, "C4"), ("global batch size", t.batch_size, "C2"),
              ("noise scale g = lr (N/B - 1)", t.noise, "C3")]
    for ax, (label, values, color) in zip(axes, panels):
        if values is None:
            ax.text(0.5, 0.5, "this optimizer has no momentum", ha="center", va="center", transform=ax.transAxes, color="0.5")
        else:
            ax.plot(t.progress, values, color=color, linewidth=1.6, drawstyle="steps-post" if label.startswith("global") else "default")
        for epoch, _ in t.batch_size_changes[1:]:
            ax.axvline(epoch, color="0.6", linestyle=":", linewidth=1)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[2].set_ylim(0, max(t.batch_size, default=1) * 1.15)  # a constant batch as a flat line, not a zoomed one
    axes[-1].set_xlabel("epoch")
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
