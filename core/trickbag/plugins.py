"""Finding installed tricks (entry-point group ``trickbag``) and assembling a run's plugin manager.

Two managers, one set of hook specs:

* the *catalog* loads every installed plugin module once (``load_plugins``, idempotent) and asks
  each for its :class:`TrickSpec` through ``trickbag_declare_tricks``;
* a *run manager* per run holds the engine's defaults plus one object per trick the recipe
  enables, built from validated options. Disabled tricks are not registered, so cost nothing.

``TRICKBAG_PLUGINS`` restricts loading: unset loads everything, ``none`` loads nothing, and a
comma-separated list loads only those entry-point names.
"""
from __future__ import annotations

import importlib.metadata as md
import inspect
import os
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy
from pydantic import BaseModel, ConfigDict, Field

from trickbag import hookspecs
from trickbag.errors import PluginError, UserError, did_you_mean

ENTRY_POINT_GROUP = "trickbag"
ALLOW_ENV = "TRICKBAG_PLUGINS"


class TrickOptions(BaseModel):
    """Base class of a trick's options: unknown keys are errors, assignments are validated.

    ``enabled`` lets a recipe switch a trick off without deleting its table (ablations).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    enabled: bool = Field(True, description="false switches the trick off without deleting its table")


@dataclass
class TrickSpec:
    """What a plugin declares: a name, an options schema, and a factory of the run object."""

    name: str
    options: type[TrickOptions]
    create: Callable[[Any], object]
    summary: str = ""


@dataclass
class InstalledTrick:
    spec: TrickSpec
    plugin: str  # entry-point name of the module that declared it
    distribution: str
    version: str
    hooks: list[str] = field(default_factory=list)


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("trickbag")
    pm.add_hookspecs(hookspecs)
    return pm


def hooks_of(obj: object) -> list[str]:
    """Names of the hook implementations an object (or class) carries."""
    names = []
    for name in dir(obj):
        if name.startswith("trickbag_") and hasattr(getattr(obj, name, None), "trickbag_impl"):
            names.append(name)
    return sorted(names)


def _check_hook_names(obj: object, where: str) -> None:
    """Fail loudly on a misspelt hook (what ``check_pending`` does, but for trick classes too)."""
    known = {name for name in dir(hookspecs) if name.startswith("trickbag_")}
    for name in hooks_of(obj):
        if name not in known:
            raise PluginError(f"{where} implements unknown hook '{name}'{did_you_mean(name, sorted(known))}")


class Catalog:
    """The installed tricks, loaded from entry points once."""

    def __init__(self) -> None:
        self.pm = new_manager()
        self.tricks: dict[str, InstalledTrick] = {}
        self.loaded = False

    def load(self, extra_modules: Iterable[object] = ()) -> "Catalog":
        if self.loaded:
            return self
        allow = os.environ.get(ALLOW_ENV)
        allowed = None if allow is None else {n.strip() for n in allow.split(",") if n.strip()}
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party plugin must not take the CLI down silently
                raise PluginError(f"plugin '{ep.name}' failed to import: {type(exc).__name__}: {exc}") from exc
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            self._register(module, ep.name, dist, version)
        for module in extra_modules:
            self._register(module, getattr(module, "__name__", repr(module)), "(local)", "")
        self.pm.check_pending()
        self.loaded = True
        return self

    def _register(self, module: object, name: str, dist: str, version: str) -> None:
        if self.pm.is_registered(module):
            return
        self.pm.register(module, name=name)
        impl = getattr(module, "trickbag_declare_tricks", None)
        if impl is None:
            return
        declared = impl()
        for spec in declared if isinstance(declared, list) else [declared]:
            target = spec.create if inspect.isclass(spec.create) else spec.create(spec.options())
            _check_hook_names(target, f"trick '{spec.name}'")
            if spec.name in self.tricks:
                other = self.tricks[spec.name].distribution
                raise PluginError(f"trick '{spec.name}' is declared by both {other} and {dist}")
            self.tricks[spec.name] = InstalledTrick(spec, name, dist, version, hooks_of(target))

    def get(self, name: str) -> InstalledTrick:
        try:
            return self.tricks[name]
        except KeyError:
            hint = did_you_mean(name, sorted(self.tricks))
            package = "trickbag-" + name.replace("_", "-")
            raise UserError(f"trick '{name}' is not installed{hint} (pip install {package})") from None


_catalog: Catalog | None = None


def load_plugins() -> Catalog:
    """The process-wide catalog, loaded on first use (idempotent)."""
    global _catalog
    if _catalog is None:
        _catalog = Catalog()
    return _catalog.load()


def reset_plugins() -> None:
    """Forget the catalog (tests change ``TRICKBAG_PLUGINS`` and reload)."""
    global _catalog
    _catalog = None


def run_manager(tricks: dict[str, TrickOptions], catalog: Catalog, extra: Iterable[object] = ()) -> tuple[pluggy.PluginManager, dict[str, object]]:
    """A plugin manager for one run: engine defaults, enabled tricks, then extra observers."""
    from trickbag.engine.defaults import EngineDefaults

    pm = new_manager()
    pm.register(EngineDefaults(), name="trickbag.engine")
    objects: dict[str, object] = {}
    for name, options in tricks.items():
        if not options.enabled:
            continue
        obj = catalog.get(name).spec.create(options)
        pm.register(obj, name=name)
        objects[name] = obj
    _refuse_rival_deciders(pm, objects)
    for i, obj in enumerate(extra):
        pm.register(obj, name=f"observer.{type(obj).__name__}.{i}")
    pm.check_pending()
    return pm, objects


EXCLUSIVE_HOOKS = ("trickbag_lr_schedule", "trickbag_momentum_schedule", "trickbag_batch_size", "trickbag_loss")


def _refuse_rival_deciders(pm: pluggy.PluginManager, objects: dict[str, object]) -> None:
    """Two enabled tricks answering the same deciding hook would silently shadow one another
    (one-cycle and cosine both returning a schedule): make the recipe choose. Hooks where a trick
    answers only for its own names (build_model, create_optimizer) are not rivalries."""
    for hook_name in EXCLUSIVE_HOOKS:
        caller = getattr(pm.hook, hook_name)
        deciders = [i.plugin_name for i in caller.get_hookimpls() if i.plugin_name in objects and not i.wrapper and not i.hookwrapper]
        if len(deciders) > 1:
            raise UserError(f"tricks {' and '.join(sorted(deciders))} both decide {hook_name}; enable only one of them")


def culprit(pm: pluggy.PluginManager, exc: BaseException) -> str | None:
    """Name the plugin and hook whose implementation raised ``exc`` (walks the traceback).

    Costs nothing until something raises: no try/except around individual hook calls.
    """
    codes: dict[types.CodeType, tuple[str, str]] = {}
    for hook_name in dir(pm.hook):
        caller = getattr(pm.hook, hook_name)
        if not isinstance(caller, pluggy.HookCaller):
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin_name == "trickbag.engine":
                continue
            code = getattr(impl.function, "__code__", None)
            if code is not None:
                codes[code] = (impl.plugin_name, hook_name)
    tb = exc.__traceback__
    found = None
    while tb is not None:  # the innermost matching frame is the one that raised
        hit = codes.get(tb.tb_frame.f_code)
        if hit:
            found = hit
        tb = tb.tb_next
    if found is None:
        return None
    return f"trick '{found[0]}' raised in {found[1]}: {type(exc).__name__}: {exc}"
