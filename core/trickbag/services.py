"""What the CLI and the terminal UI both do with recipes: find them by name or path.

Neither front end owns this: both import it from here, so the TUI never imports the CLI.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from trickbag.errors import UserError


def bundled_recipes() -> dict[str, Path]:
    folder = resources.files("trickbag.recipes")
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".toml")}


def resolve_recipe(name: str) -> Path:
    """A path to a TOML file, or the name of a bundled recipe (``quickstart``)."""
    path = Path(name)
    if path.exists():
        return path
    bundled = bundled_recipes()
    if name.removesuffix(".toml") in bundled and "/" not in name:
        return bundled[name.removesuffix(".toml")]
    known = ", ".join(sorted(bundled))
    raise UserError(f"recipe '{name}' not found (not a file, nor a bundled recipe: {known})")


def load_named_recipe(name: str, overrides: list[str] | None = None):
    """``resolve_recipe`` then load it with ``--set`` overrides. Errors name a bundled recipe by its
    name (``quickstart.toml: unknown key ...``), not by its path inside the installed package."""
    from trickbag.recipe import load_recipe

    path = resolve_recipe(name)
    where = path.name if not Path(name).exists() else None
    return path, load_recipe(path, overrides, where=where)
