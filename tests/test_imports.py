"""The package's layering, read from the source with ``ast`` (nothing is imported).

A module imports downward only: an import cycle means two modules are one piece split in two files, and it breaks
as soon as one of them needs the other at import time. The methods are parts the loop calls, not code that reaches
into the loop: a method sees what it is handed, and the loop asks a method nothing by probing its attributes.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = "robustdarts"
ROOT = Path(__file__).resolve().parents[1] / "src" / PACKAGE


def _module_files() -> dict[str, Path]:
    """Dotted module name -> file; a package is named by its ``__init__.py``."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _module_files()
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for name, path in MODULES.items()}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _base(name: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names before its ``import`` list (resolving leading dots)."""
    if not node.level:
        return node.module or ""
    package = name.split(".") if _is_package(name) else name.split(".")[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str) -> str | None:
    """The longest prefix of ``name`` that is a module of the package (``import a.b.c`` runs a.b.c)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in MODULES:
            return ".".join(parts[:i])
    return None


def _imports(name: str) -> list[tuple[str, str | None]]:
    """Every import in the module, at any depth (inside functions and ``TYPE_CHECKING`` blocks too: they are part
    of the layering even when they do not run at import time), as (module, imported name or None)."""
    out = []
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            out += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _base(name, node)
            out += [(base, alias.name) for alias in node.names]
    return out


def _is_facade(name: str) -> bool:
    """A package ``__init__`` that holds nothing but a docstring, imports and ``__all__``: it only re-exports."""
    if not _is_package(name):
        return False
    for node in TREES[name].body:
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        exports = (isinstance(node, ast.Assign) and len(node.targets) == 1
                   and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "__all__")
        if not (docstring or exports or isinstance(node, (ast.Import, ast.ImportFrom))):
            return False
    return True


def _targets(name: str, base: str, imported: str | None) -> set[str]:
    """The package modules that ``from base import imported`` (or ``import base``) really depends on. An import
    through a re-exporting facade is followed to the module that defines the name, so a facade is never a node
    and cannot close a cycle that the modules behind it do not have."""
    if imported is not None and f"{base}.{imported}" in MODULES:  # from package import submodule
        module = f"{base}.{imported}"
    else:
        module = _known(base)
    if module is None or module == name:
        return set()
    if not _is_facade(module):
        return {module}
    found = set()
    for inner_base, inner in _imports(module):
        if imported is None or inner == imported:
            found |= _targets(module, inner_base, inner)
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    return {name: set().union(*(_targets(name, b, i) for b, i in _imports(name)))
            for name in MODULES if not _is_facade(name)}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# ---- the checker itself, on hand-made graphs --------------------------------------------------------------------
def test_cycle_finder_on_hand_made_graphs():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}}) == [["a", "b", "c"], ["d", "e"]]


def test_graph_reads_the_package():
    graph = import_graph()
    assert "robustdarts.spaces" not in graph  # a facade: followed, never a node
    assert "robustdarts" in graph  # holds ``__version__``: a real module
    # Relative, absolute and through-a-facade imports all resolve to the defining module.
    assert {"robustdarts.atomic", "robustdarts.errors", "robustdarts.spaces.ops"} <= graph["robustdarts.genotype"]
    assert "robustdarts.spaces.registry" in graph["robustdarts.archparams"]  # ``from .spaces import get_space``
    assert "robustdarts.genotype" in graph["robustdarts.lhd_pl"]


# ---- the rules -----------------------------------------------------------------------------------------------
def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "modules that import each other in a circle (move the shared piece down): " + "; ".join(
        " <-> ".join(c) for c in found)


def _identifiers(tree: ast.AST):
    """Every identifier a module spells: names, attributes, import aliases, definitions, arguments, keywords, and
    the names inside string annotations."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.id, node
        elif isinstance(node, ast.Attribute):
            yield node.attr, node
        elif isinstance(node, ast.alias):
            yield from ((part, node) for n in (node.name, node.asname) if n for part in n.split("."))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name, node
        elif isinstance(node, ast.arg):
            yield node.arg, node
        elif isinstance(node, ast.keyword) and node.arg:
            yield node.arg, node
        annotations = []
        if isinstance(node, ast.arg):
            annotations.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for annotation in annotations:
            for sub in ast.walk(annotation) if annotation is not None else ():
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    try:
                        yield from _identifiers(ast.parse(sub.value, mode="eval"))
                    except SyntaxError:
                        pass


def _where(name: str, node: ast.AST) -> tuple[str, int]:
    return str(MODULES[name].relative_to(ROOT.parent)), getattr(node, "lineno", 0)


def _report(problems: list[tuple[tuple[str, int], str]]) -> str:
    return "; ".join(f"{path}:{line} {what}" for (path, line), what in sorted(problems))


def test_methods_never_see_the_search():
    problems = []
    for name in sorted(MODULES):
        if not name.startswith(f"{PACKAGE}.methods"):
            continue
        tree = TREES[name]
        problems += [(_where(name, node), "names Search") for ident, node in _identifiers(tree) if ident == "Search"]
        problems += [(_where(name, node), f"reads search.{node.attr}") for node in ast.walk(tree)
                     if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                     and node.value.id == "search"]
    assert not problems, "methods must be handed what they need, not the search: " + _report(problems)


def test_the_loop_does_not_probe_methods():
    name = f"{PACKAGE}.search.loop"
    problems = []
    for node in ast.walk(TREES[name]):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if func in ("hasattr", "getattr") and re.search("method|recipe", ast.unparse(node.args[0]), re.I):
            problems.append((_where(name, node), ast.unparse(node)))
    assert not problems, "the loop asks the method through its interface, not by probing: " + _report(problems)
