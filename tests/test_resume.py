"""Kill a run mid-way (SIGKILL, a real process), resume it, and get exactly the weights of a run that
was never interrupted: weights, optimizer, per-epoch RNG and data order, tricks' state."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from trickbag.engine.loop import fit
from trickbag.hookspecs import hookimpl
from trickbag.recipe import load_recipe
from trickbag.runs.checkpoint import load_checkpoint

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
weight_decay = 5e-4

[training]
epochs = {epochs}
batch_size = 32
seed = 3
threads = 1             # tiny model: one thread is fastest and the same in every process

[tricks.one_cycle]
[tricks.mixup]
alpha = 0.4
"""


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def rows(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "resume.toml"
    path.write_text(RECIPE.format(epochs=24))
    return path


def cli(*args):
    return subprocess.run([sys.executable, "-m", "trickbag", *args, "-q"], capture_output=True, text=True)


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(tmp_path, recipe_file):
    # the reference runs as a process like the killed one: same thread count, same kernels
    reference = tmp_path / "reference"
    assert cli("run", str(recipe_file), "--out", str(reference)).returncode == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "trickbag", "run", str(recipe_file), "--out", str(killed), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (killed / "metrics.jsonl").exists() and len((killed / "metrics.jsonl").read_text().splitlines()) >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = load_checkpoint(killed / "checkpoint.pt")["epoch"]
    assert 3 <= done < 24, "the kill must land mid-run"

    resumed = cli("run", "--resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(load_checkpoint(killed / "checkpoint.pt")["model"], load_checkpoint(reference / "checkpoint.pt")["model"])
    assert_same_weights(load_checkpoint(killed / "checkpoint.pt")["optimizer"]["state"][0], load_checkpoint(reference / "checkpoint.pt")["optimizer"]["state"][0])
    got, want = rows(killed), rows(reference)
    assert [r["epoch"] for r in got] == list(range(1, 25))
    for a, b in zip(got, want):
        assert (a["train_loss"], a["val_acc"], a["lr"]) == (b["train_loss"], b["val_acc"], b["lr"])


def test_ctrl_c_mid_epoch_keeps_finished_epochs_and_resumes_exactly(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(epochs=4))
    reference = tmp_path / "reference"
    fit(load_recipe(path), reference)

    class CtrlC:
        @hookimpl
        def trickbag_step_end(self, state):
            if state.epoch == 2 and state.step_in_epoch == 10:
                raise KeyboardInterrupt

    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        fit(load_recipe(path), out, observers=[CtrlC()])
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2
    assert len(rows(out)) == 2
    fit(load_recipe(out / "recipe.toml"), out, resume=True)
    assert_same_weights(load_checkpoint(out / "checkpoint.pt")["model"], load_checkpoint(reference / "checkpoint.pt")["model"])


def test_ctrl_c_in_the_first_epoch_resumes_from_the_start(tmp_path):
    """Interrupted before any epoch finished: no checkpoint, and --resume starts over from epoch 1,
    ending where an uninterrupted run ends; the CLI says so instead of a hint that would fail."""
    from trickbag.cli.app import app
    from typer.testing import CliRunner

    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(epochs=2))
    reference = tmp_path / "reference"
    fit(load_recipe(path), reference)

    class CtrlC:
        @hookimpl
        def trickbag_step_end(self, state):
            if state.epoch == 0 and state.step_in_epoch == 5:
                raise KeyboardInterrupt

    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        fit(load_recipe(path), out, observers=[CtrlC()])
    assert not (out / "checkpoint.pt").exists() and rows(out) == []
    result = CliRunner().invoke(app, ["run", "--resume", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert_same_weights(load_checkpoint(out / "checkpoint.pt")["model"], load_checkpoint(reference / "checkpoint.pt")["model"])
    assert [r["epoch"] for r in rows(out)] == [1, 2]


def test_the_interrupt_message_fits_what_is_on_disk(tmp_path, monkeypatch):
    import trickbag.engine.loop
    from trickbag.cli.app import app
    from typer.testing import CliRunner

    def interrupted(recipe, out_dir, **kwargs):
        out_dir.mkdir(parents=True)
        (out_dir / "recipe.toml").write_text(recipe.to_toml())
        raise KeyboardInterrupt

    monkeypatch.setattr(trickbag.engine.loop, "fit", interrupted)
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(epochs=2))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 130
    assert "interrupted before the first epoch finished: nothing to keep yet" in result.stderr
    assert f"trickbag run --resume {tmp_path / 'run'} starts it again from epoch 1" in result.stderr


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    from trickbag.engine.loop import Diverged

    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(epochs=4))

    class Explode:
        @hookimpl(wrapper=True)
        def trickbag_loss(self, outputs, batch, model, state):
            loss = yield
            return loss * float("nan") if state.epoch == 2 else loss

    out = tmp_path / "run"
    with pytest.raises(Diverged, match="diverged in epoch 3"):
        fit(load_recipe(path), out, observers=[Explode()])
    saved = load_checkpoint(out / "checkpoint.pt")
    assert saved["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())
