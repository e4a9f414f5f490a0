"""One start — a CLI command, an API call (search, train, derive), a bench cell, a spawned rank — as a scope in
which what it looks up once is not looked up again (data/own.py: a ``folder:`` data set walked once for its
config, memory check, splits and record), and after which nothing is remembered, so the next start sees the world
as it is then.

A memo kept across starts had to be checked at every look-up (a stat per image: 0.96 s of a start against 1.35 s
for walking 50,000 images once) and could not trust file times in the tick of its own scan — a guard that compared
the local clock with file times, which a network file system with a lagging server clock defeats. Torch-free, so
that the CLI can open the scope around any command without importing torch before it knows the command.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

# What the start in progress looked up (key -> value), None outside one.
_LOOKED_UP: contextvars.ContextVar[dict | None] = contextvars.ContextVar("robustdarts_start", default=None)


@contextlib.contextmanager
def one_start() -> Iterator[None]:
    """The scope of one start. Re-entrant: a scope inside another (``derive_with_epoch`` under the CLI's command, a
    bench cell run in the planning process) is the outer one. A context variable, not a global: a thread (with its
    own context) looks up anew rather than reading another start's values."""
    if _LOOKED_UP.get() is not None:
        yield
        return
    token = _LOOKED_UP.set({})
    try:
        yield
    finally:
        _LOOKED_UP.reset(token)


def once_per_start(key: object, make: Callable[[], T]) -> T:
    """``make()``, once per start for ``key``; outside a start at every call (right, only slower)."""
    seen = _LOOKED_UP.get()
    if seen is None:
        return make()
    if key not in seen:
        seen[key] = make()
    return seen[key]
