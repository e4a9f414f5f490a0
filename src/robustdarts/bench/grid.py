"""Grid files: the axes of a benchmark as typed data, expanded deterministically into cells with stable ids.

A grid is YAML (a file, or the name of a preset shipped in ``bench/presets/``)::

    name: tiny
    preset: tiny                       # sizes preset of both the searches and the trainings (optional)
    methods: [darts, {method: rdarts-l2, sweep: {weight_decay: [9e-4, 27e-4]}}]
    spaces: [s3]
    datasets: [fashion-mnist]
    seeds: [0, 1]                      # or a count: 5 means 0..4
    conditions: [default, selective-stop, "lhd:3ops"]   # derivation (policy[:condition]) per searched cell
    search: {epochs: 2, method.tau: 0.5}                # any SearchConfig field, as --set (method.x: an option)
    train: {epochs: 1, valid_images: 50}                # any TrainConfig field; `train: false` derives only
    select: [{name: rdarts-l2, from: [rdarts-l2, darts], by: valid_acc}]
    measure: {eigenvalue_batches: 16}  # λ_max at the end over N validation batches, besides the per-epoch one
    resources: {num_cpus: 1, num_gpus: 0}                # per cell, for the Ray backend

Axis entries of ``methods``, ``spaces`` and ``datasets`` are names or mappings with their own ``search`` /
``train`` overrides (``label`` names a method entry in reports; ``sweep`` makes one variant per value). Layers,
later winning: grid ``search`` < space < dataset < method < sweep value (trainings add the condition's ``train``,
all over the evaluation recipe of the space's kind and the sizes preset: eval_recipe.recipe_defaults, LHD's for LHD
cells, whose trainings keep its fixed seed 0 rather than the search's).

A ``spaces`` entry may be a user's space file (``path/to/my-space.yaml``, spaces/fromfile.py), read once, when the
grid is read: the entry keeps the space's ``definition`` (Space.definition), the store records it with the grid,
and each cell carries it to the worker that runs it, which registers the space from there. Nothing after the
reading opens the file again, since it may have changed or gone since. Cells and reports name the space by its
``name`` field.

A cell is one search (method variant × space × dataset × seed) with its conditions; its id is a hash of its
resolved SearchConfig (``data_dir`` left out: where the data lie changes no number), so the same search keeps its
id, run directory and results when a grid is extended. Each (cell, condition) has its own id, a hash of the cell,
the derivation and the resolved TrainConfig. Everything is validated here, before anything runs: a bad entry is
one sentence naming it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..config import SearchConfig, TrainConfig, build, parse_value
from ..errors import RobustDartsError, unknown

GRID_KEYS = ("name", "description", "preset", "methods", "spaces", "datasets", "seeds", "conditions", "search",
             "train", "select", "measure", "resources")
SELECT_BY = ("valid_acc", "supernet_val_acc")  # never test_acc: the test set is reported, not selected on
SELECT_OVER = ("variants", "seeds")
DEFAULT_CONDITION = "default"
# Bounds that keep a grid what a benchmark can be, checked before anything is built (a grid of 10^9 seeds used to
# hang expanding them, a 464-byte grid of nested YAML aliases to take 50 s and 6 GB): cells (searches) and
# (cell, condition) units per grid, the nodes of the YAML document with every alias expanded, and the length of a
# label, which names run directories (a 300-character one failed at run time: name too long) and report rows.
MAX_CELLS = 10_000
MAX_UNITS = 100_000
MAX_YAML_NODES = 100_000
MAX_LABEL = 100
MAX_LAYERS = 1_000  # cells of one network (the papers' have 5 to 25); deeper ones fit memory only at toy widths


# ---- the grid as typed data ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AxisEntry:
    """One method, space or dataset of a grid with its own overrides; ``sweep`` (methods only) makes variants."""
    name: str
    label: str
    search: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, tuple] = field(default_factory=dict)
    definition: dict[str, Any] | None = None  # a user's space (FILE.yaml) as its file defined it when read

    def variants(self) -> list[tuple[str, dict[str, Any]]]:
        """(variant label, search overrides) per point of the sweep, in the file's order; one unnamed variant
        without a sweep."""
        points: list[tuple[str, dict[str, Any]]] = [("", {})]
        for key, values in self.sweep.items():
            points = [(f"{label}, {key}={_text(v)}" if label else f"{key}={_text(v)}", {**over, key: v})
                      for label, over in points for v in values]
        return points


@dataclass(frozen=True)
class Condition:
    """A derivation of each searched cell: a discretization policy (None: the space's own rule, i.e. the run's
    own genotype) with an LHD condition, plus the trainings' overrides under it (1M trains a larger network)."""
    label: str
    policy: str | None = None
    condition: str | None = None
    train: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SelectRule:
    """A protocol's selection: per group, the candidate with the best ``by`` becomes method ``name``.
    ``over='variants'``: among the cells of the methods in ``from_`` with the same space, dataset, seed and
    condition (R-DARTS(L2) over its weight-decay grid); ``over='seeds'``: among one method variant's seeds
    (best-of-k)."""
    name: str
    from_: tuple[str, ...]
    by: str = "valid_acc"
    over: str = "variants"


@dataclass(frozen=True)
class Grid:
    name: str
    methods: tuple[AxisEntry, ...]
    spaces: tuple[AxisEntry, ...]
    datasets: tuple[AxisEntry, ...]
    seeds: tuple[int, ...]
    conditions: tuple[Condition, ...] = (Condition(DEFAULT_CONDITION),)
    search: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] | None = None  # None: derive only, train nothing
    preset: str | None = None
    select: tuple[SelectRule, ...] = ()
    measure: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)
    description: str = ""
    source: str = "grid"  # where it came from, for messages

    def to_dict(self) -> dict:
        """The grid in its file's form (what the store records); ``grid_from_dict`` reads it back."""
        def entry(e: AxisEntry, kind: str) -> dict:
            out = {kind: e.name, "label": e.label, "search": e.search, "train": e.train}
            if e.definition is not None:  # read back instead of the file, which may have changed since
                out["definition"] = e.definition
            return {**out, "sweep": {k: list(v) for k, v in e.sweep.items()}} if kind == "method" else out

        data = {"name": self.name, "description": self.description, "preset": self.preset,
                "methods": [entry(m, "method") for m in self.methods],
                "spaces": [entry(s, "space") for s in self.spaces],
                "datasets": [entry(d, "dataset") for d in self.datasets], "seeds": list(self.seeds),
                "conditions": [{"label": c.label, "policy": c.policy, "condition": c.condition, "train": c.train}
                               for c in self.conditions],
                "search": self.search, "train": False if self.train is None else self.train,
                "select": [{"name": r.name, "from": list(r.from_), "by": r.by, "over": r.over} for r in self.select],
                "measure": self.measure, "resources": self.resources}
        return json.loads(json.dumps(data))


@dataclass(frozen=True)
class CellCondition:
    """One condition of one cell: what the store keeps a row for."""
    unit_id: str
    label: str
    policy: str | None
    condition: str | None
    train: dict[str, Any] | None  # resolved TrainConfig fields as planned; None: no training
    # What the grid sets for the trainings. At run time these are layered over the evaluation recipe of the
    # derived genotype (eval_recipe: LHD's drop path, 1M width ...), which only the genotype decides.
    train_overrides: dict[str, Any] | None = None


@dataclass(frozen=True)
class Cell:
    """One search of the grid and its conditions, fully resolved."""
    cell_id: str
    position: int  # order in the expansion (ties in selections go to the earlier cell)
    method: str  # the method entry's label (what reports group by)
    preset_method: str  # the method preset it runs
    variant: str
    space: str  # the space's name (a user's space: its file's name field, not the file's path)
    dataset: str
    seed: int
    search: dict[str, Any]  # resolved SearchConfig fields
    conditions: tuple[CellCondition, ...]
    measure: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)
    # The search run directory, relative to the grid's output directory. Named after the labels for people; a
    # cell keeps the directory it was first run in (the store's) when a label is renamed later.
    run_dir: str = ""
    # A user's space (a FILE.yaml entry) as the grid read it: the worker registers the space from this, never from
    # the file, which may have changed since the plan (the cell's id holds this definition, not the file's path).
    space_definition: dict[str, Any] | None = None

    def __post_init__(self):
        if not self.run_dir:
            from ..data.own import dataset_label
            name = "-".join(p for p in (self.method, self.variant, self.space, dataset_label(self.dataset),
                                        f"s{self.seed}") if p)
            # Cut to stay well inside the 255 bytes of a file name (a long sweep's variant can pass them); the id
            # keeps it unique.
            object.__setattr__(self, "run_dir", f"cells/{_slug(name)[:180]}-{self.cell_id}")

    def search_config(self) -> SearchConfig:
        return SearchConfig(**self.search)

    def register_space(self) -> None:
        """Register the user's space this cell searches (a spawned worker or a Ray task starts with the built-ins
        only), from the definition the cell carries."""
        if self.space_definition is not None:
            from ..spaces.registry import register_definition
            register_definition(self.space_definition, f"the space of cell {self.cell_id}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> "Cell":
        conditions = tuple(CellCondition(**c) for c in data["conditions"])
        return cls(**{**data, "conditions": conditions})


# ---- reading ---------------------------------------------------------------------------------------------------
def preset_names() -> list[str]:
    """Names of the grid presets shipped with the package."""
    folder = resources.files("robustdarts.bench") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    if name not in preset_names():
        raise unknown("grid preset", name, preset_names())
    return (resources.files("robustdarts.bench") / "presets" / f"{name}.yaml").read_text()


def load_grid(spec: str | Path) -> Grid:
    """A grid from a YAML file or a preset name (``robustdarts bench presets``)."""
    path = Path(spec)
    if path.is_file():
        text, source = path.read_text(), str(path)
    elif str(spec) in preset_names():
        text, source = preset_text(str(spec)), f"grid preset {spec}"
    elif path.suffix in (".yaml", ".yml") or "/" in str(spec):
        raise RobustDartsError(f"grid file {spec} does not exist; pass a YAML file or one of the presets: "
                               f"{', '.join(preset_names())}.")
    else:
        raise unknown("grid preset", spec, preset_names(), where="(and no such file)")
    return grid_from_dict(_load_yaml(text, source), source)


def _load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` that refuses, before constructing anything, a document whose nodes with every alias
    expanded number more than MAX_YAML_NODES ("billion laughs": nine levels of nine aliases are 9^9 values, which
    the checks and the JSON of the store would each walk), or that is nested too deeply to read."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_nodes(node, {}) > MAX_YAML_NODES:
            raise RobustDartsError(f"{source} expands to more than {MAX_YAML_NODES:,} YAML values through its "
                                   f"aliases (*name); write the grid out without nested aliases.")
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as e:
        raise RobustDartsError(f"{source} is not valid YAML ({str(e).splitlines()[0]}); fix its syntax.") from None
    except RecursionError:
        raise RobustDartsError(f"{source} is nested too deeply to be a grid; write key: value lines.") from None
    finally:
        loader.dispose()


def _expanded_nodes(node, sizes: dict[int, int]) -> int:
    """The node count of ``node``'s tree with aliases expanded: each shared node is counted where it is used,
    computed once per node (an alias is the same node object), so a bomb is measured without being expanded."""
    key = id(node)
    if key not in sizes:
        sizes[key] = 0  # a recursive alias (&a [*a]) counts as one node here; construction refuses nothing worse
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(_expanded_nodes(n, sizes) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(_expanded_nodes(k, sizes) + _expanded_nodes(v, sizes) for k, v in node.value)
        else:
            total = 1
        sizes[key] = total
    return sizes[key]


def grid_from_dict(data: Any, source: str = "grid") -> Grid:
    """Check and type a grid's plain data; every problem is one sentence naming ``source`` and the entry."""
    if not isinstance(data, dict):
        raise RobustDartsError(f"{source} must hold a mapping of grid keys, not {type(data).__name__}.")
    bad = sorted(set(data) - set(GRID_KEYS))
    if bad:
        raise RobustDartsError(f"{source} has unknown key {bad[0]!r}; grid keys are: {', '.join(GRID_KEYS)}.")
    for axis in ("methods", "spaces", "datasets", "seeds"):
        if axis not in data:
            raise RobustDartsError(f"{source} has no {axis!r} axis; list at least one value under {axis}:.")
    methods = tuple(_entry(e, "method", source, sweeps=True) for e in _axis(data, "methods", source))
    spaces = tuple(_space_entry(_entry(e, "space", source), e, source) for e in _axis(data, "spaces", source))
    datasets = tuple(_entry(e, "dataset", source) for e in _axis(data, "datasets", source))
    seeds = _seeds(data["seeds"], source)
    conditions = tuple(_condition(c, source) for c in _axis(data, "conditions", source)) \
        if "conditions" in data else (Condition(DEFAULT_CONDITION),)
    train = data.get("train", None)
    if train is False or train is None:
        train = None
    else:
        train = _overrides(train, "train", source)
    preset = data.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise RobustDartsError(f"{source}: preset must be a sizes preset name (tiny, small, paper), not {preset!r}.")
    select = tuple(_rule(r, source) for r in (data.get("select") or []))
    measure = _mapping(data.get("measure"), "measure", source)
    bad = sorted(set(measure) - {"eigenvalue_batches"})
    if bad:
        raise RobustDartsError(f"{source}: measure has unknown key {bad[0]!r}; the one key is eigenvalue_batches.")
    if not isinstance(measure.get("eigenvalue_batches", 0), int) or measure.get("eigenvalue_batches", 0) < 0:
        raise RobustDartsError(f"{source}: measure.eigenvalue_batches must be a whole number >= 0, not "
                               f"{measure['eigenvalue_batches']!r}.")
    res = _mapping(data.get("resources"), "resources", source)
    for key, value in res.items():
        if key not in ("num_cpus", "num_gpus") or not isinstance(value, (int, float)) or value < 0:
            raise RobustDartsError(f"{source}: resources takes num_cpus and num_gpus as numbers >= 0, not "
                                   f"{key}: {value!r}.")
    cells = _count_cells(methods, spaces, datasets, seeds)
    if cells > MAX_CELLS or cells * len(conditions) > MAX_UNITS:
        raise RobustDartsError(f"{source} holds {cells:,} searches × {len(conditions)} conditions, more than the "
                               f"{MAX_CELLS:,} searches and {MAX_UNITS:,} derivations a grid may hold; split it into "
                               f"smaller grids.")
    name = _label(data.get("name") or Path(source).stem, "grid name", source)
    return Grid(name=name, methods=methods, spaces=spaces, datasets=datasets,
                seeds=seeds, conditions=conditions, search=_overrides(data.get("search"), "search", source),
                train=train, preset=preset, select=select, measure=measure, resources=res,
                description=str(data.get("description") or ""), source=source)


def _count_cells(methods, spaces, datasets, seeds) -> int:
    """Searches of a grid from its axes' lengths, the sweeps' points multiplied out without listing them."""
    variants = sum(math.prod(len(v) for v in m.sweep.values()) for m in methods)
    return variants * len(spaces) * len(datasets) * len(seeds)


def _axis(data: dict, axis: str, source: str) -> list:
    values = data[axis]
    if values is None or values == [] or values == {}:
        raise RobustDartsError(f"{source}: the {axis!r} axis is empty; list at least one value.")
    if not isinstance(values, list):
        values = [values]
    return values


def _seeds(value: Any, source: str) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise RobustDartsError(f"{source}: seeds must be a list of whole numbers or a count, not {value!r}.")
    if isinstance(value, int):
        if value < 1:
            raise RobustDartsError(f"{source}: the 'seeds' axis is empty (a count of {value}); give a count >= 1 "
                                   f"or a list of seeds.")
        if value > MAX_CELLS:  # checked before range() is expanded: 10^9 seeds used to hang here
            raise RobustDartsError(f"{source}: seeds is a count of {value}, more than the {MAX_CELLS:,} searches a "
                                   f"grid may hold; give a count <= {MAX_CELLS:,}.")
        return tuple(range(value))
    if value is None or value == []:
        raise RobustDartsError(f"{source}: the 'seeds' axis is empty; list at least one value.")
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in values):
        bad = next(s for s in values if not isinstance(s, int) or isinstance(s, bool))
        raise RobustDartsError(f"{source}: seed {bad!r} is not a whole number; seeds are integers.")
    if len(set(values)) != len(values):
        raise RobustDartsError(f"{source}: the seeds axis lists a seed twice; give each seed once.")
    bad = next((s for s in values if not 0 <= s < 2 ** 32), None)
    if bad is not None:
        raise RobustDartsError(f"{source}: seed {bad} is out of range; seeds are whole numbers in [0, 2^32).")
    return tuple(values)


def _mapping(value: Any, what: str, source: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RobustDartsError(f"{source}: {what} must be a mapping of key: value, not {value!r}.")
    return dict(value)


# Set by the grid's axes, never by overrides: an override would silently contradict the cell's axis values.
_AXIS_FIELDS = ("method", "space", "dataset", "seed", "preset", "genotype")


def _overrides(value: Any, what: str, source: str) -> dict[str, Any]:
    """Config overrides as ``--set`` reads them: text values parsed as YAML scalars (1e-3 is a number) and
    ``method.x`` keys gathered into ``method_options``."""
    out: dict[str, Any] = {}
    for key, v in _mapping(value, what, source).items():
        if str(key) == "seed" and what.endswith("train"):
            raise RobustDartsError(f"{source}: {what} sets 'seed', which the evaluation recipe decides (a training "
                                   f"takes its search's seed, an LHD training seed 0 as LHD's train.py); use the "
                                   f"seeds axis for more runs.")
        if str(key) in _AXIS_FIELDS:
            raise RobustDartsError(f"{source}: {what} sets {key!r}, which the grid's axes set; use the "
                                   f"{'preset key' if key == 'preset' else 'axes'} instead.")
        v = _value(v, key, what, source)
        if str(key).startswith("method."):
            out.setdefault("method_options", {})[str(key)[len("method."):]] = v
        elif key == "method_options":
            out.setdefault("method_options", {}).update(_mapping(v, f"{what}.method_options", source))
        else:
            out[str(key).replace("-", "_")] = v
    return out


def _value(v: Any, key: Any, what: str, source: str) -> Any:
    """An override's value, text parsed as ``--set`` parses it; nothing (``lr: ''``, ``lr:``) is refused, as
    ``--set lr=`` is: it used to leave the field at its default without a word. ``none`` sets an optional field to
    None."""
    if v is None or (isinstance(v, str) and not v.strip()):
        raise RobustDartsError(f"{source}: {what} sets {key!r} to nothing; give it a value (none for an optional "
                               f"field) or leave it out.")
    return parse_value(v) if isinstance(v, str) else v


def _label(value: Any, what: str, source: str, limit: int | None = MAX_LABEL) -> str:
    """A label as reports, tables and run directory names use it: printable text of at most ``limit`` characters
    (a newline broke Markdown tables; a 300-character label failed at run time on the file name's length). A
    dataset named by its path (``folder:PATH``) has no length limit: run directories name it by dataset_label."""
    text = str(value)
    bad = next((ch for ch in text if unicodedata.category(ch)[0] == "C"), None)
    if bad is not None:
        raise RobustDartsError(f"{source}: {what} {text[:40]!r} holds the control character {bad!r}; use printable "
                               f"text.")
    if (limit is not None and len(text) > limit) or not text.strip():
        raise RobustDartsError(f"{source}: {what} {text[:40]!r}{' (cut here)' if len(text) > 40 else ''} has "
                               f"{len(text)} characters; give it 1 to {limit or MAX_LABEL}.")
    return text


def _entry(value: Any, kind: str, source: str, sweeps: bool = False) -> AxisEntry:
    if isinstance(value, str):
        return AxisEntry(name=value, label=_label(value, f"{kind} entry", source,
                                                  None if kind in ("dataset", "space") else MAX_LABEL))
    if not isinstance(value, dict):
        raise RobustDartsError(f"{source}: {kind} entry {value!r} must be a name or a mapping with a {kind!r} key.")
    keys = {kind, "label", "search", "train"} | ({"sweep"} if sweeps else set()) | \
        ({"definition"} if kind == "space" else set())  # a space file's definition, as the store records it
    bad = sorted(set(value) - keys)
    if bad:
        raise RobustDartsError(f"{source}: {kind} entry {value.get(kind)!r} has unknown key {bad[0]!r}; its keys "
                               f"are: {', '.join(sorted(keys))}.")
    name = value.get(kind)
    if not isinstance(name, str):
        raise RobustDartsError(f"{source}: {kind} entry {value!r} needs a {kind!r} name.")
    sweep: dict[str, tuple] = {}
    for key, values in _mapping(value.get("sweep"), f"{kind} {name} sweep", source).items():
        if not isinstance(values, list) or not values:
            raise RobustDartsError(f"{source}: sweep {key!r} of {kind} {name!r} must be a non-empty list of values.")
        sweep[str(key)] = tuple(_value(v, key, f"sweep of {kind} {name!r}", source) for v in values)
    named = kind in ("dataset", "space") and not value.get("label")  # a path given as the name: no length limit
    return AxisEntry(name=name, label=_label(value.get("label") or name, f"the label of {kind} {name!r}", source,
                                             None if named else MAX_LABEL),
                     search=_overrides(value.get("search"), f"{kind} {name} search", source),
                     train=_overrides(value.get("train"), f"{kind} {name} train", source), sweep=sweep)


def _space_entry(entry: AxisEntry, value: Any, source: str) -> AxisEntry:
    """A space entry with the definition of the user's space it names (``FILE.yaml``), checked and read here,
    once: a malformed file is refused before anything is planned or written. A stored grid's entry carries its
    ``definition`` (Grid.to_dict), which is read instead of the file, so that status and report never depend on it."""
    from ..spaces.fromfile import read_space_file, space_fields
    from ..spaces.registry import Space, is_space_file

    given = value.get("definition") if isinstance(value, dict) else None
    if given is None and not is_space_file(entry.name):
        return entry
    try:
        fields = read_space_file(entry.name) if given is None else \
            space_fields(given, f"the definition of space entry {entry.name!r}", source=entry.name)
    except RobustDartsError as e:  # "space file PATH: field ...": the entry and the field, after the grid
        raise RobustDartsError(f"{source}: {e}") from None
    return dataclasses.replace(entry, definition=Space(**fields).definition())


def _register_spaces(spaces: tuple[AxisEntry, ...], source: str) -> dict[str, str]:
    """Entry name -> the name of its space, every one checked; a user's space is registered (in this process)
    from the definition its entry carries. Two entries defining one name differently are refused: the registry,
    the cells and the reports know a space by its name."""
    from ..spaces import SPACES
    from ..spaces.registry import register_definition

    names: dict[str, str] = {}
    defined: dict[str, AxisEntry] = {}
    for s in spaces:
        if s.definition is None:
            if s.name not in SPACES:
                raise unknown("space", s.name, SPACES, where=f"in {source} (or give a FILE.yaml space)")
            names[s.name] = s.name
            continue
        name = s.definition["name"]
        other = defined.setdefault(name, s)
        if other.definition != s.definition:
            raise RobustDartsError(f"{source}: space entries {other.name} and {s.name} define two different spaces "
                                   f"named {name!r}; give one of them another name.")
        # A built-in's name is refused here, in one sentence naming the entry; a redefined name (an edited file
        # planned again in this process) drops plan.py's cost memos (spaces.registry.on_redefine).
        _checked(lambda: register_definition(s.definition, f"space file {s.name}", source=s.name), source)
        names[s.name] = name
    return names


def _condition(value: Any, source: str) -> Condition:
    """``default`` (the run's own genotype), a policy name, ``policy:condition``, a bare LHD condition (policy
    lhd), or a mapping {policy, condition, label, train}."""
    if isinstance(value, str):
        text = _label(value.strip(), "condition", source)
        if text == DEFAULT_CONDITION:
            return Condition(DEFAULT_CONDITION)
        policy, sep, cond = text.partition(":")
        if sep:
            return Condition(text, policy or None, cond or None)
        if text in _lhd_conditions() and text not in known_policies():
            return Condition(text, "lhd", text)
        return Condition(text, text, None)
    if not isinstance(value, dict):
        raise RobustDartsError(f"{source}: condition {value!r} must be a name (policy[:condition]) or a mapping.")
    bad = sorted(set(value) - {"label", "policy", "condition", "train"})
    if bad:
        raise RobustDartsError(f"{source}: condition {value!r} has unknown key {bad[0]!r}; its keys are: condition, "
                               f"label, policy, train.")
    policy, cond = value.get("policy"), value.get("condition")
    if policy is None and cond is not None and str(cond) in _lhd_conditions():
        policy = "lhd"
    label = _label(value.get("label") or (":".join(str(p) for p in (policy, cond) if p) or DEFAULT_CONDITION),
                   "condition label", source)
    return Condition(label, None if policy in (None, DEFAULT_CONDITION) else str(policy),
                     None if cond is None else str(cond), _overrides(value.get("train"), f"condition {label} train",
                                                                     source))


def _rule(value: Any, source: str) -> SelectRule:
    if not isinstance(value, dict) or "name" not in value or "from" not in value:
        raise RobustDartsError(f"{source}: select rule {value!r} needs a name and a from list of method labels.")
    bad = sorted(set(value) - {"name", "from", "by", "over"})
    if bad:
        raise RobustDartsError(f"{source}: select rule {value['name']!r} has unknown key {bad[0]!r}; its keys are: "
                               f"by, from, name, over.")
    by, over = value.get("by", "valid_acc"), value.get("over", "variants")
    if by not in SELECT_BY:
        raise unknown("selection criterion", by, SELECT_BY, where=f"in select rule {value['name']!r} of {source} "
                                                                  f"(the test accuracy is never selected on)")
    if over not in SELECT_OVER:
        raise unknown("selection scope", over, SELECT_OVER, where=f"in select rule {value['name']!r} of {source}")
    from_ = value["from"] if isinstance(value["from"], list) else [value["from"]]
    return SelectRule(_label(value["name"], "select rule", source), tuple(map(str, from_)), by, over)


# ---- the live registries ---------------------------------------------------------------------------------------
def known_policies() -> dict[str, tuple[str, ...] | None]:
    """Policy name -> the space kinds it applies to (None: decided when it runs), read from the live registries
    (discretize.POLICIES, derive.policy_names) so that a policy added later is valid here at once. Those outside
    POLICIES (selective stop, DARTS-PT) work on the whole run and choose their epoch themselves."""
    from ..derive import policy_names  # by its module: robustdarts.derive is the API function (api.py)
    from ..discretize import POLICIES

    out: dict[str, tuple[str, ...] | None] = {name: tuple(p.kinds) for name, p in POLICIES.items()}
    names = policy_names()
    for name in names:
        out.setdefault(name, None)
    return out


def _lhd_conditions() -> tuple[str, ...]:
    from ..discretize import LHD_CONDITIONS
    return tuple(LHD_CONDITIONS)


# ---- expansion -------------------------------------------------------------------------------------------------
def expand(grid: Grid) -> list[Cell]:
    """Every cell of the grid in a fixed order (methods, variants, spaces, datasets, seeds), validated."""
    from ..data.datasets import dataset_info
    from ..data.own import canonical_name, is_own
    from ..eval_recipe import recipe_defaults
    from ..memory import ANY_MACHINE, check_search, check_train_floor
    from ..methods import PRESETS, has_preset, make_recipe
    from ..spaces import get_space

    src = grid.source
    _unique([m.label for m in grid.methods], "method label", src)
    _unique([c.label for c in grid.conditions], "condition label", src)
    for m in grid.methods:
        if not has_preset(m.name):  # a plugin's preset (entry point or MODULE:ATTRIBUTE) is loaded here
            raise unknown("method", m.name, PRESETS, where=f"in {src}")
    space_of = _register_spaces(grid.spaces, src)  # entry -> space name (a FILE.yaml's registered from its entry)
    names = []
    for d in grid.datasets:
        if is_own(d.name):  # read below, once a cell's config says whether to skip unreadable images
            names.append(_checked(lambda: canonical_name(d.name), f"{src}, dataset {d.name}"))
            continue
        try:
            names.append(dataset_info(d.name).name)
        except RobustDartsError:
            from ..data.datasets import DATASETS
            raise unknown("dataset", d.name, DATASETS, where=f"in {src}") from None
    _unique(names, "dataset", src)
    policies, lhd = known_policies(), _lhd_conditions()
    for c in grid.conditions:
        if c.policy is not None and c.policy not in policies:
            raise unknown("condition", c.label, [DEFAULT_CONDITION, *policies, *lhd], where=f"in {src}")
        if c.condition is not None and c.condition not in lhd:
            raise unknown("LHD condition", c.condition, lhd, where=f"in condition {c.label!r} of {src}")
        if c.condition is not None and c.policy != "lhd":
            raise RobustDartsError(f"{src}: condition {c.label!r} gives LHD condition {c.condition!r} to policy "
                                   f"{c.policy!r}; LHD conditions go with policy lhd (write lhd:{c.condition}).")
        kinds = policies.get(c.policy) if c.policy else None
        for s in grid.spaces:
            if kinds is not None and get_space(space_of[s.name]).kind not in kinds:
                raise RobustDartsError(f"{src}: condition {c.label!r} (policy {c.policy}) applies to "
                                       f"{'/'.join(kinds)} spaces, not to space {s.name!r}; drop one of them.")
    labels = {m.label for m in grid.methods}
    for rule in grid.select:
        missing = [f for f in rule.from_ if f not in labels]
        if missing:
            raise unknown("method label", missing[0], labels, where=f"in select rule {rule.name!r} of {src}")
    if grid.train is None and any(r.by == "valid_acc" for r in grid.select):
        raise RobustDartsError(f"{src}: a select rule by valid_acc needs trainings from scratch; add a train: "
                               f"section with valid_images, or select by supernet_val_acc.")

    cells: list[Cell] = []
    seen: dict[str, str] = {}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for m in grid.methods:
        for variant, sweep in m.variants():
            for s in grid.spaces:
                for d, dataset in zip(grid.datasets, names):
                    where = f"{src}, method {m.label}{f' ({variant})' if variant else ''}, space {s.name}, " \
                            f"dataset {d.name}"
                    # Resolved once per seed axis (resolution is the slow part of a large grid); the seed changes
                    # no other field of either config.
                    search = _merge(grid.search, s.search, d.search, m.search, sweep)
                    search.update(method=m.name, space=space_of[s.name], dataset=dataset, seed=grid.seeds[0])
                    if grid.preset is not None:
                        search["preset"] = grid.preset
                    cfg = _resolve_search(search, where)
                    # What no machine holds is refused here, before plan.estimate counts FLOPs (init_channels 100000
                    # used to end in an allocator traceback there, 100000 layers in 90 s of silence); whether a cell
                    # fits the machine it runs on is checked there, when it runs.
                    _check_layers(cfg.layers, where)
                    _checked(lambda: check_search(cfg, ANY_MACHINE), where)
                    # A method that cannot run on a space, or with these fields, says so, naming the entry
                    # (microseconds each: no cache, whose key would have to hold every field a recipe reads).
                    _checked(lambda: make_recipe(cfg), where)
                    trainings = []
                    for c in grid.conditions:
                        if grid.train is None:
                            trainings.append((None, None))
                            continue
                        over = _merge(grid.train, s.train, d.train, m.train, c.train)
                        over.update(dataset=dataset)
                        if c.policy == "lhd" and c.condition and "condition" in train_fields:
                            over["condition"] = c.condition  # LHD's network per condition (1M)
                        if cfg.data_dir is not None:
                            over.setdefault("data_dir", cfg.data_dir)
                        if grid.preset is not None:
                            over.setdefault("preset", grid.preset)
                        # The evaluation recipe that cell.train_config layers under these values at run time
                        # (LHD's for LHD cells), so that the plan shows and costs what runs.
                        base = _checked(lambda: recipe_defaults(
                            get_space(space_of[s.name]).kind, dataset, c.condition if c.policy == "lhd" else None),
                            f"{where}, condition {c.label}, train")
                        if "seed" not in base:  # a recipe without its own (LHD's is 0) trains with the search's
                            over["seed"] = grid.seeds[0]
                        built = _checked(lambda: build(TrainConfig, {**over, "genotype": ""}, "train", base=base),
                                         f"{where}, condition {c.label}, train")
                        _check_layers(built.layers, f"{where}, condition {c.label}, train")
                        # No genotype yet: refused only if no genotype of the space's kind could fit.
                        _checked(lambda: check_train_floor(built, get_space(space_of[s.name]).kind, ANY_MACHINE),
                                 f"{where}, condition {c.label}, train")
                        trainings.append((dataclasses.asdict(built), over))
                    located = _where_free(cfg.dataset, where, s.definition)
                    for seed in grid.seeds:
                        fields = {**dataclasses.asdict(cfg), "seed": seed}
                        cell_id = stable_id(located({k: v for k, v in fields.items() if k != "data_dir"}))
                        if cell_id in seen:
                            raise RobustDartsError(f"{src}: {where}, seed {seed} resolves to the same search as "
                                                   f"{seen[cell_id]}; remove one of them.")
                        seen[cell_id] = f"{where}, seed {seed}"
                        conditions = []
                        for c, (train, over) in zip(grid.conditions, trainings):
                            if train is not None and "seed" in over:
                                train, over = {**train, "seed": seed}, {**over, "seed": seed}
                            unit = stable_id({"cell": cell_id, "policy": c.policy, "condition": c.condition,
                                              "train": None if train is None else
                                              located({k: v for k, v in train.items()
                                                       if k not in ("genotype", "data_dir")})})
                            conditions.append(CellCondition(unit, c.label, c.policy, c.condition, train, over))
                        cells.append(Cell(cell_id, len(cells), m.label, m.name, variant, space_of[s.name], dataset,
                                          seed, fields, tuple(conditions), dict(grid.measure), dict(grid.resources),
                                          space_definition=s.definition))
    _check_selections(grid, cells)
    return cells


def _check_layers(layers: int, where: str) -> None:
    if layers > MAX_LAYERS:
        raise RobustDartsError(f"{where}: layers is {layers}, more than the {MAX_LAYERS:,} cells a network of a grid "
                               f"may have; give layers <= {MAX_LAYERS:,}.")


def _check_selections(grid: Grid, cells: list[Cell]) -> None:
    """A rule by valid_acc needs every candidate's training to hold images out: without, no candidate has a score,
    the rule selects nothing and the report reads "0 of N" after the whole grid has run. A rule by supernet_val_acc
    needs every candidate's supernet validation to be the reference's: ``skipped_statistics: stale`` changes it."""
    for rule in grid.select:
        if rule.by == "supernet_val_acc":
            stale = next((c for c in cells if c.method in rule.from_
                          and c.search.get("skipped_statistics") == "stale"), None)
            if stale is not None:
                raise RobustDartsError(f"{grid.source}: select rule {rule.name!r} selects by supernet_val_acc, but "
                                       f"method {stale.method!r} searches with skipped_statistics=stale, whose "
                                       f"supernet validation reads stale BN statistics; select by valid_acc or "
                                       f"use skipped_statistics=current.")
        if rule.by != "valid_acc":
            continue
        for c in cells:
            blind = next((k for k in c.conditions if c.method in rule.from_ and k.train is not None
                          and not k.train.get("valid_images")), None)
            if blind is not None:
                raise RobustDartsError(f"{grid.source}: select rule {rule.name!r} selects by valid_acc, but the "
                                       f"trainings of method {c.method!r} (condition {blind.label}) hold out no "
                                       f"images; set valid_images in train: or select by supernet_val_acc.")


# Fields added after grids were stored, left out of a cell's id at their default so that those ids stay the same.
LEFT_OUT_AT_DEFAULT = {"skip_bad_images": False, "skipped_statistics": "current"}


def _where_free(dataset: str, where: str, space_definition: dict[str, Any] | None = None):
    """The id fields of a config made independent of where its data lie, as ``data_dir`` is left out: a user's
    ``folder:``/``npz:`` path becomes the data's content digest (moving the folder keeps the cells; changing its
    images makes new ones). The fields of ``LEFT_OUT_AT_DEFAULT`` at their default are left out too, so that the
    ids of grids written before the fields existed stay the same. A user's space (``space_definition``: its file's
    content, every edge written out) is likewise its name and a digest of that definition: the same space read
    from another path keeps its cells, an edited file makes new ones."""
    from ..data.own import is_own

    identity = dataset
    if is_own(dataset):
        from ..data.datasets import dataset_info
        identity = f"{dataset.split(':', 1)[0]}:{_checked(lambda: dataset_info(dataset), where).digest}"

    def located(fields: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in fields.items() if k not in LEFT_OUT_AT_DEFAULT or v != LEFT_OUT_AT_DEFAULT[k]}
        if "dataset" in out:
            out["dataset"] = identity
        if space_definition is not None and "space" in out:
            out["space"] = f"{space_definition['name']}@{stable_id(space_definition)}"
        return out

    return located


def _resolve_search(overrides: dict[str, Any], where: str) -> SearchConfig:
    from ..methods import search_config
    return _checked(lambda: search_config(overrides), where)


def _checked(make, where: str):
    """``make()``, with a user error's sentence prefixed by the grid entry it comes from."""
    try:
        return make()
    except RobustDartsError as e:
        raise RobustDartsError(f"{where}: {e}") from None


def _merge(*layers: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        for k, v in layer.items():
            if k == "method_options":
                out["method_options"] = {**out.get("method_options", {}), **v}
            else:
                out[k] = v
    return out


def _unique(values: list, what: str, source: str) -> None:
    twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if twice is not None:
        raise RobustDartsError(f"{source}: {what} {twice!r} appears twice; give each entry its own {what}.")


def stable_id(data: Any) -> str:
    """12 hex digits of the SHA-256 of ``data`` as canonical JSON (sorted keys; floats by repr, so 9e-4 and
    0.0009 are one value)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_")


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def grid_size(grid: Grid) -> dict[str, Any]:
    """Cells and trainings of a grid counted from its axes alone (no resolution: instant for any size), and the
    methods it names that this robustdarts lacks (a preset may list methods still to come)."""
    from ..methods import PRESETS

    cells = _count_cells(grid.methods, grid.spaces, grid.datasets, grid.seeds)
    return {"cells": cells, "trainings": cells * len(grid.conditions) if grid.train is not None else 0,
            "missing_methods": [m.name for m in grid.methods if m.name not in PRESETS]}
