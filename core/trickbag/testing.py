"""Helpers for testing tricks, loaded by pytest as a plugin (entry point ``pytest11``).

Plugin authors get them too (``docs/plugin-api.md``):

* ``run_trick({"my_trick": {...}}, modules=[my_module])`` trains a real short run in-process
  (embedded digits, an MLP, one epoch, a second or two) with the trick enabled, and returns what
  happened at every step (LR, momentum, batch size, loss) and the trick objects as they ended;
  ``modules`` lets a test load a plugin module that is not installed;
* ``plugin_row("my_trick")`` is what ``trickbag plugins --json`` says about an installed trick;
* ``assert_one_line_error(result, *needles)`` checks a refused command: exit 2, one line, no traceback;
* the ``single_thread`` fixture runs a test's tiny tensors on one thread (torch's intra-op pool
  only adds wake-up latency there, milliseconds per op on a busy 2-core machine);
* ``torchrun([...])`` runs the CLI under torchrun on CPU ranks;
* ``drive_tui(recipe_path, out_dir)`` runs the range test and a training launch in the terminal UI,
  headless (needs ``trickbag-tui``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable

import pytest
import torch


@dataclass
class StepRecord:
    progress: float
    lr: float
    momentum: float | None
    batch_size: int
    loss: float


@dataclass
class TrickRun:
    summary: dict[str, Any]  # what fit() returned: best/final val_acc, history (one row per epoch)
    steps: list[StepRecord] = field(default_factory=list)
    tricks: dict[str, object] = field(default_factory=dict)  # the run objects of the enabled tricks


def run_trick(
    tricks: dict[str, dict[str, Any]],
    *,
    modules: Iterable[object] = (),
    observers: Iterable[object] = (),
    out_dir: "os.PathLike | None" = None,
    **sections: dict[str, Any],
) -> TrickRun:
    """Train a real short run with ``tricks`` enabled and record every step.

    The recipe is one epoch of an MLP on scikit-learn's digits at batch 100 (15 steps); any section
    (``data=``, ``model=``, ``optimizer=``, ``training=``) given updates it. ``modules`` are plugin
    modules to load besides the installed ones, e.g. the module under test imported directly.
    Nothing is written unless ``out_dir`` is given. Losses are read once per step (a device sync:
    this is for tests, not for speed)."""
    from trickbag.engine.loop import fit
    from trickbag.hookspecs import hookimpl
    from trickbag.plugins import Catalog
    from trickbag.recipe import build_recipe

    raw: dict[str, Any] = {
        "data": {"name": "digits", "val_size": 297},
        "model": {"name": "mlp", "width": 32},
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "training": {"epochs": 1, "batch_size": 100, "checkpoint": out_dir is not None},
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    raw["tricks"] = tricks
    catalog = Catalog().load(extra_modules=list(modules))
    record = TrickRun(summary={})

    class Recorder:
        @hookimpl
        def trickbag_fit_start(self, context):
            record.tricks = context.tricks

        @hookimpl
        def trickbag_step_end(self, state):
            record.steps.append(StepRecord(state.progress, state.lr, state.momentum, state.batch_size, float(state.loss)))

    record.summary = fit(build_recipe(raw, catalog=catalog), out_dir, observers=[Recorder(), *observers], catalog=catalog)
    return record


def plugin_row(name: str) -> dict[str, Any]:
    """The ``trickbag plugins --json`` entry of an installed trick (fails the test if absent)."""
    from typer.testing import CliRunner

    from trickbag.cli.app import app

    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert name in rows, f"trickbag plugins does not list {name!r} (installed: {sorted(rows)})"
    return rows[name]


@pytest.fixture
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def torchrun(args: list[str], nproc: int = 2, timeout: float = 300, tries: int = 2, fresh: "os.PathLike | None" = None,
             script: "os.PathLike | None" = None) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node N -m trickbag ARGS`` on CPU ranks (gloo); with
    ``script``, that Python file runs instead of ``-m trickbag`` (a harness that wraps the CLI).

    On a loaded 2-core machine a gloo rank occasionally dies of a signal while connecting: that
    (and only that) is retried once, so a real failure still fails (``tries=1`` when a rank is
    meant to die). ``fresh``: a folder the command writes, removed before a retry. Every attempt's
    stderr is kept in the result.
    """
    import shutil

    target = [str(script)] if script is not None else ["-m", "trickbag"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *target, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    errors = []
    for attempt in range(tries):
        if attempt and fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
        errors.append(proc.stderr)
        if proc.returncode == 0 or "Signal" not in proc.stderr:
            break
    proc.stderr = "\n--- next attempt ---\n".join(errors)
    return proc


def drive_tui(recipe_path: "os.PathLike", out_dir: "os.PathLike", *, sweep_steps: int = 20, after_sweep=None) -> Any:
    """Drive the terminal UI as a user would, headless: open the recipe, run the LR range test (r)
    with ``sweep_steps`` steps, then launch training from the Train tab (4, l) into ``out_dir`` and
    wait for it to end; assert the sweep and the run finished. ``after_sweep(app)`` may check the
    app between the two (e.g. that the sweep restored a trick). Returns the app's session.

    Needs the ``trickbag-tui`` distribution (imported here, not at module level: the engine
    installs without Textual)."""
    import asyncio
    from pathlib import Path

    from trickbag_tui.app import TrickbagApp
    from trickbag_tui.screens.lr_find import LRFindPanel
    from trickbag_tui.screens.train import TrainPanel
    from trickbag_tui.session import SweepSettings

    from trickbag.recipe import load_recipe

    path = Path(recipe_path)

    async def until(pilot, condition, seconds: float = 300) -> None:
        for _ in range(int(seconds / 0.02)):
            if condition():
                return
            await pilot.pause(0.02)
        raise AssertionError("timed out waiting for the app")

    async def flow():
        app = TrickbagApp(path, load_recipe(path), [], sweep=SweepSettings(start=1e-4, end=1.0, steps=sweep_steps), out_dir=Path(out_dir))
        async with app.run_test(size=(80, 24)) as pilot:
            panel = app.screen.query_one(LRFindPanel)
            await pilot.press("r")
            await until(pilot, lambda: panel.state == "done")
            await app.workers.wait_for_complete()
            assert len(app.session.result.lrs) == sweep_steps
            if after_sweep is not None:
                after_sweep(app)
            await pilot.press("4")
            train = app.screen.query_one(TrainPanel)
            await pilot.press("l")
            await until(pilot, lambda: app.session.launched and app.session.launched[-1]["status"] != "running")
            await app.workers.wait_for_complete()
            assert app.session.launched[-1]["status"] == "done", train.last
            assert len(train.rows) >= 1
            return app.session

    return asyncio.run(flow())


def assert_one_line_error(result: Any, *needles: str) -> None:
    """A CLI result (typer's ``CliRunner().invoke``) that refused bad input as the project promises:
    exit code 2, one ``error: ...`` line on stderr (the ``plugins:`` header aside) containing every
    needle, and no traceback."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("plugins: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
