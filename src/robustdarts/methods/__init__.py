"""Named method presets. ``get_method(name)`` returns the class; ``METHODS`` lists them all.

Every module of this package registers its presets with ``@register``; importing the package imports them all,
so a new method is one new file here.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import unknown
from .base import Method

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"two methods are named {cls.name!r}")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise unknown("method", name, METHODS)
    return METHODS[name]


for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")
