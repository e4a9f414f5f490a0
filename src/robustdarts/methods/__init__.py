"""Named method presets. ``get_method(name)`` returns the class; ``METHODS`` lists them all."""

from __future__ import annotations

from ..errors import unknown
from .base import Method
from .darts import Darts, Darts2, RandomArch

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


for _cls in (Darts, Darts2, RandomArch):
    register(_cls)


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise unknown("method", name, METHODS)
    return METHODS[name]
