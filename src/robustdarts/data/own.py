"""The door for the user's own data: ``folder:PATH`` (the ImageFolder layout) and ``npz:FILE`` (keras arrays).

Past this module a user's data is an ``ImageSet`` like any built-in one: uint8 (N, C, H, W), int64 labels, the
class names sorted as torchvision sorts them, normalization statistics measured on the training split, and a
content digest. Decoding and caching live here only.

- ``folder:PATH``: ``PATH/train/<class>/*`` and ``PATH/test/<class>/*``, or ``PATH/<class>/*`` alone, when a seeded
  1/6 of each class (at least one image) is held out as the test split. PNG, JPEG, BMP and WebP are decoded with
  Pillow (in worker processes for large folders); grayscale, palette, RGB and RGBA (alpha dropped) images become
  1-channel sets when Pillow opens all as gray, 3-channel ones otherwise (a gray WebP opens as RGB, a gray palette
  PNG as P: a note then names the first such image). Files without an image suffix and hidden files are ignored and
  counted.
- ``npz:FILE``: keys ``x_train``, ``y_train``, ``x_test``, ``y_test``; uint8 images N x H x W or N x H x W x C with
  C in (1, 3); integer labels 0..K-1 (K: the classes found), the same labels in both splits.

A folder is decoded once: its images go to a cache file named by a hash of what was read (the resolved folder,
every file's relative name, size, modification and change time), so a changed folder is decoded again and the
cache of another folder can never be used; later starts read the cache in a fraction of a second. A process also
keeps what it decoded (by that key), so the several look-ups of one run (memory check, info, splits) decode
nothing twice; and a start (``starts.one_start``) walks a folder once, every start walking it anew.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import atomic_write, atomic_write_text
from ..errors import RobustDartsError, first_line, short
from ..starts import once_per_start

IN_MEMORY = "in-memory"  # data handed to the Python API (api.py): arrays, tensors or a torch Dataset
KINDS = ("folder", "npz", IN_MEMORY)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# The network's least side, as config.FIELD_RANGES' image_size: its two stride-2 reductions take 3 pixels to 2 to 1
# (a search and a training at image_size 3 run); the 8 pixels asked before refused images that --set image_size
# would have accepted.
MIN_SIDE = 3
WHY_MIN_SIDE = f"the {MIN_SIDE} pixels a side that the network's two stride-2 reductions need"
HOLDOUT_SEED = 0  # a constant, not the run's seed: every run on a folder (search, train, any seed) tests on the same
HOLDOUT_FRACTION = 1 / 6  # images, none of which a search trained on
PARALLEL_FROM = 2048  # files; below this, starting worker processes costs more than it saves
PROGRESS_FROM = 4096  # files; a progress bar for folders that take more than a moment
CACHE_FORMAT = 1  # bump when the cache's layout changes: old files then never match a key
RECORD_FILE = "data.json"
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def is_own(name: object) -> bool:
    """Whether a dataset name is one of the user's (``folder:PATH`` or ``npz:FILE``)."""
    return isinstance(name, str) and name.split(":", 1)[0] in KINDS and ":" in name


def canonical_name(name: str) -> str:
    """``kind:/absolute/path``: the name a config records, so that a run resumed from another directory still
    finds its data. The path is not checked here (that is the load's job, with the file named)."""
    kind, path = name.split(":", 1)
    if kind == IN_MEMORY:
        return name  # a content hash, not a path
    if not path.strip():
        raise RobustDartsError(f"dataset {name!r} names no path; write {kind}:PATH, e.g. {kind}:"
                               f"{'my_images' if kind == 'folder' else 'arrays.npz'}.")
    return f"{kind}:{Path(path).expanduser().resolve()}"


def dataset_label(name: str) -> str:
    """A short, path-free label for directory names: ``folder-<folder name>``, ``npz-<file stem>``; a built-in
    name as it is."""
    if not is_own(name):
        return name
    kind, path = name.split(":", 1)
    return f"{kind}-{(Path(path).name if kind == 'folder' else Path(path).stem) or 'data'}"


@dataclass
class Decoded:
    """A user's data set as decoded: every image HxWxC uint8 in one flat buffer (images may differ in size)."""

    pixels: np.ndarray  # uint8, every image's H*W*C values one after the other
    shapes: np.ndarray  # int64 (N, 2): height and width of each image
    labels: np.ndarray  # int64 (N,)
    test: np.ndarray  # bool (N,): in the test split
    channels: int
    classes: tuple[str, ...]
    files: tuple[str, ...] = ()  # relative names (folders), in image order
    meta: dict = field(default_factory=dict)  # layout, ignored / skipped files, mean and std, digest, ...
    root: Path | None = None  # the folder, and the content key naming its cache (folders only)
    key: str = ""
    cached: bool = False  # in the decode cache already

    def images(self, split: str, side: int, rows: np.ndarray | None = None) -> torch.Tensor:
        """The split's images (``rows``: only those, positions in the split) as uint8 (N, C, side, side): each size
        group resized once (area when shrinking, bilinear when growing, as the built-in sets are). Each image is
        resized on its own numbers, so choosing rows first gives the same pixels as choosing them after resizing
        the whole split, without resizing the images left out."""
        keep = ~self.test if split == "train" else self.test
        c = self.channels
        ends = np.cumsum(self.shapes[:, 0] * self.shapes[:, 1] * c)
        starts = ends - self.shapes[:, 0] * self.shapes[:, 1] * c
        index = np.flatnonzero(keep)
        if rows is not None:
            index = index[rows]
        out = torch.empty((len(index), c, side, side), dtype=torch.uint8)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, j in enumerate(index):
            groups.setdefault((int(self.shapes[j, 0]), int(self.shapes[j, 1])), []).append(i)
        for (h, w), members in groups.items():
            stored = index[members]
            if len(members) == len(index) and _contiguous(starts[stored], h * w * c):
                block = self.pixels[starts[stored[0]]:ends[stored[-1]]]  # one size, stored in order: a view
            else:
                block = np.concatenate([self.pixels[starts[r]:ends[r]] for r in stored])
            x = torch.from_numpy(block).view(len(members), h, w, c).permute(0, 3, 1, 2)
            if (h, w) != (side, side):
                x = _resize(x, side)
            out[torch.as_tensor(members)] = x
        return out


def _contiguous(starts: np.ndarray, step: int) -> bool:
    return len(starts) < 2 or bool(np.all(np.diff(starts) == step))


def _resize(images: torch.Tensor, side: int) -> torch.Tensor:
    """datasets.resize_images' rule (area when shrinking, bilinear when growing, rounded back to uint8), per image
    the same numbers, extended to non-square images (area only when both sides shrink)."""
    h, w = images.shape[-2:]
    mode = dict(mode="area") if side <= h and side <= w else dict(mode="bilinear", align_corners=False)
    out = images.new_empty((len(images), images.shape[1], side, side))
    for start in range(0, len(images), 4096):  # chunks bound the float copy's memory
        x = F.interpolate(images[start:start + 4096].float(), size=(side, side), **mode)
        out[start:start + 4096] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


_MEMO: dict[str, Decoded] = {}  # content key -> decoded set, for the look-ups of one process


def note(text: str) -> None:
    """One line on stderr (never stdout, which --json keeps for its JSON)."""
    print(f"note: {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- the door

def decoded(name: str) -> Decoded:
    """The decoded data set of ``folder:PATH`` or ``npz:FILE`` (bad images left out and listed in its meta)."""
    kind, path = canonical_name(name).split(":", 1)
    if kind == IN_MEMORY:
        return _handed_in(name)
    root = Path(path)
    if kind == "npz":
        key = _npz_key(root)
        if key not in _MEMO:
            _MEMO[key] = _finish(_read_npz(root), name)
        return _MEMO[key]
    listing = _listing(root)
    key = listing.key
    if key not in _MEMO:
        data = _read_cache(root, key)
        if data is None:
            data = _finish(_decode_folder(root, listing), name)
            data.root, data.key = root, key
            if not data.meta["skipped"]:  # with unreadable images, only once skipping them is asked for
                _write_cache(data)
        _MEMO[key] = data
    # What the folder holds besides its images is not in the content key (a note added beside them changes no
    # image): it is said as the folder is now, not as it was when the images were decoded.
    _MEMO[key].meta.update(ignored=sum(listing.ignored.values()), ignored_kinds=dict(listing.ignored))
    return _MEMO[key]


def checked(name: str, skip_bad_images: bool = False) -> Decoded:
    """``decoded(name)``, refusing it in one sentence naming the first unreadable image unless
    ``skip_bad_images`` (then counted in one line). The notes on what was read come once per process, and only
    for accepted data: a refusal stays one sentence."""
    data = decoded(name)
    bad = data.meta.get("skipped") or []
    if bad and not skip_bad_images:
        path, why = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise RobustDartsError(f"{path} cannot be decoded ({why}){more}; replace or remove it, or pass --set "
                               f"skip_bad_images=true to leave unreadable images out.")
    if bad and not data.cached and data.root is not None:
        _write_cache(data)
    if not data.meta.get("said"):
        data.meta["said"] = True
        _notes(data)
    return data


def info(name: str) -> dict:
    """The ``DatasetInfo`` fields of a user's data set (the training split's statistics; bad images not counted).
    Plain values: datasets.py builds the value, so that this module stays below it (no import cycle)."""
    data = decoded(name)
    m = data.meta
    return dict(name=canonical_name(name), channels=data.channels, num_classes=len(data.classes), size=m["size"],
                mean=tuple(m["mean"]), std=tuple(m["std"]), train_size=int((~data.test).sum()),
                test_size=int(data.test.sum()), classes=data.classes, digest=m["digest"])


def load(name: str, split: str, image_size: int | None = None, skip_bad_images: bool = False,
         choose: Callable[[int], torch.Tensor | None] | None = None) -> tuple:
    """``split`` of a user's data set at ``image_size`` (default: the set's most common size): the ``ImageSet``
    fields (images, labels, name, classes, mean, std), which datasets.py turns into one. ``choose(count)``: the
    positions (in order) of the subset to keep of the split's ``count`` images, or None for all: datasets.py's
    ``limit`` rule, applied before resizing so that a 200-image limit on a 50,000-image folder resizes 200."""
    data = checked(name, skip_bad_images)
    m = data.meta
    test = data.test if split == "test" else ~data.test
    chosen = choose(int(test.sum())) if choose is not None else None
    rows = None if chosen is None else chosen.numpy()
    labels = data.labels[test] if rows is None else data.labels[test][rows]
    if image_size and image_size != m["size"]:
        size = f"{m['size']}x{m['size']}" + (" (the most common size)" if len(m["sizes"]) > 1 else "")
        once_per_start(("own-data resized", canonical_name(name), image_size), lambda: note(
            f"{canonical_name(name)}: images resized from {size} to {image_size}x{image_size} (image_size); "
            f"{RECORD_FILE} records the data's own size."))
    return (data.images(split, image_size or m["size"], rows), torch.from_numpy(labels), canonical_name(name),
            len(data.classes), tuple(m["mean"]), tuple(m["std"]))


def record(run_dir: Path, name: str, resuming: bool = False) -> None:
    """Write what a run used (``data.json``: classes and their indices, layout, held-out test images, statistics,
    digest) into its directory; on resume, refuse data that changed since (the batch streams would no longer
    be the ones checkpointed)."""
    data = decoded(name)
    path = Path(run_dir) / RECORD_FILE
    if resuming:
        try:
            before = json.loads(path.read_text()).get("digest")
        except (OSError, ValueError, AttributeError):
            return  # a run from before the record existed, or a damaged record: nothing to compare with
        if before is not None and before != data.meta["digest"]:
            raise RobustDartsError(f"{name} changed since {run_dir} started (content digest {data.meta['digest']} "
                                   f"instead of {before}); restore the data or start a new run.")
        return
    m = data.meta
    out = {"dataset": canonical_name(name), "layout": m["layout"], "classes": list(data.classes),
           "class_to_index": {c: i for i, c in enumerate(data.classes)}, "channels": data.channels,
           "size": m["size"], "sizes": m["sizes"], "train_images": int((~data.test).sum()),
           "test_images": int(data.test.sum()), "mean": m["mean"], "std": m["std"], "digest": m["digest"],
           "ignored_files": m.get("ignored", 0), "skipped_images": m.get("skipped", [])}
    if m["layout"] in ("held-out", IN_MEMORY):  # in memory: the files are the images' indices
        out["holdout"] = {"seed": HOLDOUT_SEED, "fraction": "1/6 of each class, at least one image",
                          "test_images": [f for f, t in zip(data.files, data.test) if t]}
    atomic_write_text(path, json.dumps(out, indent=1) + "\n")


def moved_record(run_dir: Path, name: str) -> dict:
    """The run's data.json naming ``name`` as the new place of its data (a folder or file moved since the run
    started), for the caller to write: refused as ``record(resuming=True)`` refuses changed data unless ``name``
    holds the data whose content digest data.json recorded. The digest covers classes, sizes, labels, split and
    pixels, never a path, so the same data at another place gives the same batches."""
    path = Path(run_dir) / RECORD_FILE
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        recorded = None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("digest"), str):
        raise RobustDartsError(f"{path} holds no content digest of the data {run_dir} was run on, so "
                               f"{canonical_name(name)} cannot be checked to be the same data; put the data back "
                               f"where the run's config.yaml says, or start a new run.")
    record(run_dir, name, resuming=True)  # a different digest: "changed since", one sentence
    return {**recorded, "dataset": canonical_name(name)}


# ---------------------------------------------------------------------------------------------------- folders

@dataclass
class Listing:
    layout: str  # "train/test" or "held-out"
    classes: tuple[str, ...]
    files: list[tuple[str, int, str]]  # (relative name, class index, split: train | test | all)
    ignored: Counter
    key: str


def _listing(root: Path) -> Listing:
    """``_scan(root)``, once per start (``starts.one_start``: entered by each command, API call, bench cell and
    spawned rank); outside a start, at every look-up (right, only slower)."""
    return once_per_start(("own-data listing", root), lambda: _scan(root))


def _scan(root: Path) -> Listing:
    """Every image file of the folder with its class and split, checked for layout errors, and the content key
    (resolved folder, names, sizes, modification and change times) that names its decode cache. The change time
    is there for an image rewritten in place with its size and modification time put back (a copy tool, an export
    script that restores times): no program can set it, so such an image is decoded again, not read stale from the
    cache; what else changes it (chmod, a new hard link) costs one decode, never a wrong image."""
    if not root.exists():
        raise RobustDartsError(f"folder {root} does not exist; give folder:PATH the folder that holds the class "
                               f"folders (or train/ and test/).")
    if not root.is_dir():
        raise RobustDartsError(f"{root} is a file, not a folder; give folder:PATH the folder that holds the class "
                               f"folders (or train/ and test/), or npz:FILE for an array file.")
    ignored: Counter = Counter()
    stats: list[tuple[str, int, int, int]] = []
    train, test = root / "train", root / "test"
    if train.is_dir() or test.is_dir():
        if not (train.is_dir() and test.is_dir()):
            have, lack = ("train", "test") if train.is_dir() else ("test", "train")
            raise RobustDartsError(f"{root} has {have}/ but no {lack}/; add {lack}/<class>/ folders, or put the "
                                   f"class folders directly in {root} to hold out 1/6 of each class as test.")
        splits = {"train": _classes(train, ignored, stats, root), "test": _classes(test, ignored, stats, root)}
        others = [e for e in os.listdir(root) if e not in ("train", "test")]  # val/, notes: not read, but said
        ignored["hidden"] += sum(e.startswith(".") for e in others)
        ignored["outside train/ and test/"] += sum(not e.startswith(".") for e in others)
        if set(splits["train"]) != set(splits["test"]):
            only_train = sorted(set(splits["train"]) - set(splits["test"]))
            only_test = sorted(set(splits["test"]) - set(splits["train"]))
            parts = [f"only in train: {', '.join(only_train)}"] * bool(only_train) + \
                    [f"only in test: {', '.join(only_test)}"] * bool(only_test)
            raise RobustDartsError(f"{train} and {test} hold different classes ({'; '.join(parts)}); give both the "
                                   f"same class folders.")
        layout = "train/test"
    else:
        splits = {"all": _classes(root, ignored, stats, root)}
        layout = "held-out"
    classes = tuple(sorted(next(iter(splits.values()))))
    if len(classes) < 2:
        raise RobustDartsError(f"{root} has {len(classes)} class folder{'' if len(classes) == 1 else 's'} with images "
                               f"({', '.join(classes)}); a classifier needs at least two.")
    index = {c: i for i, c in enumerate(classes)}
    files = [(rel, index[c], split) for split, by_class in splits.items() for c in classes for rel in by_class[c]]
    digest = hashlib.sha256(json.dumps([CACHE_FORMAT, str(root), layout, sorted(stats)]).encode())
    return Listing(layout, classes, files, ignored, digest.hexdigest())


def _classes(folder: Path, ignored: Counter, stats: list, root: Path) -> dict[str, list[str]]:
    """class name -> sorted relative image names under ``folder/<class>/`` (sub-folders included, as torchvision's
    ImageFolder walks them); hidden entries and files without an image suffix are counted in ``ignored``, and each
    image's (relative name, size, modification and change time) added to ``stats``."""
    out: dict[str, list[str]] = {}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        raise RobustDartsError(f"cannot read folder {folder} ({e.strerror}).") from None
    for entry in entries:
        if entry.name.startswith("."):
            ignored["hidden"] += 1
        elif entry.is_dir():
            images = []
            skip = len(str(root)) + 1  # relative names by slicing: os.path.relpath per file took most of a scan
            for dirpath, dirnames, filenames in os.walk(entry.path):
                ignored["hidden"] += sum(d.startswith(".") for d in dirnames)
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in filenames:
                    if f.startswith("."):
                        ignored["hidden"] += 1
                    elif not f.lower().endswith(IMAGE_SUFFIXES):
                        ignored[os.path.splitext(f)[1].lower() or "no suffix"] += 1
                    else:
                        full = f"{dirpath}/{f}"
                        try:
                            st = os.stat(full)
                        except OSError as e:  # a dangling link, a file gone while listing
                            raise RobustDartsError(f"cannot read image {full} ({e.strerror}); remove it or restore "
                                                   f"it.") from None
                        rel = full[skip:]
                        images.append(rel)
                        stats.append((rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
            if not images:
                raise RobustDartsError(f"class folder {entry.path} holds no images (PNG, JPEG, BMP or WebP); add "
                                       f"some or remove the folder.")
            out[entry.name] = sorted(images)
        else:
            ignored["outside a class folder"] += 1
    if not out:
        raise RobustDartsError(f"{folder} holds no class folders with images; lay out your data as "
                               f"{folder}/<class>/<image>, or as train/<class>/... and test/<class>/....")
    return out


def _decode_one(path: str) -> np.ndarray | str:
    """One image as HxW (gray) or HxWx3 uint8, or why it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()  # decodes now: a truncated or corrupt file fails here, not later
            if img.mode in ("1", "L", "LA", "La"):
                img = img.convert("L") if img.mode != "L" else img
            elif img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                return f"{img.mode} pixels: save it as an 8-bit image"
            elif img.mode != "RGB":
                img = img.convert("RGB")  # palette, RGBA (alpha dropped), CMYK, YCbCr ...
            return np.asarray(img, dtype=np.uint8)
    except Exception as e:  # noqa: BLE001 - a decoder fed arbitrary bytes raises many types; each means "bad file"
        return first_line(e)


def _decode_chunk(paths: list[str]) -> list[np.ndarray | str]:
    return [_decode_one(p) for p in paths]


def _decode_all(paths: list[str], label: str) -> list[np.ndarray | str]:
    """Decode in worker processes (forked: no interpreter start-up, nothing of torch used there) for large folders,
    in this process for small ones; a progress bar on a terminal for very large ones."""
    import multiprocessing

    from concurrent.futures import ProcessPoolExecutor

    from rich.console import Console
    from rich.progress import Progress

    workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 32)
    can_fork = "fork" in multiprocessing.get_all_start_methods() and sys.platform.startswith("linux")
    parallel = len(paths) >= PARALLEL_FROM and workers >= 2 and can_fork
    size = max(64, min(1024, len(paths) // (8 * workers)))
    chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
    console = Console(stderr=True)
    results: list = []
    # One process (a small folder, or no fork: macOS, Windows, one core) decodes the same chunks in this process,
    # under the same bar: a large folder is never minutes of silence.
    with (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) if parallel
          else contextlib.nullcontext()) as pool, \
            Progress(console=console, transient=True,
                     disable=len(paths) < PROGRESS_FROM or not console.is_terminal) as bar:
        task = bar.add_task(f"decoding {label}", total=len(paths))
        for part in (pool.map(_decode_chunk, chunks) if parallel else map(_decode_chunk, chunks)):
            results.extend(part)
            bar.advance(task, len(part))
    return results


def _decode_folder(root: Path, listing: Listing) -> Decoded:
    start = time.perf_counter()
    out = _decode_all([f"{root}/{rel}" for rel, _, _ in listing.files], str(root))
    good, skipped = [], []
    for (rel, label, split), image in zip(listing.files, out):
        if isinstance(image, str):
            skipped.append((str(root / rel), image))
            continue
        h, w = image.shape[:2]
        if min(h, w) < MIN_SIDE:
            raise RobustDartsError(f"{root / rel} is {w}x{h} pixels, smaller than {WHY_MIN_SIDE}; remove it or use "
                                   f"larger images.")
        good.append((rel, label, split, image))
    if not good:
        raise RobustDartsError(f"no image in {root} can be decoded (first: {skipped[0][0]}: {skipped[0][1]}); check "
                               f"that the files are PNG, JPEG, BMP or WebP images.")
    channels = 3 if any(img.ndim == 3 for _, _, _, img in good) else 1
    colour = [(rel, img) for rel, _, _, img in good if img.ndim == 3]
    pixels = np.concatenate([_with_channels(img, channels).reshape(-1) for _, _, _, img in good])
    shapes = np.array([img.shape[:2] for _, _, _, img in good], dtype=np.int64)
    labels = np.array([label for _, label, _, _ in good], dtype=np.int64)
    test = np.array([split == "test" for _, _, split, _ in good], dtype=bool)
    files = tuple(rel for rel, _, _, _ in good)
    if listing.layout == "held-out":
        test = _hold_out(labels, listing.classes, root)
    seconds = time.perf_counter() - start
    meta = {"layout": listing.layout, "ignored": sum(listing.ignored.values()),
            "ignored_kinds": dict(listing.ignored), "skipped": skipped, "colour": _colour(colour, len(good)),
            "decoded": f"decoded {len(good):,} images in {seconds:.2f} s "
                       f"({len(good) / max(seconds, 1e-9):,.0f} images/s)"}
    return Decoded(pixels, shapes, labels, test, channels, listing.classes, files, meta)


def _colour(colour: list[tuple[str, np.ndarray]], count: int) -> dict | None:
    """Why a set became 3-channel, for its note: the first image decoded as colour, how many of the colour ones
    look gray (three channels within 2 levels: Pillow opens a gray WebP as RGB, a gray palette PNG as P), how
    many are gray."""
    if not colour:
        return None
    # Within 2 levels, not exactly: a lossy WebP of a gray image comes back with channels 1 level apart.
    looks_gray = [int(np.ptp(img.astype(np.int16), axis=2).max()) <= 2 for _, img in colour]
    return {"first": colour[0][0], "first_looks_gray": looks_gray[0], "colour": len(colour),
            "looks_gray": sum(looks_gray), "gray": count - len(colour)}


def _with_channels(image: np.ndarray, channels: int) -> np.ndarray:
    if image.ndim == 2:
        image = image[:, :, None]
    return np.repeat(image, 3, axis=2) if image.shape[2] != channels else image  # gray replicated, as L -> RGB


def _hold_out(labels: np.ndarray, classes: tuple[str, ...], root: Path) -> np.ndarray:
    """The test images of a folder without test/: per class, ``round(n / 6)`` (at least one) drawn by a fixed seed
    over the class's images in name order, so that the split depends on the folder's content only."""
    generator = torch.Generator().manual_seed(HOLDOUT_SEED)
    test = np.zeros(len(labels), dtype=bool)
    for k, name in enumerate(classes):
        members = np.flatnonzero(labels == k)
        if len(members) < 2:
            raise RobustDartsError(f"class {name!r} of {root} has {len(members)} readable image(s); with no test/ "
                                   f"folder each class needs at least two, one of them held out for testing.")
        count = max(1, round(len(members) * HOLDOUT_FRACTION))
        test[members[torch.randperm(len(members), generator=generator)[:count].numpy()]] = True
    return test


# ---------------------------------------------------------------------------------------------------- npz files

def _npz_key(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        raise RobustDartsError(f"npz file {path} does not exist; give npz:FILE an existing .npz file.") from None
    # The change time too (as for a folder's images): a file rewritten with its size and modification time put
    # back is read again, not taken stale from the process's memo or the cache.
    return hashlib.sha256(json.dumps([CACHE_FORMAT, "npz", str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                      st.st_ino]).encode()).hexdigest()


def _read_npz(path: Path) -> Decoded:
    if path.is_dir():
        raise RobustDartsError(f"{path} is a folder, not an npz file; use folder:{path} for a folder of images.")
    # np.load takes a file that is not a zip for a pickle (its refusal then talks of allow_pickle) or for one .npy
    # array (no keys at all): say what the file is not, before numpy guesses.
    try:
        with open(path, "rb") as f:
            is_zip = zipfile.is_zipfile(f)
    except OSError as e:
        raise RobustDartsError(f"cannot read {path} ({e.strerror}).") from None
    if not is_zip:
        raise RobustDartsError(f"{path} is not a numpy .npz (zip) file; write it with numpy.savez(FILE, "
                               f"x_train=..., y_train=..., x_test=..., y_test=...).")
    try:
        with np.load(path, allow_pickle=False) as npz:  # never unpickle a user's file
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise RobustDartsError(f"{path} lacks {', '.join(missing)}; an npz dataset holds the arrays "
                                       f"{', '.join(NPZ_KEYS)} (have: {', '.join(npz.files) or 'none'}).")
            arrays = {k: npz[k] for k in NPZ_KEYS}
    except RobustDartsError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        why = first_line(e)
        raise RobustDartsError(f"{path} cannot be read as an npz file ({why}); write it with numpy.savez(FILE, "
                               f"x_train=..., y_train=..., x_test=..., y_test=...).") from None
    images, labels = [], []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8:
            raise RobustDartsError(f"{path}: x_{split} holds {x.dtype} values; images must be uint8 (0..255), e.g. "
                                   f"{_to_uint8_hint(x)}.")
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[3] not in (1, 3):
            raise RobustDartsError(f"{path}: x_{split} has shape {x.shape}; images must be N x H x W or N x H x W "
                                   f"x C with C = 1 or 3 channels.")
        if min(x.shape[1:3]) < MIN_SIDE:
            raise RobustDartsError(f"{path}: x_{split} images are {x.shape[2]}x{x.shape[1]} pixels, smaller than "
                                   f"{WHY_MIN_SIDE}.")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]  # keras' CIFAR labels are (N, 1)
        if y.ndim != 1 or len(y) != len(x):
            raise RobustDartsError(f"{path}: x_{split} has {len(x)} images but y_{split} has shape {y.shape}; give "
                                   f"one label per image.")
        if not np.issubdtype(y.dtype, np.integer):
            raise RobustDartsError(f"{path}: y_{split} holds {y.dtype} values; labels must be integers 0..K-1.")
        if len(x) == 0:
            raise RobustDartsError(f"{path}: x_{split} holds no images.")
        images.append(x)
        labels.append(y.astype(np.int64))
    if images[0].shape[1:] != images[1].shape[1:]:
        raise RobustDartsError(f"{path}: x_train images are {images[0].shape[1:]} but x_test ones {images[1].shape[1:]}"
                               f"; give both splits the same size and channels.")
    found = np.unique(np.concatenate(labels))
    k = len(found)
    if found[0] < 0 or found[-1] >= k:
        bad = found[0] if found[0] < 0 else found[-1]
        raise RobustDartsError(f"{path}: label {bad} is out of range; with the {k} classes found the labels must be "
                               f"0..{k - 1}.")
    if k < 2:
        raise RobustDartsError(f"{path}: every label is {found[0]}; a classifier needs at least two classes.")
    # As a folder's train/ and test/ must hold the same class folders: a test label never trained on scores 0 and
    # a trained one never tested is not measured, yet both pass the 0..K-1 check above.
    seen = [set(np.unique(y).tolist()) for y in labels]
    if seen[0] != seen[1]:
        parts = [f"only in y_train: {_listed(seen[0] - seen[1])}"] * bool(seen[0] - seen[1]) + \
                [f"only in y_test: {_listed(seen[1] - seen[0])}"] * bool(seen[1] - seen[0])
        raise RobustDartsError(f"{path}: y_train and y_test hold different labels ({'; '.join(parts)}); give both "
                               f"splits the same classes.")
    x = np.concatenate(images)
    return Decoded(np.ascontiguousarray(x).reshape(-1), np.tile(np.array(x.shape[1:3], dtype=np.int64), (len(x), 1)),
                   np.concatenate(labels), np.arange(len(x)) >= len(images[0]), x.shape[3],
                   tuple(str(i) for i in range(k)), (), {"layout": "npz"})


def _listed(labels: set, most: int = 8) -> str:
    ordered = sorted(labels)
    more = f" and {len(ordered) - most} more" if len(ordered) > most else ""
    return ", ".join(map(str, ordered[:most])) + more


def _to_uint8_hint(x: np.ndarray) -> str:
    """How to make ``x`` uint8 without losing it: floats in [0, 1] scaled first (a plain astype makes them black)."""
    if np.issubdtype(x.dtype, np.floating) and x.size and np.nanmin(x) >= 0 and np.nanmax(x) <= 1:
        return "(x * 255).round().astype(numpy.uint8) for values in [0, 1]"
    return "x.astype(numpy.uint8) for values in 0..255"


# ---------------------------------------------------------------------------------------------------- in memory

_HANDED: dict[str, Decoded] = {}  # "in-memory:<digest>" -> the data handed in, for the look-ups of this process


def _handed_in(name: str) -> Decoded:
    """The data handed to the Python API under ``name`` in this process; only its hash is on disk, so any other
    process (the CLI, a resume in a new session) must be handed it again."""
    if name not in _HANDED:
        raise RobustDartsError(f"{name} is data that was handed to the Python API in memory and only its hash was "
                               f"recorded; hand the same images and labels in again from Python (dataset=...), e.g. "
                               f"robustdarts.search(resume=RUN_DIR, dataset=(images, labels)).")
    return _HANDED[name]


def hand_in(data: object) -> str:
    """Take a user's data handed in memory and return its dataset name, ``in-memory:<content hash>``.

    ``data`` is a pair ``(images, labels)`` (numpy arrays or torch tensors: uint8 images N x H x W or N x H x W x C
    with C in (1, 3), integer labels 0..K-1) or a ``torch.utils.data.Dataset`` whose items are ``(image, label)``
    (an image: a PIL image, an H x W or H x W x C uint8 array, or a uint8 C x H x W tensor as torchvision's
    ``PILToTensor`` gives; sizes may differ, as in a folder). As for a folder without test/, a seeded 1/6 of each
    class is held out as the test split. Past this function the data is an ``ImageSet`` like any other; the same
    content always gets the same name, so a resumed run can check that it was handed the same data."""
    from torch.utils.data import Dataset

    what = "the in-memory data"
    if isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = (_as_array(v) for v in data)
        if images is None or labels is None:
            raise RobustDartsError(f"{what} must be numpy arrays or torch tensors, got ({type(data[0]).__name__}, "
                                   f"{type(data[1]).__name__}); pass (images, labels).")
        images = _check_images(images, what)
        shapes = np.tile(np.array(images.shape[1:3], dtype=np.int64), (len(images), 1))
        pixels, channels = np.ascontiguousarray(images).reshape(-1), images.shape[3]
    elif isinstance(data, Dataset):
        pixels, shapes, labels, channels = _from_dataset(data, what)
    else:
        raise RobustDartsError(f"dataset must be a name (fashion-mnist, folder:PATH, npz:FILE, ...), a pair (images, "
                               f"labels) of arrays or tensors, or a torch Dataset of (image, label), not "
                               f"{type(data).__name__}.")
    labels = _check_labels(labels, len(shapes), what)
    k = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=k)
    if counts.min() < 2:
        raise RobustDartsError(f"class {int(counts.argmin())} of {what} has {int(counts.min())} image(s); each class "
                               f"needs at least two, as 1/6 of each (at least one) is held out for testing.")
    classes = tuple(str(i) for i in range(k))
    files = tuple(str(i) for i in range(len(labels)))  # data.json lists the held-out images by index
    test = _hold_out(labels, classes, Path(what))
    found = Decoded(pixels, shapes, labels, test, channels, classes, files, {"layout": IN_MEMORY})
    found = _finish(found, what)
    name = f"{IN_MEMORY}:{found.meta['digest']}"
    _HANDED.setdefault(name, found)
    return name


def _as_array(value: object) -> np.ndarray | None:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value if isinstance(value, np.ndarray) else None


def _check_images(x: np.ndarray, what: str, item: bool = False) -> np.ndarray:
    """uint8 N x H x W x C (C in 1, 3) at least MIN_SIDE a side, or one sentence; ``item``: ``x`` is one Dataset
    item's image with a batch axis added, and the sentence names the item's own shape."""
    if x.dtype != np.uint8:
        raise RobustDartsError(f"{what} holds {x.dtype} images; images must be uint8 (0..255), e.g. "
                               f"{_to_uint8_hint(x)}.")
    shape = x.shape[1:] if item else x.shape
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[3] not in (1, 3) or len(x) == 0:
        raise RobustDartsError(f"{what} has an image of shape {shape}; give an H x W or H x W x C image (C = 1 or 3 "
                               f"channels last; a tensor may be C x H x W)." if item else
                               f"{what} has images of shape {shape}; give N x H x W or N x H x W x C images "
                               f"(N >= 1, C = 1 or 3 channels last).")
    if min(x.shape[1:3]) < MIN_SIDE:
        raise RobustDartsError(f"{what} has {x.shape[2]}x{x.shape[1]}-pixel images, smaller than {WHY_MIN_SIDE}.")
    return x


def _check_labels(y: object, count: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # keras' (N, 1) labels
    if y.ndim != 1 or len(y) != count:
        raise RobustDartsError(f"{what} has {count} images but labels of shape {y.shape}; give one label per image.")
    if not np.issubdtype(y.dtype, np.integer):
        raise RobustDartsError(f"{what} has {y.dtype} labels; labels must be integers 0..K-1.")
    found = np.unique(y)
    if found[0] < 0 or found[-1] >= len(found):
        bad = found[0] if found[0] < 0 else found[-1]
        raise RobustDartsError(f"{what} has label {bad}, out of range; with the {len(found)} classes found the labels "
                               f"must be 0..{len(found) - 1}.")
    if len(found) < 2:
        raise RobustDartsError(f"every label of {what} is {found[0]}; a classifier needs at least two classes.")
    return y.astype(np.int64)


def _from_dataset(dataset, what: str) -> tuple[np.ndarray, np.ndarray, list[int], int]:
    """Every (image, label) item of a torch Dataset: flat pixels, (N, 2) shapes, labels and channels (1 when all
    images are gray, 3 otherwise, gray replicated)."""
    try:
        count = len(dataset)
    except TypeError:
        raise RobustDartsError(f"{what} is a torch Dataset without a length; give it __len__, or pass (images, "
                               f"labels) arrays.") from None
    images, labels = [], []
    for i in range(count):
        item = dataset[i]
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise RobustDartsError(f"item {i} of {what} is a {type(item).__name__}, not an (image, label) pair.")
        image, label = item
        if isinstance(label, torch.Tensor) and label.numel() == 1:
            label = label.item()
        if not isinstance(label, (int, np.integer)) or isinstance(label, bool):
            raise RobustDartsError(f"item {i} of {what} has the label {short(label)}; labels must be integers "
                                   f"0..K-1.")
        images.append(_one_image(image, i, what))
        labels.append(int(label))
    if not images:
        raise RobustDartsError(f"{what} is an empty Dataset; it needs images of at least two classes.")
    channels = 3 if any(img.shape[2] == 3 for img in images) else 1
    gray = sum(img.shape[2] == 1 for img in images)
    if channels == 3 and gray:  # as a folder's note says it: the set is RGB, and why
        first = next(i for i, img in enumerate(images) if img.shape[2] == 3)
        note(f"{what}: item {first} is a colour image, so the set is RGB; its {gray} gray image"
             f"{'s are' if gray > 1 else ' is'} repeated to 3 channels.")
    pixels = np.concatenate([_with_channels(img, channels).reshape(-1) for img in images])
    return pixels, np.array([img.shape[:2] for img in images], dtype=np.int64), labels, channels


def _one_image(image: object, i: int, what: str) -> np.ndarray:
    """One Dataset image as uint8 H x W x C."""
    if isinstance(image, torch.Tensor):
        if image.dim() == 3 and image.shape[0] in (1, 3) and image.shape[2] not in (1, 3):
            image = image.permute(1, 2, 0)  # torchvision's C x H x W
        image = image.detach().cpu().numpy()
    elif not isinstance(image, np.ndarray):
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - Pillow is a dependency
            Image = None
        if Image is None or not isinstance(image, Image.Image):
            raise RobustDartsError(f"item {i} of {what} holds a {type(image).__name__} image; give PIL images, "
                                   f"numpy arrays or torch tensors.")
        image = np.asarray(image if image.mode in ("L", "RGB") else image.convert("RGB"), dtype=np.uint8)
    where = f"item {i} of {what}"
    return _check_images(image[None], where, item=True)[0]


# ---------------------------------------------------------------------------------------------------- finishing

def _finish(data: Decoded, name: str) -> Decoded:
    """The set's size (the most common one), normalization statistics of the training split, and digest."""
    if not (~data.test).any() or not data.test.any():
        split = "training" if not (~data.test).any() else "test"
        raise RobustDartsError(f"{name} has no readable {split} images.")
    sizes = Counter(map(tuple, data.shapes.tolist()))
    (h, w), _ = sizes.most_common(1)[0]
    meta = data.meta
    meta["size"] = int(min(h, w))
    meta["sizes"] = {f"{hh}x{ww}": n for (hh, ww), n in sorted(sizes.items(), key=lambda kv: -kv[1])}
    c = data.channels
    ends = np.cumsum(data.shapes[:, 0] * data.shapes[:, 1] * c)
    starts = ends - data.shapes[:, 0] * data.shapes[:, 1] * c
    train = np.flatnonzero(~data.test)
    pixels = data.pixels if len(train) == len(data.labels) else \
        np.concatenate([data.pixels[starts[i]:ends[i]] for i in train])
    # From each channel's histogram of the 256 values: exact, and ten times faster than float reductions
    # (torch's bincount counts uint8 as it is; numpy's first widens every value to int64).
    levels = np.arange(256, dtype=np.float64) / 255
    channels = torch.from_numpy(pixels).view(-1, c)
    meta["mean"], meta["std"] = [], []
    for k in range(c):
        counts = torch.bincount(channels[:, k].contiguous(), minlength=256).double().numpy()
        mean = float(counts @ levels / counts.sum())
        meta["mean"].append(mean)
        meta["std"].append(float(np.sqrt(counts @ (levels - mean) ** 2 / counts.sum())))
    if min(meta["std"]) == 0:
        raise RobustDartsError(f"every training image of {name} is one flat colour (standard deviation 0); there "
                               f"is nothing to learn from.")
    digest = hashlib.sha256()
    digest.update(json.dumps([list(data.classes), c]).encode())
    for array in (data.shapes, data.labels, data.test, data.pixels):
        digest.update(np.ascontiguousarray(array).tobytes())
    meta["digest"] = digest.hexdigest()[:16]
    return data


def _notes(data: Decoded) -> None:
    m, root = data.meta, data.root
    if root is None:
        return  # an npz file: read as it is, nothing to say
    note(f"{root}: {m['decoded']}.")
    bad = m.get("skipped") or []
    if bad:
        note(f"skipped {len(bad)} unreadable image{'s' * (len(bad) > 1)} (skip_bad_images), first {bad[0][0]}.")
    if m.get("ignored"):
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(m["ignored_kinds"].items()) if n)
        note(f"ignored {m['ignored']} file{'s' * (m['ignored'] > 1)} in {root} that are not images ({kinds}).")
    if len(m["sizes"]) > 1:
        note(f"images of {root} come in {len(m['sizes'])} sizes; each is resized to image_size, by default "
             f"{m['size']}x{m['size']}, the most common.")
    why = m.get("colour")
    if why and (why["gray"] or why["looks_gray"]):  # all colour, none gray-looking: RGB is what was brought
        # Decoding stays as it is (the digests of existing sets must not change); the note says how to get 1 channel.
        n = why["colour"]
        looks = ""
        if why["looks_gray"] == n and n > 1:
            looks = f"; all {n} colour-decoded images have three (nearly) equal channels, so they look gray: " \
                    f"convert them to mode L for a 1-channel set"
        elif why["first_looks_gray"]:
            looks = "; its three channels are (nearly) equal, so it looks gray: convert it to mode L" + \
                    " for a 1-channel set" * (n == 1)
        gray = f"; its {why['gray']} gray images are repeated to 3 channels" if why["gray"] else ""
        note(f"{root} is a 3-channel (RGB) set: {why['first']} is decoded as colour{looks}{gray}.")
    if m["layout"] == "held-out":
        note(f"{root} has no test/ folder: 1/6 of each class ({int(data.test.sum())} images, seeded) is held out "
             f"as the test split; the run directory's {RECORD_FILE} lists them.")


# ---------------------------------------------------------------------------------------------------- the cache

def cache_dir() -> Path:
    """Beside the downloaded datasets' per-user cache (datasets.py): ``$XDG_CACHE_HOME/robustdarts/decoded``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "robustdarts" / "decoded"


def _cache_file(root: Path, key: str) -> Path:
    where = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return cache_dir() / f"{where}-{key[:32]}.npz"


def _read_cache(root: Path, key: str) -> Decoded | None:
    path = _cache_file(root, key)
    if not path.is_file():
        return None
    start = time.perf_counter()
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            if meta.get("key") != key:  # a hash prefix collision, or a file copied in by hand
                return None
            data = Decoded(npz["pixels"], npz["shapes"], npz["labels"], npz["test"], int(meta["channels"]),
                           tuple(meta["classes"]), tuple(meta["files"]), meta["meta"], root, key, cached=True)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return None  # damaged (an interrupted copy, a full disk): decode again and rewrite it
    data.meta["skipped"] = [tuple(s) for s in data.meta.get("skipped", [])]
    data.meta["decoded"] = f"read from the decode cache in {time.perf_counter() - start:.2f} s"
    return data


def _write_cache(data: Decoded) -> None:
    """Save the decoded set; the older caches of the same folder go (a folder has one current content)."""
    path = _cache_file(data.root, data.key)
    meta = {"key": data.key, "channels": data.channels, "classes": list(data.classes), "files": list(data.files),
            "meta": {k: v for k, v in data.meta.items() if k != "said"}}

    def write(f) -> None:
        np.savez(f, pixels=data.pixels, shapes=data.shapes, labels=data.labels, test=data.test,
                 meta=np.array(json.dumps(meta)))

    try:
        atomic_write(path, write)
        for old in path.parent.glob(f"{path.name.split('-')[0]}-*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as e:
        note(f"cannot write the decode cache {path} ({e.strerror or e}); the next run decodes {data.root} again.")
        return
    data.cached = True
