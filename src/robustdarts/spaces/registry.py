"""Search spaces as data: per-edge op lists per cell type, the cell's wiring, and the op family.

Edge order (every reference repo uses it): intermediate node i takes one edge from each of its
``num_inputs + i`` predecessors, in order — the cell inputs first, then nodes 0..i-1. Source index k < num_inputs
is cell input k; k >= num_inputs is intermediate node k - num_inputs. α has one row per edge and one column per
entry of that edge's op list, in list order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..errors import unknown

DARTS_OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
             "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
DARTS7_OPS = DARTS_OPS[1:]
LHD_OPS = DARTS7_OPS
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


@dataclass(frozen=True)
class Space:
    name: str
    kind: str  # "darts" (4-node DARTS cell), "lhd" (5 nodes, node-joint softmax, sum/concat outputs), "nb201"
    family: str  # op family in ops.OPS
    ops: dict  # cell type -> tuple of per-edge op tuples
    steps: int  # intermediate nodes
    num_inputs: int  # cell inputs
    description: str
    paper: str = ""
    keep: int = 2  # edges kept per intermediate node at derivation (the darts kind; DARTS keeps 2)
    source: str = ""  # where a user's space came from (its YAML file); "" for the built-ins

    @property
    def cell_types(self) -> tuple[str, ...]:
        return tuple(self.ops)

    @cached_property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """(node, source) per edge in α row order."""
        return tuple((i, j) for i in range(self.steps) for j in range(self.num_inputs + i))

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    def num_ops(self, cell_type: str = "normal") -> int:
        return len(self.ops[cell_type][0])

    def node_edges(self, node: int) -> range:
        """Rows of α that feed intermediate node ``node``."""
        start = sum(self.num_inputs + i for i in range(node))
        return range(start, start + self.num_inputs + node)

    def alpha_shape(self, cell_type: str = "normal") -> tuple[int, int]:
        return (self.num_edges, self.num_ops(cell_type))

    @property
    def num_alpha(self) -> int:
        return sum(self.num_edges * self.num_ops(c) for c in self.cell_types)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "family": self.family, "steps": self.steps,
                "num_inputs": self.num_inputs, "num_edges": self.num_edges, "description": self.description,
                "paper": self.paper, "inputs_per_node": self.keep,
                "ops": {c: [list(e) for e in v] for c, v in self.ops.items()}}

    def definition(self) -> dict:
        """A user's space as its YAML file would define it (every edge's ops written out): what a run directory
        records, so that the run works even after the file is gone or changed (spaces/fromfile.py reads it)."""
        out = {"name": self.name, "nodes": self.steps, "inputs_per_node": self.keep,
               "edges": {c: [list(e) for e in v] for c, v in self.ops.items()}}
        return {**out, "description": self.description} if self.description else out


def _uniform(ops: tuple[str, ...], num_edges: int) -> tuple[tuple[str, ...], ...]:
    return tuple(ops for _ in range(num_edges))


# RobustDARTS S1 (src/spaces.py): two ops per edge, different lists per edge (spec D §2.1). Keep list order exactly.
_S1_NORMAL = (
    ("skip_connect", "dil_conv_3x3"), ("skip_connect", "dil_conv_5x5"), ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "sep_conv_3x3"), ("skip_connect", "dil_conv_3x3"), ("max_pool_3x3", "skip_connect"),
    ("skip_connect", "sep_conv_3x3"), ("skip_connect", "sep_conv_3x3"), ("skip_connect", "dil_conv_3x3"),
    ("skip_connect", "sep_conv_3x3"), ("max_pool_3x3", "skip_connect"), ("skip_connect", "dil_conv_3x3"),
    ("dil_conv_3x3", "dil_conv_5x5"), ("dil_conv_3x3", "dil_conv_5x5"),
)
_S1_REDUCE = (
    ("max_pool_3x3", "avg_pool_3x3"), ("max_pool_3x3", "dil_conv_3x3"), ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "avg_pool_3x3"), ("skip_connect", "dil_conv_5x5"), ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "sep_conv_3x3"), ("skip_connect", "dil_conv_3x3"), ("skip_connect", "dil_conv_5x5"),
    ("max_pool_3x3", "avg_pool_3x3"), ("max_pool_3x3", "avg_pool_3x3"), ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "dil_conv_5x5"), ("skip_connect", "dil_conv_5x5"),
)

_RDARTS = "Zela et al., Understanding and Robustifying DARTS (ICLR 2020)"


def _darts_space(name, ops_normal, ops_reduce, description, paper=_RDARTS) -> Space:
    return Space(name=name, kind="darts", family="darts", ops={"normal": ops_normal, "reduce": ops_reduce}, steps=4,
                 num_inputs=2, description=description, paper=paper)


SPACES: dict[str, Space] = {
    s.name: s
    for s in [
        _darts_space("darts", _uniform(DARTS_OPS, 14), _uniform(DARTS_OPS, 14),
                     "DARTS space, 8 ops including none (= RobustDARTS S5)",
                     "Liu et al., DARTS (ICLR 2019)"),
        _darts_space("darts-7", _uniform(DARTS7_OPS, 14), _uniform(DARTS7_OPS, 14),
                     "DARTS space without none, 7 ops (the S5 of SDARTS, DARTS-PT, Lambda-DARTS, SP-DARTS)",
                     "Chen & Hsieh, SDARTS (ICML 2020); Wang et al., DARTS-PT (ICLR 2021)"),
        _darts_space("s1", _S1_NORMAL, _S1_REDUCE, "RobustDARTS S1: two ops per edge, chosen per edge"),
        _darts_space("s2", _uniform(("skip_connect", "sep_conv_3x3"), 14),
                     _uniform(("skip_connect", "sep_conv_3x3"), 14), "RobustDARTS S2: skip or sep_conv_3x3"),
        _darts_space("s3", _uniform(("none", "skip_connect", "sep_conv_3x3"), 14),
                     _uniform(("none", "skip_connect", "sep_conv_3x3"), 14),
                     "RobustDARTS S3: none, skip or sep_conv_3x3"),
        _darts_space("s4", _uniform(("noise", "sep_conv_3x3"), 14), _uniform(("noise", "sep_conv_3x3"), 14),
                     "RobustDARTS S4: N(0,1) noise or sep_conv_3x3"),
        Space(name="lhd", kind="lhd", family="lhd", ops={"normal": _uniform(LHD_OPS, 20), "reduce": _uniform(LHD_OPS, 20)},
              steps=5, num_inputs=2,
              description="LHD: 5 nodes, 20 edges, node-joint softmax over (input, op), learned sum/concat outputs",
              paper="Zhang & Ding, Rethink DARTS Search Space and Renovate a New Benchmark (ICML 2023)"),
        Space(name="nb201", kind="nb201", family="nb201", ops={"normal": _uniform(NB201_OPS, 6)}, steps=3,
              num_inputs=1, description="NAS-Bench-201 cell: 4 nodes, 6 edges, 5 ops; ResNet reduction blocks",
              paper="Dong & Yang, NAS-Bench-201 (ICLR 2020)"),
    ]
}


# The spaces shipped here; a user's space (a YAML file, spaces/fromfile.py) is added beside them, never over them.
BUILTIN_SPACES: dict[str, Space] = dict(SPACES)


def is_space_file(name: object) -> bool:
    """Whether ``name`` names a space file (``FILE.yaml``/``FILE.yml``) rather than a registered space."""
    return isinstance(name, str) and name.lower().endswith((".yaml", ".yml"))


def register_space(space: Space) -> Space:
    """Add a user's space to ``SPACES`` (a later definition of the same name replaces the earlier one: a run
    directory's recorded definition wins over a file edited since); a built-in name is refused."""
    from ..errors import RobustDartsError

    if space.name in BUILTIN_SPACES:
        raise RobustDartsError(f"space file {space.source or space.name}: field 'name' is {space.name!r}, which is "
                               f"a built-in space; choose another name.")
    previous = SPACES.get(space.name)
    SPACES[space.name] = space
    if previous is not None and previous.definition() != space.definition():
        for forget in _ON_REDEFINE:
            forget()
    return space


# Memos keyed by a space's name (bench/plan.py's costs), dropped when a name is redefined (an edited space file
# planned again in one process); registered by their modules, so that this one imports none of them.
_ON_REDEFINE: list = []


def on_redefine(forget) -> None:
    """Call ``forget()`` whenever a space name gets another definition."""
    _ON_REDEFINE.append(forget)


def load_space(path, recorded: bool = False) -> Space:
    """The DARTS-kind space a YAML file defines (spaces/fromfile.py checks it), registered under its name;
    ``recorded``: a run directory's space.yaml, whose ops need not be installed here (``space_fields``)."""
    from .fromfile import read_space_file
    return register_space(Space(**read_space_file(path, recorded)))


def register_definition(definition, where: str, source: str = "") -> Space:
    """The DARTS-kind space a definition already read from a file describes (the mapping of its fields, as a bench
    grid entry or a cell carries it), checked as the file is (spaces/fromfile.py, errors naming ``where``) and
    registered under its name."""
    from .fromfile import space_fields
    return register_space(Space(**space_fields(definition, where, source=source)))


def get_space(name: str) -> Space:
    """The ``Space`` named ``name`` (darts, s1..s4, lhd, nb201, ...: ``robustdarts spaces``), or the DARTS-kind
    space a YAML file defines (``FILE.yaml``, then registered under its ``name``); a ``Space`` is returned as it is.
    A ``Space`` is plain data: its kind, cell types, edges, the candidate ops of each edge (``ops``), the
    intermediate nodes (``steps``) and ``alpha_shape(cell)``. Raises ``RobustDartsError`` for an unknown name."""
    if isinstance(name, Space):
        return name
    if is_space_file(name):
        return load_space(name)
    if name not in SPACES:
        raise unknown("search space", name, SPACES, where="(or give a FILE.yaml space)")
    return SPACES[name]
