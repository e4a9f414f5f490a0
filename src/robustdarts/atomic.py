"""Atomic file writes: a temp file in the same directory, fsync, then ``os.replace``.

A reader never sees a half-written file and an interrupted write leaves the previous file intact (the rename is
atomic only within one file system, hence the temp file next to the target). Bottom-level: imports nothing of
robustdarts, so every module that writes files can use it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temp file next to ``path`` and rename it into place.

    The file gets the mode a plain ``open`` would give it (0666 less the umask, or the replaced file's mode), not
    mkstemp's 0600, so that run files stay readable to whoever may read the directory. An OSError (disk full,
    permissions) names ``path``, which the CLI reports in one sentence."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        e.filename = e.filename or str(path)
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _mode(path))
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not e.filename:
            e.filename = str(path)
        raise


def _mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)  # the only way to read it; set back at once
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8, atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
