"""Typed configs as data: dataclasses, YAML on disk, any field overridable by name.

Defaults are the DARTS paper's (spec D §1.4, §1.7). A preset changes sizes only (cells, channels, image size, batch,
epochs, images), never the algorithm; a method preset (methods/) changes the algorithm's own knobs.
"""

from __future__ import annotations

import functools

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .errors import RobustDartsError, short, unknown


@dataclass
class SearchConfig:
    space: str = "darts"
    method: str = "darts"
    dataset: str = "cifar10"
    data_dir: str | None = None
    preset: str | None = None
    seed: int = 2
    device: str = "cpu"
    # sizes
    epochs: int = 50
    batch_size: int = 64
    init_channels: int = 16
    layers: int = 8
    image_size: int | None = None  # resize once at load; None keeps the dataset's size
    limit_images: int | None = None  # seeded subset of the training set (CPU-sized runs)
    train_portion: float = 0.5
    ordered_split: bool = False  # the references split by index order; we default to a seeded permutation
    # weights
    lr: float = 0.025
    lr_min: float = 0.001
    lr_schedule: str = "cosine"  # cosine | constant
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    # architecture
    arch_lr: float = 3e-4
    arch_beta1: float = 0.5
    arch_beta2: float = 0.999
    arch_weight_decay: float = 1e-3
    arch_order: str = "first"  # first | second (DARTS unrolled) | mixed (MiLeNAS) | single (one train pass) | none
    mixed_lambda: float = 1.0  # λ of the mixed-level arch gradient ∇α L_val + λ·∇α L_train (MiLeNAS)
    # arch-first: α step then weight step (DARTS); weight-first: the AutoDL NAS-Bench-201 code's order
    step_order: str = "arch-first"
    nesterov: bool = False  # Nesterov momentum in the weight SGD (the AutoDL NAS-Bench-201 configs)
    tau: float = 1.0  # softmax temperature of the plain relaxation
    partial_channels: int = 1  # K: mixed edges compute their ops on C/K channels, the rest bypass (PC-DARTS)
    weights_on_all_data: bool = False  # the weight step draws from the whole training set (LHD's single level)
    # search-time regularization (R-DARTS DP ramps drop path and cutout together)
    drop_path: float = 0.0
    cutout: int = 0  # side at 32x32; crop padding and cutout scale with the image size
    augment: bool = True  # random crop + flip (SVHN in LHD searches without)
    skip_bad_images: bool = False  # folder: datasets: leave unreadable images out (counted) instead of refusing
    # diagnostics
    hessian_every: int = 0  # epochs between dominant-eigenvalue measurements; 0 = off
    # Validation batches per measurement; 1 is RobustDARTS' protocol (batch 64). At batch 8 one batch's λ_max read
    # between 0.5x and 3x the 16-batch value at the same epoch (docs/collapse.md): average more at small batches.
    hessian_batches: int = 1
    hessian_bn_mode: str = "train"
    # softmax: RobustDARTS' protocol, softmax(α) at τ = 1 for every method, so λ_max compares across methods;
    # method: the method's own deterministic relaxation (its 'eval' weights: SP-DARTS' τ, DrNAS' mean, GAEA's α)
    hessian_relax: str = "softmax"
    leakage_every: int = 1  # discretization gap and leaked mass; 0 = off
    keep_checkpoints: int = 0  # per-epoch checkpoints kept for rollback (DARTS-ADA needs the last ~13)
    # speed, memory and scale (none changes the algorithm; benchmarks/README.md measures each)
    nproc: int = 1  # processes of one search, the global batch split between them (distributed.py; --nproc)
    amp: str = "off"  # off | bf16: autocast the supernet's forward to bfloat16 (loss, α, parameters stay float32)
    skip_zero_ops: bool = True  # ops whose mixing weight is exactly 0 are not computed (one host sync per α update)
    # current: a skipped op still runs its forward (no autograd) in training passes, so that its BN running
    # statistics move as the reference's 0·op(x) moves them and nothing depends on the skip; stale: it does not
    # (about 2x faster weight steps once a sparse relaxation is one-hot), leaving α, weights and genotype as they
    # are but changing every eval-mode read of those statistics (the epoch-end supernet validation); refused where
    # the search itself reads them (SDARTS-ADV's attack, λ_max with hessian_bn_mode: eval)
    skipped_statistics: str = "current"
    # "auto" (the defaults below) is chosen per device and per case by speed.py, the fastest measured setting, and
    # recorded resolved in config.yaml, so a resumed run keeps its own settings. channels_last, mix_in_bn,
    # share_pools and fast_depthwise all false (recompute none) is the original DARTS code's float order.
    # none | edge | cell: keep only the inputs of each mixed edge (or each cell) for backward and recompute the
    # rest there (torch.utils.checkpoint): far fewer bytes held, one more forward of those pieces; auto: none, or
    # the first level that fits the machine's memory (memory.choose_recompute, resolved where the search runs)
    recompute: str = "auto"
    channels_last: bool | str = "auto"  # NHWC activations and conv weights (depthwise convs ~2x faster on this CPU)
    mix_in_bn: bool | str = "auto"  # each op's mixing weight as the affine scale of its final non-affine BN
    share_pools: bool | str = "auto"  # the edges leaving one state pool it once (each keeps its own BN)
    # the depthwise convolutions' gradients as forward convolutions where the shape says that is faster (dwconv.py)
    fast_depthwise: bool | str = "auto"
    # intra-op torch threads of this process; 0 or auto: chosen from the work's size each session (speed.py),
    # never more than the process has; the count used is recorded in environment.json
    threads: int | str = "auto"
    compile: str = "off"  # off | ops: torch.compile each candidate op (small repeated pieces; eager if unavailable)
    method_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    genotype: str = "darts_v2"
    dataset: str = "cifar10"
    data_dir: str | None = None
    preset: str | None = None
    seed: int = 0
    device: str = "cpu"
    epochs: int = 600
    batch_size: int = 96
    init_channels: int = 36
    layers: int = 20
    macro: str | None = None
    image_size: int | None = None
    limit_images: int | None = None
    limit_test: int | None = None
    # Training images held out (drawn by the seed) and scored every epoch: choose architectures or settings by this
    # validation accuracy, never by the test accuracy (which is reported, not selected on). 0: none.
    valid_images: int = 0
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    auxiliary: bool = True
    auxiliary_weight: float = 0.4
    cutout: int = 16  # side at 32x32, scaled with the image size
    drop_path: float = 0.2
    augment: bool = True
    skip_bad_images: bool = False  # folder: datasets: leave unreadable images out (counted) instead of refusing
    label_smoothing: float = 0.0
    # LHD's evaluation recipe (eval_recipe.py sets these for LHD genotypes): the discretization/network condition,
    # the epoch after which the reference's metric (best test accuracy of the later epochs) is also reported, and
    # the adaptive drop path as (last early epoch, early train-acc threshold, early step, late threshold, late step).
    condition: str = "base"
    report_best_after: int | None = None
    adaptive_drop_path: tuple[float, ...] | None = None
    # speed (none changes what is computed; "auto": chosen per device by speed.py and recorded resolved, as for a
    # search): NHWC activations, the depthwise gradients as forward convolutions (dwconv.py), intra-op threads
    channels_last: bool | str = "auto"
    fast_depthwise: bool | str = "auto"
    threads: int | str = "auto"


# Sizes only. `tiny` fits this project's 2-core CPU: a search finishes in minutes, not GPU-days.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "search": dict(epochs=6, batch_size=32, init_channels=8, layers=5, image_size=16, limit_images=2000),
        "train": dict(epochs=8, batch_size=64, init_channels=8, layers=5, image_size=16, limit_images=2000,
                      limit_test=1000),
    },
    "small": {
        "search": dict(epochs=20, batch_size=48, init_channels=12, layers=5, image_size=24, limit_images=10000),
        "train": dict(epochs=30, batch_size=96, init_channels=16, layers=8, image_size=24, limit_images=20000),
    },
    "paper": {"search": {}, "train": {}},
}


def preset_caps(cfg, field: str) -> bool:
    """Whether ``cfg``'s ``field`` (limit_images, limit_test) is its sizes preset's value, and so a cap: a data set
    with fewer images (a user's small folder under ``--preset tiny``) is used whole, where a limit the user gave
    that the data cannot fill is refused. Read from the recorded config, so a resume loads the same images."""
    kind = "train" if isinstance(cfg, TrainConfig) else "search"
    value = getattr(cfg, field)
    return value is not None and PRESETS.get(cfg.preset or "", {}).get(kind, {}).get(field) == value


@dataclass(frozen=True)
class Range:
    """The values a numeric field accepts: ``lo``/``hi`` bounds (None: unbounded), each closed unless marked open."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value) -> bool:
        if value != value:  # NaN
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def __str__(self) -> str:
        def num(x) -> str:
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {num(self.lo)}"
        return f"in {'(' if self.lo_open else '['}{num(self.lo)}, {num(self.hi)}{')' if self.hi_open else ']'}"


AT_LEAST_0, AT_LEAST_1, POSITIVE, FRACTION = Range(0), Range(1), Range(0, lo_open=True), Range(0, 1, hi_open=True)
# The range of every numeric field, by name in any config dataclass ("Class.field" for one class only): checked
# when a config is built, so a bad value is refused before anything is written. A field without an entry (fields
# others add) is not range-checked; None stays allowed for Optional fields.
FIELD_RANGES: dict[str, Range] = {
    "seed": Range(0, 2 ** 32 - 1), "epochs": AT_LEAST_1, "batch_size": AT_LEAST_1, "init_channels": AT_LEAST_1,
    "layers": AT_LEAST_1, "image_size": Range(3),  # two stride-2 reductions need 3 pixels
    "limit_images": AT_LEAST_1, "limit_test": AT_LEAST_1, "valid_images": AT_LEAST_0,
    "train_portion": Range(0, 1, lo_open=True, hi_open=True), "lr": AT_LEAST_0, "lr_min": AT_LEAST_0,
    "momentum": Range(0, 1), "weight_decay": AT_LEAST_0, "grad_clip": POSITIVE, "arch_lr": AT_LEAST_0,
    "arch_beta1": FRACTION, "arch_beta2": FRACTION, "arch_weight_decay": AT_LEAST_0, "mixed_lambda": AT_LEAST_0,
    "tau": POSITIVE, "drop_path": FRACTION, "cutout": AT_LEAST_0, "hessian_every": AT_LEAST_0,
    "hessian_batches": AT_LEAST_1, "leakage_every": AT_LEAST_0, "keep_checkpoints": AT_LEAST_0,
    "auxiliary_weight": AT_LEAST_0, "label_smoothing": Range(0, 1), "nproc": Range(1, 1024),
    "partial_channels": AT_LEAST_1, "report_best_after": AT_LEAST_0, "threads": Range(0, 4096),
    "TrainConfig.batch_size": Range(2),  # batch-norm layers (the auxiliary head's at 1x1) need two images
}
# What the supernet can recompute in backward (Supernet.configure), in the order recompute=auto tries them (fastest
# first, memory.choose_recompute); here, below both, because memory.py must not import the supernet (torch).
RECOMPUTE_LEVELS = ("none", "edge", "cell")
# String fields with a fixed set of values that nothing else checks before a run directory is written.
FIELD_CHOICES: dict[str, tuple[str, ...]] = {"lr_schedule": ("cosine", "constant"), "amp": ("off", "bf16"),
                                             "step_order": ("arch-first", "weight-first"),
                                             "hessian_relax": ("softmax", "method"),
                                             "hessian_bn_mode": ("train", "eval"),  # analysis/hessian.BN_MODES
                                             "recompute": ("auto", *RECOMPUTE_LEVELS),
                                             "compile": ("off", "ops"),
                                             "skipped_statistics": ("current", "stale")}
# Fields whose value may also be "auto" (speed.py and memory.py choose; "auto" is kept as text, not typed).
AUTO = "auto"
AUTO_FIELDS = frozenset({"channels_last", "mix_in_bn", "share_pools", "fast_depthwise", "threads"})


def field_range(cls, name: str) -> Range | None:
    return FIELD_RANGES.get(f"{cls.__name__}.{name}", FIELD_RANGES.get(name))


def check_field(cls, name: str, value: Any, what: str = "config field") -> Any:
    """``value`` (already typed) within ``name``'s declared range or choices, or one sentence naming the field,
    the value and what is allowed."""
    allowed = field_range(cls, name)
    if allowed is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value not in allowed:
        raise RobustDartsError(f"{what} {name!r} is {short(value)}, but must be {allowed}.")
    choices = FIELD_CHOICES.get(name)
    if choices is not None and isinstance(value, str) and value not in choices:
        raise RobustDartsError(f"{what} {name!r} is {short(value)}; choose one of: {', '.join(choices)}.")
    return value


def check_device(device: str, what: str = "config field") -> str:
    """A device this machine has: cpu, or cuda[:N] where CUDA is available with that many GPUs (mps likewise)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise RobustDartsError(f"{what} 'device' is {device!r}, which is not a device; use cpu or cuda[:N].")
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        have = f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no CUDA"
        raise RobustDartsError(f"{what} 'device' is {device!r}, but this machine has {have}; use --device cpu.")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise RobustDartsError(f"{what} 'device' is {device!r}, but this machine has no MPS; use --device cpu.")
    return device


def check_config(cfg, what: str = "config field"):
    """Every field of a built config within its declared range and choices, the device present, and the few
    combinations of fields that cannot run; returns ``cfg``. Called whenever a config is built or read."""
    cls = type(cfg)
    for f in fields(cls):
        check_field(cls, f.name, getattr(cfg, f.name), what)
    if getattr(cfg, "device", None) is not None:
        check_device(cfg.device, what)
    if getattr(cfg, "macro", None) == "imagenet" and (cfg.init_channels % 2 or (cfg.image_size or 32) < 24):
        raise RobustDartsError(f"the imagenet macro halves init_channels and divides the image by 8 in its stems; "
                               f"use an even init_channels (not {cfg.init_channels}) and image_size >= 24.")
    return cfg


@functools.lru_cache(maxsize=None)
def type_hints(cls) -> dict[str, Any]:
    """The resolved field types of a dataclass, once per class (``get_type_hints`` parses every annotation anew:
    resolving a large grid's configs spent most of its time there)."""
    return get_type_hints(cls)


def coerce_field(cls, name: str, value: Any, what: str = "config field") -> Any:
    """Turn a CLI/YAML value into the declared type of dataclass ``cls``'s field ``name``, or say which is wrong.

    Exact conversions only: a whole float (3.0, 1e3) becomes an int, 1.7 does not; true is not a number and 2 is
    not a boolean; NaN and infinity are not numbers here. A silent truncation would run a config nobody asked for."""
    hint = type_hints(cls)[name]
    if value is None:
        return None
    if name in AUTO_FIELDS and isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    text = str(hint)
    optional = "None" in text
    try:
        if isinstance(value, str) and value.lower() == "none" and optional:
            return None
        if hint is bool or text.startswith("bool"):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
                return bool(value)
            raise ValueError(value)
        if hint is int or text.startswith("int"):
            return _exact_int(value)
        if hint is float or text.startswith("float"):
            return _finite(value)
        if text.startswith("dict"):
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
        if text.startswith(("tuple", "list")):
            if not isinstance(value, (list, tuple)):
                raise ValueError(value)
            return tuple(_finite(v) for v in value)
        if isinstance(value, (dict, list, tuple, bool)):
            raise ValueError(value)
        return str(value) if not isinstance(value, str) else value
    except (TypeError, ValueError, OverflowError):
        base = text.split(" | ")[0].replace("<class '", "").rstrip("'>")
        words = _TYPE_WORDS.get(base, base) + (" or none" if optional else "") + \
            (" or auto" if name in AUTO_FIELDS else "")
        raise RobustDartsError(f"{what} {name!r} needs a value of type {base} ({words}), got {short(value)}.") from None


_TYPE_WORDS = {"int": "a whole number", "float": "a finite number", "bool": "true or false", "str": "a string",
               "dict": "a mapping", "tuple[float, ...]": "a list of numbers"}


def _exact_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            value = float(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(value)


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def build(cls, overrides: dict[str, Any] | None = None, kind: str = "search", base: dict[str, Any] | None = None):
    """A config of ``cls``: its defaults, then ``base`` (a method's paper settings), then the preset's sizes, then
    explicit overrides (None = unset; the string "none" sets an Optional field to None). Every value is typed and
    range-checked here, before any caller can write a file with it."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    names = {f.name for f in fields(cls)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise RobustDartsError(f"unknown config field {bad[0]!r}; fields are: {', '.join(sorted(names))}.")
    overrides = {k: check_field(cls, k, coerce_field(cls, k, v)) for k, v in overrides.items()}
    values: dict[str, Any] = dict(base or {})
    preset = overrides.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise unknown("preset", preset, PRESETS)
        values.update(PRESETS[preset][kind])
    values.update(overrides)
    if "dataset" in values:
        from .data.own import canonical_name, is_own
        if is_own(values["dataset"]):  # recorded with an absolute path: a resume from elsewhere finds the data
            values["dataset"] = canonical_name(values["dataset"])
    return check_config(cls(**{k: coerce_field(cls, k, v) for k, v in values.items()}))


def to_yaml(cfg) -> str:
    return yaml.safe_dump(asdict(cfg), sort_keys=False)


def parse_value(text: str) -> Any:
    """A command-line value as a YAML scalar, with numbers YAML 1.1 leaves as text (``1e-3``) read as floats."""
    try:
        value = yaml.safe_load(text) if text else None
    except (yaml.YAMLError, ValueError, RecursionError):  # "[", a 5,000-digit integer: text, refused by type later
        value = text
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        if math.isfinite(number):  # words float() also takes ("nan", "inf", "infinity") stay text
            return number
    return value


def read_fields(cls, path: str | Path) -> dict[str, Any]:
    """The fields a YAML file sets, typed and range-checked against ``cls``, errors naming the file (only those
    fields: a field the file leaves out stays unset, so a method preset's or a preset's value is not overwritten by
    the dataclass default). An explicit null of an Optional field comes back as "none", which ``build`` turns into
    None over any preset's value (a plain None would mean unset); a null elsewhere is refused."""
    path = Path(path)
    data = read_yaml_file(path, f"config file {path}", "a config; write field: value lines")
    if not isinstance(data, dict):
        raise RobustDartsError(f"config file {path} must hold a mapping of field: value, not {type(data).__name__}.")
    names = {f.name for f in fields(cls)}
    bad = sorted(set(map(str, data)) - names)
    if bad:
        raise RobustDartsError(f"config file {path} has unknown field {bad[0]!r}; fields are: "
                               f"{', '.join(sorted(names))}.")
    hints = type_hints(cls)
    out = {}
    for k, v in data.items():
        if v is None:
            if "None" not in str(hints[k]):
                raise RobustDartsError(f"config file {path} sets {k!r} to null; give it a value or leave it out.")
            out[k] = "none"
        else:
            out[k] = check_field(cls, k, coerce_field(cls, k, v, f"config file {path}: field"),
                                 f"config file {path}: field")
    return out


def read_yaml_file(path: Path, where: str, shape: str) -> Any:
    """The YAML document of a user's file (``yaml.safe_load``: no tags run), or one sentence naming ``where`` (e.g.
    "config file X") and what is wrong: missing, unreadable, not YAML, or nested too deeply to be ``shape``."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RobustDartsError(f"{where} does not exist; pass an existing YAML file.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RobustDartsError(f"cannot read {where} ({getattr(e, 'strerror', None) or e}); pass a readable YAML "
                               f"file.") from None
    except yaml.YAMLError as e:
        raise RobustDartsError(f"{where} is not valid YAML ({str(e).splitlines()[0]}); fix its syntax.") from None
    except RecursionError:
        raise RobustDartsError(f"{where} is nested too deeply to be {shape}.") from None


# What a run recorded before a field existed computed with: the stock path. A run resumed by a later version keeps
# computing what it computed (bit-exact resume), whatever "auto" resolves to for new runs now.
RECORDED_BEFORE = {"channels_last": False, "mix_in_bn": False, "share_pools": False, "fast_depthwise": False,
                   "recompute": "none"}


def load_yaml(cls, path: str | Path):
    """A complete config from a YAML file (a run's config.yaml), checked as ``build`` checks one; a speed field the
    file does not record (written before the field existed) takes its ``RECORDED_BEFORE`` value."""
    values = {k: coerce_field(cls, k, v) for k, v in read_fields(cls, path).items()}
    names = {f.name for f in fields(cls)}
    values.update({k: v for k, v in RECORDED_BEFORE.items() if k in names and k not in values})
    return check_config(cls(**values), f"config file {path}: field")
