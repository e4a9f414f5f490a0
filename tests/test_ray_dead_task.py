"""The Ray backend's driver records a dead task through the store it already holds (no second connection).

Ray itself is replaced by a stand-in module: the task of one cell dies (``ray.get`` raises a ``RayError``), the
others return 'done' without running anything, so the test takes well under a second and needs no Ray install.
"""

from __future__ import annotations

import sys
import types

from robustdarts.bench import Store, grid_from_dict, make_plan
from robustdarts.bench import backends

SIZES = {"batch_size": 8, "init_channels": 4, "layers": 3, "image_size": 8, "limit_images": 32}
GRID = {"name": "ray-dead", "methods": ["darts"], "spaces": ["s3"], "datasets": ["synthetic"], "seeds": [0, 1],
        "search": {"epochs": 1, "leakage_every": 0, **SIZES}, "train": {"epochs": 1, "limit_test": 16, **SIZES}}


def fake_ray(dies: str) -> types.ModuleType:
    """A module with the few Ray calls ``_run_ray`` makes; the task of cell ``dies`` dies, the others are done."""

    class RayError(Exception):
        pass

    class Task:
        def options(self, **_):
            return self

        def remote(self, cell, out, threads, retry_failed):
            return cell["cell_id"]  # the object ref: the cell id is enough to answer get()

    def get(ref):
        if ref == dies:
            raise RayError("The worker died unexpectedly.\nmore detail")
        return "done"

    ray = types.ModuleType("ray")
    ray.exceptions = types.SimpleNamespace(RayError=RayError)
    ray.is_initialized = lambda: True  # as if the caller had started Ray: the driver neither inits nor shuts down
    ray.remote = lambda fn: Task()
    ray.wait = lambda pending, num_returns, timeout: (pending[:1], pending[1:])
    ray.get = get
    ray.cancel = lambda ref: None
    return ray


def test_a_dead_ray_task_is_recorded_failed_through_the_drivers_own_store(tmp_path, monkeypatch):
    plan = make_plan(grid_from_dict(GRID))
    dead = plan.cells[0].cell_id
    monkeypatch.setitem(sys.modules, "ray", fake_ray(dead))
    opened = []

    class CountingStore(Store):
        def __init__(self, *args, **kwargs):
            opened.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(backends, "Store", CountingStore)
    summary = backends.run_grid(plan, tmp_path / "out", backend="ray", workers=1, threads=1)
    assert len(opened) == 1  # the driver's store only; the dead task is not recorded through a second one
    assert summary.failed == 1 and summary.done == len(plan.cells) - 1
    expected = "the Ray task died (The worker died unexpectedly.); rerun with --retry-failed."
    assert summary.failures == {dead: expected}
    with Store(tmp_path / "out") as store:
        cells = {c["cell_id"]: c for c in store.cells()}
    assert cells[dead]["status"] == "failed" and cells[dead]["error"] == expected
    assert all(c["status"] == "pending" for cid, c in cells.items() if cid != dead)


def test_a_dead_task_in_a_replaced_plan_ends_in_the_replaced_plan_sentence(tmp_path, monkeypatch):
    """When another grid's plan took --out, the dead task's record is refused (PlanReplaced); the driver counts the
    cell as replaced and run_grid says so once, as for the local backend."""
    import pytest

    from robustdarts.bench.store import PlanReplaced

    plan = make_plan(grid_from_dict(GRID))
    monkeypatch.setitem(sys.modules, "ray", fake_ray(plan.cells[0].cell_id))

    class ReplacedStore(Store):
        def finish_cell(self, *args, **kwargs):
            raise PlanReplaced("the runner's write was refused")

    monkeypatch.setattr(backends, "Store", ReplacedStore)
    with pytest.raises(PlanReplaced, match="another bench run registered a different grid .* 1 of this grid's"):
        backends.run_grid(plan, tmp_path / "out", backend="ray", workers=1, threads=1)
