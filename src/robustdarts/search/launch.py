"""Starting a multi-process search: ``robustdarts search --nproc N`` spawns the ranks, ``torchrun`` starts them
itself; either way each rank runs ``Search`` with its ``distributed.Shard`` (the collectives live there)."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path

import torch

from ..distributed import Shard, backend_for, check_world, init_from_env, under_torchrun
from ..errors import RobustDartsError
from .loop import Search


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_search(cfg, out, *, resume: bool = False, console=None, progress: bool = True, log: str | None = None):
    """The CLI's search object for ``cfg`` (or the run in ``out`` with ``resume``): a ``Search`` in this process,
    one rank of a torchrun job (rank 0 shows progress), or a ``SpawnedSearch`` of ``cfg.nproc`` processes."""
    import dataclasses

    from ..config import SearchConfig
    from ..runs import RunDir

    if resume:
        cfg = RunDir(out).load_config(SearchConfig)
    if under_torchrun():
        world = int(os.environ["WORLD_SIZE"])
        if not resume and cfg.nproc == 1:
            cfg = dataclasses.replace(cfg, nproc=world)
        if cfg.nproc != world:
            raise RobustDartsError(f"the search needs nproc={cfg.nproc} processes but torchrun started {world}; "
                                   f"use torchrun --nproc-per-node {cfg.nproc}.")
        shard = init_from_env(cfg.device)
        show = progress and shard.writes
        console = console if shard.writes else None
        if resume:
            return Search.resume(out, console=console, progress=show, shard=shard)
        return Search(cfg, out, console=console, progress=show, shard=shard)
    if cfg.nproc > 1:
        return SpawnedSearch(None if resume else cfg, None if resume else out, resume=out if resume else None,
                             log=log, progress=progress)
    if resume:
        return Search.resume(out, console=console, progress=progress)
    return Search(cfg, out, console=console, progress=progress)


class SpawnedSearch:
    """A search run by N spawned processes, with the attributes the CLI reads from a ``Search`` after ``run()``:
    ``run_dir``, ``cfg``, ``epoch``, ``num_weight_parameters``. ``log`` names a run logger that rank 0 opens."""

    logs_itself = True  # the CLI opens no logger of its own for it
    shard = Shard()  # this (parent) process reports the result

    def __init__(self, cfg=None, out: str | Path | None = None, *, resume: str | Path | None = None,
                 log: str | None = None, progress: bool = True, threads: int | None = None):
        from ..config import SearchConfig
        from ..runs import RunDir

        if resume is not None:
            out = resume
            cfg = RunDir(resume).load_config(SearchConfig)
        check_world(cfg, cfg.nproc)
        self.cfg, self.resuming, self.log, self.progress = cfg, resume is not None, log, progress
        self.run_dir = RunDir(out)
        if not self.resuming:
            self.run_dir.check_new()  # here, before N processes load data
        self.threads = threads or max(1, torch.get_num_threads() // cfg.nproc)
        self.epoch, self.num_weight_parameters = 0, 0

    def run(self):
        import torch.multiprocessing as mp

        from ..genotype import Genotype

        with tempfile.TemporaryDirectory(prefix="robustdarts-ranks-") as tmp:
            result_path = Path(tmp) / "rank0.json"
            args = (self.cfg.nproc, _free_port(), self.cfg, str(self.run_dir.path), self.resuming, self.log,
                    self.progress, self.threads, str(result_path))
            try:
                mp.start_processes(_spawned_rank, args=args, nprocs=self.cfg.nproc, join=True, start_method="spawn")
            except Exception as e:  # a rank died: its own one-sentence error if it left one, else torch's report
                message = _read_result(result_path).get("error")
                if message:
                    raise RobustDartsError(message) from None
                raise RobustDartsError(f"a search process failed ({str(e).strip().splitlines()[-1][:200]}); "
                                       f"its traceback is printed above.") from None
            result = _read_result(result_path)
        if "error" in result:
            raise RobustDartsError(result["error"])
        self.epoch, self.num_weight_parameters = result["epoch"], result["params"]
        return Genotype.from_dict(result["genotype"])


def _read_result(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _spawned_rank(rank: int, world: int, port: int, cfg, out: str, resuming: bool, log: str | None,
                  progress: bool, threads: int, result_path: str) -> None:
    """One spawned process: join the group, run the search as rank ``rank``, rank 0 reports to the parent."""
    import torch.distributed as dist

    torch.set_num_threads(threads)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    shard = Shard(rank, world)
    if shard.device(cfg.device).type == "cuda":
        torch.cuda.set_device(shard.device(cfg.device))
    dist.init_process_group(backend_for(cfg.device), rank=rank, world_size=world)
    try:
        result = run_rank(shard, cfg, out, resuming=resuming, log=log, progress=progress)
    except RobustDartsError as e:
        result = {"error": str(e)}
        if rank == 0:
            Path(result_path).write_text(json.dumps(result))
        raise SystemExit(2)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        Path(result_path).write_text(json.dumps(result))


def run_rank(shard: Shard, cfg, out, *, resuming: bool = False, log: str | None = None, progress: bool = True,
             console=None) -> dict:
    """Run (or resume) the search in ``out`` as ``shard``'s rank; rank 0 opens the run logger. Returns what the
    CLI reports: the genotype, the epochs done and the supernet's size."""
    from rich.console import Console

    show = progress and shard.writes
    console = console if console is not None else (Console() if show else None)
    if resuming:
        run = Search.resume(out, console=console, progress=show, shard=shard)
    else:
        run = Search(cfg, out, console=console, progress=show, shard=shard)
    logger = None
    if log is not None and shard.writes:
        from ..config import to_yaml
        from ..runlog import make_logger
        logger = make_logger(log, run.run_dir.path, to_yaml(run.cfg))
        run.epoch_hooks = (logger,)
    try:
        genotype = run.run()
    finally:
        if logger is not None:
            logger.close()
    return {"genotype": genotype.to_dict(), "epoch": run.epoch, "params": run.num_weight_parameters}
