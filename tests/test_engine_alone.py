"""Headless GPU nodes install the engine alone (`pip install .`, no trickbag-tui): its wheel must
carry the bundled recipes (core/trickbag/recipes is a symlink to recipes/) and `trickbag run
quickstart` must train without ever importing Textual."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds and installs the engine's wheel: seconds

ROOT = Path(__file__).resolve().parents[1]

# Runs the CLI with Textual made unimportable, then says where trickbag came from and whether
# anything imported Textual after all.
PROBE = """
import sys
class NoTextual:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("textual", "textual_plotext", "trickbag_tui"):
            raise ImportError(f"{name} imported by the engine")
sys.meta_path.insert(0, NoTextual())
from trickbag.cli.app import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    import trickbag
    print("FROM", trickbag.__file__)
    print("TEXTUAL", sorted(m for m in sys.modules if m.startswith(("textual", "trickbag_tui"))))
"""


def test_the_engine_alone_runs_the_quickstart_without_textual(tmp_path):
    src = tmp_path / "src"  # pip writes build/ into the tree it installs: never the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("core", "recipes"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(src)],
                   check=True, capture_output=True)
    assert sorted(p.name for p in (site / "trickbag" / "recipes").glob("*.toml")) == sorted(p.name for p in (ROOT / "recipes").glob("*.toml"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = [sys.executable, "-c", PROBE, "run", "quickstart", "--set", "training.epochs=0.2", "--out", str(tmp_path / "run"), "-q"]
    done = subprocess.run(run, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"FROM {site}" in done.stdout, done.stdout
    assert "TEXTUAL []" in done.stdout, done.stdout
    assert (tmp_path / "run" / "metrics.jsonl").exists()
