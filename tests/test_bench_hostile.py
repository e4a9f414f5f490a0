"""The bench layer against hostile input (issue 25: points 1, 2, 3, 7, 8, 11's report parts, 12).

The store is input like any file: a tampered one (missing tables, broken JSON, a wrong type, an unknown status,
text in a numeric column, a run directory outside --out), a planted symbolic link or an output path on a directory
must end in exit 2, at most three lines, no traceback and nothing changed on disk, through ``run_cli`` as a user
sees it. Two runners of different grids on one store never mix their numbers (every interleaving of their writes
is tried at store level, and a real ``bench run`` whose plan is replaced stops with one sentence). Labels are text:
``$...$`` draws as written, a CSV cell that a spreadsheet would run as a formula starts with '.

The store is built once by writing rows directly (no training: the numbers are made up and known), from a tiny
synthetic grid's real plan.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from conftest import invoke, snapshot
from robustdarts.bench import Store, grid_from_dict, make_plan
from robustdarts.bench.store import FILENAME, PlanReplaced, units_of

SIZES = {"batch_size": 8, "init_channels": 4, "layers": 3, "image_size": 8, "limit_images": 32}
GRID = {"name": "hostile", "methods": ["darts", "beta-darts"], "spaces": ["s3"], "datasets": ["synthetic"],
        "seeds": [0, 1], "search": {"epochs": 1, "leakage_every": 0, **SIZES},
        "train": {"epochs": 1, "limit_test": 16, **SIZES}}
# The same searches trained otherwise: the same cell ids, other condition unit ids (another grid's plan).
OTHER = {**GRID, "name": "other", "train": {**GRID["train"], "epochs": 2}}
EIGENVALUES = [0.25, -0.08, 0.5, 0.125]  # per cell; one negative: a number, never escaped in CSV



def fill(store: Store, plan, accuracy: float = 0.5) -> None:
    """Every cell and condition done with made-up numbers (test accuracy ``accuracy`` + its position / 100)."""
    for i, c in enumerate(plan.cells):
        units = units_of(c)
        store.start_cell(c.cell_id, units)
        store.finish_search(c.cell_id, units, epochs=1, supernet_val_acc=0.3, supernet_train_acc=0.35,
                            supernet_params=1000, skip_normal=i % 3, eigenvalue=EIGENVALUES[i],
                            search_seconds=1.0, curves={"epoch": [0, 1], "eigenvalue": [0.1, EIGENVALUES[i]],
                                                        "skip_normal": [1, i % 3]},
                            extras={"eigenvalue_settled": EIGENVALUES[i], "conv_share_normal": 0.5},
                            metrics_path=f"{c.run_dir}/metrics.jsonl", environment={"torch": "2", "threads": 1})
        for k in c.conditions:
            store.start_condition(c.cell_id, k.label, units)
            store.finish_condition(c.cell_id, k.label, "done", units=units,
                                   genotype={"normal": [["skip_connect", 0, 0]]}, derive_epoch=0,
                                   genotype_skip_normal=i % 3, params=2000 + i, params_with_aux=2100 + i,
                                   test_acc=accuracy + i / 100, valid_acc=0.4, train_epochs=1, train_seconds=1.0,
                                   train_dir=f"{c.run_dir}/conditions/x/train", train_config=k.train)
        store.finish_cell(c.cell_id, "done", units=units)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A finished store of the tiny grid (4 cells, one condition each) and the grid's file, built once."""
    root = tmp_path_factory.mktemp("hostile")
    plan = make_plan(grid_from_dict(GRID))
    with Store(root / "out", create=True) as store:
        store.register(plan.grid.to_dict(), plan.cells)
        fill(store, plan)
    (root / "grid.yaml").write_text(yaml.safe_dump(GRID))
    return root, plan


@pytest.fixture
def case(made, tmp_path):
    """A copy of the store and the grid file to tamper with: (folder, plan)."""
    root, plan = made
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    return tmp_path, plan


def sql(*statements):
    def change(folder: Path, plan) -> None:
        db = sqlite3.connect(folder / "out" / FILENAME)
        for s in statements:
            db.execute(s.replace("CELL", plan.cells[0].cell_id).replace("ELSEWHERE", str(folder / "elsewhere")))
        db.commit()
        db.close()
    return change


def link(name: str, to: str):
    def change(folder: Path, plan) -> None:
        (folder / to).mkdir(parents=True, exist_ok=True)
        path = folder / "out" / name.format(run=plan.cells[0].run_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(folder / to)
    return change


def store_link(folder: Path, plan) -> None:
    (folder / "out" / FILENAME).rename(folder / "real.sqlite")
    (folder / "out" / FILENAME).symlink_to(folder / "real.sqlite")


def junk_store(folder: Path, plan) -> None:
    (folder / "out" / FILENAME).write_bytes(b"not a database at all" * 100)


STATUS, JSON, HTML, RUN = (["bench", "status", "out"], ["bench", "report", "out", "--format", "json"],
                           ["bench", "report", "out", "--format", "html"],
                           ["bench", "run", "grid.yaml", "--out", "out", "--workers", "1", "--json"])
DAMAGED = "is damaged"
TAMPERED = [  # (name, change, fragments of the one sentence); each runs under status, report json/html and run
    ("results-table-missing", sql("DROP TABLE results"), [DAMAGED, "no 'results' table"]),
    ("meta-table-missing", sql("DROP TABLE meta"), [DAMAGED, "no 'meta' table"]),
    ("rows-view-missing", sql("DROP VIEW rows"), [DAMAGED, "no 'rows' view"]),
    ("meta-grid-not-json", sql("UPDATE meta SET value = '{broken' WHERE key = 'grid'"), [DAMAGED, "'grid'", "JSON"]),
    ("meta-grid-a-list", sql("UPDATE meta SET value = '[1, 2]' WHERE key = 'grid'"), [DAMAGED, "'grid'", "list"]),
    ("plan-a-mapping", sql("""UPDATE meta SET value = '{"a": 1}' WHERE key = 'plan'"""), [DAMAGED, "'plan'"]),
    ("plan-wrong-entries", sql("UPDATE meta SET value = '[1, [2]]' WHERE key = 'plan'"), [DAMAGED, "'plan'"]),
    ("curves-not-json", sql("UPDATE cells SET curves = 'not json'"), [DAMAGED, "'curves'", "not JSON"]),
    ("curves-of-text", sql("""UPDATE cells SET curves = '{"eigenvalue": ["big"]}'"""), [DAMAGED, "'curves'"]),
    ("extras-text", sql("""UPDATE cells SET extras = '{"eigenvalue_settled": "big"}'"""), [DAMAGED, "'extras'"]),
    ("genotype-a-list", sql("UPDATE results SET genotype = '[1]'"), [DAMAGED, "'genotype'", "list"]),
    ("cell-status-unknown", sql("UPDATE cells SET status = 'bogus'"), [DAMAGED, "'status'", "'bogus'"]),
    ("result-status-unknown", sql("UPDATE results SET status = 'weird'"), [DAMAGED, "'status'", "'weird'"]),
    ("text-in-test-acc", sql("UPDATE results SET test_acc = 'abc'"), [DAMAGED, "'test_acc'", "not a number"]),
    ("text-in-seed", sql("UPDATE cells SET seed = 'x'"), [DAMAGED, "'seed'", "not a number"]),
    ("blob-in-method", sql("UPDATE cells SET method = x'00ff'"), [DAMAGED, "'method'", "not text"]),
    ("no-schema-version", sql("PRAGMA user_version = 0"), [DAMAGED, "schema version"]),
    ("not-a-database", junk_store, ["not a readable SQLite results store"]),
    # the store steering writes out of --out (point 2): refused before anything is created there
    ("run-dir-climbs-out", sql("UPDATE cells SET run_dir = '../../../X' WHERE cell_id = 'CELL'"),
     [DAMAGED, "'run_dir'", "leads out of"]),
    ("run-dir-absolute", sql("UPDATE cells SET run_dir = 'ELSEWHERE/X' WHERE cell_id = 'CELL'"),
     [DAMAGED, "'run_dir'", "leads out of"]),
    ("train-dir-climbs-out", sql("UPDATE results SET train_dir = 'cells/../../x'"),
     [DAMAGED, "'train_dir'", "leads out of"]),
    ("store-is-a-link", store_link, ["symbolic link", FILENAME]),
]
RUN_ONLY = [  # planted links that would redirect a grid's writes (point 3): bench run refuses, writes nothing
    ("cells-is-a-link", link("cells", "elsewhere"), ["out/cells is a symbolic link"]),
    ("locks-is-a-link", link("locks", "elsewhere"), ["out/locks is a symbolic link"]),
    ("run-dir-is-a-link", link("{run}", "elsewhere/run"), ["is a symbolic link", "run directory"]),
]
REPORT_ONLY = [  # a stored grid that is a mapping but no grid: what the report reads of it (its selections)
    ("meta-grid-not-a-grid", sql("""UPDATE meta SET value = '{"name": "x"}' WHERE key = 'grid'"""),
     ["the grid stored in", FILENAME, "no 'methods' axis"]),
]
COMMANDS = {"status": STATUS, "report-json": JSON, "report-html": HTML, "run": RUN}
CASES = [pytest.param(change, COMMANDS[command], fragments, id=f"{name}-{command}")
         for name, change, fragments in TAMPERED for command in COMMANDS] + \
        [pytest.param(change, RUN, fragments, id=name) for name, change, fragments in RUN_ONLY] + \
        [pytest.param(change, args, fragments, id=f"{name}-{command}") for name, change, fragments in REPORT_ONLY
         for command, args in (("report-json", JSON), ("report-html", HTML))]


@pytest.mark.parametrize("change, args, fragments", CASES)
def test_hostile_store_or_links_are_one_sentence_and_change_nothing(case, change, args, fragments):
    folder, plan = case
    change(folder, plan)
    before = snapshot(folder)
    code, output = invoke(args, folder)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2, output
    assert len(lines) <= 3 and "Traceback" not in output, output
    assert all(f in " ".join(output.split()) for f in fragments), output
    assert snapshot(folder) == before, output  # nothing written, created or removed (no X, no report.html)


def test_inside_keeps_every_write_under_out_and_off_links(tmp_path):
    """The one gate of a cell's writes (run directory, condition folders, locks): a relative path without '..'
    through real folders; a link at any depth below --out is refused, --out itself may be one (the user's)."""
    from robustdarts.bench.store import inside
    from robustdarts.errors import RobustDartsError

    out = tmp_path / "out"
    (out / "cells" / "run").mkdir(parents=True)
    assert inside(out, "cells/run/conditions/c-1", "x") == out / "cells" / "run" / "conditions" / "c-1"
    for bad in ("../x", "cells/../../x", str(tmp_path / "x"), "~/x", ""):
        with pytest.raises(RobustDartsError, match="leads out of|not a relative path"):
            inside(out, bad, "x")
    (tmp_path / "elsewhere").mkdir()
    (out / "cells" / "run" / "conditions").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RobustDartsError, match="conditions is a symbolic link"):
        inside(out, "cells/run/conditions/c-1", "condition c's folder")
    (tmp_path / "alias").symlink_to(out)
    assert inside(tmp_path / "alias", "cells/run", "x") == tmp_path / "alias" / "cells" / "run"


# ---- two grids on one store (point 1) ----------------------------------------------------------------------------
def _steps(store: Store, plan, accuracy: float) -> list:
    """A runner's writes for the first cell, in its order (register, start, search, condition, finish)."""
    c, grid = plan.cells[0], plan.grid.to_dict()
    units, [k] = units_of(c), c.conditions
    return [lambda: store.register(grid, plan.cells[:1]),  # one cell: the others would only repeat it
            lambda: store.start_cell(c.cell_id, units),
            lambda: store.finish_search(c.cell_id, units, epochs=1, eigenvalue=accuracy),
            lambda: store.start_condition(c.cell_id, k.label, units),
            lambda: store.finish_condition(c.cell_id, k.label, "done", units=units, test_acc=accuracy),
            lambda: store.finish_cell(c.cell_id, "done", units=units)]


def _consistent(store: Store, plans: dict[float, object]) -> None:
    """Every done condition holds the numbers of the grid whose unit id it carries, and a done cell has every
    condition of the registered plan done."""
    unit_of = {units_of(p.cells[0])[p.cells[0].conditions[0].label]: acc for acc, p in plans.items()}
    rows = [r for r in store.rows() if r["cell_id"] == next(iter(plans.values())).cells[0].cell_id]
    for r in rows:
        if r["status"] == "done":
            assert r["test_acc"] == unit_of[r["unit_id"]], r
    cells = {c["cell_id"]: c["status"] for c in store.cells()}
    for r in rows:
        if cells[r["cell_id"]] == "done":
            assert r["status"] == "done", r


def test_every_interleaving_of_two_grids_runners_keeps_the_store_consistent(tmp_path):
    """Runner A (grid GRID, writes test accuracy 0.1) and runner B (grid OTHER: the same searches trained
    otherwise, writes 0.2) on one store, their six writes interleaved in every order (A registers first: the
    other half is the same by symmetry). A runner stops at its first refused write (PlanReplaced, as the worker
    does) and gives its cell back. Whatever the order, no done row carries the other grid's numbers, a done cell
    has its plan's conditions done, and the runner of the grid registered last completes the cell with its own
    numbers."""
    a_plan, b_plan = make_plan(grid_from_dict(GRID)), make_plan(grid_from_dict(OTHER))
    assert [c.cell_id for c in a_plan.cells] == [c.cell_id for c in b_plan.cells]
    assert units_of(a_plan.cells[0]) != units_of(b_plan.cells[0])
    orders = [tuple("A" if i in (0, *rest) else "B" for i in range(12))
              for rest in itertools.combinations(range(1, 12), 5)]
    assert len(orders) == 462 == len(set(orders))
    refused = 0
    with Store(tmp_path, create=True) as store:
        for order in orders:
            with store.transaction() as db:  # a fresh store for each order (making one a file costs 70 ms)
                for statement in ("DELETE FROM results", "DELETE FROM cells", "DELETE FROM meta WHERE key = 'plan'"):
                    db.execute(statement)
            steps = {"A": iter(_steps(store, a_plan, 0.1)), "B": iter(_steps(store, b_plan, 0.2))}
            stopped, taken = set(), {"A": 0, "B": 0}
            for who in order:
                step = next(steps[who])
                taken[who] += 1
                if who in stopped:
                    continue
                try:
                    step()
                except PlanReplaced:
                    stopped.add(who)
                    if taken[who] > 2:  # it had marked the cell running (both runners are this process here)
                        store.abandon(a_plan.cells[0].cell_id)
                    refused += 1
            _consistent(store, {0.1: a_plan, 0.2: b_plan})
            assert "B" not in stopped  # B registered last (A's registration comes first): its plan is the store's
            [row] = [r for r in store.rows() if r["cell_id"] == b_plan.cells[0].cell_id]
            assert row["status"] == "done" and row["test_acc"] == 0.2, order
            assert row["unit_id"] == units_of(b_plan.cells[0])[row["condition"]]
            assert store.cell_status()[b_plan.cells[0].cell_id] == "done"
    assert refused == 462 - 1  # A is refused unless it finished before B registered (one order)


def test_a_bench_run_whose_plan_another_grid_replaced_stops_with_one_sentence(case, monkeypatch):
    """`bench run GRID` while another `bench run OTHER` registers its plan on the same --out between this run's
    registration and its cells: the worker's first write is refused, the run records nothing and ends in exit 2
    with one sentence; the store holds OTHER's plan as OTHER registered it."""
    from robustdarts.bench import backends
    from robustdarts.bench.cell import run_cell_task

    folder, _ = case
    shutil.rmtree(folder / "out")
    other = make_plan(grid_from_dict(OTHER))

    def interleaved(todo, out, workers, threads, address, retry_failed, tick):
        with Store(out) as store:  # the other runner, between this one's registration and its workers
            store.register(other.grid.to_dict(), other.cells)
        return {c.cell_id: run_cell_task(c.to_dict(), str(out), threads, retry_failed) for c in todo}

    monkeypatch.setattr(backends, "_run_local", interleaved)
    code, output = invoke(RUN, folder)
    assert code == 2 and len(output.strip().splitlines()) <= 3 and "Traceback" not in output, output
    assert "another bench run registered a different grid" in output and "own --out" in output, output
    with Store(folder / "out") as store:
        assert store.meta("grid")["name"] == "other"
        assert {r["unit_id"] for r in store.rows()} == {k.unit_id for c in other.cells for k in c.conditions}
        assert {r["status"] for r in store.rows()} == {"pending"} and {c["attempts"] for c in store.cells()} == {0}


def test_a_cell_whose_plan_is_replaced_mid_search_records_nothing_and_is_given_back(case, monkeypatch):
    """The other grid registers while this runner searches: the search's record is refused, the cell is set back
    to pending (not left 'running'), and nothing of this runner's reaches the store."""
    from robustdarts.bench import cell as cell_module

    folder, plan = case
    shutil.rmtree(folder / "out")
    other = make_plan(grid_from_dict(OTHER))
    with Store(folder / "out", create=True) as store:
        store.register(plan.grid.to_dict(), plan.cells)

    def searching(cell, run_dir):
        with Store(folder / "out") as store:
            store.register(other.grid.to_dict(), other.cells)
        return None

    monkeypatch.setattr(cell_module, "_search", searching)
    monkeypatch.setattr(cell_module, "search_record", lambda search, cell, out: {"epochs": 1, "eigenvalue": 9.0})
    assert cell_module.execute_cell(plan.cells[0], folder / "out") == "replaced"
    with Store(folder / "out") as store:
        [row] = [c for c in store.cells() if c["cell_id"] == plan.cells[0].cell_id]
        assert row["status"] == "pending" and row["eigenvalue"] is None and row["attempts"] == 1
        assert {r["status"] for r in store.rows()} == {"pending"}


# ---- reports: symlinks, output paths, labels ---------------------------------------------------------------------
def test_reports_replace_planted_links_instead_of_writing_through_them(case):
    """report.html and a Markdown plot planted as links to a victim file: the report replaces the links with its
    own files (temp file + rename), the victim stays as it was."""
    folder, _ = case
    victim = folder / "victim.txt"
    victim.write_text("keep me")
    (folder / "out" / "report.html").symlink_to(victim)
    (folder / "r-curves.png").symlink_to(victim)
    code, output = invoke(HTML, folder)
    assert code == 0, output
    code, output = invoke(["bench", "report", "out", "--out", "r.md"], folder)
    assert code == 0, output
    assert victim.read_text() == "keep me"
    for path in (folder / "out" / "report.html", folder / "r-curves.png"):
        assert not path.is_symlink() and path.stat().st_size > 1000
    assert (folder / "out" / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert (folder / "r-curves.png").read_bytes().startswith(b"\x89PNG")


def test_report_out_in_a_new_folder_is_made_and_written_whole(case):
    folder, _ = case
    code, output = invoke(["bench", "report", "out", "--out", "new/sub/r.md"], folder)
    assert code == 0, output
    written = sorted(p.name for p in (folder / "new" / "sub").iterdir())
    assert written == ["r-accuracy_params.png", "r-accuracy_skips.png", "r-curves.png", "r-ranks.png", "r.md"]
    assert "](r-curves.png)" in (folder / "new" / "sub" / "r.md").read_text()


@pytest.mark.parametrize("out, prepare, fragments", [
    ("taken", lambda f: (f / "taken").mkdir(), ["--out", "taken", "is a directory"]),
    ("file.txt/r.md", lambda f: (f / "file.txt").write_text("x"), ["lies under", "file.txt", "which is a file"]),
    ("r.md", lambda f: (f / "r-ranks.png").mkdir(), ["r-ranks.png", "is a directory"]),
], ids=["out-is-a-directory", "out-under-a-file", "plot-path-is-a-directory"])
def test_report_out_is_checked_before_anything_is_written(case, out, prepare, fragments):
    folder, _ = case
    prepare(folder)
    before = snapshot(folder)
    code, output = invoke(["bench", "report", "out", "--out", out], folder)
    assert code == 2 and len(output.strip().splitlines()) <= 3 and "Traceback" not in output, output
    assert all(f in " ".join(output.split()) for f in fragments), output
    assert snapshot(folder) == before  # no PNG left behind


LABELS = ["=HYPERLINK(\"http://x\",\"y\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "plain"]


def test_csv_report_escapes_formula_labels_and_keeps_numbers(case):
    """A text cell starting with =, +, -, @ gets a leading ' (a spreadsheet shows it as text); numbers, negative
    ones included, are written as they are."""
    folder, plan = case
    labels = dict(zip([c.cell_id for c in plan.cells], LABELS))
    db = sqlite3.connect(folder / "out" / FILENAME)
    for cell, label in labels.items():
        db.execute("UPDATE cells SET method = ? WHERE cell_id = ?", (label, cell))
    db.commit()
    db.close()
    code, output = invoke(["bench", "report", "out", "--format", "csv"], folder)
    assert code == 0, output
    rows = list(csv.DictReader(io.StringIO(output)))
    assert {r["cell_id"]: r["method"] for r in rows} == \
        {cell: (label if label == "plain" else "'" + label) for cell, label in labels.items()}
    assert [float(r["eigenvalue"]) for r in rows] == EIGENVALUES  # -0.08 stays a number
    assert {r["seed"] for r in rows} == {"0", "1"}


MATH = ["$\\frac{$", "a$b$c", "$x"]


def test_dollar_labels_draw_as_text_in_every_report_plot(case):
    """Method labels that matplotlib would parse as (broken) mathtext: every plot of the report is drawn, the
    labels shown as written."""
    from robustdarts.bench.report import build, plots

    folder, plan = case
    db = sqlite3.connect(folder / "out" / FILENAME)
    for c, label in zip(plan.cells[::2], MATH):
        db.execute("UPDATE cells SET method = ?, space = ? WHERE method = ?", (label, "$\\s3{$", c.method))
    db.commit()
    db.close()
    with Store(folder / "out") as store:
        report = build(store)
    assert {e["method"] for e in report["_all"]} == set(MATH[:2])
    assert sorted(plots(report)) == ["accuracy_params", "accuracy_skips", "curves", "ranks"]
    code, output = invoke(["bench", "report", "out", "--out", "r.md"], folder)
    assert code == 0 and (folder / "r-ranks.png").exists(), output


def test_dollar_run_names_draw_as_text_in_plot(tmp_path):
    """`robustdarts plot` overlays two runs whose directory names hold $...$: the legend shows the names."""
    runs = []
    for name in ("$\\frac{$", "b$x$y"):
        run = tmp_path / name
        run.mkdir()
        (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "train_loss": 1.0 / (e + 1),
                                                               "val_acc": 0.1 * e}) + "\n" for e in range(3)))
        runs.append(run)
    code, output = invoke(["plot", *runs, "--out", tmp_path / "both.png", "--no-alpha"], tmp_path)
    assert code == 0, output
    assert (tmp_path / "both.png").read_bytes().startswith(b"\x89PNG")
    from robustdarts.viz.curves import render_curves

    fig, axes = render_curves(runs)
    labels = [t.get_text() for ax in axes.values() for t in ax.get_legend().get_texts()]
    assert "$\\frac{$: train_loss" in labels and "b$x$y: val_acc" in labels
