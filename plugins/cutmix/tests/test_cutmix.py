"""cutmix: torchvision's box and label weight, the paste from a permutation and the area-weighted
targets, randomness from state.generator, prob; through the loop with label smoothing and with
mixup (recipe order); options; `trickbag run` under bf16/fp16 and `lr-find`."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from trickbag.cli.app import app
from trickbag.context import Batch, TrainState
from trickbag.hookspecs import hookimpl
from trickbag.testing import assert_one_line_error as one_line_error
from trickbag.testing import plugin_row
from trickbag_cutmix import CutMix, CutMixOptions, cutmix_box
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing


def test_listed_by_trickbag_plugins():
    row = plugin_row("cutmix")
    assert row["hooks"] == ["trickbag_epoch_start", "trickbag_transform_batch"]
    assert row["options"]["alpha"]["default"] == 1.0
    assert row["options"]["prob"]["default"] == 1.0
    assert row["distribution"] == "trickbag-cutmix"


@pytest.mark.parametrize("h,w", [(32, 32), (8, 8), (7, 11), (28, 28)])
@pytest.mark.parametrize("alpha", [0.2, 1.0, 5.0])
def test_box_and_label_weight_equal_torchvision_cutmix_for_the_same_lambda_and_centre(h, w, alpha):
    """torchvision's CutMix.make_params draws lam, then r_x, then r_y from torch's global RNG:
    replay those draws, give the same (lam, centre) to cutmix_box, compare box and lam_adjusted."""
    from torchvision.transforms.v2 import CutMix as TorchvisionCutMix

    tv = TorchvisionCutMix(alpha=alpha, num_classes=10)
    image = torch.zeros(2, 3, h, w)
    clipped = 0
    for seed in range(300):
        torch.manual_seed(seed)
        lam = float(tv._dist.sample(()))
        cx, cy = int(torch.randint(w, size=(1,))), int(torch.randint(h, size=(1,)))
        torch.manual_seed(seed)
        params = tv.make_params([image])
        (y1, y2, x1, x2), weight = cutmix_box(lam, cy, cx, h, w)
        assert (x1, y1, x2, y2) == params["box"]
        assert weight == params["lam_adjusted"]  # exactly: the same arithmetic
        assert weight == 1 - (y2 - y1) * (x2 - x1) / (h * w)
        clipped += (y1 == 0 or x1 == 0 or y2 == h or x2 == w) and (y2 > y1 and x2 > x1)
    assert clipped > 30  # boxes that cross the border were among those compared


def state_with(seed):
    return TrainState(epochs=1, generator=torch.Generator().manual_seed(seed))


def images(n=32, c=3, h=8, w=8, seed=0, k=10):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g), torch.randint(0, k, (n,), generator=g)


def mix(x, y, seed=0, trick=None, state=None, k=10, **options):
    batch = Batch(x.clone(), y.clone(), k)
    (trick or CutMix(CutMixOptions(**options))).trickbag_transform_batch(batch=batch, state=state or state_with(seed))
    return batch


def recover(x, out):
    """(box, perm) from a batch before and after cutmix, from the data only: the box bounds every
    changed pixel; the partner of i is the image whose box content was pasted into i."""
    changed = (out != x).any(1).any(0)  # H x W, over images and channels
    if not changed.any():
        return None, None
    rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
    y1, y2, x1, x2 = rows.min().item(), rows.max().item() + 1, cols.min().item(), cols.max().item() + 1
    inside = out[:, :, y1:y2, x1:x2].flatten(1)
    perm = torch.cdist(inside, x[:, :, y1:y2, x1:x2].flatten(1)).argmin(1)
    return (y1, y2, x1, x2), perm


@pytest.mark.parametrize("h,w", [(8, 8), (9, 13)])
def test_pastes_one_box_from_a_permutation_and_weights_labels_by_the_pasted_area(h, w):
    areas = set()
    for seed in range(40):
        x, y = images(h=h, w=w, seed=seed)
        batch = mix(x, y, seed=seed, alpha=1.0)
        assert batch.is_soft and batch.targets.shape == (32, 10) and batch.targets.dtype == torch.float32
        q = F.one_hot(y, 10).float()
        box, perm = recover(x, batch.inputs)
        if box is None:  # lam so close to 1 that the box is empty: labels stay whole
            assert torch.equal(batch.targets, q)
            continue
        y1, y2, x1, x2 = box
        assert sorted(perm.tolist()) == list(range(32))  # a permutation
        expected = x.clone()
        expected[:, :, y1:y2, x1:x2] = x[perm][:, :, y1:y2, x1:x2]
        assert torch.equal(batch.inputs, expected)  # the box from the partner, every other pixel untouched
        weight = 1 - (y2 - y1) * (x2 - x1) / (h * w)
        assert torch.allclose(batch.targets, weight * q + (1 - weight) * q[perm], atol=1e-6)
        assert torch.allclose(batch.targets.sum(1), torch.ones(32), atol=1e-6)
        # the box is the one cutmix_box gives for the trick's own draw (replayed from the same seed)
        (b, weight_drawn) = cutmix_box(*CutMix(CutMixOptions(alpha=1.0)).draw(state_with(seed).generator, h, w), h, w)
        assert b == box and weight_drawn == pytest.approx(weight, abs=1e-12)
        areas.add((y2 - y1) * (x2 - x1))
    assert len(areas) > 10  # boxes of many sizes


@pytest.mark.parametrize("alpha", [0.3, 1.0, 3.0])
def test_lambda_is_beta_and_the_centre_uniform(alpha):
    from scipy import stats

    trick, generator = CutMix(CutMixOptions(alpha=alpha)), torch.Generator().manual_seed(7)
    draws = [trick.draw(generator, 8, 12) for _ in range(6000)]
    lams, cys, cxs = (np.array(v) for v in zip(*draws))
    assert stats.kstest(lams, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    assert stats.chisquare(np.bincount(cys, minlength=8)).pvalue > 1e-3
    assert stats.chisquare(np.bincount(cxs, minlength=12)).pvalue > 1e-3
    assert cys.max() == 7 and cxs.max() == 11 and cys.min() == cxs.min() == 0


def test_mixes_soft_targets_a_previous_trick_left():
    x, y = images()
    soft = torch.softmax(torch.randn(32, 10, generator=torch.Generator().manual_seed(5)), 1)
    hard = mix(x, y, seed=3)
    batch = mix(x, soft, seed=3)
    assert torch.equal(batch.inputs, hard.inputs)  # same draws from the same seed
    box, perm = recover(x, batch.inputs)
    y1, y2, x1, x2 = box
    weight = 1 - (y2 - y1) * (x2 - x1) / 64
    assert torch.allclose(batch.targets, weight * soft + (1 - weight) * soft[perm], atol=1e-6)


def test_reproducible_from_the_generator():
    x, y = images()
    a, b, c = mix(x, y, seed=11), mix(x, y, seed=11), mix(x, y, seed=12)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)
    trick, state = CutMix(CutMixOptions()), state_with(11)
    first, second = mix(x, y, trick=trick, state=state), mix(x, y, trick=trick, state=state)
    assert torch.equal(first.inputs, a.inputs) and not torch.equal(second.inputs, first.inputs)  # the stream moves on
    state.generator.manual_seed(11)  # what the loop does every epoch
    trick.trickbag_epoch_start(state=state)
    assert torch.equal(mix(x, y, trick=trick, state=state).inputs, a.inputs)


def test_prob_zero_leaves_the_batch_untouched_and_prob_half_mixes_about_half():
    x, y = images()
    trick, state = CutMix(CutMixOptions(prob=0.0)), state_with(0)
    for _ in range(20):
        batch = Batch(x, y, 10)
        trick.trickbag_transform_batch(batch=batch, state=state)
        assert batch.inputs is x and batch.targets is y
    trick, mixed = CutMix(CutMixOptions(prob=0.5)), 0
    for _ in range(2000):
        batch = Batch(x, y, 10)
        trick.trickbag_transform_batch(batch=batch, state=state)
        mixed += batch.is_soft
    assert 0.45 < mixed / 2000 < 0.55  # binomial sd ~ 0.011


def test_channels_last_batches_stay_channels_last():
    x, y = images()
    out = mix(x.contiguous(memory_format=torch.channels_last), y, seed=4)
    assert out.inputs.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out.inputs, mix(x, y, seed=4).inputs)


def test_options_are_validated():
    from pydantic import ValidationError

    for bad in ({"alpha": 0.0}, {"alpha": -1.0}, {"alpha": "1"}, {"prob": 1.5}, {"prob": -0.1}):
        with pytest.raises(ValidationError):
            CutMixOptions(**bad)


# -- through the real loop -------------------------------------------------------------------


class Recorder:
    """Sees each batch before any transform (tryfirst) and what the loss hook saw and returned."""

    def __init__(self):
        self.steps = []

    @hookimpl(tryfirst=True)
    def trickbag_transform_batch(self, batch, state):
        self.steps.append({"x": batch.inputs.clone(), "y": batch.targets.clone()})

    @hookimpl(wrapper=True)
    def trickbag_loss(self, outputs, batch, model, state):
        loss = yield
        self.steps[-1].update(outputs=outputs.detach().clone(), mixed_x=batch.inputs.clone(), targets=batch.targets.clone(),
                              loss=loss.detach().clone())
        return loss


def run(tricks, seed=0, epochs=1, model=None):
    from trickbag.engine.loop import fit
    from trickbag.recipe import build_recipe

    recipe = build_recipe({
        "data": {"name": "digits", "val_size": 297},
        "model": model or {"name": "mlp", "width": 32},
        "optimizer": {"name": "adam", "lr": 0.01},
        "training": {"epochs": epochs, "batch_size": 100, "seed": seed, "checkpoint": False},
        "tricks": tricks,
    })
    recorder = Recorder()
    summary = fit(recipe, None, observers=[recorder])
    return recorder.steps, summary


def probe(trick, state, n, shape):
    """(box, perm) of the trick's next batch: a batch whose image i is the constant i + 1 shows
    where the box is and which image was pasted into each (the draws do not depend on the data)."""
    x = (torch.arange(n, dtype=torch.float32) + 1).view(n, 1, 1, 1).expand(n, *shape).contiguous()
    batch = Batch(x.clone(), torch.zeros(n, dtype=torch.long), 10)
    trick.trickbag_transform_batch(batch=batch, state=state)
    return recover(x, batch.inputs)


def test_engine_cutmix_then_label_smoothing_in_the_right_order():
    """The loop's batches are the hook's boxes from the loop's generator, the targets weighted by
    the pasted area, and the loss smooths the mixture: w CE_eps(y) + (1 - w) CE_eps(y[perm])."""
    from trickbag.engine.device import epoch_seed

    eps, k, seed = 0.1, 10, 0
    steps, summary = run({"cutmix": {}, "label_smoothing": {"epsilon": eps}}, seed=seed, epochs=2)
    assert len(steps) == 30 and summary["final_val_acc"] > 0.5  # it trains (chance is 0.1)
    trick, state = CutMix(CutMixOptions()), TrainState(epochs=2, generator=torch.Generator())
    weights = []
    for i, s in enumerate(steps):
        if i % 15 == 0:  # the loop reseeds every epoch
            state.generator.manual_seed(epoch_seed(seed, i // 15))
            trick.trickbag_epoch_start(state=state)
        x, y, out, t = s["x"], s["y"], s["outputs"].double(), s["targets"]
        box, perm = probe(trick, state, len(x), x.shape[1:])
        if box is None:  # lam > 15/16 on 8 x 8 digits: an empty box, whole labels
            box, perm = (0, 0, 0, 0), torch.arange(len(x))
        y1, y2, x1, x2 = box
        expected = x.clone()
        expected[:, :, y1:y2, x1:x2] = x[perm][:, :, y1:y2, x1:x2]
        assert torch.equal(s["mixed_x"], expected)
        weight = 1 - (y2 - y1) * (x2 - x1) / 64
        q = F.one_hot(y, k).double()
        assert torch.allclose(t.double(), weight * q + (1 - weight) * q[perm], atol=1e-6)
        loss = s["loss"].double().item()
        linear = weight * F.cross_entropy(out, y, label_smoothing=eps) + (1 - weight) * F.cross_entropy(out, y[perm], label_smoothing=eps)
        assert abs(loss - linear.item()) < 1e-6 * loss
        unsmoothed = -(t.double() * out.log_softmax(1)).sum(1).mean().item()
        assert abs(loss - unsmoothed) > 1e-4 * loss  # smoothing was applied
        weights.append(weight)
    assert len(set(weights)) > 5 and min(weights) < 0.8 and 1.0 in weights  # empty boxes too


@pytest.mark.parametrize("order", [("mixup", "cutmix"), ("cutmix", "mixup")])
def test_with_mixup_both_apply_in_recipe_order(order):
    """Both tricks transform every batch, in the order of their tables: the loop's batches equal a
    replay of the two hooks in that order from the loop's generator, and not in the other order."""
    from trickbag.engine.device import epoch_seed
    from trickbag_mixup import Mixup, MixupOptions

    steps, _ = run({name: {"alpha": 1.0} for name in order}, seed=3)
    assert len(steps) == 15

    def replay(names):
        generator = torch.Generator().manual_seed(epoch_seed(3, 0))
        state = TrainState(epochs=1, generator=generator)
        tricks = {"mixup": Mixup(MixupOptions(alpha=1.0)), "cutmix": CutMix(CutMixOptions(alpha=1.0))}
        batches = []
        for s in steps:
            batch = Batch(s["x"].clone(), s["y"].clone(), 10)
            for name in names:
                tricks[name].trickbag_transform_batch(batch=batch, state=state)
            batches.append(batch)
        return batches

    for s, batch in zip(steps, replay(order)):
        assert torch.equal(s["mixed_x"], batch.inputs) and torch.equal(s["targets"], batch.targets)
        assert torch.allclose(s["targets"].sum(1), torch.ones(100), atol=1e-6)
    assert not all(torch.equal(s["mixed_x"], b.inputs) for s, b in zip(steps, replay(order[::-1])))


# -- the CLI ---------------------------------------------------------------------------------


RECIPE = """
[data]
name = "digits"
val_size = 297
[model]
name = "small_cnn"
width = 4
[training]
epochs = 1
batch_size = 100
[tricks.cutmix]
{table}
"""


@pytest.mark.parametrize("table, needles", [
    ("alpha = 0.0", ["tricks.cutmix.alpha"]),
    ("alpha = -1.0", ["tricks.cutmix.alpha"]),
    ('alpha = "1"', ["tricks.cutmix.alpha"]),
    ("prob = 1.5", ["tricks.cutmix.prob"]),
    ("beta = 1.0", ["tricks.cutmix", "beta"]),
])
def test_trickbag_check_refuses_bad_options_in_one_line(tmp_path, table, needles):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(table=table))
    one_line_error(CliRunner().invoke(app, ["check", str(path)]), *needles)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_trickbag_run_with_mixed_precision(tmp_path, precision):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(table="") + "[tricks.label_smoothing]\n")
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "run"), "-q",
                                      "--set", "training.epochs=0.3", "--set", f"training.precision={precision}"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["steps"] == 5 and np.isfinite(rows[0]["train_loss"])


def test_lr_find_runs_with_the_trick(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(table="alpha = 1.0"))
    result = CliRunner().invoke(app, ["lr-find", str(path), "--steps", "20", "--out", str(tmp_path / "lr")])
    assert result.exit_code == 0, result.output
    found = json.loads((tmp_path / "lr" / "lr_find.json").read_text())
    assert found["steps"] == 20 and found["recipe"]["tricks"]["cutmix"]["alpha"] == 1.0
