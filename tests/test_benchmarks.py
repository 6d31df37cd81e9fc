"""The benchmark scripts run (their numbers are measured by hand, not asserted: timing belongs in
benchmarks/, never in tests)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_throughput_smoke_runs_on_cpu(tmp_path):
    """--smoke trains both the engine and the hand-written loop on tiny CPU sizes and writes the table."""
    out = tmp_path / "rows.json"
    md = tmp_path / "table.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_throughput.py"), "--smoke", "--json", str(out), "--markdown", str(md)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["precision"], r["compile"]) for r in rows] == [("resnet20", "bf16", False), ("airbench94", "bf16", False)]
    for r in rows:
        assert r["engine_ips"] > 0 and r["hand_ips"] > 0 and math.isclose(r["ratio"], r["hand_ips"] / r["engine_ips"])
    assert "| resnet20 | bf16 | no |" in md.read_text() and "worst ratio" in proc.stdout
