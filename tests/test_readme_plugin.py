"""The README's "write your own trick" example, installed with pip exactly as printed."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # pip installs the example: seconds, and the same on one thread

ROOT = Path(__file__).resolve().parents[1]


def readme_block(after: str, lang: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(re.escape(after) + r"\s*```" + lang + r"\n(.*?)```", text, re.S)
    assert match, f"README lost the {after} block"
    return match.group(1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    src = tmp_path_factory.mktemp("grad_noise")
    (src / "pyproject.toml").write_text(readme_block("`pyproject.toml`", "toml"))
    (src / "trickbag_grad_noise.py").write_text(readme_block("`trickbag_grad_noise.py`", "python"))
    (src / "tests").mkdir()
    (src / "tests" / "test_grad_noise.py").write_text(readme_block("`tests/test_grad_noise.py`", "python"))
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(src)],
        check=True, capture_output=True,
    )
    return {**os.environ, "PYTHONPATH": str(site), "SRC": str(src)}


def test_readme_plugin_is_listed(installed):
    proc = subprocess.run([sys.executable, "-m", "trickbag", "plugins", "--json"], env=installed, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["grad_noise"]["hooks"] == ["trickbag_after_backward"]
    assert rows["grad_noise"]["options"]["std"]["default"] == 0.01
    assert rows["grad_noise"]["distribution"] == "trickbag-grad-noise"


def test_readme_plugin_trains(installed, tmp_path):
    recipe = tmp_path / "noise.toml"
    recipe.write_text('[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\n[training]\nepochs = 1\n[tricks.grad_noise]\nstd = 0.02\n')
    proc = subprocess.run([sys.executable, "-m", "trickbag", "run", str(recipe), "--out", str(tmp_path / "run"), "-q"],
                          env=installed, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "grad_noise 0.1.0 [on]" in proc.stderr


def test_readme_plugin_tests_pass(installed):
    """The README's test of the example passes against it (and would fail for a no-op trick)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_grad_noise.py"],
                          env=installed, cwd=installed["SRC"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
