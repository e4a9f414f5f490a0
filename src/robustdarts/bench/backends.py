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
import functools
import multiprocessing as mp
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import RobustDartsError, unknown
from .cell import progress, run_cell_task
from .plan import Plan
from .store import PlanReplaced, Store, check_out, replaced_error, units_of

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


def check_workers(workers: int | None, threads: int | None) -> None:
    """Refuse a count of cells at once or of threads per cell below 1 (None: the default) before anything is
    written: ``--workers -3`` used to run one cell silently, and 0 the default."""
    for option, value in (("--workers", workers), ("--threads", threads)):
        if value is not None and value < 1:
            raise RobustDartsError(f"{option} must be at least 1, not {value}.")


def run_grid(plan: Plan, out: str | Path, backend: str = "local", workers: int | None = None,
             threads: int | None = None, address: str | None = None, retry_failed: bool = False,
             monitor: Callable[[Store, list, float], None] | None = None) -> RunSummary:
    """Run every cell of ``plan`` that is not done into ``out``; ``monitor(store, todo, started)`` is called
    about twice a second while cells run (the live view)."""
    from ..runs import environment

    check_backend(backend, address)
    check_workers(workers, threads)
    if backend == "local":
        check_main_guarded()  # before the store is written: the workers would die at their start
    workers = workers or default_workers()
    threads = threads or max((os.cpu_count() or 1) // workers, 1)
    out = Path(out)
    check_out(out, plan.cells)  # a damaged store, a planted link, a run directory outside out: before any write
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
        tick()  # before any cell starts: a monitor sees the store as this run found it (CellLines' snapshot)
        if todo:
            # Ray records a dead task through this store: its driver loop runs in this thread (sqlite3 connections
            # are per thread), so no second connection is needed.
            run = _run_local if backend == "local" else functools.partial(_run_ray, store=store)
            results = run(todo, out, workers, threads, address, retry_failed, tick)
            tick()  # the cells that ended since the last tick, also when the run ends in the error below
            summary.done = sum(1 for r in results.values() if r == "done")
            summary.failed = sum(1 for r in results.values() if r == "failed")
            summary.busy = sum(1 for r in results.values() if r == "busy")
            replaced = sum(1 for r in results.values() if r == "replaced")
            if replaced:  # another grid's plan took this --out: its cells were not recorded under this grid's ids
                raise replaced_error(out, replaced)
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
_STOPPING = False  # a worker: Ctrl-C seen, so no further cell starts here
_IN_CELL = False  # a worker: a cell is running (Ctrl-C stops it; between cells it only sets _STOPPING)


def _on_interrupt(signum, frame) -> None:
    """A worker's SIGINT (the terminal's Ctrl-C reaches the whole process group, or the driver forwards it): the
    running cell stops where it is, which loses at most the epoch in progress (its checkpoints are atomic and a
    resume is exact), and no later cell starts. Only the first signal interrupts: a second one (terminal and
    driver both send it) must not break the first one's unwinding, which records the cell's state."""
    global _STOPPING
    if _STOPPING:
        return
    _STOPPING = True
    if _IN_CELL:
        raise KeyboardInterrupt


def _init_worker(threads: int) -> None:
    """Each worker: its share of the threads, (Linux) death with the driver, so that killing a grid never leaves
    orphans writing into run directories, and Ctrl-C handled as above. The driver starts workers with SIGINT
    blocked (``_sigint_blocked``), so a Ctrl-C while a worker imports is held until this handler is in place
    instead of killing the worker with a traceback (which would read as a crashed pool)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, _on_interrupt)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    import torch
    torch.set_num_threads(threads)


def _run_cell_in_worker(cell: dict, out: str, threads: int, retry_failed: bool) -> str:
    """``run_cell_task`` unless Ctrl-C was seen: then 'interrupted', and the cell is not started (the pool may
    already have handed this worker cells that the driver can no longer cancel)."""
    global _IN_CELL
    try:
        _IN_CELL = True
        if _STOPPING:
            return "interrupted"
        return run_cell_task(cell, out, threads, retry_failed)
    except KeyboardInterrupt:
        return "interrupted"  # the store reads the cell as interrupted once this worker is gone; a rerun resumes it
    finally:
        _IN_CELL = False


@contextmanager
def _sigint_blocked():
    """Block SIGINT in this thread while worker processes are started: they inherit the mask (across exec), so
    a Ctrl-C stays pending in a new worker until ``_init_worker`` has its handler; in the driver, a Ctrl-C that
    arrives meanwhile is delivered when the block ends (not lost)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def check_main_guarded(what: str = "robustdarts.bench.run") -> None:
    """Refuse, before any worker starts, a call made by a script's top-level code outside ``if __name__ ==
    "__main__":``. A spawned worker begins by running the script again; unguarded, that run calls us again, the
    worker's own start fails (multiprocessing's bootstrapping RuntimeError) and the pool reports only that a worker
    died. The statement of ``__main__`` being executed is found on the stack and looked up in the script's syntax
    tree; a script that cannot be read, or no script at all (``python -c``, a notebook), is left alone."""
    import ast
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return
    frame, line = sys._getframe(), None
    while frame is not None:  # the outermost frame running the script's own top-level code
        if frame.f_code.co_name == "<module>" and frame.f_globals is vars(main):
            line = frame.f_lineno
        frame = frame.f_back
    if line is None:
        return
    try:
        tree = ast.parse(Path(path).read_text(), filename=str(path))
    except (OSError, ValueError, SyntaxError, UnicodeDecodeError):
        return
    for node in tree.body:
        if node.lineno <= line <= (node.end_lineno or node.lineno):
            guarded = isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)
            if not guarded:
                raise RobustDartsError(f"{what} is called by the top-level code of {path}, which each worker process "
                                       f"runs again as it starts; guard the call with "
                                       f"`if __name__ == \"__main__\":`.")
            return


def _run_local(todo, out: Path, workers: int, threads: int, address, retry_failed: bool, tick) -> dict[str, str]:
    results: dict[str, str] = {}
    context = mp.get_context("spawn")  # a fresh interpreter per worker: no forked torch thread pools
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures: dict = {}
        try:
            with _sigint_blocked():  # submit() starts the workers
                for c in todo:
                    futures[pool.submit(_run_cell_in_worker, c.to_dict(), str(out), threads, retry_failed)] = c
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in finished:
                    results[futures[f].cell_id] = f.result()
                    if results[futures[f].cell_id] == "interrupted":
                        raise KeyboardInterrupt  # a worker alone got SIGINT: stop the grid as a whole
                tick()
        except BrokenProcessPool:
            raise RobustDartsError("a worker process died (killed, or out of memory) while running the grid; the "
                                   "finished cells are kept: rerun the same command to resume.") from None
        except KeyboardInterrupt:
            _stop_local(pool, [f for f in futures if not f.done()])
            raise
    return results


def _stop_local(pool: ProcessPoolExecutor, pending: list) -> None:
    """Ctrl-C in the driver: start no more cells, stop the running ones at once, wait for the workers to say so.
    Cells not yet handed to a worker are cancelled; the few the pool has already queued for a worker return at
    once ('interrupted'). SIGINT is forwarded because only a terminal's Ctrl-C reaches the workers by itself (a
    ``kill -INT`` of the driver, or a driver in another process group, does not); a worker that got both counts one.
    Then wait for the workers, which end within a step of their cell."""
    for f in pending:
        f.cancel()
    for pid in list(getattr(pool, "_processes", None) or {}):  # the pool keeps no public list of its workers
        try:
            os.kill(pid, signal.SIGINT)
        except OSError:  # already gone
            pass
    pool.shutdown(wait=True, cancel_futures=True)


# ---- Ray --------------------------------------------------------------------------------------------------------
def _run_ray(todo, out: Path, workers: int, threads: int, address: str | None, retry_failed: bool,
             tick, *, store: Store) -> dict[str, str]:
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
    pending: list = []
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
                    try:
                        store.finish_cell(cell.cell_id, "failed", f"the Ray task died ({reason}); rerun with "
                                                                  f"--retry-failed.", units_of(cell))
                        results[cell.cell_id] = "failed"
                    except PlanReplaced:  # another grid's plan took this --out: said once, by run_grid
                        results[cell.cell_id] = "replaced"
            tick()
        return results
    except KeyboardInterrupt:  # Ctrl-C: no queued cell starts; running ones get KeyboardInterrupt (resumable)
        for ref in pending:
            ray.cancel(ref)
        raise
    finally:
        if started_here:
            ray.shutdown()
