"""The live view of a running grid (rich): cells done / running / failed, the ETA, and each running cell's epoch.

It reads only the store and the running cells' metrics.jsonl, so it shows the same picture whichever backend
runs the cells. The ETA weighs cells by their planned cost (bench plan), so a long Λ-DARTS search and a short
DARTS one do not count alike: remaining cost × (time so far / cost finished in this session).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Group
from rich.live import Live
from rich.table import Table

from .plan import Plan
from .store import Store


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class LiveView:
    """Call it (``monitor`` of ``run_grid``) while cells run; use it as a context manager around the run."""

    def __init__(self, plan: Plan, out: Path, workers: int, console=None):
        self.plan, self.out, self.workers = plan, Path(out), workers
        self.live = Live(console=console, refresh_per_second=2, transient=False)
        self.start_status: dict[str, str] | None = None
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

    def render(self, store: Store, todo: list, started: float, now: float):
        status = {**store.cell_status(), **dict.fromkeys(store.interrupted(), "interrupted")}  # waits to resume
        planned = [c.cell_id for c in self.plan.cells]
        counts = {s: sum(1 for cid in planned if status.get(cid) == s) for s in ("done", "running", "failed")}
        counts["pending"] = len(planned) - sum(counts.values())
        ids = {c.cell_id for c in todo}
        cost = self.plan.costs
        finished = sum(cost[cid].seconds for cid in ids if status.get(cid) in ("done", "failed"))
        remaining = sum(cost[cid].seconds for cid in ids if status.get(cid) not in ("done", "failed"))
        elapsed = now - started
        if finished > 0:
            eta = f"ETA {_duration(remaining * elapsed / finished)}"
        else:
            eta = f"ETA ~{_duration(remaining / max(self.workers, 1))} (planned)"
        head = Table.grid(padding=(0, 2))
        head.add_row(f"[bold]{self.plan.grid.name}[/]", f"[green]{counts['done']} done[/]",
                     f"[yellow]{counts['running']} running[/]", f"[red]{counts['failed']} failed[/]",
                     f"{counts['pending']} pending of {len(planned)}", f"elapsed {_duration(elapsed)}", eta)
        running = Table(box=None, show_header=True, header_style="dim", padding=(0, 2))
        for col in ("running cell", "epoch", "since"):
            running.add_column(col)
        rows = {c["cell_id"]: c for c in store.cells()}
        for cell in self.plan.cells:
            row = rows.get(cell.cell_id)
            if row is None or row["status"] != "running" or cell.cell_id not in ids:
                continue
            metrics = self.out / cell.run_dir / "metrics.jsonl"
            try:
                epochs = sum(1 for line in metrics.read_text().splitlines() if line.strip())
            except OSError:
                epochs = 0
            running.add_row(f"{cell.method}{f' [{cell.variant}]' if cell.variant else ''} · {cell.space} · "
                            f"{cell.dataset} · seed {cell.seed}", f"{epochs}/{cell.search['epochs']}",
                            _duration(now - (row["started"] or now)))
        return Group(head, running) if running.row_count else head
