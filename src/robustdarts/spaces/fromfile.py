"""Search spaces as data: a YAML file defines a DARTS-kind cell space and becomes the same ``Space`` as the built-ins.

```yaml
name: my-space
ops: [none, max_pool_3x3, skip_connect, sep_conv_3x3]   # candidates on every edge (registry or plugin op names)
nodes: 3                 # intermediate nodes per cell (DARTS: 4)
inputs_per_node: 2       # edges kept per node at derivation (DARTS: 2)
# edges: {normal: [[ops of edge 0], [ops of edge 1], ...], reduce: [...]}   # per-edge lists instead of ops, as S1
# description: one line for robustdarts spaces
```

This module checks the file and returns the ``Space`` fields; ``registry.load_space`` builds and registers the
value (the registry sits above this module). The cell is the DARTS cell (two cell inputs, node i fed by every earlier state), so every method and derive policy
of the darts kind applies, with the darts kind's recipe (``recipe_kind``). A run directory records the definition
with every edge written out (``Space.definition``; runs.py), and reading it back goes through this same check.
A malformed file is one sentence naming the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..config import read_yaml_file
from ..errors import RobustDartsError, short

KEYS = ("name", "ops", "nodes", "inputs_per_node", "edges", "description")
CELL_INPUTS = 2  # the DARTS cell: outputs of the two previous cells
MAX_NODES = 32  # far beyond any published cell; a typo (400) would otherwise build a supernet for minutes
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def read_space_file(path: str | Path, recorded: bool = False) -> dict[str, Any]:
    """The ``Space`` fields a YAML file defines, checked; errors name the file and the field. ``recorded``: the file
    is a run's space.yaml (see ``space_fields``)."""
    path = Path(path)
    where = f"space file {path}"
    data = read_yaml_file(path, where, "a space; write name, ops, nodes and inputs_per_node")
    return space_fields(data, where, source=str(path), recorded=recorded)


def space_fields(data: Any, where: str = "space definition", source: str = "", recorded: bool = False
                 ) -> dict[str, Any]:
    """The fields of a DARTS-kind ``Space`` from a mapping of the file's fields, each checked in one sentence.

    ``recorded``: the definition a run directory recorded, whose ops were checked when the run started. An op no
    longer installed (a plugin's op, on a machine without the plugin) is then accepted as a name: what needs no op
    code (derive, plot: α and metrics only) works from the run alone, and building the op (train, show, a resume)
    says in one sentence which op is missing (ops.make_op)."""
    from .ops import _OP_NAME, BROKEN_OPS, known_op as installed

    def known_op(op: str, family: str) -> bool:
        return installed(op, family) or recorded and op not in BROKEN_OPS and bool(_OP_NAME.match(op))

    if not isinstance(data, dict):
        raise RobustDartsError(f"{where} must hold a mapping of name, ops, nodes, inputs_per_node (and optionally "
                               f"edges, description), not {type(data).__name__}.")
    unknown = sorted(str(k) for k in data if k not in KEYS)
    if unknown:
        raise RobustDartsError(f"{where} has unknown field {unknown[0]!r}; fields are: {', '.join(KEYS)}.")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 64:
        raise RobustDartsError(f"{where}: field 'name' is {short(name)}, but must be a name of letters, digits and "
                               f". _ + - (up to 64 characters).")
    nodes = _integer(data, "nodes", where, 1, MAX_NODES)
    keep = _integer(data, "inputs_per_node", where, 1, None)
    if keep > CELL_INPUTS:
        raise RobustDartsError(f"{where}: field 'inputs_per_node' is {keep}, but node 0 has only {CELL_INPUTS} "
                               f"inputs (the cell's two inputs); use 1 or 2.")
    num_edges = sum(CELL_INPUTS + i for i in range(nodes))
    has_ops, has_edges = data.get("ops") is not None, data.get("edges") is not None
    if has_ops == has_edges:
        raise RobustDartsError(f"{where} needs exactly one of the fields 'ops' (the candidates on every edge) and "
                               f"'edges' (per-edge lists), {'not both' if has_ops else 'and has neither'}.")
    if has_ops:
        shared = _op_list(data["ops"], "field 'ops'", where, known_op)
        ops = {cell: tuple(shared for _ in range(num_edges)) for cell in ("normal", "reduce")}
    else:
        edges = data["edges"]
        if not isinstance(edges, dict) or set(map(str, edges)) != {"normal", "reduce"}:
            raise RobustDartsError(f"{where}: field 'edges' must be a mapping with exactly the keys normal and "
                                   f"reduce, each a list of per-edge op lists, not {short(edges)}.")
        ops = {}
        for cell in ("normal", "reduce"):
            per_edge = edges[cell]
            if not isinstance(per_edge, list) or len(per_edge) != num_edges:
                count = len(per_edge) if isinstance(per_edge, list) else short(per_edge)
                raise RobustDartsError(f"{where}: field 'edges.{cell}' has {count} edge lists, but {nodes} nodes "
                                       f"make {num_edges} edges (node i has {CELL_INPUTS} + i inputs).")
            ops[cell] = tuple(_op_list(e, f"field 'edges.{cell}[{k}]'", where, known_op)
                              for k, e in enumerate(per_edge))
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise RobustDartsError(f"{where}: field 'description' must be text, not {short(description)}.")
    return dict(name=name, kind="darts", family="darts", ops=ops, steps=nodes, num_inputs=CELL_INPUTS,
                description=description or f"user space: {nodes} nodes, {keep} input(s) kept per node",
                paper="", keep=keep, source=source)


def _integer(data: dict, key: str, where: str, lo: int, hi: int | None) -> int:
    value = data.get(key)
    if value is None:
        raise RobustDartsError(f"{where} lacks field {key!r}; give it a whole number (DARTS: "
                               f"{4 if key == 'nodes' else 2}).")
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bounds = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        raise RobustDartsError(f"{where}: field {key!r} is {short(value)}, but must be a whole number {bounds}.")
    return value


def _op_list(value: Any, field: str, where: str, known_op) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise RobustDartsError(f"{where}: {field} must be a non-empty list of op names, not {short(value)}.")
    for op in value:
        if not isinstance(op, str) or not known_op(op, "darts"):
            from .ops import BROKEN_OPS, OPS
            if op in BROKEN_OPS:  # the op's plugin is installed but failed: its sentence, not "unknown op"
                raise RobustDartsError(f"{where}: {field} names op {op!r}, but {BROKEN_OPS[op]}")
            raise RobustDartsError(f"{where}: {field} names unknown op {short(op)}; choose from: "
                                   f"{', '.join(sorted(OPS['darts']))} (or register your own with register_op).")
    if len(set(value)) != len(value):
        raise RobustDartsError(f"{where}: {field} lists an op twice ({', '.join(value)}); list each op once.")
    if all(op == "none" for op in value):
        raise RobustDartsError(f"{where}: {field} offers only 'none', but derivation keeps an op other than none "
                               f"on every chosen edge; add one.")
    return tuple(value)


__all__ = ["read_space_file", "space_fields", "KEYS"]
