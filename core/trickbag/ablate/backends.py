"""Where an ablation's runs train: in this process, in a local process pool, or on a Ray cluster.

Every backend calls the same ``run_one`` on the same run folders, so a run started on one backend
can be finished on another, and the table never depends on where the runs were made. The CPU
threads are split between the runs that train at once (``jobs`` processes x ``threads`` each =
the cores), so that two runs do not fight over the same cores.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from trickbag.ablate.runner import Plan, run_one
from trickbag.ablate.variants import Variant
from trickbag.errors import UserError

BACKENDS = ("local", "ray")

log = logging.getLogger("trickbag")

Record = Callable[[int, dict, str], None]
Work = list[tuple[Variant, int]]


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use (containers, taskset)
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_per_run(jobs: int, total: int | None = None) -> int:
    return max(1, (total or cores()) // jobs)


def check_backend(backend: str, jobs: int) -> None:
    """Refused before any file is written."""
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend!r} is unknown (choose one of: {', '.join(BACKENDS)})")
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: at least 1")


def execute(plan: Plan, work: Work, record: Record, *, jobs: int, backend: str, gpus_per_run: float = 0.0) -> None:
    check_backend(backend, jobs)
    if backend == "ray":
        _ray(plan, work, record, jobs, gpus_per_run)
    elif jobs == 1:
        for i, (variant, seed) in enumerate(work):  # in this process: the engine's own thread count
            row, how = run_one(plan, variant, seed)
            record(i, row, how)
    else:
        _pool(plan, work, record, jobs)


def _worker_start(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    logging.getLogger("trickbag").setLevel(logging.WARNING)  # the parent shows progress; workers say only what is wrong


def _pool(plan: Plan, work: Work, record: Record, jobs: int) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # spawn, not fork: a forked child inherits torch's thread pools (and, on CUDA, a context) in
    # whatever state the parent left them
    threads = threads_per_run(jobs)
    log.info(f"local: {jobs} worker processes, {threads} threads each")
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(work)) or 1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_start, initargs=(threads,))
    pending = {pool.submit(run_one, plan, variant, seed): i for i, (variant, seed) in enumerate(work)}
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                row, how = future.result()  # a worker's UserError surfaces here, as one line
                record(index, row, how)
    except BaseException:
        # Ctrl-C, or a run that failed: stop the other runs now. A worker killed mid-epoch loses
        # only that epoch (checkpoints are written atomically, the folder lock dies with it), and a
        # rerun resumes it. Ctrl-C in a terminal reaches the workers too, a kill of this process
        # alone does not: either way none may outlive this command.
        processes = list(getattr(pool, "_processes", {}).values())
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _ray_task(plan: Plan, variant: Variant, seed: int, threads: int, cwd: str) -> tuple[dict, str]:
    import torch

    if Path(cwd).is_dir():  # on the driver's machine: relative paths in the recipe mean what they meant there
        os.chdir(cwd)
    torch.set_num_threads(threads)
    return run_one(plan, variant, seed)


def _ray(plan: Plan, work: Work, record: Record, jobs: int, gpus_per_run: float) -> None:
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs Ray: pip install 'trickbag[ray]'") from None
    from dataclasses import replace

    if not ray.is_initialized():
        # RAY_ADDRESS (or `ray start` on this node) joins a cluster; otherwise a local Ray instance
        # with this machine's cores
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    # --jobs runs at a time over the whole cluster, each with its share of the CPUs (never more
    # than one node has, or it would never be scheduled)
    cpus = int(ray.cluster_resources().get("CPU", cores()))
    node_cpus = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=cores())
    threads = max(1, min(node_cpus, cpus // jobs))
    log.info(f"ray: {cpus} CPUs in the cluster, {jobs} runs at a time, {threads} threads each")
    task = ray.remote(num_cpus=threads, num_gpus=gpus_per_run, max_retries=0)(_ray_task)
    # absolute paths: a Ray worker's working directory is its own
    plan = replace(plan, recipe_path=plan.recipe_path.resolve(), out=plan.out.resolve())
    pending = {task.remote(plan, variant, seed, threads, os.getcwd()): i for i, (variant, seed) in enumerate(work)}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            try:
                row, how = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:
                cause = exc.as_instanceof_cause()
                if isinstance(cause, UserError):
                    raise UserError(str(cause).splitlines()[0]) from None
                raise
            record(index, row, how)
    except BaseException:
        for ref in pending:  # a KeyboardInterrupt in each task: fit keeps its finished epochs
            ray.cancel(ref)
        raise


__all__ = ["BACKENDS", "check_backend", "cores", "execute", "threads_per_run"]
