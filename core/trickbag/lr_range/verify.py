"""``lr-find --verify``: check the recommended LR by training the user's own recipe with it.

A range test reads a few hundred steps; the run takes thousands, with its own schedule and
tricks. So the recommendation is tried where it matters: short runs of the recipe at the
recommendation and its neighbours (×½ and ×2, a factor of 2 further out while an edge wins),
compared on validation accuracy. Losers are stopped early by successive halving (Optuna's
``SuccessiveHalvingPruner``): every run reports its accuracy after each epoch, and one that is
not among the better half at a rung of the ladder is pruned. What is left is reported with the
seeds that trained it; ``--apply`` then writes the winner.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna

from trickbag.errors import UserError
from trickbag.hookspecs import hookimpl
from trickbag.recipe import Recipe, build_recipe


@dataclass
class Candidate:
    lr: float
    factor: float  # of the recommendation
    accuracies: list[float] = field(default_factory=list)  # final val_acc of each seed that finished
    pruned_at: int | None = None  # the epoch after which successive halving stopped it
    seconds: float = 0.0

    @property
    def score(self) -> float | None:
        return statistics.mean(self.accuracies) if self.accuracies and self.pruned_at is None else None


@dataclass
class Verification:
    recommended: float
    candidates: list[Candidate]
    seeds: list[int]
    epochs: float
    seconds: float

    @property
    def winner(self) -> Candidate | None:
        finished = [c for c in self.candidates if c.score is not None]
        return max(finished, key=lambda c: c.score) if finished else None

    def margin(self) -> float | None:
        """Accuracy points between the winner and the best other finished candidate."""
        scores = sorted((c.score for c in self.candidates if c.score is not None), reverse=True)
        return 100 * (scores[0] - scores[1]) if len(scores) > 1 else None

    def to_dict(self) -> dict[str, Any]:
        w = self.winner
        return {
            "recommended": self.recommended, "verified": w.lr if w else None, "margin_points": self.margin(),
            "seeds": self.seeds, "epochs": self.epochs, "seconds": round(self.seconds, 2),
            "candidates": [{"lr": c.lr, "factor": c.factor, "val_acc": c.accuracies, "pruned_after_epoch": c.pruned_at,
                            "seconds": round(c.seconds, 2)} for c in self.candidates],
        }


def recipe_at(recipe: Recipe, edits: dict[str, Any], seed: int, epochs: float | None) -> Recipe:
    """The recipe with the bound edits of one candidate LR (``bound_edits``: ``optimizer.lr`` and the
    schedule trick's peak), the way ``--apply`` writes them, for one short verification run."""
    from trickbag.lr_range.bounds import apply_edits

    raw = recipe.to_dict()
    apply_edits(raw, edits)
    raw["training"]["seed"] = seed
    if epochs is not None:
        raw["training"]["epochs"] = epochs
    raw["training"]["checkpoint"] = False
    return build_recipe(raw, where="--verify", name=recipe.name)


class _Pruned(Exception):
    pass


class _Reporter:
    """An observer: reports each epoch's val_acc to the Optuna trial and stops a pruned run."""

    def __init__(self, trial: optuna.Trial | None, on_epoch: Callable[[], None]) -> None:
        self.trial, self.on_epoch, self.pruned_at = trial, on_epoch, None

    @hookimpl
    def trickbag_epoch_end(self, state, metrics):
        self.on_epoch()
        if self.trial is None:
            return
        self.trial.report(metrics["val_acc"], step=metrics["epoch"])
        if self.trial.should_prune():
            self.pruned_at = metrics["epoch"]
            raise KeyboardInterrupt  # the loop's clean way out; told apart from a real Ctrl-C below


def verify(
    recipe: Recipe,
    recommended: float,
    *,
    seeds: int = 1,
    epochs: float | None = None,
    factors: tuple[float, ...] = (1.0, 0.5, 2.0),
    budget: float | None = None,
    on_epoch: Callable[[], None] = lambda: None,
    extend: int = 2,
) -> Verification:
    """Train ``recipe`` at ``recommended × factor`` for each factor (the recommendation first), with
    ``seeds`` seeds each (the recipe's seed, then the next ones); while the best is at an edge of
    the factors tried, try one factor of 2 beyond it (``extend`` times at most). ``budget``
    (seconds): no new candidate starts after it."""
    from trickbag.engine.loop import fit
    from trickbag.lr_range.bounds import recipe_edits

    if seeds < 1:
        raise UserError(f"--verify-seeds {seeds}: need at least 1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    seed_list = [recipe.training.seed + k for k in range(seeds)]
    t0 = time.perf_counter()
    candidates: list[Candidate] = []

    def train(factor: float) -> None:
        candidate = Candidate(recommended * factor, factor)
        candidates.append(candidate)
        edits, _ = recipe_edits(recipe, candidate.lr)  # the recipe's schedule trick places the LR
        trial = study.ask()
        started = time.perf_counter()
        for k, seed in enumerate(seed_list):
            # successive halving decides on the first seed's epochs; the other seeds then measure
            reporter = _Reporter(trial if k == 0 else None, on_epoch)
            try:
                summary = fit(recipe_at(recipe, edits, seed, epochs), None, observers=[reporter])
            except KeyboardInterrupt:
                if reporter.pruned_at is None:
                    raise  # a real Ctrl-C
                candidate.pruned_at = reporter.pruned_at
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
            candidate.accuracies.append(summary["final_val_acc"])
        candidate.seconds = time.perf_counter() - started
        if candidate.pruned_at is None:
            study.tell(trial, candidate.score)

    for factor in factors:
        if budget is not None and candidates and time.perf_counter() - t0 > budget:
            break
        train(factor)
    for _ in range(extend):  # an edge won: look one factor of 2 further that way
        best = max((c for c in candidates if c.score is not None), key=lambda c: c.score, default=None)
        tried = sorted(c.factor for c in candidates)
        if best is None or (budget is not None and time.perf_counter() - t0 > budget):
            break
        if best.factor == tried[0] and best.factor < 1:
            train(best.factor / 2)
        elif best.factor == tried[-1] and best.factor > 1:
            train(best.factor * 2)
        else:
            break
    return Verification(recommended, candidates, seed_list, epochs or recipe.training.epochs, time.perf_counter() - t0)


def planned_epochs(recipe: Recipe, epochs: float | None, seeds: int, candidates: int = 3) -> int:
    """Epochs the verification trains at most before any pruning (for the progress bar)."""
    return math.ceil(epochs or recipe.training.epochs) * seeds * candidates
