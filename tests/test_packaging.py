"""The engine's wheel must contain every sub-package: an editable install finds them on disk, a
real install (CI's plugins, a GPU node) only finds what pyproject.toml lists."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
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


# Third-party packages a type checker need not read to resolve trickbag's own names (torch alone takes
# mypy about 20 s); skipped, their names become Any, while trickbag's modules are analysed.
_SKIP = "torch.*,torchvision.*,numpy.*,pydantic.*,rich.*,typer.*,matplotlib.*,sklearn.*,optuna.*,pluggy.*,mlxtend.*,tomlkit.*,filelock.*,tomli_w.*"


def test_a_type_checker_resolves_the_engine_from_the_checkout(tmp_path):
    """The engine is a plain source folder: its editable install puts core/ on sys.path (no
    import-hook finder), so mypy, pyright and editors resolve `trickbag.*` to the files in core/.
    Under the old mapping (`package-dir = {"trickbag" = "core/trickbag", ...}`) setuptools installs
    an import hook instead and mypy reports 'Cannot find implementation or library stub'."""
    pytest.importorskip("mypy")
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\nfollow_imports = silent\nincremental = False\n[mypy-{_SKIP}]\nfollow_imports = skip\n")
    probe = "from trickbag.engine.plan import steps_in_epoch; reveal_type(steps_in_epoch)"
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "-c", probe],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "def (epochs: float, epoch: int, steps_per_epoch: int) -> int" in done.stdout


def test_bundled_recipes_ship_from_the_top_level_folder():
    """recipes/ is where readers look; core/trickbag/recipes must point at it so the wheel ships them."""
    link = ROOT / "core" / "trickbag" / "recipes"
    assert link.resolve() == (ROOT / "recipes").resolve()
    from trickbag.services import bundled_recipes

    assert {p.name for p in bundled_recipes().values()} == {p.name for p in (ROOT / "recipes").glob("*.toml")}
