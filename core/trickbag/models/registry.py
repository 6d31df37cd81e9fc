"""The model registry: a name -> builder dict, and ``build_model`` that checks a recipe's options.

A builder is ``builder(info, *, option=default, ...)``. Its signature *is* the option schema:
``build_model`` reads it with ``inspect`` so a typo or a wrong type in ``[model]`` is reported as
one line naming the key, before any tensor is allocated. Plugins add models by adding to
``MODELS`` (or with ``@register_model``).
"""
from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Literal

from torch import nn

from ..errors import UserError, did_you_mean

Builder = Callable[..., nn.Module]

MODELS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: ``@register_model("small_cnn")`` puts the builder in ``MODELS``."""

    def add(builder: Builder) -> Builder:
        MODELS[name] = builder
        return builder

    return add


def build_model(name: str, info: Any, options: dict[str, Any]) -> nn.Module:
    """Build model ``name`` for the data set described by ``info`` with the recipe's ``options``.

    Input channels and class count always come from ``info``; ``options`` are the builder's own
    keyword options. Raises ``UserError`` naming the unknown model, the unknown option or the
    option whose value has the wrong type.
    """
    builder = MODELS.get(name)
    if builder is None:
        known = ", ".join(sorted(MODELS))
        raise UserError(f"model.name {name!r} is unknown{did_you_mean(name, MODELS)} (known: {known})")
    _check_options(name, builder, options)
    return builder(info, **options)


def _check_options(name: str, builder: Builder, options: dict[str, Any]) -> None:
    params = inspect.signature(builder).parameters
    # ``info`` (the first parameter) is not an option: it follows the data set, not the recipe.
    settable = {p.name: p for p in list(params.values())[1:] if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    try:
        hints = typing.get_type_hints(builder)
    except Exception:  # a plugin's odd annotation must not stop the build: fall back to defaults' types
        hints = {}
    for key, value in options.items():
        if key not in settable:
            if takes_any:
                continue
            hint = did_you_mean(key, settable) or f" (options: {', '.join(settable) or 'none'})"
            raise UserError(f"model.{key} is not an option of {name!r}{hint}")
        param = settable[key]
        expected = hints.get(key, type(param.default) if param.default not in (param.empty, None) else Any)
        problem = _type_problem(value, expected)
        if problem:
            raise UserError(f"model.{key} must be {problem}, got {_describe(value)}")


def _type_problem(value: Any, expected: Any) -> str | None:
    """None when ``value`` fits ``expected``; otherwise the expectation in words."""
    if expected is Any or expected is inspect.Parameter.empty:
        return None
    origin = typing.get_origin(expected)
    if origin is Literal:
        choices = typing.get_args(expected)
        return None if value in choices else "one of " + ", ".join(repr(c) for c in choices)
    if origin is not None and type(None) in typing.get_args(expected):  # Optional[X] / X | None
        if value is None:
            return None
        inner = [a for a in typing.get_args(expected) if a is not type(None)]
        return _type_problem(value, inner[0]) if len(inner) == 1 else None
    if not isinstance(expected, type):
        return None  # a generic we don't check (list[int], ...): the builder validates it
    # bool is a subclass of int, but `width = true` in a recipe is a mistake, not 1.
    if isinstance(value, bool) and expected is not bool:
        return expected.__name__
    if expected is float and isinstance(value, int):
        return None  # TOML `dropout = 0` means 0.0
    return None if isinstance(value, expected) else expected.__name__


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text}" if len(text) <= 40 else type(value).__name__


def check_range(key: str, value: Any, ok: bool, rule: str) -> None:
    """For builders: ``check_range("width", w, w >= 1, ">= 1")`` -> ``model.width must be >= 1, got 0``."""
    if not ok:
        raise UserError(f"model.{key} must be {rule}, got {value!r}")
