"""Every model, data and loss trick inside the TUI, in bf16 and fp16: the range test (r) sweeps with
the trick and restores the run, and a launch from the Train tab (4, l) trains to the end."""
from __future__ import annotations

import pytest
from trickbag.engine.loop import fit
from trickbag.recipe import build_recipe
from trickbag.testing import drive_tui

pytest.importorskip("trickbag_tui")
pytestmark = pytest.mark.usefixtures("single_thread")

BASE = '[data]\nname = "digits"\nval_size = 297\n[optimizer]\nname = "sgd"\nlr = 0.02\nmomentum = 0.9\n' \
       '[training]\nepochs = {epochs}\nbatch_size = {batch}\nprecision = "{precision}"\n'
TRICKS = {  # model table + trick tables, tiny: the point is that each runs, not what it learns
    "cutout": '[model]\nname = "small_cnn"\nwidth = 4\n[tricks.cutout]\nsize = 4\n',
    "cutmix": '[model]\nname = "small_cnn"\nwidth = 4\n[tricks.cutmix]\n',
    "distillation": '[model]\nname = "mlp"\nwidth = 8\n[tricks.distillation]\nteacher = "{teacher}"\n',
    "zero_gamma": '[model]\nname = "resnet20"\n[tricks.zero_gamma]\n',
    "resnet_tweaks": '[model]\nname = "resnet18"\nsmall_input = true\n[tricks.resnet_tweaks]\nvariant = "D"\n',
    "fixup": '[model]\nname = "fixup_resnet20"\n[tricks.fixup]\n',
    "shake_shake": '[model]\nname = "shake_shake26_2x32d"\n[tricks.shake_shake]\n',
}


# fp16 convolutions on a CPU are slow (about 0.5 s per image through resnet18's backward): the two
# big networks take 4 images a batch, and their fp16 cases are left out of CI's single-thread pass
SMALL_BATCH = {"resnet_tweaks", "shake_shake"}
CASES = [pytest.param(t, p, marks=pytest.mark.slow) if t in SMALL_BATCH and p == "fp16" else (t, p)
         for t in TRICKS for p in ("bf16", "fp16")]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher") / "run"
    fit(build_recipe({"data": {"name": "digits", "val_size": 297}, "model": {"name": "mlp", "width": 16},
                      "training": {"epochs": 1, "batch_size": 100}}), folder)
    return folder


@pytest.mark.parametrize("trick, precision", CASES)
def test_the_tui_sweeps_and_trains_with_the_trick(tmp_path, monkeypatch, teacher, trick, precision):
    pytest.importorskip(f"trickbag_{trick}")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "r.toml"
    small = trick in SMALL_BATCH
    path.write_text(BASE.format(precision=precision, epochs=0.01 if small else 0.05, batch=4 if small else 20)
                    + TRICKS[trick].format(teacher=teacher))
    drive_tui(path, tmp_path / "run", sweep_steps=6, after_sweep=lambda app: trick in app.session.run.tricks or pytest.fail(trick))
    assert (tmp_path / "run" / "checkpoint.pt").exists()
