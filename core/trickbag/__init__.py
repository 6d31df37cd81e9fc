"""trickbag: a minimal PyTorch training engine whose tricks are pluggy plugins.

What a plugin author needs is importable from here: ``hookimpl`` to mark hook implementations,
``TrickSpec`` and ``TrickOptions`` to declare a trick and its options.
"""
from trickbag.hookspecs import hookimpl, hookspec
from trickbag.plugins import TrickOptions, TrickSpec, load_plugins

__version__ = "0.1.0"
__all__ = ["hookimpl", "hookspec", "TrickOptions", "TrickSpec", "load_plugins", "__version__"]
