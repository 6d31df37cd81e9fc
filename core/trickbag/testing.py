"""Helpers for testing tricks, loaded by pytest as a plugin (entry point ``pytest11``).

Plugin authors get them too: ``plugin_row("my_trick")`` is what ``trickbag plugins --json`` says
about an installed trick, and the ``single_thread`` fixture runs a test's tiny tensors on one
thread (torch's intra-op pool only adds wake-up latency there, milliseconds per op on a busy
2-core machine).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import torch


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


def torchrun(args: list[str], nproc: int = 2, timeout: float = 300, tries: int = 2, fresh: "os.PathLike | None" = None) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node N -m trickbag ARGS`` on CPU ranks (gloo).

    On a loaded 2-core machine a gloo rank occasionally dies of a signal while connecting: that
    (and only that) is retried once, so a real failure still fails. ``fresh``: a folder the
    command writes, removed before a retry. Every attempt's stderr is kept in the result.
    """
    import shutil

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), "-m", "trickbag", *args]
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
