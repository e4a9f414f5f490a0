"""The user's own data (issue 26): ``folder:PATH`` and ``npz:FILE`` through the real command line.

Each test builds its own images (PNG and JPEG, gray and RGB, several sizes) or arrays in a temporary folder and runs
``robustdarts.cli.run_cli`` in-process, as tests/test_bad_inputs.py does. Good data ends in exit 0 and a genotype;
bad data in exit 2, one sentence naming the file, and no file changed or added anywhere (the data folder, the
decode cache, the working directory). A Fashion-MNIST folder gives bit for bit the search that the same images
give through the built-in loader, and its second start reads the decode cache instead of decoding.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import invoke, snapshot
from robustdarts import runs as runs_module
from robustdarts.data import datasets, load_dataset
from robustdarts.data import own

TINY = ["--layers", "3", "--channels", "4", "--batch-size", "8", "--epochs", "1", "--set", "image_size=8",
        "--set", "leakage_every=0", "--no-progress"]
TINY_TRAIN = ["--layers", "3", "--channels", "4", "--batch-size", "8", "--epochs", "1", "--set", "image_size=8",
              "--no-progress"]
FASHION = Path("/usr/share/datasets/fashion-mnist")


pytestmark = pytest.mark.usefixtures("own_data_isolated")  # conftest: decode cache here, nothing remembered



def pattern(label: int, size: int, channels: int, rng) -> np.ndarray:
    """A learnable image: a class-coloured square on noise (H x W or H x W x 3 uint8)."""
    img = rng.integers(0, 60, (size, size, channels), dtype=np.uint8)
    img[size // 4: size // 4 + size // 2, size // 4: size // 4 + size // 2] = 60 + 60 * label
    return img[:, :, 0] if channels == 1 else img


def save(path: Path, image: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(image)
    img = img.convert(mode) if mode else img
    img.save(path)


def mixed_folder(root: Path, per_class: int = 12, split: bool = True) -> dict[str, np.ndarray]:
    """Three classes of PNG and JPEG images, gray and RGB, mostly 10x10 with some 20x20; a .txt and a hidden file.
    Returns the exact pixels of the (lossless) PNG files by relative name."""
    rng = np.random.default_rng(0)
    truth = {}
    for s, count in ((("train", per_class), ("test", 4)) if split else (("", per_class),)):
        for label, name in enumerate(("zebra", "ant", "moth")):  # not in sorted order: the sort is checked
            for i in range(count):
                size = 20 if i % 5 == 4 else 10
                gray = i % 3 == 0
                img = pattern(label, size, 1 if gray else 3, rng)
                rel = Path(s) / name / f"{i:03d}.{'jpg' if i % 4 == 1 else 'png'}"
                save(root / rel, img)
                if rel.suffix == ".png":
                    truth[str(rel)] = img
    (root / ("train" if split else "") / "ant" / "README.txt").write_text("not an image\n")
    (root / ("train" if split else "") / "ant" / ".DS_Store").write_bytes(b"\0\1")
    return truth


# ---- good data -------------------------------------------------------------------------------------------------
def test_folder_with_train_and_test_searches_and_trains(tmp_path):
    data = tmp_path / "mine"
    mixed_folder(data)
    work = tmp_path / "work"
    work.mkdir()
    code, out = invoke(["search", "--dataset", f"folder:{data}", *TINY, "--out", "run"], work)
    assert code == 0, out
    assert (work / "run" / "genotype.json").is_file()
    text = " ".join(out.split())
    assert "ignored 2 files" in text and "1 .txt" in text and "1 hidden" in text, out
    assert "come in 2 sizes" in text and "10x10, the most common" in text, out
    record = json.loads((work / "run" / "data.json").read_text())
    assert record["classes"] == ["ant", "moth", "zebra"]  # sorted, as torchvision's ImageFolder
    assert record["class_to_index"] == {"ant": 0, "moth": 1, "zebra": 2}
    assert record["channels"] == 3 and record["layout"] == "train/test"  # some RGB: every image becomes RGB
    assert (record["train_images"], record["test_images"]) == (36, 12)
    cfg = (work / "run" / "config.yaml").read_text()
    assert f"dataset: folder:{data.resolve()}" in cfg  # the absolute path: a resume from elsewhere finds it

    code, out = invoke(["train", "run", "--dataset", f"folder:{data}", *TINY_TRAIN, "--out", "trained", "--json"],
                       work)
    assert code == 0, out
    result = json.loads(out.strip().splitlines()[-1])
    assert 0.0 <= result["final_test_acc"] <= 1.0
    assert json.loads((work / "trained" / "data.json").read_text())["test_images"] == 12
    code, out = invoke(["show", "run", "--dataset", f"folder:{data}", "--layers", "3", "--channels", "4", "--json"],
                       work)
    assert code == 0, out
    assert json.loads(out.strip().splitlines()[-1])["dataset"] == f"folder:{data.resolve()}"


def test_folder_pixels_labels_and_resizing(tmp_path):
    """PNG pixels arrive exactly (gray replicated to RGB, as Pillow's L -> RGB), labels by sorted class name, and a
    20x20 image is area-resized to the common 10x10: each output pixel the mean of a 2x2 block, rounded."""
    data = tmp_path / "mine"
    truth = mixed_folder(data)
    train = load_dataset(f"folder:{data}", "train")
    record_files = own.decoded(f"folder:{data}").files
    train_files = [f for f in record_files if f.startswith("train")]
    assert train.images.shape == (36, 3, 10, 10) and train.num_classes == 3
    names = {"ant": 0, "moth": 1, "zebra": 2}
    assert train.labels.tolist() == [names[Path(f).parent.name] for f in train_files]
    checked = 0
    for i, rel in enumerate(train_files):
        if rel not in truth:
            continue
        img = truth[rel]
        img = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img
        if img.shape[0] == 20:  # area shrink by 2: the 2x2 block means, rounded half to even
            img = np.round(img.astype(np.float64).reshape(10, 2, 10, 2, 3).mean(axis=(1, 3))).astype(np.uint8)
        assert np.array_equal(train.images[i].permute(1, 2, 0).numpy(), img), rel
        checked += 1
    assert checked >= 20
    # Normalization statistics of the training split, per channel, in [0, 1] units (population std).
    info = datasets.dataset_info(f"folder:{data}")
    raw = [np.asarray(Image.open(data / f).convert("RGB"), dtype=np.float64) / 255 for f in train_files]
    pixels = np.concatenate([r.reshape(-1, 3) for r in raw])
    assert np.allclose(info.mean, pixels.mean(axis=0), atol=1e-12)
    assert np.allclose(info.std, pixels.std(axis=0), atol=1e-12)
    # A non-square image is resized to the square size too (both sides, area when both shrink).
    save(data / "train" / "ant" / "wide.png", np.full((12, 24, 3), 90, dtype=np.uint8))
    own._MEMO.clear()
    wide = load_dataset(f"folder:{data}", "train")
    assert wide.images.shape == (37, 3, 10, 10) and (wide.images[wide.labels == 0] == 90).all(dim=(1, 2, 3)).any()


def test_rgba_and_palette_become_rgb_and_all_gray_stays_one_channel(tmp_path):
    rng = np.random.default_rng(1)
    gray = tmp_path / "gray"
    for label in range(2):
        for i in range(6):
            save(gray / "train" / f"c{label}" / f"{i}.png", pattern(label, 9, 1, rng))
            save(gray / "test" / f"c{label}" / f"{i}.bmp", pattern(label, 9, 1, rng))
    assert load_dataset(f"folder:{gray}", "test").images.shape == (12, 1, 9, 9)

    colour = tmp_path / "colour"
    rgba = rng.integers(0, 255, (9, 9, 4), dtype=np.uint8)
    save(colour / "a" / "rgba.png", rgba)
    save(colour / "a" / "palette.png", rgba[:, :, :3], mode="P")
    save(colour / "b" / "x.webp", rgba[:, :, :3], mode=None)
    save(colour / "b" / "y.png", rgba[:, :, :3])
    decoded = own.decoded(f"folder:{colour}")
    assert decoded.channels == 3
    c = 3
    first = decoded.pixels[: 9 * 9 * c].reshape(9, 9, 3)
    palette = np.asarray(Image.open(colour / "a" / "palette.png").convert("RGB"))
    assert np.array_equal(first, palette)  # a/palette.png sorts before a/rgba.png
    second = decoded.pixels[9 * 9 * c: 2 * 9 * 9 * c].reshape(9, 9, 3)
    assert np.array_equal(second, rgba[:, :, :3])  # alpha dropped


def test_folder_without_test_holds_out_a_sixth_of_each_class(tmp_path):
    data = tmp_path / "flat"
    rng = np.random.default_rng(2)
    counts = {"a": 12, "b": 7, "c": 3}
    for name, n in counts.items():
        for i in range(n):
            save(data / name / f"{i:02d}.png", pattern(ord(name) - 97, 10, 3, rng))
    work = tmp_path / "work"
    work.mkdir()
    code, out = invoke(["search", "--dataset", f"folder:{data}", *TINY, "--batch-size", "4", "--out", "run"], work)
    assert code == 0, out
    assert "no test/ folder" in out
    record = json.loads((work / "run" / "data.json").read_text())
    held = record["holdout"]["test_images"]
    per_class = {k: sum(Path(f).parent.name == k for f in held) for k in counts}
    assert per_class == {"a": 2, "b": 1, "c": 1}  # round(n / 6), at least one
    assert record["test_images"] == 4 and record["train_images"] == 18
    # The split is the folder's, not the run's: another seed in another process holds out the same images.
    own._MEMO.clear()
    code, out = invoke(["search", "--dataset", f"folder:{data}", *TINY, "--batch-size", "4", "--seed", "7",
                        "--out", "run7"], work)
    assert code == 0, out
    assert json.loads((work / "run7" / "data.json").read_text())["holdout"]["test_images"] == held


def test_npz_arrays_search(tmp_path):
    rng = np.random.default_rng(3)
    labels = np.arange(40) % 4
    x = np.stack([pattern(k, 10, 3, rng) for k in labels])
    np.savez(tmp_path / "rgb.npz", x_train=x, y_train=labels[:, None], x_test=x[:12], y_test=labels[:12])
    np.savez(tmp_path / "gray.npz", x_train=x[..., 0], y_train=labels.astype(np.int32), x_test=x[:12, ..., 0],
             y_test=labels[:12])
    assert load_dataset(f"npz:{tmp_path / 'gray.npz'}", "train").images.shape == (40, 1, 10, 10)
    np.savez(tmp_path / "c1.npz", x_train=x[..., :1], y_train=labels, x_test=x[:12, ..., :1], y_test=labels[:12])
    c1 = load_dataset(f"npz:{tmp_path / 'c1.npz'}", "test")
    assert torch.equal(c1.images[:, 0], torch.from_numpy(x[:12, ..., 0]))  # N x H x W x 1 is N x H x W
    rgb = load_dataset(f"npz:{tmp_path / 'rgb.npz'}", "train")
    assert torch.equal(rgb.images, torch.from_numpy(x).permute(0, 3, 1, 2))  # N x H x W x C -> N x C x H x W
    assert rgb.labels.tolist() == labels.tolist() and rgb.num_classes == 4
    work = tmp_path / "work"
    work.mkdir()
    code, out = invoke(["search", "--dataset", f"npz:{tmp_path / 'rgb.npz'}", *TINY, "--out", "run"], work)
    assert code == 0, out
    assert (work / "run" / "genotype.json").is_file()
    assert json.loads((work / "run" / "data.json").read_text())["classes"] == ["0", "1", "2", "3"]


# ---- bad data: one sentence naming the file, nothing written ----------------------------------------------------
def good_folder(root: Path, classes=("a", "b"), per_class: int = 6, size: int = 10) -> None:
    rng = np.random.default_rng(4)
    for split in ("train", "test"):
        for k, name in enumerate(classes):
            for i in range(per_class):
                save(root / split / name / f"{i}.png", pattern(k, size, 3, rng))


def corrupt(root: Path) -> Path:
    good_folder(root)
    bad = root / "train" / "b" / "3.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    return bad


def truncated(root: Path) -> Path:
    good_folder(root)
    bad = root / "test" / "a" / "2.png"
    bad.write_bytes(bad.read_bytes()[:60])
    return bad


def dangling_link(root: Path) -> Path:
    good_folder(root)
    (root / "train" / "b" / "gone.png").symlink_to(root / "nowhere.png")
    return root / "train" / "b"  # the sentence names the link inside it (resolving the link would follow it)


def one_class(root: Path) -> Path:
    good_folder(root, classes=("only",))
    return root


def empty_class(root: Path) -> Path:
    good_folder(root)
    (root / "train" / "c").mkdir()
    (root / "test" / "c").mkdir()
    (root / "train" / "c" / "notes.txt").write_text("no images here\n")
    return root / "train" / "c"


def no_images(root: Path) -> Path:
    root.mkdir()
    (root / "readme.txt").write_text("nothing\n")
    return root


def different_classes(root: Path) -> Path:
    good_folder(root)
    shutil.move(root / "test" / "b", root / "test" / "bee")
    return root / "train"


def tiny_images(root: Path) -> Path:
    good_folder(root)
    bad = root / "train" / "a" / "small.png"
    save(bad, np.zeros((2, 12, 3), dtype=np.uint8))
    return bad


def train_without_test(root: Path) -> Path:
    good_folder(root)
    shutil.rmtree(root / "test")
    return root


def text_file(path: Path) -> Path:
    path.parent.mkdir()
    path.write_text("not an array file\n")
    return path


def npz_case(**change):
    def make(root: Path) -> Path:
        rng = np.random.default_rng(5)
        arrays = dict(x_train=rng.integers(0, 255, (20, 10, 10), dtype=np.uint8), y_train=np.arange(20) % 2,
                      x_test=rng.integers(0, 255, (6, 10, 10), dtype=np.uint8), y_test=np.arange(6) % 2)
        for k, v in change.items():
            if v is None:
                arrays.pop(k)
            else:
                arrays[k] = v
        root.mkdir()
        np.savez(root / "data.npz", **arrays)
        return root / "data.npz"
    return make


BAD = [
    ("corrupt-png", "folder", corrupt, ["cannot be decoded", "skip_bad_images=true"]),
    ("truncated-png", "folder", truncated, ["cannot be decoded"]),
    ("dangling-link", "folder", dangling_link, ["cannot read image", "gone.png"]),
    ("one-class", "folder", one_class, ["1 class folder", "at least two"]),
    ("empty-class-folder", "folder", empty_class, ["holds no images"]),
    ("no-images", "folder", no_images, ["holds no class folders"]),
    ("train-test-classes-differ", "folder", different_classes, ["only in train: b", "only in test: bee"]),
    ("image-smaller-than-3", "folder", tiny_images, ["12x2 pixels", "smaller than the 3"]),
    ("train-without-test", "folder", train_without_test, ["no test/"]),
    ("npz-keys-missing", "npz", npz_case(y_test=None), ["lacks y_test"]),
    ("npz-lengths-differ", "npz", npz_case(y_train=np.arange(19) % 2), ["20 images", "(19,)"]),
    ("npz-labels-out-of-range", "npz", npz_case(y_test=np.array([0, 1, 5, 0, 1, 0])), ["label 5", "0..2"]),
    ("npz-negative-label", "npz", npz_case(y_test=np.array([0, 1, -1, 0, 1, 0])), ["label -1"]),
    ("npz-float-labels", "npz", npz_case(y_train=np.arange(20) % 2 * 1.0), ["float64", "integers"]),
    ("npz-two-channels", "npz", npz_case(x_train=np.zeros((20, 10, 10, 2), np.uint8)), ["C = 1 or 3"]),
    ("npz-float-images", "npz", npz_case(x_train=np.zeros((20, 10, 10), np.float32)), ["float32", "uint8"]),
    ("npz-small-images", "npz", npz_case(x_train=np.zeros((20, 2, 2), np.uint8),
                                         x_test=np.zeros((6, 2, 2), np.uint8)), ["2x2 pixels"]),
    ("npz-one-class", "npz", npz_case(y_train=np.zeros(20, np.int64), y_test=np.zeros(6, np.int64)),
     ["two classes"]),
    ("npz-not-npz", "npz", lambda root: text_file(root / "data.npz"), ["is not a numpy .npz (zip) file"]),
]


@pytest.mark.parametrize("name,kind,prepare,fragments", [pytest.param(*c, id=c[0]) for c in BAD])
@pytest.mark.parametrize("command", ["search", "train"])
def test_bad_data_is_one_sentence_naming_the_file_and_writes_nothing(tmp_path, name, kind, prepare, fragments,
                                                                     command):
    named = prepare(tmp_path / "data")
    target = tmp_path / "data" / "data.npz" if kind == "npz" else tmp_path / "data"
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(tmp_path)
    args = ["search", "--dataset", f"{kind}:{target}", *TINY] if command == "search" else \
        ["train", "darts_v2", "--dataset", f"{kind}:{target}", *TINY_TRAIN]
    code, out = invoke(args, work)
    lines = out.strip().splitlines()
    assert code == 2, out
    assert "Traceback" not in out and len(lines) == 1, out  # no note on what was read: the refusal alone
    error = " ".join(lines[-1].split())
    assert error.startswith("error:") and str(named.resolve()) in error, out
    for fragment in fragments:
        assert fragment in error, out
    assert snapshot(tmp_path) == before, out  # no run directory, no decode cache, nothing in the data folder


def test_skip_bad_images_skips_and_counts_them(tmp_path):
    bad = corrupt(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    code, out = invoke(["search", "--dataset", f"folder:{tmp_path / 'data'}", *TINY, "--batch-size", "4", "--set",
                        "skip_bad_images=true", "--out", "run"], work)
    assert code == 0, out
    assert sum("skipped 1 unreadable image" in line for line in out.splitlines()) == 1, out
    record = json.loads((work / "run" / "data.json").read_text())
    assert record["train_images"] == 11 and [s[0] for s in record["skipped_images"]] == [str(bad.resolve())]


def test_missing_folder_and_file_are_named(tmp_path):
    for spec, fragment in ((f"folder:{tmp_path / 'nope'}", "does not exist"),
                           (f"npz:{tmp_path / 'nope.npz'}", "does not exist"), ("folder:", "names no path")):
        code, out = invoke(["search", "--dataset", spec, *TINY], tmp_path)
        assert code == 2 and fragment in out and len(out.strip().splitlines()) == 1, out
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---- the decode cache ------------------------------------------------------------------------------------------
def test_cache_is_keyed_by_content_and_never_used_for_another_folder(tmp_path, monkeypatch):
    data = tmp_path / "mine"
    good_folder(data)
    first = load_dataset(f"folder:{data}", "train")
    assert len(list(own.cache_dir().glob("*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache holds this folder")

    own._MEMO.clear()  # a new process
    monkeypatch.setattr(own, "_decode_all", no_decoding)
    assert torch.equal(load_dataset(f"folder:{data}", "train").images, first.images)

    # A copy with the same names, sizes and modification times is another folder: decoded on its own.
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    with pytest.raises(AssertionError, match="decoded although"):
        load_dataset(f"folder:{copy}", "train")
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # A changed image (new content and time) is decoded again; the folder's old cache file is replaced.
    changed = data / "train" / "a" / "0.png"
    save(changed, np.full((10, 10, 3), 200, dtype=np.uint8))
    stamp = time.time_ns() + 10 ** 9
    os.utime(changed, ns=(stamp, stamp))
    again = load_dataset(f"folder:{data}", "train")
    assert (again.images[0] == 200).all() and not torch.equal(again.images, first.images)
    assert len(list(own.cache_dir().glob(f"{own._cache_file(data.resolve(), 'x').name.split('-')[0]}-*"))) == 1


@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").exists(), reason="needs the Debian Fashion-MNIST")
def test_fashion_png_folder_searches_as_the_builtin_loader_and_restarts_from_the_cache(tmp_path, monkeypatch):
    """The same pixels in the same order with the same seed: the folder and the built-in loader give the same
    supernet accuracy and the same α after one tiny epoch."""
    images = datasets.read_idx(FASHION / "train-images-idx3-ubyte.gz")[:200]
    labels = datasets.read_idx(FASHION / "train-labels-idx1-ubyte.gz")[:200].astype(np.int64)
    test_images = datasets.read_idx(FASHION / "t10k-images-idx3-ubyte.gz")[:40]
    test_labels = datasets.read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")[:40].astype(np.int64)
    folder = tmp_path / "fashion"
    for split, xs, ys in (("train", images, labels), ("test", test_images, test_labels)):
        for i, (x, y) in enumerate(zip(xs, ys)):
            save(folder / split / f"class{y}" / f"{i:05d}.png", x)
    # The folder's order: by class name, then by file name (= index); the built-in side gets that order too.
    order = np.argsort(labels, kind="stable")
    test_order = np.argsort(test_labels, kind="stable")
    arrays = {"train": (images[order][:, None], labels[order]),
              "test": (test_images[test_order][:, None], test_labels[test_order])}
    info = datasets.dataset_info(f"folder:{folder}")
    pixels = images.astype(np.float64) / 255
    assert abs(info.mean[0] - pixels.mean()) < 1e-12 and abs(info.std[0] - pixels.std()) < 1e-12
    monkeypatch.setattr(datasets, "_load_arrays", lambda key, split, data_dir, download: arrays[split])
    monkeypatch.setitem(datasets._INFO, "fashion-mnist", datasets.DatasetInfo(
        "fashion-mnist", 1, 10, 28, info.mean, info.std, 200, 40))
    work = tmp_path / "work"
    work.mkdir()
    size = ["--space", "s3", "--layers", "3", "--channels", "4", "--batch-size", "16", "--epochs", "1",
            "--set", "image_size=12",
            "--set", "leakage_every=0", "--set", "arch_lr=0.05", "--seed", "3", "--no-progress"]
    runs = {}
    for name, dataset in (("builtin", "fashion-mnist"), ("folder", f"folder:{folder}")):
        code, out = invoke(["search", "--dataset", dataset, *size, "--out", name], work)
        assert code == 0, out
        runs[name] = work / name
    metrics = {k: json.loads((v / "metrics.jsonl").read_text().splitlines()[-1]) for k, v in runs.items()}
    assert metrics["folder"]["val_acc"] == metrics["builtin"]["val_acc"]
    assert metrics["folder"]["train_acc"] == metrics["builtin"]["train_acc"]
    archives = {k: torch.load(v / "archive.pt", weights_only=True)["epochs"]["0"] for k, v in runs.items()}
    for key, value in archives["builtin"].items():
        assert torch.equal(archives["folder"][key], value), key

    # Second start (a new process): read from the cache, nothing decoded.
    own._MEMO.clear()
    monkeypatch.setattr(own, "_decode_all", lambda *a, **k: pytest.fail("decoded again"))
    code, out = invoke(["search", "--dataset", f"folder:{folder}", *size, "--out", "again"], work)
    assert code == 0 and "read from the decode cache" in out, out
    again = json.loads((work / "again" / "metrics.jsonl").read_text().splitlines()[-1])
    assert again["val_acc"] == metrics["folder"]["val_acc"]


# ---- bench grids ---------------------------------------------------------------------------------------------------
def test_bench_grid_on_a_folder_records_the_path_and_ids_do_not_depend_on_it(tmp_path):
    from robustdarts.bench.grid import expand, grid_from_dict

    data = tmp_path / "here"
    good_folder(data)
    moved = tmp_path / "elsewhere"
    shutil.copytree(data, moved)

    def cells(folder: Path):
        grid = grid_from_dict({"name": "own", "methods": ["darts"], "spaces": ["s3"], "datasets": [f"folder:{folder}"],
                               "seeds": [0], "search": {"epochs": 1, "layers": 3, "init_channels": 4, "batch_size": 4,
                                                        "image_size": 8, "leakage_every": 0}})
        return expand(grid)

    here, there = cells(data), cells(moved)
    assert here[0].search["dataset"] == f"folder:{data.resolve()}"
    assert there[0].search["dataset"] == f"folder:{moved.resolve()}"
    assert here[0].cell_id == there[0].cell_id
    assert "here" in here[0].run_dir and str(tmp_path) not in here[0].run_dir
    save(moved / "train" / "a" / "new.png", np.zeros((10, 10, 3), np.uint8))  # other data: another cell
    own._MEMO.clear()
    assert cells(moved)[0].cell_id != here[0].cell_id


def test_builtin_grid_ids_keep_their_rule_from_before_skip_bad_images():
    """A grid on a built-in dataset keeps the ids it had before the skip_bad_images and skipped_statistics fields
    existed (its store resumes): the id is the hash of the resolved config without data_dir, those fields left out
    at their default; away from it they are in the id (another cell)."""
    import dataclasses

    from robustdarts.bench.grid import expand, grid_from_dict, stable_id

    late = ("skip_bad_images", "skipped_statistics")
    ids = []
    for extra in ({}, {"skipped_statistics": "stale"}):
        grid = grid_from_dict({"name": "b", "methods": ["darts"], "spaces": ["s3"], "datasets": ["synthetic"],
                               "seeds": [0], "search": {"epochs": 1, "layers": 3, "init_channels": 4, **extra}})
        cell = expand(grid)[0]
        fields = {k: v for k, v in cell.search.items() if k != "data_dir" and (k not in late or k in extra)}
        assert cell.cell_id == stable_id(fields)
        assert set(cell.search) - set(fields) == {"data_dir", *late} - set(extra)
        assert dataclasses.asdict(cell.search_config()) == cell.search
        ids.append(cell.cell_id)
    assert ids[0] != ids[1]


@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").exists(), reason="needs the Debian Fashion-MNIST")
def test_example_writes_a_png_folder_and_searches_derives_and_trains_on_it(tmp_path, monkeypatch, capsys):
    import runpy
    import sys

    example = Path(__file__).resolve().parents[1] / "examples" / "own_data.py"
    monkeypatch.setattr(sys, "argv", [str(example), "--out", str(tmp_path / "ex"), "--per-class", "6",
                                      "--test-per-class", "2", "--epochs", "1"])
    runpy.run_path(str(example), run_name="__main__")
    assert len(list((tmp_path / "ex" / "fashion-png" / "train").rglob("*.png"))) == 60
    for run in ("search", "train"):
        assert (tmp_path / "ex" / run / "genotype.json").is_file()
    record = json.loads((tmp_path / "ex" / "train" / "data.json").read_text())
    assert record["classes"][:2] == ["ankle-boot", "bag"] and record["test_images"] == 20
    assert "training finished" in capsys.readouterr().out


def test_resume_refuses_a_folder_that_changed_since_the_run_started(tmp_path):
    data = tmp_path / "mine"
    good_folder(data)
    work = tmp_path / "work"
    work.mkdir()
    code, out = invoke(["search", "--dataset", f"folder:{data}", *TINY, "--batch-size", "4", "--out", "run"], work)
    assert code == 0, out
    runs_module.release(work / "run")
    code, out = invoke(["search", "--resume", "run", "--no-progress"], work)
    assert code == 0, out  # the same data: the finished run is simply reported again
    runs_module.release(work / "run")
    save(data / "train" / "a" / "0.png", np.full((10, 10, 3), 7, np.uint8))
    stamp = time.time_ns() + 10 ** 9
    os.utime(data / "train" / "a" / "0.png", ns=(stamp, stamp))
    before = snapshot(work)
    code, out = invoke(["search", "--resume", "run", "--no-progress"], work)
    assert code == 2 and "changed since" in out and str(data.resolve()) in out, out
    assert snapshot(work) == before


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores for worker processes")
def test_worker_processes_decode_what_this_process_decodes(tmp_path, monkeypatch):
    data = tmp_path / "mine"
    mixed_folder(data)
    serial = own.decoded(f"folder:{data}")
    own._MEMO.clear()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache2"))  # no cache: decode again, in workers
    monkeypatch.setattr(own, "PARALLEL_FROM", 1)
    import concurrent.futures

    pools = []

    class Recorded(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Recorded)
    parallel = own.decoded(f"folder:{data}")
    assert len(pools) == 1 and pools[0][0] >= 2
    assert np.array_equal(parallel.pixels, serial.pixels) and np.array_equal(parallel.shapes, serial.shapes)
    assert np.array_equal(parallel.labels, serial.labels) and parallel.meta["digest"] == serial.meta["digest"]
