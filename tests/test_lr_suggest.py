"""LR suggestions: each rule where its formula says on curves with known answers, the peers' rules
equal to straight transcriptions of their code, and robustness on short / flat / noisy / broken curves."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from trickbag.lr_range import suggest as L
from trickbag.lr_range.suggest import Suggestion, suggest

# --- a curve with known answers: loss(lr) with x = log10(lr) ------------------------------------
# a logistic fall of A centred at C (width W decades), then a quadratic blow-up from XB on
C, W, XB, A, FLOOR, B = -4.0, 0.3, -2.5, 2.0, 0.3, 1.5
LRS = np.logspace(-7, 1, 100)
X = np.log10(LRS)
STEP = X[1] - X[0]  # decades per step


def curve(x):
    return FLOOR + A / (1 + np.exp((x - C) / W)) + B * np.clip(x - XB, 0, None) ** 2


def dcurve_dx(x):  # analytic derivative against log10(lr)
    e = np.exp((x - C) / W)
    return -A * e / (W * (1 + e) ** 2) + 2 * B * np.clip(x - XB, 0, None)


Y = curve(X)
X10 = C - W * math.log(9)  # 10% of the fall done
X90 = C + W * math.log(9)  # 90% done


def noisy(seed, level=0.02, y=Y):
    return y * (1 + level * np.random.default_rng(seed).standard_normal(len(y)))


# --- smoothing ---------------------------------------------------------------------------------


def test_smooth_is_fastais_bias_corrected_ema():
    x = np.random.default_rng(0).uniform(1, 3, 50)
    avg, want = 0.0, []
    for i, v in enumerate(x):
        avg = 0.98 * avg + 0.02 * v
        want.append(avg / (1 - 0.98 ** (i + 1)))
    assert np.allclose(L.smooth(x), want, rtol=1e-13)
    assert L.smooth(x)[0] == pytest.approx(x[0])  # no drag towards 0
    assert np.array_equal(L.smooth(x, beta=0.0), x)
    assert L.smooth([]).shape == (0,)


def test_lightning_smoothing_is_one_power_off():
    x = np.full(200, 2.0)
    s = L.smooth_lightning(x)
    assert s[0] == pytest.approx(2.0 / 1.98)  # (1-b) x / (1 - b^2) = x / (1 + b)
    assert s[10] == pytest.approx(2.0 * (1 - 0.98 ** 11) / (1 - 0.98 ** 12))
    assert abs(s[-1] - 2.0) < 0.05  # the bias dies out
    late = L.smooth_lightning(x, start_step=1000)  # a finder run after 1000 training steps: no correction
    assert late[0] == pytest.approx(2.0 * 0.02, rel=1e-6)


def test_torch_lr_finder_smoothing_is_seeded_ema():
    x = np.random.default_rng(1).uniform(1, 3, 30)
    s = L.smooth_torch_lr_finder(x)
    assert s[0] == x[0]
    for i in range(1, 30):
        assert s[i] == pytest.approx(0.05 * x[i] + 0.95 * s[i - 1])
    assert np.array_equal(L.smooth_torch_lr_finder(x, smooth_f=0), x)


def test_centered_smoothing_has_no_lag():
    z = L.smooth_centered(Y)
    assert abs(X[np.argmin(np.diff(z))] - C) <= STEP  # the steepest point stays at C ...
    assert abs(X[np.argmin(np.diff(L.smooth(Y)))] - C) > 4 * STEP  # ... where the causal EMA moves it
    spike = np.ones(100)
    spike[[0, 40, 99]] = 10.0
    assert np.allclose(L.smooth_centered(spike), 1.0)  # single-step spikes, ends included, vanish


# --- each rule where its formula says, on the analytic curve -------------------------------------


def test_fastai_rules_on_the_analytic_curve():
    s = suggest(LRS, Y, smoothed=Y)  # the fastai rules read `smoothed`: give them the exact curve
    lo, hi = 10, 95  # lr_find keeps [num_it//10 : -5]
    i_min = lo + int(np.argmin(Y[lo:hi]))
    assert s.rules["minimum"].index == i_min
    assert s.rules["minimum"].lr == pytest.approx(LRS[i_min] / 10)
    assert abs(X[i_min] - X[np.argmin(Y)]) <= STEP
    k = s.rules["steep"].index  # steepest segment [k, k+1] holds the logistic's centre; reported at k
    assert X[k] <= C + 1e-9 <= X[k + 1] + 1e-9
    assert s.rules["steep"].lr == LRS[k]
    # valley: the curve falls strictly from the window's start to its minimum: about the middle
    assert abs(s.rules["valley"].index - (lo + i_min) / 2) <= 2
    assert lo <= s.rules["slide"].index < hi


def test_fastai_slide_where_gradients_start_to_differ():
    # flat, then a parabola: per-step gradients 15 apart differ by 30 a (> 0.005) once the right
    # pointer is on the parabola; slide stops when both are on the flat part, and answers the
    # last left pointer that still differed
    k, a = 60, 0.01
    y = np.where(np.arange(100) < k, 1.0, 1.0 + a * (np.arange(100) - k) ** 2)
    lr, i = L.fastai_slide(LRS, y)
    g = np.gradient(y)
    first_agreeing = max(l for l in range(100 - 15) if abs(g[l + 15] - g[l]) <= 0.005)
    assert i == first_agreeing + 1 and lr == LRS[i]
    assert k - 16 <= i <= k - 14
    line = 2.0 - 0.01 * np.arange(100)  # constant gradient: the first pair agrees
    assert L.fastai_slide(LRS, line)[1] == 100 - 16
    bowl = (np.arange(100) - 50.0) ** 2 / 100  # gradients always 0.3 apart: slides to the start
    assert L.fastai_slide(LRS, bowl)[1] == 0
    assert L.fastai_slide(LRS, line, adjust_value=0.5)[0] == pytest.approx(LRS[84] / 2)


def test_lightning_rule_is_steepest_against_lr():
    lo, hi = 10, 99
    _, i = L.lightning_steepest(LRS[lo:hi], Y[lo:hi])
    want = lo + int(np.argmin(dcurve_dx(X[lo:hi]) / (LRS[lo:hi] * math.log(10))))  # dL/dlr
    assert abs(lo + i - want) <= 1
    assert X[lo + i] < C - 0.1  # dividing by the LR pulls it below the steepest point in log LR
    _, i_idx = L.lightning_steepest(LRS[lo:hi], Y[lo:hi], spacing="index")  # Lightning < 2.5.3
    assert abs(X[lo + i_idx] - C) <= STEP


def test_torch_lr_finder_rule_is_steepest_per_step():
    lo, hi = 10, 95
    lr, i = L.torch_lr_finder_steepest(LRS[lo:hi], Y[lo:hi])
    want = lo + int(np.argmin(dcurve_dx(X[lo:hi])))
    assert abs(lo + i - want) <= 1 and abs(X[lo + i] - C) <= STEP
    assert lr == LRS[lo + i]


def test_bounds_bracket_the_fall():
    s = suggest(LRS, Y)
    i_true_min = int(np.argmin(Y))
    assert abs(math.log10(s.base_lr) - X10) <= 1.5 * STEP
    assert abs(math.log10(s.max_lr) - X90) <= 1.5 * STEP
    assert s.max_lr <= LRS[i_true_min]
    assert s.base_lr < 10 ** C < s.max_lr
    assert s.rules["bounds.base_lr"].lr == s.base_lr == LRS[s.rules["bounds.base_lr"].index]
    assert s.rules["bounds.max_lr"].lr == s.max_lr == LRS[s.rules["bounds.max_lr"].index]
    assert s.max_lr <= s.recommended <= s.rules["zero_lag_minimum"].lr  # the default: between max_lr and the minimum
    assert s.recommended == pytest.approx(math.sqrt(s.max_lr * s.rules["zero_lag_minimum"].lr))
    # zero lag: within a couple of grid steps of the true minimum (fastai's EMA is 9 steps late here)
    assert abs(math.log10(s.rules["zero_lag_minimum"].lr) - math.log10(LRS[i_true_min])) <= 2.5 * STEP
    assert s.reason and "max_lr" in s.reason


def test_bounds_on_a_linear_sweep():
    lrs = np.linspace(1e-3, 1.0, 100)
    y = 0.3 + 2 / (1 + np.exp((lrs - 0.3) / 0.03)) + 40 * np.clip(lrs - 0.6, 0, None) ** 2
    s = suggest(lrs, y)
    assert 0.2 < s.base_lr < 0.3 < s.max_lr <= lrs[np.argmin(y)]
    assert s.max_lr <= s.recommended <= s.rules["zero_lag_minimum"].lr


@pytest.mark.parametrize("level", [0.02, 0.05])
def test_recommendation_is_stable_under_noise(level):
    clean = suggest(LRS, Y).recommended
    recs = []
    for seed in range(10):
        s = suggest(LRS, noisy(seed, level))
        assert s.base_lr < s.max_lr and s.max_lr <= s.recommended <= s.rules["zero_lag_minimum"].lr
        assert s.max_lr <= LRS[np.argmin(Y)]
        recs.append(s.recommended)
    assert max(recs) / min(recs) < 2
    assert max(recs) / clean < 2 and clean / min(recs) < 2


def test_bounds_on_a_very_noisy_curve_stay_near_the_truth():
    for seed in range(10):
        y = noisy(seed, 0.10)
        y[20] *= 10  # a one-step spike on the plateau
        s = suggest(LRS, y)
        assert abs(math.log10(s.base_lr) - X10) < 1.0
        assert X90 - 0.5 < math.log10(s.max_lr) <= X[np.argmin(Y)]


# --- the peers' code, transcribed (torch, as they run it) ---------------------------------------


def fastai_lr_find_reference(lrs, raw, num_it):
    """fastai: Recorder losses = AvgSmoothLoss (torch.lerp, /(1-beta**count)); lr_find trims
    [num_it//10:-5] and drops from the first NaN; then valley/slide/minimum/steep as written."""
    val, count, rec = torch.tensor(0.0, dtype=torch.float64), 0, []
    for loss in raw:
        count += 1  # noqa: SIM113 (as fastai's AvgSmoothLoss counts)
        val = torch.lerp(torch.tensor(loss, dtype=torch.float64), val, 0.98)
        rec.append((val / (1 - 0.98 ** count)).item())
    def t(v):  # fastai's tensor() makes float32 here; float64 keeps the comparison exact (see docs)
        return torch.tensor(list(v), dtype=torch.float64)

    lrs_t, losses = t(lrs[num_it // 10:-5]), t(rec[num_it // 10:-5])
    nan_idxs = torch.nonzero(torch.isnan(losses.view(-1)))
    if len(nan_idxs) > 0:
        drop_idx = min(nan_idxs)
        lrs_t, losses = lrs_t[:drop_idx], losses[:drop_idx]
    return {f.__name__.removeprefix("ref_"): f(lrs_t, losses, num_it) for f in (ref_valley, ref_slide, ref_minimum, ref_steep)}


def ref_valley(lrs, losses, num_it):
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):  # noqa: PIE808 (verbatim)
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx]), idx


def ref_slide(lrs, losses, num_it, lr_diff=15, thresh=0.005, adjust_value=1.0):
    losses = losses.numpy()
    loss_grad = np.gradient(losses)
    r_idx = -1
    l_idx = r_idx - lr_diff
    local_min_lr = lrs[l_idx]
    while (l_idx >= -len(losses)) and (abs(loss_grad[r_idx] - loss_grad[l_idx]) > thresh):
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    return float(local_min_lr) * adjust_value, None


def ref_minimum(lrs, losses, num_it):
    lr_min = lrs[losses.argmin()].item()
    return lr_min / 10, int(losses.argmin())


def ref_steep(lrs, losses, num_it):
    grads = (losses[1:] - losses[:-1]) / (lrs[1:].log() - lrs[:-1].log())
    lr_steep = lrs[grads.argmin()].item()
    return lr_steep, int(grads.argmin())


def lightning_reference(lrs, raw, skip_begin=10, skip_end=1):
    """Lightning: _LRCallback.on_train_batch_end (global_step already advanced: 1 at the first
    batch) and _LRFinder.suggestion with torch.gradient(spacing=[lrs])."""
    beta, avg, losses = 0.98, 0.0, []
    for i, current_loss in enumerate(raw):
        current_step = i + 1
        avg = beta * avg + (1 - beta) * current_loss
        losses.append(avg / (1 - beta ** (current_step + 1)))
    results = {"lr": list(lrs), "loss": losses}
    losses_t = torch.tensor(results["loss"][skip_begin:-skip_end], dtype=torch.float64)
    lrs_t = torch.tensor(results["lr"][skip_begin:-skip_end], dtype=torch.float64)
    is_finite = torch.isfinite(losses_t)
    losses_t, lrs_t = losses_t[is_finite], lrs_t[is_finite]
    if len(losses_t) < 2:
        return None, None
    gradients = torch.gradient(losses_t, spacing=[lrs_t])[0]
    min_grad = torch.argmin(gradients).item()
    all_losses_idx = torch.arange(len(results["loss"]))
    idx_finite = all_losses_idx[skip_begin:-skip_end][is_finite]
    optimal_idx = idx_finite[min_grad].item()
    return results["lr"][optimal_idx], optimal_idx


def torch_lr_finder_reference(lrs, raw, smooth_f=0.05, diverge_th=5, skip_start=10, skip_end=5):
    """torch-lr-finder: range_test's smoothing and divergence stop, then plot(suggest_lr=True)."""
    history = {"lr": [], "loss": []}
    best_loss = None
    for iteration, (lr, loss) in enumerate(zip(lrs, raw)):
        history["lr"].append(lr)
        if iteration == 0:
            best_loss = loss
        else:
            if smooth_f > 0:
                loss = smooth_f * loss + (1 - smooth_f) * history["loss"][-1]
            if loss < best_loss:  # noqa: PLR1730 (verbatim)
                best_loss = loss
        history["loss"].append(loss)
        if loss > diverge_th * best_loss:
            break
    assert len(history["loss"]) == len(raw), "test curves must not trip the divergence stop"
    lrs_, losses = history["lr"][skip_start:-skip_end], history["loss"][skip_start:-skip_end]
    try:
        min_grad_idx = (np.gradient(np.array(losses))).argmin()
    except ValueError:
        return None, None
    return lrs_[min_grad_idx], int(min_grad_idx) + skip_start


def random_curve(seed, n=None):
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(40, 160))
    lrs = np.logspace(rng.uniform(-8, -5), rng.uniform(-1, 1), n)
    x = np.log10(lrs)
    c = rng.uniform(x[n // 4], x[3 * n // 4])
    y = 0.5 + rng.uniform(0.5, 2) / (1 + np.exp((x - c) / rng.uniform(0.1, 1)))
    y = y + rng.uniform(0, 1) * np.clip(x - c - rng.uniform(0.3, 2), 0, None) ** 2
    y = y * (1 + rng.uniform(0, 0.2) * rng.standard_normal(n))
    # positive and bounded; these seeds trip no peer's divergence stop (the torch-lr-finder
    # transcription asserts it for its own), so every transcription sees the same arrays
    return lrs, np.clip(y, 0.3, 3.0)


@pytest.mark.parametrize("seed", range(25))
def test_fastai_rules_match_fastai_code(seed):
    lrs, raw = random_curve(seed)
    n = len(lrs)
    want = fastai_lr_find_reference(lrs, raw, num_it=n)
    got = suggest(lrs, raw).rules
    lo = n // 10
    v_lr, v_idx = want["valley"]
    if v_idx >= 0:  # fastai's index -1 wraps to the last LR; ours is clamped (own test below)
        assert got["valley"].lr == v_lr and got["valley"].index == lo + v_idx
    assert got["slide"].lr == pytest.approx(want["slide"][0], rel=1e-12)
    assert got["minimum"].lr == pytest.approx(want["minimum"][0], rel=1e-12)
    assert got["minimum"].index == lo + want["minimum"][1]
    assert got["steep"].lr == want["steep"][0] and got["steep"].index == lo + want["steep"][1]


def test_fastai_window_uses_num_it_and_non_finite_tail_goes_first():
    lrs, raw = random_curve(3, n=120)
    raw = raw.copy()
    raw[90:] = np.nan
    got = suggest(lrs, raw, num_it=200).rules  # skips num_it // 10 = 20 at the start
    # we drop the NaN tail first and then skip 5 finite points: what fastai computes for a run that
    # stopped at step 90 (as its stop_div does for an inf loss)
    want = fastai_lr_find_reference(lrs[:90], raw[:90], num_it=200)
    assert got["minimum"].lr == pytest.approx(want["minimum"][0]) and got["minimum"].index == 20 + want["minimum"][1]
    assert got["steep"].lr == want["steep"][0] and got["valley"].lr == want["valley"][0]
    assert got["slide"].lr == pytest.approx(want["slide"][0])
    # fastai itself trims [20:-5] of the NaN-padded record and then cuts at the NaN: it keeps the 5
    # finite points before the NaN, the ones closest to the blow-up (documented deviation). On a
    # curve whose lowest point is among those five, fastai picks it and we do not.
    dip = raw.copy()
    dip[87] = np.nanmin(raw[:90]) - 1.0
    theirs = fastai_lr_find_reference(lrs, dip, num_it=200)["minimum"][1] + 20
    ours = suggest(lrs, dip, num_it=200).rules["minimum"].index
    assert 85 <= theirs <= 89 and 20 <= ours <= 84


def test_fastai_valley_wraps_and_we_clamp():
    lrs = np.logspace(-5, 0, 30)
    y = np.concatenate([[2.0, 1.0], np.linspace(1.1, 3.0, 28)])  # longest decreasing: [0, 1]
    lrs_t, y_t = torch.tensor(lrs), torch.tensor(y)
    assert ref_valley(lrs_t, y_t, 30) == (float(lrs[-1]), -1)  # fastai: the largest LR
    assert L.fastai_valley(lrs, y) == (float(lrs[0]), 0)


@pytest.mark.parametrize("seed", range(25))
def test_lightning_rule_matches_lightning_code(seed):
    lrs, raw = random_curve(100 + seed)
    want_lr, want_idx = lightning_reference(list(lrs), list(raw))
    got = suggest(lrs, raw).rules["lightning"]
    assert got.index == want_idx and got.lr == want_lr


def test_torch_gradient_with_coordinates_is_numpys():
    rng = np.random.default_rng(7)
    x = np.cumsum(rng.uniform(0.01, 1, 50))
    y = rng.standard_normal(50)
    t = torch.gradient(torch.tensor(y), spacing=[torch.tensor(x)])[0].numpy()
    assert np.allclose(t, np.gradient(y, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(25))
def test_torch_lr_finder_rule_matches_its_code(seed):
    lrs, raw = random_curve(200 + seed)
    want_lr, want_idx = torch_lr_finder_reference(list(lrs), list(raw))
    got = suggest(lrs, raw).rules["torch_lr_finder"]
    assert got.index == want_idx and got.lr == want_lr


def test_torch_lr_finder_quirks():
    # its index points into the trimmed arrays: history[min_grad_idx] is skip_start off
    lrs, raw = random_curve(5)
    ours = suggest(lrs, raw).rules["torch_lr_finder"]
    tr = L.smooth_torch_lr_finder(raw)[10:-5]
    assert int(np.argmin(np.gradient(tr))) == ours.index - 10
    # NaN losses do not stop it (nan > x is False); np.argmin then picks the first NaN gradient:
    # the last finite point before the NaN, the worst LR of the sweep. We cut at the NaN.
    y = Y.copy()
    y[70:] = np.nan
    hist = L.smooth_torch_lr_finder(y)[10:-5]
    assert int(np.argmin(np.gradient(hist))) + 10 == 69
    assert suggest(LRS, y).rules["torch_lr_finder"].index < 60


# --- robustness ---------------------------------------------------------------------------------


def check_consistent(s, lrs):
    for name, r in s.rules.items():
        assert isinstance(r, Suggestion) and r.name == name and r.note
        assert (r.lr is None) == (r.index is None), name
        if r.lr is not None:
            assert math.isfinite(r.lr) and r.lr > 0
            base = lrs[r.index] / 10 if name == "minimum" else lrs[r.index]
            if name != "slide":  # slide multiplies by adjust_value (1 by default)
                assert r.lr == pytest.approx(base, rel=1e-12), name
    if s.base_lr is not None and s.max_lr is not None:
        assert s.base_lr < s.max_lr
    if s.recommended is not None:
        assert math.isfinite(s.recommended) and s.recommended > 0
    assert s.reason
    json.dumps(s.to_dict(), allow_nan=False)


@pytest.mark.parametrize("n", [*range(22), 25, 40])
def test_short_curves_never_raise(n):
    s = suggest(LRS[:n], Y[:n])
    check_consistent(s, LRS[:n])
    if n < 2 + 5:
        assert all(s.rules[k].lr is None for k in ("valley", "minimum", "steep", "slide"))
    if n < 16 + 5:
        assert s.rules["slide"].lr is None and "16" in s.rules["slide"].note
    if n < 12:
        assert s.rules["lightning"].lr is None and s.rules["lightning"].note
    if n < 17:
        assert s.rules["torch_lr_finder"].lr is None
    if n < 5:
        assert s.base_lr is None and s.max_lr is None and s.recommended is None


@pytest.mark.parametrize("y", [np.ones(100), 1 + 0.05 * np.random.default_rng(0).standard_normal(100)], ids=["exact", "noisy"])
def test_flat_curves_get_no_bounds_and_no_recommendation(y):
    s = suggest(LRS, y)
    check_consistent(s, LRS)
    assert s.base_lr is None and s.max_lr is None and s.recommended is None
    assert "no clear fall" in s.reason


def test_pure_noise_rarely_looks_like_a_fall():
    hits = sum(suggest(LRS, 2 + 0.1 * np.random.default_rng(s).standard_normal(100)).max_lr is not None for s in range(100))
    assert hits <= 2


def test_curve_rising_from_the_start():
    s = suggest(LRS, 1 + np.exp(X))
    check_consistent(s, LRS)
    assert s.recommended is None and "never fell" in s.reason


def test_curve_that_never_diverges():
    y = 0.3 + 2 / (1 + np.exp((X + 2) / 0.5))  # still falling at the end of the sweep
    s = suggest(LRS, y)
    check_consistent(s, LRS)
    assert s.base_lr < 10 ** -2 < s.max_lr <= LRS[-1]
    assert s.max_lr <= s.recommended <= s.rules["zero_lag_minimum"].lr <= LRS[-1]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_tail_is_cut(bad):
    y = Y.copy()
    y[70] = bad
    y[71:] = np.nan
    s = suggest(LRS, y)
    cut = suggest(LRS[:70], Y[:70], num_it=100)
    check_consistent(s, LRS)
    for name, r in s.rules.items():
        assert (r.lr, r.index) == (cut.rules[name].lr, cut.rules[name].index), name
    assert s.recommended == cut.recommended
    assert s.rules["steep"].index < 70


def test_bad_lrs_cut_the_curve():
    lrs = LRS.copy()
    lrs[60] = lrs[59]  # LRs stop increasing
    s = suggest(lrs, Y)
    check_consistent(s, lrs)
    assert all(r.index is None or r.index < 60 for r in s.rules.values())
    assert "cut at step 60" in s.rules["slide"].note or s.rules["slide"].index < 60


def test_noisy_random_curves_are_consistent():
    for seed in range(40):
        lrs, raw = random_curve(300 + seed)
        check_consistent(suggest(lrs, raw), lrs)


def test_negative_losses_and_lists():
    s = suggest(list(LRS), list(Y - 3))  # e.g. a negative log-likelihood
    check_consistent(s, LRS)
    assert s.base_lr == suggest(LRS, Y).base_lr and s.max_lr == suggest(LRS, Y).max_lr


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        suggest(LRS, Y[:-1])
    with pytest.raises(ValueError):
        suggest(LRS, Y, smoothed=Y[:-1])


# --- recommenders -------------------------------------------------------------------------------


def test_every_recommender_answers_and_auto_is_swappable():
    s = suggest(LRS, noisy(0))
    for name in L.RECOMMENDERS:
        lr, why = L.recommend(s.rules, name)
        assert why and (lr is None or lr > 0)
        assert suggest(LRS, noisy(0), recommend=name).recommended == lr
    assert L.recommend(s.rules, "auto") == L.recommend(s.rules, L.AUTO)
    assert L.recommend(s.rules, "valley")[0] == s.rules["valley"].lr
    assert L.recommend(s.rules, "max_lr")[0] == s.max_lr
    gm = L.recommend(s.rules, "gmean_valley_minimum")[0]
    assert gm == pytest.approx(math.sqrt(s.rules["valley"].lr * s.rules["minimum"].lr))
    with pytest.raises(ValueError):
        suggest(LRS, Y, recommend="no-such-rule")


def test_auto_is_gmean_of_max_lr_and_the_zero_lag_minimum():
    rules = {
        "bounds.max_lr": Suggestion("bounds.max_lr", 1e-2, 2, "m"),
        "zero_lag_minimum": Suggestion("zero_lag_minimum", 1e-1, 4, "z"),
    }
    lr, why = L.recommend(rules)
    assert lr == pytest.approx(math.sqrt(1e-2 * 1e-1)) and "zero-lag" in why
    rules["zero_lag_minimum"] = Suggestion("zero_lag_minimum", None, None, "too short")
    assert L.recommend(rules)[0] == 1e-2  # max_lr alone
    rules["bounds.max_lr"] = Suggestion("bounds.max_lr", None, None, "no clear fall")
    lr, why = L.recommend(rules)
    assert lr is None and "no clear fall" in why


def test_previous_default_gmean_of_max_lr_and_minimum_kept_in_the_bounds():
    recommend = L.RECOMMENDERS["auto_gmean_max_lr_minimum"]
    rules = {
        "bounds.base_lr": Suggestion("bounds.base_lr", 1e-4, 1, "b"),
        "bounds.max_lr": Suggestion("bounds.max_lr", 1e-2, 2, "m"),
        "minimum": Suggestion("minimum", 1e-3, 3, "n"),
    }
    assert recommend(rules)[0] == pytest.approx(math.sqrt(1e-2 * 1e-3))
    rules["minimum"] = Suggestion("minimum", 1.0, 3, "n")
    assert recommend(rules)[0] == 1e-2  # capped at max_lr
    rules["minimum"] = Suggestion("minimum", 1e-8, 3, "n")
    assert recommend(rules)[0] == 1e-4  # raised to base_lr
    rules["minimum"] = Suggestion("minimum", None, None, "too short")
    assert recommend(rules)[0] == 1e-2  # max_lr alone
    rules["bounds.max_lr"] = Suggestion("bounds.max_lr", None, None, "no clear fall")
    lr, why = recommend(rules)
    assert lr is None and "no clear fall" in why


def test_to_dict_is_json_ready():
    d = json.loads(json.dumps(suggest(LRS, Y).to_dict(), allow_nan=False))
    assert set(d) == {"rules", "base_lr", "max_lr", "recommended", "reason", "interval"}
    assert set(d["rules"]) == set(L.RULE_NAMES)
    assert d["rules"]["valley"].keys() == {"lr", "index", "note"}
