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

Goal: ratio <= 1.05 everywhere. Run:  python benchmarks/overhead.py [--repeats 5] [--quick]
"""
from __future__ import annotations

import argparse
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


def recipe_for(w: dict, tricks: bool, epochs: float):
    return build_recipe({
        "data": w["data"], "model": w["model"],
        "optimizer": {"name": "sgd", "lr": w["lr"], "momentum": 0.9, "nesterov": True},
        "training": {"epochs": epochs, "batch_size": w["batch_size"], "seed": 0, "device": "cpu"},
        "tricks": {"one_cycle": {}, "label_smoothing": {"epsilon": EPSILON}} if tricks else {},
    })


def engine_seconds(w: dict, tricks: bool, epochs: float) -> float:
    return fit(recipe_for(w, tricks, epochs), None)["seconds"]


def hand_seconds(w: dict, tricks: bool, epochs: int) -> float:
    """What a user would write by hand: tensors on the device, randperm, slices, torch's scheduler."""
    recipe = recipe_for(w, False, epochs)
    torch.manual_seed(0)
    train, val = load_data(recipe.data, torch.device("cpu"))
    x, y = next(iter(train.batches(train.info.train_size, 0, 0)))  # the whole (unaugmented) training set
    vx, vy = next(iter(val.batches(val.info.val_size)))
    model = build_model(recipe.model.name, train.info, recipe.model.builder_options())
    opt = torch.optim.SGD(model.parameters(), lr=w["lr"], momentum=0.9, nesterov=True)
    bs = w["batch_size"]
    steps = x.shape[0] // bs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=w["lr"], epochs=epochs, steps_per_epoch=steps) if tricks else None
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, repeats {repeats} (alternating)")
    print(f"{'workload':<14}{'case':<8}{'engine s':>10}{'hand s':>10}{'ratio':>8}")
    for name, w in WORKLOADS.items():
        if args.only and name != args.only:
            continue
        epochs = 1 if args.quick else w["epochs"]
        for tricks in (False, True):
            engine_seconds(w, tricks, 1)  # warm-up both paths (allocator, kernels)
            hand_seconds(w, tricks, 1)
            e, h = [], []
            for _ in range(repeats):
                e.append(engine_seconds(w, tricks, epochs))
                h.append(hand_seconds(w, tricks, epochs))
            me, mh = statistics.median(e), statistics.median(h)
            print(f"{name:<14}{'tricks' if tricks else 'plain':<8}{me:>10.3f}{mh:>10.3f}{me / mh:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
