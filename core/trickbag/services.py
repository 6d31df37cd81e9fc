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


def resume_recipe(folder: Path, epochs: float | None = None):
    """The recipe a ``--resume`` continues: the folder's ``recipe.toml``, which must still be the
    recipe inside the checkpoint (an edited value would silently make another run than the one
    that started). ``epochs`` extends the run: the one supported change; the loop writes it into
    ``recipe.toml`` once the checkpoint has been restored."""
    from trickbag.recipe import build_recipe, load_recipe
    from trickbag.runs.checkpoint import CHECKPOINT, load_checkpoint
    from trickbag.runs.folder import RECIPE

    folder = Path(folder)
    if epochs is not None and not (0 < epochs <= 1e5):  # nan fails this too
        raise UserError(f"--epochs {epochs:g}: must be a positive, finite number of epochs (at most 100000)")
    if not (folder / RECIPE).is_file():
        raise UserError(f"--resume '{folder}' is not a run folder (no {RECIPE})")
    recipe = load_recipe(folder / RECIPE)
    if (folder / CHECKPOINT).exists():
        saved = load_checkpoint(folder / CHECKPOINT)
        started = build_recipe(saved["recipe"], where=f"{folder / CHECKPOINT}", name=recipe.name).to_dict()
        now = recipe.to_dict()
        if epochs is not None:
            started["training"]["epochs"] = now["training"]["epochs"]
        changed = _differences(started, now)
        if changed:
            shown = "; ".join(f"{key}: {a!r} -> {b!r}" for key, a, b in changed[:3]) + ("; ..." if len(changed) > 3 else "")
            raise UserError(f"--resume '{folder}': {RECIPE} was edited since the run started ({shown}); a resume continues the "
                            f"run as it started: undo the edit, or train a new run (to train longer: --resume {folder} --epochs N)")
        if epochs is not None and epochs <= saved["epoch"]:
            raise UserError(f"--epochs {epochs:g}: the run has already trained {saved['epoch']} epochs")
    if epochs is not None:
        recipe.training.epochs = epochs  # recipe.toml says so once the run restarts (engine/loop.py)
    return recipe


def _differences(a, b, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, value in a, value in b) wherever two nested dicts differ."""
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append((f"{prefix}{key}", x, y))
    return out
