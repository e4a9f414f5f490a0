"""Image datasets held in memory as uint8 tensors (N, C, H, W) with int64 labels.

Every dataset is read once into a tensor; augmentation happens later on whole batches (see ``augment.py``), so no
per-image Python object ever exists. Files are read in their official formats (IDX gz, CIFAR python pickles through
the restricted unpickler, SVHN .mat) and downloaded with MD5 checks when missing and a network is reachable.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import RobustDartsError, unknown
from ..safepickle import safe_load
from . import own

SPLITS = ("train", "test")
ENV_VAR = "ROBUSTDARTS_DATA"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    num_classes: int
    size: int  # native height == width
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int
    test_size: int
    classes: tuple[str, ...] = ()  # the user's class names (folder:/npz: data), index order
    digest: str = ""  # content hash of the user's data: where it lies changes nothing


_INFO = {
    "fashion-mnist": DatasetInfo("fashion-mnist", 1, 10, 28, (0.2860,), (0.3530,), 60000, 10000),
    "cifar10": DatasetInfo("cifar10", 3, 10, 32, (0.49139968, 0.48215827, 0.44653124),
                           (0.24703233, 0.24348505, 0.26158768), 50000, 10000),
    "cifar100": DatasetInfo("cifar100", 3, 100, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 50000, 10000),
    "svhn": DatasetInfo("svhn", 3, 10, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 73257, 26032),
    # Measured on the generator below (levels uniform in [32, 224] plus noise): about 0.50 and 0.25 for any seed.
    "synthetic": DatasetInfo("synthetic", 3, 10, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 5000, 1000),
}
DATASETS = tuple(_INFO)
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
            "cifar-10": "cifar10", "cifar-100": "cifar100"}

_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FASHION_FILES = {  # split -> ((file, official MD5), ...): images then labels
    "train": (("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
              ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe")),
    "test": (("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
             ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310")),
}
_CIFAR = {  # name -> (folder inside the archive, archive URL, archive MD5, label key, files per split)
    "cifar10": ("cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a", "labels",
                {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}),
    "cifar100": ("cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "eb9058c3a382ffc7106e4002c42a8d85", "fine_labels", {"train": ("train",), "test": ("test",)}),
}
_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
_SVHN_FILES = {"train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
               "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3")}
_SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}  # Debian package dataset-fashion-mnist
_HINTS = {"fashion-mnist": "install the Debian package with `apt-get install dataset-fashion-mnist`, or ",
          "cifar10": "", "cifar100": "", "svhn": ""}


@dataclass
class ImageSet:
    """A labelled image set in memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: Tensor
    labels: Tensor
    name: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 ({len(self.images)},), got {self.labels.dtype} "
                             f"{tuple(self.labels.shape)}")
        if not len(self.mean) == len(self.std) == self.images.shape[1]:
            raise ValueError(f"mean/std need one entry per channel ({self.images.shape[1]})")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    def subset(self, indices) -> ImageSet:
        indices = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        return ImageSet(self.images[indices], self.labels[indices], self.name, self.num_classes, self.mean, self.std)

    def to(self, device) -> ImageSet:
        """The same set on ``device``; moving it once up front makes evaluation passes copy-free."""
        return ImageSet(self.images.to(device), self.labels.to(device), self.name, self.num_classes,
                        self.mean, self.std)


def _canonical(name: str) -> str:
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    if key not in _INFO:
        raise unknown("dataset", name, DATASETS, where="(your own data: folder:PATH or npz:FILE)")
    return key


def dataset_info(name: str) -> DatasetInfo:
    """Channels, classes, native size, normalization constants and split sizes of a dataset (a user's
    ``folder:PATH`` or ``npz:FILE`` is read, or its decode cache, to know them)."""
    if own.is_own(name):
        return DatasetInfo(**own.info(name))
    return _INFO[_canonical(name)]


def load_dataset(name: str, split: str = "train", data_dir: str | os.PathLike | None = None, download: bool = True,
                 image_size: int | None = None, limit: int | None = None, seed: int = 0,
                 skip_bad_images: bool = False, cap: bool = False) -> ImageSet:
    """Load ``split`` of dataset ``name`` into memory.

    ``image_size`` resizes once here (area when shrinking, bilinear when growing); ``limit`` keeps a random subset of
    that many images chosen by ``seed`` (in index order). For ``synthetic``, ``seed`` also seeds the generator and
    ``limit`` is the number of images generated. A user's ``folder:PATH`` or ``npz:FILE`` comes through
    ``own.py`` (``skip_bad_images``: leave its unreadable images out instead of refusing them); from then on it is
    handled as the built-in sets are. ``cap``: ``limit`` is a sizes preset's cap (``config.preset_caps``), so a
    split with fewer images is used whole instead of refused.
    """
    user = own.is_own(name)
    key = name if user else _canonical(name)
    if split not in SPLITS:
        raise unknown("split", split, SPLITS)
    for arg, value in (("image_size", image_size), ("limit", limit)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise RobustDartsError(f"{arg} must be a positive integer, got {value!r}.")
    if user:
        # The subset is chosen before resizing, by the rule of _limited: the same images and pixels, and a 200-image
        # limit on a large folder resizes 200 images, not the folder (the decode cache holds them at full size).
        return ImageSet(*own.load(name, split, image_size, skip_bad_images,
                                  lambda count: _chosen(count, own.canonical_name(name), split, limit, seed,
                                                        cap)))
    info = _INFO[key]
    if data_dir is not None:  # given and wrong is a mistake to name, not a folder to skip in the look-up
        folder = Path(data_dir).expanduser()
        if folder.exists() and not folder.is_dir():
            raise RobustDartsError(f"data_dir {folder} is a file, not a directory; point --data-dir at the folder "
                                   f"that holds the data.")
        if key == "synthetic" and not folder.exists():
            raise RobustDartsError(f"data_dir {folder} does not exist (and synthetic data reads no files); fix the "
                                   f"path or drop --data-dir.")

    if key == "synthetic":
        count = limit if limit is not None else (info.train_size if split == "train" else info.test_size)
        return make_synthetic(count, image_size or info.size, split=split, seed=seed)

    images, labels = _load_arrays(key, split, data_dir, download)
    if labels.size and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise RobustDartsError(f"{key} {split} labels fall outside 0..{info.num_classes - 1} "
                               f"(found {labels.min()}..{labels.max()}); the files are corrupted.")
    dataset = ImageSet(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.astype(np.int64)),
                       key, info.num_classes, info.mean, info.std)
    return _limited(dataset, split, limit, seed, image_size, cap)


def _limited(dataset: ImageSet, split: str, limit: int | None, seed: int, image_size: int | None,
             cap: bool = False) -> ImageSet:
    """The seeded ``limit`` subset (in index order) at ``image_size``: the same rule for every source."""
    keep = _chosen(len(dataset), dataset.name, split, limit, seed, cap)
    if keep is not None:
        dataset = dataset.subset(keep)
    if image_size is not None and image_size != dataset.size:
        dataset.images = resize_images(dataset.images, image_size)
    return dataset


def _chosen(count: int, name: str, split: str, limit: int | None, seed: int, cap: bool = False) -> Tensor | None:
    """The positions (in index order) of the seeded ``limit`` subset of ``count`` images, None for all of them.
    ``cap``: the limit is a sizes preset's (``config.preset_caps``), so a split with fewer images is used whole; a
    limit the user gave that the split cannot fill is refused."""
    if limit is not None and limit > count:
        if cap:
            return None
        field = "limit_images" if split == "train" else "limit_test"
        raise RobustDartsError(f"{field} is {limit}, but the {name} {split} set has only {count} images; lower it, "
                               f"or pass --set {field}=none to use them all.")
    if limit is None or limit == count:
        return None
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


def resize_images(images: Tensor, size: int, chunk: int = 4096) -> Tensor:
    """Resize a uint8 (N, C, H, W) tensor to ``size`` x ``size``, back to uint8; chunked to bound float memory."""
    shrink = size < images.shape[-1]
    out = []
    for part in images.split(chunk):
        x = part.float()
        x = F.interpolate(x, size=(size, size), mode="area") if shrink else \
            F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out) if out else images.new_empty((0, images.shape[1], size, size))


def search_split(imageset: ImageSet, portion: float = 0.5, seed: int = 0,
                 ordered: bool = False) -> tuple[ImageSet, ImageSet]:
    """Cut a training set into (weights half, architecture half).

    By default the cut follows a permutation drawn from ``seed``; ``ordered=True`` reproduces the reference code,
    which trains weights on the first ``floor(portion * N)`` images and α on the rest, by index order.
    """
    n = len(imageset)
    cut = int(np.floor(portion * n))
    if not 0 < portion < 1 or cut == 0 or cut == n:
        raise RobustDartsError(f"search split portion {portion!r} leaves an empty half of {n} images; "
                               f"choose a value strictly between 0 and 1.")
    return split_at(imageset, cut, seed, ordered)


def holdout(imageset: ImageSet, count: int, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """(the rest, ``count`` images drawn by ``seed``): a validation set cut from the training images, so that
    architectures and hyperparameters are chosen without looking at the test set."""
    n = len(imageset)
    if not 0 < count < n:
        raise RobustDartsError(f"cannot hold out {count} of {n} training images for validation; "
                               f"choose valid_images between 1 and {n - 1} (0: none), or raise limit_images.")
    return split_at(imageset, n - count, seed)


def split_at(imageset: ImageSet, cut: int, seed: int = 0, ordered: bool = False) -> tuple[ImageSet, ImageSet]:
    """(``cut`` images, the others), by a permutation drawn from ``seed`` or, ``ordered``, by index."""
    n = len(imageset)
    order = torch.arange(n) if ordered else torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    # Sorting within each part changes no membership and keeps the subsets in the dataset's order.
    return imageset.subset(order[:cut].sort().values), imageset.subset(order[cut:].sort().values)


def make_synthetic(num_images: int, image_size: int = 32, num_classes: int = 10, channels: int = 3,
                   split: str = "train", seed: int = 0, noise: float = 48.0) -> ImageSet:
    """A learnable in-memory dataset: each class is a fixed smooth colour pattern, each image that pattern plus noise.

    The class patterns depend only on ``seed``, so the train and test splits share them; the samples depend on
    ``seed`` and ``split``. The patterns are smooth (a 4x4 grid upsampled), so a 4-pixel random crop keeps the class.
    """
    if split not in SPLITS:
        raise unknown("split", split, SPLITS)
    pattern_gen = torch.Generator().manual_seed(seed)
    grid = torch.rand(num_classes, channels, 4, 4, generator=pattern_gen)
    patterns = F.interpolate(grid, size=(image_size, image_size), mode="bilinear", align_corners=False)
    patterns = 32 + 192 * patterns
    sample_gen = torch.Generator().manual_seed(seed * 1_000_003 + SPLITS.index(split) + 1)
    labels = (torch.arange(num_images) % num_classes)[torch.randperm(num_images, generator=sample_gen)]
    brightness = 16 * torch.randn(num_images, 1, 1, 1, generator=sample_gen)
    pixels = torch.randn(num_images, channels, image_size, image_size, generator=sample_gen)
    images = (patterns[labels] + brightness + noise * pixels).round_().clamp_(0, 255).to(torch.uint8)
    info = _INFO["synthetic"]  # every channel has the same statistics
    return ImageSet(images, labels, "synthetic", num_classes, info.mean[:1] * channels, info.std[:1] * channels)


# ---------------------------------------------------------------------------------------------------- locating files

def _user_roots(data_dir) -> list[Path]:
    """User data roots in look-up order: $ROBUSTDARTS_DATA, then ``data_dir``, then the per-user cache."""
    roots = []
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]).expanduser())
    if data_dir is not None:
        roots.append(Path(data_dir).expanduser())
    roots.append(_cache_root())
    return list(dict.fromkeys(roots))


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "robustdarts" / "data"


def _download_root(data_dir) -> Path:
    """Where a download goes: the explicit ``data_dir`` first, since that is where the user asked for data."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return _cache_root()


def _layout(key: str, split: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(sub-folders tried under each root, files the split needs)."""
    if key == "fashion-mnist":
        return ("fashion-mnist", ""), tuple(f for f, _ in _FASHION_FILES[split])
    if key in _CIFAR:
        return (_CIFAR[key][0],), _CIFAR[key][4][split]
    return ("svhn", ""), (_SVHN_FILES[split][0],)


def _candidates(key: str, split: str, data_dir) -> list[Path]:
    subdirs, _ = _layout(key, split)
    dirs = [root / sub if sub else root for root in _user_roots(data_dir) for sub in subdirs]
    if key in _SYSTEM_DIRS:
        dirs.append(_SYSTEM_DIRS[key])
    return list(dict.fromkeys(dirs))


def _find(key: str, split: str, dirs: list[Path]) -> Path | None:
    _, files = _layout(key, split)
    return next((d for d in dirs if all((d / f).is_file() for f in files)), None)


def _downloads(key: str, split: str) -> tuple[str, list[tuple[str, str, str]], bool]:
    """(sub-folder of the download root, [(url, file name, md5)], whether the files are tar archives to unpack)."""
    if key == "fashion-mnist":
        return "fashion-mnist", [(_FASHION_URL + f, f, md5) for f, md5 in _FASHION_FILES[split]], False
    if key in _CIFAR:
        _, url, md5, _, _ = _CIFAR[key]
        return "", [(url, url.rsplit("/", 1)[1], md5)], True
    file, md5 = _SVHN_FILES[split]
    return "svhn", [(_SVHN_URL + file, file, md5)], False


def _load_arrays(key: str, split: str, data_dir, download: bool) -> tuple[np.ndarray, np.ndarray]:
    dirs = _candidates(key, split, data_dir)
    found = _find(key, split, dirs)
    if found is not None and data_dir is not None and not Path(data_dir).expanduser().exists():
        raise RobustDartsError(f"data_dir {data_dir} does not exist (the {key} data was found in {found} instead); "
                               f"fix the path or drop --data-dir.")
    if found is None:
        _, files = _layout(key, split)
        where = ", ".join(map(str, dirs))
        sub, sources, _ = _downloads(key, split)
        urls = " and ".join(url for url, _, _ in sources)
        if not download:
            raise RobustDartsError(
                f"{key} {split} data ({', '.join(files)}) not found in {where}; {_HINTS[key]}download it from "
                f"{urls} into one of those folders (point --data-dir or ${ENV_VAR} at it), or allow download.")
        try:
            _fetch(key, split, _download_root(data_dir))
        except RobustDartsError as e:
            raise RobustDartsError(
                f"{key} {split} data ({', '.join(files)}) not found in {where}, and downloading it failed ({e}); "
                f"{_HINTS[key]}download it from {urls} into one of those folders "
                f"(point --data-dir or ${ENV_VAR} at it).") from None
        found = _find(key, split, dirs + [_download_root(data_dir) / sub if sub else _download_root(data_dir)])
        if found is None:
            raise RobustDartsError(f"the {key} download did not contain the expected files {', '.join(files)}.")
    if key == "fashion-mnist":
        return _read_fashion(found, split)
    if key in _CIFAR:
        return _read_cifar(key, found, split)
    return _read_svhn(found, split)


# ---------------------------------------------------------------------------------------------------- downloading

def _fetch(key: str, split: str, root: Path) -> None:
    sub, sources, is_archive = _downloads(key, split)
    target = root / sub if sub else root
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RobustDartsError(f"cannot create {target}: {e.strerror}") from None
    for url, file, md5 in sources:
        if (target / file).is_file() and _md5(target / file) == md5:
            continue
        download_file(url, target / file, md5)
        if is_archive:
            _unpack(target / file, target)
            (target / file).unlink()


def download_file(url: str, dest: Path, md5: str, timeout: float = 60.0) -> None:
    """Download ``url`` to ``dest`` through a temporary file, renamed only once the MD5 matches."""
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as e:
        part.unlink(missing_ok=True)
        raise RobustDartsError(f"cannot download {url}: {getattr(e, 'reason', e)}") from None
    if digest.hexdigest() != md5:
        part.unlink(missing_ok=True)
        raise RobustDartsError(f"{url} arrived with MD5 {digest.hexdigest()} instead of {md5}")
    os.replace(part, dest)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _unpack(archive: Path, target: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")  # "data" refuses absolute paths, links out and device files
    except (tarfile.TarError, OSError) as e:
        raise RobustDartsError(f"cannot unpack {archive}: {e}") from None


# ---------------------------------------------------------------------------------------------------- file formats

def _corrupt(path: Path, why: str) -> RobustDartsError:
    return RobustDartsError(f"{path} is corrupted ({why}); delete it and download it again.")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzip-compressed when the name ends in .gz)."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; a truncated stream an EOFError
        raise _corrupt(path, f"{type(e).__name__}: {e}") from None
    # Header: two zero bytes, type code 0x08 (unsigned byte), number of dimensions, then one big-endian u32 each.
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or data[3] == 0:
        raise _corrupt(path, "not an unsigned-byte IDX file")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _corrupt(path, "truncated header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != int(np.prod(dims)):
        raise _corrupt(path, f"{len(data) - header} data bytes for shape {dims}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _read_fashion(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    (image_file, _), (label_file, _) = _FASHION_FILES[split]
    images, labels = read_idx(folder / image_file), read_idx(folder / label_file)
    if images.ndim != 3:
        raise _corrupt(folder / image_file, f"images of shape {images.shape}, not (N, H, W)")
    if labels.ndim != 1 or len(images) != len(labels):
        # Blame the file whose count is not the official one (a short labels file is the labels file's fault).
        official = _INFO["fashion-mnist"].train_size if split == "train" else _INFO["fashion-mnist"].test_size
        why = f"images {images.shape} do not match labels {labels.shape}"
        if len(images) == official or len(labels) == official:
            raise _corrupt(folder / (label_file if len(images) == official else image_file), why)
        raise RobustDartsError(f"{folder / image_file} and {label_file} disagree ({why}); delete both and download "
                               f"them again.")
    return images[:, None], labels


def _field(batch: dict, key: str):
    # The official batches are Python 2 pickles, whose keys come back as bytes; files written by Python 3 use str.
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def _read_cifar(key: str, folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    label_key, files = _CIFAR[key][3], _CIFAR[key][4][split]
    images, labels = [], []
    for file in files:
        path = folder / file
        batch = safe_load(path.read_bytes(), source=str(path), encoding="bytes")
        try:
            data, targets = np.asarray(_field(batch, "data")), np.asarray(_field(batch, label_key), dtype=np.int64)
        except (KeyError, TypeError, ValueError) as e:
            raise _corrupt(path, f"no usable 'data' and '{label_key}' entries: {e}") from None
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or targets.shape != (len(data),):
            raise _corrupt(path, f"data {data.dtype} {data.shape} with {targets.shape} labels")
        images.append(data.reshape(-1, 3, 32, 32))  # each row is R plane, G plane, B plane, each row-major 32x32
        labels.append(targets)
    return np.concatenate(images), np.concatenate(labels)


def _read_svhn(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io  # only SVHN needs scipy; import it late

    path = folder / _SVHN_FILES[split][0]
    try:
        mat = scipy.io.loadmat(path)
        images, labels = mat["X"], np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    except Exception as e:  # scipy raises several types (ValueError, MatReadError, KeyError) for bad files
        raise _corrupt(path, f"{type(e).__name__}: {e}") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[2] != 3 or images.shape[3] != len(labels):
        raise _corrupt(path, f"X {images.dtype} {images.shape} with {labels.shape} labels")
    labels[labels == 10] = 0  # SVHN stores digit 0 as class 10
    return images.transpose(3, 2, 0, 1), labels  # (H, W, C, N) -> (N, C, H, W)
