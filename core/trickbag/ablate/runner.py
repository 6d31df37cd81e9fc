"""Make an ablation's runs as ordinary run folders, ``OUT/<variant>/seed-<k>``: a rerun skips the
finished ones and resumes the interrupted ones (``trickbag run --resume`` works on each too); a run
that diverges is recorded as diverged, not dropped. ``OUT/ablation.json`` says what the folder
holds, so another ablation is never mixed into it; ``OUT/variants.json`` lists the variants in
order, so ``trickbag ablate --collect OUT`` can build the table from run folders made anywhere."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from trickbag.ablate.variants import GRID, Variant, grid, variants
from trickbag.errors import UserError
from trickbag.runs.checkpoint import CHECKPOINT
from trickbag.runs.folder import RECIPE, read_metrics, write_atomic

SPEC, ROWS, VARIANTS = "ablation.json", "ablation.jsonl", "variants.json"

#: called after each run: (its row, "trained" | "resumed" | "skipped", runs done, runs in all)
OnRun = Callable[[dict, str, int, int], None]


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

    def sets(self, variant: Variant, seed: int) -> list[str]:
        """The ``--set`` strings of one run: the user's, the variant's, the seed, the epochs."""
        return [*self.overrides, *variant.overrides, f"training.seed={seed}"] + (
            [f"training.epochs={self.epochs:g}"] if self.epochs is not None else [])

    def folder(self, variant: Variant, seed: int) -> Path:
        return self.out / variant.name / f"seed-{seed}"


def _load(plan: Plan, extra: list[str]):
    from trickbag.recipe import load_recipe

    sets = [*plan.overrides, *extra] + ([f"training.epochs={plan.epochs:g}"] if plan.epochs is not None else [])
    return load_recipe(plan.recipe_path, sets)


def _check_variant(plan: Plan, variant: Variant) -> None:
    """Each variant's recipe loads and its tricks can train together (two schedules in one
    cumulative variant would otherwise fail hours in): refused before any file."""
    from trickbag.plugins import load_plugins, run_manager

    recipe = _load(plan, list(variant.overrides))
    try:
        run_manager(recipe.tricks, load_plugins())
    except UserError as exc:
        raise UserError(f"variant {variant.name}: {exc}") from None


def prepare(plan: Plan) -> tuple[list[Variant], object]:
    """The variants, after refusing an --out that holds another ablation (seeds may grow)."""
    if plan.seeds < 1:
        raise UserError(f"--seeds {plan.seeds}: at least 1")
    recipe = _load(plan, [])
    if plan.mode == GRID:
        todo = grid(list(plan.vary))
        if plan.epochs is not None and any(o.startswith("training.epochs=") for o in todo[0].overrides):
            raise UserError("--epochs and --vary training.epochs: give one (--epochs would override every grid value)")
    else:  # a bad --mode or a recipe without tricks: refused before any file
        todo = variants(recipe.enabled_tricks(), plan.mode)
    for variant in todo:  # an unknown key, a value of the wrong type, rival tricks: one line, before any file
        _check_variant(plan, variant)
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
    write_atomic(plan.out / VARIANTS, json.dumps({"recipe": recipe.name, "mode": plan.mode, "seeds": plan.seeds,
                                                  "vary": list(plan.vary), "variants": [asdict(v) for v in todo]}, indent=1))
    return todo, recipe


def read_variants(out: Path) -> tuple[dict, list[Variant]]:
    """What ``prepare`` wrote: the header (recipe name, mode, seeds) and the variants in order."""
    path = out / VARIANTS
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        todo = [Variant(v["name"], tuple(v["overrides"]), tuple(v["tricks_on"]), bool(v["baseline"])) for v in raw["variants"]]
    except FileNotFoundError:
        raise UserError(f"{out} holds no {VARIANTS}: not an ablation folder (trickbag ablate ... --out writes one)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is unreadable ({type(exc).__name__}); rerun trickbag ablate with the same --out to rewrite it") from None
    return raw, todo


def finished(rows: list[dict], epochs: float) -> bool:
    return bool(rows) and (bool(rows[-1].get("diverged")) or rows[-1]["progress"] >= epochs - 1e-9)


def row_of(variant: Variant, seed: int, rows: list[dict], diverged: bool) -> dict:
    """One ``ablation.jsonl`` row from a run folder's metrics rows."""
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
    from trickbag.recipe import load_recipe
    from trickbag.services import resume_recipe

    folder = plan.folder(variant, seed)
    recipe = load_recipe(plan.recipe_path, plan.sets(variant, seed))
    rows = read_metrics(folder)
    if finished(rows, recipe.training.epochs):
        return row_of(variant, seed, rows, bool(rows[-1].get("diverged"))), "skipped"
    # a run folder with its recipe is resumed, also one stopped before its first checkpoint
    # (--resume starts that one again from epoch 1; a new run would refuse the folder)
    resume = (folder / RECIPE).is_file()
    continued = (folder / CHECKPOINT).exists()
    diverged = False
    try:
        fit(resume_recipe(folder) if resume else recipe, folder, resume=resume)
    except Diverged:
        diverged = True
    return row_of(variant, seed, read_metrics(folder), diverged), "resumed" if continued else "trained"


def write_rows(out: Path, rows: list[dict]) -> None:
    write_atomic(out / ROWS, "".join(json.dumps(r) + "\n" for r in rows))


def run_ablation(plan: Plan, on_run: OnRun | None = None, *, jobs: int = 1, backend: str = "local",
                 gpus_per_run: float = 0.0) -> tuple[list[Variant], list[dict]]:
    """Every variant x seed, on ``backend`` with ``jobs`` runs at a time; ``ablation.jsonl`` is
    rewritten after each run, in variant x seed order whatever order the runs finish in (so an
    interrupted and resumed ablation writes the same file as an uninterrupted one)."""
    from trickbag.ablate.backends import check_backend, execute

    check_backend(backend, jobs)
    todo, _ = prepare(plan)
    work = [(v, s) for v in todo for s in range(plan.seeds)]
    done: dict[int, dict] = {}

    def record(index: int, row: dict, how: str) -> None:
        done[index] = row
        write_rows(plan.out, [done[k] for k in sorted(done)])
        if on_run is not None:
            on_run(row, how, len(done), len(work))

    execute(plan, work, record, jobs=jobs, backend=backend, gpus_per_run=gpus_per_run)
    return todo, [done[k] for k in sorted(done)]


def plan_dict(plan: Plan) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(plan).items()}
