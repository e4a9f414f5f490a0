"""Methods as recipes: ``PRESETS`` (presets.py) names every method; a preset resolves to a config and a recipe.

``search_config(overrides)`` is the resolved ``SearchConfig`` of a method on a space (its paper's settings for that
kind of space, the sizes preset, then the user's values; every option filled in), ``make_recipe(cfg, space)`` the
recipe the search loop runs. A new method is a family in a module here (a ``Recipe`` subclass overriding the pieces
its paper changes) plus a row in ``presets.PRESETS``.
"""

from __future__ import annotations

from typing import Any

from ..config import SearchConfig, build
from ..spaces import get_space
from .presets import KINDS, PRESETS, Preset, get_preset, list_methods, recipe_kind
from .recipe import EpochAction, EpochEnd, Recipe, StepContext, genotype_of, make_options, options_dict

METHODS = PRESETS
get_method = get_preset


def search_config(overrides: dict[str, Any] | None = None, preset_base: dict[str, Any] | None = None) -> SearchConfig:
    """The resolved search config: SearchConfig defaults < the method preset's settings for the space's kind <
    ``preset_base`` < the sizes preset < ``overrides`` (None values unset). ``method_options`` holds every option of
    the method's family, typed: the family's defaults < the preset's < the user's."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    preset = get_preset(overrides.get("method", "darts"))
    space = get_space(overrides.get("space", "darts"))
    fields, options = preset.settings(recipe_kind(space))
    user_options = overrides.pop("method_options", None) or {}
    if not isinstance(user_options, dict):
        from ..errors import RobustDartsError
        raise RobustDartsError(f"method_options must be a mapping of option: value, got {user_options!r}.")
    base = {**fields, **(preset_base or {})}
    cfg = build(SearchConfig, overrides, "search", base=base)
    opts = make_options(preset.family.Options, {**options, **user_options}, cfg.method)
    cfg.method_options = options_dict(opts)
    return cfg


def make_recipe(cfg: SearchConfig, space=None) -> Recipe:
    """The recipe of a resolved config: its preset's family with the config's options."""
    return get_preset(cfg.method).family(cfg, get_space(space or cfg.space))


__all__ = ["KINDS", "PRESETS", "METHODS", "Preset", "get_preset", "get_method", "list_methods", "recipe_kind",
           "search_config", "make_recipe", "Recipe", "StepContext", "EpochEnd", "EpochAction", "genotype_of"]
