"""The live view of a running grid (rich): cells done / running / failed, the ETA, and each running cell's epoch;
and its plain sibling for ``robustdarts.bench.run`` from Python, one line per finished cell.

It reads only the store and the running cells' metrics.jsonl, so it shows the same picture whichever backend
runs the cells. The ETA weighs cells by their planned cost (bench plan), so a long Λ-DARTS search and a short
DARTS one do not count alike, and counts a cell's work by the epochs on disk, so that a resumed cell is credited
with what it had done and a running one with its finished epochs: cost left × (time so far / cost done in this
session).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Group
from rich.live import Live
from rich.table import Table

from .cell import progress
from .select import method_key
from .plan import Plan
from .store import Store


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def cell_label(cell) -> str:
    """method [variant] · space · dataset · seed N: a cell as the live view and the line report name it."""
    return f"{method_key(vars(cell))} · {cell.space} · {cell.dataset} · seed {cell.seed}"


class LiveView:
    """Call it (``monitor`` of ``run_grid``) while cells run; use it as a context manager around the run."""

    def __init__(self, plan: Plan, out: Path, workers: int, console=None):
        self.plan, self.out, self.workers = plan, Path(out), workers
        self.live = Live(console=console, refresh_per_second=2, transient=False)
        self.left_at_start: float | None = None  # the cost left when the view first drew: the ETA's baseline
        self.pending_left: dict[str, float] = {}  # cells not running: read from disk once
        self.last = 0.0

    def __enter__(self) -> "LiveView":
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def __call__(self, store: Store, todo: list, started: float) -> None:
        now = time.time()
        if now - self.last < 0.45:
            return
        self.last = now
        self.live.update(self.render(store, todo, started, now))

    def _left(self, todo: list, status: dict[str, str], steps: dict) -> dict[str, float]:
        """The seconds of planned cost left per cell: none when finished, by its epochs on disk otherwise."""
        left = {}
        for c in todo:
            cost, s = self.plan.costs[c.cell_id], status.get(c.cell_id)
            if s in ("done", "failed"):
                left[c.cell_id] = 0.0
            elif c.cell_id in steps:
                left[c.cell_id] = cost.remaining(steps[c.cell_id].searched, steps[c.cell_id].trained)
            else:
                if c.cell_id not in self.pending_left:
                    p = progress(c, self.out)
                    self.pending_left[c.cell_id] = cost.remaining(p.searched, p.trained)
                left[c.cell_id] = self.pending_left[c.cell_id]
        return left

    def render(self, store: Store, todo: list, started: float, now: float):
        status = {**store.cell_status(), **dict.fromkeys(store.interrupted(), "interrupted")}  # waits to resume
        planned = [c.cell_id for c in self.plan.cells]
        counts = {s: sum(1 for cid in planned if status.get(cid) == s) for s in ("done", "running", "failed")}
        counts["pending"] = len(planned) - sum(counts.values())
        ids = {c.cell_id: c for c in todo}  # with the run directories the store holds
        steps = {c.cell_id: progress(c, self.out) for c in todo if status.get(c.cell_id) == "running"}
        left = self._left(todo, status, steps)
        if self.left_at_start is None:
            self.left_at_start = sum(left.values())
        remaining = sum(left.values())
        done_here = self.left_at_start - remaining
        elapsed = now - started
        if done_here > 0:
            eta = f"ETA {_duration(remaining * elapsed / done_here)}"
        else:
            eta = f"ETA ~{_duration(remaining / max(self.workers, 1))} (planned)"
        head = Table.grid(padding=(0, 2))
        head.add_row(f"[bold]{self.plan.grid.name}[/]", f"[green]{counts['done']} done[/]",
                     f"[yellow]{counts['running']} running[/]", f"[red]{counts['failed']} failed[/]",
                     f"{counts['pending']} pending of {len(planned)}", f"elapsed {_duration(elapsed)}", eta)
        running = Table(box=None, show_header=True, header_style="dim", padding=(0, 2))
        for col in ("running cell", "at", "since"):
            running.add_column(col)
        rows = {c["cell_id"]: c for c in store.cells()}
        for planned_cell in self.plan.cells:
            row, cell = rows.get(planned_cell.cell_id), ids.get(planned_cell.cell_id)
            if row is None or row["status"] != "running" or cell is None:
                continue
            running.add_row(cell_label(cell), (steps.get(cell.cell_id) or progress(cell, self.out)).phase,
                            _duration(now - (row["started"] or now)))
        return Group(head, running) if running.row_count else head


class CellLines:
    """``monitor`` of ``run_grid`` for ``robustdarts.bench.run``: one plain line on ``stream`` (stderr by default) as
    each cell of this run ends, ``[3/8] done darts · s3 · cifar10 · seed 0 in 4m12s`` (failed: with the reason),
    fit for a notebook or a log, where the live view's redrawn frames are noise. A cell has ended in this run when it
    is done or failed and its end time is not before the run began, or (another host's clock) its status, attempts
    or end time changed since the first call: so a cell retried with retry_failed is reported when its new attempt
    ends, never at once for its old failure, and one that ended before the first call is not missed."""

    def __init__(self, stream=None):
        self.stream = stream
        self.first: dict[str, tuple | None] | None = None  # cell id -> (status, attempts, finished) at the first call
        self.reported: set[str] = set()

    def __call__(self, store: Store, todo: list, started: float) -> None:
        marks = store.cell_marks()
        if self.first is None:
            self.first = {c.cell_id: _key(marks.get(c.cell_id)) for c in todo}
        for cell in todo:
            mark = marks.get(cell.cell_id)
            if cell.cell_id in self.reported or mark is None or mark["status"] not in ("done", "failed"):
                continue
            if (mark["finished"] or 0) < started and self.first.get(cell.cell_id) == _key(mark):
                continue  # its last end came before this run (a failure that retry_failed has not restarted yet)
            self.reported.add(cell.cell_id)
            took = f" in {_duration(mark['finished'] - mark['started'])}" if mark["finished"] and mark["started"] \
                else ""
            why = f": {mark['error']}" if mark["status"] == "failed" and mark["error"] else ""
            print(f"[{len(self.reported)}/{len(todo)}] {mark['status']} {cell_label(cell)}{took}{why}",
                  file=self.stream or sys.stderr, flush=True)


def _key(mark: dict | None) -> tuple | None:
    return None if mark is None else (mark["status"], mark["attempts"], mark["finished"])
