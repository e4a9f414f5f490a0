"""What ``robustdarts spaces`` and ``robustdarts methods`` print: compact listings and one entry in full.

The listings are laid out for the terminal they print to (80 columns included): each row is one line of what it is
and one line of what it runs with, never wrapped into fragments; a value that does not fit is left out whole and
counted ("+3 more"), and ``NAME`` (or ``--json``) shows everything.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rich.cells import cell_len
from rich.markup import escape
from rich.table import Table

GAP = "  "


def shorten(text: str, width: int) -> str:
    """``text`` cut at a word boundary to fit ``width`` cells, with … where it was cut."""
    if cell_len(text) <= width:
        return text
    words, out = text.split(" "), ""
    for word in words:
        candidate = f"{out} {word}" if out else word
        if cell_len(candidate) + 1 > width:
            break
        out = candidate
    return (out.rstrip(",;:(") or text[: max(width - 1, 0)]) + "…"


def fit(items: list[str], width: int, sep: str = ", ") -> str:
    """As many whole ``items`` as fit ``width`` cells, then "+N more" for the rest."""
    out: list[str] = []
    for i, item in enumerate(items):
        rest = len(items) - i - 1
        tail = f"{sep}+{rest} more" if rest else ""
        if cell_len(sep.join(out + [item]) + tail) > width:
            more = f"+{len(items) - i} more"
            return sep.join(out + [more]) if out else more
        out.append(item)
    return sep.join(out)


def value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _width(console) -> int:
    return max(min(console.width, 160), 60)


def _line(console, text: str) -> None:
    console.print(text, highlight=False, markup=False, soft_wrap=False, overflow="crop", no_wrap=True)


# ---- spaces ----------------------------------------------------------------------------------------------------
def group_ops(ops) -> list[str]:
    """Op names with a shared stem written once: sep_conv_3x3, sep_conv_5x5 -> sep_conv_3x3/5x5."""
    groups: dict[str, list[str]] = {}
    for op in ops:
        stem, _, size = op.rpartition("_")
        key = stem if stem and size[:1].isdigit() else op
        groups.setdefault(key, []).append(size if key != op else "")
    return [key if sizes == [""] else f"{key}_{'/'.join(sizes)}" for key, sizes in groups.items()]


def op_summary(row: dict) -> tuple[bool, list[str]]:
    """(uniform, ops): whether every edge of every cell offers the same ops, and the first edge's ops."""
    first = row["ops"]["normal"][0]
    uniform = all(list(e) == list(first) for cell in row["ops"].values() for e in cell)
    return uniform, list(first)


def print_spaces(console, rows: list[dict]) -> None:
    """One line of numbers and description, one line of ops, per space."""
    width = _width(console)
    cols = [("name", max(len(r["name"]) for r in rows)), ("kind", 5), ("edges", 5), ("α", 4),
            ("supernet", 9)]
    head = GAP.join(f"{n:<{w}}" for n, w in cols)
    lead = cell_len(head) + len(GAP)
    _line(console, head + GAP + "description")
    _line(console, "  ops on each edge")
    for r in rows:
        cells = [r["name"], r["kind"], str(r["num_edges"]), str(r["num_alpha"]), f"{r['supernet_params_c10']:,}"]
        first = GAP.join(f"{c:<{w}}" for c, (_, w) in zip(cells, cols))
        _line(console, first + GAP + shorten(r["description"], width - lead))
        uniform, ops = op_summary(r)
        if uniform:
            text = fit(group_ops(ops), width - 2, " ")
        else:
            text = shorten(f"{len(ops)} ops chosen per edge (robustdarts spaces {r['name']})", width - 2)
        _line(console, "  " + text)
    for note in ("supernet: weight parameters at C=16, 8 cells (nb201: 5 per stage), 10 classes",
                 "robustdarts spaces NAME: one space in full"):
        _line(console, shorten(note, width))


def print_space(console, row: dict) -> None:
    """One space in full: what it is, its paper, and the ops of every edge."""
    console.print(f"[bold]{row['name']}[/] ({row['kind']}): {row['description']}", highlight=False)
    if row.get("paper"):
        console.print(f"paper: {row['paper']}", highlight=False, markup=False)
    console.print(f"{row['steps']} intermediate nodes, {row['num_inputs']} cell input(s), {row['num_edges']} edges "
                  f"per cell, {row['num_alpha']} architecture weights; supernet {row['supernet_params_c10']:,} "
                  f"weight parameters ({row['supernet_macro']}, CIFAR-10)", highlight=False, markup=False)
    uniform, ops = op_summary(row)
    if uniform:
        console.print(f"ops on every edge: {', '.join(ops)}", highlight=False, markup=False)
        return
    from .viz.cells import state_name

    edges = [(node, source) for node in range(row["steps"]) for source in range(row["num_inputs"] + node)]
    for cell, per_edge in row["ops"].items():
        table = Table(title=f"{cell} cell", box=None, show_header=True, title_justify="left")
        for col in ("edge", "from → to", "ops"):
            table.add_column(col)
        for k, ((node, source), ops) in enumerate(zip(edges, per_edge)):
            target = state_name(row["kind"], row["num_inputs"] + node)
            table.add_row(str(k), escape(f"{state_name(row['kind'], source)} → {target}"), ", ".join(ops))
        console.print(table)


# ---- methods ---------------------------------------------------------------------------------------------------
def key_settings(preset) -> list[str]:
    """What sets a preset apart, most telling first: its option values, its arch gradient, its other config
    settings on every space, then the kinds of space it has its own recipe for."""
    entry = preset.defaults.get("all", {})
    options = [f"{k}={value_text(v)}" for k, v in entry.get("method", {}).items()]
    fields = sorted((k for k in entry if k != "method"), key=lambda k: k != "arch_order")
    kinds = [k for k in preset.defaults if k != "all"]
    own = [f"own recipe on {'/'.join(kinds)}"] if kinds else []
    return options + [f"{k}={value_text(entry[k])}" for k in fields] + own


def print_methods(console, rows: list[dict], space: str | None = None) -> None:
    """One line of summary, one line of key settings (or, with ``space``, of the settings it runs with there)."""
    width = _width(console)
    name_w = max(len(r["name"]) for r in rows)
    lead = name_w + len(GAP)
    title = f"settings on {space}" if space else "key settings"
    _line(console, f"{'name':<{name_w}}{GAP}" + shorten(f"summary / {title}", width - lead))
    for r in rows:
        plugin = f"[plugin {r['plugin']}] " if r.get("plugin") else ""
        _line(console, f"{r['name']:<{name_w}}{GAP}" + shorten(plugin + r["summary"], width - lead))
        if space:
            items = [f"{k}={value_text(v)}" for k, v in {**r["effective"], **r["effective_options"]}.items()]
        else:
            items = r["key_settings"]
        _line(console, " " * lead + (fit(items, width - lead, " ") if items else "(DARTS' settings)"))
    _line(console, shorten("robustdarts methods NAME: one method in full (paper, recipe per space, options)", width))


def option_rows(family) -> list[dict]:
    """The family's options: user-facing name, declared type and default."""
    from .methods.recipe import option_name

    options = family.Options
    if not dataclasses.is_dataclass(options):
        return []
    rows = []
    for f in dataclasses.fields(options):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        rows.append({"name": option_name(f.name), "type": str(f.type), "default": default})
    return rows


def print_method(console, row: dict, preset) -> None:
    """One method in full: paper, family, the recipe on each kind of space, and its options."""
    from .methods import KINDS
    from .methods.presets import recipe_kind
    from .spaces import SPACES

    plain = dict(highlight=False, markup=False)
    console.print(f"{row['name']}: {row['summary']}", **plain)
    console.print(f"paper: {row['paper']}", **plain)
    if row.get("plugin"):
        console.print(f"plugin: {row['plugin_source']}", **plain)
    doc = (preset.family.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    console.print(f"family: {row['family']}" + (f": {' '.join(doc.split())}" if doc else ""), **plain)
    console.print("\nrecipe per kind of space (config fields over SearchConfig's DARTS defaults, then options):",
                  **plain)
    table = Table(box=None, show_header=True, pad_edge=False)
    for col in ("kind", "spaces", "settings"):
        table.add_column(col, overflow="fold")
    for kind in KINDS:
        spaces = [s.name for s in SPACES.values() if recipe_kind(s) == kind]
        fields, options = row["defaults"][kind], row["options"][kind]
        text = " ".join(f"{k}={value_text(v)}" for k, v in fields.items())
        if options:
            text += (" · " if text else "") + " ".join(f"method.{k}={value_text(v)}" for k, v in options.items())
        table.add_row(kind, ", ".join(spaces), escape(text or "DARTS' defaults"))
    console.print(table)
    if row.get("space"):
        effective = {**row["effective"], **{f"method.{k}": v for k, v in row["effective_options"].items()}}
        console.print(f"\neffective on {row['space']}: " +
                      (" ".join(f"{k}={value_text(v)}" for k, v in effective.items()) or "DARTS' defaults"), **plain)
    options = row["option_types"]
    if not options:
        console.print("\noptions: none", **plain)
        return
    console.print("\noptions (set with --set method.NAME=VALUE):", **plain)
    table = Table(box=None, show_header=True, pad_edge=False)
    for col in ("option", "type", "default", "this preset"):
        table.add_column(col, overflow="fold")
    for opt in options:
        per_kind = {k: row["options"][k].get(opt["name"], opt["default"]) for k in KINDS}
        values = set(map(value_text, per_kind.values()))
        mine = value_text(next(iter(per_kind.values()))) if len(values) == 1 else \
            ", ".join(f"{k}: {value_text(v)}" for k, v in per_kind.items())
        table.add_row(opt["name"], escape(opt["type"]), escape(value_text(opt["default"])), escape(mine))
    console.print(table)
    for cls in preset.family.Options.__mro__:  # the first docstring written by hand (dataclasses write a signature)
        doc = " ".join((cls.__doc__ or "").split())
        if doc and not doc.startswith(cls.__name__ + "(") and cls is not object:
            console.print(doc, **plain)
            break
