"""Typed configs as data: dataclasses, YAML on disk, any field overridable by name.

Defaults are the DARTS paper's (spec D §1.4, §1.7). A preset changes sizes only (cells, channels, image size, batch,
epochs, images), never the algorithm; a method preset (methods/) changes the algorithm's own knobs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .errors import RobustDartsError, unknown


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
    # search-time regularization (R-DARTS DP ramps drop path and cutout together)
    drop_path: float = 0.0
    cutout: int = 0  # side at 32x32; crop padding and cutout scale with the image size
    augment: bool = True  # random crop + flip (SVHN in LHD searches without)
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
    label_smoothing: float = 0.0


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


def coerce_field(cls, name: str, value: Any, what: str = "config field") -> Any:
    """Turn a CLI/YAML value into the declared type of dataclass ``cls``'s field ``name``, or say which is wrong."""
    hint = get_type_hints(cls)[name]
    if value is None:
        return None
    text = str(hint)
    try:
        if hint is bool or text.startswith("bool"):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(value, str) and value.lower() == "none" and "None" in text:
            return None
        if hint is int or text.startswith("int"):
            return int(value)
        if hint is float or text.startswith("float"):
            return float(value)
        if text.startswith("dict"):
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
        if text.startswith(("tuple", "list")):
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, (int, float)) for v in value):
                raise ValueError(value)
            return tuple(float(v) for v in value)
        return str(value) if not isinstance(value, str) else value
    except (TypeError, ValueError):
        raise RobustDartsError(f"{what} {name!r} needs a value of type {text}, got {value!r}.") from None


def build(cls, overrides: dict[str, Any] | None = None, kind: str = "search", base: dict[str, Any] | None = None):
    """A config of ``cls``: its defaults, then ``base`` (a method's paper settings), then the preset's sizes, then
    explicit overrides (None = unset)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    names = {f.name for f in fields(cls)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise RobustDartsError(f"unknown config field {bad[0]!r}; fields are: {', '.join(sorted(names))}.")
    values: dict[str, Any] = dict(base or {})
    preset = overrides.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise unknown("preset", preset, PRESETS)
        values.update(PRESETS[preset][kind])
    values.update(overrides)
    return cls(**{k: coerce_field(cls, k, v) for k, v in values.items()})


def to_yaml(cfg) -> str:
    return yaml.safe_dump(asdict(cfg), sort_keys=False)


def parse_value(text: str) -> Any:
    """A command-line value as a YAML scalar, with numbers YAML 1.1 leaves as text (``1e-3``) read as floats."""
    value = yaml.safe_load(text) if text else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        if math.isfinite(number):  # words float() also takes ("nan", "inf", "infinity") stay text
            return number
    return value


def read_fields(cls, path: str | Path) -> dict[str, Any]:
    """The fields a YAML file sets, checked against ``cls`` (only those: a field the file leaves out stays unset,
    so a method preset's or a preset's value is not overwritten by the dataclass default)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RobustDartsError(f"config file {path} does not exist; pass an existing YAML file.") from None
    except yaml.YAMLError as e:
        raise RobustDartsError(f"config file {path} is not valid YAML ({str(e).splitlines()[0]}); fix its syntax.") from None
    if not isinstance(data, dict):
        raise RobustDartsError(f"config file {path} must hold a mapping of field: value, not {type(data).__name__}.")
    names = {f.name for f in fields(cls)}
    bad = sorted(set(data) - names)
    if bad:
        raise RobustDartsError(f"config file {path} has unknown field {bad[0]!r}; fields are: {', '.join(sorted(names))}.")
    return {k: coerce_field(cls, k, v) for k, v in data.items()}


def load_yaml(cls, path: str | Path):
    return cls(**read_fields(cls, path))
