"""Reading an entry-point group of plugins: the one load-warn-register loop of methods (plugins.py) and ops
(spaces/ops.py).

It lives below both because the op registry sits below everything that builds ops (and so below plugins.py, which
imports the method presets): ``spaces/ops.py`` cannot import plugins.py, and both can import this module, which
imports nothing of the package but errors.py. What each group does with a loaded object — check its type, refuse a
clash with a built-in, add its rows — is the group's ``register``; what every group shares is here: read the group
once per process, and turn a plugin that fails to import or that ``register`` refuses into one warning line, leaving
the built-ins working and keeping the plugin's sentence for the moment someone asks for it by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import RobustDartsError, first_line, warn_once


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin row came from: ``what`` (the entry point or MODULE:ATTRIBUTE) and its distribution."""

    what: str
    distribution: str | None = None

    def __str__(self) -> str:
        return f"{self.what} (from {self.distribution})" if self.distribution else self.what


_read: set[str] = set()  # the entry-point groups read in this process
# group -> the warning line of each plugin of it that failed: printed only where the plugins are listed
# (``warn_broken``), never by a command that merely resolves a built-in name past them.
_WARNINGS: dict[str, list[str]] = {}


def entry_points(group: str) -> list:
    """The installed entry points of ``group``; unreadable metadata is one warning, never a broken CLI."""
    import importlib.metadata

    try:
        return list(importlib.metadata.entry_points(group=group))
    except Exception as e:  # a corrupt dist-info elsewhere on the path
        warn_once(f"cannot read the {group} entry points ({first_line(e)}); plugins are skipped.")
        return []


def distribution(ep) -> str | None:
    """The name of the distribution that declares entry point ``ep``, if known."""
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) if dist is not None else None


def load_group(group: str, kind: str, register: Callable[[str, Any, PluginSource], None],
               broken: dict[str, str]) -> None:
    """Hand each entry point of ``group`` to ``register(entry point name, loaded object, source)``, once per process
    (until ``forget(group)``). An entry point that fails to import, or that ``register`` refuses with a
    ``RobustDartsError`` (raised before it adds anything), is one warning line and is left out; its sentence is
    kept in ``broken`` under the entry point's name, and its warning line for ``warn_broken``. ``kind`` ("method",
    "op") names the plugin in the messages."""
    if group in _read:
        return
    _read.add(group)
    for ep in entry_points(group):
        source = PluginSource(f"entry point {ep.name!r} ({ep.value})", distribution(ep))
        try:
            try:
                value = ep.load()
            except Exception as e:  # any failure of someone else's import: their bug, reported, never ours to raise
                raise RobustDartsError(f"{kind} plugin {source} failed to import ({type(e).__name__}: "
                                       f"{first_line(e)}); fix or uninstall it.") from None
            register(ep.name, value, source)
        except RobustDartsError as e:
            broken[ep.name] = str(e)
            _WARNINGS.setdefault(group, []).append(f"{e} The built-in {kind}s work as before.")


def warn_broken(group: str) -> None:
    """One warning line per plugin of ``group`` that failed to load (once per process): called where the plugins
    are listed (``robustdarts methods``, a command's ``--help``), so that a command that uses only built-ins stays
    quiet, and asking for the bad plugin by name is its error sentence instead."""
    for line in _WARNINGS.get(group, []):
        warn_once(line)


def forget(group: str) -> None:
    """Let ``load_group`` read ``group`` again (tests that install or remove a plugin mid-process)."""
    _read.discard(group)
    _WARNINGS.pop(group, None)


__all__ = ["PluginSource", "entry_points", "distribution", "load_group", "warn_broken", "forget"]
