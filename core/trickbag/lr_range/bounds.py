"""Chosen LR bounds -> recipe values, through the tricks the recipe enables (``trickbag_lr_bounds``).

The engine does not know any schedule trick's option names: each enabled trick says which of its
options receive (base_lr, max_lr), a rescaling trick (linear scaling) converts the bounds first, and
the engine's default sets ``optimizer.lr``. ``lr-find --apply``, ``--verify`` and the TUI all go
through :func:`bound_edits`, then write the edits with :func:`apply_edits`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import tomlkit

from trickbag.context import LRBounds
from trickbag.errors import PluginError, UserError
from trickbag.plugins import blamed

if TYPE_CHECKING:
    import pluggy

    from trickbag.context import RunContext
    from trickbag.recipe import Recipe


def as_written(value: Any) -> Any:
    """Floats keep 4 significant digits, as a person would write them in a recipe."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    return value


def bound_edits(pm: pluggy.PluginManager, context: RunContext, max_lr: float, base_lr: float | None = None) -> tuple[dict[str, Any], list[str]]:
    """The recipe edits (``{"tricks.one_cycle.max_lr": 0.4, ...}``) that make the run train between
    ``base_lr`` and ``max_lr`` (LRs at the range test's batch), and one note per conversion a trick
    made on the way (linear scaling)."""
    if base_lr is not None and not base_lr < max_lr:
        base_lr = None  # a base at or above the max is no bound at all
    bounds = LRBounds(max_lr=max_lr, base_lr=base_lr, global_batch_size=context.global_batch_size)
    with blamed(pm):
        answers = pm.hook.trickbag_lr_bounds(bounds=bounds, context=context)
    edits: dict[str, Any] = {}
    for answer in answers:
        if not isinstance(answer, dict):
            raise PluginError(f"a trickbag_lr_bounds implementation returned {type(answer).__name__}, not a dict of recipe keys")
        for key, value in answer.items():
            value = as_written(value)
            if key in edits and edits[key] != value:
                raise PluginError(f"two tricks write {key} from the LR bounds: {edits[key]} and {value}")
            edits[key] = value
    return edits, bounds.notes


def recipe_edits(recipe: Recipe, max_lr: float, base_lr: float | None = None) -> tuple[dict[str, Any], list[str]]:
    """:func:`bound_edits` for a recipe without a prepared run: the tricks' objects are built from
    their options (cheap by contract), the data only counted."""
    import torch

    from trickbag.data import load_data
    from trickbag.engine.assemble import plan_context

    train, _ = load_data(recipe.data, torch.device("cpu"))
    pm, context = plan_context(recipe, train)
    return bound_edits(pm, context, max_lr, base_lr)


def apply_edits(doc: Any, edits: dict[str, Any]) -> None:
    """Write dotted-key edits into a recipe mapping (a plain dict or a tomlkit document), in place,
    creating the tables they need."""
    for key, value in edits.items():
        *tables, last = key.split(".")
        node = doc
        for part in tables:
            if part not in node:
                node[part] = tomlkit.table() if isinstance(doc, tomlkit.TOMLDocument) else {}
            node = node[part]
            if not hasattr(node, "items"):
                raise UserError(f"{key}: {part} is not a table in the recipe")
        node[last] = value


def lookup(doc: Any, key: str) -> Any:
    """The value at a dotted key of a recipe mapping, or None."""
    node = doc
    for part in key.split("."):
        if not hasattr(node, "get"):
            return None
        node = node.get(part)
    return node
