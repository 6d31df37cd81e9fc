"""What the LR range test leaves behind: a CSV of the curve, a JSON of the suggestions, a plot, and
(on request) a copy of the recipe with the chosen LR filled in, comments and layout kept."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tomlkit

from trickbag.recipe import apply_overrides, parse_override

if TYPE_CHECKING:
    from trickbag.lr_range.sweep import LRFindResult

CSV, JSON, PNG = "lr_find.csv", "lr_find.json", "lr_find.png"


def write_outputs(result: LRFindResult, out_dir: Path, resolved_recipe: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / CSV, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "lr", "loss", "smoothed_loss"])
        for i, (lr, loss, smooth) in enumerate(zip(result.lrs, result.losses, result.smoothed)):
            writer.writerow([i, repr(lr), repr(loss), repr(smooth)])
    (out_dir / JSON).write_text(json.dumps({**result.to_dict(), "recipe": resolved_recipe}, indent=2), encoding="utf-8")
    plot(result, out_dir / PNG)


def read_outputs(out_dir: Path) -> LRFindResult:
    """A range test read back from its ``lr_find.csv`` and ``lr_find.json``: the same curve and
    suggestions, bit for bit (floats are written with ``repr``)."""
    from trickbag.lr_range.suggest import Suggestions
    from trickbag.lr_range.sweep import LRFindResult

    with open(Path(out_dir) / CSV, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    saved = json.loads((Path(out_dir) / JSON).read_text(encoding="utf-8"))
    lrs, losses, smoothed = ([float(r[key]) for r in rows] for key in ("lr", "loss", "smoothed_loss"))
    return LRFindResult(lrs, losses, smoothed, saved["stopped"], Suggestions.from_dict(saved), saved["seconds"], saved["settings"])


def plot(result: LRFindResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed (servers, CI)
    import matplotlib.pyplot as plt

    s = result.suggestions
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    ax.plot(result.lrs, result.losses, color="0.75", linewidth=1, label="loss")
    ax.plot(result.lrs, result.smoothed, color="C0", linewidth=2, label="smoothed loss")
    if s.base_lr and s.max_lr:
        ax.axvspan(s.base_lr, s.max_lr, color="C2", alpha=0.12, label=f"bounds {s.base_lr:.2g} - {s.max_lr:.2g}")
    markers = iter("ov^s<>Dph*")
    log_lrs = np.log10(result.lrs)
    for name, rule in s.rules.items():
        if rule.lr is None or name.startswith("bounds"):
            continue
        # on the curve at the suggested LR (minimum/10 is not a point the rule looked at)
        y = float(np.interp(np.log10(rule.lr), log_lrs, result.smoothed))
        ax.plot([rule.lr], [y], next(markers, "o"), markersize=7, label=f"{name} {rule.lr:.2g}")
    if s.recommended:
        ax.axvline(s.recommended, color="C3", linewidth=2, label=f"recommended {s.recommended:.3g}")
        if s.interval:  # where the benchmark found LRs within 0.5 points of the best, around such a recommendation
            ax.axvspan(*s.interval, color="C3", alpha=0.10, hatch="//", fill=False, linewidth=0,
                       label=f"likely within 0.5 pt: {s.interval[0]:.2g} - {s.interval[1]:.2g}")
    finite = [v for v in result.smoothed if v == v and abs(v) != float("inf")]
    if finite:
        low, first = min(finite), finite[0]
        ax.set_ylim(low - 0.1 * abs(first - low) - 1e-3, max(first, low) + 0.6 * abs(first - low) + 1e-3)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(f"LR range test: {len(result.lrs)} steps, stopped: {result.stopped}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def tuned_path(recipe_path: Path) -> Path:
    """``name.tuned.toml`` next to the original; never the original, never an existing file."""
    base = recipe_path.with_name(recipe_path.stem + ".tuned.toml")
    n = 2
    while base.exists():
        base = recipe_path.with_name(f"{recipe_path.stem}.tuned-{n}.toml")
        n += 1
    return base


def apply_bounds(
    recipe_path: Path, edits: dict[str, Any], overrides: list[str] | None = None, target: Path | None = None, source: str = "",
) -> Path:
    """Write a copy of the recipe (with its ``--set`` overrides) and the chosen bounds filled in:
    ``edits`` as :func:`trickbag.lr_range.bounds.bound_edits` returns them (``optimizer.lr`` and
    the options of the schedule trick the recipe enables). Comments and layout are kept, except a
    changed value's own comment, which spoke of the old value: it now says where the new one came
    from. A header says what made the file: ``source`` (the range test's folder and choice), the
    original recipe, the overrides."""
    from trickbag.lr_range.bounds import apply_edits, lookup

    doc = tomlkit.parse(recipe_path.read_text(encoding="utf-8"))
    apply_overrides(doc, overrides or [])
    for text in overrides or []:  # an overridden value's old comment spoke of the old value
        keys, value = parse_override(text)
        _table(doc, tuple(keys[:-1]))[keys[-1]] = tomlkit.item(value).comment("from --set (see the header)")
    before = {key: lookup(doc, key) for key in edits}
    apply_edits(doc, edits)
    for key, value in edits.items():
        if before[key] != value:
            *section, last = key.split(".")
            _table(doc, tuple(section))[last] = tomlkit.item(value).comment("chosen with the LR range test (see the header)")
    header = [f"tuned copy of {recipe_path}" + (f" with --set {' '.join(overrides)}" if overrides else "")]
    if source:
        header.append(source)
    target = target or tuned_path(recipe_path)
    target.write_text("".join(f"# {line}\n" for line in header) + tomlkit.dumps(doc), encoding="utf-8")
    return target


def _table(doc: Any, section: tuple[str, ...]) -> Any:
    for part in section:
        doc = doc[part]
    return doc


def provenance(result: LRFindResult, out_dir: Path | None, chosen_max: float, chosen_base: float | None, by: str) -> str:
    """One line for a tuned recipe's header: which range test, what it recommended, what was chosen."""
    s, st = result.suggestions, result.settings
    where = f", files in {out_dir}" if out_dir is not None else ""
    rec = f"recommended {s.recommended:.3g} ({s.reason})" if s.recommended else s.reason
    base = f", base_lr {chosen_base:.3g}" if chosen_base else ""
    return (f"{by}: range test of {len(result.lrs)} steps from {st.get('start', 0):g} to {st.get('end', 0):g}{where}; "
            f"{rec}; chosen max_lr {chosen_max:.3g}{base}")
