"""Learning-rate suggestions from an LR range test (pure numpy, no torch).

Given the LRs of a range test and the raw training loss of each step, :func:`suggest` answers with

* the suggestion rules of three well-known finders, each applied to the data its source applies it
  to, with the source's default parameters (see ``docs/lr-finder.md`` for the formulas and the
  quirks found in each source):

  - fastai (``fastai/callback/schedule.py``): ``valley`` (fastai's default), ``slide``,
    ``minimum`` and ``steep``, on the bias-corrected EMA of the loss (beta 0.98, fastai's
    ``Recorder``), after ``lr_find`` drops the first ``num_it // 10`` and the last 5 points;
  - PyTorch Lightning (``lightning/pytorch/tuner/lr_finder.py``): ``_LRFinder.suggestion``, the
    steepest ``d loss / d lr`` of Lightning's own smoothed loss, skipping 10 points at the start
    and 1 at the end;
  - torch-lr-finder (``torch_lr_finder/lr_finder.py``): ``LRFinder.plot``'s steepest per-step
    gradient of its own EMA (``smooth_f`` 0.05), skipping 10 points at the start and 5 at the end;

* Smith's CLR bounds (Smith 2017, "Cyclical Learning Rates for Training Neural Networks"):
  ``base_lr`` where the loss starts to fall and ``max_lr`` where the fall is over, measured on a
  zero-lag smoothing of the loss against log LR;

* one ``recommended`` LR with a one-line reason, chosen by a named recommender (``"auto"`` by
  default, see :data:`AUTO` and :data:`RECOMMENDERS`) so that a benchmark can compare candidates
  and the default can be swapped in one line.

Every rule answers ``lr=None`` with a note instead of raising when the curve cannot support it
(too short for the rule's skips, flat, diverging from the first step, ...). Points from the first
non-finite loss (or non-positive / non-increasing LR) on are dropped before anything else.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AUTO",
    "RECOMMENDERS",
    "Suggestion",
    "Suggestions",
    "clr_bounds",
    "fastai_minimum",
    "fastai_slide",
    "fastai_steep",
    "fastai_valley",
    "lightning_steepest",
    "recommend",
    "smooth",
    "smooth_centered",
    "smooth_lightning",
    "smooth_torch_lr_finder",
    "suggest",
    "torch_lr_finder_steepest",
]

# ---------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class Suggestion:
    name: str  # "valley", "slide", "minimum", "steep", "lightning", "torch_lr_finder", "bounds.base_lr", ...
    lr: float | None  # None when the rule cannot answer on this curve (``note`` says why)
    index: int | None  # index into the full ``lrs`` array of the point chosen
    note: str  # one line: how it was chosen (shown to users)

    def to_dict(self) -> dict:
        return {"lr": self.lr, "index": self.index, "note": self.note}


@dataclass(frozen=True)
class Suggestions:
    rules: dict[str, Suggestion]  # every rule by name
    base_lr: float | None  # CLR bounds: where the loss starts to fall
    max_lr: float | None  # ... and the last LR before it turns ragged / rises
    recommended: float | None
    reason: str  # one line, why ``recommended`` was chosen
    # the LRs likely within 0.5 accuracy points of the best, around the recommendation (see
    # :func:`adjust_for_recipe`); None when unknown
    interval: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        return {
            "rules": {name: rule.to_dict() for name, rule in self.rules.items()},
            "base_lr": self.base_lr,
            "max_lr": self.max_lr,
            "recommended": self.recommended,
            "reason": self.reason,
            "interval": list(self.interval) if self.interval else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Suggestions":
        """The inverse of :meth:`to_dict` (``lr_find.json`` read back)."""
        rules = {name: Suggestion(name, r["lr"], r["index"], r["note"]) for name, r in d["rules"].items()}
        interval = tuple(d["interval"]) if d.get("interval") else None
        return cls(rules, d["base_lr"], d["max_lr"], d["recommended"], d["reason"], interval)


class NoAnswer(Exception):
    """A rule cannot answer on this curve; the message says why (becomes ``Suggestion.note``)."""


# ---------------------------------------------------------------------------------------------
# smoothing: each source's own


def smooth(losses: Sequence[float], beta: float = 0.98) -> np.ndarray:
    """fastai's ``AvgSmoothLoss`` (what its ``Recorder`` records during ``lr_find``): the
    bias-corrected EMA ``avg = beta*avg + (1-beta)*x``, ``s_i = avg / (1 - beta**(i+1))``."""
    x = np.asarray(losses, dtype=float).ravel()
    out = np.empty_like(x)
    avg = 0.0
    for i, v in enumerate(x):
        avg = beta * avg + (1 - beta) * v
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def smooth_lightning(losses: Sequence[float], beta: float = 0.98, start_step: int = 0) -> np.ndarray:
    """Lightning's ``_LRCallback.on_train_batch_end``: the same EMA, but bias-corrected with
    ``trainer.global_step``, which the optimizer step has already advanced when the hook runs. For
    a finder started at global step ``start_step`` the divisor of point ``i`` is
    ``1 - beta**(start_step + i + 2)``: one power too many, so the first point is
    ``x0 / (1 + beta)`` (about half the loss) and the start of the curve is pulled down."""
    x = np.asarray(losses, dtype=float).ravel()
    out = np.empty_like(x)
    avg = 0.0
    for i, v in enumerate(x):
        avg = beta * avg + (1 - beta) * v
        out[i] = avg / (1 - beta ** (start_step + i + 2))
    return out


def smooth_torch_lr_finder(losses: Sequence[float], smooth_f: float = 0.05) -> np.ndarray:
    """torch-lr-finder's ``range_test``: the first loss as is, then
    ``s_i = smooth_f * x_i + (1 - smooth_f) * s_{i-1}`` (seeded with ``x0``, no bias correction)."""
    x = np.asarray(losses, dtype=float).ravel()
    out = np.empty_like(x)
    for i, v in enumerate(x):
        out[i] = v if i == 0 or smooth_f <= 0 else smooth_f * v + (1 - smooth_f) * out[i - 1]
    return out


def smooth_centered(losses: Sequence[float], tau: float | None = None) -> np.ndarray:
    """Zero-lag smoothing for the CLR bounds: a running median of 5 (removes single-step spikes),
    then the bias-corrected EMA run forwards and then backwards (a symmetric kernel, so features
    stay where they are; the causal EMA with beta 0.98 lags a steady ramp by beta / (1 - beta) =
    49 steps, and on a 100-step sweep moves the steepest point ~6 steps and the minimum ~9 steps
    to higher LRs). The time constant is ``tau = max(1, n / 40)`` steps unless given
    (``beta = 1 - 1 / tau``). Both stages see the curve mirrored at its ends (``3 tau`` points),
    so the end points are as smooth as the rest instead of noisier."""
    x = np.asarray(losses, dtype=float).ravel()
    n = len(x)
    if n >= 5:
        x = np.median(np.lib.stride_tricks.sliding_window_view(np.pad(x, 2, mode="reflect"), 5), axis=1)
    tau = _tau(n) if tau is None else max(1.0, float(tau))
    pad = min(n - 1, math.ceil(3 * tau)) if n > 1 else 0
    return _forward_backward(np.pad(x, pad, mode="reflect"), tau)[pad: pad + n]


def _tau(n: int) -> float:
    return max(1.0, n / 40)


def _forward_backward(x: np.ndarray, tau: float) -> np.ndarray:
    beta = 1 - 1 / tau
    if beta <= 0 or len(x) == 0:
        return x.copy()
    return smooth(smooth(x, beta)[::-1], beta)[::-1]


# ---------------------------------------------------------------------------------------------
# the rules: each takes the arrays its source works on and returns (lr, index into those arrays)


def fastai_valley(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, int]:
    """fastai ``valley``: the longest strictly decreasing *subsequence* of the losses (O(n^2) DP,
    not necessarily contiguous); with ``end`` its last index (first one on ties), fastai takes
    ``start = end - length`` (one before a contiguous run's first point) and answers
    ``start + int(L/3) + int(L/6)`` with ``L = end - start``: about the middle of the run.
    When no point is below an earlier one, fastai's ``start = end = 0``. fastai can come out at
    index -1 (a run of length 2 starting at 0), which wraps to the *last* LR; we clamp to 0."""
    n = len(losses)
    if n < 2:
        raise NoAnswer(f"needs at least 2 points, has {n}")
    lds = np.ones(n, dtype=int)
    for i in range(1, n):
        higher = losses[:i] > losses[i]
        if higher.any():
            lds[i] = lds[:i][higher].max() + 1
    end = int(np.argmax(lds))
    start = 0 if lds[end] == 1 else end - int(lds[end])
    sections = (end - start) / 3
    idx = max(0, start + int(sections) + int(sections / 2))
    return float(lrs[idx]), idx


def fastai_slide(
    lrs: np.ndarray, losses: np.ndarray, lr_diff: int = 15, thresh: float = 0.005, adjust_value: float = 1.0
) -> tuple[float, int]:
    """fastai ``slide``: ``g = np.gradient(losses)`` (per step); two pointers ``r = n-1`` and
    ``l = r - lr_diff`` slide left together while ``|g[r] - g[l]| > thresh``; the answer is the
    last ``l`` for which that held (``n - 1 - lr_diff`` if it never held, index 0 if it held all
    the way), times ``adjust_value``. ``thresh`` is in loss units per step (scale-dependent)."""
    n = len(losses)
    if n < lr_diff + 1:
        raise NoAnswer(f"needs at least {lr_diff + 1} points (lr_diff {lr_diff}), has {n}")
    grad = np.gradient(losses)
    r, l = n - 1, n - 1 - lr_diff
    chosen = l
    while l >= 0 and abs(grad[r] - grad[l]) > thresh:
        chosen = l
        r -= 1
        l -= 1
    return float(lrs[chosen]) * adjust_value, chosen


def fastai_minimum(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, int]:
    """fastai ``minimum``: the LR at the lowest loss (first on ties) divided by 10. The index is
    the point of the minimum itself (fastai also plots it there, not at LR/10)."""
    if len(losses) < 2:
        raise NoAnswer(f"needs at least 2 points, has {len(losses)}")
    idx = int(np.argmin(losses))
    return float(lrs[idx]) / 10, idx


def fastai_steep(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, int]:
    """fastai ``steep``: forward differences ``(l[k+1] - l[k]) / (log lr[k+1] - log lr[k])``; the
    most negative one (first on ties) is reported at its *left* point ``lr[k]``, half a step
    below the middle of the steepest segment."""
    if len(losses) < 2:
        raise NoAnswer(f"needs at least 2 points, has {len(losses)}")
    grads = np.diff(losses) / np.diff(np.log(lrs))
    idx = int(np.argmin(grads))
    return float(lrs[idx]), idx


def lightning_steepest(lrs: np.ndarray, losses: np.ndarray, spacing: str = "lr") -> tuple[float, int]:
    """Lightning ``_LRFinder.suggestion`` after its skips: ``torch.gradient(losses,
    spacing=[lrs])`` (second-order central differences on the uneven LR grid, one-sided at the
    ends; ``np.gradient(losses, lrs)`` is the same formula) and its argmin. The derivative is
    against the LR itself, not log LR (Lightning >= 2.5.3), which in an exponential sweep divides
    the log-LR slope by the LR and so favours the small LRs. ``spacing="index"`` gives the
    pre-2.5.3 rule (``np.gradient(losses)``, per step)."""
    if len(losses) < 2:
        raise NoAnswer(f"needs at least 2 points after its skips, has {len(losses)}")
    grads = np.gradient(losses, lrs) if spacing == "lr" else np.gradient(losses)
    idx = int(np.argmin(grads))
    return float(lrs[idx]), idx


def torch_lr_finder_steepest(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, int]:
    """torch-lr-finder ``LRFinder.plot(suggest_lr=True)`` after its skips:
    ``np.gradient(np.array(losses)).argmin()``, a per-step gradient (against log LR in an
    exponential sweep, against LR in a linear one). Its index points into the *trimmed* arrays
    (``skip_start`` too low for ``history``); ``plot`` reads the LR from the trimmed list, so the
    LR it returns is right."""
    if len(losses) < 2:
        raise NoAnswer(f"needs at least 2 points after its skips, has {len(losses)}")
    idx = int(np.argmin(np.gradient(losses)))
    return float(lrs[idx]), idx


# ---------------------------------------------------------------------------------------------
# CLR bounds

FALL_FRACTION = 0.10  # base_lr: 10% of the fall done; max_lr: 90% done (10% left)
BASE_MARGIN_SIGMAS = 5.0  # ... or, for base_lr, 5 sigma of the smoothed curve's noise when that is more
MAX_MARGIN_SIGMAS = 3.0  # ... and, for max_lr, 3 sigma
FLAT_RELATIVE = 0.01  # a fall under 1% of the loss level is no fall
FLAT_NOISE_SIGMAS = 10.0  # ... nor one under 10 sigma of the smoothed curve's noise (on pure Gaussian
# noise, 1000 runs per length from 20 to 3000 points, the largest "fall" was 9.1 sigma)


def clr_bounds(lrs: np.ndarray, losses: np.ndarray) -> tuple[Suggestion, Suggestion, np.ndarray]:
    """Smith's bounds on ``z = smooth_centered(losses)``:

    * ``i_min = argmin z``; ``i_top = argmax z[:i_min+1]`` (the highest point before the
      minimum); the fall ``D = z[i_top] - z[i_min]``;
    * no bounds if ``i_min == 0``, or ``D < 1%`` of ``|z[i_top]|``, or ``D < 10 sigma``
      (``sigma``: the noise left in ``z``, see :func:`_noise_sigma`);
    * margins ``m_max = max(0.1 D, 3 sigma)`` and ``m_base = max(0.1 D, 5 sigma)``: 10% of the
      fall, or more where noise would cross it (``z[i_top]`` and ``z[i_min]`` are extremes of a
      noisy curve, 2 to 3 sigma beyond its plateau and floor);
    * ``max_lr = lr[i_m]``, ``i_m`` the first index after ``i_top`` with ``z <= z[i_min] + m_max``
      (90% of the fall is done; past it the curve flattens into the minimum, then turns up).
      ``i_m <= i_min``, so ``max_lr`` never passes the minimum;
    * ``base_lr = lr[i_b]``, ``i_b`` the first index of ``[i_top, i_m]`` from which on ``z``
      stays ``<= z[i_top] - m_base`` up to ``i_m`` (the loss has started to fall for good: a dip of
      noise that comes back up does not count);
    * if the fall is a cliff (``i_b == i_m``), ``base_lr`` is the point before it.

    Returns both as :class:`Suggestion` (``bounds.base_lr``, ``bounds.max_lr``) and ``z``.
    """
    n = len(losses)
    z = smooth_centered(losses)
    if n < 5:
        note = f"needs at least 5 points, has {n}"
        return Suggestion("bounds.base_lr", None, None, note), Suggestion("bounds.max_lr", None, None, note), z
    i_min = int(np.argmin(z))
    i_top = int(np.argmax(z[: i_min + 1]))
    top, low = float(z[i_top]), float(z[i_min])
    fall = top - low
    sigma = _noise_sigma(losses)
    if i_min == 0:
        why = "the loss never fell below its first value: start the sweep at a lower LR"
    elif fall < FLAT_RELATIVE * max(abs(top), 1e-12) or fall < FLAT_NOISE_SIGMAS * sigma:
        why = f"no clear fall (smoothed loss falls {fall:.3g} from {top:.3g}; noise {sigma:.2g}): widen the sweep"
    else:
        why = ""
    if why:
        return Suggestion("bounds.base_lr", None, None, why), Suggestion("bounds.max_lr", None, None, why), z
    m_base = max(FALL_FRACTION * fall, BASE_MARGIN_SIGMAS * sigma)
    m_max = max(FALL_FRACTION * fall, MAX_MARGIN_SIGMAS * sigma)  # m_base + m_max < fall: fall >= 10 sigma
    after = np.arange(n) >= i_top
    i_m = int(np.argmax(after & (z <= low + m_max)))  # > i_top: z[i_top] is far above
    above = np.flatnonzero(z[i_top:i_m] > top - m_base)  # never empty: z[i_top] = top
    i_b = i_top + int(above[-1]) + 1  # the fall that lasts, not a dip of noise before it
    cliff = ""
    if i_b == i_m:
        i_b -= 1
        cliff = " (a cliff: the point before it)"
    base = Suggestion(
        "bounds.base_lr", float(lrs[i_b]), i_b,
        f"CLR base_lr: smoothed loss has fallen for good by {m_base:.3g} ({m_base / fall:.0%} of its fall {fall:.3g}){cliff}",
    )
    top_note = "minimum" if i_m == i_min else f"minimum at {lrs[i_min]:.3g}"
    mx = Suggestion(
        "bounds.max_lr", float(lrs[i_m]), i_m,
        f"CLR max_lr: smoothed loss within {m_max:.3g} ({m_max / fall:.0%} of its fall) of its {top_note}",
    )
    return base, mx, z


def _noise_sigma(losses: np.ndarray) -> float:
    """Standard deviation of the noise left in :func:`smooth_centered`'s output: the per-step
    noise ``sigma_raw = 1.4826 * MAD(d) / sqrt(1.5)`` with ``d_i = x_i - (x_{i-1} + x_{i+1}) / 2``
    (second differences: blind to the curve's slope, robust to its sharp turns), times the root
    sum of squares of the forward-backward EMA kernel (its response to a unit impulse)."""
    n = len(losses)
    if n < 3:
        return 0.0
    d = losses[1:-1] - (losses[:-2] + losses[2:]) / 2
    sigma_raw = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(1.5)
    impulse = np.zeros(n)
    impulse[n // 2] = 1.0
    return sigma_raw * float(np.sqrt(np.sum(_forward_backward(impulse, _tau(n)) ** 2)))


# ---------------------------------------------------------------------------------------------
# the recommendation


def _rule(name: str) -> Callable[[dict[str, Suggestion]], tuple[float | None, str]]:
    def pick(rules: dict[str, Suggestion]) -> tuple[float | None, str]:
        r = rules.get(name)
        if r is None or r.lr is None:
            return None, f"{name} has no answer" + (f" ({r.note})" if r is not None else "")
        return r.lr, f"{name}: {r.note}"
    return pick


def _gmean(a: str, b: str) -> Callable[[dict[str, Suggestion]], tuple[float | None, str]]:
    def pick(rules: dict[str, Suggestion]) -> tuple[float | None, str]:
        ra, rb = rules.get(a), rules.get(b)
        if ra is None or ra.lr is None or rb is None or rb.lr is None:
            missing = a if ra is None or ra.lr is None else b
            return None, f"geometric mean of {a} and {b}: {missing} has no answer"
        return math.sqrt(ra.lr * rb.lr), f"geometric mean of {a} {ra.lr:.3g} and {b} {rb.lr:.3g}"
    return pick


def _auto(rules: dict[str, Suggestion]) -> tuple[float | None, str]:
    """Conservative and stable: the geometric mean of the CLR ``max_lr`` (zero-lag curve, never
    past the minimum) and fastai's ``minimum`` (LR at the minimum of the lagging EMA / 10), kept
    inside ``[base_lr, max_lr]``; ``max_lr`` alone when ``minimum`` has no answer; nothing when
    there are no bounds (no clear fall: no trustworthy LR)."""
    mx, base, mn = rules.get("bounds.max_lr"), rules.get("bounds.base_lr"), rules.get("minimum")
    if mx is None or mx.lr is None:
        return None, f"no recommendation: {mx.note if mx is not None else 'no bounds'}"
    if mn is None or mn.lr is None:
        lr, why = mx.lr, f"CLR max_lr {mx.lr:.3g} (fastai minimum has no answer)"
    else:
        lr, why = math.sqrt(mx.lr * mn.lr), f"geometric mean of CLR max_lr {mx.lr:.3g} and fastai minimum {mn.lr:.3g}"
    if lr > mx.lr:
        lr, why = mx.lr, why + f", capped at max_lr {mx.lr:.3g}"
    if base is not None and base.lr is not None and lr < base.lr:
        lr, why = base.lr, why + f", raised to base_lr {base.lr:.3g}"
    return lr, why


def _auto_zero_lag(rules: dict[str, Suggestion]) -> tuple[float | None, str]:
    """The default, chosen by training (benchmarks/lr_suggestion.py, docs/lr-finder.md): the
    geometric mean of the CLR ``max_lr`` (90% of the fall done) and the LR at the minimum of the
    zero-lag smoothed loss. Both come from the same centred curve, so neither carries the EMA's
    lag; ``max_lr`` never passes that minimum, so the answer lies between the two. Nothing when
    there are no bounds (no clear fall: no trustworthy LR)."""
    mx, low = rules.get("bounds.max_lr"), rules.get("zero_lag_minimum")
    if mx is None or mx.lr is None:
        return None, f"no recommendation: {mx.note if mx is not None else 'no bounds'}"
    if low is None or low.lr is None:
        return mx.lr, f"CLR max_lr {mx.lr:.3g} (no zero-lag minimum)"
    return math.sqrt(mx.lr * low.lr), f"geometric mean of CLR max_lr {mx.lr:.3g} and the zero-lag minimum's LR {low.lr:.3g}"


RULE_NAMES = ("valley", "slide", "minimum", "steep", "lightning", "torch_lr_finder", "bounds.base_lr", "bounds.max_lr", "zero_lag_minimum")

#: recommenders by name: every rule, the CLR max_lr, geometric means, and ``auto``.
RECOMMENDERS: dict[str, Callable[[dict[str, Suggestion]], tuple[float | None, str]]] = {
    **{name: _rule(name) for name in RULE_NAMES},
    "max_lr": _rule("bounds.max_lr"),
    "gmean_valley_minimum": _gmean("valley", "minimum"),
    "gmean_max_lr_minimum": _gmean("bounds.max_lr", "minimum"),
    "auto_gmean_max_lr_minimum": _auto,
    "gmean_max_lr_zero_lag_minimum": _auto_zero_lag,
}

#: what ``recommend="auto"`` means: swap this name to change the default everywhere.
AUTO = "gmean_max_lr_zero_lag_minimum"


def recommend(rules: dict[str, Suggestion], name: str = "auto") -> tuple[float | None, str]:
    """One LR from the rules, by recommender ``name`` (``"auto"`` is :data:`AUTO`)."""
    key = AUTO if name == "auto" else name
    if key not in RECOMMENDERS:
        raise ValueError(f"unknown recommender {name!r}: one of auto, {', '.join(RECOMMENDERS)}")
    lr, why = RECOMMENDERS[key](rules)
    return (None if lr is None or not math.isfinite(lr) else float(lr)), why


_recommend = recommend  # ``suggest`` has a parameter of the same name


# ---------------------------------------------------------------------------------------------
# everything together

FASTAI_SKIP_END = 5
LIGHTNING_SKIP = (10, 1)
TORCH_LR_FINDER_SKIP = (10, 5)


def suggest(
    lrs: Sequence[float],
    losses: Sequence[float],
    smoothed: Sequence[float] | None = None,
    *,
    recommend: str = "auto",
    num_it: int | None = None,
) -> Suggestions:
    """All rules, the CLR bounds and a recommendation for one range test.

    ``lrs``: increasing LRs; ``losses``: the raw loss of each step; ``smoothed``: the curve the
    fastai rules read (default :func:`smooth` of ``losses``, as fastai's recorder); ``num_it``:
    the planned number of steps, whose tenth fastai skips at the start (default ``len(lrs)``).
    Everything from the first non-finite loss or smoothed loss, or non-positive or
    non-increasing LR, on is dropped first; indices stay those of the full arrays.
    """
    lr_all = np.asarray(lrs, dtype=float).ravel()
    raw_all = np.asarray(losses, dtype=float).ravel()
    if len(lr_all) != len(raw_all):
        raise ValueError(f"lrs and losses differ in length: {len(lr_all)} != {len(raw_all)}")
    sm_all = smooth(raw_all) if smoothed is None else np.asarray(smoothed, dtype=float).ravel()
    if len(sm_all) != len(raw_all):
        raise ValueError(f"smoothed and losses differ in length: {len(sm_all)} != {len(raw_all)}")
    total = len(lr_all)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(lr_all) & (lr_all > 0) & np.isfinite(raw_all) & np.isfinite(sm_all)
        ok[1:] &= np.diff(lr_all) > 0
    n = total if ok.all() else int(np.argmin(ok))
    lr, raw, sm = lr_all[:n], raw_all[:n], sm_all[:n]
    cut = "" if n == total else f"; curve cut at step {n} of {total} (non-finite loss or bad LR)"

    rules: dict[str, Suggestion] = {}

    def run(name: str, fn: Callable, x: np.ndarray, y: np.ndarray, lo: int, describe: Callable[[float, int], str]) -> None:
        try:
            value, i = fn(x, y)
        except NoAnswer as e:
            rules[name] = Suggestion(name, None, None, f"{name}: {e}{cut}")
            return
        rules[name] = Suggestion(name, float(value), lo + int(i), describe(float(value), lo + int(i)))

    # fastai: lr_find keeps recorder[num_it//10 : -5] of its smoothed losses
    f_lo = (total if num_it is None else int(num_it)) // 10
    f_hi = max(f_lo, n - FASTAI_SKIP_END)
    fx, fy = lr[f_lo:f_hi], sm[f_lo:f_hi]
    span = f"steps {f_lo}..{f_hi - 1}" if f_hi > f_lo else "no steps left"
    run("valley", fastai_valley, fx, fy, f_lo,
        lambda v, i: f"fastai valley: about the middle of the longest decreasing stretch of the smoothed loss ({span})")
    run("slide", fastai_slide, fx, fy, f_lo,
        lambda v, i: f"fastai slide: sliding a 15-step window left from the end, the last point before its end gradients agree within 0.005 ({span})")
    run("minimum", fastai_minimum, fx, fy, f_lo,
        lambda v, i: f"fastai minimum: LR at the lowest smoothed loss ({lr_all[i]:.3g}) divided by 10 ({span})")
    run("steep", fastai_steep, fx, fy, f_lo,
        lambda v, i: f"fastai steep: left end of the steepest fall of the smoothed loss against log LR ({span})")

    # Lightning: its own smoothing, [skip_begin : -skip_end], gradient against the LR
    l_lo, l_end = LIGHTNING_SKIP
    l_hi = max(l_lo, n - l_end)
    ly = smooth_lightning(raw)
    run("lightning", lightning_steepest, lr[l_lo:l_hi], ly[l_lo:l_hi], l_lo,
        lambda v, i: "Lightning: steepest d(loss)/d(LR) of its smoothed loss (skips 10 at the start, 1 at the end)")

    # torch-lr-finder: its own EMA, [skip_start : -skip_end], per-step gradient
    t_lo, t_end = TORCH_LR_FINDER_SKIP
    t_hi = max(t_lo, n - t_end)
    ty = smooth_torch_lr_finder(raw)
    run("torch_lr_finder", torch_lr_finder_steepest, lr[t_lo:t_hi], ty[t_lo:t_hi], t_lo,
        lambda v, i: "torch-lr-finder: steepest per-step fall of its EMA loss, smooth_f 0.05 (skips 10 at the start, 5 at the end)")

    base, mx, z = clr_bounds(lr, raw)
    if cut and base.lr is None:
        base = Suggestion(base.name, None, None, base.note + cut)
        mx = Suggestion(mx.name, None, None, mx.note + cut)
    rules[base.name], rules[mx.name] = base, mx
    if n >= 5:
        i_min = int(np.argmin(z))
        rules["zero_lag_minimum"] = Suggestion(
            "zero_lag_minimum", float(lr[i_min]), i_min,
            f"LR at the lowest point ({z[i_min]:.3g}) of the zero-lag (centred) smoothed loss",
        )
    else:
        rules["zero_lag_minimum"] = Suggestion("zero_lag_minimum", None, None, f"needs at least 5 points, has {n}")

    value, reason = _recommend(rules, recommend)
    return Suggestions(rules=rules, base_lr=base.lr, max_lr=mx.lr, recommended=value, reason=reason)


# ---------------------------------------------------------------------------------------------
# what the recipe adds (lr_range/facts.py), learnt on the benchmark's tuning half

#: factor on the curve's recommendation per schedule kind (the trick deciding the LR schedule, or
#: "constant"): a kind not listed keeps the curve's value. Learnt on the tuning half of
#: benchmarks/lr_suggestion.py (``learn``): the factor that puts the most recommendations within
#: 0.5 accuracy points of the best (docs/lr-finder.md, "What the recipe adds").
SCHEDULE_FACTOR: dict[str, float] = {"constant": 0.21}

#: where the LRs within 0.5 accuracy points of the best lie, as factors of the recommendation: the
#: medians, over the tuning half of benchmarks/lr_suggestion.py, of the edges of each workload's
#: 0.5-point window divided by the recommendation (docs/lr-finder.md, "How sure")
WITHIN_HALF_POINT: tuple[float, float] | None = (0.44, 1.95)


def recipe_factor(facts) -> tuple[float, str]:
    """The factor the recipe's facts call for on top of the curve's recommendation, and why."""
    factor = SCHEDULE_FACTOR.get(facts.schedule, 1.0)
    if factor == 1.0:
        return 1.0, ""
    return factor, f"a {facts.schedule} schedule trains best at a lower LR than the curve's"


def adjust_for_recipe(s: Suggestions, facts) -> Suggestions:
    """The recommendation of a curve, corrected for how the recipe will use it, with its interval."""
    if s.recommended is None:
        return s
    factor, why = recipe_factor(facts) if facts is not None else (1.0, "")
    lr = s.recommended * factor
    reason = s.reason + (f"; x{factor:.3g} for the recipe ({why})" if factor != 1.0 else "")
    interval = (lr * WITHIN_HALF_POINT[0], lr * WITHIN_HALF_POINT[1]) if WITHIN_HALF_POINT else None
    return Suggestions(s.rules, s.base_lr, s.max_lr, lr, reason, interval)
