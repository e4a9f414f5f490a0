"""The one entry point: ``robustdarts search | derive | train | show | spaces | methods | plot``.

A user error (unknown name, bad file, missing data) prints one sentence and exits with code 2, no traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from typer.core import TyperGroup

from .choices import expand_help, one_of
from .errors import RobustDartsError, unknown


class _ChoiceGroup(TyperGroup):
    """Fills the choice lists of a command's help (``one_of`` tokens) from the registries once the command is
    resolved, just before it parses its options or prints its help: ``robustdarts --help`` imports no registry."""

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            expand_help(command)
            if "--help" in rest and "robustdarts.plugins" in sys.modules:  # the help listed the plugins' methods
                from .plugins import warn_broken_methods
                warn_broken_methods()
        return name, command, rest

    def invoke(self, ctx):
        """Run the command as one start (``starts.one_start``): a ``folder:`` data set is walked once for
        all its look-ups (config, dry run, memory check, splits, record; a grid's plan), and anew by the next
        command in the same process. Here, not in ``run_cli``: click ends ``robustdarts --help`` before any
        invoke, so the group's help still imports no torch."""
        from .starts import one_start

        with one_start():
            return super().invoke(ctx)


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, cls=_ChoiceGroup,
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
        if not value.strip():  # None would mean "unset": ignored, or cancelling an earlier --set of the key
            raise RobustDartsError(f"--set {key}= has no value; give one (--set {key}=VALUE), or none for a field "
                                   f"that may be empty.")
        parsed = parse_value(value)
        parsed = "none" if parsed is None else parsed  # null / ~: an explicit none, never "unset"
        if key.startswith("method."):
            out.setdefault("method_options", {})[key[len("method."):]] = parsed
        else:
            out[key.replace("-", "_")] = parsed
    return out


def _click(module: str):
    """A module of the click that typer runs on: its vendored copy (typer._click) or the click package."""
    import importlib

    return importlib.import_module(f"{'typer._click' if hasattr(typer, '_click') else 'click'}.{module}")


def refuse_with_resume(run: Path, allowed: tuple[str, ...]) -> None:
    """``--resume`` continues a run with its own config.yaml: an option given with it that would change the run is
    refused in one sentence instead of being silently ignored. Only the parameters named in ``allowed`` (output
    and display options) may be given; a parameter counts as given when it came from the command line."""
    ctx = _click("globals").get_current_context()
    given = [p for p in ctx.command.params if p.name not in allowed
             and getattr(ctx.get_parameter_source(p.name), "name", None) in ("COMMANDLINE", "ENVIRONMENT")]
    if given:
        def shown(p) -> str:
            return p.opts[0] if getattr(p, "param_type_name", "") == "option" else p.name.upper()

        names = [shown(p) for p in given]
        may = [shown(p) for p in ctx.command.params if p.name in allowed and p.name != "resume"]
        raise RobustDartsError(f"--resume continues {run} with its own config.yaml, so {', '.join(names)} cannot "
                               f"change it; drop {'it' if len(names) == 1 else 'them'} (with --resume only "
                               f"{', '.join(may)} may be given).")


def resolve_genotype(spec: str, condition: str = "base"):
    """A published name, a run directory, a JSON / DARTS-text / NB201 file, an LHD .pl file, or inline text
    (api.py, which ``train`` shares)."""
    from .api import resolve_genotype as resolve

    return resolve(spec, condition)


def search_config(config: Optional[Path], sets: Optional[List[str]], **flags):
    """The search config of a command line, later sources winning: SearchConfig's defaults, the method preset's
    settings for the space's kind, the preset's sizes, the YAML file's fields, the flags given, then ``--set``.
    Only what the file and the flags actually set counts (a flag left out does not overwrite the file's value)."""
    from .api import resolve_search_config as resolve
    from .config import SearchConfig, read_fields

    overrides = read_fields(SearchConfig, config) if config else {}
    overrides.update({k: v for k, v in flags.items() if v is not None})
    sets_ = _parse_sets(sets)
    options = {**(overrides.get("method_options") or {}), **sets_.pop("method_options", {})}
    overrides.update(sets_)
    if options:
        overrides["method_options"] = options
    overrides.setdefault("dataset", "fashion-mnist")  # the CLI's default: the dataset this machine has
    return resolve(**overrides)


def dry_run_summary(cfg) -> dict:
    """What a search would run, without running it: the resolved config (as config.yaml would record it), the
    method's recipe on this space, and the supernet's size (built on the meta device: no memory, no data)."""
    import dataclasses

    import torch

    from .data import dataset_info
    from .methods import get_preset, make_recipe, recipe_kind
    from .spaces import get_space
    from .supernet import Supernet, count_parameters

    from .memory import choose_recompute

    space = get_space(cfg.space)
    recipe = make_recipe(cfg, space)
    info = dataset_info(cfg.dataset)
    # A config that cannot fit is refused here too (and 10^5 cells would take an hour on meta); recompute=auto
    # shows the level this machine would choose, as config.yaml would record it.
    cfg = dataclasses.replace(cfg, recompute=choose_recompute(cfg)[0])
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
    space: Optional[str] = typer.Option(None, help=f"search space (default darts; see robustdarts spaces; or "
                                                   f"FILE.yaml, a DARTS-kind space as data), {one_of('space')}"),
    method: Optional[str] = typer.Option(None, help=f"method preset (default darts; see robustdarts methods; or "
                                                    f"MODULE:ATTRIBUTE, a plugin's Preset), {one_of('method')}"),
    dataset: Optional[str] = typer.Option(None, help=f"dataset (default fashion-mnist): folder:PATH (your images), "
                                                     f"npz:FILE (your arrays), or {one_of('dataset')}"),
    preset: Optional[str] = typer.Option(None, help=f"sizes only, {one_of('preset')}"),
    log: Optional[str] = typer.Option(None, help=f"also log each epoch for a dashboard (optional extra), "
                                                 f"{one_of('log')}"),
    out: Optional[Path] = typer.Option(None, help="run directory (default runs/search-<space>-<method>-<seed>)"),
    resume: Optional[Path] = typer.Option(None, help="continue the run in this directory (with --dataset "
                                                     "folder:NEW_PATH or npz:NEW_FILE if its own data moved)"),
    seed: Optional[int] = typer.Option(None),
    epochs: Optional[int] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None),
    channels: Optional[int] = typer.Option(None, help="initial channels C"),
    layers: Optional[int] = typer.Option(None, help="cells (nb201: cells per stage)"),
    data_dir: Optional[str] = typer.Option(None),
    device: Optional[str] = typer.Option(None),
    nproc: Optional[int] = typer.Option(None, help="processes for one search (data parallel, gloo on CPU, nccl on "
                                        "CUDA): each takes batch_size/N images of every batch, gradients of weights "
                                        "and α are averaged, every process holds the same α; rank 0 writes the run "
                                        "and --resume restarts as many. Or: torchrun --nproc-per-node N -m "
                                        "robustdarts search ..."),
    config: Optional[Path] = typer.Option(None, help="YAML file of config fields"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="any config field: --set key=value (repeatable)"),
    draw: Optional[Path] = typer.Option(None, help="draw the found cells to FILE.png or FILE.svg"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    progress: bool = typer.Option(True, help="live progress bars"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved config, recipe and supernet size; "
                                                          "write nothing"),
):
    """Search an architecture; writes config, metrics, α archive, genotype and checkpoints to the run directory."""
    from .api import open_search_run, run_search

    show = progress and not as_json
    if log is not None:
        from .runlog import check_logger
        check_logger(log)  # before anything is written: an unknown name or a missing package is a user error
    if dry_run:
        if resume is not None:
            raise RobustDartsError("--dry-run resolves a new search's config; drop --resume (the run's config.yaml "
                                   "already holds its resolved config).")
        cfg = search_config(config, set_, space=space, method=method, dataset=dataset, preset=preset, seed=seed,
                            epochs=epochs, batch_size=batch_size, init_channels=channels, layers=layers,
                            data_dir=data_dir, device=device, nproc=nproc)
        if out is not None:  # a dry run says whether the run would start: its --out is checked as the run's is
            from .paths import check_output_dir
            from .runs import RunDir
            RunDir(check_output_dir(out)).check_new()
        if draw is not None:
            from .paths import IMAGE_SUFFIXES, check_output_file
            check_output_file(draw, "--draw", IMAGE_SUFFIXES)
        summary = dry_run_summary(cfg)
        if as_json:
            print(json.dumps(summary, default=str))
        else:
            import dataclasses

            from .config import to_yaml
            console.print(to_yaml(dataclasses.replace(cfg, recompute=summary["recompute"])), highlight=False,
                          markup=False)  # recompute as this machine chooses it (dry_run_summary)
            console.print(f"recipe: {summary['recipe']}", highlight=False, markup=False)
            console.print(f"supernet: {summary['cells']} search cells {summary['cells_per_type']}, "
                          f"{summary['supernet_params']:,} weight parameters", highlight=False)
        return
    if draw is not None:
        from .paths import IMAGE_SUFFIXES, check_output_file
        check_output_file(draw, "--draw", IMAGE_SUFFIXES)  # before the search, not after it
    if resume is not None:
        # --dataset only for the run's own data at a new place (same content digest; api._refuse_with_resume)
        refuse_with_resume(resume, ("resume", "dataset", "draw", "as_json", "progress", "log"))
        run = open_search_run(None, resume, resume=True, console=err_console if as_json else console,
                              progress=show, log=log, dataset=dataset)
    else:
        cfg = search_config(config, set_, space=space, method=method, dataset=dataset, preset=preset, seed=seed,
                            epochs=epochs, batch_size=batch_size, init_channels=channels, layers=layers,
                            data_dir=data_dir, device=device, nproc=nproc)
        # One process, torchrun's rank, or --nproc N spawned processes (search/launch.py), as api.search runs it.
        run = open_search_run(cfg, out, console=err_console if as_json else console, progress=show, log=log)
    if getattr(run, "logs_itself", False):  # --nproc: the ranks lock the run directory, not this process
        _SPAWNED_RUNS[:] = [str(run.run_dir.path)]
    result = run_search(run, log=log)
    if result is None:
        return  # a torchrun rank other than 0: rank 0 reports
    genotype = result.genotype
    records = result.metrics
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
    policy: Optional[str] = typer.Option(None, help=f"discretization policy (default: the space's own rule), "
                                                    f"{one_of('policy')}"),
    condition: Optional[str] = typer.Option(None, help=f"LHD evaluation condition, {one_of('condition')}"),
    out: Optional[Path] = typer.Option(None, help="write the genotype JSON here"),
    tune_epochs: Optional[int] = typer.Option(None, help="darts-pt: fine-tuning epochs between decisions "
                                                         "[default: 5, the paper's]"),
    val_images: Optional[int] = typer.Option(None, help="darts-pt: validation images per measurement "
                                                        "[default: the whole validation half]"),
    # not a dataset choice (no registry name is accepted here): only where the run's own data went
    moved_data: Optional[str] = typer.Option(None, "--dataset", help="darts-pt: the new place (folder:PATH, "
                                             "npz:FILE) of the run's own data, if it moved (checked by its content "
                                             "digest)"),
    as_json: bool = typer.Option(False, "--json"),
    progress: bool = typer.Option(True, help="darts-pt: live progress bar of the decisions and fine-tuning epochs "
                                             "(on a terminal; never with --json)"),
):
    """Derive a genotype from a run's α archive at an epoch, with a policy (darts-pt: by perturbation on the
    trained supernet; writes darts_pt.json with every decision)."""
    from .api import derive_with_epoch

    options = {k: v for k, v in dict(tune_epochs=tune_epochs, val_images=val_images).items() if v is not None}
    if out is not None:
        from .paths import check_output_file
        check_output_file(out, "--out")  # before deriving (darts-pt fine-tunes for minutes), not after
    genotype, chosen = derive_with_epoch(run_dir, epoch=epoch, policy=policy, condition=condition,
                                         progress=progress and not as_json, console=console, dataset=moved_data,
                                         **options)
    if out is not None:
        genotype.save(out)
    if as_json:
        print(json.dumps({"epoch": chosen, "genotype": genotype.to_dict()}))
    else:
        console.print(f"epoch {chosen}")
        console.print(genotype.describe())


@app.command()
def train(
    genotype: Optional[str] = typer.Argument(None, help="published name, genotype file, .pl file or search run "
                                                        "directory (not needed with --resume)"),
    dataset: Optional[str] = typer.Option(None, help=f"dataset (default: a search run's own, else fashion-mnist): "
                                                     f"folder:PATH (your images), npz:FILE (your arrays), or "
                                                     f"{one_of('dataset')}"),
    preset: Optional[str] = typer.Option(None, help=f"sizes only, {one_of('preset')}"),
    out: Optional[Path] = typer.Option(None),
    resume: Optional[Path] = typer.Option(None, help="continue the training run in this directory (with --dataset "
                                                     "folder:NEW_PATH or npz:NEW_FILE if its own data moved)"),
    seed: Optional[int] = typer.Option(None),
    epochs: Optional[int] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None),
    channels: Optional[int] = typer.Option(None),
    layers: Optional[int] = typer.Option(None),
    condition: str = typer.Option("base", help=f"LHD evaluation condition, {one_of('condition')}"),
    data_dir: Optional[str] = typer.Option(None),
    device: Optional[str] = typer.Option(None),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="any config field: --set key=value"),
    as_json: bool = typer.Option(False, "--json"),
    progress: bool = typer.Option(True),
):
    """Train the discrete network of a genotype from scratch (DARTS evaluation recipe)."""
    from .api import open_train_run, run_train

    show = progress and not as_json
    log = err_console if as_json else console
    if resume is not None:
        refuse_with_resume(resume, ("resume", "genotype", "dataset", "as_json", "progress"))
        # The run's config.yaml names its genotype: the positional may be left out (as search --resume DIR does).
        # --dataset: only the run's own data at a new place (same content digest; api._refuse_with_resume).
        run = open_train_run(resume if genotype is None else genotype, dataset, resume=resume, console=log,
                             progress=show)
    else:
        if genotype is None:
            raise RobustDartsError("train needs a GENOTYPE (a published name, genotype file, .pl file or search run "
                                   "directory), or --resume DIR to continue a training run.")
        fields = dict(seed=seed, epochs=epochs, batch_size=batch_size, init_channels=channels, layers=layers,
                      data_dir=data_dir, device=device)
        fields.update(_parse_sets(set_))
        dataset, preset = fields.pop("dataset", dataset), fields.pop("preset", preset)  # --set may name them too
        run = open_train_run(genotype, dataset, preset=preset, out=out, condition=condition, console=log,
                             progress=show, **fields)
    result = run_train(run).summary
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
    dataset: Optional[str] = typer.Option(None, help=f"dataset the network is built for (default: a search run's "
                                                     f"own, else cifar10): folder:PATH, npz:FILE, or "
                                                     f"{one_of('show-dataset')}"),
    layers: Optional[int] = typer.Option(None, help="cells (default 20; 14 for imagenet)"),
    channels: Optional[int] = typer.Option(None, help="initial channels (default 36; 48 for imagenet)"),
    condition: str = typer.Option("base", help=f"LHD evaluation condition, {one_of('condition')}"),
    draw: Optional[Path] = typer.Option(None, help="draw both cells to FILE.png or FILE.svg"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Print a genotype's cells and the parameter counts of its evaluation network."""
    from .eval_recipe import check_condition, train_defaults
    from .evalnet import EvalNetwork

    for option, value in (("--layers", layers), ("--channels", channels)):
        if value is not None and value < 1:  # 0 used to fall back to the default silently
            raise RobustDartsError(f"{option} is {value}, but must be >= 1.")
    if draw is not None:
        from .paths import IMAGE_SUFFIXES, check_output_file
        check_output_file(draw, "--draw", IMAGE_SUFFIXES)
    geno = resolve_genotype(genotype, condition)
    condition = check_condition(geno, condition)
    from .choices import show_datasets

    from .data.own import is_own

    classes = show_datasets()
    recorded = _recorded_data(genotype) if dataset is None else None
    if dataset is None:  # a search run's own data, as train builds it (api._search_dataset), else CIFAR-10
        from .api import _search_dataset
        dataset = _search_dataset(genotype) or "cifar10"
    in_channels = 1 if dataset == "fashion-mnist" else 3
    if recorded is not None:  # the run's data.json holds the counts: the data need not be read (nor still exist)
        dataset, in_channels = recorded["dataset"], recorded["channels"]
        classes = {dataset: len(recorded["classes"])}
    elif is_own(dataset):  # the user's data decides the counts: its classes and channels
        from .data import dataset_info
        own_info = dataset_info(dataset)
        dataset, in_channels = own_info.name, own_info.channels
        classes = {dataset: own_info.num_classes}
    if dataset not in classes:
        raise unknown("dataset", dataset, classes, where="for show (your own data: folder:PATH or npz:FILE)")
    imagenet = dataset == "imagenet"
    if imagenet and geno.kind != "darts":
        raise RobustDartsError(f"the ImageNet macro needs a darts-kind genotype, not {geno.kind}; pick another dataset.")
    # The evaluation recipe's network: LHD's per condition (1M: 25 cells, width grown to 1.5M parameters).
    recipe = {} if imagenet else train_defaults(geno, dataset, condition)
    layers = layers or recipe.get("layers") or (14 if imagenet else (5 if geno.kind == "nb201" else 20))
    channels = channels or recipe.get("init_channels") or (48 if imagenet else (16 if geno.kind == "nb201" else 36))
    from .memory import check_fits, network_estimate
    check_fits(network_estimate(geno, channels, layers, 1, 224 if imagenet else 32, training=False,
                                macro="imagenet" if imagenet else None), fix="lower --layers or --channels")
    net = EvalNetwork(geno, channels, layers, classes[dataset], in_channels, macro="imagenet" if imagenet else None)
    info = {"params": net.num_parameters(), "params_with_aux": net.num_parameters(with_aux=True),
            "dataset": dataset, "condition": condition, "layers": layers, "channels": channels,
            "macro": net.macro, "genotype": geno.to_dict()}
    if "drop_path" in recipe:
        info["drop_path"] = recipe["drop_path"]
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


def _recorded_data(spec: str) -> dict | None:
    """The data record (data.json: dataset, classes, channels) of a search run on the user's own data, or None for
    anything else (a built-in dataset's run records none; a damaged record is left to the data's own check)."""
    from .api import _search_dataset
    from .data.own import RECORD_FILE

    if _search_dataset(spec) is None:
        return None
    try:
        record = json.loads((Path(spec) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and isinstance(record.get("dataset"), str) and \
        isinstance(record.get("classes"), list) and record["classes"] and isinstance(record.get("channels"), int)
    return record if ok else None


@app.command()
def spaces(
    name: Optional[str] = typer.Argument(None, help=f"one space, shown in full (or a FILE.yaml space, checked), "
                                                    f"{one_of('space')}"),
    as_json: bool = typer.Option(False, "--json"),
):
    """List the search spaces with their ops per edge and supernet size; NAME shows one space in full."""
    from .listing import print_space, print_spaces
    from .spaces import SPACES, get_space
    from .supernet import Supernet, count_parameters

    rows = []
    for s in [get_space(name)] if name else SPACES.values():
        layers = 5 if s.kind == "nb201" else 8
        params = count_parameters(Supernet(s, 16, layers, 10))
        rows.append({**s.to_dict(), "num_alpha": s.num_alpha, "supernet_params_c10": params,
                     "supernet_macro": f"C=16, {layers} {'cells per stage' if s.kind == 'nb201' else 'cells'}"})
    if as_json:
        print(json.dumps(rows))
    elif name:
        print_space(console, rows[0])
    else:
        print_spaces(console, rows)


@app.command()
def methods(
    name: Optional[str] = typer.Argument(None, help=f"one method, shown in full, {one_of('method')}"),
    space: Optional[str] = typer.Option(None, help=f"show the effective recipe on this space, {one_of('space')}"),
    filter_: Optional[str] = typer.Option(None, "--filter", help="shell pattern of names, e.g. 'sp-*'"),
    as_json: bool = typer.Option(False, "--json"),
):
    """List the method presets (summary, key settings); NAME shows one in full (paper, recipe per kind of space,
    options with types and defaults); with --space, the settings each uses on that space."""
    from .listing import key_settings, option_rows, print_method, print_methods
    from .methods import KINDS, get_preset, list_methods, search_config as resolve
    from .plugins import method_source

    names = [get_preset(name).name] if name else list_methods(filter_)
    if not name:  # the plugins are listed here: say which failed to load (a command using built-ins never does)
        from .plugins import warn_broken_methods
        warn_broken_methods()
    if filter_ and not names:
        raise RobustDartsError(f"no method matches {filter_!r}; run robustdarts methods for the names.")
    rows = []
    for n in names:
        preset = get_preset(n)
        source = method_source(n)  # a plugin's entry point (and distribution) or MODULE:ATTRIBUTE
        row = {"name": n, "family": preset.family.__name__, "paper": preset.paper, "summary": preset.summary,
               "plugin": (source.distribution or source.what) if source else None,
               "plugin_source": str(source) if source else None,
               "defaults": {k: preset.settings(k)[0] for k in KINDS},
               "options": {k: preset.settings(k)[1] for k in KINDS},
               "key_settings": key_settings(preset), "option_types": option_rows(preset.family)}
        if space is not None:
            cfg = resolve({"method": n, "space": space})
            from .config import SearchConfig
            from .speed import resolve_layout
            # The speed settings a method's order resolves to are not the method's: compared as resolved.
            base = {**vars(resolve_layout(SearchConfig(arch_order=cfg.arch_order))),
                    "arch_order": SearchConfig.arch_order}
            row["space"] = space
            row["effective"] = {k: v for k, v in vars(cfg).items()
                                if k not in ("space", "method", "method_options") and v != base[k]}
            row["effective_options"] = cfg.method_options
        rows.append(row)
    if as_json:
        print(json.dumps(rows, default=str))
    elif name:
        print_method(console, rows[0], get_preset(name))
    else:
        print_methods(console, rows, space)


@app.command()
def plot(
    run_dirs: List[Path] = typer.Argument(..., metavar="RUN_DIR...", help="one search run, or several to overlay"),
    out: Optional[Path] = typer.Option(None, help="curves PNG (the α picture goes beside it as <name>-alpha.png); "
                                                  "default RUN_DIR/curves.png, or ./curves.png for several runs"),
    alpha: bool = typer.Option(True, help="also draw the α trajectories (each op's weight per edge over epochs)"),
):
    """Plot search runs: loss, accuracy, eigenvalue, skip count, entropy, leakage, and α trajectories."""
    from .viz import plot_runs

    for path in plot_runs(run_dirs, out, alpha=alpha):
        console.print(f"wrote {path}")


# ---- bench: grids of searches and trainings (src/robustdarts/bench/) ----------------------------------------------
bench_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                        help="Benchmark grids: plan, run (local or Ray), status, report, presets.")
app.add_typer(bench_app, name="bench")
_GRID_HELP = f"grid YAML file, or the name of a shipped preset (robustdarts bench presets), {one_of('grid-preset')}"


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape
    return rich_escape(text)


@bench_app.command("plan")
def bench_plan(grid: str = typer.Argument(..., help=_GRID_HELP),
               as_json: bool = typer.Option(False, "--json", help="the plan as JSON")):
    """Expand a grid into its cells (stable ids), count them and estimate their cost; runs and writes nothing."""
    from .bench import load_grid, make_plan

    plan = make_plan(load_grid(grid))
    if as_json:
        print(json.dumps(plan.to_dict()))
        return
    table = Table(title=f"grid {plan.grid.name}: {len(plan.cells)} cells")
    for col in ("cell", "method", "variant", "space", "dataset", "seed", "conditions", "CPU time"):
        table.add_column(col)
    for c in plan.cells:
        table.add_row(c.cell_id, c.method, c.variant, c.space, c.dataset, str(c.seed),
                      ", ".join(k.label for k in c.conditions), _hours(plan.costs[c.cell_id].seconds / 3600))
    console.print(table)
    s = plan.summary()
    console.print(f"{s['cells']} searches, {s['conditions']} derivations, {s['trainings']} trainings from scratch; "
                  f"about {s['search_tflop']:.3g} + "
                  + (f"{s['derive_tflop']:.3g} (DARTS-PT derivations) + " if s["derive_tflop"] else "")
                  + f"{s['train_tflop']:.3g} TFLOP, roughly {_hours(s['cpu_hours'])} "
                  f"of one CPU thread (an order of magnitude; see bench/plan.py)", highlight=False)
    for line in plan.recipes():  # what bench run trains with, per space, dataset and condition
        console.print(f"trainings of {escape(line)}", highlight=False)


def _hours(hours: float) -> str:
    return f"{hours:.3g} h" if hours >= 1 else f"{hours * 60:.2g} min"


@bench_app.command("run")
def bench_run(
    grid: str = typer.Argument(..., help=_GRID_HELP),
    out: Path = typer.Option(..., help="output directory: results.sqlite and the cells' run directories"),
    backend: str = typer.Option("local", help=f"local: worker processes here; ray: a Ray cluster; "
                                              f"{one_of('backend')}"),
    workers: Optional[int] = typer.Option(None, help="cells at once [default: one per CPU core]"),
    threads: Optional[int] = typer.Option(None, help="torch threads per cell [default: cores / workers]"),
    address: Optional[str] = typer.Option(None, help="address of an existing Ray cluster (--backend ray)"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="rerun the cells that failed before"),
    as_json: bool = typer.Option(False, "--json", help="no live view; print the outcome as JSON"),
):
    """Run a grid's cells into --out; rerunning skips finished cells and resumes interrupted ones."""
    from .bench import load_grid, make_plan
    from .bench.backends import check_backend, check_workers, default_workers, run_grid

    plan = make_plan(load_grid(grid))  # every entry is checked here, before anything is written
    check_backend(backend, address)
    check_workers(workers, threads)  # before the live view and the store, not after
    # Ctrl-C stops the grid (bench/backends.py); the sentence it ends with gives this command to resume it. The
    # options that change the numbers (threads: a CPU run is bit-exact only under the same thread count) are kept.
    import shlex
    again = [grid, "--out", str(out)]
    for flag, value in (("--backend", None if backend == "local" else backend), ("--address", address),
                        ("--workers", workers), ("--threads", threads)):
        again += [flag, str(value)] if value is not None else []
    _GRID_RESUME[:] = [f"the finished cells are kept and the interrupted ones resume from their last checkpoint: "
                       f"continue with robustdarts bench run {shlex.join(again)}"]
    if as_json:
        summary = run_grid(plan, out, backend, workers, threads, address, retry_failed)
        print(json.dumps(summary.to_dict()))
    else:
        from .bench.live import LiveView

        with LiveView(plan, out, workers or default_workers(), console=console) as view:
            summary = run_grid(plan, out, backend, workers, threads, address, retry_failed, monitor=view)
        if not console.is_terminal:  # the live view's last frame ends without a newline off a terminal
            console.print()
        console.print(f"{summary.done} cells done, {summary.failed} failed, {summary.busy} busy elsewhere; "
                      f"skipped {summary.skipped_done} finished and {summary.skipped_failed} failed before "
                      f"(--retry-failed reruns those); {summary.seconds:.0f} s. Report: robustdarts bench report "
                      f"{out}", highlight=False)
        if summary.part_of:
            console.print(f"These {summary.cells} cells are a part of the {summary.part_of}-cell plan registered in "
                          f"{out}; its status and report keep the whole plan.", highlight=False)
        for cell, reason in summary.failures.items():
            err_console.print(f"[red]failed[/] {cell}: {escape(reason or '')}", highlight=False)
    if summary.failed:
        raise typer.Exit(1)


@bench_app.command("status")
def bench_status(out_dir: Path = typer.Argument(..., help="a bench run's output directory"),
                 as_json: bool = typer.Option(False, "--json")):
    """Cells done, running, interrupted, pending and failed (with the reason) of a grid's output directory."""
    from .bench import Store
    from .bench.select import method_key
    from .bench.store import SHOWN_STATUSES

    with Store(out_dir) as store:
        cells = store.cells()
        conditions = {}
        for r in store.rows():
            conditions.setdefault(r["cell_id"], {})[r["condition"]] = {"status": r["status"], "error": r["error"]}
        grid = (store.meta("grid") or {}).get("name")
        at = _cells_at(store, out_dir, [c for c in cells if c["status"] in ("running", "interrupted")])
    rows = [{"cell_id": c["cell_id"], "method": c["method"], "variant": c["variant"], "space": c["space"],
             "dataset": c["dataset"], "seed": c["seed"], "status": c["status"], "at": at.get(c["cell_id"]),
             "error": c["error"], "attempts": c["attempts"], "search_seconds": c["search_seconds"],
             "run_dir": c["run_dir"], "conditions": conditions.get(c["cell_id"], {})} for c in cells]
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in SHOWN_STATUSES}
    if as_json:
        print(json.dumps({"grid": grid, "counts": counts, "cells": rows}))
        return
    table = Table(title=f"grid {grid}: " + ", ".join(f"{v} {k}" for k, v in counts.items()
                                                     if v or k != "interrupted"))
    for col in ("cell", "method", "space", "dataset", "seed", "status", "conditions", "reason"):
        table.add_column(col)
    color = {"done": "green", "running": "yellow", "interrupted": "magenta", "failed": "red", "pending": "white"}
    for r in rows:
        conds = ", ".join(f"{k}: {v['status']}" for k, v in r["conditions"].items())
        reasons = "; ".join([r["error"]] * bool(r["error"]) + [f"{k}: {v['error']}" for k, v in
                                                               r["conditions"].items() if v["error"]])
        table.add_row(r["cell_id"], method_key(r), r["space"],
                      r["dataset"], str(r["seed"]),
                      f"[{color[r['status']]}]{r['status']}[/]" + (f" ({r['at']})" if r["at"] else ""), escape(conds),
                      escape(reasons))
    console.print(table)


def _cells_at(store, out_dir: Path, cells: list[dict]) -> dict[str, str]:
    """Where the given cells' run directories are ('search 3/8', 'train 5/20'), read from disk; none when the
    store's grid no longer expands (written by another version)."""
    from .bench.cell import progress
    from .bench.grid import expand, grid_from_dict

    if not cells:
        return {}
    try:
        planned = {c.cell_id: c for c in expand(grid_from_dict(store.meta("grid")))}
    except RobustDartsError:
        return {}
    return {c["cell_id"]: progress(dataclasses.replace(planned[c["cell_id"]], run_dir=c["run_dir"]), out_dir).phase
            for c in cells if c["cell_id"] in planned}


@bench_app.command("report")
def bench_report(out_dir: Path = typer.Argument(..., help="a bench run's output directory"),
                 fmt: str = typer.Option("md", "--format", help=f"report format, {one_of('report-format')}"),
                 out: Optional[Path] = typer.Option(None, help="write here (md: plots beside it as PNG) "
                                                               "[default: stdout; html: OUT_DIR/report.html]")):
    """Tables (mean ± std over seeds, best-of-k, average rank, parameters) and plots, from the store alone."""
    from .bench import Store
    from .bench.report import FORMATS, write

    if fmt not in FORMATS:
        raise unknown("report format", fmt, FORMATS)
    if fmt == "html" and out is None:
        out = out_dir / "report.html"
    with Store(out_dir) as store:
        text = write(store, fmt, out)
    if out is None:
        print(text, end="" if text.endswith("\n") else "\n")
    else:
        console.print(f"wrote {out}")


@bench_app.command("presets")
def bench_presets(as_json: bool = typer.Option(False, "--json")):
    """The grid presets shipped with robustdarts: size and what each reproduces (bench plan NAME: cells, cost)."""
    from .bench import load_grid, preset_names
    from .bench.grid import grid_size

    rows = []
    for name in preset_names():
        grid = load_grid(name)
        rows.append({"name": name, "description": grid.description, **grid_size(grid)})
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title="grid presets (robustdarts bench plan NAME shows the cells and the cost)")
    for col in ("name", "cells", "trainings", "description"):
        table.add_column(col)
    for r in rows:
        missing = f" [red](needs methods not in this version: {', '.join(r['missing_methods'])})[/]" \
            if r["missing_methods"] else ""
        table.add_row(r["name"], str(r["cells"]), str(r["trainings"]), escape(r["description"]) + missing)
    console.print(table)


def _say_error(message: str) -> int:
    from rich.markup import escape as rich_escape

    # soft_wrap: the sentence stays one line however narrow the terminal (rich would otherwise break it up)
    err_console.print(f"[bold red]error:[/] {rich_escape(message)}", highlight=False, soft_wrap=True)
    return 2


_GRID_RESUME: list[str] = []  # set by bench run: how to continue the grid it runs (its cells lock nothing here)
_SPAWNED_RUNS: list[str] = []  # set by search --nproc: the run its ranks write


def _resume_hint() -> str:
    """How to continue the run this process was writing, if any (the run directories it locked, or the grid)."""
    from .runs import RunDir, held_runs

    if _GRID_RESUME:
        return _GRID_RESUME[0]
    runs = {**held_runs(), **{path: "search" for path in _SPAWNED_RUNS}}
    if not runs:
        return ""
    path, kind = list(runs.items())[-1]
    if not RunDir(path).checkpoint_path.exists():
        return f"{path} had no checkpoint yet: run the same command again to start it over"
    return f"the last checkpoint in {path} is intact: continue with robustdarts {kind} --resume {path}"


def _interrupted() -> int:
    hint = _resume_hint()
    err_console.print(f"interrupted; {hint}." if hint else "interrupted.", highlight=False, soft_wrap=True)
    return 130


def _os_error(e: OSError) -> str:
    """One sentence for an OSError that escaped: the file, the reason and, for a full disk, the space left."""
    import errno
    import shutil

    name = e.filename or "a file"
    hint = _resume_hint()
    if e.errno == errno.ENOSPC:
        place = Path(os.path.abspath(e.filename or "."))
        while not place.exists() and place != place.parent:
            place = place.parent
        free = shutil.disk_usage(place).free
        then = f"; {hint}" if hint else ""
        return (f"the disk is full: writing {name} failed with {free / 2**20:.1f} MiB free on its file system; "
                f"free some space{then}.")
    return f"{e.strerror or type(e).__name__}: {name}; check the path and its permissions."


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as the user reads it: ``warning: <sentence>`` on one line (Python's default adds the source file and
    line, which name our code, not the user's problem)."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def run_cli(args: list[str] | None = None) -> int:
    """Run the command line on ``args`` and return its exit code, every failure one sentence on stderr: a user
    error or a bad option 2, Ctrl-C 130 with how to resume, an OSError (disk full, permissions) 2 naming the file,
    running out of memory 2. ``main`` and the tests both go through here, so tests see what a user sees."""
    exceptions = _click("exceptions")
    _GRID_RESUME.clear()  # an earlier in-process call's grid or spawned search is not this one's
    _SPAWNED_RUNS.clear()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            code = app(args=args, prog_name="robustdarts", standalone_mode=False)
    except RobustDartsError as e:
        return _say_error(str(e))
    except exceptions.NoArgsIsHelpError as e:
        return e.exit_code  # the help is already printed
    except exceptions.ClickException as e:
        ctx = getattr(e, "ctx", None)
        see = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        _say_error(f"{e.format_message()}{see}")
        return e.exit_code
    except (KeyboardInterrupt, typer.Abort):
        return _interrupted()
    except MemoryError:
        return _say_error("ran out of memory; lower the sizes (init_channels, layers, image_size, batch_size).")
    except OSError as e:
        return _say_error(_os_error(e))
    if code == 130:  # typer turns Ctrl-C into Exit(130), which it returns when not standalone
        return _interrupted()
    return code if isinstance(code, int) else 0


def main() -> None:
    sys.exit(run_cli())


if __name__ == "__main__":
    main()
