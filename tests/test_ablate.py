"""`trickbag ablate` (first increment): the variants of each mode, the statistics against scipy, run
folders that a rerun skips or resumes, a diverged run kept, and bad input in one line."""
from __future__ import annotations

import json
import math

import pytest
import torch
from scipy import stats
from trickbag.ablate.runner import Plan, prepare, run_ablation
from trickbag.ablate.stats import summarize, t_half_width
from trickbag.ablate.variants import variants
from trickbag.cli.app import app
from trickbag.engine.loop import fit
from trickbag.errors import UserError
from trickbag.hookspecs import hookimpl
from trickbag.runs.checkpoint import load_checkpoint
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")

RECIPE = ('[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\nwidth = 16\n[optimizer]\nname = "sgd"\n'
          'lr = {lr}\nmomentum = 0.9\n[training]\nepochs = {epochs}\nbatch_size = 100\n[tricks.label_smoothing]\n[tricks.one_cycle]\n')


def test_variants_of_each_mode():
    t = ["a", "b", "c"]
    each = variants(t, "each")
    assert [v.name for v in each] == ["baseline", "+a", "+b", "+c"] and each[0].baseline
    assert each[0].overrides == ("tricks.a.enabled=false", "tricks.b.enabled=false", "tricks.c.enabled=false")
    assert each[2].overrides == ("tricks.a.enabled=false", "tricks.c.enabled=false") and each[2].tricks_on == ("b",)
    cumulative = variants(t, "cumulative")
    assert [v.name for v in cumulative] == ["baseline", "+a", "+a+b", "+a+b+c"]
    assert cumulative[2].overrides == ("tricks.c.enabled=false",) and cumulative[3].overrides == ()
    loo = variants(t, "leave-one-out")
    assert [v.name for v in loo] == ["full", "-a", "-b", "-c"] and loo[0].baseline and loo[0].overrides == ()
    assert loo[2].overrides == ("tricks.b.enabled=false",) and loo[2].tricks_on == ("a", "c")
    with pytest.raises(UserError, match="--mode 'x' is unknown"):
        variants(t, "x")
    with pytest.raises(UserError, match="nothing to ablate"):
        variants([], "each")


def test_intervals_are_students_t():
    xs = [97.0, 98.5, 96.0, 97.7]
    assert t_half_width(xs) == pytest.approx(stats.t.ppf(0.975, 3) * stats.tstd(xs) / 2)
    assert math.isnan(t_half_width([1.0]))
    rows = [{"variant": v, "seed": s, "final_val_acc": acc} for v, s, acc in
            [("base", 0, 0.90), ("base", 1, 0.92), ("base", 2, 0.91), ("x", 0, 0.93), ("x", 1, 0.93), ("x", 2, 0.95)]]
    base, x = summarize(rows, ["base", "x"], "base")
    assert base.mean == pytest.approx(91.0) and base.delta is None
    assert x.delta == pytest.approx(100 * (0.03 + 0.01 + 0.04) / 3)  # seed-paired
    assert x.delta_ci == pytest.approx(t_half_width([3.0, 1.0, 4.0]))


def test_ablate_trains_run_folders_and_a_rerun_skips_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.toml").write_text(RECIPE.format(lr=0.05, epochs=0.5))
    runner = CliRunner()
    first = runner.invoke(app, ["ablate", "r.toml", "--mode", "each", "--seeds", "2", "--out", "out"])
    assert first.exit_code == 0, first.output
    rows = [json.loads(line) for line in (tmp_path / "out" / "ablation.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["seed"]) for r in rows] == [(v, s) for v in ("baseline", "+label_smoothing", "+one_cycle") for s in (0, 1)]
    for r in rows:  # ordinary run folders, with the variant's tricks
        saved = load_checkpoint(tmp_path / "out" / r["variant"] / f"seed-{r['seed']}" / "checkpoint.pt")
        on = [k for k, v in saved["recipe"]["tricks"].items() if v["enabled"]]
        assert on == ([] if r["variant"] == "baseline" else [r["variant"][1:]]) and saved["recipe"]["training"]["seed"] == r["seed"]
    assert rows[0]["final_val_acc"] != rows[1]["final_val_acc"]  # the seeds differ
    table = (tmp_path / "out" / "table.md").read_text()
    assert "+label_smoothing" in table and "Student's t" in table
    again = runner.invoke(app, ["ablate", "r.toml", "--mode", "each", "--seeds", "2", "--out", "out"])
    assert again.exit_code == 0 and again.stderr.count("(skipped)") == 6
    assert [json.loads(line) for line in (tmp_path / "out" / "ablation.jsonl").read_text().splitlines()] == rows


def test_an_interrupted_run_is_resumed_to_the_uninterrupted_weights(tmp_path):
    (tmp_path / "r.toml").write_text(RECIPE.format(lr=0.05, epochs=2))
    plan = Plan(tmp_path / "r.toml", (), "leave-one-out", 1, None, tmp_path / "out")
    todo, _ = prepare(plan)
    from trickbag.recipe import load_recipe

    class CtrlC:
        @hookimpl
        def trickbag_step_end(self, state):
            if state.epoch == 1 and state.step_in_epoch == 5:
                raise KeyboardInterrupt

    full = load_recipe(tmp_path / "r.toml", ["training.seed=0"])
    with pytest.raises(KeyboardInterrupt):  # the full variant's run stopped mid-way
        fit(full, tmp_path / "out" / "full" / "seed-0", observers=[CtrlC()])
    done = []
    run_ablation(plan, lambda row, how, i, n: done.append((row["variant"], how)))
    assert done == [("full", "resumed"), ("-label_smoothing", "trained"), ("-one_cycle", "trained")]
    fit(full, tmp_path / "reference")
    a, b = (load_checkpoint(p / "checkpoint.pt")["model"] for p in (tmp_path / "out" / "full" / "seed-0", tmp_path / "reference"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_diverged_run_is_recorded_not_dropped(tmp_path):
    (tmp_path / "r.toml").write_text(RECIPE.format(lr=1e6, epochs=1))
    _, rows = run_ablation(Plan(tmp_path / "r.toml", (), "each", 1, None, tmp_path / "out"))
    assert len(rows) == 3 and all(r["diverged"] for r in rows)


@pytest.mark.parametrize("args, needle", [
    (["--seeds", "0"], "--seeds 0"),
    (["--mode", "sideways"], "--mode 'sideways' is unknown"),
    (["--set", "tricks.label_smoothing.enabled=false", "--set", "tricks.one_cycle.enabled=false"], "nothing to ablate"),
    (["--vary", "optimizer.lrr=0.1,0.2"], "unknown key 'optimizer.lrr'"),
    (["--vary", "optimizer.lr=fast"], "optimizer.lr"),
    (["--vary", "optimizer.lr"], "KEY=V1,V2"),
    (["--vary", "optimizer.lr=0.1", "--mode", "each"], "--mode and --vary"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.toml").write_text(RECIPE.format(lr=0.05, epochs=0.5))
    result = CliRunner().invoke(app, ["ablate", "r.toml", "--out", "out", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.output
    assert not (tmp_path / "out").exists()  # refused before any file


def test_an_out_holding_another_ablation_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.toml").write_text(RECIPE.format(lr=0.05, epochs=0.3))
    runner = CliRunner()
    assert runner.invoke(app, ["ablate", "r.toml", "--seeds", "1", "--out", "out"]).exit_code == 0
    other = runner.invoke(app, ["ablate", "r.toml", "--seeds", "1", "--mode", "each", "--out", "out"])
    assert other.exit_code == 2 and "holds a different ablation" in other.output


def test_vary_makes_a_grid_over_recipe_keys(tmp_path, monkeypatch):
    from trickbag.ablate.variants import grid

    g = grid(["optimizer.lr=0.02,0.1", "training.batch_size=50,100"])
    assert [v.overrides for v in g] == [("optimizer.lr=0.02", "training.batch_size=50"), ("optimizer.lr=0.02", "training.batch_size=100"),
                                        ("optimizer.lr=0.1", "training.batch_size=50"), ("optimizer.lr=0.1", "training.batch_size=100")]
    assert g[0].baseline and not any(v.baseline for v in g[1:])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.toml").write_text(RECIPE.format(lr=0.05, epochs=0.3))
    result = CliRunner().invoke(app, ["ablate", "r.toml", "--vary", "optimizer.lr=0.02,0.1", "--seeds", "2", "--out", "out"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "out" / "ablation.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["seed"]) for r in rows] == [("optimizer.lr=0.02", 0), ("optimizer.lr=0.02", 1), ("optimizer.lr=0.1", 0), ("optimizer.lr=0.1", 1)]
    saved = load_checkpoint(tmp_path / "out" / "optimizer.lr=0.1" / "seed-1" / "checkpoint.pt")["recipe"]
    assert saved["optimizer"]["lr"] == 0.1 and saved["training"]["seed"] == 1


def test_a_run_stopped_before_its_first_checkpoint_is_started_again(tmp_path):
    """Ctrl-C in a run's first epoch leaves a run folder without checkpoint: the rerun must train it
    (as `trickbag run --resume` does), not refuse the folder as an existing run."""
    (tmp_path / "r.toml").write_text(RECIPE.format(lr=0.05, epochs=1))
    plan = Plan(tmp_path / "r.toml", (), "each", 1, None, tmp_path / "out")
    prepare(plan)
    from trickbag.recipe import load_recipe

    class CtrlC:
        @hookimpl
        def trickbag_step_end(self, state):
            if state.step_in_epoch == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(load_recipe(tmp_path / "r.toml", ["training.seed=0", *plan_variant_sets(plan)]), tmp_path / "out" / "baseline" / "seed-0",
            observers=[CtrlC()])
    assert not (tmp_path / "out" / "baseline" / "seed-0" / "checkpoint.pt").exists()
    done = []
    _, rows = run_ablation(plan, lambda row, how, i, n: done.append(how))
    assert done == ["trained", "trained", "trained"] and rows[0]["epochs"] == 1


def plan_variant_sets(plan):
    todo, _ = prepare(plan)
    return list(todo[0].overrides)
