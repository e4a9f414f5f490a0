"""Benchmarks: grids of searches and trainings, a results store, tables and a report (DESIGN: the benchmark layer).

``load_grid`` reads a grid file or preset, ``make_plan`` expands it into cells with stable ids and a cost,
``run_grid`` runs the cells on a backend (local processes or Ray) into ``DIR/results.sqlite`` and the cells' run
directories, and ``report`` turns the store into tables and plots. From Python, ``run(grid, out=...)`` and
``report(out, format="md")`` (bench/api.py) do what ``robustdarts bench run`` and ``bench report`` do.
"""

from .grid import Cell, Condition, Grid, SelectRule, expand, grid_from_dict, load_grid, preset_names
from .plan import Plan, make_plan
from .store import Store
# The report module is loaded before the function ``report`` takes its name here: loading it later would rebind
# ``robustdarts.bench.report`` to the module (``from robustdarts.bench.report import write`` still finds it).
from . import report as _report_module  # noqa: F401
from .api import report, run

__all__ = ["Cell", "Condition", "Grid", "SelectRule", "expand", "grid_from_dict", "load_grid", "preset_names",
           "Plan", "make_plan", "Store", "run", "report"]
