"""Which LR should the LR finder recommend? Validated by training, not by taste.

Protocol
--------
21 workloads (``_variants``): bases (an MLP on digits, a small BN CNN on mnist5k, ResNet-20 and a
CNN on digits, an MLP on mnist5k) and variants that change one axis at a time: optimizer (SGD with
momentum 0 / 0.9 / Nesterov, Adam, AdamW, RMSprop), batch size (32 to 512), run length (1 to 20
epochs), tricks (label smoothing, mixup, no bias decay) and schedule (one-cycle or a constant LR).
``half_of`` splits them into a tuning and a test half by the SHA-256 of their names, a rule fixed
in the code before any result was looked at. Recommenders and corrections are chosen on the tuning
half only (:func:`learn`); both halves are reported separately.

1. **Grid.** Train at every max LR of a log grid with factor-2 steps (``--step``), spanning where
   training fails on both sides and widened by two points wherever the best lands on an edge, with
   training seeds 0, 1, ... (``--seeds``; default 2 on mnist5k, 6 on digits, whose 297 held-out
   samples make one sample 0.34 points). The grid's score at an LR is the mean final ``val_acc``
   over those seeds; the grid's best is its highest mean.
2. **Finder.** For each of ``--finder-seeds`` (default 4) seeds ``k`` run the range test on the same
   recipe with ``training.seed = 100 + k`` (another init and batch order than any grid run):
   ``lr_find(recipe, None, start=1e-7, end=10, steps=100)``. Every curve (lrs, raw losses,
   smoothed losses) is saved, with the recipe's facts (``lr_range/facts.py``).
3. **Candidates.** From each saved curve: every rule of ``trickbag.lr_range.suggest`` (fastai valley /
   slide / minimum / steep, Lightning, torch-lr-finder, the CLR bounds; kind "trickbag rule"),
   every named recommender in ``RECOMMENDERS``, ``auto.curve`` (the curve's recommendation) and
   ``auto`` ("trickbag default": what ``lr-find`` recommends, the curve's value corrected for the
   recipe by ``adjust_for_recipe``), and candidates defined only in this file (``b.*``).
4. **Score.** A candidate's accuracy at its suggestion: *trained* (mean over the workload's training
   seeds) for the candidates in ``--train`` and any other whose LR is exactly one of those;
   otherwise the grid's mean-accuracy curve interpolated linearly in log LR (the tables say which).
   Its *gap* is the grid's best minus that accuracy, in points (positive = worse than the best).
5. **Report.** Per workload and candidate: median suggestion over finder seeds, spread (max / min),
   gap at the median suggestion (the outside check's measure), gap of each finder seed's own
   suggestion (worst and mean: what one user with one sweep gets). Per half: how many workloads
   meet the goals (the issue: within 0.5 points of the grid's best on >= 90% of workloads, never
   worse than 1.5, spread <= 2x). ``learn`` prints what the tuning half says about corrections and
   the interval shown with a recommendation, next to the constants in ``suggest.py``.

Results go to ``--out`` (JSON: every training run, every finder curve, every score) and a markdown
summary next to it (same name, ``.md``). ``--from-json`` re-scores saved file(s) with the current
``lr_suggest`` (suggestions recomputed from the saved curves) without training: trained accuracy is
reused where a suggestion's LR was trained, otherwise the grid is interpolated. Several files are
merged workload by workload (a later file's workload replaces an earlier one's), so workloads can run
in parallel processes (``--jobs``, or ``--workloads`` with one ``--out`` each) and ``--resume``
continues a file, training only what it lacks.

Noise: the grid's best is a maximum of noisy means, so it is biased upwards by about the noise of
one mean (each workload reports the seed sd at its best point); on digits one held-out sample in
one of 6 seeds is 0.06 points.

Run (2 cores; about 3 CPU-hours, mostly the four mnist5k CNN workloads; ~1 h with --jobs 2):
    python benchmarks/lr_suggestion.py --jobs 2         # everything
    python benchmarks/lr_suggestion.py --quick          # smoke test, < 1 min
    python benchmarks/lr_suggestion.py --from-json benchmarks/results/lr_suggestion.json
On a busy machine, ``--threads 1`` (several 2-thread processes on 2 cores slow each other 5x).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from trickbag.engine.loop import fit
from trickbag.errors import UserError
from trickbag.lr_range import suggest as lr_suggest
from trickbag.lr_range.facts import RecipeFacts
from trickbag.lr_range.sweep import lr_find
from trickbag.recipe import build_recipe

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "lr_suggestion.json"
QUICK_OUT = ROOT / "benchmarks" / "results" / "lr_suggestion_quick.json"
FINDER = {"start": 1e-7, "end": 10.0, "steps": 100}
GOAL_GAP = 0.5  # accuracy points
GOAL_SPREAD = 2.0  # max / min over finder seeds

# ---------------------------------------------------------------------------------------------
# workloads


@dataclass(frozen=True)
class Workload:
    name: str
    about: str
    recipe: dict[str, Any]  # without optimizer.lr and training.seed
    grid: tuple[float, float]  # max-LR grid: lowest and highest point (factor-2 steps between)
    seeds: int = 2  # training seeds per LR unless --seeds says otherwise
    schedule: str = "one_cycle"  # or "constant": the recipe's LR is used for the whole run
    cycle_momentum: bool = True  # False: one-cycle leaves the optimizer's momentum alone (momentum 0 stays 0)

    def make(self, lr: float, seed: int, epochs: float | None = None) -> Any:
        raw = json.loads(json.dumps(self.recipe))
        raw["optimizer"]["lr"] = float(lr)
        raw["training"]["seed"] = int(seed)
        if epochs is not None:
            raw["training"]["epochs"] = epochs
        if self.schedule == "one_cycle":
            # max_lr defaults to optimizer.lr; momentum cycles 0.95 -> 0.85 -> 0.95 unless turned off
            raw.setdefault("tricks", {})["one_cycle"] = {} if self.cycle_momentum else {"cycle_momentum": False}
        return build_recipe(raw, where=f"workload {self.name}", name=self.name)

    @property
    def half(self) -> str:
        return half_of(self.name)


def half_of(name: str) -> str:
    """``tuning`` or ``test``: the workloads sorted by the SHA-256 of their names, the first half
    (rounded up) tuning. A rule fixed in the code before any result was looked at, so no workload can
    be moved to the half that suits a candidate; unknown names (an old result file) go to test."""
    order = sorted(WORKLOADS, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    return "tuning" if name in order[: (len(order) + 1) // 2] else "test"


def _recipe(data: dict, model: dict, optimizer: dict, epochs: float, batch: int, tricks: dict | None = None) -> dict[str, Any]:
    return {
        "data": {"val": "holdout", "split_seed": 0, "crop_padding": 0, "flip": False, **data},
        "model": model,
        "optimizer": optimizer,
        "training": {"epochs": epochs, "batch_size": batch, "checkpoint": False},
        "tricks": dict(tricks or {}),
    }


SGD = {"name": "sgd", "momentum": 0.9, "weight_decay": 5e-4}
ADAMW = {"name": "adamw", "weight_decay": 0.01}
SGD_GRID, ADAM_GRID = (1e-4, 4.096), (1e-5, 0.65536)  # factor-2 steps: 16 and 17 points
DIGITS = {"name": "digits", "val_size": 297}
MNIST = {"name": "mnist5k", "val_size": 1000}
# digits holds out 297 samples (one is 0.34 points) and its runs take a second: 6 training seeds
# there bring the noise of a grid mean near that of 2 seeds on mnist5k's 1,000
DIGITS_SEEDS = 6


def _variants() -> list[Workload]:
    """Bases, and variants that change one axis of a base at a time: optimizer, batch size, run
    length, tricks, schedule, model, data."""
    mlp, cnn16 = {"name": "mlp"}, {"name": "small_cnn", "width": 16}
    base = ("MLP (1x128) on digits, SGD momentum 0.9, batch 32, 3 epochs, one-cycle", DIGITS, mlp, SGD, 3, 32)

    def digits_mlp(name: str, change: str, *, optimizer=None, epochs=3, batch=32, tricks=None, grid=SGD_GRID, schedule="one_cycle",
                   cycle_momentum=True):
        return Workload(name, f"{base[0]}; {change}", _recipe(DIGITS, mlp, optimizer or dict(SGD), epochs, batch, tricks), grid,
                        DIGITS_SEEDS, schedule, cycle_momentum)

    def mnist_cnn(name: str, change: str, *, batch=128, schedule="one_cycle"):
        return Workload(name, f"small BN CNN (width 16) on mnist5k, SGD momentum 0.9, batch 128, 3 epochs, one-cycle; {change}",
                        _recipe(MNIST, cnn16, dict(SGD), 3, batch), (1e-3, 4.096), 2, schedule)

    return [
        digits_mlp("mlp-digits", "the base"),
        # one-cycle would cycle a momentum of 0 up to 0.85-0.95 (as torch's OneCycleLR does): kept at 0 here
        digits_mlp("mlp-digits-sgd-momentum0", "SGD without momentum (one-cycle's momentum cycling off)",
                   optimizer={**SGD, "momentum": 0.0}, cycle_momentum=False),
        digits_mlp("mlp-digits-nesterov", "Nesterov momentum", optimizer={**SGD, "nesterov": True}),
        digits_mlp("mlp-digits-adam", "Adam", optimizer={"name": "adam"}, grid=ADAM_GRID),
        digits_mlp("mlp-digits-adamw", "AdamW (weight decay 0.01)", optimizer=dict(ADAMW), grid=ADAM_GRID),
        digits_mlp("mlp-digits-rmsprop", "RMSprop (momentum 0, one-cycle's momentum cycling off)", optimizer={"name": "rmsprop", "momentum": 0.0},
                   grid=ADAM_GRID, cycle_momentum=False),
        digits_mlp("mlp-digits-batch128", "batch 128", batch=128),
        digits_mlp("mlp-digits-1epoch", "1 epoch", epochs=1),
        digits_mlp("mlp-digits-10epochs", "10 epochs", epochs=10),
        digits_mlp("mlp-digits-20epochs", "20 epochs", epochs=20),
        digits_mlp("mlp-digits-label-smoothing", "label smoothing 0.1", tricks={"label_smoothing": {"epsilon": 0.1}}),
        digits_mlp("mlp-digits-mixup", "mixup alpha 0.2", tricks={"mixup": {"alpha": 0.2}}),
        digits_mlp("mlp-digits-no-bias-decay", "no bias decay", tricks={"no_bias_decay": {}}),
        digits_mlp("mlp-digits-constant", "a constant LR instead of one-cycle", schedule="constant"),
        Workload("cnn-digits", "small BN CNN (width 32) on digits, SGD momentum 0.9, batch 32, 3 epochs, one-cycle",
                 _recipe(DIGITS, {"name": "small_cnn"}, dict(SGD), 3, 32), SGD_GRID, DIGITS_SEEDS),
        Workload("resnet20-digits", "ResNet-20 on digits, SGD momentum 0.9, batch 64, 3 epochs, one-cycle",
                 _recipe(DIGITS, {"name": "resnet20"}, dict(SGD), 3, 64), SGD_GRID, DIGITS_SEEDS),
        Workload("mlp-mnist5k", "MLP (1x128) on mnist5k, SGD momentum 0.9, batch 32, 3 epochs, one-cycle",
                 _recipe(MNIST, mlp, dict(SGD), 3, 32), SGD_GRID, 2),
        mnist_cnn("cnn16-mnist5k", "the base"),
        mnist_cnn("cnn16-mnist5k-batch32", "batch 32", batch=32),
        mnist_cnn("cnn16-mnist5k-batch512", "batch 512", batch=512),
        mnist_cnn("cnn16-mnist5k-constant", "a constant LR instead of one-cycle", schedule="constant"),
    ]


WORKLOADS: dict[str, Workload] = {w.name: w for w in _variants()}


def log_grid(lo: float, hi: float, step: float = 2.0) -> list[float]:
    """``lo``, ``lo * step``, ... up to ``hi``: factor-``step`` spacing (the issue: at most 2)."""
    n = int(round(math.log(hi / lo, step))) + 1
    return [float(lo * step**k) for k in range(n)]


def widen(grid: list[float], means: list[float], step: float = 2.0, points: int = 2) -> list[float]:
    """The LRs to add when the grid's best mean is at an edge: ``points`` more beyond that edge."""
    if not means:
        return []
    best = int(np.argmax(means))
    if best == 0:
        return [grid[0] / step**k for k in range(1, points + 1)]
    if best == len(grid) - 1:
        return [grid[-1] * step**k for k in range(1, points + 1)]
    return []


# ---------------------------------------------------------------------------------------------
# candidates: trickbag's rules and recommenders, plus benchmark-only ones


def _lr(sugg: lr_suggest.Suggestions, name: str) -> float | None:
    rule = sugg.rules.get(name)
    return None if rule is None else rule.lr


def _mul(x: float | None, f: float) -> float | None:
    return None if x is None else x * f


def _gm(*xs: float | None) -> float | None:
    if any(x is None for x in xs):
        return None
    return float(math.exp(sum(math.log(x) for x in xs) / len(xs)))


def _min_centered(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """LR at the minimum of the zero-lag smoothing the CLR bounds use (no lag, unlike fastai's EMA)."""
    ok = np.isfinite(losses)
    n = len(losses) if ok.all() else int(np.argmin(ok))
    if n < 5:
        return None
    z = lr_suggest.smooth_centered(losses[:n])
    return float(lrs[int(np.argmin(z))])


# name -> (what it is, function of (lrs, losses, smoothed, suggestions) -> LR or None)
BenchFn = Callable[[np.ndarray, np.ndarray, np.ndarray, lr_suggest.Suggestions], "float | None"]
BENCH: dict[str, tuple[str, BenchFn]] = {
    "b.min_ema": ("LR at the minimum of fastai's lagging EMA (fastai minimum x10)",
                  lambda l, r, s, g: _mul(_lr(g, "minimum"), 10)),
    "b.min_ema_div3": ("fastai minimum x10 / 3", lambda l, r, s, g: _mul(_lr(g, "minimum"), 10 / 3)),
    "b.min_zero_lag": ("LR at the minimum of the zero-lag smoothed loss", lambda l, r, s, g: _min_centered(l, r)),
    "b.min_zero_lag_div3": ("zero-lag minimum / 3", lambda l, r, s, g: _mul(_min_centered(l, r), 1 / 3)),
    "b.min_zero_lag_div10": ("zero-lag minimum / 10", lambda l, r, s, g: _mul(_min_centered(l, r), 0.1)),
    "b.max_lr_x2": ("CLR max_lr x 2", lambda l, r, s, g: _mul(g.max_lr, 2)),
    "b.max_lr_x3": ("CLR max_lr x 3", lambda l, r, s, g: _mul(g.max_lr, 3)),
    "b.gm_max_lr_min_ema": ("geometric mean of CLR max_lr and the EMA minimum's LR (x10 of auto's minimum)",
                             lambda l, r, s, g: _gm(g.max_lr, _mul(_lr(g, "minimum"), 10))),
    "b.gm_max_lr_min_zero_lag": ("geometric mean of CLR max_lr and the zero-lag minimum's LR",
                                  lambda l, r, s, g: _gm(g.max_lr, _min_centered(l, r))),
    "b.gm_base_max_lr": ("geometric mean of the CLR bounds", lambda l, r, s, g: _gm(g.base_lr, g.max_lr)),
    "b.gm_valley_min_ema": ("geometric mean of fastai valley and the EMA minimum's LR",
                             lambda l, r, s, g: _gm(_lr(g, "valley"), _mul(_lr(g, "minimum"), 10))),
}


def candidate_kinds() -> dict[str, str]:
    """Every candidate name -> its kind: ``rule`` (a peer's rule or a CLR bound, built into
    trickbag), ``recommender`` (trickbag's ``RECOMMENDERS``), ``auto`` or ``bench`` (this file only)."""
    kinds = {"auto": "auto", "auto.curve": "recommender"}
    probe = lr_suggest.suggest(np.geomspace(1e-5, 1, 40), np.linspace(3, 1, 40))
    for name in probe.rules:
        kinds[name] = "rule"
    for name in lr_suggest.RECOMMENDERS:
        kinds.setdefault(name, "recommender")  # a recommender named like a rule is that rule
    for name in BENCH:
        kinds[name] = "bench"
    return kinds


def candidates(lrs: list[float], losses: list[float], smoothed: list[float], facts: dict | None = None) -> dict[str, float | None]:
    """Every candidate's suggestion for one finder curve, with the current ``lr_suggest``;
    ``auto`` is what lr_find recommends for the workload's recipe (``facts``), ``auto.curve`` the
    curve's recommendation before the recipe's correction."""
    base = lr_suggest.suggest(lrs, losses, smoothed)
    adjusted = lr_suggest.adjust_for_recipe(base, RecipeFacts(**facts) if facts else None)  # exactly what lr_find computes
    out: dict[str, float | None] = {"auto": adjusted.recommended, "auto.curve": base.recommended}
    for name, rule in base.rules.items():
        out[name] = rule.lr
    for name in lr_suggest.RECOMMENDERS:
        if name not in out:
            out[name] = lr_suggest.suggest(lrs, losses, smoothed, recommend=name).recommended
    l, r, s = (np.asarray(v, dtype=float) for v in (lrs, losses, smoothed))
    for name, (_, fn) in BENCH.items():
        try:
            value = fn(l, r, s, base)
        except Exception:  # a candidate must never stop the benchmark
            value = None
        out[name] = None if value is None or not math.isfinite(value) else float(value)
    return out


# ---------------------------------------------------------------------------------------------
# running


def train_one(w: Workload, lr: float, seed: int, epochs: float | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        summary = fit(w.make(lr, seed, epochs), None)
        acc, best, diverged = summary["final_val_acc"], summary["best_val_acc"], False
    except UserError as exc:  # Diverged: the loss became NaN; score it as chance level
        if "diverged" not in str(exc).lower():
            raise
        acc, best, diverged = 0.1, 0.1, True
    return {"lr": float(lr), "seed": seed, "final_val_acc": acc, "best_val_acc": best, "diverged": diverged,
            "seconds": round(time.perf_counter() - t0, 3)}


def find_one(w: Workload, k: int, steps: int) -> dict[str, Any]:
    seed = 100 + k
    mid = math.sqrt(w.grid[0] * w.grid[1])  # the recipe's own LR: the finder overrides it anyway
    res = lr_find(w.make(mid, seed), None, start=FINDER["start"], end=FINDER["end"], steps=steps)
    return {"finder_seed": seed, "lrs": res.lrs, "losses": res.losses, "smoothed": res.smoothed,
            "stopped": res.stopped, "seconds": round(res.seconds, 3), "recommended": res.suggestions.recommended,
            "reason": res.suggestions.reason}


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def lookup(runs: list[dict], lr: float, seed: int) -> dict | None:
    for r in runs:
        if r["seed"] == seed and _same(r["lr"], lr):
            return r
    return None


# ---------------------------------------------------------------------------------------------
# scoring


def grid_curve(wres: dict) -> tuple[list[float], list[float], list[float]]:
    """(grid LRs, mean final val_acc, sd over seeds) of one workload."""
    lrs, means, sds = [], [], []
    for lr in wres["grid"]:
        accs = [lookup(wres["runs"], lr, s)["final_val_acc"] for s in wres["train_seeds"] if lookup(wres["runs"], lr, s)]
        if accs:
            lrs.append(lr)
            means.append(statistics.fmean(accs))
            sds.append(statistics.stdev(accs) if len(accs) > 1 else 0.0)
    return lrs, means, sds


def interp(lrs: list[float], accs: list[float], lr: float) -> tuple[float, bool]:
    """Mean accuracy at ``lr``, linear in log LR; (value, inside the grid)."""
    x = np.log(lrs)
    inside = lrs[0] <= lr <= lrs[-1]
    return float(np.interp(math.log(lr), x, accs)), inside


def window(lrs: list[float], accs: list[float], level: float) -> tuple[float | None, float | None]:
    """The LR range (interpolated, log-linear) where the grid curve is at or above ``level``."""
    x, y = np.log(lrs), np.asarray(accs)
    above = np.flatnonzero(y >= level)
    if len(above) == 0:
        return None, None
    i, j = int(above[0]), int(above[-1])

    def cross(a: int, b: int) -> float:  # where the segment a->b crosses level
        if y[a] == y[b]:
            return float(x[b])
        t = (level - y[a]) / (y[b] - y[a])
        return float(x[a] + t * (x[b] - x[a]))

    lo = math.exp(cross(i - 1, i)) if i > 0 else lrs[0]
    hi = math.exp(cross(j + 1, j)) if j < len(lrs) - 1 else lrs[-1]
    return lo, hi


def score_workload(wres: dict, kinds: dict[str, str], train_names: set[str]) -> dict[str, Any]:
    g_lrs, g_acc, g_sd = grid_curve(wres)
    ib = int(np.argmax(g_acc))
    best = g_acc[ib]
    lo, hi = window(g_lrs, g_acc, best - GOAL_GAP / 100)
    out: dict[str, Any] = {
        "grid_best_lr": g_lrs[ib], "grid_best_acc": best, "grid_best_sd": g_sd[ib],
        "grid_mean_sd": statistics.fmean(g_sd), "window_0.5pt": [lo, hi],
        "grid": [{"lr": a, "acc": b, "sd": c} for a, b, c in zip(g_lrs, g_acc, g_sd)], "candidates": {},
    }
    per_seed = [candidates(f["lrs"], f["losses"], f["smoothed"], wres.get("facts")) for f in wres["finder"]]
    for name, kind in kinds.items():
        values = [c.get(name) for c in per_seed]
        gaps, gaps_interp, how = [], [], set()
        for lr in values:
            if lr is None:
                gaps.append(math.inf)
                gaps_interp.append(math.inf)
                how.add("none")
                continue
            acc_i, inside = interp(g_lrs, g_acc, lr)
            gaps_interp.append(100 * (best - acc_i))
            trained = [lookup(wres["runs"], lr, s) for s in wres["train_seeds"]]
            if all(trained):  # trained at this exact LR (for this or another candidate)
                gaps.append(100 * (best - statistics.fmean(t["final_val_acc"] for t in trained)))
                how.add("trained")
            else:
                gaps.append(100 * (best - acc_i))
                how.add("interp" if inside else "interp-clamped")
        answered = [v for v in values if v is not None]
        spread = (max(answered) / min(answered)) if len(answered) == len(values) and answered else math.inf
        median = statistics.median(answered) if answered else None
        gap_median = math.inf
        if median is not None:  # the outside check's measure: the median recommendation, trained or interpolated
            trained = [lookup(wres["runs"], median, s) for s in wres["train_seeds"]]
            acc_m = statistics.fmean(t["final_val_acc"] for t in trained) if all(trained) else interp(g_lrs, g_acc, median)[0]
            gap_median = 100 * (best - acc_m)
        out["candidates"][name] = {
            "kind": kind, "lrs": values, "median_lr": median, "gap_median": gap_median,
            "inside_window": median is not None and lo is not None and lo <= median <= hi,
            "spread": spread, "gaps": gaps, "gaps_interp": gaps_interp,
            "gap_worst": max(gaps) if gaps else math.inf, "gap_mean": statistics.fmean(gaps) if gaps else math.inf,
            "scored_by": "+".join(sorted(how)),
        }
    return out


def summarize(scores: dict[str, dict], kinds: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for name, kind in kinds.items():
        per = {w: s["candidates"][name] for w, s in scores.items() if name in s["candidates"]}
        if not per:
            continue
        worst_gap = max(c["gap_worst"] for c in per.values())
        worst_spread = max(c["spread"] for c in per.values())
        rows.append({
            "name": name, "kind": kind, "worst_gap": worst_gap, "worst_spread": worst_spread,
            "mean_gap": statistics.fmean(c["gap_mean"] for c in per.values()),
            "workloads_within_gap": sum(c["gap_worst"] <= GOAL_GAP for c in per.values()), "workloads": len(per),
            "median_within_gap": sum(c["gap_median"] <= GOAL_GAP for c in per.values()),
            "worst_gap_median": max(c["gap_median"] for c in per.values()),
            "within_spread": sum(c["spread"] <= GOAL_SPREAD for c in per.values()),
            "meets_gap": worst_gap <= GOAL_GAP, "meets_spread": worst_spread <= GOAL_SPREAD,
            "per_workload": {w: {"gap_worst": c["gap_worst"], "gap_median": c["gap_median"], "spread": c["spread"], "median_lr": c["median_lr"],
                                 "scored_by": c["scored_by"]} for w, c in per.items()},
        })
    rows.sort(key=lambda r: (not (r["meets_gap"] and r["meets_spread"]), r["worst_gap"], r["worst_spread"]))
    return rows


# ---------------------------------------------------------------------------------------------
# output


KIND_LABEL = {"auto": "trickbag default", "rule": "trickbag rule", "recommender": "trickbag recommender", "bench": "benchmark-only"}


def _f(x: float | None, fmt: str = ".3g") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return format(x, fmt)


def _auto_name() -> str:
    return f"auto (= {lr_suggest.AUTO})"


def workload_table(name: str, s: dict, about: str) -> Table:
    lo, hi = s["window_0.5pt"]
    t = Table(title=(f"{name}: {about}\ngrid best {s['grid_best_acc']:.2%} at max LR {s['grid_best_lr']:.3g} "
                     f"(sd over seeds {100 * s['grid_best_sd']:.2f} pt); within 0.5 pt: {_f(lo)} .. {_f(hi)}"),
              title_justify="left")
    for col in ("candidate", "kind", "scored by", "median LR", "spread", "gap worst", "gap mean", "per finder seed (gap, pt)"):
        t.add_column(col, justify="left" if col in ("candidate", "kind", "scored by", "per finder seed (gap, pt)") else "right")
    for cname, c in sorted(s["candidates"].items(), key=lambda kv: (kv[1]["gap_worst"], kv[1]["spread"])):
        ok = c["gap_worst"] <= GOAL_GAP and c["spread"] <= GOAL_SPREAD
        label = _auto_name() if cname == "auto" else cname
        t.add_row(f"[bold green]{label}[/]" if ok else label, KIND_LABEL[c["kind"]], c["scored_by"], _f(c["median_lr"]),
                  _f(c["spread"], ".2f"), _f(c["gap_worst"], ".2f"), _f(c["gap_mean"], ".2f"),
                  " ".join(_f(g, ".1f") for g in c["gaps"]))
    return t


def grid_table(name: str, s: dict) -> Table:
    t = Table(title=f"{name}: grid (mean final val acc over training seeds)", title_justify="left")
    t.add_column("max LR")
    for p in s["grid"]:
        t.add_column(f"{p['lr']:.3g}", justify="right")
    t.add_row("acc %", *[f"{100 * p['acc']:.1f}" for p in s["grid"]])
    t.add_row("sd pt", *[f"{100 * p['sd']:.1f}" for p in s["grid"]])
    return t


def summary_table(rows: list[dict], workloads: list[str]) -> Table:
    t = Table(title=f"Summary: worst over workloads {', '.join(workloads)} (goal: gap <= {GOAL_GAP} pt, spread <= {GOAL_SPREAD:g}x)",
              title_justify="left")
    for col in ("candidate", "kind", "worst gap", "mean gap", "worst spread", "within gap", "both goals"):
        t.add_column(col, justify="left" if col in ("candidate", "kind") else "right")
    for r in rows:
        both = r["meets_gap"] and r["meets_spread"]
        label = _auto_name() if r["name"] == "auto" else r["name"]
        t.add_row(f"[bold green]{label}[/]" if both else label, KIND_LABEL[r["kind"]], _f(r["worst_gap"], ".2f"),
                  _f(r["mean_gap"], ".2f"), _f(r["worst_spread"], ".2f"), f"{r['workloads_within_gap']}/{r['workloads']}",
                  "yes" if both else ("gap only" if r["meets_gap"] else ("spread only" if r["meets_spread"] else "no")))
    return t


KEY_CANDIDATES = ("auto", "valley", "minimum", "steep", "lightning", "torch_lr_finder", "max_lr")


def _half_rows(rows: list[dict], m: dict) -> list[str]:
    lines = ["| candidate | kind | worst gap (pt) | mean gap (pt) | within 0.5 pt | within 1.5 pt | median within 0.5 pt | "
             "worst spread | spread <= 2x | both goals |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        per = r["per_workload"].values()
        within15 = sum(p["gap_worst"] <= 1.5 for p in per)
        both = r["meets_gap"] and r["meets_spread"]
        label = f"auto (= {m['auto']})" if r["name"] == "auto" else r["name"]
        lines.append(f"| `{label}` | {KIND_LABEL[r['kind']]} | {_f(r['worst_gap'], '.2f')} | {_f(r['mean_gap'], '.2f')} | "
                     f"{r['workloads_within_gap']}/{r['workloads']} | {within15}/{r['workloads']} | "
                     f"{r['median_within_gap']}/{r['workloads']} | {_f(r['worst_spread'], '.2f')} | {r['within_spread']}/{r['workloads']} | "
                     f"{'**yes**' if both else 'no'} |")
    return lines


def markdown(result: dict) -> str:
    scores, m = result["scores"], result["meta"]
    how = f"`{m['command']}`" if not m.get("merged") else f"{1 + len(m['merged'])} processes merged with `--from-json`, commands in the JSON"
    how += f", {m.get('compute_minutes', '?')} min of training and finder time"
    lines = [
        "<!-- written by benchmarks/lr_suggestion.py; do not edit by hand -->",
        (f"LR suggestions scored by training ({how}; {m['finder_seeds']} finder seeds, log grid of one-cycle max LRs "
         f"with factor-{m.get('grid_step', 2):g} steps, widened where the best was at an edge; "
         f"lr_suggest.py sha256 {m['lr_suggest_sha256'][:12]}, AUTO = `{m['auto']}`)."),
        "",
        ("Gap: the grid's best mean val accuracy minus the accuracy at the suggestion, in points (worst over finder "
         "seeds; 'median': at the median suggestion); spread: max/min suggestion over finder seeds. Halves: the workloads "
         "sorted by the SHA-256 of their names, the first half tuning (`half_of` in the benchmark), fixed before any result."),
        "",
        "| workload | half | training seeds | grid best max LR | grid best acc | seed sd at best (pt) | max LRs within 0.5 pt of best |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for w, s in scores.items():
        lo, hi = s["window_0.5pt"]
        lines.append(f"| {w} | {half_of(w)} | {len(result['workloads'][w]['train_seeds'])} | {s['grid_best_lr']:.3g} | "
                     f"{100 * s['grid_best_acc']:.2f}% | {100 * s['grid_best_sd']:.2f} | {_f(lo)} .. {_f(hi)} |")
    for half in ("tuning", "test"):
        rows = result.get(f"summary_{half}") or []
        lines += ["", f"### {half} half ({len(rows[0]['per_workload']) if rows else 0} workloads)", "", *_half_rows(rows, m)]
    learnt = result.get("learnt")
    if learnt:
        lines += ["", "### What the tuning half says about the recipe (`learn`)", ""]
        for kind, f in learnt["schedule_factor"].items():
            lines.append(f"- schedule `{kind}` ({f['workloads']} tuning workloads): factor {f['factor']:.3g} on the curve's "
                         f"recommendation (misses its 0.5-pt windows by {f['miss_doublings']:.2f} doublings in all; no correction: "
                         f"{f['identity_miss_doublings']:.2f})")
        steps = ", ".join(f"a = {a}: {v['tuning']:.2f} / {v['test']:.2f}" for a, v in learnt["steps_exponent_miss_doublings"].items())
        lines.append(f"- a run-length correction (steps / 138)^a, misses in doublings, tuning / test half: {steps}")
        wh = learnt["within_half_point"]
        if wh:
            lines.append(f"- the 0.5-pt window around the recommendation, median over tuning workloads: x{wh[0]:.2f} .. x{wh[1]:.2f}")
        code = learnt["in_code"]
        lines.append(f"- in `suggest.py`: `SCHEDULE_FACTOR = {code['schedule_factor']}`, `WITHIN_HALF_POINT = {code['within_half_point']}`")
    shown = [c for c in KEY_CANDIDATES if any(c in s["candidates"] for s in scores.values())]
    lines += ["", "Per workload, for the trickbag default and the peers' rules: gap (pt) of the worst finder seed's suggestion; "
              "gap at the median suggestion / the median suggestion (\\* interpolated from the grid, not trained at the suggestion):", "",
              "| workload | half | " + " | ".join(f"`{c}`" for c in shown) + " |", "|---|---|" + "---:|" * len(shown)]
    for w, s in scores.items():
        cells = []
        for c in shown:
            d = s["candidates"].get(c)
            cells.append("-" if d is None else f"{_f(d['gap_worst'], '.2f')}; {_f(d.get('gap_median'), '.2f')} / {_f(d['median_lr'])}"
                         + ("" if d["scored_by"] == "trained" else "\\*"))
        lines.append(f"| {w} | {half_of(w)} | " + " | ".join(cells) + " |")
    bench = [f"- `{n}`: {d}" for n, (d, _) in BENCH.items()]
    lines += ["", "Benchmark-only candidates (defined in benchmarks/lr_suggestion.py, not in trickbag):", *bench, ""]
    return "\n".join(lines)


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _unjson(x: Any) -> Any:
    if x == "inf":
        return math.inf
    if isinstance(x, dict):
        return {k: _unjson(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_unjson(v) for v in x]
    return x


def write(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(result), indent=1))
    tmp.replace(out)
    if result.get("summary"):
        out.with_suffix(".md").write_text(markdown(result))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except Exception:
        return ""


# ---------------------------------------------------------------------------------------------
# main


def workload_facts(name: str) -> dict[str, Any]:
    """The recipe side of a workload (lr_range/facts.py), as the finder's recommendation sees it."""
    from trickbag.engine.assemble import prepare_run
    from trickbag.lr_range.facts import facts_of

    w = WORKLOADS[name]
    run = prepare_run(w.make(math.sqrt(w.grid[0] * w.grid[1]), 0))
    try:
        return facts_of(run).to_dict()
    finally:
        run.release()


def ratios(result: dict) -> list[dict[str, Any]]:
    """Per workload: where the grid's best and its 0.5-point window lie relative to the finder's
    median recommendation, before (``curve``) and after (``auto``) the recipe's correction, with the
    recipe's facts: what :func:`learn` fits on the tuning half."""
    rows = []
    for w, s in result["scores"].items():
        auto = s["candidates"].get("auto", {}).get("median_lr")
        curve = s["candidates"].get("auto.curve", {}).get("median_lr")
        lo, hi = s["window_0.5pt"]
        if not auto or not curve or lo is None:
            continue
        rows.append({"workload": w, "half": half_of(w), "facts": result["workloads"][w].get("facts", {}),
                     "best_over_curve": s["grid_best_lr"] / curve, "low_over_curve": lo / curve, "high_over_curve": hi / curve,
                     "best_over_auto": s["grid_best_lr"] / auto, "low_over_auto": lo / auto, "high_over_auto": hi / auto})
    return rows


#: a correction must bring recommendations closer to their windows by more than this, in doublings
#: summed over the tuning workloads, to be adopted: the windows come from noisy means of 2-6 seeds
MISS_TOLERANCE = 0.1


def _miss(windows: list[tuple[float, float]], factors: list[float]) -> float:
    """How far the corrected recommendations fall outside their 0.5-point windows, in doublings,
    summed (0 when every one is inside)."""
    return sum(max(0.0, math.log2(lo / f), math.log2(f / hi)) for (lo, hi), f in zip(windows, factors))


def _fit_factor(windows: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(factor, its miss, the miss of no correction): the factor, a power of 2^(1/4) in 1/64..64,
    that brings the recommendations closest to their windows; no correction (1) when that is within
    :data:`MISS_TOLERANCE` of the best, else the middle (in log) of the factors that are."""
    factors = [2 ** (k / 4) for k in range(-24, 25)]
    misses = [_miss(windows, [f] * len(windows)) for f in factors]
    identity, best = _miss(windows, [1.0] * len(windows)), min(misses)
    if identity <= best + MISS_TOLERANCE:
        return 1.0, identity, identity
    near = [f for f, m in zip(factors, misses) if m <= best + MISS_TOLERANCE]
    return math.exp((math.log(near[0]) + math.log(near[-1])) / 2), best, identity


def learn(result: dict) -> dict[str, Any]:
    """What the recipe adds, learnt on the tuning half only (docs/lr-finder.md, "What the recipe adds"):

    * per schedule kind, the factor on the curve's recommendation that brings the tuning workloads'
      recommendations closest to their 0.5-point windows (``suggest.SCHEDULE_FACTOR``), adopted
      only when it beats no correction by more than :data:`MISS_TOLERANCE`;
    * a run-length correction, tried (its misses on both halves are reported) but adopted by the
      same rule only;
    * the interval: the medians over tuning workloads of the window's edges divided by the
      corrected recommendation (``suggest.WITHIN_HALF_POINT``).

    The constants in ``suggest.py`` are copied from here by hand; the report shows both, so a stale
    constant is visible."""
    everything = ratios(result)
    rows = [r for r in everything if r["half"] == "tuning"]
    kinds: dict[str, list[dict]] = {}
    for r in rows:
        kinds.setdefault(r["facts"].get("schedule", "?"), []).append(r)
    factors = {}
    for kind, rs in sorted(kinds.items()):
        f, miss, identity = _fit_factor([(r["low_over_curve"], r["high_over_curve"]) for r in rs])
        factors[kind] = {"factor": f, "miss_doublings": miss, "identity_miss_doublings": identity, "workloads": len(rs)}
    # a run-length correction (steps / 138)^a, tried and reported on both halves; adopted only by the rule above
    steps_exponent = {}
    for a in (-0.5, -0.25, 0.0, 0.25, 0.5):
        steps_exponent[str(a)] = {half: _miss([(r["low_over_auto"], r["high_over_auto"]) for r in everything if r["half"] == half],
                                              [(r["facts"]["total_steps"] / 138) ** a for r in everything if r["half"] == half])
                                  for half in ("tuning", "test")}
    interval = None
    if rows:
        interval = (statistics.median(r["low_over_auto"] for r in rows), statistics.median(r["high_over_auto"] for r in rows))
    return {"schedule_factor": factors, "steps_exponent_miss_doublings": steps_exponent, "within_half_point": interval,
            "tuning_workloads": [r["workload"] for r in rows],
            "in_code": {"schedule_factor": dict(lr_suggest.SCHEDULE_FACTOR), "within_half_point": lr_suggest.WITHIN_HALF_POINT}}


def score_all(result: dict, train_names: set[str]) -> None:
    for name, wres in result["workloads"].items():
        if "facts" not in wres and name in WORKLOADS:
            wres["facts"] = workload_facts(name)
    kinds = candidate_kinds()
    result["scores"] = {w: score_workload(r, kinds, train_names) for w, r in result["workloads"].items()
                        if r["finder"] and r["runs"]}
    result["summary"] = summarize(result["scores"], kinds)
    for half in ("tuning", "test"):  # a candidate is chosen on the tuning half; the test half judges it
        result[f"summary_{half}"] = summarize({w: s for w, s in result["scores"].items() if half_of(w) == half}, kinds)
    result["meta"]["auto"] = lr_suggest.AUTO
    result["learnt"] = learn(result)
    # what the results cost, however the work was split: every training run and finder sweep
    result["meta"]["compute_minutes"] = round(sum(
        sum(r["seconds"] for r in w["runs"]) + sum(f["seconds"] for f in w["finder"]) for w in result["workloads"].values()) / 60, 1)
    result["meta"]["lr_suggest_sha256"] = _sha(Path(lr_suggest.__file__))


def show(result: dict, console: Console) -> None:
    for w, s in result["scores"].items():
        about = WORKLOADS[w].about if w in WORKLOADS else result["workloads"][w].get("about", "")
        console.print(grid_table(w, s))
        console.print(workload_table(w, s, about))
    for half in ("tuning", "test"):
        scored = [w for w in result["scores"] if half_of(w) == half]
        if scored:
            console.print(summary_table(result[f"summary_{half}"], scored))
    console.print("gap: grid best minus accuracy at the suggestion, accuracy points (positive = worse); "
                  "scored by 'trained' = trained at the suggestion (mean over training seeds), 'interp' = grid "
                  "curve interpolated linearly in log LR ('-clamped': outside the grid). "
                  "kind 'benchmark-only' = defined in this file, not in trickbag.")


def run_parallel(args, names: list[str], out: Path, argv: list[str], console: Console) -> None:
    """``--jobs N``: N worker processes (one thread each), each its own share of the workloads and
    its own resumable part file, then one merge. The costly workloads are dealt out first."""
    cost = {n: (20 if "cnn16-mnist5k" in n else 3 if "mnist5k" in n or "20epochs" in n else 1) for n in names}
    order = sorted(names, key=lambda n: -cost[n])
    groups = [order[k::args.jobs] for k in range(args.jobs)]
    passthrough = [a for a in argv if not a.startswith("--jobs") and a not in [str(args.jobs)]]
    passthrough = [a for i, a in enumerate(passthrough) if not (a == "--workloads" or (i and passthrough[i - 1] == "--workloads") or a in names)]
    passthrough = [a for i, a in enumerate(passthrough) if not (a in ("--out", "--threads") or (i and passthrough[i - 1] in ("--out", "--threads")))]
    parts, procs = [], []
    for k, group in enumerate(g for g in groups if g):
        part = out.with_name(f"{out.stem}.part{k}.json")
        parts.append(part)
        command = [sys.executable, __file__, *passthrough, "--workloads", *group, "--out", str(part), "--threads", "1", "--resume"]
        console.print(f"worker {k}: {' '.join(group)}")
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL if not args.quick else None))
    codes = [proc.wait() for proc in procs]
    if any(codes):
        raise SystemExit(f"a worker failed (exit codes {codes}); rerun the same command to resume")
    main(["--from-json", *map(str, parts), "--out", str(out)])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), help="subset (default: all; --quick: mlp-digits)")
    p.add_argument("--seeds", type=int, default=None,
                   help="training seeds per grid point (default: 2 on mnist5k, 8 on digits; --quick 1)")
    p.add_argument("--finder-seeds", type=int, default=None, help="LR-finder data-order seeds (default 4; --quick 2)")
    p.add_argument("--step", type=float, default=None, help="grid step, a factor (default 2; --quick 8)")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes, one thread each (their results are merged)")
    p.add_argument("--train", default="auto,valley,max_lr,b.max_lr_x2,b.gm_max_lr_min_zero_lag",
                   help="candidates whose suggestions are trained (comma list; the rest interpolate the grid)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (< 1 min): mlp-digits, 1 epoch, factor-8 grid")
    p.add_argument("--out", type=Path, default=None, help=f"JSON results (default {DEFAULT_OUT.relative_to(ROOT)}); markdown next to it")
    p.add_argument("--from-json", type=Path, nargs="+", default=None,
                   help="re-score saved result file(s) without training (several: their workloads are merged)")
    p.add_argument("--resume", action="store_true", help="reuse the training runs and finder curves already in --out")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = p.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 200)
    torch.set_num_threads(args.threads)
    train_names = {n.strip() for n in args.train.split(",") if n.strip()}
    unknown = train_names - set(candidate_kinds())
    if unknown:
        p.error(f"--train: unknown candidate(s) {', '.join(sorted(unknown))}; known: {', '.join(candidate_kinds())}")
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)

    if args.from_json:
        # several files (e.g. workloads run in parallel processes) are merged, workload by workload
        result = _unjson(json.loads(args.from_json[0].read_text()))
        for extra in args.from_json[1:]:
            more = _unjson(json.loads(extra.read_text()))
            result["workloads"].update(more["workloads"])
            result["meta"].setdefault("merged", []).append({k: more["meta"].get(k) for k in ("command", "seconds", "started", "finished")})
        order = [w for w in WORKLOADS if w in result["workloads"]] + [w for w in result["workloads"] if w not in WORKLOADS]
        result["workloads"] = {w: result["workloads"][w] for w in order}
        if len(args.from_json) > 1:
            result["meta"]["command"] = " + ".join([result["meta"]["command"], *(m["command"] for m in result["meta"]["merged"])])
            result["meta"]["seconds"] = sum([result["meta"].get("seconds") or 0, *((m["seconds"] or 0) for m in result["meta"]["merged"])])
        result["meta"]["rescored_with"] = " ".join(["python", "benchmarks/lr_suggestion.py", *(argv or sys.argv[1:])])
        score_all(result, set(result["meta"].get("train", train_names)))
        show(result, console)
        if args.out:
            write(result, args.out)
            console.print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
        return

    names = args.workloads or (["mlp-digits"] if args.quick else list(WORKLOADS))
    if args.jobs > 1:
        run_parallel(args, names, out, argv if argv is not None else sys.argv[1:], console)
        return
    seeds_of = {n: args.seeds or (1 if args.quick else WORKLOADS[n].seeds) for n in names}
    fseeds = args.finder_seeds or (2 if args.quick else 4)
    step = args.step or (8.0 if args.quick else 2.0)
    epochs = 1 if args.quick else None
    steps = FINDER["steps"]
    result: dict[str, Any] = {
        "meta": {
            "command": " ".join(["python", "benchmarks/lr_suggestion.py", *(argv if argv is not None else sys.argv[1:])]),
            "seeds": args.seeds or ("1" if args.quick else "per workload"), "finder_seeds": fseeds, "grid_step": step, "quick": args.quick, "finder": FINDER,
            "train": sorted(train_names), "threads": args.threads, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "git": _git(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "workloads": {},
    }
    old: dict = {}
    if args.resume and out.exists():
        old = _unjson(json.loads(out.read_text())).get("workloads", {})
    for n in names:
        w = WORKLOADS[n]
        prev = old.get(n, {})
        result["workloads"][n] = {
            "about": w.about, "recipe": w.make(w.grid[0], 0, epochs).to_dict(),
            "grid": sorted(set(log_grid(*w.grid, step)) | set(prev.get("grid", []))), "train_seeds": list(range(seeds_of[n])),
            "half": w.half,
            "finder": [f for f in prev.get("finder", []) if f["finder_seed"] < 100 + fseeds],
            "runs": list(prev.get("runs", [])),
            "facts": prev.get("facts") or workload_facts(n),  # what lr_find's recommendation sees of the recipe
        }
    t_start = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as bar:
        # totals: finders + grid now, suggestion runs once their LRs are known
        todo = sum(fseeds + len(result["workloads"][n]["grid"]) * seeds_of[n] for n in names)
        task = bar.add_task("lr_suggestion", total=todo)
        for n in names:
            w, wres = WORKLOADS[n], result["workloads"][n]
            done_f = {f["finder_seed"] for f in wres["finder"]}
            for k in range(fseeds):
                bar.update(task, description=f"{n}: lr_find seed {100 + k}")
                if 100 + k not in done_f:
                    f = find_one(w, k, steps)
                    wres["finder"].append(f)
                    bar.console.print(f"{n}: lr_find seed {100 + k}: {f['stopped']} after {len(f['lrs'])} steps, "
                                      f"auto {_f(f['recommended'])} ({f['seconds']:.1f}s)")
                bar.advance(task)
            wres["finder"].sort(key=lambda f: f["finder_seed"])
            write(result, out)
            # the suggestions to train at, known now: grow the bar's total
            extra: list[float] = []
            for f in wres["finder"]:
                c = candidates(f["lrs"], f["losses"], f["smoothed"], wres["facts"])
                for name in sorted(train_names):
                    lr = c.get(name)
                    if lr is not None and not any(_same(lr, e) for e in extra) and not any(_same(lr, g) for g in wres["grid"]):
                        extra.append(lr)
            bar.update(task, total=bar.tasks[task].total + len(extra) * seeds_of[n])
            def train_all(origin: str, lrs: list[float]) -> None:
                for lr in lrs:
                    for s in wres["train_seeds"]:
                        bar.update(task, description=f"{n}: {origin} max LR {lr:.3g} seed {s}")
                        if lookup(wres["runs"], lr, s) is None:
                            r = train_one(w, lr, s, epochs)
                            r["origin"] = origin
                            wres["runs"].append(r)
                            bar.console.print(f"{n}: {origin} max LR {lr:.4g} seed {s}: val acc {r['final_val_acc']:.2%}"
                                              f"{' (diverged)' if r['diverged'] else ''} ({r['seconds']:.1f}s)")
                        bar.advance(task)
                    write(result, out)

            train_all("grid", wres["grid"])
            for _ in range(3):  # the grid's best on an edge: two more points beyond it, until it is inside
                g_lrs, g_acc, _ = grid_curve(wres)
                more = widen(g_lrs, g_acc, step)
                if not more or args.quick:
                    break
                bar.update(task, total=bar.tasks[task].total + len(more) * seeds_of[n])
                wres["grid"] = sorted(wres["grid"] + more)
                train_all("grid", more)
            train_all("suggestion", extra)
            # score what is done so far (partial results survive a kill)
            result["meta"]["seconds"] = round(time.perf_counter() - t_start, 1)
            score_all(result, train_names)
            write(result, out)
    result["meta"]["seconds"] = round(time.perf_counter() - t_start, 1)
    result["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    score_all(result, train_names)
    write(result, out)
    show(result, console)
    console.print(f"total {result['meta']['seconds'] / 60:.1f} min; wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
