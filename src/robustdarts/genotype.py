"""The architecture as data: one frozen ``Genotype`` for DARTS-style, LHD and NAS-Bench-201 cells.

Three kinds share one JSON schema (``to_dict``/``from_dict``):

- ``darts`` (spec D §1.2): ``normal``/``reduce`` are ``(op, input)`` genes, node i owning entries 2i and 2i+1;
  ``normal_concat``/``reduce_concat`` are the state indices concatenated into the cell output. A cell of a user's
  space that keeps another number of edges per node (``inputs_per_node``, spaces/fromfile.py) writes its genes as
  ``(op, input, node)``, naming each gene's node as the other kinds do.
- ``lhd`` (spec L §1.5-1.7): genes are ``(op, input, node)``; ``normal_output``/``reduce_output`` hold the node
  indices of the sum output and of the concat output, ordered by weight (descending) as the discretizer ranks them.
- ``nb201``: genes are ``(op, input, node)``, all 6 edges kept (``none`` included); only a ``normal`` cell.

Input indices are the source index of the space registry, so ``space.node_edges(node)[input]`` is the α row:
darts: 0 = s0 (cell k-2), 1 = s1 (cell k-1), k >= 2 = node k-2; lhd: 0 = h0 (previous sum output),
1 = h1 (previous concat output), k >= 2 = node k-2; nb201: 0 = the cell input, k >= 1 = node k-1 (the ``~k`` of
NAS-Bench-201 strings). Nodes are 0-based intermediate nodes everywhere.

Text formats read without ``eval``: the DARTS ``Genotype(normal=[...], normal_concat=range(2, 6), ...)`` repr
(parsed with ``ast`` and ``ast.literal_eval`` on sub-nodes) and NAS-Bench-201 ``|op~0|+|op~0|op~1|+...`` strings.
LHD ``.pl`` files (probabilities, not a genotype) are read and discretized by ``lhd_pl``.
"""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .atomic import atomic_write_text
from .errors import RobustDartsError, short, unknown
from .spaces.ops import BROKEN_OPS, OPS, known_op
from .spaces.registry import SPACES, Space, get_space

KINDS = ("darts", "lhd", "nb201")
SCHEMA = "robustdarts.genotype"
SCHEMA_VERSION = 1
# Cell inputs per kind: the sources that are not intermediate nodes.
NUM_INPUTS = {"darts": 2, "lhd": 2, "nb201": 1}
_FIELDS = ("kind", "space", "normal", "normal_concat", "normal_output", "reduce", "reduce_concat", "reduce_output")

Gene = tuple  # (op, input) for the darts kind; (op, input, node) for lhd and nb201


@dataclass(frozen=True)
class CellOutput:
    """LHD cell outputs: node indices of the sum output and of the concat output (weight order, descending)."""

    sum: tuple[int, ...]
    concat: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "sum", _ints(self.sum, "the sum output"))
        object.__setattr__(self, "concat", _ints(self.concat, "the concat output"))

    def __getitem__(self, key: str) -> tuple[int, ...]:  # dict-style access, as the LHD reference container
        if key not in ("sum", "concat"):
            raise KeyError(key)
        return getattr(self, key)

    def to_dict(self) -> dict:
        return {"sum": list(self.sum), "concat": list(self.concat)}


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _ints(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise RobustDartsError(f"{where} must be a list of integers, not {short(value)}.")
    items = list(value)
    if not all(_is_int(v) for v in items):
        raise RobustDartsError(f"{where} must be a list of integers, not {short(items)}.")
    return tuple(int(v) for v in items)


def _genes(value: Any, arity: int, where: str) -> tuple[Gene, ...]:
    shape = "(op, input)" if arity == 2 else "(op, input, node)"
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise RobustDartsError(f"{where} must be a list of {shape} genes, not {short(value)}.")
    genes = []
    for i, gene in enumerate(value):
        ok = (isinstance(gene, (list, tuple)) and len(gene) == arity and isinstance(gene[0], str)
              and all(_is_int(v) for v in gene[1:]))
        if not ok:
            raise RobustDartsError(f"{where} gene {i} is {short(gene)}, but each gene must be {shape} with a string op "
                                   f"and integer indices.")
        genes.append((gene[0], *(int(v) for v in gene[1:])))
    return tuple(genes)


def _explicit_nodes(genes: Any) -> bool:
    """Whether a darts cell's genes name their node, ``(op, input, node)``, judged by the first gene (``_genes``
    then holds every gene to that shape)."""
    try:
        first = next(iter(genes))
    except (TypeError, StopIteration):
        return False
    return isinstance(first, (list, tuple)) and len(first) == 3


def _output(value: Any, where: str) -> CellOutput:
    if isinstance(value, CellOutput):
        return value
    if not isinstance(value, Mapping) or set(value) != {"sum", "concat"}:
        raise RobustDartsError(f"{where} must be a mapping with exactly the keys 'sum' and 'concat', not "
                               f"{short(value)}.")
    return CellOutput(_ints(value["sum"], f"{where}['sum']"), _ints(value["concat"], f"{where}['concat']"))


def input_name(kind: str, index: int) -> str:
    """Readable name of an input index: s0/s1 (darts), h0/h1 (lhd), x (nb201), n<k> for intermediate nodes."""
    first = NUM_INPUTS[kind]
    if index < first:
        return {"darts": "s", "lhd": "h"}.get(kind, "x") + (str(index) if kind != "nb201" else "")
    return f"n{index - first}"


@dataclass(frozen=True)
class Genotype:
    """A discrete cell pair (or single NB201 cell); immutable, hashable, checked for structure on construction.

    ``kind`` (darts, lhd, nb201), the ``normal`` and ``reduce`` genes ((op, input) pairs; LHD and NB201 genes
    name their node too), the concatenated nodes or LHD's outputs, and the ``space`` it was derived in (None for
    a published one). ``Genotype.load(path)`` / ``save(path)`` read and write JSON, ``Genotype.parse(text)`` reads
    JSON, DARTS text (never evaluated) or an NB201 string, ``describe()`` returns the cells as text.
    """

    kind: str
    normal: tuple[Gene, ...]
    reduce: tuple[Gene, ...] = ()
    normal_concat: tuple[int, ...] = ()
    reduce_concat: tuple[int, ...] = ()
    normal_output: CellOutput | None = None
    reduce_output: CellOutput | None = None
    space: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise unknown("genotype kind", self.kind, KINDS)
        # Normalise lists/dicts to tuples/CellOutput so equality and hashing never depend on the container type.
        fix = object.__setattr__
        for cell in ("normal", "reduce"):
            genes = getattr(self, cell)
            arity = 2 if self.kind == "darts" and not _explicit_nodes(genes) else 3
            fix(self, cell, _genes(genes, arity, f"{cell} cell"))
            fix(self, f"{cell}_concat", _ints(getattr(self, f"{cell}_concat"), f"{cell}_concat"))
            out = getattr(self, f"{cell}_output")
            fix(self, f"{cell}_output", None if out is None else _output(out, f"{cell}_output"))
        if self.space is not None and not isinstance(self.space, str):
            raise RobustDartsError(f"the genotype's space must be a space name or None, not {self.space!r}.")
        for cell in self.cells:
            self._check_cell(cell)
        if self.kind == "nb201" and (self.reduce or self.reduce_output or self.reduce_concat):
            raise RobustDartsError("an nb201 genotype has only a normal cell; leave reduce, reduce_concat and "
                                   "reduce_output empty.")

    # ---- structure -------------------------------------------------------------------------------------------
    @property
    def cells(self) -> tuple[str, ...]:
        return ("normal",) if self.kind == "nb201" else ("normal", "reduce")

    def genes(self, cell: str) -> tuple[Gene, ...]:
        return getattr(self, cell)

    def gene_node(self, cell: str, index: int) -> int:
        """The intermediate node that gene ``index`` of ``cell`` feeds."""
        gene = self.genes(cell)[index]
        return index // 2 if len(gene) == 2 else gene[2]

    def cell_num_nodes(self, cell: str) -> int:
        genes = self.genes(cell)
        return 1 + max((self.gene_node(cell, i) for i in range(len(genes))), default=-1)

    @property
    def num_nodes(self) -> int:
        """Intermediate nodes a cell must build: the highest node index used (over both cells) plus one."""
        return max(self.cell_num_nodes(c) for c in self.cells)

    def node_inputs(self, cell: str) -> tuple[tuple[tuple[str, int], ...], ...]:
        """Per node, its (op, input) pairs in gene order: one view of the wiring for every kind."""
        nodes: list[list[tuple[str, int]]] = [[] for _ in range(self.cell_num_nodes(cell))]
        for i, gene in enumerate(self.genes(cell)):
            nodes[self.gene_node(cell, i)].append((gene[0], gene[1]))
        return tuple(tuple(n) for n in nodes)

    def _check_cell(self, cell: str) -> None:
        genes, first = self.genes(cell), NUM_INPUTS[self.kind]
        concat, output = getattr(self, f"{cell}_concat"), getattr(self, f"{cell}_output")
        if not genes:
            raise RobustDartsError(f"the {cell} cell of a {self.kind} genotype has no genes; give at least one.")
        if self.kind == "darts" and len(genes[0]) == 2 and len(genes) % 2:
            raise RobustDartsError(f"the {cell} cell has {len(genes)} gene(s), but a darts genotype needs two per node "
                                   f"(an even count).")
        for i, gene in enumerate(genes):
            node = self.gene_node(cell, i)
            if node < 0:
                raise RobustDartsError(f"{cell} gene {i} {short(gene)} names node {short(node)}; nodes are numbered "
                                       f"from 0.")
            if not 0 <= gene[1] < first + node:
                raise RobustDartsError(f"{cell} gene {i} {short(gene)} feeds node {short(node)} from input "
                                       f"{short(gene[1])}, but node {short(node)} accepts inputs "
                                       f"0..{short(first + node - 1)} only.")
        nodes = self.node_inputs(cell)
        if self.kind == "darts":
            empty = [n for n, pairs in enumerate(nodes) if not pairs]
            if empty:
                raise RobustDartsError(f"node {empty[0]} of the {cell} cell has no genes; every node of a darts "
                                       f"cell needs at least one.")
            if output is not None or not concat:
                raise RobustDartsError(f"a darts genotype needs a non-empty {cell}_concat and no {cell}_output.")
            bad = [c for c in concat if not 0 <= c < first + len(nodes)]
            if bad or len(set(concat)) != len(concat):
                raise RobustDartsError(f"{cell}_concat {short(list(concat))} must list distinct states in "
                                       f"0..{first + len(nodes) - 1}.")
        elif self.kind == "lhd":
            if concat or output is None or not output.sum or not output.concat:
                raise RobustDartsError(f"an lhd genotype needs a {cell}_output with non-empty 'sum' and 'concat' "
                                       f"node lists and no {cell}_concat.")
            for key in ("sum", "concat"):
                chosen = output[key]
                if len(set(chosen)) != len(chosen) or any(not (0 <= n < len(nodes) and nodes[n]) for n in chosen):
                    have = short([n for n in range(len(nodes)) if nodes[n]])
                    raise RobustDartsError(f"{cell}_output[{key!r}] {short(list(chosen))} must list distinct nodes "
                                           f"that have genes, here {have}.")
            for i, gene in enumerate(genes):
                if gene[1] >= first and not nodes[gene[1] - first]:
                    raise RobustDartsError(f"{cell} gene {i} {gene!r} consumes node {gene[1] - first}, which has "
                                           f"no genes; keep that node's genes or drop this gene.")
        else:  # nb201: a complete DAG, every edge exactly once
            if concat or output is not None:
                raise RobustDartsError("an nb201 genotype has no concat or output lists; leave them empty.")
            for node, pairs in enumerate(nodes):
                inputs = sorted(inp for _, inp in pairs)
                if inputs != list(range(first + node)):
                    raise RobustDartsError(f"nb201 node {node} has inputs {short(inputs)}, but every node keeps "
                                           f"exactly one gene per input {list(range(first + node))}.")

    # ---- dict / JSON ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out: dict[str, Any] = {"format": SCHEMA, "version": SCHEMA_VERSION, "kind": self.kind, "space": self.space}
        for cell in ("normal", "reduce"):
            out[cell] = [list(g) for g in self.genes(cell)]
            out[f"{cell}_concat"] = list(getattr(self, f"{cell}_concat"))
            output = getattr(self, f"{cell}_output")
            out[f"{cell}_output"] = None if output is None else output.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = "genotype") -> "Genotype":
        if not isinstance(data, Mapping):
            raise RobustDartsError(f"{source} must be a JSON object with the genotype fields, not "
                                   f"{type(data).__name__}.")
        extra = sorted(set(data) - set(_FIELDS) - {"format", "version"})
        if extra:
            raise RobustDartsError(f"{source} has unknown field(s) {', '.join(map(repr, extra))}; accepted fields: "
                                   f"format, version, {', '.join(_FIELDS)}.")
        if data.get("format", SCHEMA) != SCHEMA or data.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise RobustDartsError(f"{source} declares format {data.get('format')!r} version {data.get('version')!r}; "
                                   f"this robustdarts reads {SCHEMA!r} version {SCHEMA_VERSION}.")
        if "kind" not in data or "normal" not in data:
            raise RobustDartsError(f"{source} lacks the required field(s) 'kind' and/or 'normal'; a genotype needs "
                                   f"both (kind is one of: {', '.join(KINDS)}).")
        fields = {k: data[k] for k in _FIELDS if data.get(k) is not None}
        try:
            return cls(**fields)
        except RobustDartsError as e:
            raise RobustDartsError(f"{source}: {e}") from None

    def to_json(self) -> str:
        # One line per field keeps a cell's genes readable at a glance and diffs small.
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in self.to_dict().items()]
        return "{\n" + ",\n".join(lines) + "\n}\n"

    @classmethod
    def from_json(cls, text: str, source: str = "genotype JSON") -> "Genotype":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise RobustDartsError(f"{source} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
                                   f"write it as robustdarts saves it with Genotype.save.") from None
        except (RecursionError, ValueError):  # nesting beyond the parser's depth; integers beyond its digit limit
            raise RobustDartsError(f"{source} is nested too deeply or holds numbers too long to be a genotype; "
                                   f"write it as robustdarts saves it with Genotype.save.") from None
        return cls.from_dict(data, source)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the JSON atomically: a reader never sees a half-written file and an old file survives a crash."""
        path = Path(path)
        atomic_write_text(path, self.to_json())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Genotype":
        """Read a genotype file: JSON as written by ``save``, DARTS ``Genotype(...)`` text or an NB201 string."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise RobustDartsError(f"cannot read genotype file {str(path)!r} ({e}); give a readable JSON or "
                                   f"text genotype file.") from None
        return cls.parse(text, source=f"genotype file {str(path)!r}")

    @classmethod
    def parse(cls, text: str, source: str = "genotype text") -> "Genotype":
        """JSON if it starts with '{', an NB201 string if it starts with '|', else DARTS ``Genotype(...)`` text."""
        head = text.lstrip()[:1]
        if head == "{":
            return cls.from_json(text, source)
        if head == "|":
            return cls.from_nb201(text, source=source)
        return cls.from_darts_text(text, source)

    # ---- DARTS text -----------------------------------------------------------------------------------------
    def to_darts_text(self) -> str:
        """The reference repr, ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], ...)``.

        LHD genotypes use the LHD container's fields (``normal_output={'sum': [...], 'concat': [...]}``)."""
        if self.kind == "nb201":
            raise RobustDartsError("an nb201 genotype has no DARTS text form; use to_nb201() instead.")
        parts = []
        for cell in ("normal", "reduce"):
            parts.append(f"{cell}=[{', '.join(repr(g) for g in self.genes(cell))}]")
            if self.kind == "darts":
                parts.append(f"{cell}_concat={list(getattr(self, f'{cell}_concat'))}")
            else:
                out = getattr(self, f"{cell}_output")
                parts.append(f"{cell}_output={{'sum': {list(out.sum)}, 'concat': {list(out.concat)}}}")
        return f"Genotype({', '.join(parts)})"

    @classmethod
    def from_darts_text(cls, text: str, source: str = "DARTS genotype text", space: str | None = None) -> "Genotype":
        return parse_darts_text(text, source, space)

    # ---- NAS-Bench-201 strings ------------------------------------------------------------------------------
    def to_nb201(self) -> str:
        if self.kind != "nb201":
            raise RobustDartsError(f"only an nb201 genotype has an NB201 string, not a {self.kind} one.")
        nodes = [sorted(pairs, key=lambda p: p[1]) for pairs in self.node_inputs("normal")]
        return "+".join("|" + "|".join(f"{op}~{inp}" for op, inp in pairs) + "|" for pairs in nodes)

    @classmethod
    def from_nb201(cls, text: str, source: str = "NB201 string", space: str | None = "nb201") -> "Genotype":
        example = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
        body = text.strip()
        genes = []
        for node, part in enumerate(body.split("+")):
            if not (len(part) >= 2 and part.startswith("|") and part.endswith("|")):
                raise RobustDartsError(f"{source} {body!r} is malformed at node {node} ({part!r}); write it like "
                                       f"{example}.")
            for entry in part[1:-1].split("|"):
                match = re.fullmatch(r"([A-Za-z_]\w*)~(\d+)", entry.strip())
                if not match:
                    raise RobustDartsError(f"{source} entry {entry!r} of node {node} is not 'op~input'; write it "
                                           f"like {example}.")
                genes.append((match[1], int(match[2]), node))
        try:
            return cls(kind="nb201", normal=tuple(genes), space=space)
        except RobustDartsError as e:
            raise RobustDartsError(f"{source}: {e}") from None

    # ---- text -----------------------------------------------------------------------------------------------
    def describe(self) -> str:
        """One block per cell: each node as a sum of op(input) terms, then the cell's output."""
        lines = []
        for cell in self.cells:
            lines.append(f"{cell} cell ({self.kind}):")
            for node, pairs in enumerate(self.node_inputs(cell)):
                terms = " + ".join(f"{op}({input_name(self.kind, inp)})" for op, inp in pairs) or "(pruned)"
                lines.append(f"  n{node} = {terms}")
            if self.kind == "darts":
                states = ", ".join(input_name("darts", c) for c in getattr(self, f"{cell}_concat"))
                lines.append(f"  output = concat({states})")
            elif self.kind == "lhd":
                out = getattr(self, f"{cell}_output")
                lines.append(f"  sum output = {' + '.join(f'n{n}' for n in out.sum)}")
                lines.append(f"  concat output = concat({', '.join(f'n{n}' for n in out.concat)})")
            else:
                lines.append(f"  output = n{self.cell_num_nodes(cell) - 1}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_nb201() if self.kind == "nb201" else self.to_darts_text()


# ---- validation against a space ------------------------------------------------------------------------------
def validate(genotype: Genotype, space: Space | str | None = None) -> Genotype:
    """Check ``genotype`` against ``space`` (default: the space it names): kind, node count and, edge by edge,
    that each op is in that edge's own op list. Without any space, check that every op is a known op of the kind's
    op family. Returns the genotype; raises a one-sentence ``RobustDartsError`` otherwise."""
    if space is None and genotype.space is not None and genotype.space in SPACES:
        space = genotype.space
    # else the genotype names a user's space this process has not registered (a genotype file taken out of its
    # run, whose space.yaml holds the definition): its ops are still checked against the op family below
    if space is None:
        family = {"darts": "darts", "lhd": "lhd", "nb201": "nb201"}[genotype.kind]
        for cell in genotype.cells:
            for i, gene in enumerate(genotype.genes(cell)):
                if not known_op(gene[0], family):
                    if gene[0] in BROKEN_OPS:  # an installed op plugin that failed to import: its own sentence
                        raise RobustDartsError(BROKEN_OPS[gene[0]])
                    raise RobustDartsError(f"{cell} gene {i} {gene!r} uses op {gene[0]!r}, which is not a "
                                           f"{family} op; accepted: {', '.join(OPS[family])}.")
        return genotype
    space = get_space(space)
    if space.kind != genotype.kind:
        fitting = sorted(n for n, s in SPACES.items() if s.kind == genotype.kind)
        raise RobustDartsError(f"a {genotype.kind} genotype does not fit space {space.name!r} (kind {space.kind}); "
                               f"use one of: {', '.join(fitting)}.")
    if space.num_inputs != NUM_INPUTS[genotype.kind]:  # pragma: no cover - registry and kinds agree
        raise RobustDartsError(f"space {space.name!r} has {space.num_inputs} cell inputs, but a {genotype.kind} "
                               f"genotype assumes {NUM_INPUTS[genotype.kind]}.")
    for cell in genotype.cells:
        nodes = genotype.cell_num_nodes(cell)
        exact = genotype.kind != "lhd"  # LHD may prune trailing nodes
        if nodes > space.steps or (exact and nodes != space.steps):
            raise RobustDartsError(f"the {cell} cell has {nodes} nodes, but space {space.name!r} has "
                                   f"{'' if exact else 'at most '}{space.steps}.")
        for i, gene in enumerate(genotype.genes(cell)):
            node = genotype.gene_node(cell, i)
            row = space.node_edges(node)[gene[1]]
            allowed = space.ops[cell][row]
            if gene[0] not in allowed:
                raise RobustDartsError(
                    f"{cell} gene {i} {gene!r} puts op {gene[0]!r} on edge {row} "
                    f"(n{node} <- {input_name(genotype.kind, gene[1])}), where space {space.name!r} allows only: "
                    f"{', '.join(allowed)}.")
    return genotype


# ---- DARTS text parser (no eval) -----------------------------------------------------------------------------
# A leading ``NAME = `` (even the invalid ``SP-DARTS=`` of the SP-DARTS repo) before ``Something(`` is dropped;
# ``normal_concat=range(...)`` at the start of an unwrapped field list is not an assignment prefix.
_ASSIGN = re.compile(r"^\s*[A-Za-z_][\w\-.]*\s*=\s*(?!range\s*\()(?=[A-Za-z_][\w.]*\s*\()")
_POSITIONAL = ("normal", "normal_concat", "reduce", "reduce_concat")  # the reference namedtuple's field order
_TEXT_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat", "normal_output", "reduce_output")


def _literal(node: ast.AST, field: str, source: str) -> Any:
    """A literal value, or ``range(a[, b[, c]])`` with integer literals (the reference writes concat that way)."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and not node.keywords and 1 <= len(node.args) <= 3):
        bounds = [_literal(a, field, source) for a in node.args]
        if all(_is_int(b) for b in bounds) and max(abs(b) for b in bounds) < 10_000:
            return list(range(*bounds))
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        try:
            found = repr(ast.unparse(node)[:60])
        except (RecursionError, ValueError):
            found = "a deeply nested expression"
        raise RobustDartsError(f"{source}: field {field} is not a literal (lists, tuples, strings, integers or "
                               f"range(a, b)); found {found}.") from None


def parse_darts_text(text: str, source: str = "DARTS genotype text", space: str | None = None) -> Genotype:
    """Parse the DARTS ``Genotype(normal=[...], normal_concat=..., reduce=[...], reduce_concat=...)`` repr.

    Accepts either quote style, any whitespace or newlines, ``range(2, 6)`` or lists for concat, positional
    fields in the namedtuple's order, an optional ``NAME =`` prefix and an optional ``Genotype(`` wrapper. LHD
    ``normal_output={'sum': [...], 'concat': [...]}`` fields give an lhd genotype. Nothing is evaluated: the text
    becomes an ``ast`` tree and only literal sub-nodes are read."""
    example = "Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), reduce=[...], reduce_concat=...)"
    if not isinstance(text, str) or not text.strip():
        raise RobustDartsError(f"{source} is empty; write it like {example}.")
    body = _ASSIGN.sub("", text.strip(), count=1).strip()
    call = None
    for candidate in (body, f"Genotype({body})"):
        try:
            tree = ast.parse(candidate, mode="eval").body
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            continue
        if isinstance(tree, ast.Call) and isinstance(tree.func, (ast.Name, ast.Attribute)):
            call = tree
            break
    if call is None:
        raise RobustDartsError(f"{source} is not a Genotype(...) expression; write it like {example}.")
    if len(call.args) > len(_POSITIONAL) or any(isinstance(a, ast.Starred) for a in call.args):
        raise RobustDartsError(f"{source} has {len(call.args)} positional fields; at most 4 are accepted, in the "
                               f"order {', '.join(_POSITIONAL)}.")
    fields: dict[str, Any] = {}
    named = list(zip(_POSITIONAL, call.args)) + [(k.arg, k.value) for k in call.keywords]
    for name, node in named:
        if name not in _TEXT_FIELDS or name in fields:
            what = "repeats" if name in fields else "has unknown"
            raise RobustDartsError(f"{source} {what} field {name!r}; accepted fields: {', '.join(_TEXT_FIELDS)}.")
        fields[name] = _literal(node, name, source)
    normal = fields.get("normal")
    # (op, input, node) genes mean LHD unless concat fields say darts (a user space's explicit-node darts cells)
    lhd = "normal_output" in fields or "reduce_output" in fields or (
        isinstance(normal, (list, tuple)) and any(isinstance(g, (list, tuple)) and len(g) == 3 for g in normal)
        and "normal_concat" not in fields and "reduce_concat" not in fields)
    return Genotype.from_dict({"kind": "lhd" if lhd else "darts", "space": space, **fields}, source)
