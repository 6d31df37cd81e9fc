"""The contract between the hook specs, their documentation and their tests (datasette's habit)."""
import ast
import inspect
from pathlib import Path

import pytest
from trickbag import hookspecs

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(name for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("trickbag_"))


def test_there_are_hooks():
    assert len(SPECS) >= 15


@pytest.mark.parametrize("name", SPECS)
def test_hook_is_documented(name):
    assert f"`{name}`" in (ROOT / "docs" / "hooks.md").read_text(), f"{name} missing from docs/hooks.md"
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert len(doc) > 40 and ("called" in doc.lower() or "stops at" in doc.lower()), f"{name}: docstring must give the call rule"


@pytest.mark.parametrize("name", SPECS)
def test_hook_has_a_test(name):
    tree = ast.parse((ROOT / "tests" / "test_hooks.py").read_text())
    tests = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert f"test_hook_{name.removeprefix('trickbag_')}" in tests, f"no test_hook_{name.removeprefix('trickbag_')} in tests/test_hooks.py"


def test_specs_take_keyword_arguments_only_and_have_annotations():
    for name in SPECS:
        sig = inspect.signature(getattr(hookspecs, name))
        for param in sig.parameters.values():
            assert param.kind is param.POSITIONAL_OR_KEYWORD
            assert param.annotation is not inspect.Parameter.empty, f"{name}({param.name}) lacks a type"


def test_the_plugin_api_page_lists_what_trickbag_exports():
    """docs/plugin-api.md's table of names: each is importable from `trickbag` (or trickbag.testing)."""
    import re

    import trickbag
    import trickbag.testing

    text = (ROOT / "docs" / "plugin-api.md").read_text()
    table = text.split("| name | what it is |")[1].split("\n\n")[0]
    names = set()
    for cell in re.findall(r"^\| (.+?) \|", table, re.M):
        names |= set(re.findall(r"`(?:trickbag\.testing\.)?([A-Za-z_]+)", cell))
    assert {"hookimpl", "TrickSpec", "TrickOptions", "RunContext", "TrainState", "Batch", "DataInfo", "UserError",
            "PluginError", "fit", "load_model", "build_model", "run_trick"} <= names
    for name in names:
        assert hasattr(trickbag, name) or hasattr(trickbag.testing, name), f"{name} is documented but not exported"
    for name in trickbag.__all__:
        assert name.startswith("__") or name in names or name in ("hookspec", "load_plugins"), f"{name} exported but not documented"
