"""The results store: one SQLite file per grid output directory (``DIR/results.sqlite``), stdlib ``sqlite3``.

WAL mode lets readers (``bench status``, ``bench report``, the live view) read while workers write; every write is
one short ``BEGIN IMMEDIATE`` transaction with a busy timeout, so many worker processes (or several ``bench run``
invocations) can write at once. ``PRAGMA user_version`` holds the schema version; a store written by a newer
schema is refused rather than misread.

Tables: ``cells`` (one row per search: resolved config, status, timings, supernet metrics, per-epoch curves, the
run directory), ``results`` (one row per cell and condition: genotype, parameter counts, final test accuracy,
held-out validation accuracy, the training's run directory), ``meta`` (schema, the grid, its plan, the
environment). The view ``rows`` joins them: one row per cell and condition with everything.

The file is input like any other: an edited or damaged store must not become a traceback, a wrong number or a
write outside the grid's directory. Every read goes through one reader (``_select``, ``meta``) that checks the
tables, each value's type, JSON and status, and that each stored path stays under the directory; a problem is one
sentence naming the file. Every write of a cell's runner names the conditions it computes (``units``, the cell's
part of the plan: condition label -> unit id) and is refused, in the same transaction, when the registered plan no
longer plans the cell so (another ``bench run`` of a different grid registered its plan on this store since): a
runner then stops recording (``PlanReplaced``) rather than writing one grid's numbers under the other's ids.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import RobustDartsError, short

SCHEMA_VERSION = 1
FILENAME = "results.sqlite"
# A cell or a condition is in one of these states; 'done' and 'failed' are final until --retry-failed. Reading
# adds 'interrupted': marked running by a process of this host that no longer exists (the next run resumes it).
STATUSES = ("pending", "running", "done", "failed")
SHOWN_STATUSES = ("done", "running", "interrupted", "pending", "failed")


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, OverflowError, ValueError):  # gone, or no process id at all (an edited store)
        return False
    except OSError:  # exists, owned by another user
        return True
    try:  # a killed process nobody has reaped yet (a container's init may never) is a zombie: dead
        return Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    cell_id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    method TEXT NOT NULL, preset_method TEXT NOT NULL, variant TEXT NOT NULL,
    space TEXT NOT NULL, dataset TEXT NOT NULL, seed INTEGER NOT NULL,
    config TEXT NOT NULL,              -- the resolved SearchConfig (JSON)
    spec TEXT NOT NULL,                -- the whole cell as planned (JSON), conditions included
    run_dir TEXT NOT NULL,             -- relative to the store's directory
    status TEXT NOT NULL DEFAULT 'pending', error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, host TEXT, pid INTEGER,
    started REAL, finished REAL, search_seconds REAL,
    epochs INTEGER, supernet_val_acc REAL, supernet_train_acc REAL, supernet_val_loss REAL, supernet_params INTEGER,
    skip_normal INTEGER, eigenvalue REAL,
    curves TEXT,                       -- per-epoch metrics: {name: [value or null per epoch]} (JSON)
    extras TEXT,                       -- end-of-search measurements: λ_max over N batches, op masses (JSON)
    metrics_path TEXT, environment TEXT
);
CREATE TABLE IF NOT EXISTS results (
    cell_id TEXT NOT NULL REFERENCES cells(cell_id),
    condition TEXT NOT NULL,
    unit_id TEXT NOT NULL,
    policy TEXT, lhd_condition TEXT,
    train_config TEXT,                 -- the resolved TrainConfig (JSON), null when the grid trains nothing
    status TEXT NOT NULL DEFAULT 'pending', error TEXT,
    started REAL, finished REAL,
    genotype TEXT, derive_epoch INTEGER, genotype_skip_normal INTEGER,
    params INTEGER, params_with_aux INTEGER,
    test_acc REAL, valid_acc REAL, train_epochs INTEGER, train_seconds REAL, train_dir TEXT,
    PRIMARY KEY (cell_id, condition)
);
CREATE VIEW IF NOT EXISTS rows AS
    SELECT c.cell_id, c.position, c.method, c.preset_method, c.variant, c.space, c.dataset, c.seed, c.config,
           c.run_dir, c.status AS search_status, c.error AS search_error, c.search_seconds, c.epochs,
           c.supernet_val_acc, c.supernet_train_acc, c.supernet_params, c.skip_normal, c.eigenvalue, c.curves,
           c.extras, c.metrics_path, c.environment,
           r.condition, r.unit_id, r.policy, r.lhd_condition, r.train_config, r.status, r.error, r.genotype,
           r.derive_epoch, r.genotype_skip_normal, r.params, r.params_with_aux, r.test_acc, r.valid_acc,
           r.train_epochs, r.train_seconds, r.train_dir
    FROM cells c JOIN results r ON r.cell_id = c.cell_id;
"""

# What each column may hold, as the readers use it ('?': or null). Numbers are int or float (SQLite keeps text
# written into a numeric column as text, which the report's arithmetic would meet as a traceback); 'path' is a
# path relative to the store's directory that stays under it; the JSON columns hold the container named.
_CELL_KINDS = {
    "cell_id": "text", "position": "number", "method": "text", "preset_method": "text", "variant": "text",
    "space": "text", "dataset": "text", "seed": "number", "config": "dict", "spec": "dict", "run_dir": "path",
    "status": "status", "error": "text?", "attempts": "number", "host": "text?", "pid": "number?",
    "started": "number?", "finished": "number?", "search_seconds": "number?", "epochs": "number?",
    "supernet_val_acc": "number?", "supernet_train_acc": "number?", "supernet_val_loss": "number?",
    "supernet_params": "number?", "skip_normal": "number?", "eigenvalue": "number?", "curves": "curves?",
    "extras": "extras?", "metrics_path": "path?", "environment": "dict?"}
_RESULT_KINDS = {
    "cell_id": "text", "condition": "text", "unit_id": "text", "policy": "text?", "lhd_condition": "text?",
    "train_config": "dict?", "status": "status", "error": "text?", "started": "number?", "finished": "number?",
    "genotype": "dict?", "derive_epoch": "number?", "genotype_skip_normal": "number?", "params": "number?",
    "params_with_aux": "number?", "test_acc": "number?", "valid_acc": "number?", "train_epochs": "number?",
    "train_seconds": "number?", "train_dir": "path?"}
_ROW_KINDS = {**{k: v for k, v in _CELL_KINDS.items() if k not in ("status", "error")}, **_RESULT_KINDS,
              "search_status": "status", "search_error": "text?"}
_TABLES = {"meta": ("table", ("key", "value")), "cells": ("table", tuple(_CELL_KINDS)),
           "results": ("table", tuple(_RESULT_KINDS)),
           "rows": ("view", tuple(k for k in _ROW_KINDS if k not in ("spec", "attempts", "host", "pid", "started",
                                                                      "finished", "supernet_val_loss")))}
# The end measurements the report reads from ``extras``: numbers or null.
_EXTRA_NUMBERS = ("eigenvalue_settled", "eigenvalue_batches", "conv_share_normal", "op_weight_norm")


class PlanReplaced(RobustDartsError):
    """A runner's write refused: the registered plan no longer plans its cell with the conditions it computes."""


def units_of(cell) -> dict[str, str]:
    """A cell's part of the plan, what its runner's writes are keyed by: condition label -> unit id."""
    return {k.label: k.unit_id for k in cell.conditions}


def replaced_error(out: str | Path, cells: int) -> PlanReplaced:
    return PlanReplaced(f"another bench run registered a different grid in {Path(out) / FILENAME} while this one "
                        f"ran, so {cells} of this grid's cells are no longer planned as it plans them; this run "
                        f"stopped recording (what it finished is kept): give each grid its own --out, or rerun the "
                        f"grid that should own {out}.")


def stored_path_problem(value: Any) -> str | None:
    """Why ``value`` (a path read from a store, a grid or a label) is not a path under the grid's directory, or
    None: it must be relative, without '..' (an edited store once made a run write to ``../../../X``)."""
    if not isinstance(value, str) or not value or "\0" in value:
        return "is not a relative path"
    if os.path.isabs(value) or value.startswith("~") or ".." in Path(value).parts:
        return "leads out of the grid's directory"
    return None


def inside(out: str | Path, relative: str | Path, what: str) -> Path:
    """``out / relative`` after checking that it stays under ``out``: relative, without '..', and through no
    symbolic link below ``out`` (a planted ``OUT/cells`` link would steer a grid's writes elsewhere). ``out``
    itself may be a link: the user named it."""
    relative = str(relative)
    problem = stored_path_problem(relative)
    if problem:
        raise RobustDartsError(f"{what} {short(relative)} {problem}; robustdarts writes a grid's files only under "
                               f"{out}.")
    path = Path(out)
    for part in Path(relative).parts:
        path = path / part
        if path.is_symlink():
            raise RobustDartsError(f"{path} is a symbolic link, which could steer the writes to {what} elsewhere; "
                                   f"remove it (a grid writes only into real folders under {out}).")
    return path


class Store:
    """``DIR/results.sqlite``. ``Store(dir, create=True)`` makes it; otherwise it must exist. Opening checks the
    whole store (tables, meta, every row) so that a damaged one is refused in one sentence before anything reads or
    writes it; ``scan=False`` (a cell's worker, which the driver's ``check_out`` preceded) checks the tables and
    meta only — every row it reads is still checked as it is read — so that a grid of N cells costs N small reads,
    not N scans of the whole store."""

    def __init__(self, directory: str | Path, create: bool = False, scan: bool = True):
        self.dir = Path(directory)
        self.path = self.dir / FILENAME
        if self.path.is_symlink():
            raise RobustDartsError(f"{self.path} is a symbolic link; a grid's store is a plain file in its directory: "
                                   f"remove the link, or give the folder it leads to as the directory.")
        if not self.path.exists() and not create:
            raise RobustDartsError(f"{self.dir} holds no benchmark results ({FILENAME}); run robustdarts bench run "
                                   f"GRID --out {self.dir} first.")
        if create:  # a planted link would steer every cell's run directory (or lock) out of the directory
            for folder in ("cells", "locks"):
                inside(self.dir, folder, f"the grid's {folder} folder")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._conn = None
        self._planned: tuple[tuple, dict[str, list[str]]] | None = None  # (the plan's stored text, it parsed)
        try:
            self._open(create, scan)
        except BaseException:
            self.close()
            raise

    def _open(self, create: bool, scan: bool = True) -> None:
        try:
            self._conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA busy_timeout = 60000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise RobustDartsError(f"{self.path} is not a readable SQLite results store ({e}); move it away and "
                                   f"rerun the grid, which rebuilds it from the run directories.") from None
        if version > SCHEMA_VERSION:
            raise RobustDartsError(f"{self.path} has schema version {version}, newer than this robustdarts' "
                                   f"{SCHEMA_VERSION}; upgrade robustdarts to read it.")
        if version < SCHEMA_VERSION:
            if not create:  # every store bench run makes has its version; a reader writes nothing
                raise self._damaged("it has no schema version (it was not made by robustdarts bench run)")
            with self.transaction() as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self._check(scan)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with BEGIN IMMEDIATE so that concurrent writers queue on the busy timeout
        instead of failing on a lock upgrade."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @contextmanager
    def _cell_write(self, cell_id: str, units: Mapping[str, str] | None) -> Iterator[sqlite3.Connection]:
        """A write of a cell's runner: refused (PlanReplaced, nothing written) when ``units`` is given and the
        plan no longer plans the cell with those conditions, checked inside the write's own transaction so that no
        registration can come between the check and the write."""
        with self.transaction() as db:
            if units is not None and not self.still_planned(cell_id, units):
                raise PlanReplaced(f"the plan in {self.path} no longer plans cell {cell_id} with the conditions its "
                                   f"runner computes (another bench run registered a different grid there); the "
                                   f"runner stopped recording.")
            yield db

    # ---- the one reader -----------------------------------------------------------------------------------------
    def _damaged(self, problem: str) -> RobustDartsError:
        return RobustDartsError(f"{self.path} is damaged: {problem}; move it away and rerun the grid with the same "
                                f"--out, which rebuilds it from the run directories.")

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise RobustDartsError(f"{self.path} stayed locked by another process for a minute ({e}); retry "
                                       f"when the grid's runners are idle.") from None
            raise self._damaged(f"reading it failed ({e})") from None
        except sqlite3.DatabaseError as e:
            raise self._damaged(f"reading it failed ({e})") from None

    def _select(self, sql: str, params: tuple = ()) -> list[dict]:
        """Rows of ``sql`` as dicts, every known column checked and its JSON decoded (``_ROW_KINDS``)."""
        out = []
        for r in self._query(sql, params):
            row = dict(r)
            for column, value in row.items():
                kind = _ROW_KINDS.get(column)
                if kind is None:
                    continue
                try:
                    row[column] = _checked(kind, value)
                except ValueError as e:
                    where = f"cell {short(row.get('cell_id'), 40)}" if column != "cell_id" else "a row"
                    raise self._damaged(f"column {column!r} of {where} {e}") from None
            out.append(row)
        return out

    def _check(self, scan: bool = True) -> None:
        """The whole store read once through the reader: its tables and views with their columns, the meta
        entries the commands read, the plan, and (``scan``) every cell and result row."""
        found = {(r["name"], r["type"]) for r in self._query("SELECT name, type FROM sqlite_master")}
        for name, (kind, columns) in _TABLES.items():
            if (name, kind) not in found:
                raise self._damaged(f"it has no {name!r} {kind}")
            have = {r["name"] for r in self._query(f"PRAGMA table_info({name})")}
            missing = [c for c in columns if c not in have]
            if missing:
                raise self._damaged(f"its {name!r} {kind} has no column {missing[0]!r}")
        for key in ("grid", "environment"):
            self.meta(key)
        self.plan()
        if scan:
            self._select("SELECT * FROM cells")
            self._select("SELECT * FROM results")

    # ---- meta ---------------------------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        return self._meta_value(key, self._query("SELECT value FROM meta WHERE key = ?", (key,)), default)

    def _meta_value(self, key: str, rows: list[sqlite3.Row], default: Any) -> Any:
        if not rows:
            return default
        try:
            value = json.loads(rows[0]["value"])
        except (TypeError, ValueError, RecursionError):
            raise self._damaged(f"its meta entry {key!r} is not JSON") from None
        expected = {"grid": dict, "plan": list, "environment": dict}.get(key)
        if expected is not None and not isinstance(value, expected):
            names = {dict: "object", list: "list"}
            raise self._damaged(f"its meta entry {key!r} holds a JSON {names.get(type(value), type(value).__name__)}"
                                f", not a JSON {names[expected]}")
        return value

    # ---- the plan -----------------------------------------------------------------------------------------------
    def register(self, grid: dict, cells: list) -> bool:
        """Record the grid and its cells: new cells and conditions as pending, known ones kept as they are (a rerun
        skips what is done). The plan (cell ids and condition labels) is what status and report read. A strict part
        of the registered plan (fewer cells, each with its conditions as planned) leaves the plan and its grid as
        they are, so that running a part of a study never narrows its status and report; returns whether it was
        such a part. Anything else (the whole plan again, an edited grid) is registered as the plan; a runner of
        the grid it replaces then finds its writes refused (``_cell_write``). One transaction: the check for a
        part and the registration see the same plan."""
        with self.transaction() as db:
            if len(cells) < len(self.plan()) and self.is_cut(cells):
                return True
            db.execute("INSERT OR REPLACE INTO meta VALUES ('grid', ?)", (json.dumps(grid),))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('plan', ?)",
                       (json.dumps([[c.cell_id, [k.label for k in c.conditions]] for c in cells]),))
            for c in cells:
                db.execute("INSERT OR IGNORE INTO cells (cell_id, position, method, preset_method, variant, space, "
                           "dataset, seed, config, spec, run_dir) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (c.cell_id, c.position, c.method, c.preset_method, c.variant, c.space, c.dataset, c.seed,
                            json.dumps(c.search), json.dumps(c.to_dict()), c.run_dir))
                # Labels, position and the spec follow the latest grid (a label may be renamed); numbers stay.
                db.execute("UPDATE cells SET position = ?, method = ?, variant = ?, spec = ? WHERE cell_id = ?",
                           (c.position, c.method, c.variant, json.dumps(c.to_dict()), c.cell_id))
                for k in c.conditions:
                    row = db.execute("SELECT unit_id FROM results WHERE cell_id = ? AND condition = ?",
                                     (c.cell_id, k.label)).fetchone()
                    if row is not None and row["unit_id"] != k.unit_id:
                        # The condition now means another derivation or training: its old numbers do not apply.
                        db.execute("DELETE FROM results WHERE cell_id = ? AND condition = ?", (c.cell_id, k.label))
                        db.execute("UPDATE cells SET status = 'pending' WHERE cell_id = ? AND status = 'done'",
                                   (c.cell_id,))
                        row = None
                    if row is None:
                        db.execute("INSERT INTO results (cell_id, condition, unit_id, policy, lhd_condition, "
                                   "train_config) VALUES (?, ?, ?, ?, ?, ?)",
                                   (c.cell_id, k.label, k.unit_id, k.policy, k.condition,
                                    None if k.train is None else json.dumps(k.train)))
                        db.execute("UPDATE cells SET status = 'pending' WHERE cell_id = ? AND status = 'done'",
                                   (c.cell_id,))
        return False

    def is_cut(self, cells: list) -> bool:
        """Whether ``cells`` is a part of the registered plan: each cell planned with the same condition labels,
        each condition with the same unit (derivation and training)."""
        planned = dict((cell, tuple(labels)) for cell, labels in self.plan())
        if not planned or any(planned.get(c.cell_id) != tuple(k.label for k in c.conditions) for c in cells):
            return False
        units = {(r["cell_id"], r["condition"]): r["unit_id"]
                 for r in self._select("SELECT cell_id, condition, unit_id FROM results")}
        return all(units.get((c.cell_id, k.label)) == k.unit_id for c in cells for k in c.conditions)

    def plan(self) -> list[tuple[str, list[str]]]:
        return self._plan_of(self._query("SELECT value FROM meta WHERE key = 'plan'"))

    def _plan_of(self, rows: list[sqlite3.Row]) -> list[tuple[str, list[str]]]:
        plan = self._meta_value("plan", rows, [])
        if not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], list)
                   and all(isinstance(label, str) for label in p[1]) for p in plan):
            raise self._damaged("its meta entry 'plan' is not a list of [cell id, [condition labels]]")
        return [(cell, labels) for cell, labels in plan]

    def still_planned(self, cell_id: str, units: Mapping[str, str]) -> bool:
        """Whether the registered plan plans ``cell_id`` with exactly the conditions ``units`` (label -> unit id):
        what a cell's runner checks before each write (the plan's version, as far as this cell is concerned).

        The plan is parsed once per stored text: parsing and checking a large grid's plan (about 1 ms per thousand
        cells) at every write cost more than the write, while reading the text and comparing it with the last one
        costs microseconds. The text itself is the key, not the file's times or size: the plan is a row of the
        store, and a commit in WAL mode leaves the main file as it is until a checkpoint, so a plan that another
        process replaced is still seen at the next write."""
        rows = self._query("SELECT value FROM meta WHERE key = 'plan'")
        text = tuple(r["value"] for r in rows)
        if self._planned is None or self._planned[0] != text:
            self._planned = (text, dict(self._plan_of(rows)))
        labels = self._planned[1].get(cell_id)
        if labels is None or set(labels) != set(units):
            return False
        stored = {r["condition"]: r["unit_id"] for r in
                  self._select("SELECT condition, unit_id FROM results WHERE cell_id = ?", (cell_id,))}
        return all(stored.get(label) == unit for label, unit in units.items())

    # ---- a cell's life ------------------------------------------------------------------------------------------
    # ``units`` (units_of(cell)): the conditions the writer computes; given, the write happens only while the plan
    # still plans the cell so (PlanReplaced otherwise). None: an unguarded write (tests, tools).
    def start_cell(self, cell_id: str, units: Mapping[str, str] | None = None) -> None:
        with self._cell_write(cell_id, units) as db:
            db.execute("UPDATE cells SET status = 'running', error = NULL, attempts = attempts + 1, host = ?, "
                       "pid = ?, started = ?, finished = NULL WHERE cell_id = ?",
                       (socket.gethostname(), os.getpid(), time.time(), cell_id))

    def finish_search(self, cell_id: str, units: Mapping[str, str] | None = None, **values: Any) -> None:
        """The search's numbers (curves and extras as JSON)."""
        for key in ("curves", "extras", "environment"):
            if key in values:
                values[key] = json.dumps(values[key])
        cols = ", ".join(f"{k} = ?" for k in values)
        with self._cell_write(cell_id, units) as db:
            db.execute(f"UPDATE cells SET {cols} WHERE cell_id = ?", (*values.values(), cell_id))

    def finish_cell(self, cell_id: str, status: str, error: str | None = None,
                    units: Mapping[str, str] | None = None) -> None:
        with self._cell_write(cell_id, units) as db:
            db.execute("UPDATE cells SET status = ?, error = ?, finished = ? WHERE cell_id = ?",
                       (status, error, time.time(), cell_id))

    def start_condition(self, cell_id: str, label: str, units: Mapping[str, str] | None = None) -> None:
        with self._cell_write(cell_id, units) as db:
            db.execute("UPDATE results SET status = 'running', error = NULL, started = ?, finished = NULL "
                       "WHERE cell_id = ? AND condition = ?", (time.time(), cell_id, label))

    def finish_condition(self, cell_id: str, label: str, status: str, error: str | None = None,
                         units: Mapping[str, str] | None = None, **values: Any) -> None:
        for key in ("genotype", "train_config"):
            if values.get(key) is not None and not isinstance(values[key], str):
                values[key] = json.dumps(values[key], default=list)
        values.update(status=status, error=error, finished=time.time())
        cols = ", ".join(f"{k} = ?" for k in values)
        with self._cell_write(cell_id, units) as db:
            db.execute(f"UPDATE results SET {cols} WHERE cell_id = ? AND condition = ?",
                       (*values.values(), cell_id, label))

    def abandon(self, cell_id: str) -> None:
        """Give back a cell this process marked running, and its running conditions, as pending: its runner
        stopped recording (the plan was replaced), so the runner of the new plan picks it up without waiting for
        this process to die."""
        with self.transaction() as db:
            mine = db.execute("UPDATE cells SET status = 'pending' WHERE cell_id = ? AND status = 'running' AND "
                              "host = ? AND pid = ?", (cell_id, socket.gethostname(), os.getpid())).rowcount
            if mine:
                db.execute("UPDATE results SET status = 'pending' WHERE cell_id = ? AND status = 'running'",
                           (cell_id,))

    # ---- reading ------------------------------------------------------------------------------------------------
    def cell_status(self) -> dict[str, str]:
        return {r["cell_id"]: r["status"] for r in self._select("SELECT cell_id, status FROM cells")}

    def cell_marks(self) -> dict[str, dict]:
        """cell id -> status, attempts, started, finished and error: what a cell's start and end change, without
        the heavy columns (bench.run's line report reads them twice a second)."""
        return {r["cell_id"]: r for r in
                self._select("SELECT cell_id, status, attempts, started, finished, error FROM cells")}

    def condition_status(self, cell_id: str) -> dict[str, str]:
        return {r["condition"]: r["status"] for r in
                self._select("SELECT condition, status FROM results WHERE cell_id = ?", (cell_id,))}

    def interrupted(self) -> set[str]:
        """Cells marked running by a process of this host that no longer exists (killed, or its machine rebooted):
        not running, but resumable. Cells of other hosts are taken at their word."""
        host = socket.gethostname()
        return {r["cell_id"] for r in self._select("SELECT cell_id, host, pid FROM cells WHERE status = 'running'")
                if r["host"] == host and not _alive(r["pid"])}

    def cells(self, planned: bool = True) -> list[dict]:
        """Cell rows (JSON columns decoded), in plan order; ``planned=False``: every cell ever recorded. A cell
        whose runner died reads as 'interrupted'."""
        stopped = self.interrupted()
        rows = self._select("SELECT * FROM cells ORDER BY position")
        for r in rows:
            if r["cell_id"] in stopped:
                r["status"] = "interrupted"
        if not planned:
            return rows
        order = {cell: i for i, (cell, _) in enumerate(self.plan())}
        return sorted((r for r in rows if r["cell_id"] in order), key=lambda r: order[r["cell_id"]])

    def rows(self, planned: bool = True, cell_id: str | None = None) -> list[dict]:
        """One row per cell and condition (the ``rows`` view, JSON columns decoded), in plan order; a cell whose
        runner died reads as 'interrupted', and so do its running conditions. ``cell_id``: that cell's rows only."""
        stopped = self.interrupted()
        where, params = ("WHERE cell_id = ? ", (cell_id,)) if cell_id is not None else ("", ())
        rows = self._select(f"SELECT * FROM rows {where}ORDER BY position, condition", params)
        for r in rows:
            if r["cell_id"] in stopped:
                r["search_status"] = "interrupted"
                if r["status"] in ("running", "pending"):
                    r["status"] = "interrupted"
        if not planned:
            return rows
        plan = self.plan()
        order = {(cell, label): (i, j) for i, (cell, labels) in enumerate(plan) for j, label in enumerate(labels)}
        return sorted((r for r in rows if (r["cell_id"], r["condition"]) in order),
                      key=lambda r: order[(r["cell_id"], r["condition"])])


def _checked(kind: str, value: Any) -> Any:
    """``value`` of a column of ``kind`` (see ``_CELL_KINDS``), JSON decoded; ValueError saying what is wrong."""
    optional, kind = kind.endswith("?"), kind.rstrip("?")
    if value is None:
        if optional:
            return None
        raise ValueError("is empty")
    if kind == "text":
        if not isinstance(value, str):
            raise ValueError(f"holds {short(value, 40)}, not text")
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"holds {short(value, 40)}, not a number")
        return value
    if kind == "status":
        if value not in STATUSES:
            raise ValueError(f"holds {short(value, 40)}, not one of {', '.join(STATUSES)}")
        return value
    if kind == "path":
        problem = stored_path_problem(value)
        if problem:
            raise ValueError(f"holds {short(value, 40)}, which {problem}")
        return value
    try:
        data = json.loads(value)
    except (TypeError, ValueError, RecursionError):
        raise ValueError(f"holds {short(value, 40)}, not JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"holds a JSON {type(data).__name__}, not an object")
    if kind == "curves" and not all(isinstance(v, list) and all(v_ is None or _number(v_) for v_ in v)
                                    for v in data.values()):
        raise ValueError("holds curves that are not lists of numbers")
    if kind == "extras" and not all(data.get(k) is None or _number(data[k]) for k in _EXTRA_NUMBERS):
        raise ValueError(f"holds a non-number under one of {', '.join(_EXTRA_NUMBERS)}")
    return data


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_out(out: str | Path, cells: list) -> None:
    """Before a grid writes anything into ``out``: ``out`` is a directory (or can be made), its store (when there
    is one) reads whole, and every cell's run directory (the store's, else the grid's) stays under ``out`` through
    no symbolic link; one sentence otherwise, nothing written."""
    from ..paths import check_output_dir

    out = check_output_dir(out, "--out")
    for folder in ("cells", "locks"):
        inside(out, folder, f"the grid's {folder} folder")
    stored: dict[str, str] = {}
    if os.path.lexists(out / FILENAME):
        with Store(out) as store:
            stored = {c["cell_id"]: c["run_dir"] for c in store.cells(planned=False)}
    for c in cells:
        inside(out, stored.get(c.cell_id) or c.run_dir, f"cell {c.cell_id}'s run directory")
