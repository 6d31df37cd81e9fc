"""trickbag: a minimal PyTorch training engine whose tricks are pluggy plugins.

What a plugin author needs is importable from here (``docs/plugin-api.md`` documents each):

* declaring a trick: ``hookimpl``, ``TrickSpec``, ``TrickOptions``;
* what hooks receive: ``RunContext``, ``TrainState``, ``Batch``, ``DataInfo``, ``LRBounds``;
* reporting bad input: ``UserError`` (one line, exit code 2); ``PluginError`` is what the engine
  raises when a trick fails;
* running and rebuilding: ``fit``, ``load_model`` (a run folder's trained model), ``build_model``.

The torch-heavy names are imported on first use, so ``import trickbag`` stays cheap.
"""
from trickbag.errors import PluginError, UserError
from trickbag.hookspecs import hookimpl, hookspec
from trickbag.plugins import TrickOptions, TrickSpec, load_plugins

__version__ = "0.1.0"
__all__ = [
    "hookimpl", "hookspec", "TrickOptions", "TrickSpec", "load_plugins", "UserError", "PluginError",
    "RunContext", "TrainState", "Batch", "DataInfo", "LRBounds", "fit", "load_model", "build_model", "__version__",
]

_LAZY = {
    "RunContext": "trickbag.context", "TrainState": "trickbag.context", "Batch": "trickbag.context", "LRBounds": "trickbag.context",
    "DataInfo": "trickbag.data", "fit": "trickbag.engine.loop", "load_model": "trickbag.runs.model",
    "build_model": "trickbag.runs.model",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trickbag' has no attribute {name!r}")
