"""Every command through Typer's CliRunner, and every kind of bad input: exit code 2, one line."""
import json
import subprocess
import sys

import pytest
from trickbag.cli.app import app
from typer.testing import CliRunner

runner = CliRunner()
QUICK = ["--set", "data.name=digits", "--set", "data.val_size=297", "--set", "model.name=mlp", "--set", "training.epochs=1"]


def write(tmp_path, text, name="r.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("plugins: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_missing_recipe_file():
    one_line_error(runner.invoke(app, ["run", "no/such/recipe.toml"]), "no/such/recipe.toml", "not found")


def test_toml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, '[training]\nepochs = 3\nbatch_size = = 4\n')
    one_line_error(runner.invoke(app, ["check", path]), path, "invalid TOML", "line 3")


def test_unknown_section_suggests(tmp_path):
    path = write(tmp_path, "[trainig]\nepochs = 3\n")
    one_line_error(runner.invoke(app, ["check", path]), "unknown section 'trainig'", "did you mean 'training'")


def test_unknown_key_suggests(tmp_path):
    path = write(tmp_path, "[optimizer]\nlrr = 0.1\n")
    one_line_error(runner.invoke(app, ["check", path]), "unknown key 'optimizer.lrr'", "did you mean 'lr'")


def test_wrong_type(tmp_path):
    path = write(tmp_path, '[training]\nepochs = "ten"\n')
    one_line_error(runner.invoke(app, ["check", path]), "training.epochs", "'ten'")


def test_value_out_of_range(tmp_path):
    path = write(tmp_path, "[optimizer]\nlr = -0.1\n")
    one_line_error(runner.invoke(app, ["check", path]), "optimizer.lr", "greater than 0")


def test_trick_option_out_of_range(tmp_path):
    path = write(tmp_path, "[tricks.one_cycle]\npct_start = 1.5\n")
    one_line_error(runner.invoke(app, ["check", path]), "tricks.one_cycle.pct_start")


def test_unknown_trick_option_suggests(tmp_path):
    path = write(tmp_path, "[tricks.one_cycle]\npct_strat = 0.2\n")
    one_line_error(runner.invoke(app, ["check", path]), "tricks.one_cycle.pct_strat", "did you mean 'pct_start'")


def test_trick_not_installed_names_the_package(tmp_path):
    path = write(tmp_path, "[tricks.stochastic_depth]\n")
    one_line_error(runner.invoke(app, ["check", path]), "trick 'stochastic_depth' is not installed", "pip install trickbag-stochastic-depth")


def test_bad_set_option():
    one_line_error(runner.invoke(app, ["check", "quickstart", "--set", "epochs"]), "--set 'epochs'")
    one_line_error(runner.invoke(app, ["check", "quickstart", "--set", "training.epochs=-1"]), "training.epochs")


def test_bad_model_and_data_names():
    one_line_error(runner.invoke(app, ["check", "quickstart", "--set", "model.name=resnet21"]), "resnet21", "resnet20")
    one_line_error(runner.invoke(app, ["check", "quickstart", "--set", "data.name=mnist"]), "mnist")


def test_resume_from_a_folder_that_is_not_a_run(tmp_path):
    one_line_error(runner.invoke(app, ["run", "--resume", str(tmp_path)]), str(tmp_path), "not a run folder")


def test_resume_with_a_corrupt_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, ["run", "quickstart", *QUICK, "--out", str(out), "-q"]).exit_code == 0
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    one_line_error(runner.invoke(app, ["run", "--resume", str(out), "--epochs", "2"]), "checkpoint.pt", "is corrupt")  # digest recorded
    (out / "checkpoint.pt.sha256").unlink()  # a copy without its digest: read, and refused as what it is
    one_line_error(runner.invoke(app, ["run", "--resume", str(out), "--epochs", "2"]), "checkpoint.pt", "unreadable")


def test_out_folder_already_holding_a_run(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, ["run", "quickstart", *QUICK, "--out", str(out), "-q"]).exit_code == 0
    before = (out / "metrics.jsonl").read_text()
    one_line_error(runner.invoke(app, ["run", "quickstart", *QUICK, "--out", str(out), "-q"]), "already holds a run", "--resume")
    assert (out / "metrics.jsonl").read_text() == before  # nothing already trained is lost


def test_run_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "quickstart", *QUICK, "--set", "training.epochs=2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0].startswith("plugins: ")
    assert "label_smoothing" in result.stderr.splitlines()[0]
    assert "best val_acc" in result.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("epoch", "train_loss", "val_loss", "val_acc", "lr", "seconds"):
        assert key in rows[0]
    saved = (out / "recipe.toml").read_text()
    assert 'name = "digits"' in saved and "[tricks.one_cycle]" in saved and "pct_start = 0.25" in saved
    assert (out / "checkpoint.pt").exists()


def test_check_prints_the_resolved_recipe():
    result = runner.invoke(app, ["check", "quickstart", "--set", "training.epochs=3"])
    assert result.exit_code == 0, result.output
    import tomllib

    resolved = tomllib.loads(result.stdout)
    assert resolved["training"]["epochs"] == 3
    assert resolved["training"]["precision"] == "fp32"  # defaults filled in
    assert resolved["tricks"]["label_smoothing"]["epsilon"] == 0.1
    assert "ok:" in result.stderr


def test_plugins_lists_the_five_tricks():
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert {"one_cycle", "label_smoothing", "mixup", "no_bias_decay", "batch_size_schedule"} <= set(rows)
    for row in rows.values():
        assert row["hooks"] and row["version"] and "enabled" in row["options"]
    human = runner.invoke(app, ["plugins"])
    assert human.exit_code == 0 and "one_cycle" in human.stdout and "hooks:" in human.stdout


def test_plugins_allow_list_env(monkeypatch):
    from trickbag.plugins import reset_plugins

    monkeypatch.setenv("TRICKBAG_PLUGINS", "mixup")
    reset_plugins()
    try:
        rows = json.loads(runner.invoke(app, ["plugins", "--json"]).stdout)
        assert [r["name"] for r in rows] == ["mixup"]
        monkeypatch.setenv("TRICKBAG_PLUGINS", "none")
        reset_plugins()
        assert json.loads(runner.invoke(app, ["plugins", "--json"]).stdout) == []
    finally:
        monkeypatch.delenv("TRICKBAG_PLUGINS")
        reset_plugins()


def test_recipes_lists_bundled_recipes():
    result = runner.invoke(app, ["recipes"])
    assert result.exit_code == 0
    assert "quickstart " in result.stdout and "quickstart-plain" in result.stdout and "cifar10" in result.stdout


def test_no_args_shows_help():
    result = runner.invoke(app, [])
    assert "run" in result.output and "plugins" in result.output


@pytest.mark.slow
def test_real_entry_point_exit_code(tmp_path):
    """The installed console script, not just the Typer app: exit 2 and one stderr line."""
    proc = subprocess.run([sys.executable, "-m", "trickbag", "run", str(tmp_path / "missing.toml")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing.toml" in proc.stderr


def test_markup_in_a_path_is_printed_as_it_is(tmp_path):
    """A run folder named with rich markup trains and is named verbatim in the summary (it used to
    crash printing "done" after the whole run)."""
    out = tmp_path / "c[/b]" / "[bold]x"
    result = runner.invoke(app, ["run", "quickstart", *QUICK, "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert f"run folder {out}" in result.stdout and (out / "checkpoint.pt").exists()


def test_a_full_disk_names_what_is_kept(tmp_path, monkeypatch):
    """Writing epoch 2 fails (no space left): one line, and the checkpoint of epoch 1 is whole."""
    import errno

    import trickbag.engine.loop as loop
    from trickbag.runs.checkpoint import load_checkpoint

    real, calls = loop.save_atomic, []

    def full(obj, path):
        calls.append(path)
        if len(calls) > 2:  # epoch 1 wrote best.pt and checkpoint.pt
            raise OSError(errno.ENOSPC, "No space left on device")
        real(obj, path)

    monkeypatch.setattr(loop, "save_atomic", full)
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "quickstart", *QUICK, "--set", "training.epochs=3", "--out", str(out), "-q"])
    assert result.exit_code == 2
    assert "writing epoch 2 failed (No space left on device); the checkpoint of epoch 1" in result.stderr
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1


def test_a_run_that_ends_at_chance_level_says_so(tmp_path):
    result = runner.invoke(app, ["run", "quickstart", *QUICK, "--set", "optimizer.lr=1e-9", "--set", "tricks.one_cycle.enabled=false",
                                 "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 0
    assert "warning: the run ended at chance level (val_acc" in result.stderr and "trickbag lr-find" in result.stderr
