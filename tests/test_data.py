"""Data: loaders read their real file formats, batched augmentation equals the per-image reference, streams resume."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from robustdarts.data import (Augment, BatchStream, ImageSet, Normalize, dataset_info, eval_batches, load_dataset,
                              make_synthetic, reference_augment, resize_images, search_split, holdout)
from robustdarts.data import datasets as ds
from robustdarts.errors import RobustDartsError

MEAN, STD = (0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)
SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_roots(tmp_path, monkeypatch):
    """Keep the user's $ROBUSTDARTS_DATA and cache out of every test."""
    monkeypatch.delenv("ROBUSTDARTS_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _no_network(monkeypatch):
    def refuse(url, timeout=None):
        raise urllib.error.URLError("no network in tests")
    monkeypatch.setattr(ds.urllib.request, "urlopen", refuse)


def _serve(monkeypatch, files: dict[str, bytes]):
    """Fake urlopen serving ``files`` by URL; a URL not in ``files`` fails as without network."""
    def urlopen(url, timeout=None):
        if url not in files:
            raise urllib.error.URLError("not served")
        return io.BytesIO(files[url])
    monkeypatch.setattr(ds.urllib.request, "urlopen", urlopen)


# ------------------------------------------------------------------------------------------------- augmentation

@pytest.mark.parametrize("shape, kwargs", [
    ((64, 3, 32, 32), dict(crop_padding=4, flip=True, cutout=16)),
    ((64, 3, 32, 32), dict(crop_padding=4, flip=True, cutout=16, cutout_prob=0.4)),
    ((32, 1, 12, 20), dict(crop_padding=2, flip=True, cutout=5)),  # odd cutout, non-square images
    ((32, 3, 16, 16), dict(crop_padding=0, flip=True, cutout=0)),
    ((32, 3, 16, 16), dict(crop_padding=3, flip=False, cutout=7)),
])
def test_batched_augment_equals_per_image_reference(shape, kwargs):
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    mean, std = MEAN[:shape[1]], STD[:shape[1]]
    augment = Augment(mean, std, **kwargs)
    for seed in (0, 1, 2):
        batched = augment(images, torch.Generator().manual_seed(seed))
        reference = reference_augment(images, torch.Generator().manual_seed(seed), mean, std, **kwargs)
        assert batched.dtype == torch.float32 and batched.shape == shape
        assert torch.equal(batched, reference)
    # different seeds give different batches
    assert not torch.equal(augment(images, torch.Generator().manual_seed(0)),
                           augment(images, torch.Generator().manual_seed(1)))


def test_augment_does_what_it_says():
    """Independent checks of each step, without the reference implementation."""
    images = torch.randint(1, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    normalized = (images.float() / 255 - mean) / std
    assert torch.allclose(Normalize(MEAN, STD)(images), normalized)

    # Crop + flip: each output is some window of the zero-padded (optionally mirrored) image.
    out = Augment(MEAN, STD, crop_padding=2, flip=True)(images, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(normalized, (2, 2, 2, 2), value=0.0)
    padded = torch.where(torch.nn.functional.pad(torch.ones_like(images), (2, 2, 2, 2)).bool(),
                         padded, ((0 - mean) / std))  # padding is pixel value 0 before normalization
    for img, pad in zip(out, padded):
        windows = [pad[:, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        windows += [w.flip(-1) for w in windows]
        assert any(torch.allclose(img, w) for w in windows)

    # Cutout after normalization: zeros exactly inside a clipped LxL square, the rest untouched.
    out = Augment(MEAN, STD, crop_padding=0, flip=False, cutout=4)(images, torch.Generator().manual_seed(4))
    for img, ref in zip(out, normalized):
        zero = (img == 0).all(0)
        assert 0 < zero.sum() <= 16
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert zero[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
        assert torch.allclose(img[:, ~zero], ref[:, ~zero])

    # cutout_prob=0 never cuts; the draws stay the same, so crops and flips do not move.
    a, b = Augment(MEAN, STD, cutout=16), Augment(MEAN, STD, cutout=0)
    a.cutout_prob = 0.0
    assert torch.equal(a(images, torch.Generator().manual_seed(5)), b(images, torch.Generator().manual_seed(5)))


# ------------------------------------------------------------------------------------------------- file formats

def _idx_gz(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _write_fashion(folder: Path, n_train=12, n_test=6, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
        _idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
        data[prefix] = images, labels
    return data


def test_fashion_mnist_reads_idx_gz(tmp_path):
    data = _write_fashion(tmp_path / "fashion-mnist")
    train = load_dataset("fashion-mnist", "train", data_dir=tmp_path, download=False)
    test = load_dataset("fashion-mnist", "test", data_dir=tmp_path, download=False)
    assert train.images.shape == (12, 1, 28, 28) and train.images.dtype == torch.uint8
    assert np.array_equal(train.images[:, 0].numpy(), data["train"][0])
    assert np.array_equal(train.labels.numpy(), data["train"][1]) and train.labels.dtype == torch.int64
    assert np.array_equal(test.images[:, 0].numpy(), data["t10k"][0])
    assert train.mean == (0.2860,) and train.std == (0.3530,) and train.num_classes == 10


def test_environment_variable_is_looked_up_first(tmp_path, monkeypatch):
    env_data = _write_fashion(tmp_path / "env", seed=1)
    _write_fashion(tmp_path / "arg", seed=2)
    monkeypatch.setenv("ROBUSTDARTS_DATA", str(tmp_path / "env"))
    train = load_dataset("fashion-mnist", data_dir=tmp_path / "arg", download=False)
    assert np.array_equal(train.labels.numpy(), env_data["train"][1])


def test_corrupted_idx_is_a_clear_error(tmp_path):
    _write_fashion(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])  # truncated gzip stream
    with pytest.raises(RobustDartsError, match="train-images-idx3-ubyte.gz is corrupted"):
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    _idx_gz(path, np.zeros((5, 28, 28)))  # fewer images than labels
    with pytest.raises(RobustDartsError, match="do not match labels"):
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)


def _cifar_batch(path: Path, rng, n: int, label_key: bytes, num_classes: int):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, num_classes, n)]  # a list, as in the official files
    batch = {b"batch_label": b"test", b"data": data, label_key: labels}
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [v // 5 for v in labels]
    with open(path, "wb") as f:
        pickle.dump(batch, f)
    return data, np.array(labels)


def test_cifar10_reads_pickle_batches_in_chw_order(tmp_path):
    folder, rng = tmp_path / "cifar-10-batches-py", np.random.default_rng(0)
    folder.mkdir()
    parts = [_cifar_batch(folder / f"data_batch_{i}", rng, 4, b"labels", 10) for i in range(1, 6)]
    test_data, test_labels = _cifar_batch(folder / "test_batch", rng, 3, b"labels", 10)
    train = load_dataset("cifar10", "train", data_dir=tmp_path, download=False)
    test = load_dataset("cifar10", "test", data_dir=tmp_path, download=False)
    data = np.concatenate([d for d, _ in parts])
    assert train.images.shape == (20, 3, 32, 32) and len(test) == 3
    # A row holds the red plane, then green, then blue, each 32x32 row-major.
    for i, c, y, x in [(0, 0, 0, 0), (5, 1, 3, 7), (19, 2, 31, 30), (7, 0, 31, 0)]:
        assert train.images[i, c, y, x] == data[i, c * 1024 + y * 32 + x]
    assert np.array_equal(train.labels.numpy(), np.concatenate([l for _, l in parts]))
    assert np.array_equal(test.images.flatten(1).numpy(), test_data)
    assert np.array_equal(test.labels.numpy(), test_labels)
    assert train.mean == dataset_info("cifar10").mean


def test_cifar100_uses_fine_labels(tmp_path):
    folder, rng = tmp_path / "cifar-100-python", np.random.default_rng(1)
    folder.mkdir()
    data, labels = _cifar_batch(folder / "train", rng, 6, b"fine_labels", 100)
    _cifar_batch(folder / "test", rng, 2, b"fine_labels", 100)
    train = load_dataset("cifar100", data_dir=tmp_path, download=False)
    assert train.num_classes == 100 and np.array_equal(train.labels.numpy(), labels)
    assert np.array_equal(train.images.flatten(1).numpy(), data)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_refuses_pickles_that_are_not_plain_arrays(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(pickle.dumps({b"data": _Evil(), b"fine_labels": [0]}))
    with pytest.raises(RobustDartsError, match="not a plain numpy pickle"):
        load_dataset("cifar100", data_dir=tmp_path, download=False)
    (folder / "train").write_bytes(pickle.dumps({b"pixels": np.zeros((1, 3072), np.uint8)}))
    with pytest.raises(RobustDartsError, match="corrupted"):
        load_dataset("cifar100", data_dir=tmp_path, download=False)


def test_svhn_reads_mat_and_maps_label_10_to_0(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    y = np.array([[10], [1], [9], [10], [3]], dtype=np.uint8)
    (tmp_path / "svhn").mkdir()
    scipy_io.savemat(tmp_path / "svhn" / "train_32x32.mat", {"X": X, "y": y})
    train = load_dataset("svhn", data_dir=tmp_path, download=False)
    assert train.labels.tolist() == [0, 1, 9, 0, 3]
    assert train.images.shape == (5, 3, 32, 32)
    for n, c, row, col in [(0, 0, 0, 0), (4, 2, 5, 17), (2, 1, 31, 0)]:
        assert train.images[n, c, row, col] == X[row, col, c, n]
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"MATLAB 5.0 garbage")
    with pytest.raises(RobustDartsError, match="test_32x32.mat is corrupted"):
        load_dataset("svhn", "test", data_dir=tmp_path, download=False)


# ---------------------------------------------------------------------------------------- missing data, download

def test_missing_data_names_the_places_looked_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTDARTS_DATA", str(tmp_path / "env"))
    with pytest.raises(RobustDartsError) as err:
        load_dataset("cifar10", data_dir=tmp_path / "mine", download=False)
    msg = str(err.value)
    for place in (tmp_path / "env" / "cifar-10-batches-py", tmp_path / "mine" / "cifar-10-batches-py"):
        assert str(place) in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg and "--data-dir" in msg

    monkeypatch.setitem(ds._SYSTEM_DIRS, "fashion-mnist", tmp_path / "no-system-copy")
    _no_network(monkeypatch)
    with pytest.raises(RobustDartsError) as err:
        load_dataset("fashion-mnist", data_dir=tmp_path / "mine")
    msg = str(err.value)
    assert str(tmp_path / "no-system-copy") in msg and "dataset-fashion-mnist" in msg and "downloading" in msg
    assert not list((tmp_path / "mine").rglob("*.part"))  # nothing half-written left behind


def test_unknown_names_list_the_choices():
    with pytest.raises(RobustDartsError, match="cifar10, cifar100, fashion-mnist, svhn, synthetic"):
        load_dataset("imagenet")
    with pytest.raises(RobustDartsError, match="unknown split 'val'"):
        load_dataset("synthetic", "val")
    with pytest.raises(RobustDartsError, match="image_size"):
        load_dataset("synthetic", image_size=0)


def test_download_checks_md5_and_unpacks_cifar(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    staging = tmp_path / "staging" / "cifar-10-batches-py"
    staging.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _cifar_batch(staging / name, rng, 2, b"labels", 10)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(staging, arcname="cifar-10-batches-py")
    url = ds._CIFAR["cifar10"][1]
    _serve(monkeypatch, {url: archive.getvalue()})

    with pytest.raises(RobustDartsError, match="MD5"):  # the official checksum cannot match our archive
        load_dataset("cifar10", data_dir=tmp_path / "data")
    assert not list((tmp_path / "data").iterdir())

    entry = ds._CIFAR["cifar10"]
    monkeypatch.setitem(ds._CIFAR, "cifar10", entry[:2] + (hashlib.md5(archive.getvalue()).hexdigest(),) + entry[3:])
    train = load_dataset("cifar10", data_dir=tmp_path / "data")
    assert len(train) == 10 and (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").is_file()
    assert not (tmp_path / "data" / "cifar-10-python.tar.gz").exists()


# ---------------------------------------------------------------------------------------- sizes, subsets, split

def test_limit_and_image_size(tmp_path):
    written = torch.from_numpy(_write_fashion(tmp_path, n_train=40)["train"][0]).to(torch.uint8)
    a = load_dataset("fashion-mnist", data_dir=tmp_path, download=False, limit=10, seed=1)
    small = load_dataset("fashion-mnist", data_dir=tmp_path, download=False, limit=10, seed=1, image_size=16)
    other = load_dataset("fashion-mnist", data_dir=tmp_path, download=False, limit=10, seed=2)
    assert len(a) == 10 and all(any(torch.equal(img[0], row) for row in written) for img in a.images)
    assert torch.equal(a.images, load_dataset("fashion-mnist", data_dir=tmp_path, download=False, limit=10,
                                              seed=1).images)
    assert not torch.equal(a.images, other.images)
    assert small.images.shape == (10, 1, 16, 16) and torch.equal(small.images, resize_images(a.images, 16))
    flat = torch.full((2, 3, 28, 28), 77, dtype=torch.uint8)
    assert torch.equal(resize_images(flat, 16), torch.full((2, 3, 16, 16), 77, dtype=torch.uint8))
    assert torch.equal(resize_images(flat, 40), torch.full((2, 3, 40, 40), 77, dtype=torch.uint8))


def _indexed_set(n: int) -> ImageSet:
    """Labels equal to image indices make subsets easy to check."""
    return ImageSet(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n), "toy", n, (0.5,), (0.5,))


def test_search_split_is_seeded_and_disjoint():
    data = _indexed_set(101)
    train, val = search_split(data, 0.5, seed=0)
    again, _ = search_split(data, 0.5, seed=0)
    other, _ = search_split(data, 0.5, seed=1)
    assert len(train) == 50 and len(val) == 51
    assert set(train.labels.tolist()).isdisjoint(val.labels.tolist())
    assert set(train.labels.tolist()) | set(val.labels.tolist()) == set(range(101))
    assert torch.equal(train.labels, again.labels) and not torch.equal(train.labels, other.labels)
    first, second = search_split(data, 0.5, ordered=True)
    assert first.labels.tolist() == list(range(50)) and second.labels.tolist() == list(range(50, 101))
    with pytest.raises(RobustDartsError, match="portion"):
        search_split(data, 1.0)


def test_holdout_is_seeded_disjoint_and_sized():
    data = _indexed_set(101)
    rest, valid = holdout(data, 20, seed=3)
    assert len(rest) == 81 and len(valid) == 20
    assert set(rest.labels.tolist()).isdisjoint(valid.labels.tolist())
    assert set(rest.labels.tolist()) | set(valid.labels.tolist()) == set(range(101))
    assert torch.equal(valid.labels, holdout(data, 20, seed=3)[1].labels)
    assert not torch.equal(valid.labels, holdout(data, 20, seed=4)[1].labels)
    for count in (0, 101):
        with pytest.raises(RobustDartsError, match="valid_images"):
            holdout(data, count)


def test_synthetic_is_deterministic_and_learnable():
    train, test = load_dataset("synthetic", limit=500), load_dataset("synthetic", "test", limit=200)
    assert torch.equal(train.images, load_dataset("synthetic", limit=500).images)
    assert not torch.equal(train.images[:200], test.images)
    assert train.images.shape == (500, 3, 32, 32) and train.labels.bincount().tolist() == [50] * 10
    # Nearest class mean from the train split classifies the test split far above chance (10%).
    centroids = torch.stack([train.images[train.labels == k].float().mean(0) for k in range(10)]).flatten(1)
    predicted = torch.cdist(test.images.float().flatten(1), centroids).argmin(1)
    assert (predicted == test.labels).float().mean() > 0.9
    small = make_synthetic(20, image_size=16, channels=1, seed=3)
    assert small.images.shape == (20, 1, 16, 16) and len(small.mean) == 1


# ------------------------------------------------------------------------------------------------- streams

def test_stream_cycles_with_fresh_permutations():
    data = _indexed_set(24)
    stream = BatchStream(data, 8, generator_seed=0)
    assert stream.steps_per_epoch == 3
    passes = [torch.cat([next(stream)[1] for _ in range(3)]) for _ in range(2)]
    assert all(sorted(p.tolist()) == list(range(24)) for p in passes)
    assert not torch.equal(passes[0], passes[1]) and stream.epoch == 2

    ragged = BatchStream(_indexed_set(10), 4, shuffle=False, drop_last=False)
    assert ragged.steps_per_epoch == 3
    assert [len(next(ragged)[1]) for _ in range(4)] == [4, 4, 2, 4]
    dropped = BatchStream(_indexed_set(10), 4, shuffle=False)
    assert [next(dropped)[1].tolist() for _ in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]
    with pytest.raises(RobustDartsError, match="batch size 16"):
        BatchStream(_indexed_set(10), 16)


def test_stream_state_round_trip_gives_identical_batches():
    data = make_synthetic(40, image_size=8, seed=0)
    augment = Augment(data.mean, data.std, crop_padding=2, cutout=3, cutout_prob=0.5)
    stream = BatchStream(data, 16, augment, generator_seed=7)
    for _ in range(3):  # into the second pass
        next(stream)
    buffer = io.BytesIO()
    torch.save(stream.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    resumed = BatchStream(data, 16, Augment(data.mean, data.std, crop_padding=2, cutout=3, cutout_prob=0.5),
                          generator_seed=123)  # the seed is overwritten by the state
    resumed.load_state_dict(state)
    for _ in range(5):  # across a pass boundary
        (x1, y1), (x2, y2) = next(stream), resumed.next()
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert resumed.epoch == stream.epoch
    with pytest.raises(RobustDartsError, match="same data"):
        BatchStream(data.subset(range(32)), 16).load_state_dict(state)


def test_eval_batches_cover_the_set_in_order():
    data = make_synthetic(25, image_size=8)
    batches = list(eval_batches(data, 10))
    assert [len(y) for _, y in batches] == [10, 10, 5]
    assert torch.equal(torch.cat([y for _, y in batches]), data.labels)
    assert torch.equal(torch.cat([x for x, _ in batches]), Normalize(data.mean, data.std)(data.images))


# ------------------------------------------------------------------------------------------------- the real thing

@pytest.mark.skipif(not SYSTEM_FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_system_fashion_mnist(tmp_path):
    train = load_dataset("fashion-mnist", "train", data_dir=tmp_path, download=False)
    test = load_dataset("fashion-mnist", "test", data_dir=tmp_path, download=False)
    assert len(train) == 60000 and len(test) == 10000
    assert train.images.shape[1:] == (1, 28, 28)
    assert train.labels.bincount().tolist() == [6000] * 10
    assert abs(train.images.float().mean().item() / 255 - 0.2860) < 1e-3
