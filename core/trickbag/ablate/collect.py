"""Ablations made elsewhere: the exact ``trickbag run`` command of every run (for a Slurm array or
any scheduler), and the table built back from the run folders they wrote (``--collect``)."""
from __future__ import annotations

import shlex
from pathlib import Path

from trickbag.ablate.runner import Plan, finished, read_variants, row_of
from trickbag.ablate.variants import Variant
from trickbag.runs.folder import RECIPE, read_metrics


def commands(plan: Plan, todo: list[Variant], recipe_label: str) -> list[str]:
    """One ``trickbag run`` line per variant x seed, making exactly the run ``trickbag ablate``
    would make in the same folder (same recipe, same --set, same seed)."""
    lines = []
    for variant in todo:
        for seed in range(plan.seeds):
            sets = " ".join(f"--set {shlex.quote(s)}" for s in plan.sets(variant, seed))
            lines.append(f"trickbag run {shlex.quote(recipe_label)} {sets} --out {shlex.quote(str(plan.folder(variant, seed)))}")
    return lines


def _seeds(folder: Path, expected: int) -> list[int]:
    found = {int(p.name[5:]) for p in folder.glob("seed-*") if p.name[5:].isdigit()} if folder.is_dir() else set()
    return sorted(found | set(range(expected)))


def collect(out: Path) -> tuple[dict, list[Variant], list[dict], list[str]]:
    """The ablation folder's header and variants, a row per finished run, and the runs that are
    missing or unfinished (as ``variant/seed-k``)."""
    from trickbag.recipe import load_recipe

    header, todo = read_variants(out)
    rows, missing = [], []
    for variant in todo:
        for seed in _seeds(out / variant.name, int(header.get("seeds", 1))):
            folder = out / variant.name / f"seed-{seed}"
            metrics = read_metrics(folder) if (folder / RECIPE).is_file() else []
            if metrics and finished(metrics, load_recipe(folder / RECIPE).training.epochs):
                rows.append(row_of(variant, seed, metrics, bool(metrics[-1].get("diverged"))))
            else:
                missing.append(f"{variant.name}/seed-{seed}")
    return header, todo, rows, missing
