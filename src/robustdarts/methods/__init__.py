"""Methods as recipes: ``PRESETS`` (presets.py) names every method; a preset resolves to a config and a recipe.

``search_config(overrides)`` is the resolved ``SearchConfig`` of a method on a space (its paper's settings for that
kind of space, the sizes preset, then the user's values; every option filled in), ``make_recipe(cfg, space)`` the
recipe the search loop runs. A new method is a family in a module here (a ``Recipe`` subclass overriding the pieces
its paper changes) plus a row in ``presets.PRESETS``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import PRESETS as SIZE_PRESETS, SearchConfig, build
from ..spaces import get_space
from .presets import KINDS, PRESETS, Preset, recipe_kind
from .recipe import EpochAction, EpochEnd, Recipe, StepContext, genotype_of, make_options, option_name, options_dict



def get_preset(name: str) -> Preset:
    """The preset ``name``: a built-in, an installed plugin's (entry points) or ``MODULE:ATTRIBUTE`` (plugins.py,
    read only when the name is not already in the table)."""
    from .. import plugins
    from .presets import get_preset as in_table

    if name not in PRESETS and isinstance(name, str):
        found = plugins.find_method(name)
        if found is not None:
            return found
    return in_table(name)


def has_preset(name: str) -> bool:
    """Whether ``get_preset(name)`` finds a preset (a broken plugin of that name raises its sentence)."""
    from .. import plugins

    return name in PRESETS or (isinstance(name, str) and plugins.find_method(name) is not None)


def list_methods(pattern: str | None = None) -> list[str]:
    """Preset names, the installed plugins' included, optionally filtered by a shell pattern (``'sp-*'``)."""
    from .. import plugins
    from .presets import list_methods as in_table

    plugins.load_method_plugins()
    return in_table(pattern)


METHODS = PRESETS
get_method = get_preset


def search_config(overrides: dict[str, Any] | None = None, preset_base: dict[str, Any] | None = None) -> SearchConfig:
    """The resolved search config: SearchConfig defaults < the method preset's settings for the space's kind <
    ``preset_base`` < the sizes preset < ``overrides`` (None values unset). ``method_options`` holds every option of
    the method's family, typed: the family's defaults < the preset's < the user's.

    Takes a dict of config fields (``method``, ``space``, ``dataset``, ``preset``, any ``SearchConfig`` field,
    ``method_options``) and returns the ``SearchConfig`` a search with them runs; an unknown field, a value of the
    wrong type or range, or an unknown method option raises a one-sentence ``RobustDartsError``. Example:
    ``search_config({"method": "sdarts-rs", "space": "s3"}).method_options``."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    preset = get_preset(overrides.get("method", "darts"))
    space = get_space(overrides.get("space", "darts"))
    overrides["space"] = space.name  # a FILE.yaml space is registered under its name; the run records its definition
    fields, options = preset.settings(recipe_kind(space), _canonical_dataset(overrides.get("dataset", "cifar10")))
    user_options = overrides.pop("method_options", None) or {}
    if not isinstance(user_options, dict):
        from ..errors import RobustDartsError
        raise RobustDartsError(f"method_options must be a mapping of option: value, got {user_options!r}.")
    base = {**fields, **(preset_base or {})}
    cfg = build(SearchConfig, overrides, "search", base=base)
    options = _scaled_epoch_counts(preset.family.Options, options, user_options, cfg, base, overrides)
    opts = make_options(preset.family.Options, {**options, **user_options}, cfg.method)
    cfg.method_options = options_dict(opts)
    # "auto" layout options made true or false here, per device and per case (speed.py): the resolved config
    # records what runs. recompute stays auto until the machine that runs the search chooses it.
    from ..speed import resolve_layout
    return resolve_layout(cfg)


def _scaled_epoch_counts(options_cls: type, options: dict[str, Any], user_options: dict[str, Any], cfg: SearchConfig,
                         base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The preset's options with those counted in epochs (``Options.EPOCH_COUNTS``: PC-DARTS' warmup) scaled to the
    run, round(value·E/E_paper), when the run's length E is a sizes preset's: a preset shrinks sizes, and the
    algorithm's proportions stay the paper's (otherwise PC-DARTS at ``--preset tiny``, 6 epochs, would never train
    α). Epochs the user chose, and options the user set, are left as they are."""
    counts = getattr(options_cls, "EPOCH_COUNTS", ())
    sizes = SIZE_PRESETS.get(cfg.preset, {}).get("search", {}) if cfg.preset else {}
    paper_epochs = base.get("epochs", SearchConfig.epochs)
    if not counts or "epochs" not in sizes or "epochs" in overrides or cfg.epochs == paper_epochs:
        return options
    defaults = {option_name(f.name): f.default for f in dataclasses.fields(options_cls)}
    scaled = {name: round(options.get(name, defaults[name]) * cfg.epochs / paper_epochs)
              for name in counts if name not in user_options}
    return {**options, **scaled}


def _canonical_dataset(name: Any) -> str | None:
    """The dataset's canonical name (``SVHN`` is svhn), or None for a name no dataset has (refused later, where
    every other search input is checked)."""
    from ..data import dataset_info
    from ..errors import RobustDartsError

    try:
        return dataset_info(str(name)).name
    except RobustDartsError:
        return None


def make_recipe(cfg: SearchConfig, space=None) -> Recipe:
    """The recipe of a resolved config: its preset's family with the config's options. A config is resolved only
    with a method that exists, so a name unknown here is a run's plugin method that this machine lacks: said so."""
    from ..errors import RobustDartsError

    try:
        preset = get_preset(cfg.method)
    except RobustDartsError:
        if cfg.method in PRESETS or not isinstance(cfg.method, str):
            raise
        from .. import plugins
        if cfg.method in plugins.BROKEN_METHODS:
            raise
        raise RobustDartsError(f"method {cfg.method!r} of this run is not installed here (a plugin's method): "
                               f"install the plugin that provides it (entry point group {plugins.METHOD_GROUP}) "
                               f"or make its MODULE:ATTRIBUTE importable.") from None
    return preset.family(cfg, get_space(space or cfg.space))


__all__ = ["KINDS", "PRESETS", "METHODS", "Preset", "get_preset", "get_method", "has_preset", "list_methods",
           "recipe_kind", "search_config", "make_recipe", "Recipe", "StepContext", "EpochEnd", "EpochAction",
           "genotype_of"]
