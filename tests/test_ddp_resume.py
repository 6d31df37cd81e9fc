"""Under torchrun with 2 gloo ranks, rank 1 killed (SIGKILL) mid-run: `trickbag run --resume`
under torchrun restores the last checkpoint and ends with the same weights as an uninterrupted
2-rank run (bit for bit: same machine, same ranks, same thread count)."""
from __future__ import annotations

import json
import sys

import pytest
import torch
from trickbag.runs.checkpoint import load_checkpoint
from trickbag.testing import torchrun

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="gloo via torchrun, SIGKILL")]

RECIPE = ('[data]\nname = "digits"\nval_size = 297\n[model]\nname = "small_cnn"\nwidth = 8\n'
          '[optimizer]\nname = "sgd"\nlr = 0.05\nmomentum = 0.9\n[training]\nepochs = 3\nbatch_size = 25\nthreads = 1\n'
          '[tricks.label_smoothing]\n[tricks.one_cycle]\n')

# The CLI, with one observer that kills rank 1 (SIGKILL: no handler, no cleanup) at the 5th step of
# the second epoch: by then rank 0 has written epoch 1's checkpoint (rank 1 cannot pass that step's
# all-reduce before rank 0 reaches it).
KILLER = '''
import os, signal
import trickbag.engine.loop as loop
from trickbag.hookspecs import hookimpl

class KillRank1:
    @hookimpl
    def trickbag_step_end(self, state):
        if state.rank == 1 and state.epoch == 1 and state.step_in_epoch == 5:
            os.kill(os.getpid(), signal.SIGKILL)

fit = loop.fit
def fit_with_killer(*args, observers=(), **kwargs):
    return fit(*args, observers=[*observers, KillRank1()], **kwargs)
loop.fit = fit_with_killer
from trickbag.cli.app import main  # noqa: E402  (cli/train.py imports fit when it runs: it gets this one)
main()
'''


def weights(folder):
    return load_checkpoint(folder / "checkpoint.pt")["model"]


def test_rank_1_killed_then_resumed_gives_the_uninterrupted_weights(tmp_path):
    (tmp_path / "r.toml").write_text(RECIPE)
    (tmp_path / "killer.py").write_text(KILLER)
    killed = torchrun(["run", str(tmp_path / "r.toml"), "--out", str(tmp_path / "killed"), "-q"], script=tmp_path / "killer.py", tries=1)
    assert killed.returncode != 0 and "exitcode  : -9" in killed.stderr, killed.stderr[-3000:]  # rank 1 died of SIGKILL
    rows = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]  # mid-run: epoch 1 kept, epoch 2 lost with rank 1
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["epoch"] == 1
    resumed = torchrun(["run", "--resume", str(tmp_path / "killed"), "-q"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = torchrun(["run", str(tmp_path / "r.toml"), "--out", str(tmp_path / "whole"), "-q"], fresh=tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    a, b = weights(tmp_path / "killed"), weights(tmp_path / "whole")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


def test_resuming_on_another_world_size_warns(tmp_path, caplog, single_thread):
    from trickbag.engine.loop import fit
    from trickbag.recipe import load_recipe
    from trickbag.runs.checkpoint import save_atomic
    from trickbag.services import resume_recipe

    (tmp_path / "r.toml").write_text(RECIPE.replace("epochs = 3", "epochs = 1").replace('name = "small_cnn"\nwidth = 8', 'name = "mlp"\nwidth = 8'))
    fit(load_recipe(tmp_path / "r.toml"), tmp_path / "run")
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert saved["world_size"] == 1
    saved["world_size"] = 2  # as if it had started under torchrun with 2 ranks
    save_atomic(saved, tmp_path / "run" / "checkpoint.pt")
    fit(resume_recipe(tmp_path / "run", 2), tmp_path / "run", resume=True)
    assert "started on 2 process(es) and continues on 1" in caplog.text
