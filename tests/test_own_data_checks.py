"""Checks and notes of the user's own data found by a new user's pass (data/own.py, data/datasets.py).

Each test makes its own tiny data (a few 3..16-pixel images or arrays): labels of npz splits that differ, a
preset's image limit on a small folder, a file that is not an npz, float images, gray images decoded as RGB, the
note on resizing, a Dataset item's shape, and the network's true least image side (a search on 3x3 images runs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import invoke, snapshot
from robustdarts.config import FIELD_RANGES, PRESETS
from robustdarts.data import load_dataset, own
from robustdarts.errors import RobustDartsError, first_line
from robustdarts.starts import one_start

pytestmark = pytest.mark.usefixtures("own_data_isolated")  # conftest: decode cache here, nothing remembered

TINY = ["--layers", "3", "--channels", "4", "--batch-size", "8", "--epochs", "1", "--set", "leakage_every=0",
        "--no-progress"]


def arrays(size: int = 10, train: int = 20, test: int = 6, dtype=np.uint8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return dict(x_train=rng.integers(0, 255, (train, size, size)).astype(dtype), y_train=np.arange(train) % 3,
                x_test=rng.integers(0, 255, (test, size, size)).astype(dtype), y_test=np.arange(test) % 3)


def npz(path: Path, **values) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **values)
    return path


def refused(tmp_path: Path, dataset: str, fragments: list[str]) -> str:
    """Run a search on ``dataset``: exit 2, one line holding every fragment, nothing changed under tmp_path."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    before = snapshot(tmp_path)
    code, out = invoke(["search", "--dataset", dataset, *TINY, "--out", "run"], work)
    lines = out.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in out, out
    for fragment in fragments:
        assert fragment in lines[0], (fragment, out)
    assert snapshot(tmp_path) == before
    return lines[0]


def save(path: Path, image: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(image)
    (img.convert(mode) if mode else img).save(path)


# ---- 1: test labels never trained on ----------------------------------------------------------------------------

def test_npz_whose_splits_hold_different_labels_is_refused_naming_them(tmp_path):
    data = arrays()
    data["y_test"] = data["y_test"] + 3  # train 0..2, test 3..5: in 0..K-1 for the 6 labels found, yet disjoint
    refused(tmp_path, f"npz:{npz(tmp_path / 'd' / 'a.npz', **data)}",
            ["y_train and y_test hold different labels", "only in y_train: 0, 1, 2", "only in y_test: 3, 4, 5"])
    data = arrays()
    data["y_test"] = np.arange(6) % 2  # label 2 is never tested (0..1 < 3 labels: the range check passes)
    with pytest.raises(RobustDartsError, match=r"only in y_train: 2\)"):
        own.decoded(f"npz:{npz(tmp_path / 'e' / 'b.npz', **data)}")


def test_data_handed_in_memory_tests_every_class_it_trains_on():
    """No such hole in memory: 1/6 of each class (at least one image) is held out, so both splits hold every
    class (a class of one image is refused)."""
    rng = np.random.default_rng(1)
    labels = np.array([0] * 2 + [1] * 7 + [2] * 13)
    name = own.hand_in((rng.integers(0, 255, (len(labels), 8, 8), dtype=np.uint8), labels))
    data = own.decoded(name)
    assert set(data.labels[data.test].tolist()) == set(data.labels[~data.test].tolist()) == {0, 1, 2}


# ---- 2: a preset's limit ----------------------------------------------------------------------------------------

def test_a_presets_limit_is_a_cap_and_a_users_limit_is_checked(tmp_path):
    """A sizes preset's limit (tiny: 2,000 training, 1,000 test images) caps a larger set and takes a smaller one
    whole; a limit the user gave that the data cannot fill is refused, saying how to use them all."""
    name = f"npz:{npz(tmp_path / 'a.npz', **arrays())}"
    assert PRESETS["tiny"]["train"]["limit_images"] == 2000 and PRESETS["tiny"]["train"]["limit_test"] == 1000
    with pytest.raises(RobustDartsError) as given:
        load_dataset(name, "train", limit=2000)
    assert "limit_images is 2000, but" in str(given.value) and "20 images" in str(given.value)
    assert "--set limit_images=none to use them all" in str(given.value)
    assert len(load_dataset(name, "train", limit=2000, cap=True)) == len(load_dataset(name, "train")) == 20
    assert len(load_dataset(name, "train", limit=5, cap=True)) == 5  # a cap the data exceeds still caps
    with pytest.raises(RobustDartsError, match="limit_test is 99, but"):
        load_dataset(name, "test", limit=99)


def test_the_tiny_preset_runs_on_a_small_set_whole_and_a_users_limit_is_refused(tmp_path):
    import robustdarts

    path = npz(tmp_path / "d" / "a.npz", **arrays())
    sizes = dict(epochs=1, batch_size=4, layers=3, init_channels=4, image_size=8, leakage_every=0)
    result = robustdarts.search("s3", "darts", dataset=f"npz:{path}", preset="tiny", out=tmp_path / "run", **sizes)
    assert result.config.limit_images == 2000  # recorded as the preset set it: a resume takes the same images
    assert json.loads((tmp_path / "run" / "data.json").read_text())["train_images"] == 20
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(tmp_path)
    code, out = invoke(["search", "--dataset", f"npz:{path}", "--preset", "tiny", "--set", "limit_images=500",
                        "--out", "run2"], work)
    assert code == 2 and "Traceback" not in out and "limit_images is 500" in out, out
    assert snapshot(tmp_path) == before


# ---- 3: not an npz ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"just some text, not arrays\n", b"\x93NUMPY\x01\x00v\x00{'descr': '|u1'"])
def test_a_file_that_is_not_a_zip_is_said_to_be_no_npz(tmp_path, content):
    path = tmp_path / "d" / "bad.npz"
    path.parent.mkdir()
    path.write_bytes(content)  # a text file, the start of a single .npy array
    line = refused(tmp_path, f"npz:{path}", [f"{path} is not a numpy .npz (zip) file", "numpy.savez"])
    assert "pickle" not in line


def test_long_reasons_are_cut_at_a_word_never_inside_one():
    text = "This file contains pickled (object) data. If you trust the file you can load it unsafely using the " \
           "`allow_pickle=` keyword argument or `pickle.load()`."
    assert len(text) > 120
    cut = first_line(ValueError(text))
    # by hand: the last whole word within 120 characters is "`allow_pickle=`" (ends at 118); the next is cut
    assert cut == text[:text.index(" keyword")] + " ..."
    assert first_line(ValueError("short enough")) == "short enough"


# ---- 4: float images --------------------------------------------------------------------------------------------

def test_float_images_get_a_hint_that_keeps_them(tmp_path):
    unit = arrays(dtype=np.float32)
    unit["x_train"] = unit["x_train"] / 255  # in [0, 1]: astype alone would make every image black
    refused(tmp_path, f"npz:{npz(tmp_path / 'd' / 'unit.npz', **unit)}",
            ["x_train holds float32 values", "(x * 255).round().astype(numpy.uint8) for values in [0, 1]"])
    wide = arrays(dtype=np.float32)  # 0..254: astype keeps them
    with pytest.raises(RobustDartsError, match=r"x\.astype\(numpy\.uint8\) for values in 0\.\.255") as e:
        own.decoded(f"npz:{npz(tmp_path / 'e' / 'wide.npz', **wide)}")
    assert "* 255" not in str(e.value)
    with pytest.raises(RobustDartsError, match=r"holds int64 images.*x\.astype\(numpy\.uint8\) for values in 0"):
        own.hand_in((np.full((12, 8, 8), 200, np.int64), np.arange(12) % 2))


# ---- 5: gray images decoded as colour ---------------------------------------------------------------------------

def gray_folder(root: Path, suffix: str, mode: str | None = None, per_class: int = 3) -> None:
    rng = np.random.default_rng(2)
    for label in range(2):
        for split in ("train", "test"):
            for i in range(per_class):
                save(root / split / f"c{label}" / f"{i}.{suffix}", rng.integers(0, 255, (10, 10), np.uint8), mode)


@pytest.mark.parametrize("suffix,mode", [("webp", None), ("png", "P")])
def test_a_gray_set_decoded_as_rgb_says_so_and_how_to_keep_it_gray(tmp_path, capsys, suffix, mode):
    """Pillow opens a gray WebP as RGB and a palette PNG as P: the set stays 3-channel (its digest must not
    change), and one note says which image made it so and that it looks gray."""
    gray_folder(tmp_path / "g", suffix, mode)
    data = own.checked(f"folder:{tmp_path / 'g'}")
    err = capsys.readouterr().err
    assert data.channels == 3
    pixels = data.pixels.reshape(-1, 3).astype(int)  # gray as decoded (a lossy WebP: channels 1 level apart)
    assert np.abs(pixels - pixels[:, :1]).max() <= 1
    lines = [line for line in err.splitlines() if "3-channel" in line]
    assert len(lines) == 1, err
    assert f"train/c0/0.{suffix} is decoded as colour" in lines[0]  # train/ is listed before test/
    assert "all 12 colour-decoded images have three (nearly) equal channels" in lines[0]
    assert "convert them to mode L for a 1-channel set" in lines[0]


def test_one_colour_image_among_gray_ones_is_named_and_plain_colour_sets_get_no_note(tmp_path, capsys):
    gray_folder(tmp_path / "m", "png")
    rng = np.random.default_rng(3)
    save(tmp_path / "m" / "train" / "c1" / "z.png", rng.integers(0, 255, (10, 10, 3), np.uint8))
    assert own.checked(f"folder:{tmp_path / 'm'}").channels == 3
    lines = [line for line in capsys.readouterr().err.splitlines() if "3-channel" in line]
    assert lines == [f"note: {tmp_path / 'm'} is a 3-channel (RGB) set: train/c1/z.png is decoded as colour; its "
                     f"12 gray images are repeated to 3 channels."]
    for label in range(2):
        for split in ("train", "test"):
            for i in range(3):
                save(tmp_path / "c" / split / f"c{label}" / f"{i}.png", rng.integers(0, 255, (10, 10, 3), np.uint8))
    own.checked(f"folder:{tmp_path / 'c'}")
    assert "3-channel" not in capsys.readouterr().err
    gray_folder(tmp_path / "l", "png")  # mode L PNGs: 1 channel, nothing to say
    assert own.checked(f"folder:{tmp_path / 'l'}").channels == 1
    assert "3-channel" not in capsys.readouterr().err


# ---- 6: resizing ------------------------------------------------------------------------------------------------

def test_resizing_is_said_once_per_start_from_what_to_what(tmp_path, capsys):
    name = f"npz:{npz(tmp_path / 'a.npz', **arrays(size=12))}"
    with one_start():
        train = load_dataset(name, "train", image_size=16)
        test = load_dataset(name, "test", image_size=16)
    assert train.size == test.size == 16
    lines = [line for line in capsys.readouterr().err.splitlines() if "resized" in line]
    assert lines == [f"note: {name}: images resized from 12x12 to 16x16 (image_size); data.json records the data's "
                     f"own size."]
    load_dataset(name, "train")  # its own size: nothing resized, nothing said
    assert "resized" not in capsys.readouterr().err


# ---- 7: a Dataset item's shape ----------------------------------------------------------------------------------

def test_a_bad_dataset_item_is_reported_with_its_own_shape():
    class ChannelsFirst(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return np.zeros((3, 10, 10), np.uint8), i % 2

    with pytest.raises(RobustDartsError) as e:
        own.hand_in(ChannelsFirst())
    assert "item 0 of the in-memory data has an image of shape (3, 10, 10)" in str(e.value)
    assert "(1, 3, 10, 10)" not in str(e.value)


def test_a_dataset_of_gray_and_colour_images_says_why_it_is_rgb(capsys):
    """As a folder's note does: the first colour item named, the gray ones counted, the set RGB with the gray
    images repeated to 3 channels (their pixels unchanged in every channel)."""
    rng = np.random.default_rng(0)
    items = [(rng.integers(0, 256, (8, 8) if i != 2 else (8, 8, 3), dtype=np.uint8), i % 2) for i in range(12)]

    class Mixed(torch.utils.data.Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            return items[i]

    data = own.decoded(own.hand_in(Mixed()))
    assert data.channels == 3
    err = capsys.readouterr().err
    assert "item 2 is a colour image, so the set is RGB; its 11 gray images are repeated to 3 channels" in err
    first = data.pixels[:8 * 8 * 3].reshape(8, 8, 3)
    assert all((first[..., c] == items[0][0]).all() for c in range(3))


# ---- 8: the least image side ------------------------------------------------------------------------------------

def test_the_least_side_is_the_networks_and_the_same_for_images_and_image_size(tmp_path):
    assert own.MIN_SIDE == FIELD_RANGES["image_size"].lo == 3
    refused(tmp_path, f"npz:{npz(tmp_path / 'd' / 'two.npz', **arrays(size=2))}",
            ["x_train images are 2x2 pixels", "smaller than the 3 pixels a side", "two stride-2 reductions"])
    # 3x3 images at their own size (no image_size): the search the message promises runs
    path = npz(tmp_path / "d" / "three.npz", **arrays(size=3, train=24, test=6))
    code, out = invoke(["search", "--dataset", f"npz:{path}", *TINY, "--out", "run3"], tmp_path / "work")
    assert code == 0, out
    assert (tmp_path / "work" / "run3" / "genotype.json").is_file()
