"""The report of a grid, from its store alone: tables (Markdown, HTML, CSV, JSON) and plots.

Per (space, dataset, condition), each method's mean ± sample standard deviation over its seeds (final test
accuracy of the architecture trained from scratch, held-out validation accuracy, the supernet's final validation
accuracy, skip count, λ_max, parameters) and best-of-k (the test accuracy of the seed that validates best); each
method against the grid's first one seed by seed (the paired differences: a seed fixes data and initialization for
all methods); the average rank of each method across those groups (LHD's ranking: rank 1 = best mean test
accuracy, ties share the mean rank); the protocol's selections with every candidate's score; one row per cell and condition; failures with
their reasons. Plots: λ_max and skip-count curves per method, accuracy against parameters, the rank heat map; the
HTML report embeds them and is one file.

Labels are the user's text, shown as text: plots parse no mathtext (viz.plain), HTML escapes them, and CSV prefixes
a text value starting with =, +, -, @, tab or carriage return with ' (a spreadsheet would run it as a formula;
numbers are written as numbers). Files are written after everything is rendered, each atomically (a temp file
renamed over the target, which replaces a planted symbolic link rather than writing through it).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from ..atomic import atomic_write, atomic_write_text
from ..errors import unknown
from ..paths import check_output_file
from ..viz.plain import plain_text
from .grid import grid_from_dict
from .select import compared, method_key
from .store import SHOWN_STATUSES, Store

FORMATS = ("md", "html", "csv", "json")
CSV_COLUMNS = ("cell_id", "unit_id", "method", "variant", "space", "dataset", "seed", "condition", "policy",
               "lhd_condition", "status", "error", "test_acc", "valid_acc", "supernet_val_acc", "skip_normal",
               "genotype_skip_normal", "eigenvalue", "eigenvalue_settled", "conv_share_normal", "params",
               "params_with_aux", "search_seconds", "train_seconds", "run_dir", "train_dir")


@dataclass
class Section:
    title: str
    text: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


# ---- numbers ---------------------------------------------------------------------------------------------------
def entries(store: Store) -> list[dict]:
    """One flat record per planned cell and condition, everything a table or plot reads."""
    out = []
    for r in store.rows():
        extras = r.get("extras") or {}
        failed = r["search_status"] == "failed" or r["status"] == "failed"
        out.append({
            "cell_id": r["cell_id"], "unit_id": r["unit_id"], "position": r["position"], "method": r["method"],
            "variant": r["variant"], "space": r["space"], "dataset": r["dataset"], "seed": r["seed"],
            "condition": r["condition"], "policy": r["policy"], "lhd_condition": r["lhd_condition"],
            "status": "failed" if failed else ("done" if r["status"] == "done" else r["status"]),
            "error": r["error"] or (r["search_error"] if r["search_status"] == "failed" else None),
            "test_acc": r["test_acc"], "valid_acc": r["valid_acc"], "supernet_val_acc": r["supernet_val_acc"],
            "skip_normal": r["skip_normal"], "genotype_skip_normal": r["genotype_skip_normal"],
            "eigenvalue": r["eigenvalue"], "eigenvalue_settled": extras.get("eigenvalue_settled"),
            "eigenvalue_batches": extras.get("eigenvalue_batches"),
            "conv_share_normal": extras.get("conv_share_normal"), "params": r["params"],
            "params_with_aux": r["params_with_aux"], "search_seconds": r["search_seconds"],
            "train_seconds": r["train_seconds"], "run_dir": r["run_dir"], "train_dir": r["train_dir"],
            "curves": r.get("curves") or {}, "genotype": r.get("genotype"), "environment": r.get("environment")})
    return out


def _stats(values: list[float]) -> tuple[float, float | None] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return mean(values), (stdev(values) if len(values) > 1 else None)


def _group_key(e: dict) -> tuple[str, str, str]:
    return e["space"], e["dataset"], e["condition"]


def summarize(rows: list[dict]) -> list[dict]:
    """Per (space, dataset, condition, method): n, mean ± std of each number, best-of-k; in grid order."""
    groups: dict[tuple, list[dict]] = {}
    for e in rows:
        groups.setdefault((*_group_key(e), method_key(e)), []).append(e)
    out = []
    for (space, dataset, condition, method), members in groups.items():
        done = [e for e in members if e["status"] == "done"]
        row = {"space": space, "dataset": dataset, "condition": condition, "method": method, "n": len(done),
               "planned": len(members)}
        for key in ("test_acc", "valid_acc", "supernet_val_acc", "skip_normal", "genotype_skip_normal",
                    "eigenvalue", "eigenvalue_settled", "params"):
            row[key] = _stats([e[key] for e in done])
        # Best of k: the seed that validates best (held out from scratch, else the supernet), its test accuracy.
        by = "valid_acc" if all(e["valid_acc"] is not None for e in done) else "supernet_val_acc"
        scored = [e for e in done if e[by] is not None and e["test_acc"] is not None]
        best = max(scored, key=lambda e: (e[by], -e["position"])) if scored and len(scored) == len(done) else None
        row["best_of_k"] = None if best is None else {"test_acc": best["test_acc"], "seed": best["seed"], "by": by,
                                                      "k": len(done)}
        out.append(row)
    return out


PAIRED_KEYS = ("test_acc", "valid_acc", "genotype_skip_normal", "eigenvalue_settled")


def paired(rows: list[dict]) -> list[dict]:
    """Per (space, dataset, condition), each method against the group's first method (the grid's first: the
    baseline, e.g. DARTS), seed by seed. One seed gives every method the same data split, initial weights and
    from-scratch data, so the per-seed difference removes what the seed does to both: mean ± sample std of the
    differences over the seeds both finished, and in how many of them the method's test accuracy is higher."""
    groups: dict[tuple, dict[str, dict[int, dict]]] = {}
    for e in rows:
        by_seed = groups.setdefault(_group_key(e), {}).setdefault(method_key(e), {})
        if e["status"] == "done":
            by_seed[e["seed"]] = e
    out = []
    for (space, dataset, condition), methods in groups.items():
        baseline, *others = methods
        for method in others:
            seeds = sorted(s for s in methods[method] if s in methods[baseline])
            row: dict[str, Any] = {"space": space, "dataset": dataset, "condition": condition, "method": method,
                                   "baseline": baseline, "seeds": seeds}
            diffs = {key: [a - b for s in seeds for a, b in [(methods[method][s][key], methods[baseline][s][key])]
                           if a is not None and b is not None] for key in PAIRED_KEYS}
            row.update({key: _stats(d) for key, d in diffs.items()})
            row["test_higher"] = [sum(1 for d in diffs["test_acc"] if d > 0), len(diffs["test_acc"])]
            out.append(row)
    return out


def ranks(summary: list[dict]) -> tuple[list[tuple], dict[str, dict[tuple, float]], dict[str, float]]:
    """(groups, method -> {group: rank}, method -> average rank) by mean test accuracy; methods without a test
    accuracy in a group are not ranked there."""
    groups = list(dict.fromkeys((r["space"], r["dataset"], r["condition"]) for r in summary))
    table: dict[str, dict[tuple, float]] = {}
    for g in groups:
        scored = [(r["method"], r["test_acc"][0]) for r in summary
                  if (r["space"], r["dataset"], r["condition"]) == g and r["test_acc"] is not None]
        for method, value in scored:
            better = sum(1 for _, v in scored if v > value)
            ties = sum(1 for _, v in scored if v == value)
            table.setdefault(method, {})[g] = better + (ties + 1) / 2
    average = {m: mean(r.values()) for m, r in table.items()}
    return groups, table, average


def environments(all_entries: list[dict]) -> list[dict]:
    """The numerics the finished cells ran under (torch, kernel ISA, threads, CPU), each with its cell count: on CPU
    a cell is bit-exact only under the same three (runs.environment), so a report says which produced its numbers."""
    counts: dict[tuple, int] = {}
    seen = set()
    for e in all_entries:
        env = e.get("environment")
        if e["status"] != "done" or not env or e["cell_id"] in seen:
            continue
        seen.add(e["cell_id"])
        key = tuple(env.get(k) for k in ("torch", "cpu_capability", "threads", "cpu"))
        counts[key] = counts.get(key, 0) + 1
    return [{"torch": k[0], "cpu_capability": k[1], "threads": k[2], "cpu": k[3], "cells": n}
            for k, n in counts.items()]


def build(store: Store) -> dict:
    """Everything the report shows, as plain data (the JSON format is this)."""
    grid = grid_from_dict(store.meta("grid"), f"the grid stored in {store.path}")
    all_entries = entries(store)
    shown, selections = compared(all_entries, grid.select)
    summary = summarize(shown)
    groups, rank_table, average = ranks(summary)
    counts = {s: sum(1 for c in store.cells() if c["status"] == s) for s in SHOWN_STATUSES}
    return {"grid": grid.name, "description": grid.description, "cells": counts, "summary": summary,
            "paired": paired(shown),
            "ranks": {"groups": [list(g) for g in groups],
                      "methods": {m: {"/".join(g): v for g, v in r.items()} for m, r in rank_table.items()},
                      "average": average},
            "selections": [{k: s[k] for k in ("method", "space", "dataset", "condition", "seed", "selected",
                                               "selected_by", "k", "candidates", "test_acc", "valid_acc",
                                               "supernet_val_acc")} for s in selections],
            "environments": environments(all_entries),
            "entries": [{k: v for k, v in e.items() if k not in ("curves", "genotype", "environment")}
                        for e in all_entries],
            "_shown": shown, "_all": all_entries, "_groups": groups, "_rank_table": rank_table}


# ---- formatting ------------------------------------------------------------------------------------------------
def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def pm(stats, scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` (sample std over seeds; the mean alone for one seed)."""
    if stats is None:
        return "–"
    m, s = stats
    return f"{scale * m:.{digits}f}" + ("" if s is None else f" ± {scale * s:.{digits}f}")


def _num(x: Any, digits: int = 2) -> str:
    return "–" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def _trajectory(values: list, epochs: int) -> str:
    """Values at epochs 0, ⅓, ⅔ and the last (0 → 10 → 20 → 29 for 30 epochs)."""
    if not values:
        return "–"
    n = len(values)
    points = list(dict.fromkeys([0, min(round(n / 3), n - 1), min(round(2 * n / 3), n - 1), n - 1]))
    return " → ".join(_num(values[i], 0) if values[i] is not None else "–" for i in points)


def sections(report: dict) -> list[Section]:
    out = []
    done = report["cells"]
    out.append(Section("Cells", ", ".join(f"{done[s]} {s}" for s in SHOWN_STATUSES if done[s] or s != "interrupted")
                       + "." + (" Interrupted cells resume where they stopped when the grid runs again."
                                if done["interrupted"] else "")))
    header = ["method", "n", "test acc (%)", "held-out acc (%)", "supernet val acc (%)", "skips (search)",
              "skips (genotype)", "λ_max", "λ_max (N batches)", "params (M)", "best of k: test (%)"]
    by_group: dict[tuple, list[dict]] = {}
    for r in report["summary"]:
        by_group.setdefault((r["space"], r["dataset"], r["condition"]), []).append(r)
    for (space, dataset, condition), rows in by_group.items():
        table = []
        for r in rows:
            best = r["best_of_k"]
            best_text = "–" if best is None else f"{pct(best['test_acc'])} (seed {best['seed']}, by " \
                                                 f"{'held-out' if best['by'] == 'valid_acc' else 'supernet'})"
            table.append([r["method"], f"{r['n']}" + ("" if r["n"] == r["planned"] else f" of {r['planned']}"),
                          pm(r["test_acc"]), pm(r["valid_acc"]), pm(r["supernet_val_acc"]),
                          pm(r["skip_normal"], 1, 1), pm(r["genotype_skip_normal"], 1, 1), pm(r["eigenvalue"], 1, 3),
                          pm(r["eigenvalue_settled"], 1, 3), pm(r["params"], 1e-6, 3), best_text])
        out.append(Section(f"{space} · {dataset} · {condition}", "mean ± sample std over seeds", header, table))
    pairs = [r for r in report["paired"] if r["seeds"]]
    if pairs:
        several = len({(r["space"], r["dataset"], r["condition"]) for r in pairs}) > 1
        rows = [[*([f"{r['space']} · {r['dataset']} · {r['condition']}"] if several else []),
                 f"{r['method']} − {r['baseline']}", ", ".join(map(str, r["seeds"])), pm(r["test_acc"]),
                 f"{r['test_higher'][0]} of {r['test_higher'][1]}", pm(r["valid_acc"]),
                 pm(r["genotype_skip_normal"], 1, 1), pm(r["eigenvalue_settled"], 1, 3)] for r in pairs]
        out.append(Section("Paired by seed", "each method minus the grid's first method on the same seed (the same "
                                             "data split, initial weights and from-scratch data): mean ± sample std "
                                             "of the per-seed differences; accuracies in points",
                           [*(["space · dataset · condition"] if several else []), "method − baseline", "seeds",
                            "Δ test", "test higher in", "Δ held out", "Δ skips (genotype)", "Δ λ_max (N batches)"],
                           rows))
    groups, table, average = report["_groups"], report["_rank_table"], report["ranks"]["average"]
    if average:
        rows = [[m, *[_num(table[m].get(g), 1) for g in groups], f"{average[m]:.2f}"]
                for m in sorted(average, key=lambda m: (average[m], m))]
        out.append(Section("Average rank", "rank of each method's mean test accuracy per space · dataset · "
                                           "condition (1 = best), and its average across them",
                           ["method", *["/".join(g) for g in groups], "average"], rows))
    if report["selections"]:
        rows = [[s["method"], s["space"], s["dataset"], s["condition"], "–" if s["seed"] is None else str(s["seed"]),
                 f"{s['selected']}", "; ".join(f"{k}: {pct(v)}" for k, v in s["candidates"].items()),
                 pct(s["test_acc"])] for s in report["selections"]]
        out.append(Section("Selections", "each selection's candidates with the score it selects by (held-out or "
                                         "supernet validation accuracy, %); test accuracy reported, not selected on",
                           ["method", "space", "dataset", "condition", "seed", "selected", "candidates", "test (%)"],
                           rows))
    rows = []
    for e in report["_all"]:
        curves = e["curves"]
        lam = [v for v in curves.get("eigenvalue", []) if v is not None]
        rows.append([method_key(e), str(e["seed"]), e["space"], e["dataset"], e["condition"], e["status"],
                     _trajectory(curves.get("skip_normal", []), len(curves.get("skip_normal", []))),
                     " / ".join(f"{v:.2f}" for v in lam) or "–", _num(e["eigenvalue_settled"]),
                     _num(e["conv_share_normal"]), pct(e["supernet_val_acc"]), pct(e["valid_acc"]),
                     pct(e["test_acc"]), _num(None if e["params"] is None else e["params"] / 1e6, 3)])
    out.append(Section("Every cell and condition", "skips in the normal cell at epochs 0 → ⅓ → ⅔ → last; λ_max "
                                                    "on one batch at the measured epochs and over N batches at the "
                                                    "end; the conv share of the normal cell's non-none mass",
                       ["method", "seed", "space", "dataset", "condition", "status", "skips", "λ_max (one batch)",
                        "λ_max (N)", "conv share", "supernet val (%)", "held out (%)", "test (%)", "params (M)"],
                       rows))
    if report["environments"]:
        out.append(Section("Environment", "the numerics the finished cells ran under: on CPU a cell is bit-exact "
                                          "only under the same torch, thread count and kernel ISA",
                           ["torch", "CPU kernels", "threads", "CPU", "cells"],
                           [[str(v.get("torch") or "not recorded"), str(v.get("cpu_capability") or "not recorded"),
                             _num(v.get("threads")), str(v.get("cpu") or "not recorded"), str(v["cells"])]
                            for v in report["environments"]]))
    failures = [[e["method"], str(e["seed"]), e["space"], e["dataset"], e["condition"], e["error"] or "–"]
                for e in report["_all"] if e["status"] == "failed"]
    if failures:
        out.append(Section("Failures", "", ["method", "seed", "space", "dataset", "condition", "reason"], failures))
    return out


# ---- plots -----------------------------------------------------------------------------------------------------
PLOTS = ("curves", "accuracy_params", "accuracy_skips", "ranks")


@plain_text
def plots(report: dict) -> dict[str, bytes]:
    """PNG bytes by name: curves (λ_max and skip count per epoch per method), accuracy vs parameters, accuracy vs
    the derived normal cell's skip count, ranks."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out: dict[str, bytes] = {}
    shown = report["_shown"]
    methods = list(dict.fromkeys(method_key(e) for e in shown))
    color = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    pairs = list(dict.fromkeys((e["space"], e["dataset"]) for e in shown))[:6]
    cells: dict[tuple, dict[str, dict]] = {}
    for e in shown:  # curves belong to searches: one per cell, whatever its conditions
        if e["curves"]:
            cells.setdefault((e["space"], e["dataset"]), {}).setdefault(method_key(e), {})[e["cell_id"]] = e["curves"]
    if cells:
        fig, axes = plt.subplots(2, len(pairs), figsize=(5 * len(pairs), 6.5), squeeze=False)
        for j, pair in enumerate(pairs):
            for row, (key, title) in enumerate((("eigenvalue", "λ_max of ∇²α L_val (one batch)"),
                                                ("skip_normal", "skip connections in the normal cell"))):
                ax = axes[row][j]
                for m, runs in cells.get(pair, {}).items():
                    series = []
                    for curves in runs.values():
                        points = [(e, v) for e, v in zip(curves.get("epoch", []), curves.get(key, [])) if v is not None]
                        if points:
                            ax.plot(*zip(*points), color=color[m], alpha=0.3, lw=0.8)
                            series.append(dict(points))
                    common = sorted(set.intersection(*(set(s) for s in series))) if series else []
                    if common:
                        ax.plot(common, [mean(s[e] for s in series) for e in common], color=color[m], lw=2,
                                marker="o" if key == "eigenvalue" else None, ms=3, label=f"{m} ({len(series)})")
                ax.set(title=f"{title}\n{pair[0]} · {pair[1]}", xlabel="epoch")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.grid(alpha=0.3)
                if not ax.lines:
                    ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            for ax in axes[:, j]:
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(fontsize=7)
                    break
        fig.tight_layout()
        out["curves"] = _png(fig, plt)
    trained = [e for e in shown if e["test_acc"] is not None and e["params"] is not None]
    if trained:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for m in methods:
            mine = [e for e in trained if method_key(e) == m]
            if mine:
                ax.scatter([e["params"] / 1e6 for e in mine], [100 * e["test_acc"] for e in mine], color=color[m],
                           label=m, s=18, alpha=0.8)
        ax.set(xlabel="parameters (M)", ylabel="test accuracy (%)", title="trained from scratch: accuracy vs size")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        out["accuracy_params"] = _png(fig, plt)
    by_skips = [e for e in shown if e["test_acc"] is not None and e["genotype_skip_normal"] is not None]
    if by_skips:  # RobustDARTS' question: do the skip-heavy (collapsed) genotypes train worse from scratch?
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        present = [m for m in methods if any(method_key(e) == m for e in by_skips)]
        for i, m in enumerate(present):  # methods side by side within a skip count: equal counts stay visible
            offset = 0.5 * (i / (len(present) - 1) - 0.5) if len(present) > 1 else 0.0
            mine = [e for e in by_skips if method_key(e) == m]
            ax.scatter([e["genotype_skip_normal"] + offset for e in mine], [100 * e["test_acc"] for e in mine],
                       color=color[m], label=m, s=18, alpha=0.8)
        counts = [e["genotype_skip_normal"] for e in by_skips]
        ax.set_xticks(range(min(counts), max(counts) + 1))
        ax.set(xlim=(min(counts) - 0.5, max(counts) + 0.5), xlabel="skip connections in the derived normal cell",
               ylabel="test accuracy (%)", title="trained from scratch: accuracy vs skip count")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        out["accuracy_skips"] = _png(fig, plt)
    groups, table, average = report["_groups"], report["_rank_table"], report["ranks"]["average"]
    if average:
        order = sorted(average, key=lambda m: (average[m], m))
        values = [[table[m].get(g, float("nan")) for g in groups] + [average[m]] for m in order]
        fig, ax = plt.subplots(figsize=(1.2 + 0.9 * (len(groups) + 1), 1.0 + 0.4 * len(order)))
        image = ax.imshow(values, cmap="viridis_r", aspect="auto")
        ax.set_xticks(range(len(groups) + 1), ["\n".join(g) for g in groups] + ["average"], fontsize=7)
        ax.set_yticks(range(len(order)), order, fontsize=8)
        low, high = image.get_clim()
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                if v == v:  # dark text on the light (good) end of the colour map, light on the dark end
                    light = high > low and (v - low) / (high - low) < 0.5
                    ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7, color="k" if light else "w")
        fig.colorbar(image, ax=ax, label="rank (1 = best)")
        ax.set_title("rank by mean test accuracy", fontsize=9)
        fig.tight_layout()
        out["ranks"] = _png(fig, plt)
    return out


def _png(fig, plt) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


# ---- output formats --------------------------------------------------------------------------------------------
# A spreadsheet runs a cell starting with one of these as a formula (OWASP's CSV injection list).
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: Any) -> Any:
    """A CSV cell: text that a spreadsheet would read as a formula prefixed with ', anything else as it is."""
    return f"'{value}" if isinstance(value, str) and value.startswith(CSV_FORMULA_STARTS) else value


def plot_paths(out: Path) -> dict[str, Path]:
    """Where a Markdown report at ``out`` puts its plots: beside it, ``<stem>-<plot>.png``."""
    return {name: out.with_name(f"{out.stem}-{name}.png") for name in PLOTS}


def render(store: Store, fmt: str = "md", out: Path | None = None) -> tuple[str, dict[Path, bytes]]:
    """The report's text in ``fmt`` and the files beside it (Markdown's plots, ``<stem>-<plot>.png`` beside
    ``out``, linked; HTML embeds them), nothing written yet: ``write`` checks the paths and writes them."""
    if fmt not in FORMATS:
        raise unknown("report format", fmt, FORMATS)
    report = build(store)
    if fmt == "json":
        return json.dumps({k: v for k, v in report.items() if not k.startswith("_")}, indent=1, default=str), {}
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for e in report["_all"]:
            writer.writerow({k: csv_text(e.get(k)) for k in CSV_COLUMNS})
        return buffer.getvalue(), {}
    parts = sections(report)
    title = f"Benchmark report: {report['grid']}"
    if fmt == "md":
        images, files = {}, {}
        if out is not None:
            paths = plot_paths(out)
            for name, data in plots(report).items():
                files[paths[name]] = data
                images[name] = paths[name].name
        return _markdown(title, report["description"], parts, images), files
    return _html(title, report["description"], parts, plots(report)), {}


def _markdown(title: str, description: str, parts: list[Section], images: dict[str, str]) -> str:
    lines = [f"# {title}", ""]
    if description:
        lines += [description.strip(), ""]
    for s in parts:
        lines += [f"## {s.title}", ""]
        if s.text:
            lines += [s.text, ""]
        if s.header:
            lines.append("| " + " | ".join(s.header) + " |")
            lines.append("|" + "---|" * len(s.header))
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in s.rows]
            lines.append("")
    for name, path in images.items():
        lines += [f"![{name}]({path})", ""]
    return "\n".join(lines)


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
        "margin:0.5em 0 1.5em;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}"
        "th{background:#f2f2f2}img{max-width:100%;display:block;margin:1em 0}p.note{color:#555}")


def _html(title: str, description: str, parts: list[Section], images: dict[str, bytes]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    if description:
        body.append(f"<p>{html.escape(description.strip())}</p>")
    for s in parts:
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            body.append(f"<p class='note'>{html.escape(s.text)}</p>")
        if s.header:
            body.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in s.header) + "</tr>")
            body += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in s.rows]
            body.append("</table>")
    for name, data in images.items():
        body.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2><img alt='{name}' "
                    f"src='data:image/png;base64,{base64.b64encode(data).decode()}'>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write(store: Store, fmt: str, out: Path | None) -> str:
    """Render and, with ``out``, write the report; returns the text. The paths are checked first (``out`` and
    Markdown's plots beside it: not a directory, under no file, writable), everything is rendered before the
    first file is written, and each file is written atomically, its folder made when missing."""
    if out is not None:
        out = Path(out)
        check_output_file(out, "--out")
        for path in plot_paths(out).values() if fmt == "md" else ():
            check_output_file(path, "the report's plot file")
    text, files = render(store, fmt, out)
    if out is not None:
        for path, data in files.items():
            atomic_write(path, lambda f: f.write(data))
        atomic_write_text(out, text)
    return text
