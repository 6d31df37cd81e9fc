"""Commands that look, not train: check, plugins, recipes, momentum, version."""
from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import tomli_w
import tomllib
from rich.table import Table
from rich.text import Text

from trickbag import __version__
from trickbag.cli.app import RecipeArgument, SetOption, flag
from trickbag.cli.output import err, out, plain
from trickbag.services import bundled_recipes, load_named_recipe


def plugins_header(recipe=None) -> Text:
    """``plugins: one_cycle 0.1.0 [on], ...``: printed before every run, so results show what was installed."""
    from trickbag.plugins import load_plugins

    catalog = load_plugins()
    enabled = set(recipe.enabled_tricks()) if recipe is not None else set()
    parts = [f"{name} {t.version}" + (" [on]" if name in enabled else "") for name, t in sorted(catalog.tricks.items())]
    return plain("plugins: " + (", ".join(parts) if parts else "none installed"))


def check(recipe: RecipeArgument, set_: SetOption = None) -> None:
    """Validate a recipe and its tricks (data, model, optimizer, schedules, the tricks' own checks)
    without training; print it resolved."""
    from trickbag.engine.assemble import prepare_run

    _, loaded = load_named_recipe(recipe, set_)
    run = prepare_run(loaded)  # builds everything a run needs, so a bad model option or data path shows here
    run.release()
    err.print(plugins_header(loaded))
    err.print(plain(f"ok: {run.train.info.train_size} training / {run.train.info.val_size} validation samples, "
                    f"{sum(p.numel() for p in run.raw_model.parameters()):,} parameters, {run.context.steps_per_epoch} steps per epoch"))
    sys.stdout.write(loaded.to_toml())


def toml_value(value: Any) -> str:
    """A default as it is written in a recipe: ``true``, ``0.1``, ``"cos"``, ``[1, 2]``."""
    return tomli_w.dumps({"v": value}).removeprefix("v = ").strip()


def option_rows(options_model) -> dict[str, dict[str, Any]]:
    schema = options_model.model_json_schema()
    rows = {}
    for key, field in options_model.model_fields.items():
        prop = schema.get("properties", {}).get(key, {})
        row: dict[str, Any] = {"type": prop.get("type", prop.get("anyOf", "?")), "description": field.description or ""}
        if field.is_required():
            row["required"] = True
        else:
            row["default"] = prop.get("default")
        row.update({k: prop[k] for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum") if k in prop})
        rows[key] = row
    return rows


def plugins(as_json: Annotated[bool, flag("--json", help="Machine-readable output.")] = False) -> None:
    """List installed tricks: name, version, hooks implemented, options with defaults as TOML."""
    from trickbag.plugins import load_plugins

    catalog = load_plugins()
    rows = [
        {"name": name, "distribution": t.distribution, "version": t.version, "summary": t.spec.summary, "hooks": t.hooks,
         "options": option_rows(t.spec.options)}
        for name, t in sorted(catalog.tricks.items())
    ]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not rows:
        out.print("no tricks installed (pip install a trickbag-<trick> package, or check TRICKBAG_PLUGINS)")
    for row in rows:
        out.print(Text.assemble((row["name"], "bold"), f" {row['version']}  {row['summary']}"))
        out.print(plain(f"  hooks: {', '.join(h.removeprefix('trickbag_') for h in row['hooks']) or '(known when enabled)'}"))
        for key, opt in row["options"].items():
            value = "(required)" if opt.get("required") else "(unset)" if opt["default"] is None else toml_value(opt["default"])
            out.print(plain(f"  {key} = {value}  # {opt['description']}"))
    for why in catalog.broken.values():
        out.print(Text.assemble(("broken: ", "red"), why))


def recipes() -> None:
    """List the bundled recipes with their one-line descriptions."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("description")
    for name, path in sorted(bundled_recipes().items()):
        table.add_row(plain(name), plain(tomllib.loads(path.read_text(encoding="utf-8")).get("description", "")))
    out.print(table)


def momentum(recipe: RecipeArgument, set_: SetOption = None) -> None:
    """Momentum time constants T = -1/ln(beta) in steps and in epochs of this recipe, with warnings."""
    from trickbag.momentum.constants import momentum_rows
    from trickbag.momentum.report import print_momentum

    _, loaded = load_named_recipe(recipe, set_)
    print_momentum(out, momentum_rows(loaded))


def version() -> None:
    """Print the version."""
    out.print(f"trickbag {__version__}")
