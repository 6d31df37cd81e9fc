
import pytest
import torch
import torch.nn.functional as F
from trickbag.context import Batch, TrainState
from trickbag.hookspecs import hookimpl
from trickbag.testing import plugin_row
from trickbag_mixup import Mixup, MixupOptions

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing


def test_listed_by_trickbag_plugins():
    row = plugin_row("mixup")
    assert "trickbag_transform_batch" in row["hooks"]
    assert row["options"]["alpha"]["default"] == 0.2
    assert row["options"]["prob"]["default"] == 1.0
    assert row["distribution"] == "trickbag-mixup"


def state_with(seed):
    return TrainState(epochs=1, generator=torch.Generator().manual_seed(seed))


def mix(batch, seed=0, trick=None, state=None, **options):
    trick = trick or Mixup(MixupOptions(**options))
    trick.trickbag_transform_batch(batch=batch, state=state or state_with(seed))
    return batch


def recover(x, q, mixed_x, mixed_q):
    """(lam, perm) from a batch before and after mixup, using the data only.

    Class y_i keeps mass lam in row i unless its partner has the same class (then 1), so lam is the
    smallest such mass; the partner of i is the j that explains mixed_x_i = lam x_i + (1 - lam) x_j.
    """
    lam = (mixed_q * q).sum(1).min().item()
    rest = (mixed_x - lam * x).flatten(1)
    perm = torch.cdist(rest, (1 - lam) * x.flatten(1)).argmin(1)
    return lam, perm


def digits_like(n=64, k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, k, (n,), generator=g)


def test_mixes_inputs_and_one_hot_targets_with_one_lambda_and_a_permutation():
    x, y = digits_like()
    batch = mix(Batch(x.clone(), y.clone(), 10), seed=3, alpha=1.0)
    assert batch.is_soft and batch.targets.shape == (64, 10)
    q = F.one_hot(y, 10).float()
    lam, perm = recover(x, q, batch.inputs, batch.targets)
    assert 0 < lam < 1
    assert sorted(perm.tolist()) == list(range(64))  # a permutation
    assert torch.allclose(batch.inputs, lam * x + (1 - lam) * x[perm], atol=1e-6)
    assert torch.allclose(batch.targets, lam * q + (1 - lam) * q[perm], atol=1e-6)
    assert torch.allclose(batch.targets.sum(1), torch.ones(64))


def test_mixes_soft_targets_a_previous_trick_left():
    x, _ = digits_like()
    soft = torch.softmax(torch.randn(64, 10, generator=torch.Generator().manual_seed(5)), 1)
    hard_twin = mix(Batch(x.clone(), soft.argmax(1), 10), seed=7, alpha=1.0)
    batch = mix(Batch(x.clone(), soft.clone(), 10), seed=7, alpha=1.0)
    lam, perm = recover(x, F.one_hot(soft.argmax(1), 10).float(), hard_twin.inputs, hard_twin.targets)
    assert torch.equal(batch.inputs, hard_twin.inputs)  # same draws from the same seed
    assert torch.allclose(batch.targets, lam * soft + (1 - lam) * soft[perm], atol=1e-6)


def test_reproducible_from_the_generator():
    x, y = digits_like()
    a = mix(Batch(x.clone(), y.clone(), 10), seed=11)
    b = mix(Batch(x.clone(), y.clone(), 10), seed=11)
    c = mix(Batch(x.clone(), y.clone(), 10), seed=12)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)
    # the same trick object follows a reseeded generator (what the loop does every epoch)
    trick, state = Mixup(MixupOptions()), state_with(11)
    first = mix(Batch(x.clone(), y.clone(), 10), trick=trick, state=state)
    second = mix(Batch(x.clone(), y.clone(), 10), trick=trick, state=state)
    assert not torch.equal(first.inputs, second.inputs)  # the stream moves on within an epoch
    state.generator.manual_seed(11)
    trick.trickbag_epoch_start(state=state)
    again = mix(Batch(x.clone(), y.clone(), 10), trick=trick, state=state)
    assert torch.equal(again.inputs, a.inputs)


def test_prob_zero_leaves_the_batch_untouched_and_prob_half_mixes_about_half():
    x, y = digits_like()
    batch = Batch(x, y, 10)
    trick, state = Mixup(MixupOptions(prob=0.0)), state_with(0)
    for _ in range(20):
        trick.trickbag_transform_batch(batch=batch, state=state)
    assert batch.inputs is x and batch.targets is y and not batch.is_soft
    trick, mixed = Mixup(MixupOptions(prob=0.5, alpha=1.0)), 0
    for _ in range(2000):
        b = Batch(x, y, 10)
        trick.trickbag_transform_batch(batch=b, state=state)
        mixed += b.is_soft
    assert 0.45 < mixed / 2000 < 0.55  # binomial sd ~ 0.011


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_lambda_is_a_genuine_beta_sample(alpha):
    """Draw lam through the hook many times (a 2-sample batch shows lam whenever the permutation
    swaps the pair, which is independent of lam) and compare with Beta(alpha, alpha)."""
    from scipy import stats

    trick, state = Mixup(MixupOptions(alpha=alpha)), state_with(2024)
    x, y = torch.tensor([[1.0], [0.0]]), torch.tensor([0, 1])
    lams = []
    while len(lams) < 6000:
        b = Batch(x, y, 2)
        trick.trickbag_transform_batch(batch=b, state=state)
        if b.targets[0, 1] > 0:  # swapped: row 0 = lam e0 + (1 - lam) e1, and x0 = lam
            assert b.targets[0, 0].item() == pytest.approx(b.inputs[0, 0].item(), abs=1e-6)
            lams.append(b.targets[0, 0].item())
    lams = torch.tensor(lams, dtype=torch.float64)
    n = len(lams)
    var = 1 / (4 * (2 * alpha + 1))  # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1))
    assert lams.mean().item() == pytest.approx(0.5, abs=5 * (var / n) ** 0.5)
    fourth = 3 / (16 * (2 * alpha + 1) * (2 * alpha + 3))  # E[(lam - 1/2)^4] of Beta(a, a)
    assert lams.var().item() == pytest.approx(var, abs=5 * ((fourth - var**2) / n) ** 0.5)
    assert stats.kstest(lams.numpy(), stats.beta(alpha, alpha).cdf).pvalue > 1e-3


def test_options_are_validated():
    from pydantic import ValidationError

    for bad in ({"alpha": 0.0}, {"alpha": -1.0}, {"prob": 1.5}, {"prob": -0.1}):
        with pytest.raises(ValidationError):
            MixupOptions(**bad)


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
        self.steps[-1].update(outputs=outputs.detach().clone(), mixed_x=batch.inputs.clone(), targets=batch.targets.clone(), loss=loss.detach().clone())
        return loss


def run(tricks, seed=0, epochs=1, optimizer=None):
    from trickbag.engine.loop import fit
    from trickbag.recipe import build_recipe

    recipe = build_recipe({
        "data": {"name": "digits", "val_size": 297},
        "model": {"name": "mlp", "width": 32},
        "optimizer": optimizer or {"name": "sgd", "lr": 0.05},
        "training": {"epochs": epochs, "batch_size": 100, "seed": seed, "checkpoint": False},
        "tricks": tricks,
    })
    recorder = Recorder()
    summary = fit(recipe, None, observers=[recorder])
    return recorder.steps, summary


def test_engine_mixup_then_label_smoothing_in_the_right_order():
    eps, k = 0.1, 10
    steps, summary = run({"mixup": {"alpha": 1.0}, "label_smoothing": {"epsilon": eps}}, epochs=2, optimizer={"name": "adam", "lr": 0.01})
    assert len(steps) == 30
    assert summary["final_val_acc"] > 0.5  # it trains (chance is 0.1)
    gaps = []
    for s in steps:
        y, out, t = s["y"], s["outputs"], s["targets"]
        q = F.one_hot(y, k).float()
        lam, perm = recover(s["x"], q, s["mixed_x"], t)
        # what the loss saw: mixed inputs and mixed one-hot targets that sum to 1
        assert torch.allclose(s["mixed_x"], lam * s["x"] + (1 - lam) * s["x"][perm], atol=1e-5)
        assert torch.allclose(t, lam * q + (1 - lam) * q[perm], atol=1e-6)
        assert torch.allclose(t.sum(1), torch.ones(len(y)), atol=1e-6)
        # what it returned: CE against (1 - eps)(mixture) + eps / K ...
        loss, logp = s["loss"].double().item(), out.double().log_softmax(1)
        smoothed = (1 - eps) * (lam * q + (1 - lam) * q[perm]).double() + eps / k
        assert abs(loss - -(smoothed * logp).sum(1).mean().item()) < 1e-6 * loss
        # ... = lam CE_eps(y) + (1 - lam) CE_eps(y[perm]) (cross-entropy is linear in the target)
        linear = lam * F.cross_entropy(out.double(), y, label_smoothing=eps) + (1 - lam) * F.cross_entropy(out.double(), y[perm], label_smoothing=eps)
        assert abs(loss - linear.item()) < 1e-6 * loss
        # ... and not the wrong orders: smoothing skipped, or applied twice (mix of smoothed targets
        # is the same as smoothing the mix, so "smooth then mix" differs only by smoothing twice)
        skipped = -(t.double() * logp).sum(1).mean().item()
        twice = -(((1 - eps) * smoothed + eps / k) * logp).sum(1).mean().item()
        gaps.append(min(abs(loss - skipped), abs(loss - twice)) / loss)
    assert min(gaps) > 20e-6  # every step: far outside the 1e-6 agreement with the right formula
    assert gaps[-1] > 1e-2  # once the model is confident, smoothing changes the loss by percents


def test_engine_runs_are_reproducible_and_prob_zero_is_a_no_op():
    a, sa = run({"mixup": {}}, seed=1)
    b, sb = run({"mixup": {}}, seed=1)
    c, _ = run({"mixup": {}}, seed=2)
    assert len(a) == len(b) == len(c) == 15
    assert all(torch.equal(p["mixed_x"], q["mixed_x"]) and torch.equal(p["targets"], q["targets"]) for p, q in zip(a, b))
    assert sa["history"][0]["train_loss"] == sb["history"][0]["train_loss"]
    assert not torch.equal(a[0]["mixed_x"], c[0]["mixed_x"])
    off, s_off = run({"mixup": {"prob": 0.0}}, seed=1)
    plain, s_plain = run({}, seed=1)
    assert len(off) == len(plain) == 15
    for p, q in zip(off, plain):
        assert torch.equal(p["mixed_x"], p["x"]) and torch.equal(p["targets"], p["y"])
        assert torch.equal(p["mixed_x"], q["mixed_x"])
    assert s_off["history"][0]["train_loss"] == s_plain["history"][0]["train_loss"]
