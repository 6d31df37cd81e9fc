"""The variants of an ablation: which of the recipe's tricks each one switches off.

Modes (Bag of Tricks' Table 6 is ``cumulative``):

* ``each``: the baseline (every trick off), then each trick alone;
* ``cumulative``: the baseline, then the tricks added one at a time in recipe order;
* ``leave-one-out``: the full recipe, then the recipe without each trick in turn.

A variant is a name, the ``--set`` overrides that make it, and the tricks it has on.
"""
from __future__ import annotations

from dataclasses import dataclass

from trickbag.errors import UserError

MODES = ("each", "cumulative", "leave-one-out")
GRID = "grid"  # the mode of --vary


@dataclass(frozen=True)
class Variant:
    name: str  # also its folder name
    overrides: tuple[str, ...]  # --set strings applied on top of the recipe
    tricks_on: tuple[str, ...]
    baseline: bool = False  # the variant the others are compared with


def _off(tricks: list[str], keep: set[str]) -> tuple[str, ...]:
    return tuple(f"tricks.{t}.enabled=false" for t in tricks if t not in keep)


def variants(tricks: list[str], mode: str) -> list[Variant]:
    """The variants for the recipe's enabled ``tricks`` (in recipe order)."""
    if mode not in MODES:
        raise UserError(f"--mode {mode!r} is unknown (choose one of: {', '.join(MODES)})")
    if not tricks:
        raise UserError("the recipe enables no trick: nothing to ablate (add a [tricks.<name>] table)")
    if mode == "each":
        return [Variant("baseline", _off(tricks, set()), (), True),
                *(Variant(f"+{t}", _off(tricks, {t}), (t,)) for t in tricks)]
    if mode == "cumulative":
        out = [Variant("baseline", _off(tricks, set()), (), True)]
        for i, t in enumerate(tricks, 1):
            on = tricks[:i]
            out.append(Variant("+" + "+".join(on), _off(tricks, set(on)), tuple(on)))
        return out
    return [Variant("full", (), tuple(tricks), True),
            *(Variant(f"-{t}", _off(tricks, set(tricks) - {t}), tuple(x for x in tricks if x != t)) for t in tricks)]


def axes_of(vary: list[str]) -> list[tuple[str, list[str]]]:
    """``--vary KEY=V1,V2,...`` strings as (key, values) axes, in the order given."""
    axes: list[tuple[str, list[str]]] = []
    for spec in vary:
        key, eq, values = spec.partition("=")
        key = key.strip()
        if not eq or not key or not values.strip():
            raise UserError(f"--vary {spec!r}: write KEY=V1,V2,... (e.g. optimizer.lr=0.05,0.1)")
        if any(k == key for k, _ in axes):
            raise UserError(f"--vary {key} is given twice")
        axes.append((key, [v.strip() for v in values.split(",") if v.strip()]))
    return axes


def grid(vary: list[str]) -> list[Variant]:
    """``--vary KEY=V1,V2,...`` (repeatable): every combination, in the order given; the first
    combination is the baseline. Values are TOML scalars, as in ``--set`` (lists cannot be varied)."""
    import itertools

    axes = axes_of(vary)
    out = []
    for i, combo in enumerate(itertools.product(*(vals for _, vals in axes))):
        sets = tuple(f"{k}={v}" for (k, _), v in zip(axes, combo))
        out.append(Variant(",".join(sets).replace('"', "").replace("/", "_"), sets, (), i == 0))
    return out
