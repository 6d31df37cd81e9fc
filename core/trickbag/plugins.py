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

import contextlib
import importlib.metadata as md
import inspect
import logging
import os
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from trickbag import hookspecs
from trickbag.errors import PluginError, UserError, did_you_mean

log = logging.getLogger("trickbag")

ENTRY_POINT_GROUP = "trickbag"
ALLOW_ENV = "TRICKBAG_PLUGINS"


class TrickOptions(BaseModel):
    """Base class of a trick's options: unknown keys are errors, assignments are validated.

    ``enabled`` lets a recipe switch a trick off without deleting its table (ablations).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    enabled: StrictBool = Field(True, description="false switches the trick off without deleting its table")


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


def check_hooks(obj: object, where: str) -> None:
    """What pluggy would refuse at registration, as one line: an unknown hook name, or an argument the
    hook does not pass. A ``trickbag_*`` method without ``@hookimpl`` is never called: warn."""
    known = {name for name in dir(hookspecs) if name.startswith("trickbag_")}
    for name in dir(obj):
        if not name.startswith("trickbag_"):
            continue
        member = getattr(obj, name, None)
        if not callable(member):
            continue
        if not hasattr(member, "trickbag_impl"):
            if name in known:
                log.warning("%s: %s() has no @hookimpl, so it is never called", where, name)
            continue
        if name not in known:
            raise PluginError(f"{where} implements unknown hook '{name}'{did_you_mean(name, sorted(known))}")
        passed = list(inspect.signature(getattr(hookspecs, name)).parameters)
        # what pluggy matches: the parameters without defaults (self excluded)
        taken = [
            n for n, q in inspect.signature(member).parameters.items()
            if n != "self" and q.default is q.empty and q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY)
        ]
        for arg in taken:
            if arg not in passed:
                raise PluginError(f"{where}: {name}() takes '{arg}', which the hook does not pass (it passes: {', '.join(passed)})")


class Catalog:
    """The installed tricks, loaded from entry points once.

    A plugin that fails to import, to declare its tricks or to pass :func:`check_hooks` is set
    aside in ``broken`` with one line saying why: it is reported once as a warning, and becomes an
    error only for a recipe that enables it, so one broken package never blocks the others."""

    def __init__(self) -> None:
        self.pm = new_manager()
        self.tricks: dict[str, InstalledTrick] = {}
        self.broken: dict[str, str] = {}  # entry-point name -> why it cannot be used
        self.loaded = False

    def load(self, extra_modules: Iterable[object] = ()) -> "Catalog":
        if self.loaded:
            return self
        allow = os.environ.get(ALLOW_ENV)
        allowed = None if allow is None else {n.strip() for n in allow.split(",") if n.strip()} - {"none"}
        seen = set()
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            seen.add(ep.name)
            if allowed is not None and ep.name not in allowed:
                continue
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party plugin must not take the CLI down
                self._set_aside(ep.name, dist, f"failed to import: {type(exc).__name__}: {_first_line(exc)}")
                continue
            self._register(module, ep.name, dist, version)
        for module in extra_modules:
            self._register(module, getattr(module, "__name__", repr(module)), "(local)", "")
        for name in sorted((allowed or set()) - seen):
            log.warning("%s names '%s', which no installed distribution provides", ALLOW_ENV, name)
        self.loaded = True
        return self

    def _set_aside(self, name: str, dist: str, why: str) -> None:
        self.broken[name] = f"plugin '{name}' ({dist}) {why}"
        log.warning("%s; it is skipped", self.broken[name])

    def _register(self, module: object, name: str, dist: str, version: str) -> None:
        if self.pm.is_registered(module):
            return
        where = f"plugin '{name}' ({dist})"
        try:
            check_hooks(module, where)
            self.pm.register(module, name=name)
            self.pm.check_pending()
        except (PluginError, pluggy.PluginValidationError) as exc:
            if self.pm.is_registered(module):
                self.pm.unregister(module)
            self._set_aside(name, dist, f"is invalid: {_first_line(exc).removeprefix(where + ' ')}")
            return
        impl = getattr(module, "trickbag_declare_tricks", None)
        if impl is None:
            return
        try:
            declared = impl()
            specs = declared if isinstance(declared, list) else [declared]
            bad = [s for s in specs if not isinstance(s, TrickSpec)]
            if bad:
                raise PluginError(f"trickbag_declare_tricks returned {type(bad[0]).__name__}, not a TrickSpec (or a list of them)")
            found = {}
            for spec in specs:
                found[spec.name] = InstalledTrick(spec, name, dist, version, _hooks_of_spec(spec, f"trick '{spec.name}' of {where}"))
        except Exception as exc:
            self.pm.unregister(module)
            self._set_aside(name, dist, f"cannot declare its tricks: {type(exc).__name__}: {_first_line(exc)}")
            return
        for trick, installed in found.items():
            if trick in self.tricks:
                raise PluginError(f"trick '{trick}' is declared by both {self.tricks[trick].distribution} and {dist}")
            self.tricks[trick] = installed

    def get(self, name: str) -> InstalledTrick:
        if name in self.tricks:
            return self.tricks[name]
        if name in self.broken:  # by convention a plugin's entry point is named after its trick
            raise PluginError(f"trick '{name}' cannot be used: {self.broken[name]}")
        hint = did_you_mean(name, sorted(self.tricks))
        package = "trickbag-" + name.replace("_", "-")
        raise UserError(f"trick '{name}' is not installed{hint} (pip install {package})")


def _hooks_of_spec(spec: TrickSpec, where: str) -> list[str]:
    """The hooks a trick's run object implements, checked as :func:`check_hooks` does. A factory
    that is not a class is called with default options, when the options have defaults."""
    if not isinstance(spec.options, type) or not issubclass(spec.options, TrickOptions):
        raise PluginError(f"{where}: options must be a TrickOptions subclass")
    target = spec.create
    if not inspect.isclass(target):
        if any(f.is_required() for f in spec.options.model_fields.values()):
            return []  # cannot build it without the recipe's values: hooks are checked at run time
        target = spec.create(spec.options())
    check_hooks(target, where)
    return hooks_of(target)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


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
    labels: dict[str, str] = {}  # plugin name -> how errors name it
    # pluggy calls the newest registration first: registering in reverse makes every hook run the
    # tricks in recipe order (transform_batch edits compose in that order; the first wrapper is
    # outermost)
    for name, options in reversed(list(tricks.items())):
        if not options.enabled:
            continue
        installed = catalog.get(name)
        labels[name] = f"trick '{name}' ({installed.distribution})"
        try:
            obj = installed.spec.create(options)
        except Exception as exc:
            raise PluginError(f"{labels[name]} could not be created: {type(exc).__name__}: {_first_line(exc)}") from exc
        check_hooks(obj, labels[name])
        pm.register(obj, name=name)
        objects[name] = obj
    objects = dict(reversed(list(objects.items())))  # recipe order again
    _refuse_rival_deciders(pm, objects)
    for i, obj in enumerate(extra):
        name = f"observer.{type(obj).__name__}.{i}"
        labels[name] = f"observer '{type(obj).__name__}'"
        check_hooks(obj, labels[name])
        pm.register(obj, name=name)
    pm.check_pending()
    pm.trickbag_labels = labels  # read by culprit()
    return pm, objects


EXCLUSIVE_HOOKS = (
    "trickbag_lr_schedule", "trickbag_momentum_schedule", "trickbag_batch_size", "trickbag_loss",
    "trickbag_eval_model",  # EMA and SWA both averaging: which one would validation score?
)


def _refuse_rival_deciders(pm: pluggy.PluginManager, objects: dict[str, object]) -> None:
    """Two enabled tricks answering the same deciding hook would silently shadow one another
    (one-cycle and cosine both returning a schedule, EMA and SWA both offering the model to
    evaluate): make the recipe choose. Hooks where a trick answers only for its own names
    (build_model, create_optimizer) are not rivalries."""
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
    label = getattr(pm, "trickbag_labels", {}).get(found[0], f"trick '{found[0]}'")
    return f"{label} raised in {found[1]}: {type(exc).__name__}: {_first_line(exc)}"


@contextlib.contextmanager
def blamed(pm: pluggy.PluginManager):
    """Turn an exception raised inside a trick's hook into a one-line :class:`PluginError` that
    names the trick, its distribution and the hook; user errors and Ctrl-C pass through."""
    try:
        yield
    except (UserError, PluginError, KeyboardInterrupt):
        raise
    except Exception as exc:
        blame = culprit(pm, exc)
        if blame:
            raise PluginError(blame) from exc
        raise
