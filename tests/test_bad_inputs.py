"""Every bad input gets one sentence (issue 18), through the real entry point.

The table runs ``robustdarts.cli.run_cli`` (what ``main`` runs: the same error handling, exit codes and printing)
in-process, since a fresh interpreter costs seconds a case. Each case must exit 2, print at most three lines, no
traceback, and change nothing: every file of its directory (a copy of a finished search run and of a finished
training run, among others) is byte-identical afterwards and nothing new appears. The run-directory lock and a
kill during a checkpoint write need real processes and run as subprocesses.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from robustdarts import runs as runs_module
from robustdarts.cli import run_cli
from robustdarts.config import TrainConfig, build
from robustdarts.runs import RunDir, release
from robustdarts.search.loop import Search
from robustdarts.train import Train
from robustdarts.zoo import get_genotype

# The CLI's tiny search: 3 cells of 4 channels on 8x8 synthetic images, 32 of them, one epoch.
TINY = ["--dataset", "synthetic", "--layers", "3", "--channels", "4", "--batch-size", "8", "--epochs", "1",
        "--set", "image_size=8", "--set", "limit_images=32", "--set", "leakage_every=0", "--no-progress"]
TINY_TRAIN = ["--dataset", "synthetic", "--layers", "3", "--channels", "4", "--batch-size", "8", "--epochs", "1",
              "--set", "image_size=8", "--set", "limit_images=32", "--set", "limit_test=16", "--no-progress"]
FASHION = Path("/usr/share/datasets/fashion-mnist")


def invoke(args, cwd: Path) -> tuple[int, str, float]:
    """(exit code, stdout + stderr, seconds) of one command line, run in-process in ``cwd``."""
    out = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = run_cli([str(a) for a in args])
    finally:
        os.chdir(old)
    return code, out.getvalue(), time.perf_counter() - start


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and directory (None) under ``root``."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A finished 2-epoch tiny search run (s3) and a finished 1-epoch tiny training run, built once."""
    root = tmp_path_factory.mktemp("bad-inputs")
    Search(tiny_config(epochs=2), root / "run", progress=False).run()
    release(root / "run")
    cfg = build(TrainConfig, dict(genotype="darts_v2", dataset="synthetic", epochs=1, batch_size=8, init_channels=4,
                                  layers=3, image_size=8, limit_images=32, limit_test=16, seed=1))
    Train(cfg, get_genotype("darts_v2"), root / "train", progress=False).run()
    release(root / "train")
    return root


# ---- mutations of a case's copies ----------------------------------------------------------------------------
def edit_checkpoint(run: Path, change) -> None:
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    change(state)
    torch.save(state, run / "checkpoint.pt")


def edit_archive(run: Path, change) -> None:
    obj = torch.load(run / "archive.pt", weights_only=True)
    change(obj)
    torch.save(obj, run / "archive.pt")


def foreign_archive(space: str, meta_space: str):
    from robustdarts.archparams import ArchParams

    def change(obj):
        values = ArchParams(space).as_dict()
        obj["epochs"] = {"-1": values, "0": values, "1": values}
        obj["meta"]["space"] = meta_space
    return change


def nan_archive(obj):
    obj["epochs"]["1"]["alpha/normal"][0, 0] = float("nan")


def wrong_supernet(state):
    key = next(k for k, v in state["supernet"].items() if v.dim() == 4)
    state["supernet"][key] = torch.zeros(3, 3, 3, 3)


def idx_gz(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header + array.astype(np.uint8).tobytes())


def short_labels(case: Path) -> None:
    """A Fashion-MNIST folder with the official 60,000 training images and only 59,000 labels."""
    folder = case / "fm"
    folder.mkdir()
    idx_gz(folder / "train-images-idx3-ubyte.gz", np.zeros((60000, 28, 28)))
    idx_gz(folder / "train-labels-idx1-ubyte.gz", np.zeros(59000))


def write(name: str, text: str):
    return lambda case: (case / name).write_text(text)


def keep_lines(name: str, count: int):
    """Cut a run file to its first ``count`` lines (a metrics.jsonl cut short)."""
    def cut(case: Path) -> None:
        path = case / name
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:count]))
    return cut


def planted(name: str, target: str):
    """Replace a run file by a symlink to ``target`` ('fifo': a FIFO made in the case directory)."""
    def plant(case: Path) -> None:
        if target == "fifo":
            os.mkfifo(case / "fifo")
        (case / name).unlink()
        os.symlink(case / "fifo" if target == "fifo" else target, case / name)
    return plant


NESTED = "{" + '"normal": ' + "[" * 100_000 + "]" * 100_000 + "}"
LONG_RANGE = ("Genotype(normal=[" + ", ".join(["('sep_conv_3x3', 0)", "('sep_conv_3x3', 1)"] * 4)
              + "], normal_concat=range(0, 9999), reduce=["
              + ", ".join(["('max_pool_3x3', 0)", "('max_pool_3x3', 1)"] * 4) + "], reduce_concat=range(2, 6))")
HAS_CUDA = torch.cuda.is_available()

# (id, command line, preparation of the case directory or None, fragments the sentence must contain).
# {run}/{train}: copies of the finished search / training run; {tmp}: the case directory; {file}: a plain file.
CASES = [
    # 1. out of range, at the edge (before anything is written)
    ("grad-clip-negative", ["search", *TINY, "--set", "grad_clip=-1"], None, ["grad_clip", "-1", "> 0"]),
    ("layers-0", ["search", *TINY, "--layers", "0"], None, ["layers", "0", ">= 1"]),
    ("layers-negative", ["search", *TINY, "--layers", "-3"], None, ["layers", "-3"]),
    ("channels-0", ["search", *TINY, "--channels", "0"], None, ["init_channels", ">= 1"]),
    ("channels-negative", ["search", *TINY, "--channels", "-5"], None, ["init_channels", "-5"]),
    ("epochs-0", ["search", *TINY, "--epochs", "0", "--out", "{tmp}/new"], None, ["epochs", ">= 1"]),
    ("epochs-negative", ["search", *TINY, "--epochs", "-1"], None, ["epochs", "-1"]),
    ("image-size-1", ["search", *TINY, "--set", "image_size=1"], None, ["image_size", ">= 3"]),
    ("seed-huge", ["search", *TINY, "--seed", str(10 ** 20)], None, ["seed", "4294967295"]),
    ("seed-negative", ["search", *TINY, "--seed", "-1"], None, ["seed", "-1"]),
    ("drop-path-above-1", ["search", *TINY, "--set", "drop_path=1.5"], None, ["drop_path", "[0, 1)"]),
    ("cutout-negative", ["search", *TINY, "--set", "cutout=-1"], None, ["cutout", ">= 0"]),
    ("lr-negative", ["search", *TINY, "--set", "lr=-0.1"], None, ["'lr'", ">= 0"]),
    ("lr-nan", ["search", *TINY, "--set", "lr=nan"], None, ["'lr'", "finite"]),
    ("tau-0", ["search", *TINY, "--set", "tau=0"], None, ["tau", "> 0"]),
    ("momentum-above-1", ["search", *TINY, "--set", "momentum=1.5"], None, ["momentum", "[0, 1]"]),
    ("train-portion-1", ["search", *TINY, "--set", "train_portion=1"], None, ["train_portion", "(0, 1)"]),
    ("batch-0", ["search", *TINY, "--batch-size", "0"], None, ["batch_size", ">= 1"]),
    ("hessian-every-negative", ["search", *TINY, "--set", "hessian_every=-1"], None, ["hessian_every", ">= 0"]),
    ("lr-schedule-unknown", ["search", *TINY, "--set", "lr_schedule=linear"], None, ["lr_schedule", "cosine"]),
    # refused before the run starts, not at the first eigenvalue measurement after an epoch
    ("hessian-bn-mode-unknown", ["search", *TINY, "--set", "hessian_every=1", "--set", "hessian_bn_mode=evl"], None,
     ["hessian_bn_mode", "train, eval"]),
    ("stale-statistics-with-eval-reads", ["search", *TINY, "--method", "sdarts-adv", "--set",
                                          "skipped_statistics=stale"], None, ["SDARTS-ADV", "skipped_statistics=current"]),
    ("device-banana", ["search", *TINY, "--device", "banana"], None, ["device", "banana"]),
    pytest.param("device-cuda-without-cuda", ["search", *TINY, "--device", "cuda"], None, ["cuda", "no CUDA"],
                 marks=pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")),
    ("train-label-smoothing-2", ["train", "darts_v2", *TINY_TRAIN, "--set", "label_smoothing=2"], None,
     ["label_smoothing", "[0, 1]"]),
    ("train-channels-negative", ["train", "darts_v2", *TINY_TRAIN, "--channels", "-5"], None, ["init_channels"]),
    ("train-valid-images-negative", ["train", "darts_v2", *TINY_TRAIN, "--set", "valid_images=-1"], None,
     ["valid_images", ">= 0"]),
    ("train-batch-1", ["train", "darts_v2", *TINY_TRAIN, "--batch-size", "1"], None, ["batch_size", ">= 2"]),
    ("show-channels-negative", ["show", "darts_v2", "--channels", "-5"], None, ["--channels", "-5"]),
    ("show-layers-0", ["show", "darts_v2", "--layers", "0"], None, ["--layers", "0"]),
    # 2. huge values fail fast with the estimate and the machine's memory
    ("huge-channels", ["search", *TINY, "--set", "init_channels=1000000"], None, ["GiB", "this machine's"]),
    ("huge-image", ["search", *TINY, "--set", "image_size=100000"], None, ["GiB", "this machine's"]),
    ("large-image-preset", ["search", "--dataset", "synthetic", "--preset", "tiny", "--set", "image_size=2048"],
     None, ["GiB", "image_size"]),
    ("huge-layers", ["search", *TINY, "--channels", "16", "--layers", "100000"], None, ["GiB", "layers"]),
    ("huge-layers-dry-run", ["search", "--dataset", "synthetic", "--layers", "100000", "--dry-run"], None,
     ["GiB"]),
    ("show-huge-layers", ["show", "darts_v2", "--layers", "100000", "--channels", "360"], None,
     ["GiB", "--layers"]),
    ("train-huge-channels", ["train", "darts_v2", *TINY_TRAIN, "--set", "init_channels=1000000"], None,
     ["the network needs", "GiB"]),
    # 3. no silent coercion
    ("epochs-fraction", ["search", *TINY, "--set", "epochs=1.7"], None, ["epochs", "whole number", "1.7"]),
    ("batch-true", ["search", *TINY, "--set", "batch_size=true"], None, ["batch_size", "True"]),
    ("seed-fraction", ["search", *TINY, "--set", "seed=2.9"], None, ["seed", "2.9"]),
    ("augment-2", ["search", *TINY, "--set", "augment=2"], None, ["augment", "true or false"]),
    ("set-empty", ["search", *TINY, "--set", "lr="], None, ["--set lr=", "no value"]),
    ("set-empty-cancels", ["search", *TINY, "--set", "epochs=3", "--set", "epochs="], None, ["--set epochs="]),
    ("set-without-equals", ["search", *TINY, "--set", "lr"], None, ["KEY=VALUE"]),
    ("set-unknown-field", ["search", *TINY, "--set", "epochz=3"], None, ["unknown config field 'epochz'"]),
    ("set-yaml-garbage", ["search", *TINY, "--set", "lr=["], None, ["'lr'", "'['"]),
    ("config-fraction", ["search", *TINY, "--config", "{tmp}/c.yaml"], write("c.yaml", "epochs: 1.7\n"),
     ["c.yaml", "epochs", "1.7"]),
    ("config-null", ["search", *TINY, "--config", "{tmp}/c.yaml"], write("c.yaml", "epochs: null\n"),
     ["c.yaml", "null"]),
    ("config-out-of-range", ["search", *TINY, "--config", "{tmp}/c.yaml"], write("c.yaml", "tau: -1\n"),
     ["c.yaml", "tau", "> 0"]),
    ("config-is-directory", ["search", *TINY, "--config", "{tmp}"], None, ["cannot read config file"]),
    ("data-dir-missing", ["search", *TINY, "--data-dir", "{tmp}/nowhere"], None, ["nowhere", "does not exist"]),
    ("data-dir-is-file", ["search", *TINY, "--data-dir", "{file}"], None, ["is a file"]),
    pytest.param("limit-above-dataset", ["search", "--dataset", "fashion-mnist", "--layers", "3", "--channels", "4",
                                         "--set", "limit_images=70000", "--no-progress"], None,
                 ["limit_images", "70000", "60000"],
                 marks=pytest.mark.skipif(not FASHION.exists(), reason="dataset-fashion-mnist is not installed")),
    # 4. --resume refuses options that would change the run
    ("resume-epochs", ["search", "--resume", "{run}", "--epochs", "5"], None, ["--resume", "--epochs", "drop"]),
    ("resume-space", ["search", "--resume", "{run}", "--space", "nb201"], None, ["--space"]),
    ("resume-set", ["search", "--resume", "{run}", "--set", "lr=0.1"], None, ["--set"]),
    ("resume-out", ["search", "--resume", "{run}", "--out", "{tmp}/elsewhere"], None, ["--out"]),
    ("train-resume-epochs", ["train", "{train}", "--resume", "{train}", "--epochs", "5"], None, ["--epochs"]),
    ("train-resume-other-genotype", ["train", "nasnet", "--resume", "{train}"], None, ["darts_v2", "nasnet"]),
    # 5. files read are checked for structure; errors name the file
    ("archive-other-space", ["derive", "{run}"], lambda c: edit_archive(c / "run", foreign_archive("s2", "s2")),
     ["archive.pt", "'s2'", "'s3'"]),
    ("archive-other-shapes", ["derive", "{run}"], lambda c: edit_archive(c / "run", foreign_archive("nb201", "s3")),
     ["archive.pt", "shape"]),
    ("archive-no-epochs", ["derive", "{run}"], lambda c: edit_archive(c / "run", lambda o: o.pop("epochs")),
     ["archive.pt", "'epochs'"]),
    ("archive-nan", ["derive", "{run}"], lambda c: edit_archive(c / "run", nan_archive), ["archive.pt", "NaN"]),
    ("archive-garbage", ["derive", "{run}"], write("run/archive.pt", "not a torch file"), ["archive.pt"]),
    ("derive-missing-epoch", ["derive", "{run}", "--epoch", "99"], None, ["no epoch 99"]),
    ("checkpoint-no-rng", ["search", "--resume", "{run}"],
     lambda c: edit_checkpoint(c / "run", lambda s: s.pop("rng")), ["checkpoint.pt", "'rng'"]),
    ("checkpoint-bad-rng", ["search", "--resume", "{run}"],
     lambda c: edit_checkpoint(c / "run", lambda s: s.update(rng=torch.zeros(3))), ["checkpoint.pt", "random"]),
    ("checkpoint-wrong-shapes", ["search", "--resume", "{run}"], lambda c: edit_checkpoint(c / "run", wrong_supernet),
     ["checkpoint.pt", "does not match"]),
    ("checkpoint-bad-stream", ["search", "--resume", "{run}"],
     lambda c: edit_checkpoint(c / "run", lambda s: s.update(val_stream={"epoch": 0})), ["val_stream"]),
    ("checkpoint-garbage", ["search", "--resume", "{run}"], write("run/checkpoint.pt", "garbage"),
     ["checkpoint.pt", "corrupted"]),
    ("checkpoint-untagged", ["search", "--resume", "{run}"],
     lambda c: torch.save({"epoch": 1}, c / "run" / "checkpoint.pt"), ["checkpoint.pt", "not written by"]),
    ("killed-before-first-checkpoint", ["search", "--resume", "{run}"],
     lambda c: (c / "run" / "checkpoint.pt").unlink(), ["before its first checkpoint", "--out"]),
    ("metrics-garbage", ["search", "--resume", "{run}"], write("run/metrics.jsonl", "{epoch: oops\n"),
     ["metrics.jsonl", "line 1"]),
    ("metrics-no-epoch", ["search", "--resume", "{run}"], write("run/metrics.jsonl", '{"val_acc": 0.1}\n'),
     ["metrics.jsonl", "'epoch'"]),
    ("plot-metrics-garbage", ["plot", "{run}", "--out", "{tmp}/c.png"], write("run/metrics.jsonl", "[[[\n"),
     ["metrics.jsonl"]),
    ("config-yaml-out-of-range", ["search", "--resume", "{run}"], write("run/config.yaml", "epochs: -3\n"),
     ["config.yaml", "epochs", ">= 1"]),
    ("config-yaml-invalid", ["search", "--resume", "{run}"], write("run/config.yaml", "epochs: [\n"),
     ["config.yaml", "not valid YAML"]),
    ("genotype-json-garbage", ["search", "--resume", "{run}"], write("run/genotype.json", "{"),
     ["genotype.json", "not valid JSON"]),
    ("train-checkpoint-no-stream", ["train", "{train}", "--resume", "{train}"],
     lambda c: edit_checkpoint(c / "train", lambda s: s.pop("stream")), ["checkpoint.pt", "'stream'"]),
    ("resume-not-a-run", ["search", "--resume", "{tmp}/nothing"], None, ["not a robustdarts run directory"]),
    ("genotype-nested-100000", ["show", "{tmp}/g.json"], write("g.json", NESTED), ["g.json", "nested too deeply"]),
    ("genotype-long-range", ["show", "{tmp}/g.txt"], write("g.txt", LONG_RANGE), ["normal_concat", "..."]),
    # 6. output paths checked before any work
    ("out-on-file", ["search", *TINY, "--out", "{file}"], None, ["--out", "is a file"]),
    ("out-under-file", ["search", *TINY, "--out", "{file}/sub"], None, ["lies under", "is a file"]),
    # As root os.access calls /proc/sys writable; paths.py's probe file finds that it is not.
    ("out-unwritable", ["search", *TINY, "--out", "/proc/sys/robustdarts-run"], None, ["not writable"]),
    ("out-holds-a-run", ["search", *TINY, "--out", "{run}"], None, ["already holds a run", "--resume"]),
    ("draw-bad-suffix", ["search", *TINY, "--out", "{tmp}/new", "--draw", "{tmp}/cell.gif"], None,
     [".png or .svg"]),
    ("draw-under-file", ["search", *TINY, "--out", "{tmp}/new", "--draw", "{file}/cell.png"], None, ["lies under"]),
    ("draw-on-directory", ["search", *TINY, "--out", "{tmp}/new", "--draw", "{tmp}/d.png"],
     lambda c: (c / "d.png").mkdir(), ["is a directory"]),
    ("train-out-on-file", ["train", "darts_v2", *TINY_TRAIN, "--out", "{file}"], None, ["is a file"]),
    ("derive-out-directory", ["derive", "{run}", "--out", "{tmp}"], None, ["--out", "is a directory"]),
    ("derive-out-under-file", ["derive", "{run}", "--out", "{file}/g.json"], None, ["lies under"]),
    ("plot-out-bad-suffix", ["plot", "{run}", "--out", "{tmp}/curves.gif"], None, [".png or .svg or .pdf"]),
    ("plot-out-directory", ["plot", "{run}", "--out", "{tmp}/d.png"], lambda c: (c / "d.png").mkdir(),
     ["is a directory"]),
    ("show-draw-bad-suffix", ["show", "darts_v2", "--draw", "{tmp}/x.gif"], None, [".png or .svg"]),
    # 7. names and options
    ("unknown-space", ["search", *TINY, "--space", "s9"], None, ["unknown search space 's9'"]),
    ("unknown-method", ["search", *TINY, "--method", "dartz"], None, ["unknown method 'dartz'"]),
    ("unknown-preset", ["search", *TINY, "--preset", "huge"], None, ["unknown preset 'huge'"]),
    ("unknown-method-option", ["search", *TINY, "--set", "method.nope=1"], None, ["no option 'nope'"]),
    ("option-not-an-integer", ["search", *TINY, "--epochs", "1.7"], None, ["--epochs", "integer"]),
    ("unknown-option", ["search", "--bogus"], None, ["--bogus"]),
    ("unknown-genotype", ["show", "dartz_v9"], None, ["unknown genotype 'dartz_v9'"]),
    # 9. (issue 25) counts of darts-pt and bench run below 1: a ZeroDivisionError and a silent 1 before
    ("darts-pt-val-images-0", ["derive", "{run}", "--policy", "darts-pt", "--val-images", "0"], None,
     ["--val-images is 0", "at least 1"]),
    ("darts-pt-val-images-negative", ["derive", "{run}", "--policy", "darts-pt", "--val-images", "-4"], None,
     ["--val-images is -4", "at least 1"]),
    ("darts-pt-tune-epochs-negative", ["derive", "{run}", "--policy", "darts-pt", "--tune-epochs", "-1"], None,
     ["--tune-epochs is -1", "0 or more"]),
    ("bench-run-workers-negative", ["bench", "run", "collapse-cpu", "--out", "{tmp}/bench", "--workers", "-3"],
     None, ["--workers must be at least 1, not -3"]),
    ("bench-run-workers-0", ["bench", "run", "collapse-cpu", "--out", "{tmp}/bench", "--workers", "0"], None,
     ["--workers must be at least 1, not 0"]),
    ("bench-run-threads-0", ["bench", "run", "collapse-cpu", "--out", "{tmp}/bench", "--threads", "0"], None,
     ["--threads must be at least 1, not 0"]),
    # 10. (issue 25) resume from files that disagree on the epoch; checks made late or misleading; endless files.
    # The run: 2 epochs (checkpoint epoch 2, metrics epochs 0 and 1, archive -1, 0, 1); the training: 1 epoch.
    ("resume-metrics-cut-short", ["search", "--resume", "{run}"], keep_lines("run/metrics.jsonl", 1),
     ["metrics.jsonl lacks epoch 1", "checkpoint.pt was saved after epoch 1"]),
    ("resume-metrics-empty", ["search", "--resume", "{run}"], write("run/metrics.jsonl", ""),
     ["metrics.jsonl lacks epoch 0"]),
    ("resume-checkpoint-epoch-lowered", ["search", "--resume", "{run}"],
     lambda c: edit_checkpoint(c / "run", lambda s: s.update(epoch=1)),
     ["checkpoint.pt was saved after epoch 0", "metrics.jsonl's epoch 0", "wall time differs"]),
    ("resume-checkpoint-epoch-raised", ["search", "--resume", "{run}"],
     lambda c: edit_checkpoint(c / "run", lambda s: s.update(epoch=5)),
     ["checkpoint.pt was saved after epoch 4", "metrics.jsonl lacks epoch 2"]),
    ("resume-archive-cut-short", ["search", "--resume", "{run}"],
     lambda c: edit_archive(c / "run", lambda o: o["epochs"].pop("1")), ["archive.pt lacks epoch 1"]),
    ("train-resume-metrics-cut-short", ["train", "{train}", "--resume", "{train}"], write("train/metrics.jsonl", ""),
     ["metrics.jsonl lacks epoch 0", "checkpoint.pt"]),
    ("train-resume-a-search-run", ["train", "darts_v2", "--resume", "{run}"], None,
     ["is a search run, not a training run", "robustdarts search --resume"]),
    ("search-resume-a-training-run", ["search", "--resume", "{train}"], None,
     ["is a training run, not a search run", "robustdarts train"]),
    ("draw-in-proc", ["search", *TINY, "--out", "{tmp}/new", "--draw", "/proc/robustdarts-cell.png"], None,
     ["--draw", "cannot be written"]),
    ("dry-run-out-holds-a-run", ["search", *TINY, "--dry-run", "--out", "{run}"], None, ["already holds a run"]),
    ("dry-run-out-on-file", ["search", *TINY, "--dry-run", "--out", "{file}"], None, ["--out", "is a file"]),
    ("dry-run-draw-bad-suffix", ["search", *TINY, "--dry-run", "--draw", "{tmp}/cell.gif"], None, [".png or .svg"]),
    ("plot-metrics-dev-zero", ["plot", "{run}", "--out", "{tmp}/c.png"], planted("run/metrics.jsonl", "/dev/zero"),
     ["metrics.jsonl", "not a regular file"]),
    ("plot-metrics-fifo", ["plot", "{run}", "--out", "{tmp}/c.png"], planted("run/metrics.jsonl", "fifo"),
     ["metrics.jsonl", "not a regular file"]),
]


@pytest.mark.parametrize("name,args,prepare,fragments", [
    pytest.param(*c.values, id=c.values[0], marks=c.marks) if hasattr(c, "values") else pytest.param(*c, id=c[0])
    for c in CASES])
def test_bad_input_is_one_sentence_and_changes_nothing(workspace, tmp_path, monkeypatch, name, args, prepare,
                                                       fragments):
    case = tmp_path / "case"
    case.mkdir()
    shutil.copytree(workspace / "run", case / "run")
    shutil.copytree(workspace / "train", case / "train")
    (case / "afile").write_text("a plain file\n")
    if prepare is not None:
        prepare(case)
    monkeypatch.setattr(runs_module, "_LOCKS", {})  # no run directory of an earlier case counts as this one's
    before = snapshot(case)
    values = dict(run=case / "run", train=case / "train", tmp=case, file=case / "afile")
    code, output, seconds = invoke([a.format(**values) for a in args], case)
    lines = output.strip().splitlines()
    assert code == 2, output
    assert "Traceback" not in output and 1 <= len(lines) <= 3, output
    text = " ".join(output.split())
    for fragment in fragments:
        assert fragment in text, text
    assert snapshot(case) == before, f"{name} changed files: {output}"
    if name.startswith(("huge", "large", "show-huge", "train-huge")):
        assert seconds < 5, f"{name} took {seconds:.1f} s to refuse"


def test_nan_at_first_epoch_says_no_checkpoint_was_written(tmp_path):
    code, output, _ = invoke(["train", "darts_v2", *TINY_TRAIN, "--set", "lr=1e30", "--set", "grad_clip=1e30",
                              "--out", tmp_path / "t"], tmp_path)
    assert code == 2 and "Traceback" not in output, output
    text = " ".join(output.split())
    assert "NaN or inf at epoch 0" in text and "no checkpoint was written" in text and "kept" not in text
    assert not (tmp_path / "t" / "checkpoint.pt").exists()


def test_ctrl_c_says_how_to_resume_and_exits_130(workspace, tmp_path, monkeypatch):
    """typer turns KeyboardInterrupt into a silent exit 130; the handler still names the run and the command."""
    shutil.copytree(workspace / "run", tmp_path / "run")
    monkeypatch.setattr(runs_module, "_LOCKS", {})

    def interrupted(self, stop_after=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(Search, "run", interrupted)
    code, output, _ = invoke(["search", "--resume", tmp_path / "run"], tmp_path)
    assert code == 130 and "Traceback" not in output, output
    text = " ".join(output.split())
    assert "interrupted" in text and f"robustdarts search --resume {(tmp_path / 'run').resolve()}" in text


def test_disk_full_is_one_sentence_with_the_file_and_the_free_space(workspace, tmp_path, monkeypatch):
    shutil.copytree(workspace / "run", tmp_path / "run")
    monkeypatch.setattr(runs_module, "_LOCKS", {})
    before = {p: (tmp_path / "run" / p).read_bytes() for p in ("checkpoint.pt", "metrics.jsonl", "archive.pt")}

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    code, output, _ = invoke(["search", "--resume", tmp_path / "run"], tmp_path)
    assert code == 2 and "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    text = " ".join(output.split())
    assert "disk is full" in text and "metrics.jsonl" in text and "MiB free" in text and "--resume" in text
    assert {p: (tmp_path / "run" / p).read_bytes() for p in before} == before
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_short_labels_file_is_blamed_not_the_images(tmp_path):
    short_labels(tmp_path)
    code, output, _ = invoke(["search", "--dataset", "fashion-mnist", "--data-dir", tmp_path / "fm", "--layers", "3",
                              "--channels", "4", "--set", "limit_images=32", "--no-progress", "--out",
                              tmp_path / "r"], tmp_path)
    assert code == 2 and "Traceback" not in output, output
    text = " ".join(output.split())
    assert "train-labels-idx1-ubyte.gz is corrupted" in text and not (tmp_path / "r").exists()


# ---- real processes: the run-directory lock, a kill during a checkpoint write ----------------------------------
def cli_process(*args, cwd: Path, wrapper: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    code = wrapper or "from robustdarts.cli import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_searches_into_one_out_end_with_one_run_and_one_refusal(tmp_path):
    out = tmp_path / "shared"
    args = ["search", "--space", "s3", *TINY, "--epochs", "3", "--set", "limit_images=64", "--out", out, "--json"]
    procs = [cli_process(*args, cwd=tmp_path) for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, _, err in results if code == 2)
    text = " ".join(refused.split())
    assert "Traceback" not in refused and len(refused.strip().splitlines()) <= 3, refused
    assert "in use by another robustdarts process" in text or "already holds a run" in text, text
    epochs = [r["epoch"] for r in RunDir(out).read_metrics()]
    assert epochs == [0, 1, 2]  # one run's epochs, once each
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 3


KILL_DURING_CHECKPOINT = textwrap.dedent("""
    import os, signal, sys
    import robustdarts.runs as runs
    original = runs.save_tensors

    def dying(path, obj):  # the checkpoint after the second epoch: half written, then SIGKILL
        if path.name == "checkpoint.pt" and obj.get("epoch") == 2:
            def write(f):
                f.write(b"half a checkpoint")
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            runs.atomic_write(path, write)
        return original(path, obj)

    runs.save_tensors = dying
    sys.argv[0] = "robustdarts"
    from robustdarts.cli import main
    main()
""")


def test_kill_during_checkpoint_write_leaves_a_temp_file_that_resume_removes(tmp_path):
    run = tmp_path / "run"
    args = ["search", "--space", "s3", *TINY, "--epochs", "3", "--out", run]
    killed = cli_process(*args, cwd=tmp_path, wrapper=KILL_DURING_CHECKPOINT)
    assert killed.wait(timeout=600) == -signal.SIGKILL, killed.communicate()
    assert list(run.glob(".checkpoint.pt.*.tmp"))  # the write the kill interrupted
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1  # the previous checkpoint, whole
    assert (run / ".lock").read_text().strip().isdigit()  # the dead process's lock: stale, taken over below

    code, output, _ = invoke(["search", "--resume", run, "--no-progress"], tmp_path)
    assert code == 0, output
    assert not list(run.rglob("*.tmp"))
    assert [r["epoch"] for r in RunDir(run).read_metrics()] == [0, 1, 2]
    # ... and bit-identically: the resumed run's α equals an uninterrupted run's
    full = tmp_path / "full"
    assert invoke(["search", "--space", "s3", *TINY, "--epochs", "3", "--out", full], tmp_path)[0] == 0
    a, _ = RunDir(run).load_archive("s3")
    b, _ = RunDir(full).load_archive("s3")
    assert all(torch.equal(a[2][k], b[2][k]) for k in b[2])
    # Run files get the mode plain open() gives (umask applied), not mkstemp's 0600.
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.pt", "genotype.json"):
        assert (run / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
