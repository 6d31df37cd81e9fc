"""What each schedule, batch-size and weight-decay trick buys on an embedded workload: every arm is a
bundled recipe plus ``--set`` overrides, trained with several seeds; mean +- sd of the final
validation accuracy, and the difference to its baseline with the seed-paired sd.

    python benchmarks/trick_effects.py                      # every arm, 3 seeds (resumable)
    python benchmarks/trick_effects.py --arms noise --seeds 3
    python benchmarks/trick_effects.py --report             # the table from what has run

Results: benchmarks/results/trick_effects.jsonl (one row per run; a rerun skips what is there) and
trick_effects.md. Runs are single-threaded so two of these can share a 2-core machine; `--jobs 2`
runs two at once. The base is `quickstart-plain` (a BN CNN on 4,000 MNIST digits, SGD + Nesterov
at a constant 0.05, weight decay 5e-4, batch 128), shortened to --epochs (default 6) so the whole
set fits in about an hour here. These are effects at this scale: a trick built for ImageNet may
buy nothing on 4,000 digits, and the table says so.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

OUT = Path(__file__).parent / "results"

# name: (group, recipe, overrides, baseline arm). Overrides are `trickbag run --set` strings.
PLAIN = "quickstart-plain"
DIGITS = ["data.name=\"digits\"", "data.val_size=297"]
ARMS: dict[str, tuple[str, str, list[str], str | None]] = {
    "constant": ("schedule", PLAIN, [], None),
    "cosine": ("schedule", PLAIN, ["tricks.cosine.enabled=true"], "constant"),
    "sgdr": ("schedule", PLAIN, ["tricks.sgdr.T_0=2.0", "tricks.sgdr.T_mult=2"], "constant"),
    "cyclical_lr": ("schedule", PLAIN, ["tricks.cyclical_lr.step_size=1.5", "tricks.cyclical_lr.mode=\"triangular2\""], "constant"),
    "step_decay": ("schedule", PLAIN, ["tricks.step_decay.milestones=[3, 5]", "tricks.step_decay.gamma=0.2"], "constant"),
    "warmup": ("schedule", PLAIN, ["tricks.warmup.epochs=1.0"], "constant"),
    "cosine+warmup": ("schedule", PLAIN, ["tricks.cosine.enabled=true", "tricks.warmup.epochs=1.0"], "cosine"),
    # the linear scaling rule: batch 512 at the LR tuned for 128, then scaled x4 (with and without warm-up)
    "b512": ("batch", PLAIN, ["training.batch_size=512"], None),
    "b512+linear_scaling": ("batch", PLAIN, ["training.batch_size=512", "tricks.linear_scaling.reference_batch=128"], "b512"),
    "b512+linear_scaling+warmup": ("batch", PLAIN, ["training.batch_size=512", "tricks.linear_scaling.reference_batch=128",
                                                    "tricks.warmup.epochs=1.0", "tricks.warmup.start_factor=0.25"], "b512"),
    # L2 in the loss vs decoupled weight decay, under Adam (Loshchilov & Hutter's point) and SGD
    "adam+l2": ("decay", PLAIN, ["optimizer.name=\"adam\"", "optimizer.lr=0.001", "optimizer.weight_decay=0.0005",
                                 "tricks.decoupled_weight_decay.mode=\"l2\""], None),
    "adamw": ("decay", PLAIN, ["optimizer.name=\"adam\"", "optimizer.lr=0.001", "optimizer.weight_decay=0.0005",
                               "tricks.decoupled_weight_decay.mode=\"decoupled\""], "adam+l2"),
    # SGDW (Algorithm 1 has no Nesterov form) against SGD with L2 of the same per-step decay, lr x wd
    "sgd": ("decay", PLAIN, ["optimizer.nesterov=false"], None),
    "sgdw": ("decay", PLAIN, ["optimizer.name=\"sgdw\"", "optimizer.nesterov=false", "optimizer.weight_decay=0.000025",
                              "tricks.decoupled_weight_decay.enabled=true"], "sgd"),
    "orthogonality": ("decay", PLAIN, ["tricks.orthogonality.enabled=true"], "constant"),
    "orthogonality-decoupled": ("decay", PLAIN, ["tricks.orthogonality.mode=\"decoupled\""], "constant"),
    # weights used for evaluation (6 epochs, against the constant-LR arm)
    "ema": ("average", PLAIN, ["tricks.ema.decay=0.95", "tricks.ema.warmup=true"], "constant"),
    "swa": ("average", PLAIN, ["tricks.swa.start_epoch=3", "tricks.swa.unit=\"step\"", "tricks.swa.every=5"], "constant"),
    # data and loss (6 epochs, against the constant-LR arm)
    "cutout": ("augment", PLAIN, ["tricks.cutout.size=8"], "constant"),
    "cutmix": ("augment", PLAIN, ["tricks.cutmix.alpha=1.0", "tricks.cutmix.prob=0.5"], "constant"),
    # distillation: a small CNN (width 8) taught by a ResNet-20 (TEACHER, trained once, cosine, 6 epochs)
    "kd-student": ("distill", PLAIN, ["model.width=8"], None),
    "kd": ("distill", PLAIN, ["model.width=8", "tricks.distillation.teacher=TEACHER"], "kd-student"),
    # architecture and initialisation (3 epochs: the ResNets are 3-6x slower than the small CNN)
    "resnet20": ("model", PLAIN, ["model.name=\"resnet20\""], None),
    "resnet20+zero_gamma": ("model", PLAIN, ["model.name=\"resnet20\"", "tricks.zero_gamma.enabled=true"], "resnet20"),
    "resnet18": ("model", PLAIN, ["model.name=\"resnet18\""], None),
    "resnet18-D": ("model", PLAIN, ["model.name=\"resnet18\"", "tricks.resnet_tweaks.variant=\"D\""], "resnet18"),
    "fixup_resnet20": ("model", PLAIN, ["model.name=\"fixup_resnet20\"", "tricks.fixup.enabled=true"], "resnet20"),
    # shake-shake 26 2x32d on the 1,797 digits (an epoch on mnist5k takes 2 minutes): even/even is
    # the paper's unshaken two-branch baseline
    "shake-even": ("shake", PLAIN, [*DIGITS, "model.name=\"shake_shake26_2x32d\"", "tricks.shake_shake.forward=\"even\"",
                                    "tricks.shake_shake.backward=\"even\""], None),
    "shake-shake": ("shake", PLAIN, [*DIGITS, "model.name=\"shake_shake26_2x32d\"", "tricks.shake_shake.enabled=true"], "shake-even"),
    # the talk's equivalence: LR /5 at two milestones vs the batch x5 there instead (15 epochs, batch 16)
    "noise-step-decay": ("noise", "noise-step-decay", [], None),
    "noise-batch-growth": ("noise", "noise-batch-growth", [], "noise-step-decay"),
}
FULL_LENGTH = {"noise"}  # these groups keep their recipe's own run length
GROUP_EPOCHS = {"model": 3.0, "shake": 15.0}  # these groups run this many epochs instead of --epochs
TEACHER = OUT / "teachers" / "resnet20-mnist5k"
TEACHER_SETS = ["model.name=\"resnet20\"", "tricks.cosine.enabled=true", "training.epochs=6", "training.seed=0"]


def ensure_teacher() -> None:
    """Train the distillation teacher once (about 3 CPU-minutes): val acc is printed."""
    if (TEACHER / "checkpoint.pt").exists():
        return
    import torch

    torch.set_num_threads(1)
    from trickbag.engine.loop import fit
    from trickbag.recipe import load_recipe
    from trickbag.services import bundled_recipes

    summary = fit(load_recipe(bundled_recipes()[PLAIN], TEACHER_SETS), TEACHER)
    print(f"teacher {TEACHER}: final val acc {100 * summary['final_val_acc']:.2f}%", file=sys.stderr, flush=True)


def _sets(name: str, seed: int | None, epochs: float) -> list[str]:
    group, _, overrides, _ = ARMS[name]
    sets = [o.replace("TEACHER", json.dumps(str(TEACHER.resolve()))) for o in overrides]
    if seed is not None:
        sets.append(f"training.seed={seed}")
    if group not in FULL_LENGTH:
        sets.append(f"training.epochs={GROUP_EPOCHS.get(group, epochs)}")
    return sets


def train(key: tuple[str, int, float]) -> dict:
    """One run, in a worker process on one thread."""
    import torch

    torch.set_num_threads(1)
    from trickbag.engine.loop import fit
    from trickbag.recipe import load_recipe
    from trickbag.services import bundled_recipes

    name, seed, epochs = key
    group, recipe_name, overrides, _ = ARMS[name]
    recipe = load_recipe(bundled_recipes()[recipe_name], _sets(name, seed, epochs))
    started = time.perf_counter()
    summary = fit(recipe, None, observers=())
    return {"arm": name, "seed": seed, "epochs": recipe.training.epochs, "overrides": overrides, "recipe": recipe_name,
            "final_val_acc": summary["final_val_acc"], "best_val_acc": summary["best_val_acc"],
            "steps": summary["history"][-1]["steps"], "seconds": round(time.perf_counter() - started, 1)}


# the arms whose measurement each plugin's README reports (section "Measured effect")
PLUGIN_ARMS = {
    "cosine": ["cosine"], "sgdr": ["sgdr"], "cyclical_lr": ["cyclical_lr"], "step_decay": ["step_decay"],
    "warmup": ["warmup", "cosine+warmup", "b512+linear_scaling+warmup"],
    "linear_scaling": ["b512+linear_scaling", "b512+linear_scaling+warmup"],
    "batch_size_schedule": ["noise-batch-growth"],
    "decoupled_weight_decay": ["adamw", "sgdw"], "orthogonality": ["orthogonality", "orthogonality-decoupled"],
    "ema": ["ema"], "swa": ["swa"], "cutout": ["cutout"], "cutmix": ["cutmix"], "distillation": ["kd"],
    "zero_gamma": ["resnet20+zero_gamma"], "resnet_tweaks": ["resnet18-D"], "fixup": ["fixup_resnet20"],
    "shake_shake": ["shake-shake"],
}
PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def paired(runs: dict[int, dict], base: dict[int, dict]) -> tuple[float, float, int] | None:
    """Mean and 95% CI half-width (Student's t) of the seed-paired differences, in points."""
    from scipy import stats

    diffs = [100 * (runs[k]["final_val_acc"] - base[k]["final_val_acc"]) for k in runs if k in base]
    if len(diffs) < 2:
        return None
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return statistics.mean(diffs), half, len(diffs)


def readme_section(rows: list[dict], arms: list[str]) -> str | None:
    """The "Measured effect" section of a plugin's README, from the recorded runs."""
    by: dict[str, dict[int, dict]] = {}
    for r in rows:
        by.setdefault(r["arm"], {})[r["seed"]] = r
    lines, settings, needed = [], [], []
    for arm in arms:
        group, recipe, overrides, base = ARMS[arm]
        if arm not in by or not base or base not in by:
            continue
        d = paired(by[arm], by[base])
        if d is None:
            continue
        mean, half, n = d
        verdict = "an effect" if abs(mean) > half else "no effect shown at this scale"
        acc = lambda name: " / ".join(f"{100 * by[name][k]['final_val_acc']:.1f}" for k in sorted(by[name]))  # noqa: E731
        epochs = next(iter(by[arm].values()))["epochs"]
        lines.append(f"| `{arm}` vs `{base}` | {acc(arm)} | {acc(base)} | {mean:+.2f} ± {half:.2f} | {verdict} |")
        for name in (arm, base):
            if name not in needed:
                needed.append(name)
                sets = " ".join(f"--set {o}" for o in ARMS[name][2]) or "(as written)"
                settings.append(f"* `{name}`: `{ARMS[name][1]}` {sets}, {next(iter(by[name].values()))['epochs']:g} epochs")
    if not lines:
        return None
    return ("## Measured effect\n\n"
            "Final validation accuracy (%), per seed (0 / 1 / 2), and the seed-paired difference with its 95% confidence "
            "interval (Student's t); \"no effect shown\" when the interval contains 0. Measured on this project's 2-core CPU "
            "with `python benchmarks/trick_effects.py --arms " + " ".join(needed) + "` (all arms: "
            "[benchmarks/results/trick_effects.md](../../benchmarks/results/trick_effects.md)).\n\n"
            "| arms | trick, % | baseline, % | Δ points (95% CI) | verdict |\n|---|---|---|---|---|\n" + "\n".join(lines) + "\n\n"
            + "\n".join(settings) + "\n")


def write_readmes(rows: list[dict]) -> list[str]:
    """Replace (or add, before "Install:") each plugin README's "Measured effect" section."""
    import re

    written = []
    for plugin, arms in PLUGIN_ARMS.items():
        section = readme_section(rows, arms)
        path = PLUGINS / plugin / "README.md"
        if section is None or not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        found = re.search(r"^## Measured effect\n.*?(?=^## |^Install:|\Z)", text, flags=re.S | re.M)
        if found:
            text = text[:found.start()] + section + "\n" + text[found.end():]
        else:
            at = text.find("\nInstall:")
            text = text + "\n" + section if at < 0 else text[:at + 1] + section + "\n" + text[at + 1:]
        path.write_text(text, encoding="utf-8")
        written.append(plugin)
    return written


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _steps(name: str, epochs: float) -> int:
    """Optimizer steps of an arm's run, from its recipe (no training): rows written before this
    benchmark recorded them correctly summed the per-epoch running totals."""
    from trickbag.engine.timeline import recipe_timeline
    from trickbag.recipe import load_recipe
    from trickbag.services import bundled_recipes

    return recipe_timeline(load_recipe(bundled_recipes()[ARMS[name][1]], _sets(name, None, epochs)), points=10).total_steps


def report(rows: list[dict]) -> str:
    by: dict[str, dict[int, dict]] = {}
    for r in rows:
        by.setdefault(r["arm"], {})[r["seed"]] = r
    lines = ["| group | arm | vs | final val acc, % (mean ± sd) | per seed | Δ vs baseline, points (paired mean, 95% CI) | steps | s/run |",
             "|---|---|---|---|---|---|---|---|"]
    for name, (group, _, overrides, base) in ARMS.items():
        runs = by.get(name)
        if not runs:
            continue
        acc = [100 * r["final_val_acc"] for r in runs.values()]
        sd = statistics.stdev(acc) if len(acc) > 1 else float("nan")
        delta = "—"
        d = paired(runs, by[base]) if base and by.get(base) else None
        if d is not None:
            delta = f"{d[0]:+.2f} ± {d[1]:.2f}"
        steps = _steps(name, next(iter(runs.values()))["epochs"])
        seeds = " / ".join(f"{100 * runs[k]['final_val_acc']:.1f}" for k in sorted(runs))
        lines.append(f"| {group} | {name} | {base or '—'} | {statistics.mean(acc):.2f} ± {sd:.2f} | {seeds} | {delta} | "
                     f"{steps} | {statistics.mean(r['seconds'] for r in runs.values()):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arms", nargs="*", help="arm names or group names (default: all)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=float, default=6.0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT / "trick_effects.jsonl")
    ap.add_argument("--report", action="store_true", help="only write the table from the runs already recorded")
    ap.add_argument("--readmes", action="store_true", help="also write each plugin README's 'Measured effect' section")
    a = ap.parse_args(argv)
    wanted = [n for n, (g, *_rest) in ARMS.items() if not a.arms or n in a.arms or g in a.arms]
    if a.arms:  # in the order asked: the first arms asked are the first measured
        wanted.sort(key=lambda n: min(i for i, x in enumerate(a.arms) if x in (n, ARMS[n][0])))
    done = {(r["arm"], r["seed"]) for r in load(a.out)}
    todo = [(n, s, a.epochs) for n in wanted for s in range(a.seeds) if (n, s) not in done]
    if not a.report and todo:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        if any(ARMS[n][0] == "distill" for n, *_ in todo):
            ensure_teacher()
        a.out.parent.mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(a.jobs) as pool:
            for i, row in enumerate(pool.map(train, todo), 1):
                with open(a.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"[{i}/{len(todo)}] {row['arm']} seed {row['seed']}: {100 * row['final_val_acc']:.2f}% ({row['seconds']}s)",
                      file=sys.stderr, flush=True)
    table = report(load(a.out))
    a.out.with_suffix(".md").write_text(
        f"# What each trick buys (`python benchmarks/trick_effects.py`)\n\n{table}\n"
        "Final validation accuracy on the held-out digits (1,000 of mnist5k; 297 of digits for shake-shake); Δ: the "
        "mean of the per-seed differences to the baseline arm with the same seed, ± the 95% confidence half-width (Student's t). "
        "Epochs: 6, except the `model` group (3), `shake` (15) and `noise` (15, the recipes' own). 2-core CPU, torch 2.14.1, "
        "one thread per run; s/run measured while other runs shared the machine.\n")
    print(table)
    if a.readmes:
        print("README sections written:", ", ".join(write_readmes(load(a.out))) or "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
