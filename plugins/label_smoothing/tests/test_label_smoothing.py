import math

import pytest
import torch
import torch.nn.functional as F
from trickbag.context import Batch
from trickbag.testing import plugin_row
from trickbag_label_smoothing import LabelSmoothing, LabelSmoothingOptions

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing


def test_listed_by_trickbag_plugins():
    row = plugin_row("label_smoothing")
    assert row["hooks"] == ["trickbag_loss"]
    assert row["options"]["epsilon"]["default"] == 0.1
    assert row["distribution"] == "trickbag-label-smoothing"


def smoothed_loss(outputs, targets, num_classes, epsilon):
    trick = LabelSmoothing(LabelSmoothingOptions(epsilon=epsilon))
    return trick.trickbag_loss(outputs=outputs, batch=Batch(outputs.detach(), targets, num_classes), model=None, state=None)


def explicit(outputs, q, epsilon):
    """-sum_k q'(k) log p(k) with q' = (1 - eps) q + eps / K, averaged over the batch."""
    smoothed = (1 - epsilon) * q + epsilon / q.shape[1]
    return -(smoothed * outputs.log_softmax(dim=1)).sum(dim=1).mean()


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.35])
def test_hard_and_soft_targets_equal_the_explicit_formula(epsilon):
    g = torch.Generator().manual_seed(1)
    outputs = torch.randn(32, 7, generator=g, dtype=torch.float64) * 3
    hard = torch.randint(0, 7, (32,), generator=g)
    soft = torch.softmax(torch.randn(32, 7, generator=g, dtype=torch.float64) * 2, dim=1)
    got_hard = smoothed_loss(outputs, hard, 7, epsilon)
    assert got_hard.item() == pytest.approx(explicit(outputs, F.one_hot(hard, 7).double(), epsilon).item(), rel=1e-12)
    got_soft = smoothed_loss(outputs, soft, 7, epsilon)
    assert got_soft.item() == pytest.approx(explicit(outputs, soft, epsilon).item(), rel=1e-12)
    if epsilon > 0:  # it really smooths: not the plain cross-entropy
        assert got_hard.item() != pytest.approx(F.cross_entropy(outputs, hard).item(), rel=1e-3)
    # a one-hot soft target gives the same loss as the class index (composes with mixup's soft targets)
    assert smoothed_loss(outputs, F.one_hot(hard, 7).double(), 7, epsilon).item() == pytest.approx(got_hard.item(), rel=1e-12)


def test_gradient_is_softmax_minus_smoothed_targets():
    outputs = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 3, 1, 1, 2])
    smoothed_loss(outputs, targets, 4, 0.2).backward()
    expected = (outputs.softmax(1) - (0.8 * F.one_hot(targets, 4) + 0.05)) / 5
    assert torch.allclose(outputs.grad, expected.detach(), atol=1e-14)


# -- the talk's toy model: three classes, W(a) = [[a,0,a],[a,0,-a],[0,2a,0]] ---------------------

X = torch.tensor([[1.0, 0, 1], [1, 0, -1], [0, 1, 0]], dtype=torch.float64)
Y = torch.tensor([0, 1, 2])


def W(a):
    a = torch.as_tensor(a, dtype=torch.float64)
    zero = torch.zeros((), dtype=torch.float64)
    return torch.stack([torch.stack([a, zero, a]), torch.stack([a, zero, -a]), torch.stack([zero, 2 * a, zero])])


def toy_loss(a, epsilon):
    """The loss the plugin's hook returns for the toy model's logits W(a) x."""
    return smoothed_loss(X @ W(a).T, Y, 3, epsilon)


def golden_min(f, lo, hi, iters=80):
    r = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - r * (b - a), a + r * (b - a)
    for _ in range(iters):
        if f(c) < f(d):
            b, d = d, c
            c = b - r * (b - a)
        else:
            a, c = c, d
            d = a + r * (b - a)
    return (a + b) / 2


def test_toy_model_logits_are_2a_times_the_one_hot():
    logits = X @ W(1.5).T
    assert torch.equal(logits, 3.0 * F.one_hot(Y, 3).double())


def test_toy_model_plain_cross_entropy_keeps_falling():
    grid = [i / 4 for i in range(0, 81)]  # a = 0 ... 20
    losses = [toy_loss(a, 0.0).item() for a in grid]
    for a, loss in zip(grid, losses):
        assert loss == pytest.approx(math.log1p(2 * math.exp(-2 * a)), rel=1e-9, abs=1e-15)
    # strictly decreasing wherever float64 resolves the difference (log(1 + 2e^-2a) < 1e-14 beyond a ~ 16)
    resolvable = [loss for a, loss in zip(grid, losses) if a <= 15]
    assert all(later < earlier for earlier, later in zip(resolvable, resolvable[1:]))
    assert all(later <= earlier for earlier, later in zip(losses, losses[1:]))
    # no interior minimum: the best grid point is the last one
    assert min(range(len(grid)), key=lambda i: (losses[i], -i)) == len(grid) - 1


def test_toy_model_with_smoothing_has_the_analytic_finite_minimiser():
    epsilon = 0.1
    grid = [i / 20 for i in range(0, 401)]  # a = 0 ... 20
    losses = [toy_loss(a, epsilon).item() for a in grid]
    i = min(range(len(grid)), key=losses.__getitem__)
    assert 0 < i < len(grid) - 1  # an interior minimum
    a_star = golden_min(lambda a: toy_loss(a, epsilon).item(), grid[i - 1], grid[i + 1])
    # torch's convention: the softmax of (2a, 0, 0) equals q' = [1 - 2eps/3, eps/3, eps/3] at the optimum
    analytic = 0.5 * math.log(2 * (1 - 2 * epsilon / 3) / (2 * epsilon / 3))
    assert analytic == pytest.approx(1.666, abs=1e-3)
    assert a_star == pytest.approx(analytic, abs=1e-6)
    # the gradient through the hook vanishes there, and the loss grows again towards large a
    a = torch.tensor(analytic, dtype=torch.float64, requires_grad=True)
    toy_loss(a, epsilon).backward()
    assert abs(a.grad.item()) < 1e-12
    assert losses[-1] > losses[i] + 1.0


def test_toy_model_talk_formula_has_a_finite_minimiser_too():
    epsilon = 0.1

    def talk(a):  # as printed in the talk
        return (1 - epsilon) * math.log(1 + 2 * math.exp(-2 * a)) + (2 * epsilon / 3) * math.log(2 + math.exp(2 * a))

    a_star = golden_min(talk, 0.0, 20.0)
    assert a_star == pytest.approx(0.5 * math.log(3 * (1 - epsilon) / epsilon), abs=1e-6)
    assert a_star == pytest.approx(1.648, abs=1e-3)
    # a slightly different normalisation from torch's: not the same optimum
    assert a_star != pytest.approx(0.5 * math.log(2 * (1 - 2 * epsilon / 3) / (2 * epsilon / 3)), abs=1e-3)


def test_options_are_validated():
    from pydantic import ValidationError

    for bad in (-0.1, 1.0):
        with pytest.raises(ValidationError):
            LabelSmoothingOptions(epsilon=bad)


def test_engine_run_has_larger_train_loss_and_still_trains():
    from trickbag.engine.loop import fit
    from trickbag.recipe import build_recipe

    def run(tricks):
        recipe = build_recipe({
            "data": {"name": "digits", "val_size": 297},
            "model": {"name": "mlp", "width": 32},
            "optimizer": {"name": "adam", "lr": 0.01},
            "training": {"epochs": 3, "batch_size": 50, "checkpoint": False},
            "tricks": tricks,
        })
        return fit(recipe, None)

    plain = run({})
    smooth = run({"label_smoothing": {"epsilon": 0.2}})
    for p, s in zip(plain["history"], smooth["history"]):
        assert s["train_loss"] > p["train_loss"]
    assert smooth["final_val_acc"] > 0.8  # chance is 0.1; 0.966 measured here: the margin covers other CPUs
