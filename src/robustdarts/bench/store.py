"""The results store: one SQLite file per grid output directory (``DIR/results.sqlite``), stdlib ``sqlite3``.

WAL mode lets readers (``bench status``, ``bench report``, the live view) read while workers write; every write is
one short ``BEGIN IMMEDIATE`` transaction with a busy timeout, so many worker processes (or several ``bench run``
invocations) can write at once. ``PRAGMA user_version`` holds the schema version; a store written by a newer
schema is refused rather than misread.

Tables: ``cells`` (one row per search: resolved config, status, timings, supernet metrics, per-epoch curves, the
run directory), ``results`` (one row per cell and condition: genotype, parameter counts, final test accuracy,
held-out validation accuracy, the training's run directory), ``meta`` (schema, the grid, its plan, the
environment). The view ``rows`` joins them: one row per cell and condition with everything.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import RobustDartsError

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
    except ProcessLookupError:
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


class Store:
    """``DIR/results.sqlite``. ``Store(dir, create=True)`` makes it; otherwise it must exist."""

    def __init__(self, directory: str | Path, create: bool = False):
        self.dir = Path(directory)
        self.path = self.dir / FILENAME
        if not self.path.exists() and not create:
            raise RobustDartsError(f"{self.dir} holds no benchmark results ({FILENAME}); run robustdarts bench run "
                                   f"GRID --out {self.dir} first.")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        try:
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
            with self.transaction() as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self._conn.close()

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

    # ---- meta ---------------------------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    # ---- the plan -----------------------------------------------------------------------------------------------
    def register(self, grid: dict, cells: list) -> bool:
        """Record the grid and its cells: new cells and conditions as pending, known ones kept as they are (a rerun
        skips what is done). The plan (cell ids and condition labels) is what status and report read. A strict part
        of the registered plan (fewer cells, each with its conditions as planned) leaves the plan and its grid as
        they are, so that running a part of a study never narrows its status and report; returns whether it was
        such a part. Anything else (the whole plan again, an edited grid) is registered as the plan."""
        if len(cells) < len(self.plan()) and self.is_cut(cells):
            return True
        with self.transaction() as db:
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
                 for r in self._conn.execute("SELECT cell_id, condition, unit_id FROM results")}
        return all(units.get((c.cell_id, k.label)) == k.unit_id for c in cells for k in c.conditions)

    def plan(self) -> list[tuple[str, list[str]]]:
        return [(cell, labels) for cell, labels in self.meta("plan", [])]

    # ---- a cell's life ------------------------------------------------------------------------------------------
    def start_cell(self, cell_id: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE cells SET status = 'running', error = NULL, attempts = attempts + 1, host = ?, "
                       "pid = ?, started = ?, finished = NULL WHERE cell_id = ?",
                       (socket.gethostname(), os.getpid(), time.time(), cell_id))

    def finish_search(self, cell_id: str, **values: Any) -> None:
        """The search's numbers (curves and extras as JSON)."""
        for key in ("curves", "extras", "environment"):
            if key in values:
                values[key] = json.dumps(values[key])
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.transaction() as db:
            db.execute(f"UPDATE cells SET {cols} WHERE cell_id = ?", (*values.values(), cell_id))

    def finish_cell(self, cell_id: str, status: str, error: str | None = None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE cells SET status = ?, error = ?, finished = ? WHERE cell_id = ?",
                       (status, error, time.time(), cell_id))

    def start_condition(self, cell_id: str, label: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE results SET status = 'running', error = NULL, started = ?, finished = NULL "
                       "WHERE cell_id = ? AND condition = ?", (time.time(), cell_id, label))

    def finish_condition(self, cell_id: str, label: str, status: str, error: str | None = None,
                         **values: Any) -> None:
        for key in ("genotype", "train_config"):
            if values.get(key) is not None and not isinstance(values[key], str):
                values[key] = json.dumps(values[key], default=list)
        values.update(status=status, error=error, finished=time.time())
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.transaction() as db:
            db.execute(f"UPDATE results SET {cols} WHERE cell_id = ? AND condition = ?",
                       (*values.values(), cell_id, label))

    # ---- reading ------------------------------------------------------------------------------------------------
    def cell_status(self) -> dict[str, str]:
        return {r["cell_id"]: r["status"] for r in self._conn.execute("SELECT cell_id, status FROM cells")}

    def condition_status(self, cell_id: str) -> dict[str, str]:
        return {r["condition"]: r["status"] for r in
                self._conn.execute("SELECT condition, status FROM results WHERE cell_id = ?", (cell_id,))}

    def interrupted(self) -> set[str]:
        """Cells marked running by a process of this host that no longer exists (killed, or its machine rebooted):
        not running, but resumable. Cells of other hosts are taken at their word."""
        host = socket.gethostname()
        return {r["cell_id"] for r in self._conn.execute("SELECT cell_id, host, pid FROM cells WHERE status = "
                                                          "'running'") if r["host"] == host and not _alive(r["pid"])}

    def cells(self, planned: bool = True) -> list[dict]:
        """Cell rows (JSON columns decoded), in plan order; ``planned=False``: every cell ever recorded. A cell
        whose runner died reads as 'interrupted'."""
        stopped = self.interrupted()
        rows = [_decode(dict(r)) for r in self._conn.execute("SELECT * FROM cells ORDER BY position")]
        for r in rows:
            if r["cell_id"] in stopped:
                r["status"] = "interrupted"
        if not planned:
            return rows
        order = {cell: i for i, (cell, _) in enumerate(self.plan())}
        return sorted((r for r in rows if r["cell_id"] in order), key=lambda r: order[r["cell_id"]])

    def rows(self, planned: bool = True) -> list[dict]:
        """One row per cell and condition (the ``rows`` view, JSON columns decoded), in plan order; a cell whose
        runner died reads as 'interrupted', and so do its running conditions."""
        stopped = self.interrupted()
        rows = [_decode(dict(r)) for r in self._conn.execute("SELECT * FROM rows ORDER BY position, condition")]
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


def _decode(row: dict) -> dict:
    for key in ("config", "spec", "curves", "extras", "environment", "genotype", "train_config"):
        if row.get(key) is not None:
            row[key] = json.loads(row[key])
    return row
