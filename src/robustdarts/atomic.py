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
    """Call ``write(file_object)`` on a temp file next to ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8, atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
