"""The door for the user's methods and ops: entry points and ``MODULE:ATTRIBUTE`` add rows to our registries.

A package declares presets under the entry-point group ``robustdarts.methods`` (each entry a ``Preset`` or a list of
them) and candidate ops under ``robustdarts.ops`` (each entry a factory ``factory(C, stride, affine) -> nn.Module``,
registered under the entry point's name). ``--method MODULE:ATTRIBUTE`` imports one preset without packaging.
Past this module a plugin row is indistinguishable from ours: ``methods.PRESETS`` and ``spaces.ops.OPS`` hold it.

How a run finds its plugin again: an entry-point preset is recorded by its name (any process where the distribution
is installed finds it through the entry points), a ``MODULE:ATTRIBUTE`` preset is registered and recorded under that
very string (``cfg.method == "pkg.mod:PRESET"``), so ``--resume``, ``derive`` and bench cells in spawned workers or
Ray import it again from the run's config.yaml alone.

A plugin that fails to import, has the wrong type, or whose name clashes with a built-in never breaks the built-ins:
listing the methods (``robustdarts methods``, a command's ``--help``) prints one warning line per bad plugin, and only
asking for that plugin by name raises its one-sentence error; a command that uses only built-ins prints nothing. The
op group is read by ``spaces/ops.py`` itself (the op registry sits below everything that builds ops); this module
reads the method group. Both go through the one loop of
``entrypoints.load_group``, and differ only in how they check and add a loaded plugin's rows.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import replace

from .entrypoints import PluginSource, forget, load_group, warn_broken
from .errors import RobustDartsError, first_line, forget_warnings

METHOD_GROUP = "robustdarts.methods"
_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


# name -> where it came from, for the rows plugins added; name -> the one-sentence error of a bad plugin
METHOD_SOURCES: dict[str, PluginSource] = {}
BROKEN_METHODS: dict[str, str] = {}
_ALIASES: dict[str, str] = {}  # an entry point's name -> the name of the one preset it declares


def is_spec(name: object) -> bool:
    """Whether ``name`` is a ``MODULE:ATTRIBUTE`` reference (``pkg.mod:PRESET``)."""
    return isinstance(name, str) and bool(_SPEC.match(name))


def _presets_of(value, where: str) -> list:
    from .methods.presets import Preset

    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(p, Preset) for p in items):
        raise RobustDartsError(f"method plugin {where} must be a robustdarts Preset or a list of them, not "
                               f"{type(value).__name__}.")
    return items


def _builtin_presets() -> dict:
    from .methods.presets import BUILTIN_PRESETS
    return BUILTIN_PRESETS


def _register_method_plugin(name: str, value, source: PluginSource) -> None:
    """Add the presets that entry point ``name`` declares; every one is checked before any is added, so a refused
    plugin leaves no row behind."""
    from .methods.presets import PRESETS

    presets = _presets_of(value, str(source))
    for preset in presets:
        if preset.name in _builtin_presets():
            raise RobustDartsError(f"method plugin {source} declares {preset.name!r}, which is a built-in "
                                   f"method; rename its preset.")
        if preset.name in METHOD_SOURCES and METHOD_SOURCES[preset.name] != source:
            raise RobustDartsError(f"method plugin {source} declares {preset.name!r}, which "
                                   f"{METHOD_SOURCES[preset.name]} declares too; rename one of them.")
    for preset in presets:
        PRESETS[preset.name] = preset
        METHOD_SOURCES[preset.name] = source
    if len(presets) == 1 and presets[0].name != name:
        _ALIASES[name] = presets[0].name


def load_method_plugins() -> None:
    """Add the presets of every ``robustdarts.methods`` entry point to ``PRESETS`` (once per process); a bad
    entry point is left out, its warning kept for ``warn_broken_methods``."""
    load_group(METHOD_GROUP, "method", _register_method_plugin, BROKEN_METHODS)


def warn_broken_methods() -> None:
    """One warning line per method plugin that failed to load: for where the methods are listed."""
    load_method_plugins()
    warn_broken(METHOD_GROUP)


def import_object(spec: str, what: str):
    """The object ``MODULE:ATTRIBUTE`` names (dotted attributes allowed), or one sentence saying why not."""
    module_name, _, attribute = spec.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except Exception as e:
        raise RobustDartsError(f"{what} plugin {spec!r} failed to import ({type(e).__name__}: {first_line(e)}); "
                               f"check that {module_name} is on the Python path (PYTHONPATH) and imports "
                               f"cleanly.") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise RobustDartsError(f"{what} plugin {spec!r}: module {module_name} has no attribute {attribute!r}; "
                                   f"name an attribute it defines.")
        obj = getattr(obj, part)
    return obj


def load_method_spec(spec: str):
    """Register the preset ``MODULE:ATTRIBUTE`` names under that string and return it: the string is what the
    run records, so another process (a resume, a bench worker) imports the same preset again."""
    from .methods.presets import PRESETS

    if spec in PRESETS:
        return PRESETS[spec]
    presets = _presets_of(import_object(spec, "method"), repr(spec))
    if len(presets) != 1:
        raise RobustDartsError(f"method plugin {spec!r} holds {len(presets)} presets; --method MODULE:ATTRIBUTE "
                               f"needs one, so name a single Preset (or install the package's entry points).")
    preset = presets[0]
    if preset.name in _builtin_presets():
        raise RobustDartsError(f"method plugin {spec!r} declares {preset.name!r}, which is a built-in method; "
                               f"rename its preset.")
    preset = replace(preset, name=spec)
    PRESETS[spec] = preset
    METHOD_SOURCES[spec] = PluginSource(spec)
    return preset


def find_method(name: str):
    """The plugin preset ``name`` names (MODULE:ATTRIBUTE, an entry-point preset or entry point), or None; a
    broken plugin of that name raises its one sentence."""
    if is_spec(name):
        return load_method_spec(name)
    load_method_plugins()
    from .methods.presets import PRESETS

    name = _ALIASES.get(name, name)
    if name in PRESETS:
        return PRESETS[name]
    if name in BROKEN_METHODS:
        raise RobustDartsError(BROKEN_METHODS[name])
    return None


def method_source(name: str) -> PluginSource | None:
    """Where plugin preset ``name`` came from, or None for a built-in."""
    return METHOD_SOURCES.get(name)


def reset() -> None:
    """Forget the plugins read so far and take their rows out of the registries (tests that install or remove a
    plugin mid-process)."""
    from .methods.presets import PRESETS
    from .spaces import ops

    for name in METHOD_SOURCES:
        PRESETS.pop(name, None)
    METHOD_SOURCES.clear()
    BROKEN_METHODS.clear()
    _ALIASES.clear()
    forget(METHOD_GROUP)
    ops.reset_plugins()
    forget_warnings()
    importlib.invalidate_caches()


__all__ = ["METHOD_GROUP", "PluginSource", "is_spec", "load_method_plugins", "warn_broken_methods", "load_method_spec",
           "find_method", "method_source", "import_object", "reset"]
