"""`trickbag compare`: the curves of several run folders in one PNG (the LR curve is the recipe's
own schedule) and their final metrics side by side; an ablation folder stands for its runs."""
from __future__ import annotations

import pytest
from trickbag.cli.app import app
from trickbag.engine.timeline import recipe_timeline
from trickbag.runs.compare import labels_of, lr_curve
from trickbag.runs.folder import read_metrics
from trickbag.runs.summary import read_run
from trickbag.testing import assert_one_line_error
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")

RECIPE = ('[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\nwidth = 16\n[optimizer]\nname = "sgd"\n'
          'lr = {lr}\nmomentum = 0.9\n[training]\nepochs = 2\nbatch_size = 50\n[tricks.one_cycle]\n')


@pytest.fixture
def two_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for lr in ("0.05", "0.2"):
        (tmp_path / f"r{lr}.toml").write_text(RECIPE.format(lr=lr))
        assert runner.invoke(app, ["run", f"r{lr}.toml", "--out", f"lr{lr}", "-q"]).exit_code == 0
    return tmp_path


def test_compare_prints_final_metrics_and_draws_the_curves(two_runs, monkeypatch):
    from trickbag.cli.output import out

    monkeypatch.setattr(out, "width", 250)  # one table row per line
    result = CliRunner().invoke(app, ["compare", "lr0.05", "lr0.2", "--out", "c.png"], terminal_width=250)
    assert result.exit_code == 0, result.output
    for folder in ("lr0.05", "lr0.2"):
        last = read_metrics(two_runs / folder)[-1]
        line = next(x for x in result.stdout.splitlines() if x.startswith(f"│ {folder} "))
        assert f"{100 * last['val_acc']:.2f}" in line and f"{last['val_loss']:.4f}" in line and "finished" in line and "2/2" in line
    assert (two_runs / "c.png").stat().st_size > 20_000 and "curves of 2 runs in c.png" in result.stderr


def test_the_lr_curve_is_the_recipes_schedule(two_runs):
    run = read_run(two_runs / "lr0.2")
    steps, lrs = lr_curve(run)
    t = recipe_timeline(run.recipe, points=2000)
    assert lrs == t.lr and max(lrs) == pytest.approx(0.2)
    assert lrs[0] < 0.05  # one-cycle starts low: not a constant line at optimizer.lr


def test_an_interrupted_run_says_so_and_labels_tell_seeds_apart(tmp_path, two_runs):
    metrics = two_runs / "lr0.05" / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines()[0] + "\n")  # as if killed after epoch 1
    assert read_run(two_runs / "lr0.05").status == "interrupted" and read_run(two_runs / "lr0.2").status == "finished"
    assert labels_of([tmp_path / "a" / "+mixup" / "seed-0", tmp_path / "b" / "seed-1"]) == ["+mixup/seed-0", "b/seed-1"]
    assert labels_of([tmp_path / "x" / "run", tmp_path / "y" / "run"]) == ["x/run", "y/run"]


def test_an_ablation_folder_stands_for_its_runs(tmp_path, monkeypatch):
    from trickbag.cli.output import out

    monkeypatch.setattr(out, "width", 250)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.toml").write_text(RECIPE.format(lr=0.05).replace("epochs = 2", "epochs = 0.5"))
    runner = CliRunner()
    assert runner.invoke(app, ["ablate", "r.toml", "--vary", "optimizer.lr=0.05,0.1", "--seeds", "1", "--out", "abl"]).exit_code == 0
    result = runner.invoke(app, ["compare", "abl"], terminal_width=250)
    assert result.exit_code == 0 and "curves of 2 runs" in result.stderr
    assert "optimizer.lr=0.1/seed-0" in result.stdout and (tmp_path / "compare.png").exists()


@pytest.mark.parametrize("args, needle", [
    (["nowhere"], "'nowhere' is not a run folder"),
    (["lr0.05", "--out", "c.svg"], "ending in .png"),
    (["lr0.05", "--out", "no/such/c.png"], "folder no/such does not exist"),
])
def test_bad_input_is_one_line(two_runs, args, needle):
    assert_one_line_error(CliRunner().invoke(app, ["compare", *args]), needle)
