"""Output paths checked before any work starts: run directories, drawings, genotype files, plots.

Why: a search writes its drawing, and ``derive`` / ``plot`` their files, only at the end; a path on a file, under a
file, in an unwritable place or with a format we cannot write used to fail after minutes (or hours) of work, or
with an OSError traceback. Each check is one sentence naming the option, the path and what is wrong, and leaves
nothing behind (a writability probe is removed at once).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import RobustDartsError

IMAGE_SUFFIXES = (".png", ".svg")
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def _existing_ancestor(path: Path) -> Path:
    """The nearest existing path at or above ``path`` (what a mkdir -p of ``path`` would start from)."""
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _check_creatable(path: Path, what: str, kind: str) -> None:
    ancestor = _existing_ancestor(path)
    if ancestor != Path(os.path.abspath(path)) and not ancestor.is_dir():
        raise RobustDartsError(f"{what} {path} lies under {ancestor}, which is a file, not a directory; choose a "
                               f"{kind} path under a directory.")
    target = ancestor if ancestor.is_dir() else ancestor.parent
    if not os.access(target, os.W_OK | os.X_OK) or not _can_create_in(target):
        raise RobustDartsError(f"{what} {path} cannot be written: {target} is not writable; choose another place.")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can really be created in ``folder``: ``os.access`` answers yes to root for /proc, /sys or a
    read-only mount's folders, where creating fails (``search --draw /proc/x.png`` then failed after the whole
    search). A probe file is created and removed at once, so nothing is left."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".robustdarts-probe-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def check_output_dir(path: str | Path, what: str = "--out") -> Path:
    """A directory that exists (and is writable) or can be created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RobustDartsError(f"{what} {path} is a file, not a directory; choose a directory path.")
    _check_creatable(path, what, "directory")
    return path


def check_output_file(path: str | Path, what: str = "--out", suffixes: tuple[str, ...] | None = None) -> Path:
    """A file path whose suffix is one of ``suffixes`` (when given) that can be written or replaced."""
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise RobustDartsError(f"cannot write {what} {path.name!r}: the file must end in {' or '.join(suffixes)}.")
    if path.is_dir():
        raise RobustDartsError(f"{what} {path} is a directory; name a file to write.")
    if path.exists() and not os.access(path, os.W_OK):
        raise RobustDartsError(f"{what} {path} cannot be written: the file is read-only; choose another place.")
    _check_creatable(path, what, "file")
    return path
