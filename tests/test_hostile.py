"""A corpus of bad input: recipes, --set values, run folders, checkpoints, command options.

Every case must end with exit code 2, exactly one line on stderr (``error: ...``), no traceback,
and no file that existed before the command changed: a trained run, a user's own file, the
recipe. Cases run in-process through the real CLI (Typer's CliRunner) on the embedded digits.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch
from trickbag.cli.app import app
from trickbag.runs.checkpoint import save_atomic
from typer.testing import CliRunner

runner = CliRunner()
DIGITS = '[data]\nname = "digits"\nval_size = 297\n[model]\nname = "mlp"\nwidth = 8\n[training]\nepochs = 1\nbatch_size = 100\n'
QUICK = ["--set", "data.name=digits", "--set", "data.val_size=297", "--set", "model.name=mlp", "--set", "training.epochs=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished one-epoch run, copied into each case's folder as its pre-existing run."""
    folder = tmp_path_factory.mktemp("trained") / "run"
    result = runner.invoke(app, ["run", str(write(folder.parent, DIGITS)), "--out", str(folder), "-q"])
    assert result.exit_code == 0, result.output
    return folder


def write(folder: Path, text: str, name: str = "r.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".lock"}


def recipe(section: str, text: str) -> str:
    """DIGITS with ``text`` (``key = value`` lines) in ``[section]``, replacing those keys there."""
    marker = f"[{section}]\n"
    if marker not in DIGITS:
        return DIGITS + marker + text + "\n"
    head, _, rest = DIGITS.partition(marker)
    body, nxt, tail = rest.partition("\n[")
    keys = {line.split("=")[0].strip() for line in text.splitlines() if "=" in line}
    kept = [line for line in body.splitlines() if line.split("=")[0].strip() not in keys]
    return head + marker + "\n".join([*kept, text]) + "\n" + (nxt.lstrip("\n") and "[" + tail)


# (id, how to build the command in a case folder, words the one error line must contain)
CASES: list[tuple[str, object, tuple[str, ...]]] = []


def case(name: str, *needles: str):
    def add(build):
        CASES.append((name, build, needles))
        return build
    return add


def check(text: str):
    return lambda d, run: ["check", str(write(d, text))]


# -- the recipe file itself ------------------------------------------------------------------------
case("missing file", "not found")(lambda d, run: ["check", str(d / "nope.toml")])
case("a folder", "is a folder")(lambda d, run: ["check", str(d)])
case("a FIFO", "not a regular file")(lambda d, run: (os.mkfifo(d / "pipe.toml"), ["check", str(d / "pipe.toml")])[1])
case("binary", "not a UTF-8")(lambda d, run: ((d / "b.toml").write_bytes(b"\xff\xfe\x00\x01" * 10), ["check", str(d / "b.toml")])[1])
case("huge file", "not a recipe")(lambda d, run: ((d / "h.toml").write_bytes(b"# " + b"x" * (1 << 21)), ["check", str(d / "h.toml")])[1])
case("nested arrays", "nested too deeply")(check("v = " + "[" * 5000 + "]" * 5000))
case("nested inline tables", "nested too deeply")(check("v = " + "{a = " * 3000 + "1" + "}" * 3000))
for i, bad in enumerate(["[training\nepochs = 1", "epochs = = 1", "[training]\nepochs = 1\nepochs = 2", "a = 'x", "= 1", "[[training]]\n[training]"]):
    case(f"TOML syntax {i}", "invalid TOML")(check(bad))
case("unknown section", "unknown section 'trainig'", "did you mean 'training'")(check(DIGITS + "[trainig]\nepochs = 1\n"))
case("section not a table", "'data' must be a table ([data])")(check("data = 5\n"))
case("tricks not a table", "'tricks' must hold one table per trick")(check("tricks = 3\n" + DIGITS))
case("trick not a table", "tricks.mixup must be a table")(check(DIGITS + "[tricks]\nmixup = 1\n"))
case("description not a string", "description must be a string")(check("description = 3\n" + DIGITS))

# -- keys, types, ranges ------------------------------------------------------------------------------
for section, key, value, needle in [
    ("optimizer", "lrr", "0.1", "did you mean 'lr'"),
    ("data", "val_sise", "10", "did you mean 'val_size'"),
    ("training", "epoch", "3", "did you mean 'epochs'"),
    ("training", "batchsize", "3", "did you mean 'batch_size'"),
]:
    case(f"unknown key {section}.{key}", f"unknown key '{section}.{key}'", needle)(check(recipe(section, f"{key} = {value}")))
for section, key, value, needle in [
    ("training", "batch_size", "true", "training.batch_size"),
    ("training", "batch_size", "12.5", "training.batch_size"),
    ("training", "batch_size", '"64"', "training.batch_size"),
    ("training", "batch_size", "0", "training.batch_size"),
    ("training", "batch_size", "-5", "training.batch_size"),
    ("training", "batch_size", "100000000", "training.batch_size"),
    ("training", "epochs", '"ten"', "training.epochs"),
    ("training", "epochs", "0", "training.epochs"),
    ("training", "epochs", "-1", "training.epochs"),
    ("training", "epochs", "inf", "training.epochs"),
    ("training", "epochs", "nan", "training.epochs"),
    ("training", "epochs", "1e400", "training.epochs"),
    ("training", "epochs", "1e12", "training.epochs"),
    ("training", "seed", "18446744073709551616", "training.seed"),
    ("training", "seed", "1e23", "training.seed"),
    ("training", "seed", "-1", "training.seed"),
    ("training", "threads", "100000000000", "training.threads"),
    ("training", "threads", "0", "training.threads"),
    ("training", "precision", '"fp8"', "training.precision"),
    ("training", "device", '"tpu"', "training.device"),
    ("training", "grad_clip", "0", "training.grad_clip"),
    ("training", "grad_clip", "-1.0", "training.grad_clip"),
    ("training", "eval_batch_size", "0", "training.eval_batch_size"),
    ("training", "checkpoint", '"yes"', "training.checkpoint"),
    ("training", "deterministic", "1", "training.deterministic"),
    ("training", "compile_mode", '"fast"', "training.compile_mode"),
    ("training", "channels_last", '"sometimes"', "training.channels_last"),
    ("optimizer", "lr", "0", "optimizer.lr"),
    ("optimizer", "lr", "-0.1", "optimizer.lr"),
    ("optimizer", "lr", "true", "optimizer.lr"),
    ("optimizer", "lr", "inf", "optimizer.lr"),
    ("optimizer", "lr", "1e9", "optimizer.lr"),
    ("optimizer", "momentum", "1.0", "optimizer.momentum"),
    ("optimizer", "momentum", "-0.1", "optimizer.momentum"),
    ("optimizer", "betas", "[1.5, 0.999]", "betas[0] = 1.5 must be in [0, 1)"),
    ("optimizer", "betas", "[0.9]", "optimizer.betas"),
    ("optimizer", "betas", '"0.9"', "optimizer.betas"),
    ("optimizer", "eps", "0", "optimizer.eps"),
    ("optimizer", "weight_decay", "-1", "optimizer.weight_decay"),
    ("optimizer", "nesterov", '"no"', "optimizer.nesterov"),
    ("data", "val_size", "0", "data.val_size"),
    ("data", "val", '"train"', "data.val"),
    ("data", "crop_padding", "-1", "data.crop_padding"),
    ("data", "crop_padding", "100000", "data.crop_padding"),
    ("data", "flip", '"no"', "data.flip"),
    ("data", "on_device", '"maybe"', "data.on_device"),
    ("data", "num_workers", "-2", "data.num_workers"),
    ("data", "subset", "0", "data.subset"),
    ("data", "image_size", "4", "data.image_size"),
    ("data", "split_seed", "1.5", "data.split_seed"),
]:
    case(f"{section}.{key} = {value}", needle)(check(recipe(section, f"{key} = {value}")))

# -- values only the run can judge -----------------------------------------------------------------
case("nesterov without momentum", "nesterov = true needs momentum > 0")(check(recipe("optimizer", "nesterov = true\nmomentum = 0.0")))
case("batch larger than the data", "training.batch_size 100000 is larger than the 1,500 training samples")(check(DIGITS.replace("batch_size = 100", "batch_size = 100000")))
case("val_size leaves nothing", "data.val_size 1797 leaves no training samples")(check(recipe("data", "val_size = 1797").replace("val_size = 297\n", "")))
case("subset too large", "data.subset 5000 is larger")(check(recipe("data", "subset = 5000")))
case("unknown data set", "data.name 'mnsit'", "did you mean 'mnist'")(check(DIGITS.replace('"digits"', '"mnsit"')))
case("data.root missing", "data.root 'nowhere' does not exist", "data.download = true")(check(DIGITS.replace('"digits"', '"cifar10"\nroot = "nowhere"')))
case("data.root a file", "data.root", "is a file, not a folder")(lambda d, run: ["check", str(write(d, DIGITS.replace('"digits"', f'"cifar10"\nroot = "{write(d, "x", "plain.txt")}"')))])
case("no test split", "data.val = 'test' but digits has no test split")(check(recipe("data", 'val = "test"')))
case("image_size not imagefolder", "data.image_size applies to imagefolder only")(check(recipe("data", "image_size = 16")))
case("unknown model", "model.name 'resnet21'", "did you mean 'resnet20'")(check(DIGITS.replace('"mlp"\nwidth = 8', '"resnet21"')))
case("unknown model option", "model.widht is not an option of 'mlp'", "did you mean 'width'")(check(DIGITS.replace("width = 8", "widht = 8")))
case("model option type", "model.width must be int")(check(DIGITS.replace("width = 8", 'width = "wide"')))
case("model option bool", "model.width must be int")(check(DIGITS.replace("width = 8", "width = true")))
case("model option range", "model.width must be >= 1")(check(DIGITS.replace("width = 8", "width = 0")))
case("model too big", "model 'mlp' cannot be built")(check(DIGITS.replace("width = 8", "width = 100000000000")))
case("airbench on 8x8", "airbench94 needs images of at least 16x16")(check(DIGITS.replace('"mlp"\nwidth = 8', '"airbench94"')))
case("unknown optimizer", "optimizer.name 'adamm'", "did you mean 'adam'")(check(recipe("optimizer", 'name = "adamm"')))
case("cuda on a CPU machine", "CUDA is not available")(check(recipe("training", 'device = "cuda"')))
case("trick not installed", "trick 'stochastic_depth' is not installed", "pip install trickbag-stochastic-depth")(check(DIGITS + "[tricks.stochastic_depth]\n"))
case("trick misspelt", "trick 'mixpu' is not installed", "did you mean 'mixup'")(check(DIGITS + "[tricks.mixpu]\n"))
case("trick option unknown", "unknown key 'tricks.mixup.alhpa'", "did you mean 'alpha'")(check(DIGITS + "[tricks.mixup]\nalhpa = 0.2\n"))
case("trick option range", "tricks.mixup.alpha")(check(DIGITS + "[tricks.mixup]\nalpha = -1\n"))
case("trick option type", "tricks.label_smoothing.epsilon")(check(DIGITS + '[tricks.label_smoothing]\nepsilon = "lots"\n'))
case("trick enabled not a bool", "tricks.mixup.enabled")(check(DIGITS + '[tricks.mixup]\nenabled = "no"\n'))
case("one_cycle pct_start", "tricks.one_cycle.pct_start")(check(DIGITS + "[tricks.one_cycle]\npct_start = 1.5\n"))
case("batch factor below 1", "tricks.batch_size_schedule.factor")(lambda d, run: ["check", str(write(d, DIGITS)), "--set", "tricks.batch_size_schedule.factor=0.5"])
case("milestones out of order", "tricks.batch_size_schedule.milestones")(check(DIGITS + "[tricks.batch_size_schedule]\nmilestones = [3, 2]\n"))
case("markup in a missing path", "recipe 'c[/b]/r.toml' not found")(lambda d, run: ["check", "c[/b]/r.toml"])
case("markup in a key", "unknown key 'optimizer.[/x]'")(check(recipe("optimizer", '"[/x]" = 1')))

# -- --set -------------------------------------------------------------------------------------------
for i, (arg, needle) in enumerate([
    ("optimizer.lr", "must look like section.key=value"),
    ("lr=0.1", "the key must name a section and a key"),
    ("optimizer.lrr=0.1", "unknown key 'optimizer.lrr'"),
    ("training.epochs.x=1", "'epochs' is a value, not a section"),
    ("optimizer.betas=[1.5,0.999]", "betas[0] = 1.5"),
    ("training.batch_size=true", "training.batch_size"),
    ("training.epochs=inf", "training.epochs"),
    ("data.flip=maybe", "data.flip"),
    ("tricks.mixup.alpha=0", "tricks.mixup.alpha"),
    ("training.seed=" + "[" * 3000 + "]" * 3000, "nested too deeply"),
]):
    case(f"--set {i}", needle)(lambda d, run, arg=arg: ["check", str(write(d, DIGITS)), "--set", arg])

# -- run folders and checkpoints ---------------------------------------------------------------------
case("--out is a file", "is a file, not a folder")(lambda d, run: ["run", str(write(d, DIGITS)), "--out", str(write(d, "x", "file.txt"))])
case("--out holds a user's files", "holds files that are not a trickbag run")(
    lambda d, run: (write(d / "mine", "my notes", "notes.txt") if (d / "mine").mkdir() is None else None,
                    ["run", str(write(d, DIGITS)), "--out", str(d / "mine")])[1])
case("--out holds a user's recipe.toml", "holds files that are not a trickbag run (recipe.toml)")(
    lambda d, run: ((d / "mine").mkdir(), write(d / "mine", DIGITS, "recipe.toml"), ["run", str(write(d, DIGITS)), "--out", str(d / "mine")])[2])
case("--out holds a run", "already holds a run", "--resume")(lambda d, run: ["run", str(write(d, DIGITS)), "--out", str(run)])
case("--resume not a run", "is not a run folder")(lambda d, run: ["run", "--resume", str(d)])
case("--resume with a recipe", "--resume takes the recipe saved in the run folder")(lambda d, run: ["run", str(write(d, DIGITS)), "--resume", str(run)])
case("--resume finished", "the run already finished (1 epochs)")(lambda d, run: ["run", "--resume", str(run)])
case("--epochs without --resume", "--epochs goes with --resume")(lambda d, run: ["run", str(write(d, DIGITS)), "--epochs", "3"])
case("--epochs not more", "--epochs 1: the run has already trained 1 epochs")(lambda d, run: ["run", "--resume", str(run), "--epochs", "1"])
case("--epochs negative", "--epochs -3: must be a positive, finite number")(lambda d, run: ["run", "--resume", str(run), "--epochs", "-3"])
case("edited recipe", "recipe.toml was edited since the run started (optimizer.lr: 0.1 -> 0.5)")(
    lambda d, run: ((run / "recipe.toml").write_text((run / "recipe.toml").read_text().replace("lr = 0.1", "lr = 0.5")), ["run", "--resume", str(run), "--epochs", "2"])[1])


def corrupt(mutate, *, keep_digest=False):
    """A command resuming the case's run after ``mutate(saved_dict)`` rewrote its checkpoint."""
    def build(d, run):
        saved = torch.load(run / "checkpoint.pt", weights_only=True)
        mutate(saved)
        if keep_digest:  # a well-formed file with a recorded digest: only the content is wrong
            save_atomic(saved, run / "checkpoint.pt")
        return ["run", "--resume", str(run), "--epochs", "2"]
    return build


case("flipped byte", "is corrupt")(lambda d, run: (flip_byte(run / "checkpoint.pt"), ["run", "--resume", str(run), "--epochs", "2"])[1])
case("truncated checkpoint", "is corrupt")(lambda d, run: (truncate(run / "checkpoint.pt"), ["run", "--resume", str(run), "--epochs", "2"])[1])
case("zero-byte checkpoint", "is corrupt")(lambda d, run: ((run / "checkpoint.pt").write_bytes(b""), ["run", "--resume", str(run), "--epochs", "2"])[1])
case("text as checkpoint, no digest", "unreadable or not a trickbag checkpoint")(
    lambda d, run: ((run / "checkpoint.pt").write_text("hello"), (run / "checkpoint.pt.sha256").unlink(), ["run", "--resume", str(run), "--epochs", "2"])[2])
case("epoch as a string", "'epoch' is a str, not a int")(corrupt(lambda s: s.update(epoch="3"), keep_digest=True))
case("epoch negative", "'epoch' is -2, below 0")(corrupt(lambda s: s.update(epoch=-2), keep_digest=True))
case("no global_step", "has no 'global_step' entry")(corrupt(lambda s: s.pop("global_step"), keep_digest=True))
case("model as a tensor", "'model' is a Tensor, not a dict")(corrupt(lambda s: s.update(model=torch.zeros(3)), keep_digest=True))
case("model not a state_dict", "'model' is not a state_dict")(corrupt(lambda s: s.update(model={"w": 1}), keep_digest=True))
case("recipe as a list", "'recipe' is a list, not a dict")(corrupt(lambda s: s.update(recipe=[1]), keep_digest=True))
case("weights of another model", "the checkpoint does not fit the recipe's model or optimizer")(
    corrupt(lambda s: s.update(model={k: torch.zeros(2) for k in s["model"]}), keep_digest=True))
case("optimizer state of another optimizer", "the checkpoint does not fit the recipe's")(
    corrupt(lambda s: s.update(optimizer={"state": {}, "param_groups": []}), keep_digest=True))
case("a pickle with code", "unreadable or not a trickbag checkpoint")(
    lambda d, run: (evil_pickle(run / "checkpoint.pt"), (run / "checkpoint.pt.sha256").unlink(), ["run", "--resume", str(run), "--epochs", "2"])[2])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def evil_pickle(path: Path) -> None:
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > /tmp/trickbag-pwned",))

    torch.save({"model": Boom(), "epoch": 1}, path)


# -- lr-find -------------------------------------------------------------------------------------------
for i, (args, needle) in enumerate([
    (["--start", "1", "--end", "0.1"], "need 0 < start < end"),
    (["--start", "0"], "need 0 < start < end"),
    (["--steps", "2"], "need at least 5 steps"),
    (["--mode", "cubic"], "--mode 'cubic' is unknown"),
    (["--diverge", "1"], "--diverge 1: must be > 1"),
    (["--smooth", "1"], "--smooth 1: must be in [0, 1)"),
]):
    case(f"lr-find settings {i}", needle)(lambda d, run, args=args: ["lr-find", str(write(d, DIGITS)), *args])
case("lr-find --out a file", "is a file, not a folder")(lambda d, run: ["lr-find", str(write(d, DIGITS)), "--out", str(write(d, "x", "f.txt"))])
case("lr-find bad recipe", "unknown key 'training.epoch'")(lambda d, run: ["lr-find", str(write(d, DIGITS)), "--set", "training.epoch=2"])
case("momentum bad recipe", "unknown key 'optimizer.momentun'")(lambda d, run: ["momentum", str(write(d, DIGITS)), "--set", "optimizer.momentun=0.5"])


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 100, len(CASES)


@pytest.mark.parametrize(("name", "build", "needles"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(tmp_path, trained, name, build, needles):
    run = tmp_path / "run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("*.lock"))
    user_file = write(tmp_path, "my own notes", "notes.txt")
    args = build(tmp_path, run)
    before = snapshot(tmp_path)  # after the case's own set-up, which may have planted the bad file
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (name, result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, (name, result.stderr)
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (name, lines[0])
    after = snapshot(tmp_path)
    assert {f: after.get(f) for f in before} == before, name  # nothing that existed changed
    assert user_file.read_text() == "my own notes"
    assert not Path("/tmp/trickbag-pwned").exists()
