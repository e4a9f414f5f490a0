"""Skip-connection collapse and the dominant eigenvalue: DARTS versus R-DARTS(L2) and Λ-DARTS (CPU-sized).

The study of docs/collapse.md, run through the benchmark: the grid is the shipped preset ``collapse-cpu``
(src/robustdarts/bench/presets/collapse-cpu.yaml: every setting, the R-DARTS(L2) weight-decay grid and its
selection by the held-out accuracy of the genotypes trained from scratch). This script is the same as

    robustdarts bench run collapse-cpu --out runs/collapse --workers 2
    robustdarts bench report runs/collapse --out docs/collapse-report.md

with two conveniences: ``--seeds`` and ``--methods`` run a part of the grid (``--seeds 2``: one seed's 5 searches and
5 trainings, about 2.5-3 h on 2 cores; the whole grid about 8 h), and ``--select oneshot`` selects R-DARTS(L2) by
the supernet's final validation accuracy instead. A second call resumes (finished cells are not recomputed). The
report holds every number of docs/collapse.md's tables: skips per epoch, λ_max on one batch and over 16, conv
share, supernet, held-out and test accuracy, and R-DARTS(L2)'s grid with its held-out scores.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from robustdarts.bench import Store, load_grid, make_plan
from robustdarts.bench.backends import run_grid
from robustdarts.bench.live import LiveView
from robustdarts.bench.report import write


def collapse_grid(seeds: str | None = None, methods: str | None = None, select: str = "retrain"):
    """The collapse-cpu preset, cut to ``seeds`` / ``methods`` (comma-separated); ``select='oneshot'`` selects
    R-DARTS(L2) by the supernet's final validation accuracy. A selection whose candidates are cut goes with them."""
    grid = load_grid("collapse-cpu")
    if seeds:
        grid = dataclasses.replace(grid, seeds=tuple(int(s) for s in seeds.split(",")))
    if methods:
        wanted = methods.split(",")
        grid = dataclasses.replace(grid, methods=tuple(m for m in grid.methods if m.label in wanted),
                                   select=tuple(r for r in grid.select if set(r.from_) <= set(wanted)))
    if select == "oneshot":
        grid = dataclasses.replace(grid, select=tuple(dataclasses.replace(r, by="supernet_val_acc")
                                                      for r in grid.select))
    return grid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default=None, help="comma-separated subset of the grid's seeds 2,3,4")
    p.add_argument("--methods", default=None, help="comma-separated subset of darts,rdarts-l2,lambda-darts")
    p.add_argument("--select", choices=("retrain", "oneshot"), default="retrain")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="runs/collapse")
    p.add_argument("--report", default="docs/collapse-report.md")
    args = p.parse_args()

    plan = make_plan(collapse_grid(args.seeds, args.methods, args.select))
    with LiveView(plan, Path(args.out), args.workers) as view:  # the live view of `robustdarts bench run`
        summary = run_grid(plan, args.out, workers=args.workers, threads=1, monitor=view)
    if not sys.stdout.isatty():  # off a terminal the live view's last frame ends without a newline
        print()
    print(f"{summary.done} cells done, {summary.failed} failed, {summary.skipped_done} already done")
    with Store(args.out) as store:
        # Register the whole study (a no-op after a full run): a cut (--seeds, --methods) into a store that held no
        # plan yet registered itself, and --select changes the grid's selection rule; the report then shows every
        # cell, done or pending, under the selection asked for.
        whole = make_plan(collapse_grid(select=args.select))
        store.register(whole.grid.to_dict(), whole.cells)
        print(write(store, "md", Path(args.report)))


if __name__ == "__main__":
    main()
