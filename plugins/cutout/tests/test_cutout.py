"""cutout: one clipped square per image zeroed (the paper's box), nothing else touched, randomness
from state.generator, evaluation untouched; options; `trickbag run` under bf16/fp16 and `lr-find`."""
import json

import numpy as np
import pytest
import torch
from trickbag.cli.app import app
from trickbag.context import Batch, TrainState
from trickbag.hookspecs import hookimpl
from trickbag.testing import assert_one_line_error as one_line_error
from trickbag.testing import plugin_row, run_trick
from trickbag_cutout import Cutout, CutoutOptions, cutout_mask
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing


def test_listed_by_trickbag_plugins():
    row = plugin_row("cutout")
    assert row["hooks"] == ["trickbag_check", "trickbag_transform_batch"]
    assert row["options"]["size"]["default"] == 16
    assert row["options"]["prob"]["default"] == 1.0
    assert row["distribution"] == "trickbag-cutout"


def paper_box(cy, cx, length, h, w):
    """DeVries & Taylor's Cutout.__call__ (github.com/uoguelph-mlrg/Cutout, util/cutout.py)."""
    y1, y2 = np.clip(cy - length // 2, 0, h), np.clip(cy + length // 2, 0, h)
    x1, x2 = np.clip(cx - length // 2, 0, w), np.clip(cx + length // 2, 0, w)
    return y1, y2, x1, x2


def box_of(zeroed):
    """(y1, y2, x1, x2) of an H x W bool mask that must be one full rectangle (or empty)."""
    rows, cols = zeroed.any(1).nonzero().flatten(), zeroed.any(0).nonzero().flatten()
    if not len(rows):
        return None
    y1, y2, x1, x2 = rows.min().item(), rows.max().item() + 1, cols.min().item(), cols.max().item() + 1
    assert zeroed[y1:y2, x1:x2].all() and zeroed.sum().item() == (y2 - y1) * (x2 - x1), "not one rectangle"
    return y1, y2, x1, x2


@pytest.mark.parametrize("size,h,w", [(4, 8, 8), (16, 32, 32), (6, 7, 11), (5, 8, 8), (1, 5, 5), (8, 8, 8)])
def test_the_mask_is_the_clipped_square_and_the_papers_box_for_even_sizes(size, h, w):
    cy, cx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cy, cx = cy.flatten(), cx.flatten()  # every centre
    masks = cutout_mask(cy, cx, size, h, w)
    assert masks.shape == (h * w, h, w) and masks.dtype == torch.bool
    for m, y, x in zip(masks, cy.tolist(), cx.tolist()):
        top, left = y - size // 2, x - size // 2  # exactly `size` pixels before clipping, centred on (y, x)
        expected = (max(top, 0), min(top + size, h), max(left, 0), min(left + size, w))
        assert box_of(m) == expected
        if size % 2 == 0:
            assert expected == tuple(int(v) for v in paper_box(y, x, size, h, w))
        else:  # the paper's code cuts size - 1 pixels for an odd size; this cuts size, centred
            y1, y2, _, _ = paper_box(y, x, size, h, w)
            assert (y1, y2) == (expected[0], min(y + size // 2, h))


def state_with(seed):
    return TrainState(epochs=1, generator=torch.Generator().manual_seed(seed))


def images(n=64, c=3, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g) + 0.5  # no zero anywhere: every zero is cutout's


def cut(x, seed=0, trick=None, state=None, **options):
    batch = Batch(x.clone(), torch.zeros(len(x), dtype=torch.long), 10)
    (trick or Cutout(CutoutOptions(**options))).trickbag_transform_batch(batch=batch, state=state or state_with(seed))
    return batch


def centre_of(box, size, h):
    """The centre row that gives the rows (y1, y2) of a clipped box (unique while size <= h)."""
    y1, y2 = box
    return y1 + size // 2 if y1 > 0 else y2 - size + size // 2


@pytest.mark.parametrize("size,h,w", [(4, 8, 8), (3, 8, 10)])
def test_each_image_loses_one_clipped_square_in_every_channel_and_nothing_else(size, h, w):
    x = images(n=4000, h=h, w=w)
    batch = cut(x, seed=1, size=size)
    out = batch.inputs
    assert out.shape == x.shape and out.dtype == x.dtype and batch.targets.dtype == torch.long  # labels untouched
    zeroed = out == 0
    assert torch.equal(zeroed, zeroed[:, :1].expand_as(zeroed))  # the same square in every channel
    assert torch.equal(out[~zeroed], x[~zeroed])  # every other pixel bit for bit
    rows, cols = [], []
    for z in zeroed[:, 0]:
        y1, y2, x1, x2 = box_of(z)
        cy, cx = centre_of((y1, y2), size, h), centre_of((x1, x2), size, w)
        assert 0 <= cy < h and 0 <= cx < w
        assert (y1, y2, x1, x2) == (max(cy - size // 2, 0), min(cy - size // 2 + size, h),
                                    max(cx - size // 2, 0), min(cx - size // 2 + size, w))
        rows.append(cy)
        cols.append(cx)
    # the centre is uniform over the image (so squares near the border are clipped)
    from scipy import stats

    for values, n in ((rows, h), (cols, w)):
        counts = np.bincount(values, minlength=n)
        assert stats.chisquare(counts).pvalue > 1e-3, counts


def test_same_generator_state_gives_the_same_squares_and_the_stream_moves_on():
    x = images()
    a, b, c = cut(x, seed=5, size=4), cut(x, seed=5, size=4), cut(x, seed=6, size=4)
    assert torch.equal(a.inputs, b.inputs)
    assert not torch.equal(a.inputs, c.inputs)
    trick, state = Cutout(CutoutOptions(size=4)), state_with(5)
    first, second = cut(x, trick=trick, state=state), cut(x, trick=trick, state=state)
    assert torch.equal(first.inputs, a.inputs) and not torch.equal(second.inputs, first.inputs)
    state.generator.manual_seed(5)  # what the loop does at every epoch
    assert torch.equal(cut(x, trick=trick, state=state).inputs, a.inputs)


def test_prob_cuts_that_share_of_the_images():
    x = images(n=4000)
    untouched = cut(x, seed=2, size=4, prob=0.0)
    assert torch.equal(untouched.inputs, x)
    half = cut(x, seed=2, size=4, prob=0.5)
    share = (half.inputs == 0).flatten(1).any(1).float().mean().item()
    assert 0.46 < share < 0.54  # binomial sd ~ 0.008
    assert (cut(x, seed=2, size=4).inputs == 0).flatten(1).any(1).all()  # prob 1: every image


def test_channels_last_batches_stay_channels_last():
    x = images().contiguous(memory_format=torch.channels_last)
    out = cut(x, seed=3, size=4).inputs
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, cut(x.contiguous(), seed=3, size=4).inputs)


def test_options_are_validated():
    from pydantic import ValidationError

    for bad in ({"size": 0}, {"size": -3}, {"size": 4.0}, {"size": "4"}, {"prob": 1.5}, {"prob": -0.1}, {"prob": "1"}):
        with pytest.raises(ValidationError):
            CutoutOptions(**bad)


# -- through the real loop and the CLI --------------------------------------------------------


class Recorder:
    """Counts the batches transform_batch sees and checks each validation against a clean one."""

    def __init__(self):
        self.transformed, self.steps, self.evals = 0, 0, []

    @hookimpl(trylast=True)
    def trickbag_transform_batch(self, batch, state):
        self.transformed += 1
        self.last = batch.inputs

    @hookimpl
    def trickbag_fit_start(self, context):
        from trickbag.data import load_data

        self.model, self.val = context.model, load_data(context.recipe.data, context.device)[1]

    @hookimpl
    def trickbag_step_end(self, state):
        self.steps += 1

    @hookimpl
    def trickbag_eval_end(self, state, metrics):
        from trickbag.engine.evaluate import evaluate

        self.evals.append((metrics, evaluate(self.model, self.val, 500, None, torch.device("cpu"))))


def test_only_training_batches_are_cut_and_evaluation_sees_whole_images():
    recorder = Recorder()
    run = run_trick({"cutout": {"size": 4}}, observers=[recorder], training={"epochs": 2})
    assert recorder.transformed == recorder.steps == len(run.steps) == 30  # one call per training step, none in evaluation
    assert ((recorder.last == 0).flatten(1).any(1)).all()  # the last training batch was cut
    assert len(recorder.evals) == 2
    for engine, clean in recorder.evals:  # the engine's validation = a validation of whole images
        assert engine["val_acc"] == clean["val_acc"] and engine["val_loss"] == pytest.approx(clean["val_loss"], rel=1e-6)
    plain = run_trick({}, training={"epochs": 2})
    assert [s.loss for s in run.steps] != [s.loss for s in plain.steps]  # it changes training


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
[tricks.cutout]
{table}
"""


@pytest.mark.parametrize("table, needles", [
    ("size = 0", ["tricks.cutout.size"]),
    ("size = 2.5", ["tricks.cutout.size"]),
    ("prob = 1.5", ["tricks.cutout.prob"]),
    ("sise = 4", ["tricks.cutout", "sise"]),
    ("size = 9", ["tricks.cutout.size 9 is larger than the 8x8 images of digits"]),  # the trick's own check
    ("", ["tricks.cutout.size 16 is larger than the 8x8 images of digits"]),  # the CIFAR default does not fit digits
])
def test_trickbag_check_refuses_bad_options_in_one_line(tmp_path, table, needles):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(table=table))
    one_line_error(CliRunner().invoke(app, ["check", str(path)]), *needles)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_trickbag_run_with_mixed_precision(tmp_path, precision):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(table="size = 4"))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "run"), "-q",
                                      "--set", "training.epochs=0.3", "--set", f"training.precision={precision}"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["steps"] == 5 and np.isfinite(rows[0]["train_loss"])


def test_lr_find_runs_with_the_trick(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(table="size = 4"))
    result = CliRunner().invoke(app, ["lr-find", str(path), "--steps", "20", "--out", str(tmp_path / "lr")])
    assert result.exit_code == 0, result.output
    found = json.loads((tmp_path / "lr" / "lr_find.json").read_text())
    assert found["steps"] == 20 and found["recipe"]["tricks"]["cutout"]["size"] == 4
