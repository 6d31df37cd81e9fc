"""Plugins that are broken, or break, as a user meets them through the CLI: one line each, naming
the distribution, the trick and the hook, and a broken plugin never blocks recipes without it.

Each plugin here is a real installed distribution: a module and a ``*.dist-info`` folder with
its entry point, on ``sys.path``, found by ``importlib.metadata`` like any pip-installed one.
"""
from __future__ import annotations

import sys
import textwrap

import pytest
from trickbag.cli.app import app
from trickbag.plugins import reset_plugins
from typer.testing import CliRunner

runner = CliRunner()
DIGITS = '[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\nwidth = 8\n[training]\nepochs = 0.2\nbatch_size = 100\n'


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path to install fake distributions into; the catalog is reloaded around it."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    reset_plugins()
    yield folder
    reset_plugins()
    for name in [m for m in sys.modules if m.startswith("trickbag_fake")]:
        del sys.modules[name]


def install(site, trick: str, source: str) -> None:
    module = f"trickbag_fake_{trick}"
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"trickbag_fake_{trick}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: trickbag-fake-{trick.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[trickbag]\n{trick} = {module}\n")


HEADER = """
from pathlib import Path
from trickbag import TrickOptions, TrickSpec, hookimpl, UserError
"""


def declare(trick: str, cls: str) -> str:
    return f"""

@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("{trick}", TrickOptions, {cls}, "a test trick")
"""


def recipe(tmp_path, tricks: str = "") -> str:
    path = tmp_path / "r.toml"
    path.write_text(DIGITS + tricks)
    return str(path)


def errors(result) -> list[str]:
    assert "Traceback" not in result.output and "Traceback" not in (result.stderr or "")
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


BROKEN = {
    "import": "import no_such_module_anywhere\n",
    "declare_raises": HEADER + "\n@hookimpl\ndef trickbag_declare_tricks():\n    raise KeyError('oops')\n",
    "declare_wrong_type": HEADER + "\n@hookimpl\ndef trickbag_declare_tricks():\n    return {'name': 'x'}\n",
    "wrong_argument": HEADER + """
class T:
    def __init__(self, options):
        pass

    @hookimpl
    def trickbag_loss(self, outputs, labels):
        pass
""" + declare("wrong_argument", "T"),
    "unknown_hook": HEADER + "\n@hookimpl\ndef trickbag_decalre_tricks():\n    return None\n",
}
WHY = {
    "import": "failed to import: ModuleNotFoundError: No module named 'no_such_module_anywhere'",
    "declare_raises": "cannot declare its tricks: KeyError: 'oops'",
    "declare_wrong_type": "trickbag_declare_tricks returned dict, not a TrickSpec",
    "wrong_argument": "trickbag_loss() takes 'labels', which the hook does not pass",
    "unknown_hook": "implements unknown hook 'trickbag_decalre_tricks'; did you mean 'trickbag_declare_tricks'",
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_plugin_is_set_aside_and_named_when_used(site, tmp_path, case):
    install(site, case, BROKEN[case])
    listed = runner.invoke(app, ["plugins"])
    assert listed.exit_code == 0
    assert f"warning: plugin '{case}' (trickbag-fake-{case.replace('_', '-')})" in listed.stderr and WHY[case] in listed.stderr
    assert "one_cycle" in listed.stdout and f"broken: plugin '{case}'" in listed.stdout
    reset_plugins()
    assert runner.invoke(app, ["check", recipe(tmp_path)]).exit_code == 0  # recipes without it are unaffected
    reset_plugins()
    used = runner.invoke(app, ["check", recipe(tmp_path, f"[tricks.{case}]\n")])
    assert used.exit_code == 1
    (line,) = errors(used)
    assert line.startswith(f"error: trick '{case}' cannot be used: plugin '{case}' (trickbag-fake-") and WHY[case] in line


RAISES_IN = {
    "configure_model": ("check", "def trickbag_configure_model(self, model, info, context):\n        raise RuntimeError('bad init')"),
    "after_step": ("run", "def trickbag_after_step(self, model, optimizer, state):\n        raise RuntimeError('bad step')"),
    "transform_batch": ("lr-find", "def trickbag_transform_batch(self, batch, state):\n        raise RuntimeError('bad batch')"),
}


@pytest.mark.parametrize("hook", sorted(RAISES_IN))
def test_a_trick_that_raises_is_named_in_one_line(site, tmp_path, hook):
    command, body = RAISES_IN[hook]
    install(site, "raiser", HEADER + f"\nclass T:\n    def __init__(self, options):\n        pass\n\n    @hookimpl\n    {body}\n" + declare("raiser", "T"))
    args = [command, recipe(tmp_path, "[tricks.raiser]\n")] + (["--out", str(tmp_path / "out")] if command != "check" else [])
    result = runner.invoke(app, args + (["--steps", "10"] if command == "lr-find" else []))
    assert result.exit_code == 1, result.output
    (line,) = errors(result)
    assert line == f"error: trick 'raiser' (trickbag-fake-raiser) raised in trickbag_{hook}: RuntimeError: bad {hook.split('_')[-1] if hook != 'configure_model' else 'init'}"


def test_trick_state_that_a_safe_load_refuses_is_named_at_save_time(site, tmp_path):
    install(site, "pathy", HEADER + """
class T:
    def __init__(self, options):
        self.where = Path("/tmp")

    def state_dict(self):
        return {"where": self.where}

    def load_state_dict(self, state):
        self.where = state["where"]
""" + declare("pathy", "T"))
    result = runner.invoke(app, ["run", recipe(tmp_path, "[tricks.pathy]\n"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    (line,) = errors(result)
    assert "trick 'pathy': state_dict() holds a PosixPath at ['where']" in line and "weights_only=True" in line


def test_resume_refuses_an_enabled_trick_without_saved_state(site, tmp_path):
    install(site, "counter", HEADER + """
class T:
    def __init__(self, options):
        self.steps = 0

    @hookimpl
    def trickbag_step_end(self, state):
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]
""" + declare("counter", "T"))
    out = tmp_path / "out"
    assert runner.invoke(app, ["run", recipe(tmp_path), "--set", "training.epochs=2", "--out", str(out)]).exit_code == 0
    # the run stopped after epoch 1 with the trick enabled, but its checkpoint holds no state for it
    # (the plugin saved none then, and does now): recipe.toml and the checkpoint's recipe agree
    import torch
    from trickbag.runs.checkpoint import save_atomic

    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    saved["epoch"] = 1
    saved["recipe"]["tricks"] = {"counter": {"enabled": True}}
    save_atomic(saved, out / "checkpoint.pt")
    (out / "recipe.toml").write_text((out / "recipe.toml").read_text() + "\n[tricks.counter]\n")
    result = runner.invoke(app, ["run", "--resume", str(out)])
    assert result.exit_code == 2
    (line,) = errors(result)
    assert "the checkpoint holds no state for trick 'counter'" in line


def test_plugins_prints_defaults_as_toml_and_required_options(site):
    install(site, "needs", HEADER + """
from typing import Literal
from pydantic import Field

class Options(TrickOptions):
    teacher: str = Field(description="run folder of the teacher")
    temperature: float = Field(4.0, description="softmax temperature")
    hard: bool = Field(False, description="hard labels")
    mode: Literal["a", "b"] = Field("a", description="a mode")
    cap: int | None = Field(None, description="optional cap")

class T:
    def __init__(self, options):
        pass

@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("needs", Options, T, "needs a teacher")
""")
    text = runner.invoke(app, ["plugins"]).stdout
    for line in ("  teacher = (required)  # run folder of the teacher", "  temperature = 4.0", "  hard = false", '  mode = "a"',
                 "  cap = (unset)", "  enabled = true"):
        assert line in text, text
    reset_plugins()
    import json

    rows = {r["name"]: r for r in json.loads(runner.invoke(app, ["plugins", "--json"]).stdout)}
    assert rows["needs"]["options"]["teacher"]["required"] is True and "default" not in rows["needs"]["options"]["teacher"]
    assert rows["needs"]["options"]["hard"]["default"] is False


def test_an_allow_list_naming_a_missing_plugin_is_a_warning(site, monkeypatch):
    monkeypatch.setenv("TRICKBAG_PLUGINS", "one_cycle,one_cycel")
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0
    assert "warning: TRICKBAG_PLUGINS names 'one_cycel', which no installed distribution provides" in result.stderr
    assert "one_cycle" in result.stdout and "mixup" not in result.stdout
