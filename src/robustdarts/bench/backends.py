"""Running a plan: which cells still need work, and the backends that run them.

``local`` (the default) is a pool of spawned worker processes on this machine with torch's threads divided
between them; ``ray`` sends one Ray task per cell (``num_cpus`` / ``num_gpus`` from the grid's ``resources``) to a
local Ray instance or, with ``address``, to an existing cluster. Both run the same function (``cell.run_cell_task``),
which writes its own rows to the store, so a cell gives the same numbers on either. On a cluster, the output
directory must be on a filesystem every node shares.

Running a grid again skips cells that are done (and, unless ``retry_failed``, those that failed) and resumes the
rest from their run directories: a SIGKILL, a reboot or Ctrl-C loses at most the epoch in progress.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import RobustDartsError, unknown
from .cell import progress, run_cell_task
from .plan import Plan
from .store import Store

BACKENDS = ("local", "ray")
RAY_MISSING = ("the ray backend needs Ray, which is not installed; install it with pip install 'robustdarts[ray]' "
               "(or pip install ray), or run with --backend local.")


@dataclass
class RunSummary:
    out: str
    grid: str
    cells: int
    ran: int = 0
    done: int = 0
    failed: int = 0
    skipped_done: int = 0
    skipped_failed: int = 0
    busy: int = 0
    part_of: int | None = None  # the registered plan's cell count when this grid ran a part of it
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(vars(self))


def default_workers() -> int:
    return max(os.cpu_count() or 1, 1)


def check_backend(backend: str, address: str | None) -> None:
    """Refuse a backend that cannot run here before anything is written."""
    if backend not in BACKENDS:
        raise unknown("backend", backend, BACKENDS)
    if address is not None and backend != "ray":
        raise RobustDartsError("--address names a Ray cluster; add --backend ray or drop --address.")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise RobustDartsError(RAY_MISSING) from None


def run_grid(plan: Plan, out: str | Path, backend: str = "local", workers: int | None = None,
             threads: int | None = None, address: str | None = None, retry_failed: bool = False,
             monitor: Callable[[Store, list, float], None] | None = None) -> RunSummary:
    """Run every cell of ``plan`` that is not done into ``out``; ``monitor(store, todo, started)`` is called
    about twice a second while cells run (the live view)."""
    from ..runs import environment

    check_backend(backend, address)
    workers = max(int(workers or default_workers()), 1)
    if threads is not None and threads < 1:
        raise RobustDartsError(f"--threads must be at least 1, not {threads}.")
    threads = threads or max((os.cpu_count() or 1) // workers, 1)
    out = Path(out)
    started = time.time()
    with Store(out, create=True) as store:
        part = store.register(plan.grid.to_dict(), plan.cells)
        store.set_meta("environment", environment())
        status = store.cell_status()
        summary = RunSummary(str(out), plan.grid.name, len(plan.cells), part_of=len(store.plan()) if part else None)
        stored = {c["cell_id"]: c["run_dir"] for c in store.cells()}
        todo = []
        for c in plan.cells:
            c = dataclasses.replace(c, run_dir=stored.get(c.cell_id) or c.run_dir)
            s = status.get(c.cell_id)
            if s == "done":
                summary.skipped_done += 1
            elif s == "failed" and not retry_failed:
                summary.skipped_failed += 1
            else:
                todo.append(c)
        todo = longest_first(todo, plan, out)
        summary.ran = len(todo)
        tick = (lambda: monitor(store, todo, started)) if monitor is not None else (lambda: None)
        if todo:
            run = _run_local if backend == "local" else _run_ray
            results = run(todo, out, workers, threads, address, retry_failed, tick)
            summary.done = sum(1 for r in results.values() if r == "done")
            summary.failed = sum(1 for r in results.values() if r == "failed")
            summary.busy = sum(1 for r in results.values() if r == "busy")
        tick()
        errors = {c["cell_id"]: c["error"] for c in store.cells() if c["status"] == "failed"}
        summary.failures = {cid: errors[cid] for cid in (c.cell_id for c in todo) if cid in errors}
    summary.seconds = time.time() - started
    return summary


def longest_first(todo: list, plan: Plan, out: Path) -> list:
    """The cells in the order to start them: the most work left first, so that the last cells to start are short
    ones and the workers finish together. An interrupted cell counts by what is left of it (it resumes from its
    last epoch), so a nearly finished one does not hold a worker while a long one waits."""
    left = {c.cell_id: plan.costs[c.cell_id].remaining(p.searched, p.trained) for c in todo
            for p in [progress(c, out)]}
    return sorted(todo, key=lambda c: -left[c.cell_id])


# ---- local processes ----------------------------------------------------------------------------------------------
def _init_worker(threads: int) -> None:
    """Each worker: its share of the threads, and (Linux) death with the driver, so that killing a grid never
    leaves orphans writing into run directories."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    import torch
    torch.set_num_threads(threads)


def _run_local(todo, out: Path, workers: int, threads: int, address, retry_failed: bool, tick) -> dict[str, str]:
    results: dict[str, str] = {}
    context = mp.get_context("spawn")  # a fresh interpreter per worker: no forked torch thread pools
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(run_cell_task, c.to_dict(), str(out), threads, retry_failed): c for c in todo}
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in finished:
                    results[futures[f].cell_id] = f.result()
                tick()
        except BrokenProcessPool:
            raise RobustDartsError("a worker process died (killed, or out of memory) while running the grid; the "
                                   "finished cells are kept: rerun the same command to resume.") from None
    return results


# ---- Ray --------------------------------------------------------------------------------------------------------
def _run_ray(todo, out: Path, workers: int, threads: int, address: str | None, retry_failed: bool,
             tick) -> dict[str, str]:
    import ray

    resources = todo[0].resources
    cpus = float(resources.get("num_cpus", threads))
    gpus = float(resources.get("num_gpus", 0))
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a local instance sized so that `workers` cells run at once
            ray.init(num_cpus=max(int(round(workers * cpus)), 1), num_gpus=int(gpus * workers) if gpus else 0,
                     include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(run_cell_task)
        refs = {task.options(num_cpus=cpus, num_gpus=gpus, max_retries=0).remote(c.to_dict(), str(out), threads,
                                                                                  retry_failed): c for c in todo}
        results: dict[str, str] = {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for ref in ready:
                cell = refs[ref]
                try:
                    results[cell.cell_id] = ray.get(ref)
                except ray.exceptions.RayError as e:  # the task's process died: record it, go on
                    reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                    with Store(out) as store:
                        store.finish_cell(cell.cell_id, "failed", f"the Ray task died ({reason}); rerun with "
                                                                  f"--retry-failed.")
                    results[cell.cell_id] = "failed"
            tick()
        return results
    finally:
        if started_here:
            ray.shutdown()
