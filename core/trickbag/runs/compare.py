"""``trickbag compare``: several run folders side by side, as one figure of their curves (training
and validation loss, validation accuracy, learning rate) and one table of their final metrics."""
from __future__ import annotations

import logging
from pathlib import Path

from trickbag.errors import UserError
from trickbag.runs.summary import RunSummary

log = logging.getLogger("trickbag")


def labels_of(folders: list[Path]) -> list[str]:
    """The shortest path tails that tell the folders apart (``+mixup/seed-0`` rather than ``seed-0``)."""
    parts = [p.resolve().parts for p in folders]
    for depth in range(1, max(len(p) for p in parts) + 1):
        # an ablation's seed-<k> says nothing without its variant
        tails = ["/".join(p[-depth - (depth == 1 and p[-1].startswith("seed-")):]) for p in parts]
        if len(set(tails)) == len(tails):
            return tails
    return [str(p) for p in folders]  # the same folder twice


def expand(folders: list[Path]) -> list[Path]:
    """Run folders as given, an ablation folder (``trickbag ablate --out``) as all its runs."""
    from trickbag.ablate.runner import VARIANTS

    out: list[Path] = []
    for folder in folders:
        if (folder / VARIANTS).is_file():
            out += sorted(p for p in folder.glob("*/seed-*") if p.is_dir())
        else:
            out.append(folder)
    return out


def lr_curve(run: RunSummary) -> tuple[list[float], list[float]]:
    """The LR at every step, from the recipe (what ``trickbag schedule`` draws); the epoch-end LRs of
    metrics.jsonl when the recipe's data are not here to count the steps."""
    from trickbag.engine.timeline import recipe_timeline

    try:
        t = recipe_timeline(run.recipe, points=2000)
        return t.progress, t.lr
    except UserError as exc:  # e.g. CIFAR files on another machine
        log.info(f"{run.folder}: the LR curve shows epoch ends only ({exc})")
        return [r["progress"] for r in run.rows], [r.get("lr", float("nan")) for r in run.rows]


def table_rows(runs: list[RunSummary], labels: list[str]) -> list[list[str]]:
    out = []
    for label, run in zip(labels, runs):
        good = run.good
        last = good[-1] if good else {}
        best = max(good, key=lambda r: r["val_acc"], default=None)
        tricks = ", ".join(run.recipe.enabled_tricks()) or "—"  # type: ignore[attr-defined]
        out.append([label, tricks, f"{run.epochs_done:g}/{run.epochs:g}", run.status,
                    f"{100 * last['val_acc']:.2f}" if last else "—",
                    f"{100 * best['val_acc']:.2f} (epoch {best['epoch']})" if best else "—",
                    f"{last['val_loss']:.4f}" if last else "—", f"{last['train_loss']:.4f}" if last else "—", f"{run.seconds:.1f}"])
    return out


HEADER = ["run", "tricks", "epochs", "status", "final val acc %", "best val acc %", "val loss", "train loss", "training s"]


def plot_compare(runs: list[RunSummary], labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = [(axes[0][0], "train_loss", "training loss (epoch mean)"), (axes[0][1], "val_loss", "validation loss"),
              (axes[1][0], "val_acc", "validation accuracy, %")]
    for i, (run, label) in enumerate(zip(runs, labels)):
        color = f"C{i % 10}"
        xs = [r["progress"] for r in run.good]
        for ax, key, _ in panels:
            ys = [100 * r[key] if key == "val_acc" else r[key] for r in run.good]
            ax.plot(xs, ys, marker="o", ms=3, color=color, label=label)
        steps, lrs = lr_curve(run)
        axes[1][1].plot(steps, lrs, color=color, label=label)
    for ax, _, title in panels:
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_yscale("log")
    axes[0][1].set_yscale("log")
    axes[1][1].set_title("learning rate (first parameter group)", fontsize=10)
    axes[1][1].grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    axes[1][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
