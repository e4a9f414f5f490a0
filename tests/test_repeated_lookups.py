"""Work done once where it used to be done at every look-up, with the results of doing it every time.

- A ``folder:PATH`` is walked once for the several look-ups of one start (it was walked five times), and anew by
  the next start: an image added, or rewritten in place with its size and time put back, between two runs of one
  Python session is seen.
- ``limit_images`` picks its subset before the images are resized (only the chosen ones are), the same images and
  pixels as resizing the whole split first.
- A cell runner's guarded writes parse the store's plan once, and still see a plan that another process replaced.
- ``robustdarts.bench.run``'s line per finished cell (``CellLines``), and when it is on.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import robustdarts
from robustdarts.bench import Store, grid_from_dict, make_plan
from robustdarts.bench import store as store_module
from robustdarts.bench.live import CellLines
from robustdarts.bench.store import units_of
from robustdarts.data import load_dataset, own
from robustdarts.errors import RobustDartsError
from robustdarts.starts import one_start


pytestmark = pytest.mark.usefixtures("own_data_isolated")  # conftest: decode cache here, nothing remembered


def image(rng, size: tuple[int, int], gray: bool) -> np.ndarray:
    return rng.integers(0, 256, (*size, 1 if gray else 3), dtype=np.uint8)[..., 0 if gray else slice(None)]


def folder(root: Path, sizes=((10, 10),), per_class: int = 8, split: bool = True, seed: int = 0) -> None:
    """Two classes of PNG images of noise, cycling through ``sizes`` (H, W) and gray / RGB."""
    rng = np.random.default_rng(seed)
    for part in ("train", "test") if split else ("",):
        for name in ("a", "b"):
            for i in range(per_class if part != "test" else 3):
                path = root / part / name / f"{i:02d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image(rng, sizes[i % len(sizes)], gray=i % 3 == 0)).save(path)


def count_scans(monkeypatch) -> list:
    calls = []
    scan = own._scan

    def counted(root):
        calls.append(root)
        return scan(root)

    monkeypatch.setattr(own, "_scan", counted)
    return calls


def bmp(path: Path, value: int | None = None, seed: int = 5) -> None:
    """A 10 x 10 RGB BMP (uncompressed: any pixels, the same file size): noise, or every value ``value``."""
    pixels = image(np.random.default_rng(seed), (10, 10), gray=False) if value is None else \
        np.full((10, 10, 3), value, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def rewrite_in_place(path: Path, value: int) -> None:
    """Every pixel of the BMP at ``path`` set to ``value`` in the same file, as an export script run again writes
    it, then its access and modification times put back (os.utime, as cp -p or rsync -t do): no directory changes,
    the size and the modification time are as they were; only the change time, which no program can set, moves."""
    before, folder_time = path.stat(), path.parent.stat().st_mtime_ns
    bmp(path, value)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    for _ in range(100):  # times move by the file system's tick (up to 10 ms): a rewrite in the same tick as the
        if path.stat().st_ctime_ns != before.st_ctime_ns:  # file's creation would tell nothing; utime in a later one
            break
        time.sleep(0.01)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    assert path.parent.stat().st_mtime_ns == folder_time and after.st_ctime_ns != before.st_ctime_ns


def pixels_of(name: str, relative: str) -> np.ndarray:
    """The decoded pixels of one image of a folder data set (looked up outside any start: listed anew)."""
    data = own.decoded(name)
    i = data.files.index(relative)
    sizes = data.shapes[:, 0] * data.shapes[:, 1] * data.channels
    return data.pixels[int(sizes[:i].sum()):int(sizes[:i + 1].sum())]


def recorded(run_dir: Path) -> dict:
    return json.loads((run_dir / "data.json").read_text())


TINY_SEARCH = dict(epochs=1, batch_size=8, init_channels=4, layers=3, image_size=8, leakage_every=0)
TINY_TRAIN = dict(epochs=1, batch_size=8, init_channels=4, layers=3, image_size=8)


# ---- listing a folder: once per start, anew at the next -----------------------------------------------------------
def test_a_start_walks_a_folder_once_and_remembers_nothing_after_it(tmp_path, monkeypatch):
    data = tmp_path / "mine"
    folder(data, split=False)
    bmp(data / "a" / "x.bmp")
    name = f"folder:{data}"
    scans = count_scans(monkeypatch)
    own.decoded(name)
    own.info(name)
    assert len(scans) == 2  # outside a start, every look-up walks the folder: right, only slower

    with one_start():
        first = own.decoded(name)
        with one_start():  # a start inside a start (the API under the CLI, a cell's trainings): the outer one
            own.info(name)
            own.load(name, "train")
            own.record(tmp_path, name)
        assert len(scans) == 3
        # Within a start, one listing throughout: an image added meanwhile waits for the next start.
        bmp(data / "b" / "y.bmp", seed=6)
        assert own.decoded(name) is first and len(first.labels) == 17 and len(scans) == 3
    assert len(own.decoded(name).labels) == 18 and len(scans) == 4  # the start ended: walked anew

    # Rewritten in place, size and modification time put back: the next start sees the new pixels.
    with one_start():
        own.decoded(name)
    rewrite_in_place(data / "a" / "x.bmp", 7)
    with one_start():
        assert (pixels_of(name, "a/x.bmp") == 7).all()

    # A start that fails leaves no listing behind.
    with pytest.raises(RobustDartsError, match="bad start"), one_start():
        own.decoded(name)
        raise RobustDartsError("bad start")
    count = len(scans)
    bmp(data / "b" / "z.bmp", seed=7)
    assert len(own.decoded(name).labels) == 19 and len(scans) == count + 1


def test_each_search_start_walks_a_folder_once_and_sees_it_as_it_is(tmp_path, monkeypatch):
    """robustdarts.search: config, memory check, info, training split and data.json (five walks before) from
    one walk; a change between two starts of one Python session (an image added just after a start, an image
    rewritten in place with its size and modification time put back) is seen by the next start."""
    data = tmp_path / "mine"
    folder(data)
    bmp(data / "train" / "a" / "x.bmp")
    scans = count_scans(monkeypatch)
    robustdarts.search("s3", "darts", dataset=f"folder:{data}", out=tmp_path / "one", **TINY_SEARCH)
    assert len(scans) == 1 and recorded(tmp_path / "one")["train_images"] == 17

    bmp(data / "train" / "b" / "y.bmp", seed=6)
    robustdarts.search("s3", "darts", dataset=f"folder:{data}", out=tmp_path / "two", **TINY_SEARCH)
    assert len(scans) == 2 and recorded(tmp_path / "two")["train_images"] == 18

    rewrite_in_place(data / "train" / "a" / "x.bmp", 7)
    robustdarts.search("s3", "darts", dataset=f"folder:{data}", out=tmp_path / "three", **TINY_SEARCH)
    assert len(scans) == 3 and recorded(tmp_path / "three")["digest"] != recorded(tmp_path / "two")["digest"]
    assert (pixels_of(f"folder:{data}", "train/a/x.bmp") == 7).all()


def test_the_search_command_walks_a_folder_once(tmp_path, monkeypatch):
    """``robustdarts search`` with its defaults (a dry-run-free start: config, memory check, splits, record)."""
    from conftest import invoke

    data = tmp_path / "mine"
    folder(data)
    scans = count_scans(monkeypatch)
    tiny = ["--layers", "3", "--channels", "4", "--batch-size", "8", "--epochs", "1", "--set", "image_size=8",
            "--set", "leakage_every=0", "--no-progress"]
    code, out = invoke(["search", "--dataset", f"folder:{data}", *tiny, "--out", "run"], tmp_path)
    assert code == 0 and len(scans) == 1, out
    bmp(data / "train" / "b" / "y.bmp")
    code, out = invoke(["search", "--dataset", f"folder:{data}", *tiny, "--out", "again"], tmp_path)
    assert code == 0 and len(scans) == 2 and recorded(tmp_path / "again")["train_images"] == 17, out


def test_each_training_start_walks_a_folder_once_and_sees_it_as_it_is(tmp_path, monkeypatch):
    """robustdarts.train on a folder search's genotype (its data by default): recipe, memory check, info, both
    splits and data.json from one walk; the next training sees the folder changed, also rewritten in place."""
    data = tmp_path / "mine"
    folder(data)
    bmp(data / "test" / "a" / "x.bmp")
    robustdarts.search("s3", "darts", dataset=f"folder:{data}", out=tmp_path / "search", **TINY_SEARCH)
    scans = count_scans(monkeypatch)
    robustdarts.train(tmp_path / "search", out=tmp_path / "one", **TINY_TRAIN)
    assert len(scans) == 1 and recorded(tmp_path / "one")["test_images"] == 7

    bmp(data / "test" / "b" / "y.bmp", seed=6)
    robustdarts.train(tmp_path / "search", out=tmp_path / "two", **TINY_TRAIN)
    assert len(scans) == 2 and recorded(tmp_path / "two")["test_images"] == 8

    rewrite_in_place(data / "test" / "a" / "x.bmp", 7)
    robustdarts.train(tmp_path / "search", out=tmp_path / "three", **TINY_TRAIN)
    assert len(scans) == 3 and recorded(tmp_path / "three")["digest"] != recorded(tmp_path / "two")["digest"]
    assert (pixels_of(f"folder:{data}", "test/a/x.bmp") == 7).all()


def test_bench_plan_walks_a_grids_folder_at_most_once(tmp_path, monkeypatch):
    """``robustdarts bench plan`` and ``robustdarts.bench.run``'s planning: two seeds and two conditions of one
    folder data set check it (its digest names the cells' data) with one walk."""
    import yaml
    from conftest import invoke

    from robustdarts.bench import backends

    data = tmp_path / "mine"
    folder(data)
    grid = {"name": "own", "methods": ["darts"], "spaces": ["s3"], "datasets": [f"folder:{data}"], "seeds": [0, 1],
            "conditions": ["default", "selective-stop"], "search": {**TINY_SEARCH},
            "train": {**TINY_TRAIN, "limit_test": 4}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    scans = count_scans(monkeypatch)
    code, out = invoke(["bench", "plan", path], tmp_path)
    assert code == 0 and len(scans) <= 1, (out, scans)
    monkeypatch.setattr(backends, "run_grid", lambda *args, monitor=None: None)
    robustdarts.bench.run(grid, out=tmp_path / "out", workers=1, threads=1, progress=False)
    assert len(scans) <= 2, scans


def test_a_bench_cell_walks_its_folder_once(tmp_path, monkeypatch):
    """A cell (what each worker process runs: search, derive, training) is one start."""
    from robustdarts.bench.cell import execute_cell

    data = tmp_path / "mine"
    folder(data)
    grid = grid_from_dict({"name": "own", "methods": ["darts"], "spaces": ["s3"], "datasets": [f"folder:{data}"],
                           "seeds": [0], "search": {**TINY_SEARCH}, "train": {**TINY_TRAIN, "limit_test": 4}})
    plan = make_plan(grid)
    with Store(tmp_path / "out", create=True) as store:
        store.register(grid.to_dict(), plan.cells)
    scans = count_scans(monkeypatch)
    assert execute_cell(plan.cells[0], tmp_path / "out", threads=1) == "done"
    assert len(scans) == 1  # search, derive, training: nine look-ups (walks without a start)


# ---- limit_images before resizing -------------------------------------------------------------------------------
@pytest.mark.parametrize("split_folder", [True, False], ids=["train-test", "held-out"])
def test_limit_picks_before_resizing_the_same_images_and_pixels(tmp_path, monkeypatch, split_folder):
    """Against the full-resize path (every image of the split resized, then the seeded subset taken, the rule of
    datasets._limited ported here), for shrinking (area), growing (bilinear), non-square and mixed sizes, gray and
    RGB: the same pixels and labels; and only the chosen images are resized."""
    data = tmp_path / "mine"
    folder(data, sizes=((10, 10), (13, 9), (16, 16), (10, 10), (12, 20)), per_class=14, split=split_folder)
    name = f"folder:{data}"
    whole = own.decoded(name)
    resized = []
    resize = own._resize

    def counted(images, side):
        resized.append(len(images))
        return resize(images, side)

    monkeypatch.setattr(own, "_resize", counted)
    for split, side, limit, seed in (("train", 8, 5, 0), ("train", 12, 11, 3), ("train", 16, 17, 1),
                                     ("test", 8, 3, 2), ("train", 10, None, 0)):
        keep = whole.test if split == "test" else ~whole.test
        count = int(keep.sum())
        full = whole.images(split, side)  # every image of the split resized, as before
        labels = torch.from_numpy(whole.labels[keep])
        if limit is not None:
            chosen = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:limit].sort().values
            full, labels = full[chosen], labels[chosen]
        resized.clear()
        got = load_dataset(name, split, image_size=side, limit=limit, seed=seed)
        assert torch.equal(got.images, full) and torch.equal(got.labels, labels), (split, side, limit)
        at_side = sum(int(h == w == side) for h, w in whole.shapes[np.flatnonzero(keep)].tolist())
        if limit is None:
            assert sum(resized) == count - at_side
        else:  # resizing first resized count - at_side images
            assert sum(resized) <= limit < count - at_side, (split, side, resized)
    with pytest.raises(RobustDartsError, match=rf"limit_images is 99, but the folder:{data.resolve()} train set has "
                                               rf"only {int((~whole.test).sum())} images"):
        load_dataset(name, "train", image_size=8, limit=99)


def test_limit_on_one_size_gives_the_same_images_as_the_full_split(tmp_path):
    """One size stored in order: the split's images are a view of the decoded buffer; a subset of them too."""
    data = tmp_path / "mine"
    folder(data, sizes=((12, 12),), per_class=10)
    name = f"folder:{data}"
    full = load_dataset(name, "train")  # at the native 12 x 12: nothing resized
    for limit, seed in ((7, 0), (19, 5)):
        chosen = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        got = load_dataset(name, "train", limit=limit, seed=seed)
        assert torch.equal(got.images, full.images[chosen]) and torch.equal(got.labels, full.labels[chosen])
        assert torch.equal(load_dataset(name, "train", image_size=8, limit=limit, seed=seed).images,
                           load_dataset(name, "train", image_size=8).images[chosen])


# ---- the store's plan -------------------------------------------------------------------------------------------
SIZES = {"batch_size": 8, "init_channels": 4, "layers": 3, "image_size": 8, "limit_images": 32}
GRID = {"name": "lookups", "methods": ["darts"], "spaces": ["s3"], "datasets": ["synthetic"], "seeds": [0, 1],
        "search": {"epochs": 1, "leakage_every": 0, **SIZES}, "train": {"epochs": 1, "limit_test": 16, **SIZES}}
OTHER = {**GRID, "name": "other", "conditions": ["default", "selective-stop"]}  # the same cells, more conditions


def test_guarded_writes_parse_the_plan_once_and_see_a_plan_replaced_elsewhere(tmp_path, monkeypatch):
    plan, other = make_plan(grid_from_dict(GRID)), make_plan(grid_from_dict(OTHER))
    parsed = []
    loads = json.loads

    def counted(text, *args, **kwargs):
        value = loads(text, *args, **kwargs)
        parsed.extend([value] if isinstance(value, list) else [])  # the plan is the one list in meta
        return value

    with Store(tmp_path, create=True) as store:
        store.register(plan.grid.to_dict(), plan.cells)
        monkeypatch.setattr(store_module, "json", SimpleNamespace(loads=counted, dumps=json.dumps))
        first, second = plan.cells
        store.start_cell(first.cell_id, units_of(first))
        store.start_condition(first.cell_id, first.conditions[0].label, units_of(first))
        store.start_cell(second.cell_id, units_of(second))
        assert store.still_planned(first.cell_id, units_of(first))
        assert len(parsed) == 1  # four guarded checks, one parse (one per check before)

        # Another process registers another grid's plan: WAL mode leaves the main file's times and size as they
        # were, and the next guarded write is refused all the same.
        stat = store.path.stat()
        with Store(tmp_path) as elsewhere:
            elsewhere.register(other.grid.to_dict(), other.cells)
        parsed.clear()
        assert (store.path.stat().st_mtime_ns, store.path.stat().st_size) == (stat.st_mtime_ns, stat.st_size)
        with pytest.raises(store_module.PlanReplaced):
            store.finish_condition(first.cell_id, first.conditions[0].label, "done", units=units_of(first))
        assert store.still_planned(first.cell_id, units_of(other.cells[0]))
        assert len(parsed) == 1  # the new plan, parsed once for the refused write and the check after it

        # A plan of the same length, edited by hand elsewhere: a label of the cell renamed.
        raw = sqlite3.connect(store.path)
        text = raw.execute("SELECT value FROM meta WHERE key = 'plan'").fetchone()[0]
        label = first.conditions[0].label
        renamed = json.dumps([[c, [("X" * len(label) if x == label else x) for x in labels]]
                              for c, labels in loads(text)])
        assert len(renamed) == len(text)
        with raw:
            raw.execute("UPDATE meta SET value = ? WHERE key = 'plan'", (renamed,))
        raw.close()
        assert not store.still_planned(first.cell_id, units_of(other.cells[0]))


# ---- bench.run's progress -------------------------------------------------------------------------------------
def cell(cell_id: str, seed: int) -> SimpleNamespace:
    return SimpleNamespace(cell_id=cell_id, method="darts", variant="", space="s3", dataset="synthetic", seed=seed)


class FakeStore:
    def __init__(self):
        self.marks: dict[str, dict] = {}

    def set(self, cell_id, status, attempts, started=None, finished=None, error=None):
        self.marks[cell_id] = dict(cell_id=cell_id, status=status, attempts=attempts, started=started,
                                   finished=finished, error=error)

    def cell_marks(self):
        return {k: dict(v) for k, v in self.marks.items()}


def test_cell_lines_report_each_cell_once_as_it_ends_in_this_run():
    """Run started at t=100. A failed before (retry_failed), B pending, C running, D done before the first call."""
    todo = [cell("A", 0), cell("B", 1), cell("C", 2), cell("D", 3)]
    store, out = FakeStore(), io.StringIO()
    lines = CellLines(out)
    store.set("A", "failed", 1, 40.0, 50.0, "old failure")
    store.set("B", "pending", 0)
    store.set("C", "running", 3, 90.0)
    store.set("D", "done", 1, 100.5, 101.0)
    said = []

    def tick():
        lines(store, todo, 100.0)
        said.extend(out.getvalue().splitlines()[len(said):])

    tick()
    assert said == ["[1/4] done darts · s3 · synthetic · seed 3 in 0m00s"]  # ended in this run, before the call
    store.set("B", "done", 1, 105.0, 110.0)
    tick()
    assert said[1:] == ["[2/4] done darts · s3 · synthetic · seed 1 in 0m05s"]  # A's old failure never reported
    store.set("A", "running", 2, 111.0)
    store.set("C", "failed", 3, 90.0, 215.0, "diverged: loss is nan")
    tick()
    assert said[2:] == ["[3/4] failed darts · s3 · synthetic · seed 2 in 2m05s: diverged: loss is nan"]
    store.set("A", "failed", 2, 111.0, 112.0, "again")
    tick()
    tick()
    assert said[3:] == ["[4/4] failed darts · s3 · synthetic · seed 0 in 0m01s: again"]


def test_bench_run_progress_is_on_for_a_terminal_or_when_asked(monkeypatch):
    from robustdarts.bench import backends

    given = []
    monkeypatch.setattr(backends, "run_grid", lambda *args, monitor=None: given.append(monitor))

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stderr, progress, on in ((io.StringIO(), None, False), (Terminal(), None, True), (Terminal(), False, False),
                                 (io.StringIO(), True, True)):
        monkeypatch.setattr("sys.stderr", stderr)
        robustdarts.bench.run(GRID, out="unused", workers=1, threads=1, progress=progress)
        assert isinstance(given[-1], CellLines) if on else given[-1] is None, (stderr, progress)


def test_an_npz_rewritten_with_its_times_put_back_is_read_again(tmp_path):
    """An npz file written again in place (same size, modification time put back, as cp -p or rsync -t leave it):
    the next look-up reads the new arrays, not the process's memo of the old ones (its key holds the change time
    and the inode, as a folder's images' keys do)."""
    path = tmp_path / "d.npz"

    def write(value: int) -> None:
        x = np.full((12, 8, 8), value, dtype=np.uint8)
        x[:, 0, 0] = 0  # not one flat colour (refused)
        np.savez(path, x_train=x, y_train=np.arange(12) % 2, x_test=x[:4], y_test=np.arange(4) % 2)

    write(1)
    assert own.decoded(f"npz:{path}").pixels.max() == 1
    before = path.stat()
    write(9)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    for _ in range(100):  # a rewrite in the tick of the first write would keep even the change time
        if path.stat().st_ctime_ns != before.st_ctime_ns:
            break
        time.sleep(0.01)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert own.decoded(f"npz:{path}").pixels.max() == 9
