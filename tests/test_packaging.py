"""The engine's wheel must contain every sub-package: an editable install finds them on disk, a
real install (CI's plugins, a GPU node) only finds what pyproject.toml lists."""
from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _listed(pyproject: Path) -> set[str]:
    return set(tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["packages"])


def _on_disk(src: Path, name: str) -> set[str]:
    found = set()
    for init in (src / name).rglob("__init__.py"):
        if "__pycache__" not in init.parts:
            found.add(".".join(init.parent.relative_to(src).parts))
    return found


def test_engine_lists_every_subpackage():
    missing = _on_disk(ROOT / "core", "trickbag") - _listed(ROOT / "pyproject.toml")
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_tui_lists_every_subpackage():
    missing = _on_disk(ROOT / "tui", "trickbag_tui") - _listed(ROOT / "tui" / "pyproject.toml")
    assert not missing, f"add to [tool.setuptools] packages in tui/pyproject.toml: {sorted(missing)}"


def test_engine_does_not_need_textual():
    """Headless GPU nodes install the engine alone: nothing in it may import the TUI's libraries at
    module level (the `tui` command imports them lazily and says how to install them)."""
    for path in (ROOT / "core" / "trickbag").rglob("*.py"):
        for line in path.read_text().splitlines():
            if line.startswith(("import ", "from ")):
                assert "textual" not in line and "trickbag_tui" not in line, f"{path}: {line}"
