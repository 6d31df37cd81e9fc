"""Issue 12's acceptance: a real 2-variant x 2-seed ablation on digits, killed (SIGKILL) midway and
run again, writes the same ablation.jsonl as an uninterrupted one, and its table's intervals are
scipy's Student-t intervals of the stored numbers."""
from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

import pytest
from scipy import stats

pytestmark = pytest.mark.slow  # subprocesses and a kill

RECIPE = """
[data]
name = "digits"
val_size = 297
[model]
name = "small_cnn"
width = 8
[optimizer]
name = "sgd"
lr = 0.05
momentum = 0.9
[training]
epochs = 1.6
batch_size = 4
[tricks.label_smoothing]
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # both ablations on the same thread count: bit-exact comparable


def ablate(out, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "trickbag", "ablate", "r.toml", "--mode", "each", "--seeds", "2", "--out", out],
                            cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def without_time(rs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rs]


def test_an_ablation_killed_midway_and_rerun_writes_the_uninterrupted_results(tmp_path):
    (tmp_path / "r.toml").write_text(RECIPE)
    reference = ablate("whole", tmp_path)
    killed = ablate("killed", tmp_path)
    # kill once the first run is recorded and the second has a checkpoint (its first epoch): mid-way
    second = tmp_path / "killed" / "baseline" / "seed-1" / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while not (rows(tmp_path / "killed" / "ablation.jsonl") and second.exists()):
        assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()[1]
        time.sleep(0.01)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    before = rows(tmp_path / "killed" / "ablation.jsonl")
    assert 1 <= len(before) < 4  # really midway
    again = subprocess.run([sys.executable, "-m", "trickbag", "ablate", "r.toml", "--mode", "each", "--seeds", "2", "--out", "killed"],
                           cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("(skipped)") == len(before)
    if len(before) == 1:  # the kill landed inside the second run, after its first epoch
        assert "baseline seed 1: val acc" in again.stderr and "(resumed)" in again.stderr
    _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err
    whole, resumed = rows(tmp_path / "whole" / "ablation.jsonl"), rows(tmp_path / "killed" / "ablation.jsonl")
    assert [(r["variant"], r["seed"]) for r in whole] == [("baseline", 0), ("baseline", 1), ("+label_smoothing", 0), ("+label_smoothing", 1)]
    assert without_time(resumed) == without_time(whole)
    assert all(r["epochs"] == pytest.approx(1.6) and not r["diverged"] for r in whole)

    # the table's intervals are scipy's, from the numbers stored in ablation.jsonl
    table = (tmp_path / "killed" / "table.md").read_text()
    line = next(x for x in table.splitlines() if x.startswith("| +label_smoothing"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    acc = {s: 100 * r["final_val_acc"] for r in resumed for s in [r["seed"]] if r["variant"] == "+label_smoothing"}
    base = {r["seed"]: 100 * r["final_val_acc"] for r in resumed if r["variant"] == "baseline"}
    low, high = stats.t.interval(0.95, 1, loc=statistics.mean(acc.values()), scale=stats.sem(list(acc.values())))
    assert cells[2] == f"{statistics.mean(acc.values()):.2f} ± {statistics.stdev(acc.values()):.2f}"
    assert cells[3] == f"± {(high - low) / 2:.2f}"
    diffs = [acc[s] - base[s] for s in (0, 1)]
    low, high = stats.t.interval(0.95, 1, loc=statistics.mean(diffs), scale=stats.sem(diffs))
    assert re.fullmatch(r"[+-]\d+\.\d\d ± \d+\.\d\d", cells[4]) and cells[4] == f"{statistics.mean(diffs):+.2f} ± {(high - low) / 2:.2f}"
