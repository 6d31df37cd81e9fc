"""`trickbag ablate` beyond one process: --jobs (a spawn pool splitting the cores), --backend ray,
--print-commands for any scheduler and --collect back; the plot, the live display, bad input."""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys

import pytest
from trickbag.ablate.backends import threads_per_run
from trickbag.ablate.live import AblationProgress
from trickbag.ablate.plot import ablation_figure
from trickbag.ablate.stats import summarize
from trickbag.ablate.variants import grid
from trickbag.cli.app import app
from trickbag.testing import assert_one_line_error
from typer.testing import CliRunner

RECIPE = ('[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\nwidth = 16\n[optimizer]\nname = "sgd"\n'
          'lr = 0.05\nmomentum = 0.9\n[training]\nepochs = {epochs}\nbatch_size = 50\n[tricks.label_smoothing]\n[tricks.one_cycle]\n')


def rows(path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in path.read_text().splitlines()]


def ablate_process(args, cwd, threads: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run([sys.executable, "-m", "trickbag", "ablate", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.slow
def test_jobs_split_the_cores_and_write_what_one_process_writes(tmp_path):
    (tmp_path / "r.toml").write_text(RECIPE.format(epochs=0.6))
    args = ["r.toml", "--mode", "each", "--seeds", "2"]
    # a worker of --jobs 2 trains on half the cores: the same thread count in one process gives bit-equal runs
    ablate_process([*args, "--out", "one"], tmp_path, threads_per_run(2))
    pooled = ablate_process([*args, "--out", "two", "--jobs", "2"], tmp_path, threads_per_run(2))
    assert f"local: 2 worker processes, {threads_per_run(2)} threads each" in pooled.stderr
    assert rows(tmp_path / "two" / "ablation.jsonl") == rows(tmp_path / "one" / "ablation.jsonl")  # variant x seed order
    assert pooled.stderr.count("(trained)") == 6 and "done: 6 runs (6 trained)" in pooled.stderr


@pytest.mark.slow
def test_ray_backend_makes_the_same_runs(tmp_path):
    pytest.importorskip("ray")
    import ray

    (tmp_path / "r.toml").write_text(RECIPE.format(epochs=0.6))
    args = ["r.toml", "--vary", "optimizer.lr=0.02,0.1", "--seeds", "2"]
    # Ray's local mode is gone (Ray >= 2.5x refuses it): this starts a single-node Ray instance here
    raid = ablate_process([*args, "--out", "ray", "--backend", "ray", "--jobs", "2"], tmp_path, 1)
    assert not ray.is_initialized()  # in the child process only
    assert raid.stderr.count("(trained)") == 4
    # the thread count Ray's tasks used (Ray counts the CPUs its own way, e.g. from cgroup quotas)
    threads = int(re.search(r"ray: \d+ CPUs in the cluster, 2 runs at a time, (\d+) threads each", raid.stderr).group(1))
    ablate_process([*args, "--out", "local"], tmp_path, threads)
    assert rows(tmp_path / "ray" / "ablation.jsonl") == rows(tmp_path / "local" / "ablation.jsonl")


def test_printed_commands_make_the_ablations_runs_and_collect_builds_the_table(tmp_path, monkeypatch, single_thread):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.toml").write_text(RECIPE.format(epochs=0.4))
    runner = CliRunner()
    args = ["r.toml", "--vary", "optimizer.lr=0.02,0.1", "--vary", 'optimizer.name="sgd"', "--seeds", "2", "--out", "o"]
    printed = runner.invoke(app, ["ablate", *args, "--print-commands"])
    assert printed.exit_code == 0, printed.output
    lines = printed.stdout.strip().splitlines()
    assert len(lines) == 4 and "trickbag ablate --collect o" in printed.stderr
    assert lines[0] == ("trickbag run r.toml --set optimizer.lr=0.02 --set 'optimizer.name=\"sgd\"' --set training.seed=0 "
                        "--out o/optimizer.lr=0.02,optimizer.name=sgd/seed-0")
    assert not list(tmp_path.glob("o/*/seed-*"))  # nothing trained
    for line in lines[:3]:  # three of the four runs, as a scheduler would launch them
        argv = shlex.split(line)
        assert argv[:2] == ["trickbag", "run"]
        assert runner.invoke(app, [*argv[1:], "-q"]).exit_code == 0
    partial = runner.invoke(app, ["ablate", "--collect", "o"])
    assert partial.exit_code == 0, partial.output
    assert "1 runs missing or unfinished" in partial.stderr and "optimizer.lr=0.1,optimizer.name=sgd/seed-1" in partial.stderr
    assert len(rows(tmp_path / "o" / "ablation.jsonl")) == 3 and (tmp_path / "o" / "ablation.png").stat().st_size > 10_000
    assert runner.invoke(app, [*shlex.split(lines[3])[1:], "-q"]).exit_code == 0
    collected = runner.invoke(app, ["ablate", "--collect", "o"])
    assert "missing" not in collected.stderr and "collected 4 runs" in collected.stderr
    by_commands = rows(tmp_path / "o" / "ablation.jsonl")
    again = runner.invoke(app, ["ablate", *args])  # the ablation itself finds exactly its runs done
    assert again.exit_code == 0 and again.stderr.count("(skipped)") == 4, again.output
    assert rows(tmp_path / "o" / "ablation.jsonl") == by_commands


def test_a_two_key_grid_is_a_heat_map_of_the_means_and_modes_are_intervals():
    todo = grid(["optimizer.lr=0.1,0.2,0.4", "optimizer.weight_decay=0,0.001"])
    results = [{"variant": v.name, "seed": s, "final_val_acc": 0.5 + 0.05 * i + 0.01 * s}
               for i, v in enumerate(todo) for s in range(3)]
    summaries = summarize(results, [v.name for v in todo], todo[0].name)
    fig = ablation_figure(summaries, results, todo, ["optimizer.lr=0.1,0.2,0.4", "optimizer.weight_decay=0,0.001"], "t")
    cells = fig.axes[0].images[0].get_array()
    assert cells.shape == (3, 2)  # rows: lr, columns: weight decay
    assert cells[2, 1] == pytest.approx(100 * (0.5 + 0.05 * 5 + 0.01))  # lr=0.4, wd=0.001: the sixth variant
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "0.001"]
    three = grid(["tricks.x.mode=a,b", "optimizer.lr=0.1,0.2", "optimizer.weight_decay=0,1"])
    res3 = [{"variant": v.name, "seed": 0, "final_val_acc": 0.1 * i} for i, v in enumerate(three)]
    fig3 = ablation_figure(summarize(res3, [v.name for v in three], three[0].name), res3, three,
                           ["tricks.x.mode=a,b", "optimizer.lr=0.1,0.2", "optimizer.weight_decay=0,1"], "t")
    maps = [ax for ax in fig3.axes if ax.images]
    assert len(maps) == 2 and maps[1].get_title() == "tricks.x.mode = b"
    assert maps[1].images[0].get_array()[1, 0] == pytest.approx(100 * 0.1 * 6)  # mode b, lr 0.2, wd 0
    bars = ablation_figure(summaries[:2], results, todo[:2], [], "t")
    ax = bars.axes[0]
    means = [c.lines[0].get_xdata()[0] for c in ax.containers]  # the error bars' centres, baseline first
    assert means == pytest.approx([s.mean for s in summaries[:2]])


def test_the_live_display_counts_estimates_and_keeps_the_best(monkeypatch):
    from rich.console import Console

    clock = iter([0.0, 0.0, 20.0, 20.0])  # created, entered, after the trained run, summary
    monkeypatch.setattr("trickbag.ablate.live.time.monotonic", lambda: next(clock))
    live = AblationProgress(Console(file=open(os.devnull, "w")))
    live.__enter__()  # t = 0
    live.on_run({"variant": "a", "seed": 0, "final_val_acc": 0.5, "diverged": False}, "skipped", 1, 4)
    live.on_run({"variant": "b", "seed": 0, "final_val_acc": 0.7, "diverged": False}, "trained", 2, 4)  # t = 20
    task = live.progress.tasks[0]
    assert task.completed == 2 and task.fields["eta"] == "0:00:40"  # 20 s for the one run made, 2 to go
    assert task.fields["best"].startswith("best b 70.00%")
    assert live.summary() == "2 runs (1 skipped, 1 trained) in 0:00:20"
    live.__exit__(None, None, None)


@pytest.mark.parametrize("args, needle", [
    (["r.toml", "--jobs", "0"], "--jobs 0"),
    (["r.toml", "--backend", "slurm"], "--backend 'slurm' is unknown"),
    (["r.toml", "--gpus-per-run", "1"], "with --backend ray"),
    (["r.toml", "--vary", "training.epochs=1,2", "--epochs", "1"], "--epochs and --vary training.epochs"),
    (["--collect", "nowhere"], "nowhere holds no variants.json"),
    (["r.toml", "--collect", "nowhere"], "--collect reads everything"),
    ([], "missing RECIPE"),
    (["r.toml", "--set", "tricks.cosine.enabled=true"], "variant +label_smoothing+one_cycle"),
])
def test_bad_scaling_input_is_one_line_and_exit_2(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.toml").write_text(RECIPE.format(epochs=0.3))
    result = CliRunner().invoke(app, ["ablate", *args, "--out", "out"] if "--collect" not in args else ["ablate", *args])
    assert_one_line_error(result, needle)
    assert not (tmp_path / "out").exists()


def test_threads_are_split_between_the_jobs():
    assert threads_per_run(2, 16) == 8 and threads_per_run(3, 16) == 5 and threads_per_run(32, 16) == 1
    assert math.isclose(threads_per_run(1, 2), 2)


def test_rows_are_written_in_variant_and_seed_order_whatever_order_runs_finish(tmp_path, monkeypatch):
    """The promise behind --jobs and Ray: ablation.jsonl lists variant x seed in order even when the
    runs finish in another (here: reversed) order."""
    import trickbag.ablate.backends as backends
    from trickbag.ablate.runner import Plan, run_ablation

    def reversed_execute(plan, work, record, **_):
        for index in reversed(range(len(work))):
            variant, seed = work[index]
            record(index, {"variant": variant.name, "seed": seed, "final_val_acc": 0.5, "seconds": 0.0}, "trained")

    monkeypatch.setattr(backends, "execute", reversed_execute)
    (tmp_path / "r.toml").write_text(RECIPE.format(epochs=0.3))
    _, results = run_ablation(Plan(tmp_path / "r.toml", (), "each", 2, None, tmp_path / "out"))
    order = [("baseline", 0), ("baseline", 1), ("+label_smoothing", 0), ("+label_smoothing", 1), ("+one_cycle", 0), ("+one_cycle", 1)]
    assert [(r["variant"], r["seed"]) for r in results] == order
    assert [(r["variant"], r["seed"]) for r in rows(tmp_path / "out" / "ablation.jsonl")] == order


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the worker processes")
def test_ctrl_c_with_jobs_stops_every_worker_and_says_how_to_continue(tmp_path):
    import contextlib
    import signal
    import time
    from pathlib import Path

    (tmp_path / "r.toml").write_text(RECIPE.format(epochs=2000))  # minutes per run: Ctrl-C lands mid-run
    proc = subprocess.Popen([sys.executable, "-m", "trickbag", "ablate", "r.toml", "--mode", "each", "--seeds", "2", "--jobs", "2",
                             "--out", "o"], cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def children() -> set[int]:
        found = set()
        for task in Path(f"/proc/{proc.pid}/task").glob("*/children"):
            found |= {int(p) for p in task.read_text().split()}
        return found

    deadline = time.monotonic() + 120
    while len(children()) < 3:  # the two workers and multiprocessing's resource tracker, still starting up
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(3)  # the workers are importing or training
    workers = children()
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)  # not after the runs: a run takes minutes
    finally:  # a failing test leaves nothing running
        proc.kill()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 130 and "run the same command again to continue" in err
    time.sleep(0.5)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]]
    assert not alive, f"worker processes outlived the command: {alive}"
