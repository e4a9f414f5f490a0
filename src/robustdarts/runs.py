"""Run directories: resolved config, metrics JSONL, per-epoch architecture archive, genotype, checkpoints.

Every write is atomic (temp file in the same directory, then ``os.replace``), so an interrupted write leaves the
previous file intact. Checkpoints hold tensors and plain data only and load with ``weights_only=True``.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .atomic import atomic_write, atomic_write_text  # re-exported: methods and examples import them from here
from .config import load_yaml, to_yaml
from .errors import RobustDartsError

CHECKPOINT_FORMAT = "robustdarts-checkpoint-v1"


def save_tensors(path: Path, obj: dict) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def load_tensors(path: Path, what: str = "checkpoint") -> dict:
    """Load a robustdarts tensor file with ``weights_only=True``; corrupt or foreign files are a user error."""
    path = Path(path)
    if not path.exists():
        raise RobustDartsError(f"{what} {path} does not exist; check the run directory.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RobustDartsError(f"{what} {path} is corrupted or not a robustdarts file ({type(e).__name__}); "
                               f"restore it from a copy or start a new run.") from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise RobustDartsError(f"{what} {path} was not written by robustdarts (no '{CHECKPOINT_FORMAT}' tag); "
                               f"point to a robustdarts run directory.")
    return obj


def environment() -> dict[str, Any]:
    return {"robustdarts": __version__, "torch": torch.__version__, "python": sys.version.split()[0],
            "platform": platform.platform(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}


class RunDir:
    """One run's directory. ``kind`` is 'search' or 'train'."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # files
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def archive_path(self) -> Path:
        return self.path / "archive.pt"

    @property
    def genotype_path(self) -> Path:
        return self.path / "genotype.json"

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.path / "checkpoints" / f"epoch_{epoch:04d}.pt"

    # creation / resume
    def create(self, cfg, overwrite: bool = False) -> None:
        if self.checkpoint_path.exists() and not overwrite:
            raise RobustDartsError(f"run directory {self.path} already holds a run; resume it with --resume "
                                   f"{self.path} or choose another --out.")
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_path, to_yaml(cfg))
        atomic_write_text(self.path / "environment.json", json.dumps(environment(), indent=2))
        if self.metrics_path.exists():
            self.metrics_path.unlink()

    def load_config(self, cls):
        if not self.config_path.exists():
            raise RobustDartsError(f"{self.path} is not a robustdarts run directory (no config.yaml); "
                                   f"pass the directory that a search or train command created.")
        return load_yaml(cls, self.config_path)

    # metrics
    def append_metrics(self, record: dict) -> None:
        # Rewritten whole (small) so that a crash never leaves half a line behind.
        lines = self.metrics_path.read_text() if self.metrics_path.exists() else ""
        atomic_write_text(self.metrics_path, lines + json.dumps(record, default=float) + "\n")

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, epochs_done: int) -> None:
        """Drop records of epochs after the checkpoint (written just before an interruption)."""
        kept = [r for r in self.read_metrics() if r.get("epoch", -1) < epochs_done]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    # checkpoints
    def save_checkpoint(self, state: dict, keep_epoch: int | None = None, keep_last: int = 0) -> None:
        state = {"format": CHECKPOINT_FORMAT, **state}
        save_tensors(self.checkpoint_path, state)
        if keep_epoch is not None and keep_last > 0:
            save_tensors(self.epoch_checkpoint(keep_epoch), state)
            old = self.epoch_checkpoint(keep_epoch - keep_last)
            if old.exists():
                old.unlink()

    def load_checkpoint(self, epoch: int | None = None) -> dict:
        path = self.checkpoint_path if epoch is None else self.epoch_checkpoint(epoch)
        return load_tensors(path)

    # archive of α/β per epoch
    def save_archive(self, archive: dict[int, dict[str, torch.Tensor]], meta: dict | None = None) -> None:
        save_tensors(self.archive_path, {"format": CHECKPOINT_FORMAT, "epochs": {str(k): v for k, v in archive.items()},
                                         "meta": meta or {}})

    def load_archive(self) -> tuple[dict[int, dict[str, torch.Tensor]], dict]:
        obj = load_tensors(self.archive_path, "architecture archive")
        return {int(k): v for k, v in obj["epochs"].items()}, obj.get("meta", {})
