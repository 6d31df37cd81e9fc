"""Make an ablation's runs as ordinary run folders, ``OUT/<variant>/seed-<k>``: a rerun skips the
finished ones and resumes the interrupted ones (``trickbag run --resume`` works on each too); a run
that diverges is recorded as diverged, not dropped. ``OUT/ablation.json`` says what the folder
holds, so another ablation is never mixed into it."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from trickbag.ablate.variants import GRID, Variant, grid, variants
from trickbag.errors import UserError
from trickbag.runs.checkpoint import CHECKPOINT
from trickbag.runs.folder import read_metrics, write_atomic

SPEC, ROWS = "ablation.json", "ablation.jsonl"


@dataclass(frozen=True)
class Plan:
    recipe_path: Path
    overrides: tuple[str, ...]  # the user's --set, under every variant
    mode: str  # a trick mode, or GRID with ``vary``
    seeds: int
    epochs: float | None  # None: the recipe's own
    out: Path
    vary: tuple[str, ...] = ()  # --vary KEY=V1,V2,...

    def spec(self, recipe) -> dict:
        return {"recipe": recipe.to_dict(), "overrides": list(self.overrides), "mode": self.mode, "epochs": self.epochs,
                "vary": list(self.vary)}


def _load(plan: Plan, extra: list[str]):
    from trickbag.recipe import load_recipe

    sets = [*plan.overrides, *extra] + ([f"training.epochs={plan.epochs}"] if plan.epochs is not None else [])
    return load_recipe(plan.recipe_path, sets)


def prepare(plan: Plan) -> tuple[list[Variant], object]:
    """The variants, after refusing an --out that holds another ablation (seeds may grow)."""
    if plan.seeds < 1:
        raise UserError(f"--seeds {plan.seeds}: at least 1")
    recipe = _load(plan, [])
    if plan.mode == GRID:
        todo = grid(list(plan.vary))
        for variant in todo:  # an unknown key or a value of the wrong type: one line, before any file
            _load(plan, list(variant.overrides))
    else:  # a bad --mode or a recipe without tricks: refused before any file
        todo = variants(recipe.enabled_tricks(), plan.mode)
    spec = plan.spec(recipe)
    found = plan.out / SPEC
    if found.exists():
        try:
            old = json.loads(found.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UserError(f"--out {plan.out}: {SPEC} is unreadable; choose another folder") from None
        if old != spec:
            raise UserError(f"--out {plan.out} holds a different ablation (recipe, --set, --mode or --epochs differ); choose another folder")
    elif plan.out.exists() and any(plan.out.iterdir()):
        raise UserError(f"--out {plan.out} is not empty and holds no {SPEC}; choose another folder")
    plan.out.mkdir(parents=True, exist_ok=True)
    write_atomic(found, json.dumps(spec, indent=1, sort_keys=True))
    return todo, recipe


def _finished(rows: list[dict], epochs: float) -> bool:
    return bool(rows) and (rows[-1].get("diverged") or rows[-1]["progress"] >= epochs - 1e-9)


def _row(variant: Variant, seed: int, rows: list[dict], diverged: bool) -> dict:
    last = rows[-1] if rows else {}
    seconds = sum(r.get("seconds", 0) for r in rows)  # training time, as the run folder records it
    accs = [r["val_acc"] for r in rows if not r.get("diverged")]
    return {"variant": variant.name, "overrides": list(variant.overrides), "seed": seed,
            "final_val_acc": last.get("val_acc", 0.0) if not diverged else (accs[-1] if accs else 0.0),
            "best_val_acc": max(accs, default=0.0), "val_loss": last.get("val_loss"), "epochs": last.get("progress", 0),
            "seconds": round(seconds, 2), "diverged": bool(diverged)}


def run_one(plan: Plan, variant: Variant, seed: int) -> tuple[dict, str]:
    """Train (or resume, or skip) one variant x seed; returns its row and what was done."""
    from trickbag.engine.loop import Diverged, fit
    from trickbag.services import resume_recipe

    folder = plan.out / variant.name / f"seed-{seed}"
    recipe = _load(plan, [*variant.overrides, f"training.seed={seed}"])
    rows = read_metrics(folder)
    if _finished(rows, recipe.training.epochs):
        return _row(variant, seed, rows, bool(rows[-1].get("diverged"))), "skipped"
    resume = (folder / CHECKPOINT).exists()
    diverged = False
    try:
        fit(resume_recipe(folder) if resume else recipe, folder, resume=resume)
    except Diverged:
        diverged = True
    return _row(variant, seed, read_metrics(folder), diverged), "resumed" if resume else "trained"


def run_ablation(plan: Plan, on_run: Callable[[dict, str, int, int], None] | None = None) -> tuple[list[Variant], list[dict]]:
    """Every variant x seed, in order; ``ablation.jsonl`` rewritten after each run."""
    todo, _ = prepare(plan)
    jobs = [(v, s) for v in todo for s in range(plan.seeds)]
    results: list[dict] = []
    for i, (variant, seed) in enumerate(jobs, 1):
        row, how = run_one(plan, variant, seed)
        results.append(row)
        write_atomic(plan.out / ROWS, "".join(json.dumps(r) + "\n" for r in results))
        if on_run is not None:
            on_run(row, how, i, len(jobs))
    return todo, results


def plan_dict(plan: Plan) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(plan).items()}
