"""``robustdarts.bench.run`` and ``robustdarts.bench.report``: a grid run and its report from Python, the work of
``robustdarts bench run`` and ``robustdarts bench report``, with a line per cell instead of the live view."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def run(grid_or_path: dict[str, Any] | str | Path, out: str | Path, backend: str = "local",
        workers: int | None = None, threads: int | None = None, address: str | None = None,
        retry_failed: bool = False, progress: bool | None = None):
    """Run a grid's cells into ``out``; returns the ``RunSummary`` (``.done``, ``.failed``, ``.failures``, ...).

    Args:
        grid_or_path: the grid as a dict (the keys of a grid YAML file: methods, spaces, datasets, seeds, ...), a
            grid YAML file, or the name of a shipped preset (``robustdarts bench presets``).
        out: the output directory: ``results.sqlite`` and the cells' run directories. Running again skips the
            finished cells and resumes the interrupted ones.
        backend: ``local`` (worker processes here) or ``ray``; ``address``: an existing Ray cluster's.
        workers: cells at once (default: one per CPU core); ``threads``: torch threads per cell.
        retry_failed: rerun the cells that failed before.
        progress: one line on stderr as each cell ends (``[1/4] done darts · s3 · cifar10 · seed 0 in 4m12s``;
            failed: with the reason). None (the default): only when stderr is a terminal, so that a script's log
            or a test stays quiet; True: always (a notebook, whose stderr is no terminal); False: never.

    Raises:
        RobustDartsError: a bad grid entry, backend or worker count, before anything is written. A cell that fails
            is recorded in the store and counted in the summary, not raised.

    Example:
        >>> summary = robustdarts.bench.run({"methods": ["darts"], "spaces": ["darts"], "datasets": ["synthetic"],
        ...                                  "seeds": [0]}, out="runs/grid")  # doctest: +SKIP
    """
    from ..starts import one_start
    from .backends import check_backend, check_workers, run_grid
    from .grid import grid_from_dict, load_grid
    from .live import CellLines
    from .plan import make_plan

    with one_start():  # the plan's look-ups walk a folder data set once; each cell is a start of its own
        grid = grid_from_dict(grid_or_path, "the grid") if isinstance(grid_or_path, dict) else load_grid(grid_or_path)
        plan = make_plan(grid)  # every entry is checked here, before anything is written
    check_backend(backend, address)
    check_workers(workers, threads)
    if progress is None:
        progress = sys.stderr is not None and sys.stderr.isatty()
    return run_grid(plan, out, backend, workers, threads, address, retry_failed,
                    monitor=CellLines() if progress else None)


def report(out: str | Path, format: str = "md", path: str | Path | None = None) -> str:
    """The report of a grid's output directory as text (tables: mean ± std over seeds, best-of-k, ranks); with
    ``path`` also written there (Markdown: its plots beside it as PNG).

    Args:
        out: a ``bench.run`` output directory.
        format: ``md``, ``html``, ``csv`` or ``json``.
        path: a file to write the report to (default: none, the text is returned only).

    Raises:
        RobustDartsError: an unknown format, or ``out`` holds no results store.

    Example:
        >>> print(robustdarts.bench.report("runs/grid"))  # doctest: +SKIP
    """
    from ..errors import unknown
    from .report import FORMATS, write
    from .store import Store

    if format not in FORMATS:
        raise unknown("report format", format, FORMATS)
    with Store(out) as store:
        return write(store, format, Path(path) if path is not None else None)
