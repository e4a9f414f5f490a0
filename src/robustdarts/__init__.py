"""robustdarts: robust differentiable neural architecture search, as a library and a CLI.

The three functions the ``robustdarts`` command line calls for its work::

    import robustdarts

    result = robustdarts.search(space="darts", method="darts", dataset="synthetic", preset="tiny")
    genotype = robustdarts.derive(result.run_dir)
    trained = robustdarts.train(result.run_dir, preset="tiny")
    print(trained.test_acc)

``robustdarts.bench.run`` / ``robustdarts.bench.report`` run and report grids of them. The building blocks for a
loop of your own: ``Supernet``, ``get_space``, ``Genotype``, ``Recipe``, ``StepContext``, ``Preset``,
``search_config``, ``register_op``; every user error is a one-sentence ``RobustDartsError``. docs/api.md has a
runnable example of each.

Importing this package is cheap: the building blocks (and torch) are imported when first used.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

# Threads that survive a shared machine (issue 28): OpenMP threads that spin at every barrier stall a multi-thread
# step whenever another process holds a core (a 1-epoch tiny search at 2 threads beside other jobs: 40-52 s
# spinning, 12-19 s waiting passively, 7-8 s at the one thread speed.py chooses for it). The runtime reads this once,
# when torch loads it, so it is set before anything imports torch; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._version import __version__  # noqa: E402
from .api import SearchResult, TrainResult, derive, search, train  # noqa: E402
from .errors import RobustDartsError  # noqa: E402

__all__ = ["search", "derive", "train", "SearchResult", "TrainResult", "bench", "Supernet", "get_space", "Genotype",
           "Recipe", "StepContext", "Preset", "search_config", "register_op", "RobustDartsError", "__version__"]

# name -> the module that defines it, imported on first use (torch comes with most of them)
_LAZY = {"Supernet": ".supernet", "get_space": ".spaces", "Genotype": ".genotype", "Recipe": ".methods",
         "StepContext": ".methods", "Preset": ".methods", "search_config": ".methods",
         "register_op": ".spaces.ops"}


def __getattr__(name: str):
    if name == "bench":
        return importlib.import_module(".bench", __name__)
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package module, keeping ``robustdarts.search``, ``.derive`` and ``.train`` the API functions: importing
    the subpackage ``robustdarts.search`` or the modules ``robustdarts.derive`` / ``robustdarts.train`` would
    otherwise rebind those names to the modules (the import system sets a submodule as an attribute of its
    parent). The modules stay importable by their full names (``from robustdarts.search.loop import Search``)."""

    def __setattr__(self, name: str, value) -> None:
        if name in ("search", "derive", "train") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
