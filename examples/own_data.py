"""Search, derive and train on your own images: a PNG folder written from the Fashion-MNIST on this machine.

The folder has the ImageFolder layout a user would bring (``train/<class>/*.png``, ``test/<class>/*.png``, class
folders named after the Fashion-MNIST classes); everything after writing it is the command line a user types, run
in-process through ``robustdarts.cli.run_cli``:

    robustdarts search --dataset folder:FOLDER ...     # decodes the PNGs once, into the decode cache
    robustdarts derive RUN                              # the genotype of the last epoch
    robustdarts train RUN --dataset folder:FOLDER ...   # from scratch, tested on the folder's test/ images

    python examples/own_data.py                          # about a minute on 2 busy CPU cores
    python examples/own_data.py --per-class 20 --epochs 1   # a 20-second smoke run

Writes the folder and the run directories under ``--out`` (default ``runs/own-data``); run it twice and the second
search starts from the decode cache. The Fashion-MNIST files come from the Debian package dataset-fashion-mnist
(``/usr/share/datasets/fashion-mnist``) or wherever ``--data-dir`` points.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from robustdarts.cli import run_cli
from robustdarts.data import load_dataset

CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")


def write_folder(folder: Path, per_class: int, test_per_class: int, data_dir: str | None) -> None:
    """``per_class`` training and ``test_per_class`` test images of each class as grayscale PNGs."""
    for split, count in (("train", per_class), ("test", test_per_class)):
        images = load_dataset("fashion-mnist", split, data_dir)
        for label, name in enumerate(CLASSES):
            target = folder / split / name
            target.mkdir(parents=True, exist_ok=True)
            chosen = np.flatnonzero(images.labels.numpy() == label)[:count]
            for i in chosen:
                Image.fromarray(images.images[i, 0].numpy()).save(target / f"{i:05d}.png")


def cli(*args) -> None:
    print("$ robustdarts", " ".join(map(str, args)), flush=True)
    code = run_cli([str(a) for a in args])
    if code != 0:
        raise SystemExit(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/own-data"))
    parser.add_argument("--per-class", type=int, default=40, help="training images per class")
    parser.add_argument("--test-per-class", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data-dir", default=None, help="where the Fashion-MNIST files are, if not the default")
    args = parser.parse_args()

    folder = args.out / "fashion-png"
    if not folder.exists():
        write_folder(folder, args.per_class, args.test_per_class, args.data_dir)
    for run in ("search", "train"):
        shutil.rmtree(args.out / run, ignore_errors=True)  # a fresh run each time (the decode cache stays)
    sizes = ["--layers", "3", "--channels", "4", "--batch-size", "16", "--epochs", args.epochs,
             "--set", "image_size=16", "--no-progress"]
    cli("search", "--dataset", f"folder:{folder}", "--space", "s3", *sizes, "--out", args.out / "search")
    cli("derive", args.out / "search")
    cli("train", args.out / "search", "--dataset", f"folder:{folder}", *sizes, "--out", args.out / "train")
    print(f"classes and held-out images: {args.out / 'search' / 'data.json'}")


if __name__ == "__main__":
    main()
