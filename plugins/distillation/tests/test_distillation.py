"""distillation: the loss formula by hand, the T^2 gradient scale, the teacher as the loop uses it
(eval mode, no gradients, the run's device and autocast, the student's possibly mixed inputs),
best/final weights, one-line errors from `trickbag check`, `trickbag run` under bf16/fp16,
`lr-find`, and `--resume` (the teacher reloaded: the resumed run equals the uninterrupted one)."""
import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from trickbag.cli.app import app
from trickbag.context import Batch
from trickbag.data import DataInfo
from trickbag.hookspecs import hookimpl
from trickbag.runs.checkpoint import BEST, CHECKPOINT, save_atomic
from trickbag.runs.model import load_model
from trickbag.testing import assert_one_line_error as one_line_error
from trickbag.testing import plugin_row, run_trick
from trickbag_distillation import (
    Distillation,
    DistillationOptions,
    distillation_loss,
    load_teacher,
    renormalisation,
)
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

TEACHER = """
[data]
name = "digits"
val_size = 297
[model]
name = "small_cnn"
width = 8
[optimizer]
lr = 0.05
[training]
epochs = 2
batch_size = 100
"""

STUDENT = """
[data]
name = "digits"
val_size = 297
[model]
name = "mlp"
width = 16
[training]
epochs = 1
batch_size = 100
[tricks.distillation]
teacher = "{teacher}"
{table}
"""


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A teacher run folder: a tiny `trickbag run` (a small CNN on digits), trained once."""
    folder = tmp_path_factory.mktemp("teacher")
    (folder / "teacher.toml").write_text(TEACHER)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    result = CliRunner().invoke(app, ["run", str(folder / "teacher.toml"), "--out", str(folder / "run"), "-q"])
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return folder / "run"


def student_recipe(tmp_path, teacher, table=""):
    path = tmp_path / "student.toml"
    path.write_text(STUDENT.format(teacher=teacher, table=table))
    return path


def test_listed_by_trickbag_plugins():
    row = plugin_row("distillation")
    assert row["hooks"] == ["trickbag_check", "trickbag_fit_start", "trickbag_loss"]
    assert row["options"]["teacher"]["required"] is True
    assert row["options"]["weights"]["default"] == "final"
    assert row["options"]["alpha"]["default"] == 0.5 and row["options"]["temperature"]["default"] == 4.0
    assert row["distribution"] == "trickbag-distillation"


# -- the formula ------------------------------------------------------------------------------


def by_hand(inner, z, r, alpha, t):
    """(1 - alpha) inner + alpha T^2 mean_n sum_k p_k (log p_k - log q_k), p = softmax(r / T), q = softmax(z / T)."""
    z, r = np.asarray(z, dtype=np.float64) / t, np.asarray(r, dtype=np.float64) / t
    log_q = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    log_p = r - r.max(1, keepdims=True) - np.log(np.exp(r - r.max(1, keepdims=True)).sum(1, keepdims=True))
    kl = (np.exp(log_p) * (log_p - log_q)).sum(1).mean()
    return (1 - alpha) * inner + alpha * t * t * kl


class Fixed(torch.nn.Module):
    """A 'teacher' that returns fixed logits and remembers what it was given."""

    def __init__(self, logits):
        super().__init__()
        self.logits, self.seen = logits, None

    def forward(self, x):
        self.seen = x
        return self.logits


def call_loss(trick, outputs, batch, inner):
    """Drive the trick's wrapper as pluggy does: it yields, receives the inner loss, returns its own."""
    wrapper = trick.trickbag_loss(outputs=outputs, batch=batch, model=None, state=None)
    next(wrapper)
    with pytest.raises(StopIteration) as stop:
        wrapper.send(inner)
    return stop.value.value


@pytest.mark.parametrize("alpha,t", [(0.5, 4.0), (0.9, 1.0), (0.1, 20.0), (1.0, 2.5), (0.0, 3.0)])
def test_the_loss_is_the_formula_on_fixed_logits(alpha, t):
    g = torch.Generator().manual_seed(0)
    z, r = 3 * torch.randn(16, 10, generator=g), 3 * torch.randn(16, 10, generator=g)
    inner = torch.tensor(1.2345)
    expected = by_hand(1.2345, z, r, alpha, t)
    assert distillation_loss(inner, z, r, alpha, t).item() == pytest.approx(expected, rel=1e-5)
    # the hook: the teacher runs on batch.inputs and the wrapper returns the same value
    trick = Distillation(DistillationOptions(teacher="unused", alpha=alpha, temperature=t))
    trick.teacher = Fixed(r)
    inputs = torch.randn(16, 1, 8, 8, generator=g)
    loss = call_loss(trick, z, Batch(inputs, torch.zeros(16, dtype=torch.long), 10), inner)
    assert trick.teacher.seen is inputs
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # KL(p || q), not KL(q || p): swapping teacher and student changes it
    if alpha > 0:
        assert distillation_loss(inner, r, z, alpha, t).item() != pytest.approx(expected, rel=1e-3)


def test_bf16_logits_give_the_float32_formula():
    z, r = torch.randn(8, 10, generator=torch.Generator().manual_seed(1)), torch.randn(8, 10, generator=torch.Generator().manual_seed(2))
    low = distillation_loss(torch.tensor(0.5), z.bfloat16(), r.bfloat16(), 0.5, 4.0)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(by_hand(0.5, z.bfloat16().float(), r.bfloat16().float(), 0.5, 4.0), rel=1e-5)


def soft_gradient(z, r, t, scaled=True):
    """d(soft term)/dz, the soft term T^2 KL (scaled) or KL alone."""
    z = z.clone().requires_grad_(True)
    loss = distillation_loss(torch.zeros((), dtype=z.dtype), z, r, 1.0, t)
    (loss if scaled else loss / (t * t)).backward()
    return z.grad


def test_t_squared_keeps_the_soft_gradient_comparable_across_temperatures():
    """d KL / dz = (softmax(z/T) - softmax(r/T)) / (N T), which for large T tends to
    (z - r - mean) / (N K T^2) (Hinton et al. 2015, section 2.1): without T^2 the soft term's
    gradient fades as 1/T^2 as the temperature rises; with it, it tends to (z - r - mean) / (N K)."""
    g = torch.Generator().manual_seed(3)
    n, k = 32, 10
    z, r = 3 * torch.randn(n, k, generator=g, dtype=torch.float64), 3 * torch.randn(n, k, generator=g, dtype=torch.float64)
    temperatures = [2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    for t in [1.0, *temperatures]:  # the exact gradient at every temperature
        exact = (torch.softmax(z / t, 1) - torch.softmax(r / t, 1)) * t / n
        assert torch.allclose(soft_gradient(z, r, t), exact, rtol=1e-10, atol=1e-14)
    limit = ((z - z.mean(1, keepdim=True)) - (r - r.mean(1, keepdim=True))) / (n * k)
    scaled = [soft_gradient(z, r, t).norm().item() for t in temperatures]
    plain = [soft_gradient(z, r, t, scaled=False).norm().item() for t in temperatures]
    assert max(scaled) / min(scaled) < 1.1  # comparable from T = 2 to T = 64 ...
    assert (soft_gradient(z, r, 64.0) - limit).norm() < 0.05 * limit.norm()  # ... and tends to the limit
    for lo, hi, t_lo, t_hi in zip(plain, plain[1:], temperatures, temperatures[1:]):
        assert lo / hi == pytest.approx((t_hi / t_lo) ** 2, rel=0.1)  # without T^2: 1/T^2 (/4 per doubling)
    assert plain[0] / plain[-1] > 500  # 1024 in the limit: unusable across temperatures


def test_renormalisation_takes_the_students_inputs_to_the_teachers_normalisation():
    base = {"name": "x", "num_classes": 10, "in_channels": 3, "image_size": (4, 4), "train_size": 10, "val_size": 1}
    student = DataInfo(**base, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    teacher = DataInfo(**base, mean=(0.45, 0.5, 0.55), std=(0.22, 0.2, 0.3))
    assert renormalisation(student, student, "cpu") is None
    scale, shift = renormalisation(student, teacher, "cpu")
    pixels = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(4))

    def view(v):
        return torch.tensor(v).view(1, 3, 1, 1)

    as_student = (pixels - view(student.mean)) / view(student.std)
    as_teacher = (pixels - view(teacher.mean)) / view(teacher.std)
    assert torch.allclose(as_student * scale + shift, as_teacher, atol=1e-6)


# -- the teacher ------------------------------------------------------------------------------


def test_best_and_final_weights_come_from_best_pt_and_checkpoint_pt(teacher, tmp_path):
    folder = tmp_path / "teacher"
    shutil.copytree(teacher, folder)
    best = torch.load(folder / BEST, weights_only=True)
    changed = {k: v + 1 if v.is_floating_point() else v for k, v in best["model"].items()}
    save_atomic({**best, "model": changed}, folder / BEST)  # a best epoch that differs from the last
    final = torch.load(folder / CHECKPOINT, weights_only=True)["model"]
    for weights, expected in (("final", final), ("best", changed)):
        loaded = load_teacher(folder, weights)
        assert not loaded.model.training
        state = loaded.model.state_dict()
        assert all(torch.equal(state[k], expected[k]) for k in expected)
        assert loaded.info.image_size == (8, 8) and loaded.info.num_classes == 10


class Watcher:
    """Records, per step, what the loss hook saw and returned, and what the teacher was given."""

    def __init__(self):
        self.steps, self.teacher_calls, self.tricks = [], [], None

    @hookimpl
    def trickbag_fit_start(self, context):
        self.tricks, self.device = context.tricks, context.device  # observers run first: the teacher loads after
        self.student_info = context.info

    @hookimpl
    def trickbag_epoch_start(self, state):
        trick = self.tricks["distillation"]
        self.trick = trick
        if not self.teacher_calls:
            trick.teacher.register_forward_hook(
                lambda module, args, out: self.teacher_calls.append({"input": args[0], "dtype": out.dtype, "grad": torch.is_grad_enabled(),
                                                                      "training": module.training, "autocast": torch.is_autocast_enabled("cpu")}))

    @hookimpl(wrapper=True)
    def trickbag_loss(self, outputs, batch, model, state):
        loss = yield
        self.steps.append({"outputs": outputs.detach().float().clone(), "inputs": batch.inputs, "targets": batch.targets.clone(),
                           "loss": loss.detach().clone()})
        return loss


@pytest.mark.parametrize("with_mixup", [False, True])
def test_through_the_loop_the_loss_is_the_formula_with_the_frozen_teacher_on_the_students_inputs(teacher, with_mixup):
    alpha, t = 0.7, 3.0
    tricks = {"mixup": {"alpha": 1.0}} if with_mixup else {}
    tricks["distillation"] = {"teacher": str(teacher), "alpha": alpha, "temperature": t}
    watcher = Watcher()
    run = run_trick(tricks, observers=[watcher])
    assert len(watcher.steps) == len(watcher.teacher_calls) == 15
    reference = load_model(teacher).model  # the teacher as trickbag.load_model gives it
    trick = watcher.trick
    assert not trick.teacher.training and all(not p.requires_grad and p.grad is None for p in trick.teacher.parameters())
    assert all(p.device == watcher.device for p in trick.teacher.parameters())
    ref_state = reference.state_dict()
    assert all(torch.equal(v, ref_state[k]) for k, v in trick.teacher.state_dict().items())  # unchanged by training
    for step, call in zip(watcher.steps, watcher.teacher_calls):
        assert call["input"] is step["inputs"]  # the batch the student saw, after mixup
        assert not call["grad"] and not call["training"] and call["dtype"] == torch.float32
        targets = step["targets"]
        assert targets.is_floating_point() == with_mixup
        with torch.no_grad():
            r = reference(step["inputs"])
        inner = F.cross_entropy(step["outputs"].double(), targets.double() if with_mixup else targets).item()
        assert step["loss"].item() == pytest.approx(by_hand(inner, step["outputs"], r, alpha, t), rel=1e-5)
    plain = run_trick({"mixup": {"alpha": 1.0}} if with_mixup else {})
    assert [s.loss for s in run.steps] != [s.loss for s in plain.steps]


def test_a_teacher_normalised_otherwise_gets_its_own_normalisation(teacher):
    """The student holds out 400 digits, not 297: another training split, other mean/std."""
    watcher = Watcher()
    run_trick({"distillation": {"teacher": str(teacher)}}, observers=[watcher], data={"val_size": 400})
    student_info, teacher_info = watcher.student_info, load_model(teacher).info
    assert student_info.mean != teacher_info.mean
    scale, shift = renormalisation(student_info, teacher_info, "cpu")
    for step, call in zip(watcher.steps, watcher.teacher_calls):
        assert torch.equal(call["input"], step["inputs"] * scale + shift)


def test_alpha_zero_trains_exactly_like_no_distillation(teacher):
    off = run_trick({"distillation": {"teacher": str(teacher), "alpha": 0.0}})
    plain = run_trick({})
    assert [s.loss for s in off.steps] == [s.loss for s in plain.steps]
    assert off.summary["history"][0]["val_acc"] == plain.summary["history"][0]["val_acc"]


@pytest.mark.parametrize("precision,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_the_teacher_runs_under_the_students_autocast(teacher, precision, dtype):
    watcher = Watcher()
    run_trick({"distillation": {"teacher": str(teacher)}}, observers=[watcher], training={"precision": precision})
    assert all(c["autocast"] and c["dtype"] == dtype and not c["grad"] for c in watcher.teacher_calls)
    assert all(math.isfinite(s["loss"].item()) and s["loss"].dtype == torch.float32 for s in watcher.steps)


# -- the CLI: check, run, lr-find, --resume ----------------------------------------------------


def check(path, *sets):
    return CliRunner().invoke(app, ["check", str(path), *[a for s in sets for a in ("--set", s)]])


def test_check_refuses_a_missing_folder_and_a_folder_without_checkpoint(teacher, tmp_path):
    missing = tmp_path / "nowhere"
    one_line_error(check(student_recipe(tmp_path, missing)), "tricks.distillation.teacher", str(missing), "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(check(student_recipe(tmp_path, empty)), "tricks.distillation.teacher", str(empty), "holds no checkpoint.pt")
    no_best = tmp_path / "no_best"
    shutil.copytree(teacher, no_best)
    (no_best / BEST).unlink()
    one_line_error(check(student_recipe(tmp_path, no_best, 'weights = "best"')), "tricks.distillation.teacher", str(no_best), "holds no best.pt")
    assert check(student_recipe(tmp_path, no_best)).exit_code == 0  # the final weights are there
    a_file = tmp_path / "file"
    a_file.write_text("x")
    one_line_error(check(student_recipe(tmp_path, a_file)), "tricks.distillation.teacher", str(a_file), "not a run folder")


def test_check_refuses_a_corrupt_checkpoint(teacher, tmp_path):
    folder = tmp_path / "corrupt"
    shutil.copytree(teacher, folder)
    data = bytearray((folder / CHECKPOINT).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / CHECKPOINT).write_bytes(bytes(data))
    one_line_error(check(student_recipe(tmp_path, folder)), "tricks.distillation.teacher", str(folder), "corrupt")


def test_check_refuses_a_teacher_of_other_images_or_classes(teacher, tmp_path):
    path = student_recipe(tmp_path, teacher)
    one_line_error(check(path, "data.name=mnist5k"), "tricks.distillation.teacher", str(teacher),
                   "10 classes of 1x8x8 images", "mnist5k, 10 classes of 1x28x28 images")
    seven = tmp_path / "seven"  # a teacher folder whose checkpoint says it learnt 7 classes
    seven.mkdir()
    saved = torch.load(teacher / CHECKPOINT, weights_only=True)
    *_, weight, bias = saved["model"]  # the classifier, last: keep 7 of its 10 outputs
    model = {**saved["model"], weight: saved["model"][weight][:7], bias: saved["model"][bias][:7]}
    save_atomic({**saved, "model": model, "info": {**saved["info"], "num_classes": 7}}, seven / CHECKPOINT)
    assert load_model(seven).model(torch.zeros(1, 1, 8, 8)).shape == (1, 7)
    one_line_error(check(student_recipe(tmp_path, seven)), "tricks.distillation.teacher", str(seven),
                   "7 classes of 1x8x8", "10 classes of 1x8x8")
    assert check(student_recipe(tmp_path, teacher)).exit_code == 0


@pytest.mark.parametrize("table, needles", [
    ("alpha = 1.5", ["tricks.distillation.alpha"]),
    ("alpha = -0.1", ["tricks.distillation.alpha"]),
    ("temperature = 0.0", ["tricks.distillation.temperature"]),
    ('temperature = "4"', ["tricks.distillation.temperature"]),
    ('weights = "last"', ["tricks.distillation.weights"]),
    ("teacher_folder = 'x'", ["tricks.distillation", "teacher_folder"]),
])
def test_check_refuses_bad_options_in_one_line(teacher, tmp_path, table, needles):
    one_line_error(check(student_recipe(tmp_path, teacher, table)), *needles)


def test_check_refuses_a_recipe_without_teacher(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(STUDENT.replace('teacher = "{teacher}"\n', "").format(table="alpha = 0.5"))
    one_line_error(check(path), "tricks.distillation.teacher")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_trickbag_run_with_mixed_precision(teacher, tmp_path, precision):
    result = CliRunner().invoke(app, ["run", str(student_recipe(tmp_path, teacher)), "--out", str(tmp_path / "run"), "-q",
                                      "--set", "training.epochs=0.3", "--set", f"training.precision={precision}"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["steps"] == 5 and math.isfinite(rows[0]["train_loss"])


def test_lr_find_loads_the_teacher_and_runs(teacher, tmp_path):
    result = CliRunner().invoke(app, ["lr-find", str(student_recipe(tmp_path, teacher)), "--steps", "20", "--out", str(tmp_path / "lr")])
    assert result.exit_code == 0, result.output  # without fit_start's teacher the loss hook would raise
    found = json.loads((tmp_path / "lr" / "lr_find.json").read_text())
    assert found["steps"] == 20 and found["recipe"]["tricks"]["distillation"]["teacher"] == str(teacher)


def test_resume_reloads_the_teacher_and_continues_exactly(teacher, tmp_path):
    path = student_recipe(tmp_path, teacher, "alpha = 0.8")
    runner = CliRunner()
    whole = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "whole"), "-q", "--set", "training.epochs=2"])
    assert whole.exit_code == 0, whole.output
    first = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "split"), "-q", "--set", "training.epochs=1"])
    assert first.exit_code == 0, first.output
    resumed = runner.invoke(app, ["run", "--resume", str(tmp_path / "split"), "--epochs", "2", "-q"])
    assert resumed.exit_code == 0, resumed.output

    def rows(folder):
        return [{k: r[k] for k in ("epoch", "train_loss", "val_loss", "val_acc", "steps")}
                for r in map(json.loads, (tmp_path / folder / "metrics.jsonl").read_text().splitlines())]

    assert rows("split") == rows("whole") and len(rows("whole")) == 2
    a = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_reads_the_teachers_checkpoint_once(teacher, tmp_path, monkeypatch):
    """trickbag_check loads the teacher (every problem one line before any work); fit_start moves
    that same teacher to the device instead of reading the checkpoint again."""
    import trickbag_distillation
    from trickbag.engine.loop import fit
    from trickbag.recipe import load_recipe

    reads = []
    real = trickbag_distillation.load_teacher
    monkeypatch.setattr(trickbag_distillation, "load_teacher", lambda *a, **k: reads.append(a) or real(*a, **k))
    fit(load_recipe(student_recipe(tmp_path, teacher)), None)
    assert len(reads) == 1
