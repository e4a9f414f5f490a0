"""One cell, start to records: search (or resume it) → derive each condition → train from scratch → the store.

This is the whole body of a worker, the same for every backend, so a cell gives the same numbers wherever it runs.
The search directory is an ordinary run directory (``robustdarts plot / derive / train`` work on it); each
condition adds ``conditions/<label>-<id>/`` with its ``genotype.json`` and, when the grid trains, its training run
directory ``train/``. Every step resumes from what is on disk: an interrupted search or training continues
bit-exactly, a finished one returns at once, and conditions already in the store are not recomputed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import traceback
from contextlib import contextmanager
from pathlib import Path
from statistics import mean
from typing import Any, Iterator

import torch

from ..errors import RobustDartsError
from ..starts import one_start
from .grid import Cell, CellCondition, _slug, known_policies
from .store import PlanReplaced, Store, inside, units_of

SETTLED_STREAM_SEED = 7919  # the batches of the end eigenvalue: the same for every method of a seed


def run_cell_task(cell: dict, out: str, threads: int | None = None, retry_failed: bool = False) -> str:
    """Process-pool and Ray entry point: plain arguments in, the cell's final status out. What fails outside a
    cell's own steps (the store unreadable, the disk full) is recorded where possible and never ends the grid;
    'replaced' when the store's plan no longer plans the cell as this runner does (the driver stops then)."""
    spec = Cell.from_dict(cell)
    try:
        return execute_cell(spec, Path(out), threads, retry_failed)
    except PlanReplaced:
        return "replaced"
    except Exception as e:  # noqa: BLE001
        try:  # the traceback goes to the run directory's log only when that directory is a safe place for it
            log_dir = inside(out, spec.run_dir, f"cell {spec.cell_id}'s run directory")
        except RobustDartsError:
            log_dir = Path(out)
        try:
            with Store(Path(out), scan=False) as store:
                store.finish_cell(spec.cell_id, "failed", _reason(e, log_dir), units=units_of(spec))
        except Exception:  # noqa: BLE001 - nothing more can be recorded; the driver counts it failed
            pass
        return "failed"


def execute_cell(cell: Cell, out: Path, threads: int | None = None, retry_failed: bool = False) -> str:
    """Run ``cell`` into ``out`` and record it; returns 'done', 'failed', 'busy' when another process holds it, or
    'replaced' when the store's plan no longer plans it with these conditions (another grid registered on this
    --out: nothing of this runner's is recorded under the other grid's ids). A user error (or any other exception)
    fails the cell, or the one condition it came from, with one sentence; the traceback of an unexpected exception
    goes to the cell's ``bench-error.log``."""
    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    units = units_of(cell)
    with _cell_lock(out, cell.cell_id) as held:
        if not held:
            return "busy"
        with Store(out, scan=False) as store:  # the driver's check_out read it whole
            if not store.still_planned(cell.cell_id, units):
                return "replaced"
            finished = store.cell_status().get(cell.cell_id)
            if finished == "done" or (finished == "failed" and not retry_failed):
                return finished  # another `bench run` on this --out finished it since this one planned
            try:
                with one_start():  # a cell is one start: its search, derives and trainings walk a folder once
                    return _execute(cell, out, store, units, retry_failed)
            except PlanReplaced:
                store.abandon(cell.cell_id)
                _release(out / cell.run_dir)
                return "replaced"


def _execute(cell: Cell, out: Path, store: Store, units: dict[str, str], retry_failed: bool) -> str:
    """The body of ``execute_cell``, every store write keyed by ``units`` (PlanReplaced ends it)."""
    # The run directory comes from the store (a cell keeps its first one) or the grid's labels: it must stay under
    # --out, through no planted link, before anything is created there.
    run_dir = inside(out, cell.run_dir, f"cell {cell.cell_id}'s run directory")
    store.start_cell(cell.cell_id, units)
    try:
        search = _search(cell, run_dir)
        store.finish_search(cell.cell_id, units, **search_record(search, cell, out))
    except PlanReplaced:
        raise
    except Exception as e:  # noqa: BLE001 - a failed cell is recorded, and the grid goes on
        store.finish_cell(cell.cell_id, "failed", _reason(e, run_dir), units)
        _release(run_dir)
        return "failed"
    failed = []
    done_rows = {r["condition"]: r for r in store.rows(planned=False, cell_id=cell.cell_id)}
    trained: dict[str, dict] = {}  # (genotype, training) -> its numbers: identical trainings run once
    for row in done_rows.values():
        if row["status"] == "done" and row["train_dir"] and row["train_config"] is not None:
            trained.setdefault(_training_key(row["genotype"], row["train_config"]), _train_numbers(row))
    for k in cell.conditions:
        status = done_rows.get(k.label, {}).get("status")
        if status == "done" or (status == "failed" and not retry_failed):
            failed += [k.label] if status == "failed" else []
            continue
        store.start_condition(cell.cell_id, k.label, units)
        try:
            values = run_condition(search, cell, k, run_dir, out, trained)
        except Exception as e:  # noqa: BLE001
            store.finish_condition(cell.cell_id, k.label, "failed", _reason(e, run_dir), units)
            failed.append(k.label)
            continue
        store.finish_condition(cell.cell_id, k.label, "done", units=units, **values)
    _release(run_dir)
    if failed:
        store.finish_cell(cell.cell_id, "failed", f"condition {', '.join(failed)} failed (bench status "
                                                  f"shows why).", units)
        return "failed"
    store.finish_cell(cell.cell_id, "done", units=units)
    return "done"


def _release(run_dir: Path) -> None:
    """Give up this process's locks of the cell's run directories (a worker runs many cells in turn)."""
    from .. import runs

    if hasattr(runs, "held_runs"):
        root = run_dir.resolve()
        for path in list(runs.held_runs()):
            if path == root or root in path.parents:
                runs.release(path)


# ---- the search --------------------------------------------------------------------------------------------------
def _search(cell: Cell, run_dir: Path):
    from ..search.loop import Search

    # A user's space, from the definition the cell carries (this may be a fresh worker process): the search records
    # it in the run directory, and the derivations and trainings after it find it registered.
    cell.register_space()
    cfg = cell.search_config()
    if (run_dir / "checkpoint.pt").exists():
        search = Search.resume(run_dir, progress=False)
        planned = dict(cell.search)
        if planned.get("recompute") == "auto":  # chosen by the memory of the machine the cell ran on
            planned["recompute"] = search.cfg.recompute
        if _comparable(dataclasses.asdict(search.cfg)) != _comparable(planned):
            raise RobustDartsError(f"{run_dir} holds a search with other settings than cell {cell.cell_id}; move "
                                   f"it away and rerun.")
    else:
        search = Search(cfg, run_dir, progress=False)
    search.run()
    return search


def _comparable(fields: dict) -> str:
    return json.dumps({k: v for k, v in fields.items() if k != "data_dir"}, sort_keys=True, default=list)


def search_record(search, cell: Cell, out: Path) -> dict[str, Any]:
    """What the store keeps of a finished search: its last-epoch numbers, per-epoch curves, end measurements."""
    from ..runs import environment

    records = search.run_dir.read_metrics()
    if not records:
        raise RobustDartsError(f"the search in {search.run_dir.path} recorded no epoch; rerun the grid.")
    last = records[-1]
    measured = [r["eigenvalue"] for r in records if r.get("eigenvalue") is not None]
    keys = list(dict.fromkeys(k for r in records for k, v in r.items() if isinstance(v, (int, float))))
    curves = {k: [r.get(k) if isinstance(r.get(k), (int, float)) else None for r in records] for k in keys}
    return {"epochs": int(search.epoch), "supernet_val_acc": last.get("val_acc"),
            "supernet_train_acc": last.get("train_acc"), "supernet_val_loss": last.get("val_loss"),
            "supernet_params": int(search.num_weight_parameters), "skip_normal": last.get("skip_normal"),
            "eigenvalue": measured[-1] if measured else None, "search_seconds": last.get("wall_seconds"),
            "curves": curves, "extras": search_extras(search, cell),
            "metrics_path": str(search.run_dir.metrics_path.relative_to(out)), "environment": environment()}


def search_extras(search, cell: Cell) -> dict[str, Any]:
    """End-of-search measurements beyond metrics.jsonl: the normal cell's mean softmax mass per op (the
    continuous quantity behind the skip count) and the conv share of its non-``none`` mass, the norm of the
    searched ops' weights, and, when the grid measures it, λ_max over more validation batches."""
    from ..methods.recipe import derive_weights

    extras: dict[str, Any] = {}
    weights = derive_weights(search.recipe, search.arch.as_dict(), search.epoch)
    ops = search.space.ops.get("normal")
    normal = weights.get("normal")
    if ops is not None and isinstance(normal, torch.Tensor) and normal.dim() == 2 and len(ops) == normal.shape[0]:
        mass = op_mass(normal, ops)
        extras["op_mass_normal"] = mass
        kept = sum(v for k, v in mass.items() if k != "none")
        extras["conv_share_normal"] = sum(v for k, v in mass.items() if "conv" in k) / kept if kept else None
    extras["op_weight_norm"] = float(torch.sqrt(sum(p.detach().pow(2).sum()
                                                    for n, p in search.supernet.named_parameters() if ".ops." in n)))
    batches = int(cell.measure.get("eigenvalue_batches", 0) or 0)
    if batches:
        extras["eigenvalue_settled"] = settled_eigenvalue(search, batches)
        extras["eigenvalue_batches"] = batches
    return extras


def op_mass(weights: torch.Tensor, ops: list[list[str]]) -> dict[str, float]:
    """Mean mixing weight of each op over the edges that offer it."""
    mass: dict[str, list[float]] = {}
    for edge, names in enumerate(ops):
        for j, name in enumerate(names):
            mass.setdefault(name, []).append(float(weights[edge, j]))
    return {name: mean(values) for name, values in mass.items()}


def settled_eigenvalue(search, batches: int) -> float:
    """λ_max at the end of the search over ``batches`` validation batches (the same batches for every method of a
    seed). The per-epoch measurement uses one batch, as RobustDARTS does; at small batches that is a noisy estimate
    (docs/collapse.md), and this is the end value to compare methods by. Cached in the run directory; the run's
    random state is left as it was."""
    from ..analysis.hessian import arch_hessian
    from ..data.stream import BatchStream
    from ..preserve import preserved
    from ..runs import atomic_write_text

    path = search.run_dir.path / f"eigenvalue-{batches}batches.json"
    cached = json.loads(path.read_text()) if path.exists() else {}
    if cached.get("epoch") == search.epoch:
        return cached["eigenvalue"]
    cfg = search.cfg
    stream = BatchStream(search.val_set, cfg.batch_size, search.augment, SETTLED_STREAM_SEED, search.device)
    with preserved(device=search.device):
        value = float(arch_hessian(search.supernet, search.arch, [next(stream) for _ in range(batches)],
                                   bn_mode=cfg.hessian_bn_mode,
                                   arch_weight_decay=cfg.arch_weight_decay)["eigenvalue"])
    atomic_write_text(path, json.dumps({"batches": batches, "epoch": search.epoch, "eigenvalue": value}))
    return value


# ---- a condition -------------------------------------------------------------------------------------------------
def condition_dir(run_dir: Path, k: CellCondition) -> Path:
    return run_dir / "conditions" / f"{_slug(k.label)}-{k.unit_id}"


@dataclasses.dataclass(frozen=True)
class Progress:
    """How far a cell's run directories are: epochs recorded in the search's and the trainings' metrics.jsonl."""
    search_epochs: int
    search_total: int
    train_epochs: int
    train_total: int

    @property
    def searched(self) -> float:
        return self.search_epochs / self.search_total if self.search_total else 1.0

    @property
    def trained(self) -> float:
        return self.train_epochs / self.train_total if self.train_total else 1.0

    @property
    def phase(self) -> str:
        if self.search_epochs < self.search_total or not self.train_total:
            return f"search {self.search_epochs}/{self.search_total}"
        return f"train {self.train_epochs}/{self.train_total}"


def _epochs_recorded(metrics: Path, total: int) -> int:
    try:
        return min(sum(1 for line in metrics.read_text().splitlines() if line.strip()), total)
    except OSError:
        return 0


def progress(cell: Cell, out: Path) -> Progress:
    """What an interrupted cell will not recompute when it resumes (its search and trainings continue from their
    last epoch). Only read from disk, so that ordering the work and the live view's ETA can credit it."""
    run_dir = Path(out) / cell.run_dir
    total = int(cell.search["epochs"])
    trainings = [k for k in cell.conditions if k.train is not None]
    return Progress(_epochs_recorded(run_dir / "metrics.jsonl", total), total,
                    sum(_epochs_recorded(condition_dir(run_dir, k) / "train" / "metrics.jsonl", int(k.train["epochs"]))
                        for k in trainings),
                    sum(int(k.train["epochs"]) for k in trainings))


def run_condition(search, cell: Cell, k: CellCondition, run_dir: Path, out: Path,
                  trained: dict[str, dict]) -> dict[str, Any]:
    """Derive the condition's genotype and train it from scratch (when the grid trains); the store's values."""
    from ..derive import derive_from_run
    from ..genotype import Genotype
    from ..train import Train

    folder = inside(out, condition_dir(run_dir, k).relative_to(out), f"condition {k.label}'s folder")
    records = search.run_dir.read_metrics()
    # The epoch of the search's result: the last, or the stop epoch of an early-stopped run (DARTS-ES), whose
    # genotype.json holds that epoch's architecture.
    result_epoch = next((r["es_stop_epoch"] for r in reversed(records) if r.get("es_stop_epoch") is not None),
                        search.epoch - 1)
    if k.policy is None:
        genotype, epoch = Genotype.load(run_dir / "genotype.json"), result_epoch
    else:
        run_level = known_policies().get(k.policy, ()) is None
        genotype, epoch = derive_from_run(run_dir, epoch=None if run_level else result_epoch, policy=k.policy,
                                          condition=k.condition)
    folder.mkdir(parents=True, exist_ok=True)
    genotype.save(folder / "genotype.json")
    values: dict[str, Any] = {"genotype": genotype.to_dict(), "derive_epoch": int(epoch),
                              "genotype_skip_normal": sum(1 for g in genotype.normal if g[0] == "skip_connect")}
    if k.train is None:
        return values
    cfg = train_config(k, genotype, folder / "genotype.json")
    key = _training_key(genotype.to_dict(), dataclasses.asdict(cfg))
    if key in trained:  # another condition of this cell derived the same architecture: its training is this one
        return {**values, **trained[key]}
    train_dir = folder / "train"
    if (train_dir / "checkpoint.pt").exists():
        train = Train.resume(train_dir, progress=False)
        if _comparable({**dataclasses.asdict(train.cfg), "genotype": ""}) != \
                _comparable({**dataclasses.asdict(cfg), "genotype": ""}) or \
                train.genotype.to_dict() != genotype.to_dict():
            raise RobustDartsError(f"{train_dir} holds a training with other settings than condition {k.label}; "
                                   f"move it away and rerun.")
    else:
        train = Train(cfg, genotype, train_dir, progress=False)
    summary = train.run()
    numbers = {"params": summary["params"], "params_with_aux": summary["params_with_aux"],
               "test_acc": summary["final_test_acc"], "valid_acc": summary.get("final_valid_acc"),
               "train_epochs": summary["epochs"], "train_seconds": summary["wall_seconds"],
               "train_dir": str(train_dir.relative_to(out)),
               "train_config": dataclasses.asdict(cfg)}
    trained[key] = numbers
    return {**values, **numbers}


def train_config(k: CellCondition, genotype, path: Path):
    """The training's config: the evaluation recipe of the genotype's space on the dataset under the condition
    (eval_recipe: DARTS' defaults, or LHD's drop path, 1M width ...) < the sizes preset < the grid's values."""
    from ..config import TrainConfig, build

    overrides = dict(k.train_overrides if k.train_overrides is not None else k.train)
    base: dict[str, Any] = {}
    try:
        from ..eval_recipe import train_defaults
    except ImportError:  # no per-space evaluation recipe: TrainConfig's defaults (DARTS')
        train_defaults = None
    if train_defaults is not None:
        base = train_defaults(genotype, overrides["dataset"], k.condition if k.policy == "lhd" else None)
    return build(TrainConfig, {**overrides, "genotype": str(path)}, "train", base=base)


def _training_key(genotype: dict, train: dict) -> str:
    return json.dumps([genotype, {k: v for k, v in train.items() if k not in ("genotype", "data_dir")}],
                      sort_keys=True, default=list)


def _train_numbers(row: dict) -> dict[str, Any]:
    return {k: row[k] for k in ("params", "params_with_aux", "test_acc", "valid_acc", "train_epochs",
                                "train_seconds", "train_dir")}


# ---- plumbing ----------------------------------------------------------------------------------------------------
def _reason(error: BaseException, run_dir: Path) -> str:
    """One sentence for the store: a user error's own, else the exception's first line (its traceback is kept in
    the cell's bench-error.log)."""
    if isinstance(error, RobustDartsError):
        return str(error)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "bench-error.log", "a") as log:
            log.write("".join(traceback.format_exception(error)) + "\n")
    except OSError:
        pass
    first = (str(error).strip().splitlines() or [""])[0][:300]
    return f"{type(error).__name__}: {first}" + ("" if first.endswith(".") else f" (traceback in "
                                                f"{run_dir / 'bench-error.log'}).")


@contextmanager
def _cell_lock(out: Path, cell_id: str) -> Iterator[bool]:
    """An exclusive, non-blocking lock per cell across processes (and ``bench run`` invocations), so two never
    write one run directory; released by the OS if the holder dies."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield True
        return
    folder = inside(out, "locks", "the grid's locks folder")
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{cell_id}.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
