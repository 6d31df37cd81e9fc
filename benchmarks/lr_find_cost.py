"""Cost of the LR range test: 100 sweep steps (snapshot, restore, per-step loss read-out and
smoothing included) against 100 plain training steps of the same recipe, alternating.

Goal: ratio <= 1.1.   Run:  python benchmarks/lr_find_cost.py [--recipe quickstart] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from trickbag.context import TrainState
from trickbag.engine.assemble import prepare_run
from trickbag.engine.step import begin_epoch, epoch_batches, make_train_step, set_lr
from trickbag.lr_range.sweep import sweep
from trickbag.recipe import load_recipe
from trickbag.services import resolve_recipe


def plain_steps(run, steps: int, lr: float) -> float:
    """What training does for `steps` steps: same step function, LR set per step, no read-out."""
    state = TrainState(epochs=run.recipe.training.epochs)
    state.generator = torch.Generator(device=run.device)
    train_step = make_train_step(run)
    t0 = time.perf_counter()
    done, epoch = 0, 0
    while done < steps:
        begin_epoch(run, state, epoch)
        for x, y in epoch_batches(run, state):
            if done == steps:
                break
            set_lr(run, lr)
            state.loss = train_step(x, y, state)
            done += 1
        epoch += 1
    state.loss.item()  # wait for the device, as the sweep's last read-out does
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="quickstart")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    recipe = load_recipe(resolve_recipe(args.recipe), args.overrides)
    run = prepare_run(recipe)
    # an LR range that does not diverge, so both sides take exactly `steps` steps
    sweep_kw = dict(start=1e-6, end=1e-3, steps=args.steps, diverge=1e9)
    sweep(run, **sweep_kw)  # warm-up
    plain_steps(run, args.steps, 1e-4)
    finder, plain = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = sweep(run, **sweep_kw)
        finder.append(time.perf_counter() - t0)
        assert len(result.lrs) == args.steps
        snapshot = {k: v.clone() for k, v in run.raw_model.state_dict().items()}
        plain.append(plain_steps(run, args.steps, 1e-4))
        run.raw_model.load_state_dict(snapshot)
    f, p = statistics.median(finder), statistics.median(plain)
    print(f"recipe {args.recipe}: {args.steps} steps, median of {args.repeats} (alternating), {torch.get_num_threads()} threads")
    print(f"lr-find {f:.3f}s   plain training {p:.3f}s   ratio {f / p:.3f}   (goal <= 1.1)")


if __name__ == "__main__":
    main()
