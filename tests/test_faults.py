"""Kill a real ``trickbag run`` (SIGKILL, its own process) at each point where it writes, resume it,
and get exactly an uninterrupted run: the same final weights and the complete metrics history.
Also: a finite explosion keeps the last good checkpoint, and a second writer is refused.

The kill is planted by a small wrapper around the CLI that patches the write it targets
(``torch.save`` into a checkpoint's temp file, the ``os.replace`` that publishes it, the metrics
rewrite) to kill the process at that call: the production code has no test hooks in it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from trickbag.engine.loop import Diverged, fit
from trickbag.hookspecs import hookimpl
from trickbag.recipe import load_recipe
from trickbag.runs.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

RECIPE = """
[data]
name = "digits"
val_size = 297
crop_padding = 1
[model]
name = "small_cnn"
width = 8
[optimizer]
name = "sgd"
lr = 0.1
momentum = 0.9
[training]
epochs = 3
batch_size = 100
seed = 5
threads = 1
[tricks.one_cycle]
[tricks.mixup]
alpha = 0.4
"""

# the wrapper: kill this process at the n-th call of the targeted write, then run the CLI
WRAPPER = """
import os, signal, sys
import torch
import trickbag.runs.checkpoint as ckpt
import trickbag.runs.folder as folder

target, nth = sys.argv[1], int(sys.argv[2])
calls = {"n": 0}

def hit():
    calls["n"] += 1
    return calls["n"] == nth

if target == "checkpoint-write":  # half of the temp file written, then killed
    real_save = torch.save
    def save(obj, f, *a, **k):
        where = os.readlink(f"/proc/self/fd/{f.fileno()}") if hasattr(f, "fileno") else ""
        if "checkpoint.pt." in where and hit():
            f.write(b"half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *a, **k)
    torch.save = save
elif target == "checkpoint-replace":  # the temp file and its digest written, not yet published
    real_replace = os.replace
    def replace(src, dst):
        if str(dst).endswith("checkpoint.pt") and hit():
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)
    os.replace = replace
elif target == "metrics-write":  # the checkpoint published, its metrics row not yet written
    real_write = folder.write_atomic
    def write(path, text):
        if str(path).endswith("metrics.jsonl") and text and hit():
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write(path, text)
    folder.write_atomic = write
sys.argv = ["trickbag", *sys.argv[3:]]
from trickbag.cli.app import main
main()
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    (root / "r.toml").write_text(RECIPE)
    (root / "wrapper.py").write_text(WRAPPER)
    reference = root / "reference"
    run_cli(["run", str(root / "r.toml"), "--out", str(reference), "-q"])
    return root, reference


def run_cli(args, wrapper=None, target=None, nth=1):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(wrapper), target, str(nth), *args] if wrapper else [sys.executable, "-m", "trickbag", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def same_run(a: Path, b: Path) -> None:
    wa, wb = load_checkpoint(a / "checkpoint.pt")["model"], load_checkpoint(b / "checkpoint.pt")["model"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ra, rb = rows(a), rows(b)
    assert [r["epoch"] for r in rb] == [1, 2, 3]
    assert [(r["train_loss"], r["val_acc"]) for r in ra] == [(r["train_loss"], r["val_acc"]) for r in rb]


@pytest.mark.parametrize(("target", "nth"), [
    ("checkpoint-write", 2),    # killed while writing epoch 2's checkpoint
    ("checkpoint-replace", 2),  # killed between writing it and publishing it
    ("metrics-write", 2),       # killed after publishing it, before its metrics row
])
def test_a_kill_at_each_write_resumes_to_the_uninterrupted_run(setup, target, nth):
    root, reference = setup
    out = root / f"killed-{target}"
    proc = run_cli(["run", str(root / "r.toml"), "--out", str(out), "-q"], root / "wrapper.py", target, nth)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] in (1, 2)  # whole, digest checked
    resumed = run_cli(["run", "--resume", str(out), "-q"])
    assert resumed.returncode == 0, resumed.stderr
    same_run(reference, out)
    assert not list(out.glob("*.tmp"))  # the killed write's temp file was cleaned up


def test_a_kill_while_resume_rewrites_the_metrics(setup):
    """The first write of a resume is metrics.jsonl rebuilt from the checkpoint: killed there, the
    file is the old one or the new one, and the next resume still ends as the uninterrupted run."""
    root, reference = setup
    out = root / "killed-at-resume"
    first = run_cli(["run", str(root / "r.toml"), "--out", str(out), "-q"], root / "wrapper.py", "metrics-write", 2)
    assert first.returncode == -signal.SIGKILL
    (out / "metrics.jsonl").write_text((out / "metrics.jsonl").read_text() + '{"epoch": 2, "torn')  # and a torn line
    again = run_cli(["run", "--resume", str(out), "-q"], root / "wrapper.py", "metrics-write", 1)
    assert again.returncode == -signal.SIGKILL
    resumed = run_cli(["run", "--resume", str(out), "-q"])
    assert resumed.returncode == 0, resumed.stderr
    same_run(reference, out)


def test_a_finite_explosion_keeps_the_last_good_checkpoint(tmp_path):
    """From epoch 3 the LR jumps to 1e4: the loss explodes to a huge but finite number. The run
    stops there; the checkpoint and best.pt stay those of epoch 2; the exploded epoch is recorded
    as diverged in metrics.jsonl but is not in the checkpoint's history."""
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.replace("epochs = 3", "epochs = 4").replace("[tricks.one_cycle]\n", ""))

    class Jump:
        @hookimpl
        def trickbag_lr_schedule(self, base_lr, context):
            return lambda progress: base_lr if progress < 2 else 1e4

    out = tmp_path / "run"
    with pytest.raises(Diverged, match=r"diverged in epoch 3: training loss .* is over 10 times the run's scale .*; "
                                       r"the checkpoint of epoch 2 \(val_acc .*\) is kept"):
        fit(load_recipe(path), out, observers=[Jump()])
    saved = load_checkpoint(out / "checkpoint.pt")
    assert saved["epoch"] == 2 and [r["epoch"] for r in saved["history"]] == [1, 2]
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] <= 2
    recorded = rows(out)
    assert [r["epoch"] for r in recorded] == [1, 2, 3] and recorded[-1]["diverged"] is True
    assert recorded[-1]["train_loss"] > 1e3 and all(r.get("diverged") is None for r in recorded[:2])


def test_a_second_writer_is_refused(tmp_path):
    """While one process trains into a run folder, a second one (here: --resume of the same
    folder) is refused at once with one line, and the first finishes untouched."""
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.replace("epochs = 3", "epochs = 200"))
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "trickbag", "run", str(path), "--out", str(out), "-q"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (out / "run.json").exists():  # written once the lock is held
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        second = run_cli(["run", "--resume", str(out), "-q"])
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [f"error: run folder '{out}' is in use by another trickbag process (it holds run.lock)"]
        third = run_cli(["run", str(path), "--out", str(out), "-q"])
        assert third.returncode == 2 and "already holds a run" in third.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
