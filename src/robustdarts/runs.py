"""Run directories: resolved config, metrics JSONL, per-epoch architecture archive, genotype, checkpoints.

Every write is atomic (temp file in the same directory, then ``os.replace``), so an interrupted write leaves the
previous file intact; the temp file a killed process leaves behind is removed when the run is next opened for
writing. Checkpoints hold tensors and plain data only and load with ``weights_only=True``.

One reader per file kind, each checking the structure it returns and naming the file and what is wrong:
``load_config`` (config.yaml), ``load_checkpoint`` (checkpoint.pt), ``load_archive`` (archive.pt),
``read_metrics`` (metrics.jsonl), ``Genotype.load`` (genotype.json). A run directory has one writer: ``lock``
takes an exclusive ``flock`` on its ``.lock`` file for the life of the process.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from ._version import __version__
from .atomic import atomic_write, atomic_write_text  # re-exported: methods and examples import them from here
from .config import load_yaml, to_yaml
from .errors import RobustDartsError

CHECKPOINT_FORMAT = "robustdarts-checkpoint-v1"
LOCK_NAME = ".lock"
# What a checkpoint of each run kind must hold (recipes and later versions may add keys; those are optional).
CHECKPOINT_KEYS = {
    "search": ("epoch", "supernet", "arch", "w_opt", "a_opt", "train_stream", "val_stream", "rng", "method", "wall"),
    "train": ("epoch", "net", "opt", "stream", "rng", "wall"),
}
STREAM_KEYS = ("epoch", "position", "order", "generator", "num_images", "batch_size")


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


MAX_METRICS_BYTES = 256 * 2**20  # ~100,000 epochs of records; more is not a metrics file


def read_text_file(path: Path, limit: int) -> str:
    """A regular file's UTF-8 text, at most ``limit`` bytes. A run file is never a device, FIFO or directory: one
    planted as a symlink to /dev/zero (endless) or a FIFO (blocks forever on open) is refused before reading, and
    the size is bounded while reading (a file can grow after the check). Opened non-blocking, so a FIFO never
    blocks the open itself."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise _bad(path, f"cannot be opened ({e.strerror or type(e).__name__})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _bad(path, "is not a regular file (a device, FIFO or directory, perhaps through a symlink)")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise _bad(path, f"cannot be read ({e.strerror or type(e).__name__})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise _bad(path, f"is larger than {limit // 2**20} MiB, too large for a run file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(path, "cannot be read as text (UnicodeDecodeError)") from None


def _bad(path: Path, what: str) -> RobustDartsError:
    return RobustDartsError(f"{path} {what}; restore it from a copy or start a new run.")


def check_checkpoint(obj: dict, path: Path, kind: str) -> dict:
    """The keys and plain types a resume reads from a ``kind`` checkpoint, so that a tagged but damaged file is
    one sentence naming it rather than a KeyError or a torch RuntimeError halfway through restoring a run."""
    missing = [k for k in CHECKPOINT_KEYS[kind] if k not in obj]
    if missing:
        raise _bad(path, f"lacks {', '.join(map(repr, missing))}")
    epoch = obj["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise _bad(path, f"holds epoch {epoch!r}, not a count of finished epochs")
    if isinstance(obj["wall"], bool) or not isinstance(obj["wall"], (int, float)):
        raise _bad(path, f"holds wall time {obj['wall']!r}, not a number")
    rng = obj["rng"]
    expected = torch.get_rng_state()
    if not isinstance(rng, torch.Tensor) or rng.dtype != expected.dtype or rng.shape != expected.shape:
        raise _bad(path, "holds no valid random-generator state under 'rng'")
    for key in ("supernet", "arch", "w_opt", "a_opt", "net", "opt", "method"):
        if key in CHECKPOINT_KEYS[kind] and not isinstance(obj[key], dict):
            raise _bad(path, f"holds a {type(obj[key]).__name__} under {key!r}, not a state dict")
    for key in ("train_stream", "val_stream", "stream"):
        if key not in CHECKPOINT_KEYS[kind]:
            continue
        state = obj[key]
        if not isinstance(state, dict) or any(k not in state for k in STREAM_KEYS) or not all(
                isinstance(state[k], torch.Tensor) for k in ("order", "generator")):
            raise _bad(path, f"holds no valid batch-stream state under {key!r}")
    return obj


def check_archive(obj: dict, path: Path, space=None) -> dict[int, dict[str, torch.Tensor]]:
    """{epoch: {name: tensor}} of an archive, every epoch holding the α of ``space`` (when given) in its shapes: an
    archive from another space must never be discretized as this one."""
    epochs = obj.get("epochs")
    if not isinstance(epochs, dict) or not isinstance(obj.get("meta", {}), dict):
        raise _bad(path, "holds no per-epoch 'epochs' mapping")
    meta = obj.get("meta", {})
    if space is not None and meta.get("space", space.name) != space.name:
        raise RobustDartsError(f"{path} holds the α of space {meta['space']!r}, but the run's config.yaml says "
                               f"{space.name!r}; put the archive back with its own run.")
    out = {}
    for key, values in epochs.items():
        try:
            epoch = int(key)
        except (TypeError, ValueError):
            raise _bad(path, f"has epoch key {key!r}, not an integer") from None
        if not isinstance(values, dict) or not all(isinstance(v, torch.Tensor) for v in values.values()):
            raise _bad(path, f"epoch {epoch} holds no tensors")
        if space is not None:
            for cell in space.cell_types:
                alpha = values.get(f"alpha/{cell}")
                if alpha is None or tuple(alpha.shape) != space.alpha_shape(cell):
                    got = "none" if alpha is None else tuple(alpha.shape)
                    raise RobustDartsError(f"{path} epoch {epoch} holds α of shape {got} for the {cell} cell, "
                                           f"but space {space.name!r} has {space.alpha_shape(cell)}; the archive "
                                           f"belongs to another run.")
            extra = sorted(k for k in values if k.startswith("alpha/") and k[6:] not in space.cell_types)
            if extra:
                raise _bad(path, f"epoch {epoch} holds {extra[0]!r}, which space {space.name!r} does not have")
        if not all(torch.isfinite(v).all() for v in values.values() if v.is_floating_point()):
            raise _bad(path, f"epoch {epoch} holds NaN or infinite architecture values")
        out[epoch] = values
    return out


# Run directories this process holds the lock of: resolved path -> (open lock file descriptor, run kind).
_LOCKS: dict[Path, tuple[int, str]] = {}


def held_runs() -> dict[Path, str]:
    """The run directories this process writes (path -> 'search' or 'train'), most recent last."""
    return {p: kind for p, (_, kind) in _LOCKS.items()}


def release(path: str | Path) -> None:
    """Give up this process's lock of a run directory (the lock otherwise lasts until the process exits)."""
    entry = _LOCKS.pop(Path(path).resolve(), None)
    if entry is not None:
        os.close(entry[0])


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """What a run's numbers depend on besides its config. On CPU a run is bit-exact only under the same torch
    version, thread count and kernel ISA (``cpu_capability``: the vector width torch dispatches to; measured on the
    collapse study's DARTS seed 2, one epoch reads 44.5 / 54.9 / 51.3 % validation accuracy under AVX512 / AVX2 /
    scalar kernels, since tiny rounding differences grow through training): :func:`numerics_drift` compares these."""
    return {"robustdarts": __version__, "torch": torch.__version__, "python": sys.version.split()[0],
            "platform": platform.platform(), "cpu": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}


NUMERICS_KEYS = ("torch", "cpu_capability", "threads")  # the environment a CPU run's floating-point path depends on


def numerics_drift(recorded: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, tuple]:
    """The numerics keys whose recorded value (a run's environment.json) differs from ``current``'s (this process
    by default): ``{key: (recorded, current)}``; keys a record predates are not compared."""
    current = environment() if current is None else current
    return {k: (recorded[k], current.get(k)) for k in NUMERICS_KEYS
            if k in recorded and recorded[k] != current.get(k)}


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
    def check_new(self) -> None:
        """Refuse a directory that already holds a run (a checkpoint): a new run would overwrite it."""
        if self.checkpoint_path.exists():
            raise RobustDartsError(f"run directory {self.path} already holds a run; resume it with --resume "
                                   f"{self.path} or choose another --out.")

    def create(self, cfg, overwrite: bool = False) -> None:
        """Start a run here: lock the directory for this process, then write the config (checked again under the
        lock, since another writer may have finished a run here meanwhile)."""
        if not overwrite:
            self.check_new()
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock("train" if type(cfg).__name__ == "TrainConfig" else "search")
        if not overwrite:
            self.check_new()
        self.remove_temp_files()
        atomic_write_text(self.config_path, to_yaml(cfg))
        self.record_space(getattr(cfg, "space", None))
        atomic_write_text(self.path / "environment.json", json.dumps(environment(), indent=2))
        if self.metrics_path.exists():
            self.metrics_path.unlink()

    def lock(self, kind: str = "search") -> None:
        """Hold an exclusive lock on this directory until the process exits, or refuse in one sentence when another
        process holds it. ``flock`` locks die with their process, so the lock of a killed run is stale by
        construction: its ``.lock`` file (holding the dead pid) is simply locked again. Several objects of one
        process may write the same run in turn (tests, resume after stop_after); another process may not."""
        path = self.path.resolve()
        if path in _LOCKS:
            return
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return  # a file system without flock: run unlocked rather than not at all
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise RobustDartsError(f"run directory {self.path} is in use by another robustdarts process{pid}; "
                                   f"wait for it to finish or choose another --out.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _LOCKS[path] = (fd, kind)

    def remove_temp_files(self) -> list[Path]:
        """Delete the temp files of atomic writes that a killed process left here (only the writer holding the lock
        calls this, so no live write owns them)."""
        removed = []
        for folder in (self.path, self.path / "checkpoints"):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)
                    removed.append(tmp)
        return removed

    @property
    def space_path(self) -> Path:
        return self.path / "space.yaml"

    def record_space(self, name: str | None) -> None:
        """Write a user's space definition (a YAML space) beside config.yaml, which names it only: derive, train,
        show and --resume then work from the run alone, even once the user's file is gone or changed."""
        from .spaces.registry import BUILTIN_SPACES, SPACES

        if name is not None and name not in BUILTIN_SPACES and name in SPACES:
            atomic_write_text(self.space_path, yaml.safe_dump(SPACES[name].definition(), sort_keys=False,
                                                               default_flow_style=None))

    def register_space(self) -> None:
        """Register the space this run recorded (space.yaml), if any, under its name."""
        if self.space_path.is_file():
            from .spaces.registry import load_space
            load_space(self.space_path, recorded=True)  # a plugin op not installed here fails only when built

    def load_config(self, cls):
        """config.yaml, typed and range-checked (load_yaml); errors name the file. A user's space that the run
        recorded is registered, so that the config's space name resolves in this process too."""
        if not self.path.is_dir():
            why = "a file" if self.path.exists() else "it does not exist"
            raise RobustDartsError(f"{self.path} is not a robustdarts run directory ({why}); "
                                   f"pass the directory that a search or train command created.")
        if not self.config_path.is_file():
            raise RobustDartsError(f"{self.path} is not a robustdarts run directory (no config.yaml); "
                                   f"pass the directory that a search or train command created.")
        try:
            cfg = load_yaml(cls, self.config_path)
        except RobustDartsError:
            self._check_kind(cls)  # a search run given where a training run belongs (or back): say that instead
            raise
        self.register_space()
        return cfg

    def _check_kind(self, cls) -> None:
        """When config.yaml is a whole config of the other run kind, one sentence saying which kind this run is
        (``train --resume SEARCH_RUN`` used to say "unknown field 'amp'")."""
        from .config import SearchConfig, TrainConfig, read_fields

        if cls not in (SearchConfig, TrainConfig):
            return
        other = TrainConfig if cls is SearchConfig else SearchConfig
        try:
            read_fields(other, self.config_path)
        except RobustDartsError:
            return  # not the other kind either: the error about the file stands
        this, that = ("search", "training") if other is SearchConfig else ("training", "search")
        command = f"robustdarts search --resume {self.path}" if other is SearchConfig else \
            f"robustdarts train --resume {self.path}"
        raise RobustDartsError(f"{self.path} is a {this} run, not a {that} run; continue it with {command}.") from None

    def record_resume(self, device: str = "cpu") -> dict[str, tuple]:
        """Called when a resumed run goes on (under the lock): append this session's environment to
        environment.json's ``resumed`` list and warn in one sentence when it changes the numerics the run started with (on CPU: torch,
        thread count, kernel ISA; on a GPU: torch), since the resumed run then is not bit-identical to an
        uninterrupted one. Returns the drift ``{key: (recorded, now)}``."""
        path = self.path / "environment.json"
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError):
            recorded = None
        if not isinstance(recorded, dict):
            recorded = {}  # a run from before environment.json, or a damaged one: nothing to compare against
        now = environment()
        drift = numerics_drift(recorded, now)
        if not str(device).startswith("cpu"):
            drift = {k: v for k, v in drift.items() if k == "torch"}
        if drift:
            what = ", ".join(f"{k} {a} → {b}" for k, (a, b) in drift.items())
            warnings.warn(f"resuming {self.path} under different numerics than it started with ({what}); the rest "
                          f"of the run is not bit-identical to an uninterrupted run (set ATEN_CPU_CAPABILITY / the "
                          f"thread count back to match, or accept the difference).", stacklevel=3)
        if recorded:
            recorded.setdefault("resumed", []).append({k: now[k] for k in (*NUMERICS_KEYS, "cpu", "platform")})
            atomic_write_text(path, json.dumps(recorded, indent=2))
        return drift

    # metrics
    def append_metrics(self, record: dict) -> None:
        # Rewritten whole (small) so that a crash never leaves half a line behind.
        lines = self.metrics_path.read_text() if self.metrics_path.exists() else ""
        atomic_write_text(self.metrics_path, lines + json.dumps(record, default=float) + "\n")

    def read_metrics(self) -> list[dict]:
        """metrics.jsonl: one JSON object per line, each with its integer epoch; anything else names the line."""
        path = self.metrics_path
        if not path.exists():
            return []
        text = read_text_file(path, MAX_METRICS_BYTES)
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                raise _bad(path, f"line {number} is not a JSON record") from None
            epoch = record.get("epoch") if isinstance(record, dict) else None
            if isinstance(epoch, bool) or not isinstance(epoch, int):
                raise _bad(path, f"line {number} is not a metrics record with an integer 'epoch'")
            records.append(record)
        return records

    def check_agrees(self, state: dict, records: list[dict], archive_epochs=None) -> None:
        """Refuse to resume from files that disagree on how far the run got. After its checkpoint of ``epoch``
        finished epochs, a run leaves a record of every epoch below it in metrics.jsonl, the last one (epoch - 1)
        carrying the checkpoint's wall time, and, a search, the α of every such epoch in archive.pt; an
        interruption between those writes adds at most a record and an α of ``epoch`` itself (dropped on resume).
        Anything else (metrics.jsonl cut short, an archive of fewer epochs, a checkpoint's epoch edited by hand)
        would continue from a state no run had, so it is named here with each file's epoch."""
        epoch = int(state["epoch"])
        allowed_last = (epoch - 1 if epoch else None, epoch)  # the checkpoint's last epoch, or one more

        def ends(epochs: list[int]) -> str | None:  # what is wrong with a file's epochs (in file order), if anything
            missing = sorted(set(range(epoch)) - set(epochs))
            if missing:
                return f"lacks epoch {missing[0]}"
            return None if (epochs[-1] if epochs else None) in allowed_last else f"ends at epoch {epochs[-1]}"

        problem = ends([r["epoch"] for r in records])
        problem = problem and f"{self.metrics_path.name} {problem}"
        if problem is None and epoch > 0:
            wall = next((r.get("wall_seconds") for r in reversed(records) if r["epoch"] == epoch - 1), None)
            if isinstance(wall, (int, float)) and not isinstance(wall, bool) and wall != state["wall"]:
                problem = f"{self.metrics_path.name}'s epoch {epoch - 1} was recorded with another checkpoint (its " \
                          f"wall time differs)"
        if problem is None and archive_epochs is not None:
            problem = ends(sorted(e for e in archive_epochs if e >= 0))
            problem = problem and f"{self.archive_path.name} {problem}"
        if problem is not None:
            after = f"epoch {epoch - 1}" if epoch else "no epoch"
            raise RobustDartsError(f"the files of {self.path} disagree: {self.checkpoint_path.name} was saved after "
                                   f"{after} but {problem}; resuming would continue from a state no run had, so "
                                   f"restore the files from a copy or start a new run.")

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

    def load_checkpoint(self, epoch: int | None = None, kind: str | None = None) -> dict:
        """checkpoint.pt (or a kept epoch's), with the structure a ``kind`` ('search', 'train') resume reads."""
        path = self.checkpoint_path if epoch is None else self.epoch_checkpoint(epoch)
        if epoch is None and not path.exists() and self.config_path.exists():
            raise RobustDartsError(f"{self.path} was stopped before its first checkpoint, so there is nothing to "
                                   f"resume; run the same command again with --out {self.path} to start it over.")
        obj = load_tensors(path)
        return check_checkpoint(obj, path, kind) if kind is not None else obj

    # archive of α/β per epoch
    def save_archive(self, archive: dict[int, dict[str, torch.Tensor]], meta: dict | None = None) -> None:
        save_tensors(self.archive_path, {"format": CHECKPOINT_FORMAT, "epochs": {str(k): v for k, v in archive.items()},
                                         "meta": meta or {}})

    def load_archive(self, space=None) -> tuple[dict[int, dict[str, torch.Tensor]], dict]:
        """archive.pt as ({epoch: values}, meta), checked to hold α of ``space`` (a Space or name) when given."""
        if space is not None:
            from .spaces import get_space
            space = get_space(space)
        obj = load_tensors(self.archive_path, "architecture archive")
        return check_archive(obj, self.archive_path, space), obj.get("meta", {})
