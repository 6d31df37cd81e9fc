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


def fill_bounds(doc: Any, max_lr: float, base_lr: float | None) -> None:
    """Put chosen LR bounds into a recipe mapping (a plain dict or a tomlkit document), in place:
    ``optimizer.lr`` = max, and an enabled one_cycle's ``max_lr`` = max, ``div_factor`` = max/base.
    Values keep 4 significant digits, as a person would write them."""
    if "optimizer" not in doc:
        doc["optimizer"] = tomlkit.table() if isinstance(doc, tomlkit.TOMLDocument) else {}
    doc["optimizer"]["lr"] = float(f"{max_lr:.4g}")
    cycle = doc.get("tricks", {}).get("one_cycle")
    if cycle is not None and cycle.get("enabled", True):
        cycle["max_lr"] = float(f"{max_lr:.4g}")
        if base_lr and base_lr < max_lr:
            cycle["div_factor"] = float(f"{max_lr / base_lr:.4g}")


def apply_bounds(
    recipe_path: Path, recommended: float, base_lr: float | None, overrides: list[str] | None = None, target: Path | None = None,
    source: str = "",
) -> Path:
    """Write a copy of the recipe (with its ``--set`` overrides) and the LR filled in:
    ``optimizer.lr``, and the bounds of an enabled cycle trick (one_cycle's ``max_lr`` and
    ``div_factor``). Comments and layout are kept, except a changed value's own comment, which
    spoke of the old value: it now says where the new one came from. A header says what made the
    file: ``source`` (the range test's folder and choice), the original recipe, the overrides."""
    doc = tomlkit.parse(recipe_path.read_text(encoding="utf-8"))
    apply_overrides(doc, overrides or [])
    for text in overrides or []:  # an overridden value's old comment spoke of the old value
        keys, value = parse_override(text)
        _table(doc, tuple(keys[:-1]))[keys[-1]] = tomlkit.item(value).comment("from --set (see the header)")
    before = _values(doc)
    fill_bounds(doc, recommended, base_lr)
    for (section, key), value in _values(doc).items():
        if before.get((section, key)) != value:
            _table(doc, section)[key] = tomlkit.item(value).comment("chosen with the LR range test (see the header)")
    header = [f"tuned copy of {recipe_path}" + (f" with --set {' '.join(overrides)}" if overrides else "")]
    if source:
        header.append(source)
    target = target or tuned_path(recipe_path)
    target.write_text("".join(f"# {line}\n" for line in header) + tomlkit.dumps(doc), encoding="utf-8")
    return target


_FILLED = (("optimizer",), ("tricks", "one_cycle"))  # the tables fill_bounds writes into


def _table(doc: Any, section: tuple[str, ...]) -> Any:
    for part in section:
        doc = doc[part]
    return doc


def _values(doc: Any) -> dict[tuple[tuple[str, ...], str], Any]:
    out = {}
    for section in _FILLED:
        try:
            table = _table(doc, section)
        except KeyError:
            continue
        out.update({(section, key): value for key, value in table.items() if key in ("lr", "max_lr", "div_factor")})
    return out


def provenance(result: LRFindResult, out_dir: Path | None, chosen_max: float, chosen_base: float | None, by: str) -> str:
    """One line for a tuned recipe's header: which range test, what it recommended, what was chosen."""
    s, st = result.suggestions, result.settings
    where = f", files in {out_dir}" if out_dir is not None else ""
    rec = f"recommended {s.recommended:.3g} ({s.reason})" if s.recommended else s.reason
    base = f", base_lr {chosen_base:.3g}" if chosen_base else ""
    return (f"{by}: range test of {len(result.lrs)} steps from {st.get('start', 0):g} to {st.get('end', 0):g}{where}; "
            f"{rec}; chosen max_lr {chosen_max:.3g}{base}")
