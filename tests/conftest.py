"""Shared test settings: where the project's shared/ folder is (beside the clone, as in CI); the tiny search config;
the in-process CLI and the snapshot of a folder that the bad-input tables compare before and after."""

import contextlib
import io
import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
SHARED = next((p for p in (_REPO.parent / "shared", Path("/work/shared")) if p.exists()), _REPO.parent / "shared")
LHD_RESULTS = SHARED / "data" / "lhd-archs" / "results"
LHD_EXAMPLE = LHD_RESULTS / "cifar10" / "darts_bilevel" / "20211010-140512-concate-sum-darts-bilevel.pl"

import pytest  # noqa: E402
import torch  # noqa: E402

# Test tensors are tiny: one thread is faster than two here, and immune to OpenMP spin-waits when the two
# cores are shared (a 16x4x8x8 conv took 60 ms with two contended threads against 0.2 ms with one).
torch.set_num_threads(1)


def tiny_config(method: str = "darts", space: str = "s3", **overrides):
    """The one tiny search config of the tests: the method preset's settings for the space (methods.search_config),
    shrunk to 4 channels, 3 cells (nb201: 1 per stage), 8x8 synthetic images, 32 of them, batch 8 (2 steps per
    epoch), one epoch, no leakage measurement; any field can be overridden."""
    from robustdarts.methods import search_config

    sizes = dict(method=method, space=space, dataset="synthetic", epochs=1, batch_size=8, init_channels=4,
                 layers=1 if space == "nb201" else 3, image_size=8, limit_images=32, leakage_every=0, seed=0)
    sizes.update(overrides)
    return search_config(sizes)


SEARCH_RUN_SPACES = ("darts", "s1", "s2", "s3", "s4", "nb201", "lhd")


@pytest.fixture(scope="session")
def search_runs(tmp_path_factory):
    """One finished 2-epoch tiny search run directory per kind of space (darts, S1-S4, NB201, LHD), shared by the
    tests that read runs (drawings, α trajectories, derive's choices); about 10 s here."""
    from robustdarts.search.loop import Search

    root = tmp_path_factory.mktemp("search-runs")
    runs = {}
    for space in SEARCH_RUN_SPACES:
        Search(tiny_config("darts", space, epochs=2, arch_lr=0.05), root / space, progress=False).run()
        runs[space] = root / space
    return runs


def invoke(args, cwd: Path) -> tuple[int, str]:
    """(exit code, stdout + stderr) of one command line through ``robustdarts.cli.run_cli`` (what ``main`` runs:
    the same error handling, exit codes and printing), in-process in ``cwd``."""
    from robustdarts.cli import run_cli

    out = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = run_cli([str(a) for a in args])
    finally:
        os.chdir(old)
    return code, out.getvalue()


def snapshot(root: Path) -> dict[str, object]:
    """Every file (bytes), directory (None) and symbolic link (its target, not followed) under ``root``."""
    seen: dict[str, object] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder) / name
            key = str(p.relative_to(root))
            seen[key] = ("link", os.readlink(p)) if p.is_symlink() else (None if p.is_dir() else p.read_bytes())
    return seen


@pytest.fixture
def own_data_isolated(tmp_path, monkeypatch):
    """Own data (data/own.py) in isolation: the decode cache under this test's folder, no decoded set remembered
    from another test (a folder's listing lives only as long as one start: nothing to reset), no run locked."""
    from robustdarts import runs
    from robustdarts.data import own

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(own, "_MEMO", {})
    monkeypatch.setattr(runs, "_LOCKS", {})
