"""robustdarts bench: grid expansion and ids, bad grids refused before anything is written, the store, selections,
a tiny grid on Fashion-MNIST end to end (local processes; SIGKILL mid-grid and rerun; Ray where installed), the
report's numbers against the cells' own metrics."""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean, stdev

import pytest
import yaml

from robustdarts.bench import Store, expand, grid_from_dict, load_grid, make_plan
from robustdarts.bench.grid import SelectRule, grid_size, preset_names
from robustdarts.runs import environment
from robustdarts.bench.report import summarize
from robustdarts.bench.select import apply_rule, compared
from robustdarts.errors import RobustDartsError

FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not FASHION.exists(), reason="Fashion-MNIST is not installed")

# 2 methods x 2 seeds x 2 conditions at tiny sizes: 4 searches of 2 epochs (3 steps each), 8 trainings of 1 epoch.
TINY = {
    "name": "tiny-test",
    "preset": "tiny",
    "methods": ["darts", "beta-darts"],
    "spaces": ["s3"],
    "datasets": ["fashion-mnist"],
    "seeds": [0, 1],
    "conditions": ["default", "selective-stop"],
    "search": {"epochs": 2, "limit_images": 200, "image_size": 8, "init_channels": 4, "layers": 3,
               "leakage_every": 0, "hessian_every": 0},
    "measure": {"eigenvalue_batches": 1},  # one λ_max per search (84 HVPs: most of a tiny search's time)
    "train": {"epochs": 1, "limit_images": 200, "valid_images": 50, "limit_test": 200, "image_size": 8,
              "init_channels": 4, "layers": 3},
}
TIMING = {"epoch_seconds", "wall_seconds"}


def cli(*args, **kwargs):
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "robustdarts.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=900, **kwargs)


def write_grid(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---- grids: expansion, ids, validation -------------------------------------------------------------------------
def test_expansion_is_deterministic_and_ids_are_hashes_of_the_resolved_config():
    cells = expand(grid_from_dict(TINY))
    assert [c.cell_id for c in cells] == [c.cell_id for c in expand(grid_from_dict(TINY))]
    assert len(cells) == 4 and all(len(c.conditions) == 2 for c in cells)
    assert [(c.method, c.seed) for c in cells] == [("darts", 0), ("darts", 1), ("beta-darts", 0), ("beta-darts", 1)]
    assert len({c.cell_id for c in cells}) == 4 and len({k.unit_id for c in cells for k in c.conditions}) == 8
    # The search's id ignores what does not change a search: the order of the seeds, the conditions and the
    # trainings, where the data lie; the same number written as 9e-4 or 0.0009 is one value.
    other = dict(TINY, seeds=[1, 0], conditions=["default"], train={"epochs": 3},
                 search={**TINY["search"], "data_dir": str(FASHION)})
    ids = {(c.method, c.seed): c.cell_id for c in expand(grid_from_dict(other))}
    assert ids == {(c.method, c.seed): c.cell_id for c in cells}
    a = expand(grid_from_dict(dict(TINY, search={**TINY["search"], "weight_decay": "9e-4"})))
    b = expand(grid_from_dict(dict(TINY, search={**TINY["search"], "weight_decay": 0.0009})))
    assert [c.cell_id for c in a] == [c.cell_id for c in b] != [c.cell_id for c in cells]
    # A changed training keeps the search and changes the condition's id.
    changed = expand(grid_from_dict(dict(TINY, train={**TINY["train"], "epochs": 2})))
    assert [c.cell_id for c in changed] == [c.cell_id for c in cells]
    assert changed[0].conditions[0].unit_id != cells[0].conditions[0].unit_id
    # Each cell resolves through the method presets: beta-darts keeps its own options, sizes come from the grid.
    assert cells[2].search["method_options"] == cells[3].search["method_options"] != {}
    assert cells[0].search["epochs"] == 2 and cells[0].conditions[0].train["valid_images"] == 50


def test_sweeps_make_labelled_variants_and_a_seed_count_is_a_range():
    grid = grid_from_dict(dict(TINY, seeds=3, methods=[
        {"method": "rdarts-l2", "label": "L2", "sweep": {"weight_decay": ["9e-4", 27e-4]}}]))
    cells = expand(grid)
    assert grid.seeds == (0, 1, 2)
    assert [(c.method, c.variant, c.search["weight_decay"]) for c in cells[::3]] == \
        [("L2", "weight_decay=0.0009", 9e-4), ("L2", "weight_decay=0.0027", 27e-4)]
    assert cells[0].run_dir.startswith("cells/L2-weight_decay=0.0009-s3-fashion-mnist-s0-")


@pytest.mark.parametrize("change, fragments", [
    ({"methods": ["darts", "dartz"]}, ["unknown method 'dartz'", "choose one of"]),
    ({"spaces": ["s9"]}, ["unknown space 's9'"]),
    ({"datasets": ["mnist"]}, ["unknown dataset 'mnist'"]),
    ({"conditions": ["default", "lhd:3ops"]}, ["condition 'lhd:3ops'", "lhd spaces, not to space 's3'"]),
    ({"conditions": ["bogus"]}, ["unknown condition 'bogus'"]),
    ({"conditions": ["lhd:2ops"]}, ["unknown LHD condition '2ops'"]),
    ({"seeds": []}, ["the 'seeds' axis is empty"]),
    ({"methods": []}, ["the 'methods' axis is empty"]),
    ({"search": {"epochz": 2}}, ["method darts", "unknown config field 'epochz'"]),
    ({"search": {"epochs": "many"}}, ["method darts", "'epochs'", "'many'"]),
    ({"search": {"method.bogus": 1}}, ["has no option 'bogus'"]),
    ({"train": {"layer": 3}}, ["condition default, train", "unknown config field 'layer'"]),
    ({"search": {"seed": 3}}, ["search sets 'seed', which the grid's axes set"]),
    ({"train": {"seed": 3}}, ["train sets 'seed'", "evaluation recipe decides", "seeds axis"]),
    ({"preset": "huge"}, ["unknown preset 'huge'"]),
    ({"select": [{"name": "best", "from": ["darts"], "by": "test_acc"}]}, ["unknown selection criterion 'test_acc'"]),
    ({"select": [{"name": "best", "from": ["drats"]}]}, ["unknown method label 'drats'"]),
    ({"methods": ["darts", "darts"]}, ["method label 'darts' appears twice"]),
    ({"colour": "red"}, ["unknown key 'colour'"]),
])
def test_malformed_grids_are_one_sentence_naming_the_entry(change, fragments):
    with pytest.raises(RobustDartsError) as info:
        expand(grid_from_dict({**TINY, **change}, "grid.yaml"))
    message = str(info.value)
    assert all(f in message for f in fragments), message
    assert message.count(". ") == 0 and message.endswith("."), message  # one sentence


def test_bench_run_on_a_malformed_grid_writes_nothing(tmp_path):
    grid = write_grid(tmp_path / "bad.yaml", {**TINY, "methods": ["darts", "no-such-method"]})
    result = cli("bench", "run", grid, "--out", tmp_path / "out")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())
    assert "unknown method 'no-such-method' in" in text and "bad.yaml" in text, text
    assert not (tmp_path / "out").exists()
    missing = cli("bench", "run", tmp_path / "nope.yaml", "--out", tmp_path / "out")
    assert missing.returncode == 2 and "grid file" in missing.stderr and not (tmp_path / "out").exists()


def test_presets_are_listed_and_collapse_cpu_is_the_collapse_example_protocol():
    assert {"rdarts", "lhd", "collapse-cpu"} <= set(preset_names())
    lhd = load_grid("lhd")
    assert len(lhd.methods) == 12 and grid_size(lhd)["cells"] == 12 * 3 * 5
    assert [c.label for c in lhd.conditions] == ["lhd:base", "lhd:3ops", "lhd:4out", "lhd:1m"]
    assert not grid_size(lhd)["missing_methods"]
    lhd_cells = expand(lhd)
    assert len(lhd_cells) == 180 and {c.method for c in lhd_cells} >= {"pc-darts", "surgenas", "gaea-erm"}
    assert [(k.policy, k.condition) for k in lhd_cells[0].conditions] == \
        [("lhd", "base"), ("lhd", "3ops"), ("lhd", "4out"), ("lhd", "1m")]
    assert grid_size(load_grid("rdarts"))["cells"] == 14 * 4 * 3 * 3

    # collapse-cpu resolves to exactly the configs examples/collapse.py built for docs/collapse.md (on the NCHW
    # path, the only one there was then).
    from robustdarts.config import TrainConfig, build
    from robustdarts.methods import search_config
    from robustdarts.speed import REFERENCE_ORDER

    plan = make_plan(load_grid("collapse-cpu"))
    assert len(plan.cells) == 15 and plan.trainings == 15
    for cell in plan.cells:
        wd = cell.search["weight_decay"] if cell.preset_method == "rdarts-l2" else None
        expected = search_config(dict(method=cell.preset_method, space="s3", dataset="fashion-mnist", epochs=30,
                                      batch_size=8, init_channels=4, layers=8, image_size=16, limit_images=2560,
                                      seed=cell.seed, hessian_every=5, leakage_every=0, arch_order="first",
                                      arch_lr=3e-3, method_options={}, **REFERENCE_ORDER),
                                 preset_base=None if wd is None else {"weight_decay": wd})
        assert cell.search_config() == expected
        train = build(TrainConfig, dict(genotype="", dataset="fashion-mnist", seed=cell.seed, epochs=15,
                                        batch_size=64, init_channels=8, layers=8, image_size=16, limit_images=10000,
                                        valid_images=2000))
        assert cell.conditions[0].train == {**vars(train)}
        assert cell.measure == {"eigenvalue_batches": 16}
    assert sorted({c.search["weight_decay"] for c in plan.cells if c.method == "rdarts-l2"}) == [9e-4, 27e-4, 81e-4]
    # The plan's cost is of the order docs/collapse.md measured (about 8 h on two cores, 16 thread-hours).
    assert 3 < plan.summary()["cpu_hours"] < 20


# ---- selections ------------------------------------------------------------------------------------------------
def _entry(method, seed, variant="", valid=None, oneshot=None, test=None, position=0, status="done"):
    return {"method": method, "variant": variant, "seed": seed, "space": "s3", "dataset": "fashion-mnist",
            "condition": "default", "status": status, "valid_acc": valid, "supernet_val_acc": oneshot,
            "test_acc": test, "position": position}


def test_rdarts_l2_selects_by_held_out_accuracy_never_by_test_or_one_shot():
    entries = [_entry("darts", 2, valid=0.70, oneshot=0.90, test=0.99, position=0),   # best one-shot and test
               _entry("rdarts-l2", 2, "weight_decay=0.0009", 0.75, 0.80, 0.71, 1),  # best held out
               _entry("rdarts-l2", 2, "weight_decay=0.0027", 0.74, 0.85, 0.80, 2)]
    rule = SelectRule("rdarts-l2", ("rdarts-l2", "darts"), "valid_acc")
    [selected] = apply_rule(entries, rule)
    assert selected["selected"] == "rdarts-l2 [weight_decay=0.0009]" and selected["test_acc"] == 0.71
    assert selected["candidates"] == {"darts": 0.70, "rdarts-l2 [weight_decay=0.0009]": 0.75,
                                      "rdarts-l2 [weight_decay=0.0027]": 0.74}
    [oneshot] = apply_rule(entries, SelectRule("rdarts-l2", ("rdarts-l2", "darts"), "supernet_val_acc"))
    assert oneshot["selected"] == "darts"  # DARTS' own run is the grid's 3e-4 point and may win
    shown, selections = compared(entries + [_entry("lambda-darts", 2, valid=0.9, test=0.9, position=3)], [rule])
    assert sorted((e["method"], e["variant"]) for e in shown) == [("darts", ""), ("lambda-darts", ""),
                                                                  ("rdarts-l2", "")]


def test_selection_per_seed_ties_to_the_earlier_cell_and_incomplete_groups_select_nothing():
    rule = SelectRule("l2", ("l2",), "valid_acc")
    entries = [_entry("l2", 2, "a", 0.8, position=0), _entry("l2", 2, "b", 0.8, position=1),
               _entry("l2", 3, "a", 0.7, position=2), _entry("l2", 3, "b", None, position=3, status="failed")]
    [selected] = apply_rule(entries, rule)
    assert selected["seed"] == 2 and selected["selected"] == "l2 [a]"
    # The comparison still counts seed 3's selection as planned: a stand-in without numbers, failed like its group.
    shown, selections = compared(entries + [_entry("l2", 4, "a", 0.7, position=4, status="running"),
                                            _entry("l2", 4, "b", 0.7, position=5, status="pending")], [rule])
    assert [(e["seed"], e["status"], e["valid_acc"]) for e in shown] == [(2, "done", 0.8), (3, "failed", None),
                                                                         (4, "running", None)]
    assert len(selections) == 1 and {e["method"] for e in shown} == {"l2"}
    numbers = ("skip_normal", "genotype_skip_normal", "eigenvalue", "eigenvalue_settled", "params")
    [row] = summarize([{**dict.fromkeys(numbers), **e} for e in shown])
    assert (row["n"], row["planned"]) == (1, 3)
    best = apply_rule([_entry("darts", s, valid=v, test=t, position=s) for s, v, t in
                       ((0, 0.5, 0.9), (1, 0.7, 0.6), (2, 0.6, 0.8))], SelectRule("best", ("darts",), over="seeds"))
    assert [(b["selected"], b["test_acc"], b["k"]) for b in best] == [("seed 1", 0.6, 3)]


def test_paired_differences_are_taken_seed_by_seed_over_the_seeds_both_finished():
    from robustdarts.bench.report import paired

    def e(method, seed, test, skips, lam, status="done"):
        return {**_entry(method, seed, valid=test, test=test, status=status), "genotype_skip_normal": skips,
                "eigenvalue_settled": lam}

    rows = [e("darts", 2, 0.80, 3, 0.26), e("darts", 3, 0.82, 5, 0.13), e("darts", 4, 0.78, 4, 0.20),
            e("l2", 2, 0.81, 5, 0.18), e("l2", 3, 0.84, 7, 0.21), e("l2", 4, None, None, None, "failed"),
            e("l2", 5, 0.99, 0, 0.01)]  # no DARTS seed 5 to pair with
    [row] = paired(rows)
    assert (row["method"], row["baseline"], row["seeds"], row["test_higher"]) == ("l2", "darts", [2, 3], [2, 2])
    assert row["test_acc"] == pytest.approx((0.015, 0.01 / 2 ** 0.5))  # +1 and +2 points: 1.5 ± 0.71
    assert row["genotype_skip_normal"] == pytest.approx((2.0, 0.0))
    assert row["eigenvalue_settled"] == pytest.approx((0.0, 0.08 * 2 ** 0.5))  # −0.08 and +0.08


# ---- the store -------------------------------------------------------------------------------------------------
def _write_many(directory: str, worker: int) -> None:
    from robustdarts.bench import Store

    with Store(directory) as store:
        for i in range(25):
            store.set_meta(f"w{worker}-{i}", {"worker": worker, "i": i})


def test_store_is_wal_versioned_and_takes_many_writers_at_once(tmp_path):
    import multiprocessing as mp

    from robustdarts.bench.store import SCHEMA_VERSION

    with Store(tmp_path, create=True) as store:
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    context = mp.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(str(tmp_path), w)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert all(w.exitcode == 0 for w in workers)
    with Store(tmp_path) as store:
        assert all(store.meta(f"w{w}-{i}") == {"worker": w, "i": i} for w in range(4) for i in range(25))
        store._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RobustDartsError, match="newer than this robustdarts"):
        Store(tmp_path)
    with pytest.raises(RobustDartsError, match="holds no benchmark results"):
        Store(tmp_path / "elsewhere")


def test_running_a_part_of_a_registered_plan_keeps_the_whole_plan(tmp_path):
    """A cut (fewer seeds: the same cells) leaves status and report on the whole study; the whole grid again, or an
    edited one (another training: other conditions), is registered as the plan."""
    whole = make_plan(load_grid("collapse-cpu"))
    cut = make_plan(dataclasses.replace(whole.grid, seeds=(3,)))
    with Store(tmp_path, create=True) as store:
        assert store.register(whole.grid.to_dict(), whole.cells) is False
        plan = store.plan()
        assert len(plan) == 15 and {c.cell_id for c in cut.cells} < {cell for cell, _ in plan}
        assert store.register(cut.grid.to_dict(), cut.cells) is True
        assert store.plan() == plan and store.meta("grid")["seeds"] == [2, 3, 4]
        assert store.register(whole.grid.to_dict(), whole.cells) is False and store.plan() == plan
        edited = make_plan(dataclasses.replace(cut.grid, train={**cut.grid.train, "epochs": 5}))
        assert [c.cell_id for c in edited.cells] == [c.cell_id for c in cut.cells]  # the same searches
        assert store.register(edited.grid.to_dict(), edited.cells) is False  # trained otherwise: a new plan
        assert [cell for cell, _ in store.plan()] == [c.cell_id for c in cut.cells]


def test_a_cell_whose_runner_died_reads_interrupted_in_status_report_and_live_view(tmp_path):
    import io

    from rich.console import Console

    from robustdarts.bench.live import LiveView

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer exists (reaped)
    plan = make_plan(load_grid("collapse-cpu"))
    alive, stopped = plan.cells[0].cell_id, plan.cells[1].cell_id
    with Store(tmp_path, create=True) as store:
        store.register(plan.grid.to_dict(), plan.cells)
        store.start_cell(alive)  # this process: running
        store.start_cell(stopped)
        store._conn.execute("UPDATE cells SET pid = ? WHERE cell_id = ?", (dead.pid, stopped))
        assert store.interrupted() == {stopped}
        assert {c["cell_id"]: c["status"] for c in store.cells()}[stopped] == "interrupted"
        assert {r["status"] for r in store.rows() if r["cell_id"] == stopped} == {"interrupted"}
        store._conn.execute("UPDATE cells SET host = 'elsewhere' WHERE cell_id = ?", (stopped,))
        assert store.interrupted() == set()  # another host's cells are taken at their word
        store._conn.execute("UPDATE cells SET host = ? WHERE cell_id = ?", (socket.gethostname(), stopped))
        console = Console(file=io.StringIO(), width=200)
        console.print(LiveView(plan, tmp_path, 2).render(store, plan.cells, time.time() - 60, time.time()))
    shown = console.file.getvalue()
    assert "1 running" in shown and "14 pending of 15" in shown and "seed 2" in shown and "seed 3" not in shown
    # bench status says how far the interrupted cell is (it resumes from there), read from its run directory
    _record_epochs(tmp_path / plan.cells[1].run_dir / "metrics.jsonl", 4)
    epochs = plan.cells[1].search["epochs"]
    status = cli("bench", "status", tmp_path)
    assert status.returncode == 0 and f"interrupted (search 4/{epochs})" in status.stdout, status.stdout
    at = {c["cell_id"]: c["at"] for c in json.loads(cli("bench", "status", tmp_path, "--json").stdout)["cells"]}
    assert at[stopped] == f"search 4/{epochs}" and at[plan.cells[2].cell_id] is None


def _record_epochs(path: Path, epochs: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"epoch": e}) + "\n" for e in range(epochs)))


def test_an_interrupted_cell_counts_by_the_epochs_on_its_disk_in_ordering_and_eta(tmp_path):
    """A resumed cell continues from its last epoch, so the work left is the planned cost less its recorded epochs:
    the runner starts the most work left first (a nearly finished cell waits behind a fresh one of the same cost),
    and the live view's ETA credits epochs finished in this session, not only finished cells."""
    import io

    from rich.console import Console

    from robustdarts.bench.backends import longest_first
    from robustdarts.bench.cell import Progress, condition_dir, progress
    from robustdarts.bench.live import LiveView, _duration

    plan = make_plan(load_grid("collapse-cpu"))
    darts2, darts3 = [c for c in plan.cells if c.method == "darts"][:2]
    lam = next(c for c in plan.cells if c.method == "lambda-darts")
    cost = plan.costs[darts2.cell_id]
    assert cost == plan.costs[darts3.cell_id] and cost.search_seconds > 0 and cost.train_seconds > 0
    assert cost.seconds == pytest.approx(cost.search_seconds + cost.train_seconds)
    epochs, k = darts2.search["epochs"], darts2.conditions[0]
    assert progress(darts2, tmp_path) == Progress(0, epochs, 0, k.train["epochs"])
    assert [c.cell_id for c in longest_first([darts2, darts3, lam], plan, tmp_path)] == \
        [lam.cell_id, darts2.cell_id, darts3.cell_id]  # nothing on disk: planned cost, in plan order when equal

    _record_epochs(tmp_path / darts2.run_dir / "metrics.jsonl", epochs - 3)
    p = progress(darts2, tmp_path)
    assert p.phase == f"search {epochs - 3}/{epochs}"
    assert cost.remaining(p.searched, p.trained) == pytest.approx(cost.search_seconds * 3 / epochs +
                                                                  cost.train_seconds)
    assert [c.cell_id for c in longest_first([darts2, darts3, lam], plan, tmp_path)] == \
        [lam.cell_id, darts3.cell_id, darts2.cell_id]

    with Store(tmp_path, create=True) as store:
        store.register(plan.grid.to_dict(), plan.cells)
        store.start_cell(darts2.cell_id)  # running in this process
        view, started = LiveView(plan, tmp_path, 2), time.time() - 500
        todo = [darts2, darts3]
        view.render(store, todo, started, started + 500)  # the baseline: what was left when the run began
        assert view.left_at_start == pytest.approx(cost.remaining(p.searched) + cost.seconds)
        _record_epochs(tmp_path / darts2.run_dir / "metrics.jsonl", epochs)  # its last 3 epochs, in 100 s
        _record_epochs(condition_dir(tmp_path / darts2.run_dir, k) / "train" / "metrics.jsonl", 2)
        console = Console(file=io.StringIO(), width=200)
        console.print(view.render(store, todo, started, started + 600))
    done_here = cost.search_seconds * 3 / epochs + cost.train_seconds * 2 / k.train["epochs"]
    left = cost.train_seconds * (1 - 2 / k.train["epochs"]) + cost.seconds
    shown = console.file.getvalue()
    assert f"ETA {_duration(left * 600 / done_here)}" in shown and f"train 2/{k.train['epochs']}" in shown


def test_two_runners_on_one_out_never_run_a_cell_twice(tmp_path):
    """`bench run` processes may share an --out: a cell another holds is 'busy' (its lock), and one that another
    finished after this runner planned is not started again (no new attempt, its record untouched)."""
    from robustdarts.bench.cell import _cell_lock, execute_cell

    plan = make_plan(load_grid("collapse-cpu"))
    held, finished = plan.cells[0], plan.cells[1]
    # no data where they look: were either cell started, it would fail at once rather than search for an hour
    held, finished = (dataclasses.replace(c, search={**c.search, "data_dir": str(tmp_path / "no-data")})
                      for c in (held, finished))
    with Store(tmp_path, create=True) as store:
        store.register(plan.grid.to_dict(), plan.cells)
        store.start_cell(finished.cell_id)
        store.finish_cell(finished.cell_id, "done")
        before = next(c for c in store.cells() if c["cell_id"] == finished.cell_id)
    with _cell_lock(tmp_path, held.cell_id) as mine:
        assert mine and execute_cell(held, tmp_path) == "busy"
    assert execute_cell(finished, tmp_path) == "done"
    with Store(tmp_path) as store:
        cells = {c["cell_id"]: c for c in store.cells()}
    assert cells[finished.cell_id] == before and cells[held.cell_id]["attempts"] == 0
    assert not (tmp_path / held.run_dir).exists() and not (tmp_path / finished.run_dir).exists()


def test_lhd_conditions_derive_and_train_under_the_lhd_evaluation_recipe(tmp_path):
    """One LHD cell (synthetic data, in this process): four derivations, each trained under LHD's recipe for its
    condition (eval_recipe: drop path p0 x |normal concat|, p0 by condition) below the grid's sizes."""
    from robustdarts.bench.cell import execute_cell

    grid = grid_from_dict({"name": "lhd-tiny", "methods": ["darts"], "spaces": ["lhd"], "datasets": ["synthetic"],
                           "seeds": [0], "conditions": ["lhd:base", "lhd:3ops", "4out", "lhd:1m"],
                           "search": {"epochs": 1, "batch_size": 8, "init_channels": 4, "layers": 3, "image_size": 8,
                                      "limit_images": 32, "leakage_every": 0},
                           "train": {"epochs": 1, "batch_size": 8, "init_channels": 4, "layers": 3, "image_size": 8,
                                     "limit_images": 32, "limit_test": 16, "valid_images": 8}})
    plan = make_plan(grid)
    with Store(tmp_path, create=True) as store:
        store.register(grid.to_dict(), plan.cells)
    assert execute_cell(plan.cells[0], tmp_path, threads=1) == "done"
    with Store(tmp_path) as store:
        rows = {r["condition"]: r for r in store.rows()}
    assert list(rows) == ["lhd:base", "lhd:3ops", "4out", "lhd:1m"] and all(r["status"] == "done" for r in rows.values())
    three = [len([g for g in rows["lhd:3ops"]["genotype"]["normal"] if g[2] == node]) for node in range(5)]
    assert max(three) == 3  # three (op, input) pairs per kept node
    for label, p0 in (("lhd:base", 0.01), ("lhd:1m", 0.015)):
        cfg, genotype = rows[label]["train_config"], rows[label]["genotype"]
        assert cfg["layers"] == 3 and cfg["init_channels"] == 4  # the grid's sizes win over the recipe's
        if "condition" in cfg:  # LHD's evaluation recipe is in this version
            assert cfg["condition"] == label.split(":")[1] and cfg["batch_size"] == 8
            assert cfg["drop_path"] == pytest.approx(p0 * len(genotype["normal_output"]["concat"]))


# ---- a tiny grid end to end ------------------------------------------------------------------------------------
def _table(out: Path) -> str:
    result = cli("bench", "report", out)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _own_metrics(out: Path, cell_run_dir: str, condition_dir_prefix: str) -> dict:
    """The final record of a condition's training, read from its own run directory (not from the store)."""
    [folder] = (out / cell_run_dir / "conditions").glob(f"{condition_dir_prefix}-*")
    train = folder / "train"
    if not train.exists():  # trained once for an identical genotype of another condition
        return None
    return [json.loads(line) for line in (train / "metrics.jsonl").read_text().splitlines()][-1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny grid run once, uninterrupted, with two local worker processes."""
    if not FASHION.exists():
        pytest.skip("Fashion-MNIST is not installed")
    root = tmp_path_factory.mktemp("bench")
    grid = write_grid(root / "tiny.yaml", TINY)
    out = root / "out"
    result = cli("bench", "run", grid, "--out", out, "--workers", 2, "--threads", 1, "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    summary = json.loads(result.stdout)
    assert summary["done"] == 4 and summary["failed"] == 0
    return grid, out, _table(out)


@needs_fashion
def test_tiny_grid_store_rows_and_report_numbers_come_from_the_cells(tiny_run):
    grid, out, table = tiny_run
    with Store(out) as store:
        rows = store.rows()
        cells = store.cells()
    assert len(cells) == 4 and all(c["status"] == "done" and c["attempts"] == 1 for c in cells)
    assert len(rows) == 8 and all(r["status"] == "done" for r in rows)
    assert {(r["method"], r["seed"], r["condition"]) for r in rows} == \
        {(m, s, k) for m in ("darts", "beta-darts") for s in (0, 1) for k in ("default", "selective-stop")}
    for r in rows:
        assert r["genotype"]["kind"] == "darts" and r["params"] > 0 and r["test_acc"] is not None
        assert r["valid_acc"] is not None and len(r["curves"]["skip_normal"]) == 2
        assert r["extras"]["eigenvalue_settled"] > 0 and r["extras"]["eigenvalue_batches"] == 1
        assert set(r["extras"]["op_mass_normal"]) == {"none", "skip_connect", "sep_conv_3x3"}
        assert r["train_config"]["valid_images"] == 50 and r["config"]["epochs"] == 2
    # Every cell is an ordinary run directory: derive reads it, and the default condition is its genotype.
    from robustdarts.derive import derive_from_run
    from robustdarts.genotype import Genotype

    first = rows[0]
    genotype, _ = derive_from_run(out / first["run_dir"])
    assert genotype.to_dict() == Genotype.load(out / first["run_dir"] / "genotype.json").to_dict() == \
        first["genotype"]

    # The Markdown report's mean ± std rows, recomputed from the trainings' own metrics.jsonl.
    for condition in ("default", "selective-stop"):
        section = table.split(f"## s3 · fashion-mnist · {condition}")[1].split("## ")[0]
        for method in ("darts", "beta-darts"):
            finals = []
            for r in rows:
                if r["method"] == method and r["condition"] == condition:
                    own = _own_metrics(out, r["run_dir"], condition)
                    if own is None:  # reused: the other condition derived the same architecture
                        own = _own_metrics(out, r["run_dir"], "default" if condition != "default" else condition)
                    finals.append(own)
            test = [f["test_acc"] for f in finals]
            valid = [f["valid_acc"] for f in finals]
            expected = f"| {method} | 2 | {100 * mean(test):.2f} ± {100 * stdev(test):.2f} | " \
                       f"{100 * mean(valid):.2f} ± {100 * stdev(valid):.2f} |"
            assert expected in section, (expected, section)
    # The paired table: beta-darts minus darts seed by seed, from the trainings' own metrics.
    section = table.split("## Paired by seed")[1].split("## ")[0]
    for condition in ("default", "selective-stop"):
        by = {}
        for r in rows:
            if r["condition"] == condition:
                own = _own_metrics(out, r["run_dir"], condition) or _own_metrics(out, r["run_dir"], "default")
                by[r["method"], r["seed"]] = own["test_acc"]
        diffs = [100 * (by["beta-darts", s] - by["darts", s]) for s in (0, 1)]
        expected = f"| s3 · fashion-mnist · {condition} | beta-darts − darts | 0, 1 | {mean(diffs):.2f} ± " \
                   f"{stdev(diffs):.2f} | {sum(d > 0 for d in diffs)} of 2 |"
        assert expected in section, (expected, section)


@needs_fashion
def test_sigkill_mid_grid_then_rerun_completes_without_recomputing_finished_cells(tiny_run, tmp_path):
    grid, reference, reference_table = tiny_run
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "robustdarts.cli", "bench", "run", str(grid), "--out", str(out),
                                "--workers", "2", "--threads", "1", "--json"], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finished_before = {}
    deadline = time.time() + 600
    try:
        while time.time() < deadline and process.poll() is None:
            time.sleep(0.5)
            if not (out / "results.sqlite").exists():
                continue
            with Store(out) as store:
                done = {c["cell_id"]: c for c in store.cells() if c["status"] == "done"}
            if done:
                finished_before = done
                break
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver and its workers, mid-grid
        process.wait()
    assert finished_before and len(finished_before) < 4, "the grid ended before it could be killed"
    with Store(out) as store:  # the killed cells read as interrupted, not running (once their workers are gone)
        for _ in range(100):
            status = {c["cell_id"]: c["status"] for c in store.cells()}
            if "running" not in status.values():
                break
            time.sleep(0.1)
        assert set(status.values()) <= {"done", "interrupted", "pending"} and "interrupted" in status.values(), status
        assert set(store.interrupted()) == {cid for cid, s in status.items() if s == "interrupted"}
    mtimes = {cid: (out / c["run_dir"] / "metrics.jsonl").stat().st_mtime_ns for cid, c in finished_before.items()}

    result = cli("bench", "run", grid, "--out", out, "--workers", 2, "--threads", 1, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["skipped_done"] >= len(finished_before) and summary["ran"] == 4 - summary["skipped_done"]
    with Store(out) as store:
        cells = {c["cell_id"]: c for c in store.cells()}
    for cid, before in finished_before.items():  # not recomputed: same attempt, same start, same files
        assert cells[cid]["attempts"] == 1 and cells[cid]["started"] == before["started"]
        assert (out / before["run_dir"] / "metrics.jsonl").stat().st_mtime_ns == mtimes[cid]
    assert all(c["status"] == "done" for c in cells.values())
    assert _table(out) == reference_table


@needs_fashion
def test_failed_conditions_are_recorded_and_retried_and_a_changed_training_reuses_the_searches(tiny_run, tmp_path):
    import shutil

    grid, reference, _ = tiny_run
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    searched = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/checkpoint.pt")}
    # One of the grid's cells with a training that cannot run: more held-out images than the training set has.
    bad = write_grid(tmp_path / "bad.yaml", {**TINY, "methods": ["darts"], "seeds": [0], "conditions": ["default"],
                                             "train": {**TINY["train"], "valid_images": 5000}})
    result = cli("bench", "run", bad, "--out", out, "--workers", 1, "--threads", 1, "--json")
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["ran"] == 1 and summary["failed"] == 1 and len(summary["failures"]) == 1
    status = json.loads(cli("bench", "status", out, "--json").stdout)
    assert status["counts"] == {"done": 0, "running": 0, "interrupted": 0, "pending": 0, "failed": 1}
    [cell] = status["cells"]
    assert "cannot hold out 5000" in cell["conditions"]["default"]["error"]
    assert {p: p.stat().st_mtime_ns for p in out.glob("cells/*/checkpoint.pt")} == searched  # no search reran
    from robustdarts.bench.backends import run_grid

    plan = make_plan(load_grid(bad))
    again = run_grid(plan, out, workers=1, threads=1)
    assert again.ran == 0 and again.skipped_failed == 1
    retried = run_grid(plan, out, workers=1, threads=1, retry_failed=True)
    assert retried.ran == 1 and retried.failed == 1
    with Store(out) as store:
        assert store.cells()[0]["attempts"] == 3  # the fixture's run, the failed one, the retry


@needs_fashion
def test_report_formats(tiny_run, tmp_path):
    from robustdarts.bench.report import write

    _, out, table = tiny_run
    assert "## Average rank" in table and "## Every cell and condition" in table
    with Store(out) as store:
        html = write(store, "html", tmp_path / "r.html")
        assert html.count("data:image/png;base64,") == 4 and "src='http" not in html and "<table>" in html
        md = write(store, "md", tmp_path / "r.md")
        assert (tmp_path / "r-curves.png").stat().st_size > 1000 and "](r-curves.png)" in md
        assert (tmp_path / "r-accuracy_skips.png").stat().st_size > 1000 and "](r-accuracy_skips.png)" in md
        assert md.startswith(table.split("![")[0].rstrip("\n"))  # the same tables as on stdout
        rows = write(store, "csv", None).splitlines()
        assert len(rows) == 9 and rows[0].startswith("cell_id,unit_id,method")
        data = json.loads(write(store, "json", None))
    assert data["cells"]["done"] == 4 and len(data["summary"]) == 4 and len(data["entries"]) == 8
    # The numerics every finished cell ran under, counted once per cell (not per condition), as this process.
    here = {k: v for k, v in environment().items() if k in ("torch", "cpu_capability", "cpu")}
    assert [{k: e[k] for k in here} for e in data["environments"]] == [here]
    assert data["environments"][0]["cells"] == 4 and "## Environment" in table
    assert (tmp_path / "r.html").read_text() == html


@needs_fashion
def test_ray_backend_gives_the_local_backends_genotypes_and_metrics(tiny_run, tmp_path):
    pytest.importorskip("ray")
    from robustdarts.bench.backends import run_grid

    grid, reference, _ = tiny_run
    summary = run_grid(make_plan(load_grid(grid)), tmp_path / "out", backend="ray", workers=2, threads=1)
    assert summary.done == 4

    def numbers(directory):
        with Store(directory) as store:
            return {(r["cell_id"], r["condition"]): (
                r["genotype"], {k: v for k, v in r["curves"].items() if k not in TIMING}, r["test_acc"],
                r["valid_acc"], r["params"], r["supernet_val_acc"], r["eigenvalue"]) for r in store.rows()}

    assert numbers(tmp_path / "out") == numbers(reference)
