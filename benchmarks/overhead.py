"""Engine overhead: the same workload through ``trickbag.fit`` and through a hand-written PyTorch loop.

Both run in one process, alternating (engine, hand, engine, hand, ...) so drift in machine speed
hits both alike; we report the ratio of medians. Timed: the epochs (training steps plus one
evaluation per epoch); not timed: building data and model, which both do once.

Workloads:
  mlp-digits  an MLP on the 1,797 8x8 digits, batch 32: per-step overhead dominates
  cnn-mnist5k the quickstart CNN on mnist5k, batch 128 (augmentation off in both)
Cases:
  plain       every plugin installed, no trick enabled   vs  a plain loop
  tricks      one_cycle + label_smoothing enabled       vs  the loop with OneCycleLR and
                                                            CrossEntropyLoss(label_smoothing=...)
  schedules   warmup + cosine + decoupled_weight_decay  vs  the loop with ChainedScheduler(LinearLR,
                                                            CosineAnnealingLR) and the decay
                                                            x <- (1 - lr/peak * wd) x before each step

Goal: ratio <= 1.05 everywhere. Run:  python benchmarks/overhead.py [--repeats 5] [--quick]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from trickbag.data import load_data
from trickbag.engine.loop import fit
from trickbag.models import build_model
from trickbag.recipe import build_recipe

WORKLOADS = {
    "mlp-digits": dict(data={"name": "digits", "val_size": 297}, model={"name": "mlp"}, batch_size=32, lr=0.05, epochs=150),
    "cnn-mnist5k": dict(data={"name": "mnist5k", "val_size": 1000}, model={"name": "small_cnn"}, batch_size=128, lr=0.1, epochs=2),
}
EPSILON = 0.1
WEIGHT_DECAY = 5e-4
CASES = ("plain", "tricks", "schedules")


def warm_epochs(epochs: float) -> float:
    return epochs / 4  # shorter than any run here, the 1-epoch warm-up runs included


def recipe_for(w: dict, case: str, epochs: float):
    tricks = {
        "plain": {},
        "tricks": {"one_cycle": {}, "label_smoothing": {"epsilon": EPSILON}},
        "schedules": {"warmup": {"epochs": warm_epochs(epochs)}, "cosine": {}, "decoupled_weight_decay": {}},
    }[case]
    return build_recipe({
        "data": w["data"], "model": w["model"],
        "optimizer": {"name": "sgd", "lr": w["lr"], "momentum": 0.9, "nesterov": True,
                      "weight_decay": WEIGHT_DECAY if case == "schedules" else 0.0},
        "training": {"epochs": epochs, "batch_size": w["batch_size"], "seed": 0, "device": "cpu"},
        "tricks": tricks,
    })


def engine_seconds(w: dict, case: str, epochs: float) -> float:
    return fit(recipe_for(w, case, epochs), None)["seconds"]


def hand_seconds(w: dict, case: str, epochs: int) -> float:
    """What a user would write by hand: tensors on the device, randperm, slices, torch's scheduler."""
    tricks = case == "tricks"
    recipe = recipe_for(w, "plain", epochs)
    torch.manual_seed(0)
    train, val = load_data(recipe.data, torch.device("cpu"))
    x, y = next(iter(train.batches(train.info.train_size, 0, 0)))  # the whole (unaugmented) training set
    vx, vy = next(iter(val.batches(val.info.val_size)))
    model = build_model(recipe.model.name, train.info, recipe.model.builder_options())
    opt = torch.optim.SGD(model.parameters(), lr=w["lr"], momentum=0.9, nesterov=True)
    bs = w["batch_size"]
    steps = x.shape[0] // bs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=w["lr"], epochs=epochs, steps_per_epoch=steps) if tricks else None
    decay, peak = 0.0, w["lr"]
    params = [p for p in model.parameters()]
    if case == "schedules":  # warm-up times cosine, the decay scaled by the schedule multiplier lr / peak
        warm, total = round(warm_epochs(epochs) * steps), epochs * steps
        sched = torch.optim.lr_scheduler.ChainedScheduler([
            torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / 3, total_iters=warm),
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total),
        ])
        decay = WEIGHT_DECAY
        peak = max(w["lr"] * (1 / 3 + 2 / 3 * min(k / warm, 1)) * (1 + math.cos(math.pi * k / total)) / 2 for k in range(total))
    smoothing = EPSILON if tricks else 0.0
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(x.shape[0], generator=gen)
        for i in range(steps):
            idx = perm[i * bs:(i + 1) * bs]
            loss = F.cross_entropy(model(x[idx]), y[idx], label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if decay:
                with torch.no_grad():
                    torch._foreach_mul_(params, 1 - opt.param_groups[0]["lr"] / peak * decay)
            opt.step()
            if sched is not None:
                sched.step()
        model.eval()
        with torch.no_grad():
            for j in range(0, vx.shape[0], 1000):
                out = model(vx[j:j + 1000])
                F.cross_entropy(out, vy[j:j + 1000], reduction="sum").item()
                (out.argmax(1) == vy[j:j + 1000]).sum().item()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 repeat, short runs (a smoke test)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=sorted(WORKLOADS), help="run one workload")
    parser.add_argument("--case", choices=CASES, help="run one case")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, repeats {repeats} (alternating)")
    print(f"{'workload':<14}{'case':<10}{'engine s':>10}{'hand s':>10}{'ratio':>8}")
    for name, w in WORKLOADS.items():
        if args.only and name != args.only:
            continue
        epochs = 1 if args.quick else w["epochs"]
        for case in CASES:
            if args.case and case != args.case:
                continue
            engine_seconds(w, case, 1)  # warm-up both paths (allocator, kernels)
            hand_seconds(w, case, 1)
            e, h = [], []
            for _ in range(repeats):
                e.append(engine_seconds(w, case, epochs))
                h.append(hand_seconds(w, case, epochs))
            me, mh = statistics.median(e), statistics.median(h)
            print(f"{name:<14}{case:<10}{me:>10.3f}{mh:>10.3f}{me / mh:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
