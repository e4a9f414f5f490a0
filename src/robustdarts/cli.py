"""The one entry point: ``robustdarts search | derive | train | show | spaces | methods | plot``.

A user error (unknown name, bad file, missing data) prints one sentence and exits with code 2, no traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import RobustDartsError, unknown

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Robust differentiable architecture search: search, derive, train, inspect.")
console = Console()
err_console = Console(stderr=True)


def _parse_sets(sets: list[str] | None) -> dict:
    """``--set key=value`` pairs (values parsed as YAML scalars; ``method.x=v`` goes to method_options)."""
    from .config import parse_value

    out: dict = {}
    for item in sets or []:
        if "=" not in item:
            raise RobustDartsError(f"--set needs KEY=VALUE, got {item!r}; for example --set weight_decay=0.0027.")
        key, value = item.split("=", 1)
        parsed = parse_value(value)
        if key.startswith("method."):
            out.setdefault("method_options", {})[key[len("method."):]] = parsed
        else:
            out[key.replace("-", "_")] = parsed
    return out


def resolve_genotype(spec: str, condition: str = "base"):
    """A published name, a run directory, a JSON / DARTS-text / NB201 file, an LHD .pl file, or inline text;
    checked against the space it names, if any."""
    from .genotype import validate

    genotype = _load_genotype(spec, condition)
    return validate(genotype) if genotype.space else genotype


def _load_genotype(spec: str, condition: str):
    from .genotype import Genotype
    from .lhd_pl import genotype_from_pl
    from .zoo import GENOTYPES, get_genotype

    if spec in GENOTYPES:
        return get_genotype(spec)
    path = Path(spec)
    if path.is_dir():
        path = path / "genotype.json"
        if not path.exists():
            raise RobustDartsError(f"{spec} holds no genotype.json; pass a finished search run or a genotype file.")
    if path.is_file():
        return genotype_from_pl(path, condition) if path.suffix == ".pl" else Genotype.load(path)
    if spec.lstrip()[:1] in ("{", "|") or "Genotype(" in spec or "normal=" in spec:
        return Genotype.parse(spec, source="genotype text")
    raise RobustDartsError(f"unknown genotype {spec!r}: it is neither a published name ({', '.join(sorted(GENOTYPES))}) "
                           f"nor an existing file or run directory.")


def search_config(config: Optional[Path], sets: Optional[List[str]], **flags):
    """The search config of a command line, later sources winning: SearchConfig's defaults, the method preset's
    settings for the space's kind, the preset's sizes, the YAML file's fields, the flags given, then ``--set``.
    Only what the file and the flags actually set counts (a flag left out does not overwrite the file's value)."""
    from .config import SearchConfig, read_fields
    from .methods import search_config as resolve

    overrides = read_fields(SearchConfig, config) if config else {}
    overrides.update({k: v for k, v in flags.items() if v is not None})
    sets_ = _parse_sets(sets)
    options = {**(overrides.get("method_options") or {}), **sets_.pop("method_options", {})}
    overrides.update(sets_)
    if options:
        overrides["method_options"] = options
    overrides.setdefault("dataset", "fashion-mnist")  # the CLI's default: the dataset this machine has
    return resolve(overrides)


def dry_run_summary(cfg) -> dict:
    """What a search would run, without running it: the resolved config (as config.yaml would record it), the
    method's recipe on this space, and the supernet's size (built on the meta device: no memory, no data)."""
    import dataclasses

    import torch

    from .data import dataset_info
    from .methods import get_preset, make_recipe, recipe_kind
    from .spaces import get_space
    from .supernet import Supernet, count_parameters

    space = get_space(cfg.space)
    recipe = make_recipe(cfg, space)
    info = dataset_info(cfg.dataset)
    with torch.device("meta"):
        net = Supernet(space, cfg.init_channels, cfg.layers, info.num_classes, info.channels,
                       edge_extra=recipe.edge_extra)
    searched = [t for t in net.cell_types if t != "resblock"]
    preset = get_preset(cfg.method)
    return {**dataclasses.asdict(cfg),
            "recipe": {"family": preset.family.__name__, "space_kind": recipe_kind(space), "paper": preset.paper,
                       "arch_grad": recipe.arch_grad, "arch_update": recipe.arch_update,
                       "cutout_rule": recipe.cutout_rule, "step_order": cfg.step_order},
            "supernet_params": count_parameters(net), "cells": len(searched),
            "cells_per_type": {t: searched.count(t) for t in dict.fromkeys(searched)}}


@app.command()
def search(
    space: Optional[str] = typer.Option(None, help="search space (robustdarts spaces) [default: darts]"),
    method: Optional[str] = typer.Option(None, help="method preset (robustdarts methods) [default: darts]"),
    dataset: Optional[str] = typer.Option(None, help="fashion-mnist (default), cifar10, cifar100, svhn, synthetic"),
    preset: Optional[str] = typer.Option(None, help="sizes only: tiny, small, paper"),
    out: Optional[Path] = typer.Option(None, help="run directory (default runs/search-<space>-<method>-<seed>)"),
    resume: Optional[Path] = typer.Option(None, help="continue the run in this directory"),
    seed: Optional[int] = typer.Option(None),
    epochs: Optional[int] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None),
    channels: Optional[int] = typer.Option(None, help="initial channels C"),
    layers: Optional[int] = typer.Option(None, help="cells (nb201: cells per stage)"),
    data_dir: Optional[str] = typer.Option(None),
    device: Optional[str] = typer.Option(None),
    config: Optional[Path] = typer.Option(None, help="YAML file of config fields"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="any config field: --set key=value (repeatable)"),
    draw: Optional[Path] = typer.Option(None, help="draw the found cells to FILE.png or FILE.svg"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    progress: bool = typer.Option(True, help="live progress bars"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved config, recipe and supernet size; "
                                                          "write nothing"),
):
    """Search an architecture; writes config, metrics, α archive, genotype and checkpoints to the run directory."""
    from .search.loop import Search

    show = progress and not as_json
    if dry_run:
        if resume is not None:
            raise RobustDartsError("--dry-run resolves a new search's config; drop --resume (the run's config.yaml "
                                   "already holds its resolved config).")
        cfg = search_config(config, set_, space=space, method=method, dataset=dataset, preset=preset, seed=seed,
                            epochs=epochs, batch_size=batch_size, init_channels=channels, layers=layers,
                            data_dir=data_dir, device=device)
        summary = dry_run_summary(cfg)
        if as_json:
            print(json.dumps(summary, default=str))
        else:
            from .config import to_yaml
            console.print(to_yaml(cfg), highlight=False, markup=False)
            console.print(f"recipe: {summary['recipe']}", highlight=False, markup=False)
            console.print(f"supernet: {summary['cells']} search cells {summary['cells_per_type']}, "
                          f"{summary['supernet_params']:,} weight parameters", highlight=False)
        return
    if resume is not None:
        run = Search.resume(resume, console=err_console if as_json else console, progress=show)
    else:
        cfg = search_config(config, set_, space=space, method=method, dataset=dataset, preset=preset, seed=seed,
                            epochs=epochs, batch_size=batch_size, init_channels=channels, layers=layers,
                            data_dir=data_dir, device=device)
        out = out or Path("runs") / f"search-{cfg.space}-{cfg.method}-{cfg.dataset}-s{cfg.seed}"
        run = Search(cfg, out, console=err_console if as_json else console, progress=show)
    genotype = run.run()
    records = run.run_dir.read_metrics()
    last = records[-1] if records else {}
    summary = {"run_dir": str(run.run_dir.path), "space": run.cfg.space, "method": run.cfg.method,
               "dataset": run.cfg.dataset, "epochs": run.epoch, "val_acc": last.get("val_acc"),
               "skip_normal": last.get("skip_normal"), "supernet_params": run.num_weight_parameters,
               "wall_seconds": last.get("wall_seconds"), "genotype": genotype.to_dict()}
    if draw is not None:
        from .viz import draw_genotype
        draw_genotype(genotype, draw)
        summary["drawing"] = str(draw)
    if as_json:
        print(json.dumps(summary))
        return
    table = Table(title="search finished", show_header=False)
    for k in ("run_dir", "space", "method", "dataset", "epochs", "val_acc", "skip_normal", "supernet_params",
              "wall_seconds"):
        v = summary[k]
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)
    console.print(genotype.describe())
    if draw is not None:
        console.print(f"cells drawn to {draw}")


@app.command()
def derive(
    run_dir: Path = typer.Argument(..., help="a search run directory"),
    epoch: Optional[int] = typer.Option(None, help="archive epoch (default: the last; -1 = initial α)"),
    policy: Optional[str] = typer.Option(None, help="discretization policy (default: the space's own rule)"),
    condition: Optional[str] = typer.Option(None, help="LHD condition: base, 3ops, 4out, 1m"),
    out: Optional[Path] = typer.Option(None, help="write the genotype JSON here"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Derive a genotype from a run's α archive at an epoch, with a policy."""
    from .derive import derive_from_run

    genotype, chosen = derive_from_run(run_dir, epoch=epoch, policy=policy, condition=condition)
    if out is not None:
        genotype.save(out)
    if as_json:
        print(json.dumps({"epoch": chosen, "genotype": genotype.to_dict()}))
    else:
        console.print(f"epoch {chosen}")
        console.print(genotype.describe())


@app.command()
def train(
    genotype: str = typer.Argument(..., help="published name, genotype file, .pl file or search run directory"),
    dataset: str = typer.Option("fashion-mnist"),
    preset: Optional[str] = typer.Option(None, help="sizes only: tiny, small, paper"),
    out: Optional[Path] = typer.Option(None),
    resume: Optional[Path] = typer.Option(None, help="continue the training run in this directory"),
    seed: Optional[int] = typer.Option(None),
    epochs: Optional[int] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None),
    channels: Optional[int] = typer.Option(None),
    layers: Optional[int] = typer.Option(None),
    condition: str = typer.Option("base", help="LHD discretization condition for .pl inputs"),
    data_dir: Optional[str] = typer.Option(None),
    device: Optional[str] = typer.Option(None),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="any config field: --set key=value"),
    as_json: bool = typer.Option(False, "--json"),
    progress: bool = typer.Option(True),
):
    """Train the discrete network of a genotype from scratch (DARTS evaluation recipe)."""
    from .config import TrainConfig, build
    from .train import Train

    show = progress and not as_json
    log = err_console if as_json else console
    if resume is not None:
        run = Train.resume(resume, console=log, progress=show)
    else:
        geno = resolve_genotype(genotype, condition)
        overrides = dict(genotype=genotype, dataset=dataset, preset=preset, seed=seed, epochs=epochs,
                         batch_size=batch_size, init_channels=channels, layers=layers, data_dir=data_dir, device=device)
        overrides.update(_parse_sets(set_))
        cfg = build(TrainConfig, overrides, "train")
        name = Path(genotype).name if Path(genotype).exists() else genotype
        out = out or Path("runs") / f"train-{name}-{cfg.dataset}-s{cfg.seed}"
        run = Train(cfg, geno, out, console=log, progress=show)
    result = run.run()
    result["run_dir"] = str(run.run_dir.path)
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title="training finished", show_header=False)
    for k, v in result.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)


@app.command()
def show(
    genotype: str = typer.Argument(..., help="published name, genotype file (JSON / DARTS text), .pl file, run dir"),
    dataset: str = typer.Option("cifar10", help="cifar10, cifar100, svhn, imagenet, fashion-mnist"),
    layers: Optional[int] = typer.Option(None, help="cells (default 20; 14 for imagenet)"),
    channels: Optional[int] = typer.Option(None, help="initial channels (default 36; 48 for imagenet)"),
    condition: str = typer.Option("base", help="LHD condition for .pl files: base, 3ops, 4out"),
    draw: Optional[Path] = typer.Option(None, help="draw both cells to FILE.png or FILE.svg"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Print a genotype's cells and the parameter counts of its evaluation network."""
    from .evalnet import EvalNetwork

    geno = resolve_genotype(genotype, condition)
    classes = {"cifar10": 10, "cifar100": 100, "svhn": 10, "imagenet": 1000, "fashion-mnist": 10}
    if dataset not in classes:
        raise unknown("dataset", dataset, classes, where="for show")
    imagenet = dataset == "imagenet"
    if imagenet and geno.kind != "darts":
        raise RobustDartsError(f"the ImageNet macro needs a darts-kind genotype, not {geno.kind}; pick another dataset.")
    layers = layers or (14 if imagenet else (5 if geno.kind == "nb201" else 20))
    channels = channels or (48 if imagenet else (16 if geno.kind == "nb201" else 36))
    net = EvalNetwork(geno, channels, layers, classes[dataset], 1 if dataset == "fashion-mnist" else 3,
                      macro="imagenet" if imagenet else None)
    info = {"params": net.num_parameters(), "params_with_aux": net.num_parameters(with_aux=True),
            "dataset": dataset, "layers": layers, "channels": channels, "macro": net.macro,
            "genotype": geno.to_dict()}
    if draw is not None:
        from .viz import draw_genotype
        draw_genotype(geno, draw)
        info["drawing"] = str(draw)
    if as_json:
        print(json.dumps(info))
        return
    console.print(geno.describe())
    console.print(f"{net.macro} macro, {layers} cells, C={channels}, {dataset}: "
                  f"{info['params']:,} parameters ({info['params'] / 1e6:.2f}M, DARTS convention, auxiliary head "
                  f"excluded); {info['params_with_aux']:,} with it")
    if draw is not None:
        console.print(f"cells drawn to {draw}")


@app.command()
def spaces(as_json: bool = typer.Option(False, "--json")):
    """List the search spaces with their ops per edge and supernet size."""
    from .spaces import SPACES
    from .supernet import Supernet, count_parameters

    rows = []
    for s in SPACES.values():
        layers = 5 if s.kind == "nb201" else 8
        params = count_parameters(Supernet(s, 16, layers, 10))
        rows.append({**s.to_dict(), "num_alpha": s.num_alpha, "supernet_params_c10": params,
                     "supernet_macro": f"C=16, {layers} {'cells per stage' if s.kind == 'nb201' else 'cells'}"})
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title="search spaces")
    for col in ("name", "kind", "edges", "ops per edge", "α", "supernet params (CIFAR-10)", "description"):
        table.add_column(col)
    for r in rows:
        ops = r["ops"]
        first = ops["normal"][0]
        uniform = all(list(e) == list(first) for c in ops.values() for e in c)
        op_text = ", ".join(first) if uniform else "per edge (see --json)"
        table.add_row(r["name"], r["kind"], str(r["num_edges"]), op_text, str(r["num_alpha"]),
                      f"{r['supernet_params_c10']:,}", r["description"])
    console.print(table)


@app.command()
def methods(
    name: Optional[str] = typer.Argument(None, help="one method, shown in full"),
    space: Optional[str] = typer.Option(None, help="show the effective recipe on this space"),
    filter_: Optional[str] = typer.Option(None, "--filter", help="shell pattern of names, e.g. 'sp-*'"),
    as_json: bool = typer.Option(False, "--json"),
):
    """List the method presets (paper, family, settings); with --space, the settings each uses on that space."""
    from .methods import KINDS, get_preset, list_methods, search_config as resolve

    names = [get_preset(name).name] if name else list_methods(filter_)
    if filter_ and not names:
        raise RobustDartsError(f"no method matches {filter_!r}; run robustdarts methods for the names.")
    rows = []
    for n in names:
        preset = get_preset(n)
        row = {"name": n, "family": preset.family.__name__, "paper": preset.paper, "summary": preset.summary,
               "defaults": {k: preset.settings(k)[0] for k in KINDS},
               "options": {k: preset.settings(k)[1] for k in KINDS}}
        if space is not None:
            cfg = resolve({"method": n, "space": space})
            from .config import SearchConfig
            base = SearchConfig()
            row["space"] = space
            row["effective"] = {k: v for k, v in vars(cfg).items()
                                if k not in ("space", "method", "method_options") and v != getattr(base, k)}
            row["effective_options"] = cfg.method_options
        rows.append(row)
    if as_json:
        print(json.dumps(rows, default=str))
        return
    table = Table(title=f"methods on {space}" if space else "methods")
    for col in ("name", "summary", "settings" if space else "family"):
        table.add_column(col)
    for r in rows:
        third = (", ".join(f"{k}={v}" for k, v in {**r["effective"], **r["effective_options"]}.items())
                 if space else r["family"])
        table.add_row(r["name"], r["summary"], third)
    console.print(table)


@app.command()
def plot(run_dir: Path = typer.Argument(...), out: Optional[Path] = typer.Option(None, help="PNG path")):
    """Plot a search run's curves: accuracy, eigenvalue, skip count, entropy, leakage."""
    from .viz import plot_run

    path = plot_run(run_dir, out)
    console.print(f"wrote {path}")


def main() -> None:
    try:
        app()
    except RobustDartsError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted; the last checkpoint is intact — continue with --resume RUN_DIR")
        sys.exit(130)


if __name__ == "__main__":
    main()
