"""The Python API (issue 27): ``robustdarts.search`` -> ``derive`` -> ``train`` at toy sizes, data handed in memory
(arrays and a torch Dataset), errors as one-sentence ``RobustDartsError``s that write nothing, the package's exports,
its cheap import, and every Python block of docs/api.md run as written.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import robustdarts
from conftest import invoke, snapshot
from robustdarts import RobustDartsError
from robustdarts.data import own

ROOT = Path(__file__).resolve().parents[1]
# 3 cells of 4 channels, 8x8 synthetic images, 32 of them, batch 8, one epoch: the tests' tiny search.
TINY = dict(epochs=1, batch_size=8, init_channels=4, layers=3, image_size=8, limit_images=32, leakage_every=0,
            seed=0)
TINY_TRAIN = dict(epochs=1, batch_size=8, init_channels=4, layers=3, image_size=8)


@pytest.fixture(autouse=True)
def forget_handed_data(monkeypatch):
    """No data handed in by another test is remembered: each test hands in its own."""
    monkeypatch.setattr(own, "_HANDED", {})


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    return robustdarts.search(space="s3", dataset="synthetic", out=root / "search", **TINY)


def arrays(n: int = 48, classes: int = 3, side: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n random uint8 RGB images, labels 0, 1, 2, 0, 1, 2, ... (n / classes of each class)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8), np.arange(n) % classes


class PairDataset(torch.utils.data.Dataset):
    """A torch Dataset of (C x H x W uint8 tensor, int label) items, as torchvision's PILToTensor gives them."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.images[i]).permute(2, 0, 1), int(self.labels[i])


# ---- search -> derive -> train ----------------------------------------------------------------------------------
def test_search_derive_train_end_to_end(synthetic_run, tmp_path):
    run = synthetic_run
    assert run.genotype == robustdarts.Genotype.load(run.run_dir / "genotype.json")
    lines = (run.run_dir / "metrics.jsonl").read_text().splitlines()
    assert run.metrics == [json.loads(line) for line in lines] and len(run.metrics) == 1  # one record per epoch
    assert (run.config.dataset, run.config.epochs, run.config.layers, run.config.space) == ("synthetic", 1, 3, "s3")
    assert robustdarts.derive(run.run_dir) == run.genotype  # the last epoch, by the space's own rule
    initial = robustdarts.derive(run.run_dir, epoch=-1)
    assert isinstance(initial, robustdarts.Genotype) and initial.kind == "darts"
    trained = robustdarts.train(run.run_dir, out=tmp_path / "train", limit_images=32, limit_test=16, valid_images=8,
                                **TINY_TRAIN)
    records = [json.loads(line) for line in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    assert trained.test_acc == records[-1]["test_acc"] and trained.valid_acc == records[-1]["valid_acc"]
    assert 0 <= trained.test_acc <= 1 and trained.run_dir == tmp_path / "train"
    # A search run directory and no dataset: the run's own (TrainConfig's default would be cifar10).
    assert trained.config.dataset == "synthetic" and trained.config.genotype == str(run.run_dir)
    assert robustdarts.Genotype.load(tmp_path / "train" / "genotype.json") == run.genotype


def test_train_takes_a_genotype_object(synthetic_run, tmp_path):
    trained = robustdarts.train(synthetic_run.genotype, dataset="synthetic", out=tmp_path / "t", limit_images=16,
                                limit_test=8, **TINY_TRAIN)
    # The config records the genotype itself, so the run reads back without the object.
    assert robustdarts.Genotype.parse(trained.config.genotype) == synthetic_run.genotype


def test_cli_train_of_a_search_run_uses_its_dataset(synthetic_run, tmp_path):
    code, out = invoke(["train", synthetic_run.run_dir, "--out", "t", "--layers", "3", "--channels", "4",
                        "--batch-size", "8", "--epochs", "1", "--set", "image_size=8", "--set", "limit_images=16",
                        "--set", "limit_test=8", "--json"], tmp_path)
    assert code == 0, out
    assert "dataset: synthetic" in (tmp_path / "t" / "config.yaml").read_text()


# ---- data in memory ----------------------------------------------------------------------------------------------
def test_arrays_in_memory_search_train_and_record(tmp_path):
    images, labels = arrays()
    name = own.hand_in((images, labels))
    assert re.fullmatch(r"in-memory:[0-9a-f]{16}", name)
    assert own.hand_in((torch.from_numpy(images), torch.from_numpy(labels))) == name  # tensors: the same content
    assert own.hand_in((images[..., :1], labels)) != name  # other content, other name
    run = robustdarts.search(space="s3", dataset=(images, labels), out=tmp_path / "s",
                             **{k: v for k, v in TINY.items() if k != "limit_images"})
    assert run.config.dataset == name
    record = json.loads((tmp_path / "s" / "data.json").read_text())
    # 16 images per class, round(16 / 6) = 3 of each held out: 9 test images, 39 training images.
    assert (record["train_images"], record["test_images"], record["digest"]) == (39, 9, name.split(":")[1])
    held = [int(i) for i in record["holdout"]["test_images"]]
    assert sorted(np.bincount(labels[held]).tolist()) == [3, 3, 3]
    # Mean of the training split, by hand from the images not held out.
    keep = np.setdiff1d(np.arange(48), held)
    assert np.allclose(record["mean"], images[keep].reshape(-1, 3).mean(0) / 255)
    trained = robustdarts.train(run.run_dir, out=tmp_path / "t", **TINY_TRAIN)
    assert trained.config.dataset == name  # the run's own data: tested on its held-out images
    from robustdarts.data import load_dataset
    assert torch.equal(load_dataset(name, "test").images, torch.from_numpy(images[held]).permute(0, 3, 1, 2))


def test_dataset_of_pairs_is_the_same_data_as_its_arrays(tmp_path):
    images, labels = arrays(n=36)
    assert own.hand_in(PairDataset(images, labels)) == own.hand_in((images, labels))
    gray = PairDataset(images[..., :1], labels)  # 1 x H x W tensors: one channel
    run = robustdarts.search(space="s3", dataset=gray, out=tmp_path / "g",
                             **{k: v for k, v in TINY.items() if k != "limit_images"})
    assert json.loads((tmp_path / "g" / "data.json").read_text())["channels"] == 1
    assert run.genotype == robustdarts.Genotype.load(tmp_path / "g" / "genotype.json")


def test_resume_needs_the_same_data_handed_in_again(tmp_path):
    images, labels = arrays()
    fields = {k: v for k, v in TINY.items() if k != "limit_images"}
    run = robustdarts.search(space="s3", dataset=(images, labels), out=tmp_path / "s", **fields)
    before = snapshot(tmp_path)
    own._HANDED.clear()  # a new session: only the hash is on disk
    with pytest.raises(RobustDartsError, match=r"was run on data handed in memory .*hand the same data in again"):
        robustdarts.search(resume=run.run_dir)
    other = (images[::-1].copy(), labels)
    with pytest.raises(RobustDartsError, match="hashes to in-memory:.* but .* was run on in-memory:"):
        robustdarts.search(resume=run.run_dir, dataset=other)
    with pytest.raises(RobustDartsError, match="cannot change it"):
        robustdarts.search(resume=run.run_dir, dataset=(images, labels), epochs=3)
    own._HANDED.clear()
    code, out = invoke(["search", "--resume", run.run_dir], tmp_path)  # the CLI cannot hand data in
    assert code == 2 and "hand the same images and labels in again from Python" in out
    assert len(out.strip().splitlines()) <= 3 and "Traceback" not in out
    assert snapshot(tmp_path) == before
    again = robustdarts.search(resume=run.run_dir, dataset=(images, labels))  # finished: its result at once
    assert again.genotype == run.genotype and again.metrics == run.metrics


# ---- errors ------------------------------------------------------------------------------------------------------
BAD_DATA = [
    ((np.zeros((12, 8, 8), np.float32), np.arange(12) % 2), "holds float32 images; images must be uint8"),
    ((np.zeros((12, 8, 8, 2), np.uint8), np.arange(12) % 2), "N x H x W x C"),
    ((np.zeros((12, 2, 2), np.uint8), np.arange(12) % 2), "smaller than the 3 pixels"),
    ((arrays(12)[0], np.arange(11) % 2), "12 images but labels of shape (11,)"),
    ((arrays(12)[0], np.arange(12) % 2 + 0.5), "float64 labels; labels must be integers"),
    ((arrays(12)[0], np.arange(12) % 2 + 1), "label 2, out of range"),
    ((arrays(12)[0], np.zeros(12, int)), "a classifier needs at least two classes"),
    ((arrays(12)[0], np.r_[np.zeros(11, int), 1]), "class 1 of the in-memory data has 1 image(s)"),
    ((np.zeros((12, 8, 8), np.uint8), np.arange(12) % 2), "one flat colour"),
    (([[1, 2]], [0]), "must be numpy arrays or torch tensors"),
    (42, "dataset must be a name"),
    (PairDataset(*arrays(12))[0], "must be numpy arrays or torch tensors"),
]


@pytest.mark.parametrize("data, fragment", BAD_DATA, ids=range(len(BAD_DATA)))
def test_bad_in_memory_data_is_one_sentence_and_writes_nothing(tmp_path, data, fragment):
    with pytest.raises(RobustDartsError) as caught:
        robustdarts.search(space="s3", dataset=data, out=tmp_path / "run", **TINY)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_in_memory_data_with_several_processes_is_refused_in_one_sentence(tmp_path):
    """Spawned ranks receive the config, not the arrays: refused before anything starts or is written."""
    with pytest.raises(RobustDartsError, match="cannot reach the processes nproc spawns"):
        robustdarts.search(space="s3", dataset=arrays(12), out=tmp_path / "run", nproc=2, **TINY)
    assert list(tmp_path.iterdir()) == []


def test_dataset_items_must_be_pairs_of_images_and_integer_labels():
    class Broken(torch.utils.data.Dataset):
        def __init__(self, item):
            self.item = item

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return self.item

    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    for item, fragment in [(image, "item 0 of the in-memory data is a Tensor, not an (image, label) pair"),
                           ((image, "cat"), "has the label 'cat'; labels must be integers"),
                           (("pixels", 1), "holds a str image")]:
        with pytest.raises(RobustDartsError, match=re.escape(fragment)):
            own.hand_in(Broken(item))


@pytest.mark.parametrize("fields, fragment", [
    (dict(bogus=1), "unknown config field 'bogus'; fields are:"),
    (dict(epochs=0), "config field 'epochs' is 0, but must be >= 1."),
    (dict(arch_lr="fast"), "config field 'arch_lr' needs a value of type float"),
    (dict(method="no-such-method"), "unknown method 'no-such-method'; choose one of:"),
    (dict(method_options={"bogus": 1}), "no option 'bogus'"),
])
def test_bad_fields_are_the_clis_sentences(tmp_path, fields, fragment):
    kwargs = {**TINY, "dataset": "synthetic", "out": tmp_path / "run", **fields}
    with pytest.raises(RobustDartsError) as caught:
        robustdarts.search(**kwargs)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RobustDartsError, match=re.escape(fragment.split(";")[0].split(" is ")[0])):
        robustdarts.search_config({**fields, "dataset": "synthetic"})  # the same door as the CLI's --set


def test_train_errors(synthetic_run, tmp_path):
    with pytest.raises(RobustDartsError, match="unknown config field 'bogus'"):
        robustdarts.train(synthetic_run.run_dir, out=tmp_path / "t", bogus=1)
    with pytest.raises(RobustDartsError, match="first argument"):
        robustdarts.train(synthetic_run.run_dir, out=tmp_path / "t", genotype="darts_v2")
    with pytest.raises(RobustDartsError, match="unknown genotype 'no-such-thing'"):
        robustdarts.train("no-such-thing", out=tmp_path / "t")
    assert not (tmp_path / "t").exists()


# ---- the package -------------------------------------------------------------------------------------------------
def test_exports_are_documented_and_the_api_names_stay_functions():
    import inspect

    from robustdarts.search.loop import Search  # noqa: F401 - the subpackage and modules named like the functions
    from robustdarts.train import Train  # noqa: F401
    import robustdarts.derive  # noqa: F401

    assert inspect.isfunction(robustdarts.search) and inspect.isfunction(robustdarts.train)
    assert inspect.isfunction(robustdarts.derive)
    for name in robustdarts.__all__:
        value = getattr(robustdarts, name)
        if name != "__version__":
            assert (value.__doc__ or "").strip(), name
    assert inspect.isfunction(robustdarts.bench.run) and inspect.isfunction(robustdarts.bench.report)
    assert list(inspect.signature(robustdarts.search).parameters)[:7] == ["space", "method", "dataset", "preset",
                                                                         "out", "resume", "progress"]


def test_import_is_cheap_and_help_reads_as_documentation():
    # Cheap by construction: importing the package imports no torch (measured: about 0.01 s; torch alone ~1.8 s).
    done = subprocess.run([sys.executable, "-c", "import sys, robustdarts; print('torch' in sys.modules); "
                           "help(robustdarts.search)"], capture_output=True, text=True, timeout=120,
                          env={"PAGER": "cat", "PATH": "/usr/bin:/bin", "TERM": "dumb"})
    assert done.returncode == 0, done.stderr
    first, _, doc = done.stdout.partition("\n")
    assert first == "False"
    assert "search(space: 'str | Path' = 'darts'" in doc and "Search an architecture" in doc
    for part in ("Args:", "dataset:", "in-memory", "Raises:", "RobustDartsError", "Example:"):
        assert part in doc, part


def test_bench_run_and_report_from_python(tmp_path, capsys):
    grid = {"name": "api-test", "methods": ["darts"], "spaces": ["s3"], "datasets": ["synthetic"], "seeds": [0],
            "search": {**{k: v for k, v in TINY.items() if k != "seed"}, "hessian_every": 0},
            "measure": {"eigenvalue_batches": 1},
            "train": {**TINY_TRAIN, "limit_images": 32, "limit_test": 16, "valid_images": 8}}
    with pytest.raises(RobustDartsError, match="unknown key 'bogus'"):
        robustdarts.bench.run({**grid, "bogus": 1}, out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    capsys.readouterr()
    summary = robustdarts.bench.run(grid, out=tmp_path / "grid", workers=1, threads=1, progress=True)
    assert (summary.done, summary.failed) == (1, 0)
    said = capsys.readouterr().err.splitlines()  # one line per cell (bench/live.py CellLines), as it ends
    assert [re.sub(r"\d+m\d\ds$", "T", line) for line in said] == ["[1/1] done darts · s3 · synthetic · seed 0 in T"]
    text = robustdarts.bench.report(tmp_path / "grid")
    assert text.startswith("# Benchmark report: api-test") and "| darts | 1 |" in text
    rows = json.loads(robustdarts.bench.report(tmp_path / "grid", format="json"))
    assert rows
    with pytest.raises(RobustDartsError, match="unknown report format 'pdf'"):
        robustdarts.bench.report(tmp_path / "grid", format="pdf")


def test_docs_api_examples_run(tmp_path, monkeypatch):
    """Every ```python block of docs/api.md, in order, in one namespace, in a fresh working directory."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_api"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md python block {i + 1}", "exec"), namespace)
    assert (tmp_path / "runs" / "api-search" / "genotype.json").is_file()
    assert namespace["again"].genotype == namespace["mine"].genotype


def test_a_resumed_in_memory_run_recorded_with_several_processes_is_refused_in_one_sentence(tmp_path):
    """A run made by torchrun's ranks (each holding the arrays) records nproc=N; resumed outside torchrun it would
    spawn ranks that cannot get the data: refused in one sentence, before any process starts."""
    from robustdarts.search.launch import open_search

    robustdarts.search(space="s3", dataset=arrays(), out=tmp_path / "run", **TINY)
    config = tmp_path / "run" / "config.yaml"
    config.write_text(config.read_text().replace("nproc: 1", "nproc: 2"))
    with pytest.raises(RobustDartsError, match="cannot reach the processes nproc spawns"):
        open_search(None, tmp_path / "run", resume=True, progress=False)


def test_a_command_help_or_a_typo_imports_no_torch():
    """The CLI opens each command's scope (starts.one_start) torch-free: a subcommand's --help and a mistyped
    command answer without importing torch (about 0.3 s instead of 2 s)."""
    code = ("import sys\nfrom robustdarts.cli import app\ntry:\n    app(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    for argv in (["plot", "--help"], ["serach"]):
        done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
        assert done.stdout.strip().splitlines()[-1] == "False", (argv, done.stdout, done.stderr)
