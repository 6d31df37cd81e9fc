"""`trickbag runs`: run folders under a folder, newest first, with their recipe, tricks, epochs
done/total, best val_acc and status (finished / interrupted / diverged / running)."""
from __future__ import annotations

import os

import pytest
from filelock import FileLock
from trickbag.cli.app import app
from trickbag.testing import assert_one_line_error
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")

RECIPE = ('[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\nwidth = 16\n[optimizer]\nname = "sgd"\n'
          'lr = {lr}\nmomentum = 0.9\n[training]\nepochs = 2\nbatch_size = 100\n[tricks.label_smoothing]\n')


@pytest.fixture
def listing(tmp_path, monkeypatch):
    from trickbag.cli.output import out

    monkeypatch.setattr(out, "width", 300)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    (tmp_path / "good.toml").write_text(RECIPE.format(lr=0.1))
    (tmp_path / "wild.toml").write_text(RECIPE.format(lr=1e6))
    for name, recipe in [("a-finished", "good"), ("b-cut", "good"), ("c-diverged", "wild"), ("d-busy", "good")]:
        runner.invoke(app, ["run", f"{recipe}.toml", "--out", f"runs/{name}", "-q"])
    metrics = tmp_path / "runs" / "b-cut" / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines()[0] + "\n")  # as if killed after epoch 1
    assert runner.invoke(app, ["ablate", "good.toml", "--mode", "each", "--seeds", "1", "--epochs", "0.5", "--out", "runs/abl"]).exit_code == 0
    for age, name in enumerate(["d-busy", "c-diverged", "b-cut", "a-finished"]):  # d newest
        os.utime(tmp_path / "runs" / name / "metrics.jsonl", (1e9 - age * 3600, 1e9 - age * 3600))
    for run in (tmp_path / "runs" / "abl").glob("*/seed-0"):
        os.utime(run / "metrics.jsonl", (1e8, 1e8))  # oldest
    return tmp_path


def test_runs_lists_every_run_newest_first_with_its_status(listing):
    with FileLock(listing / "runs" / "d-busy" / "run.lock"):  # as if another process were training it
        metrics = listing / "runs" / "d-busy" / "metrics.jsonl"
        metrics.write_text(metrics.read_text().splitlines()[0] + "\n")
        os.utime(metrics, (1e9, 1e9))
        result = CliRunner().invoke(app, ["runs"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("│ ")]
    names = [line.split("│")[1].strip() for line in lines]
    assert names[:4] == ["d-busy", "c-diverged", "b-cut", "a-finished"]
    assert sorted(names[4:]) == ["abl/+label_smoothing/seed-0", "abl/baseline/seed-0"]
    row = {n: line for n, line in zip(names, lines)}
    assert "running" in row["d-busy"] and "1/2" in row["d-busy"]
    assert "diverged" in row["c-diverged"] and "interrupted" in row["b-cut"] and "1/2" in row["b-cut"]
    assert "finished" in row["a-finished"] and "2/2" in row["a-finished"] and "│ good " in row["a-finished"]
    assert "label_smoothing" in row["a-finished"] and "—" in row["abl/baseline/seed-0"].split("│")[3]  # its tricks off
    assert "trickbag run --resume runs/b-cut" in result.stderr  # the busy one is not offered


def test_limit_and_bad_input(listing):
    result = CliRunner().invoke(app, ["runs", "-n", "2"])
    assert "runs under runs: 6, newest 2" in result.stdout
    assert len([line for line in result.stdout.splitlines() if line.startswith("│ ")]) == 2
    assert_one_line_error(CliRunner().invoke(app, ["runs", "nowhere"]), "'nowhere' is not a folder")
    assert_one_line_error(CliRunner().invoke(app, ["runs", "-n", "-1"]), "--limit -1")
    (listing / "empty").mkdir()
    assert "no run folders under empty" in CliRunner().invoke(app, ["runs", "empty"]).stderr
