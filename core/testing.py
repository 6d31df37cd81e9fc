"""Helpers for testing tricks, loaded by pytest as a plugin (entry point ``pytest11``).

Plugin authors get them too: ``plugin_row("my_trick")`` is what ``trickbag plugins --json`` says
about an installed trick, and the ``single_thread`` fixture runs a test's tiny tensors on one
thread (torch's intra-op pool only adds wake-up latency there, milliseconds per op on a busy
2-core machine).
"""
from __future__ import annotations

import json
from typing import Any

import pytest
import torch


def plugin_row(name: str) -> dict[str, Any]:
    """The ``trickbag plugins --json`` entry of an installed trick (fails the test if absent)."""
    from typer.testing import CliRunner

    from trickbag.cli import app

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
