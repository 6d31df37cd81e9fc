"""GPU throughput: training images per second through ``trickbag.fit`` and through a hand-written loop.

Both train the same network on the same resident CIFAR-shaped data (``synthetic_cifar10``: uint8
on the GPU, random 32x32 crops of the 4-pixel zero-padded images and random flips, normalised per
batch), with the same optimizer (SGD, Nesterov momentum 0.9, weight decay 5e-4, fused), precision
(autocast; fp16 adds a grad scaler), channels_last, cuDNN benchmark and TF32, and the same
``torch.compile`` setting. The hand-written loop is what a user writes in twenty lines
(airbench-style data on the device); the engine runs the recipe through every hook.

Timing: each run trains ``--steps`` steps; the clock starts after ``--warmup`` steps (cuDNN's
benchmark, compilation and the allocator settle there) and stops after the last one, with a device
synchronize at both marks and none in between. Engine and hand runs alternate in one process
(engine, hand, engine, hand, ...) so drift in clocks or temperature hits both; a row reports the
medians and their ratio, hand images/s over engine images/s: 1.00 means no overhead, and the goal
is <= 1.05 on every row.

Rows: ResNet-20, ResNet-56, torchvision resnet18 (3x3 stem for 32x32) and airbench94, in bf16 and
fp16, without and then with ``torch.compile``. Rows that would start after ``--budget`` seconds are
listed as skipped, never guessed.

Run:  python benchmarks/gpu_throughput.py [--repeats 3] [--steps 60] [--budget 300] [--markdown FILE]
      python benchmarks/gpu_throughput.py --smoke      (CPU, tiny sizes: checks the script, not speed)
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from trickbag.config import DataConfig
from trickbag.data import load_data
from trickbag.engine.loop import Diverged, fit
from trickbag.hookspecs import hookimpl
from trickbag.models import build_model
from trickbag.recipe import build_recipe

MODELS = {"resnet20": {}, "resnet56": {}, "resnet18": {"small_input": True}, "airbench94": {}}
COMPILE_ORDER = ("airbench94", "resnet20", "resnet18", "resnet56")  # fastest to compile first
PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}
LR, MOMENTUM, WD, PADDING = 0.02, 0.9, 5e-4, 4


@dataclass
class Row:
    model: str
    precision: str
    compile: bool
    engine_ips: float | None = None
    hand_ips: float | None = None
    ratio: float | None = None  # hand images/s / engine images/s
    note: str = ""


class Clock:
    """Two time marks, each after a device synchronize: after step ``warmup`` and after the last."""

    def __init__(self, device: torch.device, warmup: int, steps: int) -> None:
        self.device, self.warmup, self.steps, self.marks = device, warmup, steps, []

    def mark(self, step: int) -> None:
        if step in (self.warmup, self.steps):
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.marks.append(time.perf_counter())

    def ips(self, batch_size: int) -> float:
        return (self.steps - self.warmup) * batch_size / (self.marks[1] - self.marks[0])

    @hookimpl
    def trickbag_step_end(self, state):  # the engine's side: an observer plugin like any other
        self.mark(state.global_step)


class Profile(Clock):
    """A Clock that also records the timed steps with torch.profiler: ``--profile`` compares what the
    two loops ask of the host and the device per step (op calls, kernel launches, syncs, CPU time)."""

    RUNTIME_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cudaMemcpyAsync", "cudaStreamSynchronize",
                     "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaStreamWaitEvent", "cudaMalloc", "cudaFree")

    def __init__(self, device: torch.device, warmup: int, steps: int) -> None:
        super().__init__(device, warmup, steps)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profiler = torch.profiler.profile(activities=activities)

    def mark(self, step: int) -> None:
        super().mark(step)
        if step == self.warmup:
            self.profiler.start()
        elif step == self.steps:
            self.profiler.stop()

    def summary(self) -> dict:
        events = self.profiler.key_averages()
        steps = self.steps - self.warmup

        def total(attr: str) -> float:
            return sum(getattr(e, attr, 0) or 0 for e in events) / steps / 1000  # ms per step

        counts = {e.key: e.count / steps for e in events if e.key in self.RUNTIME_CALLS}
        return {
            "aten calls/step": sum(e.count for e in events if e.key.startswith("aten::")) / steps,
            "self CPU ms/step": total("self_cpu_time_total"),
            "device ms/step": total("self_device_time_total") or total("self_cuda_time_total"),
            **{f"{k}/step": v for k, v in sorted(counts.items())},
        }

    def table(self) -> str:
        return self.profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)


def profile_row(args, row: Row) -> None:
    """Profile one engine run and one hand run of ``row``; print the per-step summary side by side
    and write the op tables to ``--profile``-<model>-<precision>-<loop>.txt."""
    results = {}
    for name, loop in (("engine", engine_ips), ("hand", hand_ips)):
        loop(args, row.model, row.precision, row.compile)  # warm-up
        clock = Profile(torch.device(args.device), args.warmup, args.steps)
        loop(args, row.model, row.precision, row.compile, clock)
        results[name] = clock.summary()
        with open(f"{args.profile}-{row.model}-{row.precision}-{name}.txt", "w") as f:
            f.write(clock.table())
    print(f"profile {row.model} {row.precision} compile={row.compile}:")
    for key in sorted(set(results["engine"]) | set(results["hand"])):
        print(f"  {key:<34}{results['engine'].get(key, 0):>12.2f}{results['hand'].get(key, 0):>12.2f}   (engine, hand)")


def data_config(args) -> dict:
    return {"name": "synthetic_cifar10", "val": "holdout", "val_size": args.val_size, "crop_padding": PADDING, "flip": True,
            "on_device": "always", "subset": args.subset}


def engine_ips(args, model: str, precision: str, compiled: bool, clock: Clock | None = None) -> float:
    device = torch.device(args.device)
    train_size = args.subset or 50_000 - args.val_size
    per_epoch = train_size // args.batch
    recipe = build_recipe({
        "data": data_config(args),
        "model": {"name": model, **MODELS[model]},
        "optimizer": {"name": "sgd", "lr": LR, "momentum": MOMENTUM, "nesterov": True, "weight_decay": WD},
        "training": {"epochs": args.steps / per_epoch, "batch_size": args.batch, "precision": precision, "device": args.device,
                     "compile": compiled, "channels_last": True, "fused_optimizer": True, "checkpoint": False,
                     "cudnn_benchmark": args.cudnn_benchmark, "tf32": args.device == "cuda"},
    })
    clock = clock or Clock(device, args.warmup, args.steps)
    try:
        fit(recipe, None, observers=[clock])
    except Diverged:  # found at the epoch's end, after the clock's marks: the speed is measured
        args.notes.add(f"{model} {precision}: the loss went NaN (speed still measured)")
    return clock.ips(args.batch)


def hand_ips(args, model: str, precision: str, compiled: bool, clock: Clock | None = None) -> float:
    """Twenty lines a user would write: data on the device, per-batch crop/flip/normalise, a step."""
    device = torch.device(args.device)
    train, _ = load_data(DataConfig(**{**data_config(args), "crop_padding": 0, "flip": False}), device)
    x8 = F.pad(train.store, (PADDING,) * 4)  # the same uint8 images, zero-padded once
    y_all = train.y
    mean = torch.tensor(train.info.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(train.info.std, device=device).view(1, -1, 1, 1)
    levels = torch.tensor(255.0, device=device)
    net = build_model(model, train.info, MODELS[model]).to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WD, fused=True)
    step_fn = torch.compile(net) if compiled else net
    dtype = PRECISIONS[precision]
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    n, bs = x8.shape[0], args.batch
    _, c, hp, wp = x8.shape
    span = (c - 1) * hp * wp + 31 * wp + 32
    windows = x8.as_strided((x8.numel() - span + 1, c, 32, 32), (1, hp * wp, wp, 1))  # every crop of every image
    clock = clock or Clock(device, args.warmup, args.steps)
    # the switches the engine sets for its run (and puts back afterwards), set the same way here
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = device.type == "cuda"
    net.train()
    perm = torch.randperm(n, device=device)  # the epoch: order, crop offsets, flips, labels in order
    dy = torch.randint(0, 2 * PADDING + 1, (n,), device=device)
    dx = torch.randint(0, 2 * PADDING + 1, (n,), device=device)
    offsets = perm * (c * hp * wp) + dy * wp + dx
    flip = torch.rand(n, device=device) < 0.5
    labels = y_all.index_select(0, perm)
    for step in range(args.steps):
        b = slice(step * bs, (step + 1) * bs)
        x = windows.index_select(0, offsets[b])
        x = torch.where(flip[b].view(-1, 1, 1, 1), x.flip(3), x)
        x = torch.empty(x.shape, device=device, memory_format=torch.channels_last).copy_(x).div_(levels).sub_(mean).div_(std)
        y = labels[b]
        with torch.autocast(device.type, dtype=dtype):
            loss = F.cross_entropy(step_fn(x), y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        clock.mark(step + 1)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    return clock.ips(bs)


def measure(args, row: Row) -> None:
    both = (engine_ips, hand_ips)
    for f in both:  # warm-up: cuDNN's algorithm search, compilation, the allocator
        f(args, row.model, row.precision, row.compile)
    runs: dict = {f: [] for f in both}
    for _ in range(args.repeats):
        for f in both:
            runs[f].append(f(args, row.model, row.precision, row.compile))
    row.engine_ips, row.hand_ips = statistics.median(runs[engine_ips]), statistics.median(runs[hand_ips])
    row.ratio = row.hand_ips / row.engine_ips


def rows_in_order(args) -> list[Row]:
    models = args.models.split(",")
    precisions = args.precisions.split(",")
    rows = [Row(m, p, False) for p in precisions for m in models]
    rows = rows if args.compile in ("no", "both") else []
    if args.compile in ("yes", "both"):  # compilation is the slow part: cheapest models first
        rows += [Row(m, p, True) for p in precisions for m in sorted(models, key=COMPILE_ORDER.index)]
    return rows


def markdown(rows: list[Row], header: str) -> str:
    lines = [header, "", "| model | precision | compile | engine img/s | hand-written img/s | ratio (hand/engine) |", "|---|---|---|---:|---:|---:|"]
    for r in rows:
        if r.ratio is None:
            lines.append(f"| {r.model} | {r.precision} | {'yes' if r.compile else 'no'} | | | {r.note} |")
        else:
            lines.append(f"| {r.model} | {r.precision} | {'yes' if r.compile else 'no'} | {r.engine_ips:,.0f} | {r.hand_ips:,.0f} | {r.ratio:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60, help="steps per timed run")
    parser.add_argument("--warmup", type=int, default=10, help="steps before the clock starts")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--budget", type=float, default=float("inf"), help="seconds; later rows are skipped")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--compile", choices=("no", "yes", "both"), default="both", help="rows without torch.compile, with it, or both")
    parser.add_argument("--cudnn-benchmark", choices=("on", "off"), default="on", help="cuDNN's algorithm search, in both loops")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    parser.add_argument("--profile", metavar="PREFIX", help="instead of timing, profile one run of each loop per row (op tables to PREFIX-*.txt)")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, no compile: checks that the script runs")
    args = parser.parse_args()
    args.cudnn_benchmark, args.notes = args.cudnn_benchmark == "on", set()
    args.device, args.subset, args.val_size = "cuda", None, 1000
    if args.smoke:
        args.device, args.subset, args.val_size, args.batch, args.steps, args.warmup, args.repeats = "cpu", 256, 64, 32, 4, 1, 1
        # bf16 only: CPUs run fp16 convolutions at a few images per second
        args.models, args.precisions, args.compile = "resnet20,airbench94", "bf16", "no"
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --smoke on a CPU")
    # one process compiles many models (and each run builds new instances): never fall back to eager
    for limit in ("recompile_limit", "accumulated_recompile_limit", "cache_size_limit", "accumulated_cache_size_limit"):
        if hasattr(torch._dynamo.config, limit):  # the names changed across torch versions
            setattr(torch._dynamo.config, limit, 512)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU (smoke)"
    header = (f"{name}, torch {torch.__version__}, batch {args.batch}, {args.steps - args.warmup} timed steps after "
              f"{args.warmup}, median of {args.repeats} alternating runs, cuDNN benchmark {'on' if args.cudnn_benchmark else 'off'}")
    print(header, flush=True)
    print(f"{'model':<12}{'prec':<6}{'compile':<9}{'engine img/s':>14}{'hand img/s':>14}{'ratio':>8}", flush=True)
    start, rows = time.perf_counter(), rows_in_order(args)
    for row in rows:
        if time.perf_counter() - start > args.budget:
            row.note = "skipped: over the --budget"
        elif args.profile:
            profile_row(args, row)
            continue
        else:
            measure(args, row)
        shown = (f"{row.engine_ips:>14,.0f}{row.hand_ips:>14,.0f}{row.ratio:>8.3f}" if row.ratio else f"  {row.note}")
        print(f"{row.model:<12}{row.precision:<6}{'yes' if row.compile else 'no':<9}{shown}", flush=True)
        if args.markdown:  # after every row: a run cut short still leaves the rows it finished
            with open(args.markdown, "w") as f:
                f.write(markdown(rows, header))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"header": header, "rows": [asdict(r) for r in rows]}, f, indent=1)
    for note in sorted(args.notes):
        print(f"note: {note}", flush=True)
    done = [r.ratio for r in rows if r.ratio]
    if done:
        print(f"worst ratio {max(done):.3f} over {len(done)} rows (goal <= 1.05); {time.perf_counter() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
