"""Every name a user picks on the command line, read from the registry that accepts it.

A CLI help text names its choices with a token (``one_of("space")``), and the CLI's command group replaces the
token with this module's list just before a command runs or prints its help. So ``--help`` and the error for a wrong
name list the same, complete set (both come from the registry), and a new space, method, policy or condition shows
up in both by itself. The lists are read lazily because most registries import torch, which ``robustdarts --help``
does not need.
"""

from __future__ import annotations

import re
from typing import Callable


def _spaces() -> list[str]:
    from .spaces import SPACES
    return list(SPACES)


def _methods() -> list[str]:
    from .methods import list_methods
    return list_methods()


def _datasets() -> list[str]:
    from .data.datasets import _ALIASES, DATASETS
    return list(DATASETS) + sorted(_ALIASES)


def _size_presets() -> list[str]:
    from .config import PRESETS
    return list(PRESETS)


def _conditions() -> list[str]:
    from .discretize import LHD_CONDITIONS
    return list(LHD_CONDITIONS)


def _policies() -> list[str]:
    from .derive import policy_names
    return policy_names()


def _show_datasets() -> list[str]:
    return list(show_datasets())


def _loggers() -> list[str]:
    from .runlog import LOGGERS
    return list(LOGGERS)


def _backends() -> list[str]:
    from .bench.backends import BACKENDS
    return list(BACKENDS)


def _report_formats() -> list[str]:
    from .bench.report import FORMATS
    return list(FORMATS)


def _grid_presets() -> list[str]:
    from .bench import preset_names
    return list(preset_names())


# kind -> the names the code accepts for it (each list is the registry itself, in the registry's order)
CHOICES: dict[str, Callable[[], list[str]]] = {
    "space": _spaces,
    "method": _methods,
    "dataset": _datasets,  # canonical names, then the accepted aliases
    "preset": _size_presets,
    "condition": _conditions,
    "policy": _policies,
    "show-dataset": _show_datasets,
    "log": _loggers,
    "backend": _backends,
    "report-format": _report_formats,
    "grid-preset": _grid_presets,
}

_TOKEN = re.compile(r"\{one of: ([a-z-]+)\}")


def register_choices(kind: str, names: Callable[[], list[str]]) -> None:
    """Add a kind of choice (for example a new command's ``--backend``): ``names()`` returns what the code accepts."""
    CHOICES[kind] = names


def names(kind: str) -> list[str]:
    """The names accepted for ``kind``."""
    return CHOICES[kind]()


def one_of(kind: str) -> str:
    """The token a help text carries in place of the list of ``kind`` choices (see ``expand``)."""
    if kind not in CHOICES:
        raise KeyError(f"no choice registry {kind!r}; register it with register_choices")
    return f"{{one of: {kind}}}"


def kinds_in(text: str | None) -> list[str]:
    """The kinds of choices whose tokens ``text`` carries."""
    return _TOKEN.findall(text or "")


def expand(text: str | None) -> str | None:
    """``text`` with each token replaced by "one of: a, b, c" from the registry."""
    if not text:
        return text
    return _TOKEN.sub(lambda m: "one of: " + ", ".join(names(m.group(1))), text)


def show_datasets() -> dict[str, int]:
    """Classes per dataset ``show`` builds an evaluation network for: every dataset robustdarts reads, and ImageNet
    (its macro only; no ImageNet data is read here)."""
    from .data.datasets import DATASETS, dataset_info
    return {**{d: dataset_info(d).num_classes for d in DATASETS}, "imagenet": 1000}


def expand_help(command) -> None:
    """Fill the choice tokens of a click command's help texts (its options, arguments and own help; a group's
    subcommands too), once the command is about to run or to print its help."""
    if getattr(command, "help", None):
        command.help = expand(command.help)
    for param in getattr(command, "params", ()):
        if getattr(param, "help", None):
            param.help = expand(param.help)
    for sub in getattr(command, "commands", {}).values():
        expand_help(sub)
