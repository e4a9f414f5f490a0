"""The Python API: ``search``, ``derive`` and ``train``, the functions the command line calls for its work.

The CLI parses arguments and prints; everything between (config resolution and validation, data, run directories,
resume) happens here, so the two cannot drift and every CLI test exercises the API. Errors are the CLI's: one
sentence in a ``RobustDartsError``. Nothing heavy is imported at module level: ``import robustdarts`` stays cheap,
torch is imported when a function first needs it.

Data may also be handed in memory (``dataset=(images, labels)`` or a torch ``Dataset``): it goes through the same
door as ``folder:``/``npz:`` data (data/own.py: checks, statistics, held-out test split, content hash) and the run
records it as ``in-memory:<hash>``. Only the hash is on disk, so a resume must be handed the same data again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import RobustDartsError

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from .config import SearchConfig, TrainConfig
    from .genotype import Genotype


@dataclass(frozen=True)
class SearchResult:
    """What ``search`` returns: the run directory, the genotype derived at the last epoch, the per-epoch metrics
    records (one dict per epoch, as metrics.jsonl holds them) and the resolved ``SearchConfig`` the run recorded."""

    run_dir: Path
    genotype: Genotype
    metrics: list[dict] = field(repr=False)
    config: SearchConfig = field(repr=False)


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` returns: the final-epoch test accuracy (a fraction; the number to report), the final
    validation accuracy (None unless ``valid_images`` held some out: the number to select by), the run directory,
    the per-epoch metrics, the resolved ``TrainConfig`` and every number the CLI prints (``summary``)."""

    test_acc: float | None
    valid_acc: float | None
    run_dir: Path
    metrics: list[dict] = field(repr=False)
    config: TrainConfig = field(repr=False)
    summary: dict = field(repr=False)


# ---------------------------------------------------------------------------------------------------- search

def search(space: str | Path = "darts", method: str = "darts",
           dataset: str | tuple[Any, Any] | Dataset = "fashion-mnist", preset: str | None = None,
           out: str | Path | None = None, resume: str | Path | None = None, progress: bool = False,
           **config_fields: Any) -> SearchResult:
    """Search an architecture; returns a ``SearchResult`` (``.run_dir``, ``.genotype``, ``.metrics``, ``.config``).

    Args:
        space: a search space name (``robustdarts spaces``: darts, s1..s4, lhd, nb201, ...) or a FILE.yaml space.
        method: a method preset (``robustdarts methods``), or ``MODULE:ATTRIBUTE`` naming a plugin's ``Preset``.
        dataset: a dataset name (fashion-mnist, cifar10, synthetic, ...), ``folder:PATH``, ``npz:FILE``, or your
            data in memory: a pair ``(images, labels)`` (uint8 N x H x W or N x H x W x C numpy arrays or torch
            tensors, integer labels 0..K-1) or a ``torch.utils.data.Dataset`` of ``(image, label)``. In-memory data
            is recorded as ``in-memory:<content hash>``; a seeded 1/6 of each class is held out as its test split.
        preset: sizes only (tiny, small, paper); never changes the algorithm.
        out: the run directory (default ``runs/search-<space>-<method>-<dataset>-s<seed>``); it must be new.
        resume: continue the run in this directory with its own config (then give no other field; a run on
            in-memory data needs the same data handed in again as ``dataset=``, checked by its hash; a run whose
            ``folder:``/``npz:`` data moved takes ``dataset=`` at the new place, checked by its content digest).
        progress: show live progress bars and notes on the terminal.
        **config_fields: any ``SearchConfig`` field (epochs, batch_size, init_channels, layers, image_size,
            limit_images, seed, arch_lr, ...) and ``method_options`` (a dict of the method's options), typed and
            range-checked as the CLI's ``--set`` is.

    Raises:
        RobustDartsError: one sentence for any bad input (unknown field or name, a value out of range, bad data,
            an existing ``out``, a resume without its data), raised before anything is written.

    Example:
        >>> import robustdarts
        >>> result = robustdarts.search(dataset="synthetic", epochs=1, layers=3, init_channels=4, image_size=8,
        ...                             limit_images=32, batch_size=16, out="runs/example")  # doctest: +SKIP
        >>> result.genotype.describe()  # doctest: +SKIP
    """
    from .config import SearchConfig
    from .starts import one_start

    python_values(SearchConfig, config_fields)
    with one_start():  # one start: a folder data set walked once for all its look-ups, anew by the next call
        if resume is not None:
            given = dict(space=space, method=method, dataset=dataset)
            _refuse_with_resume(resume, "search", given, preset=preset, out=out, fields=config_fields)
            run = open_search_run(None, resume, resume=True, progress=progress)
        else:
            cfg = resolve_search_config(space=space, method=method, dataset=dataset, preset=preset, **config_fields)
            run = open_search_run(cfg, out, progress=progress)
        return run_search(run)


def python_values(cls, fields: dict[str, Any]) -> None:
    """Refuse text that reads as a number for a numeric field of ``cls`` handed to the Python API (``epochs="2"``,
    ``lr="0.1"``), which config.coerce_field would parse: Python callers pass Python values, and only the text
    paths (the command line, YAML files) read numbers from text. Other text is refused there, in the command line's
    sentence; so are "none" (an empty field) and "auto" (``threads``), words and not numbers. Exact conversions of
    Python numbers stay (a whole float 1.0 for an int field)."""
    import math

    from .config import type_hints
    from .errors import short

    hints = type_hints(cls)
    for name, value in fields.items():
        hint = hints.get(name, "")
        hint = hint.__name__ if hint in (int, float) else str(hint)
        if not isinstance(value, str) or not hint.startswith(("int", "float")):
            continue
        try:
            if not math.isfinite(float(value)):
                continue  # "nan", "inf": no number here either, refused by config.coerce_field
        except ValueError:
            continue  # text that is no number ("fast", "none", "auto"): left to config.coerce_field
        fix = f"pass {name}={value.strip()} without quotes" if len(value) <= 40 else "pass a number"
        raise RobustDartsError(f"config field {name!r} is the text {short(value)}, but needs a number; the Python "
                               f"API takes Python values (only the command line and YAML files read numbers from "
                               f"text), so {fix}.")


def resolve_search_config(**fields: Any) -> SearchConfig:
    """The resolved ``SearchConfig`` of keyword fields (``space``, ``method``, ``dataset`` — in-memory data handed
    in here —, ``preset`` and any config field): the method preset's settings for the space's kind, the sizes
    preset, then the fields; every value typed and range-checked, every option of the method filled in."""
    from .methods import search_config

    fields = dict(fields)
    if "dataset" in fields:
        fields["dataset"] = dataset_name(fields["dataset"])
    if fields.get("space") is not None:
        fields["space"] = space_name(fields["space"])
    if fields.get("method") is not None:
        fields["method"] = method_name(fields["method"])
    return search_config(fields)


def space_name(space: Any) -> str:
    """The name a config records for ``space``: a name or FILE.yaml as it is, a ``Space`` under its name, and a
    definition mapping (the fields of a space file: name, ops or edges, nodes, inputs_per_node) registered first
    (spaces/registry.register_definition; the run records it in space.yaml, so later commands need no file)."""
    from .spaces.registry import SPACES, Space, register_definition

    if isinstance(space, (str, Path)):
        return str(space)
    if isinstance(space, dict):
        return register_definition(space, "the space definition handed in").name
    if isinstance(space, Space):
        if SPACES.get(space.name) == space:
            return space.name
        if space.kind == "darts":  # a user's DARTS-kind Space value: checked and registered as its definition is
            return register_definition(space.definition(), f"space {space.name!r}").name
    from .errors import short
    raise RobustDartsError(f"space is {short(space)}; pass a space name (robustdarts spaces), a FILE.yaml path, or "
                           f"a definition dict with the fields of a space file (name, ops, nodes, inputs_per_node).")


def method_name(method: Any) -> str:
    """The name a config records for ``method``: a name as it is; a ``Preset`` object by the name under which
    another process finds it again (its own name when the registry or an installed plugin holds it, else
    ``MODULE:ATTRIBUTE`` of the module attribute that holds it), so that resume and derive work from the run."""
    from .methods.presets import Preset

    if isinstance(method, str):
        return method
    if not isinstance(method, Preset):
        from .errors import short
        raise RobustDartsError(f"method is {short(method)}; pass a method name (robustdarts methods), "
                               f"'MODULE:ATTRIBUTE' of a plugin's Preset, or the Preset object itself.")
    from . import plugins
    from .methods import PRESETS

    try:
        found = PRESETS.get(method.name) or plugins.find_method(method.name)
    except RobustDartsError:
        found = None  # a broken plugin of that name: the object in hand may still be found by its module
    if found is method or found == method:
        return method.name
    import sys
    modules = [sys.modules.get(method.family.__module__)] + list(sys.modules.values())
    for module in modules:
        for attribute, value in list(getattr(module, "__dict__", {}).items()):
            if value is method and plugins.is_spec(f"{module.__name__}:{attribute}"):
                return f"{module.__name__}:{attribute}"
    raise RobustDartsError(f"the Preset {method.name!r} handed in is neither a registered method nor an attribute of "
                           f"an imported module, so a resume could not find it again; define it at module level (or "
                           f"install it as a plugin) and pass it, or its 'MODULE:ATTRIBUTE'.")


def default_search_dir(cfg: SearchConfig) -> Path:
    """``runs/search-<space>-<method>-<dataset label>-s<seed>``: where a search goes without ``out``."""
    from .data.own import dataset_label

    return Path("runs") / f"search-{cfg.space}-{cfg.method}-{dataset_label(cfg.dataset)}-s{cfg.seed}"


def open_search_run(cfg: SearchConfig | None, out: str | Path | None, *, resume: bool = False, console=None,
                    progress: bool = False, log: str | None = None, dataset: str | None = None):
    """The search object for ``cfg`` into ``out`` (default ``default_search_dir``), or, with ``resume``, for the
    run in ``out``: a ``Search`` in this process, one torchrun rank, or ``cfg.nproc`` spawned processes
    (search/launch.py). ``console``: where notes and progress go (default: the terminal when ``progress``).
    ``dataset`` with ``resume`` (the CLI's ``--dataset``): the new place of the run's own data, if it moved."""
    from .paths import check_output_dir
    from .search.launch import open_search

    if console is None and progress:
        from rich.console import Console
        console = Console()
    if not resume:
        out = check_output_dir(out if out is not None else default_search_dir(cfg))
    else:
        if dataset is not None:
            _refuse_with_resume(out, "search", {"dataset": dataset}, preset=None, out=None, fields={},
                                defaults={"dataset": None})
        _check_resumed_data(out, "search")
    return open_search(cfg, Path(out), resume=resume, console=console, progress=progress, log=log)


def run_search(run, log: str | None = None) -> SearchResult | None:
    """Run an opened search to its end (``log``: a run logger that follows each epoch, runlog.py) and return its
    ``SearchResult``; None in a torchrun rank other than 0, which writes nothing."""
    logger = None
    if log is not None and run.shard.writes and not getattr(run, "logs_itself", False):
        from .config import to_yaml
        from .runlog import make_logger
        logger = make_logger(log, run.run_dir.path, to_yaml(run.cfg))
        run.epoch_hooks = (logger,)  # called by the loop after each epoch's record; never fails the search
    try:
        genotype = run.run()
    finally:
        if logger is not None:
            logger.close()
    if not run.shard.writes:
        return None
    return SearchResult(Path(run.run_dir.path), genotype, run.run_dir.read_metrics(), run.cfg)


# ---------------------------------------------------------------------------------------------------- derive

def derive(run_dir: str | Path, policy: str | None = None, condition: str | None = None, epoch: int | None = None,
           dataset: str | None = None, **options: Any) -> Genotype:
    """The genotype of a search run at an epoch under a discretization policy; returns a ``Genotype``.

    Args:
        run_dir: a search run directory (``SearchResult.run_dir``).
        policy: ``darts``, ``nb201``, ``lhd``, ``selective-stop``, ``darts-pt``, ... (``robustdarts derive --help``);
            None: the space's own rule (``darts`` on DARTS-kind spaces, so any run can be derived by default).
        condition: an LHD evaluation condition (base, 3ops, 4out, 1m); LHD runs only.
        epoch: the archive epoch (default: the last; -1: the initial α).
        dataset: ``darts-pt`` only, whose measurements read the search's data: the new place (``folder:``/``npz:``)
            of a run's own data that moved, checked by its content digest and recorded in the run.
        **options: ``darts-pt`` only: ``tune_epochs``, ``val_images``.

    Raises:
        RobustDartsError: an unknown policy or condition, a missing epoch, a directory that is not a search run.

    Example:
        >>> genotype = robustdarts.derive("runs/example", epoch=0)  # doctest: +SKIP
        >>> genotype.save("cell.json")  # doctest: +SKIP
    """
    return derive_with_epoch(run_dir, policy=policy, condition=condition, epoch=epoch, dataset=dataset,
                             **options)[0]


def derive_with_epoch(run_dir: str | Path, policy: str | None = None, condition: str | None = None,
                      epoch: int | None = None, progress: bool = False, console=None, dataset: str | None = None,
                      **options: Any) -> tuple[Genotype, int]:
    """``derive``'s genotype and the epoch it was derived at (the one a policy such as selective-stop chose)."""
    from .starts import one_start
    from .derive import derive_from_run

    with one_start():  # one start (DARTS-PT's derive reads the search's data)
        if policy == "darts-pt" and Path(run_dir, "config.yaml").is_file():
            if dataset is not None:  # the run's data moved: taken by its digest, recorded, as a resume does
                place = _own_place(dataset)
                if place is None:
                    raise RobustDartsError(f"--dataset with derive names the new place of the run's folder: or "
                                           f"npz: data, not {dataset!r}.")
                _record_moved_data(run_dir, "search", place)
            else:
                _check_resumed_data(run_dir, "search", command="derive")
        elif dataset is not None:
            raise RobustDartsError("--dataset applies to --policy darts-pt only (the other policies read only the "
                                   "run's α archive).")
        return derive_from_run(run_dir, epoch=epoch, policy=policy, condition=condition, progress=progress,
                               console=console, **options)


# ---------------------------------------------------------------------------------------------------- train

def train(genotype_or_run_dir: Genotype | str | Path, dataset: str | tuple[Any, Any] | Dataset | None = None,
          preset: str | None = None, out: str | Path | None = None, resume: str | Path | None = None,
          condition: str = "base", progress: bool = False, **fields: Any) -> TrainResult:
    """Train a genotype's discrete network from scratch (the DARTS evaluation recipe); returns a ``TrainResult``
    (``.test_acc``, ``.valid_acc``, ``.run_dir``, ``.metrics``, ``.config``).

    Args:
        genotype_or_run_dir: a ``Genotype``, a search run directory, a genotype file (JSON, DARTS text, LHD .pl)
            or a published name (darts_v2, pc_darts, ...).
        dataset: as for ``search``; default: a search run's own dataset (a ``folder:``/``npz:`` or in-memory
            search trains and tests on the same data), fashion-mnist otherwise.
        preset: sizes only (tiny, small, paper).
        out: the run directory (default ``runs/train-<genotype>-<dataset>-s<seed>``); it must be new.
        resume: continue the training run in this directory (then give no other field but ``dataset=`` at the new
            place of its ``folder:``/``npz:`` data, if that moved: checked by its content digest).
        condition: the LHD evaluation condition of an LHD genotype (base, 3ops, 4out, 1m).
        progress: show live progress on the terminal.
        **fields: any ``TrainConfig`` field (epochs, batch_size, init_channels, layers, image_size, limit_images,
            limit_test, valid_images, seed, ...), typed and range-checked as the CLI's ``--set`` is.

    Raises:
        RobustDartsError: one sentence for any bad input, before anything is written.

    Example:
        >>> result = robustdarts.train("runs/example", epochs=1, layers=3, init_channels=4,
        ...                            out="runs/example-train")  # doctest: +SKIP
        >>> result.test_acc  # doctest: +SKIP
    """
    from .starts import one_start

    from .config import TrainConfig

    python_values(TrainConfig, fields)
    with one_start():  # one start: a folder data set walked once for all its look-ups, anew by the next call
        run = open_train_run(genotype_or_run_dir, dataset, preset=preset, out=out, resume=resume,
                             condition=condition, progress=progress, **fields)
        return run_train(run)


def open_train_run(genotype_or_run_dir: Genotype | str | Path,
                   dataset: str | tuple[Any, Any] | Dataset | None = None, *, preset: str | None = None,
                   out: str | Path | None = None, resume: str | Path | None = None, condition: str = "base",
                   console=None, progress: bool = False, **fields: Any):
    """The ``Train`` object of ``train`` (config resolved and checked, data loaded, run directory created), or
    of the run in ``resume``; ``console``: where progress goes (default: the terminal when ``progress``)."""
    from .config import TrainConfig, build
    from .genotype import Genotype
    from .train import Train

    if console is None and progress:
        from rich.console import Console
        console = Console()
    if resume is not None:
        from .runs import RunDir
        recorded = RunDir(resume).load_config(TrainConfig).genotype
        spec = genotype_or_run_dir
        same = isinstance(spec, Genotype) and spec == Genotype.load(Path(resume) / "genotype.json") or \
            not isinstance(spec, Genotype) and (str(spec) == recorded or Path(spec).resolve() in
                                                (Path(recorded).resolve(), Path(resume).resolve()))
        if not same:
            raise RobustDartsError(f"{resume} trains {recorded[:80]!r}, not {str(spec)[:80]!r}; to resume pass "
                                   f"{recorded[:80]!r} or the run directory as the genotype.")
        _refuse_with_resume(resume, "train", {"dataset": dataset}, preset=preset, out=out, fields=fields,
                            defaults={"dataset": None})
        _check_resumed_data(resume, "train")
        return Train.resume(resume, console=console, progress=progress)
    from .eval_recipe import train_defaults
    from .genotype import validate

    if "genotype" in fields:
        raise RobustDartsError("train takes the genotype as its first argument (a Genotype, run directory, file or "
                               "name), not as the field genotype=; drop it.")

    if isinstance(genotype_or_run_dir, Genotype):
        geno = validate(genotype_or_run_dir) if genotype_or_run_dir.space else genotype_or_run_dir
        spec = geno.to_json()  # the config records the genotype itself: the run reads back without the object
        label = geno.space or geno.kind
    else:
        spec = str(genotype_or_run_dir)
        geno = resolve_genotype(spec, condition)
        label = Path(spec).name if Path(spec).exists() else spec
    if dataset is None:
        dataset = _search_dataset(genotype_or_run_dir) or "fashion-mnist"
    name = dataset_name(dataset)
    recipe = train_defaults(geno, name, condition)  # LHD's evaluation recipe for LHD genotypes
    cfg = build(TrainConfig, {**fields, "genotype": spec, "dataset": name, "preset": preset}, "train", base=recipe)
    from .data.own import dataset_label
    from .paths import check_output_dir
    out = check_output_dir(out if out is not None else
                           Path("runs") / f"train-{label}-{dataset_label(cfg.dataset)}-s{cfg.seed}")
    return Train(cfg, geno, out, console=console, progress=progress)


def run_train(run) -> TrainResult:
    """Run an opened training to its end; its ``TrainResult``."""
    summary = run.run()
    summary["run_dir"] = str(run.run_dir.path)
    return TrainResult(summary.get("final_test_acc"), summary.get("final_valid_acc"), Path(run.run_dir.path),
                       run.run_dir.read_metrics(), run.cfg, summary)


# ---------------------------------------------------------------------------------------------------- helpers

def dataset_name(dataset: str | tuple[Any, Any] | Dataset) -> str:
    """The name a config records for ``dataset``: a name as it is, data in memory handed in through data/own.py
    (checked, its statistics measured) as ``in-memory:<content hash>``."""
    if isinstance(dataset, str):
        return dataset
    from .data.own import hand_in
    return hand_in(dataset)


def resolve_genotype(spec: str, condition: str = "base"):
    """The ``Genotype`` of a published name, a run directory, a JSON / DARTS-text / NB201 file, an LHD .pl file,
    or inline text; checked against the space it names, if any (the CLI's ``train`` and ``show`` read it here)."""
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
        run_dir, path = path, path / "genotype.json"
        from .runs import RunDir
        RunDir(run_dir).register_space()  # a user's space the run recorded: the genotype is checked against it
        if not path.exists():
            raise RobustDartsError(f"{spec} holds no genotype.json; pass a finished search run or a genotype file.")
        if str(condition or "base").lower() != "base" and Genotype.load(path).kind == "lhd":
            from .derive import derive_from_run  # an LHD run under another condition: re-derive its last epoch
            return derive_from_run(run_dir, condition=condition)[0]
    if path.is_file():
        return genotype_from_pl(path, condition) if path.suffix == ".pl" else Genotype.load(path)
    if spec.lstrip()[:1] in ("{", "|") or "Genotype(" in spec or "normal=" in spec:
        return Genotype.parse(spec, source="genotype text")
    raise RobustDartsError(f"unknown genotype {spec!r}: it is neither a published name ({', '.join(sorted(GENOTYPES))}) "
                           f"nor an existing file or run directory.")


def _search_dataset(spec: object) -> str | None:
    """The dataset a search run directory recorded (None for anything else): training a searched genotype on the
    data it was searched on is what a user of their own data means."""
    import yaml

    if not isinstance(spec, (str, Path)) or not (Path(spec) / "config.yaml").is_file():
        return None
    try:
        recorded = yaml.safe_load((Path(spec) / "config.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # resolving the genotype has already said what is wrong with the run, if anything
    if not isinstance(recorded, dict) or "method" not in recorded:  # a training run's config: not a search
        return None
    value = recorded.get("dataset")
    return value if isinstance(value, str) else None


def _refuse_with_resume(resume: str | Path, kind: str, given: dict[str, Any], *, preset, out, fields: dict,
                        defaults: dict[str, Any] | None = None) -> None:
    """A resume continues a run with its own config.yaml: anything that would change it is refused in one sentence
    (not silently ignored). Data in memory must be handed again for a run on in-memory data, and must be the same
    (by content hash): only the hash was recorded."""
    from .config import SearchConfig, TrainConfig
    from .runs import RunDir

    cfg = RunDir(resume).load_config(SearchConfig if kind == "search" else TrainConfig)
    defaults = defaults if defaults is not None else {"space": "darts", "method": "darts", "dataset": "fashion-mnist"}
    recorded_data = cfg.dataset
    data = given.pop("dataset", None)
    moved = None
    if recorded_data.startswith("in-memory:"):
        if isinstance(data, str) or data is None:
            raise RobustDartsError(f"{resume} was run on data handed in memory ({recorded_data}); hand the same "
                                   f"data in again: robustdarts.{kind}(resume={str(resume)!r}, dataset=(images, "
                                   f"labels)) or the same Dataset.")
        name = dataset_name(data)
        if name != recorded_data:
            raise RobustDartsError(f"the data handed in hashes to {name}, but {resume} was run on {recorded_data}; "
                                   f"hand in the same images and labels, in the same order.")
    elif _own_place(recorded_data) and _own_place(data):
        moved = data if _own_place(data) != _own_place(recorded_data) else None  # the same place, however written
    elif not (isinstance(data, str) and data in (defaults.get("dataset"), recorded_data)) and data is not None:
        given["dataset"] = data
    changed = [k for k, v in given.items() if v != defaults.get(k) and v != getattr(cfg, k, None)]
    changed += ["preset"] * (preset is not None) + sorted(fields)
    if out is not None and Path(out).resolve() != Path(resume).resolve():
        changed.append("out")
    if changed:
        raise RobustDartsError(f"resume continues {resume} with its own config.yaml, so {', '.join(changed)} cannot "
                               f"change it; drop {'it' if len(changed) == 1 else 'them'}.")
    if moved is not None:
        _record_moved_data(resume, kind, moved)


def _own_place(name: object) -> str | None:
    """The canonical ``folder:``/``npz:`` name of a user's data on disk (None for a built-in name, data in memory
    or anything else): the only names a resume may point elsewhere (the content is checked, not the place)."""
    from .data.own import IN_MEMORY, canonical_name, is_own

    if not is_own(name) or name.startswith(f"{IN_MEMORY}:"):
        return None
    return canonical_name(name)


def _record_moved_data(run_dir: str | Path, kind: str, name: str) -> None:
    """A run's own data moved (or was copied) since it started, and the resume names the new place: taken when it
    holds the same data by the content digest that data.json recorded (the digest covers images, labels and
    split, no path; so the batch streams, and a bit-exact resume, are the same), and then recorded in config.yaml
    and data.json, so that later resumes, derive and train from the run find it without being told. A different
    digest is refused in one sentence before anything is written. The writes happen under the run's lock (not
    under a search another process runs), which is given back at once: Search/Train.resume, or the ranks that
    --nproc spawns, take it next. Under torchrun every rank comes here and writes the same bytes, unlocked (the
    ranks would refuse each other); Search.resume's barrier orders all of it before rank 0 touches the run."""
    import json

    import yaml

    from .atomic import atomic_write_text
    from .data.own import RECORD_FILE, moved_record
    from .distributed import under_torchrun
    from .runs import RunDir, held_runs, release

    run = RunDir(run_dir)
    record = moved_record(run.path, name)  # refuses other data, writes nothing
    skip_lock = under_torchrun() or run.path.resolve() in held_runs()  # held already by this process: kept
    if not skip_lock:
        run.lock(kind)
    try:
        config = yaml.safe_load(run.config_path.read_text())  # as written, every other field untouched
        config["dataset"] = record["dataset"]
        atomic_write_text(run.config_path, yaml.safe_dump(config, sort_keys=False))
        atomic_write_text(run.path / RECORD_FILE, json.dumps(record, indent=1) + "\n")
    finally:
        if not skip_lock:
            release(run.path)


def _check_resumed_data(run_dir: str | Path, kind: str, command: str = "resume") -> None:
    """A resumed run's own data must be where config.yaml says; if it is not, one sentence says how to name the
    new place (the load's own "does not exist; give folder:PATH ..." is a dead end on resume, which refuses
    other fields). ``command``: resume, or derive (DARTS-PT's measurements read the search's data)."""
    from .config import SearchConfig, TrainConfig
    from .runs import RunDir

    name = RunDir(run_dir).load_config(SearchConfig if kind == "search" else TrainConfig).dataset
    place = _own_place(name)
    if place is None:
        return
    what, path = place.split(":", 1)
    if not Path(path).exists():
        new = "folder:NEW_PATH" if what == "folder" else "npz:NEW_FILE"
        how = ("with --resume (in Python: dataset=" + repr(new) + " with resume=)" if command == "resume" else
               "to derive (in Python: dataset=" + repr(new) + ")")
        raise RobustDartsError(f"{'folder' if what == 'folder' else 'npz file'} {path}, the data {run_dir} was run "
                               f"on, does not exist; if it moved, pass --dataset {new} {how}.")
