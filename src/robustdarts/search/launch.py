"""Starting a multi-process search: ``robustdarts search --nproc N`` spawns the ranks, ``torchrun`` starts them
itself; either way each rank runs ``Search`` with its ``distributed.Shard`` (the collectives live there)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch

from ..distributed import Shard, backend_for, check_world, init_from_env, under_torchrun
from ..data.own import IN_MEMORY
from ..errors import RobustDartsError
from ..methods import make_recipe
from ..speed import given_threads
from ..starts import one_start
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
        if str(cfg.dataset).startswith(f"{IN_MEMORY}:"):  # spawned ranks get the config (new or resumed), not data
            raise RobustDartsError("data handed in memory cannot reach the processes nproc spawns; save it with "
                                   "numpy.savez(FILE, x_train=..., y_train=..., x_test=..., y_test=...) and pass "
                                   "dataset='npz:FILE', or use nproc=1.")
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
        make_recipe(cfg)  # the recipe's refusals (skipped_statistics, options) before a file or a process exists
        self.cfg, self.resuming, self.log, self.progress = cfg, resume is not None, log, progress
        self.run_dir = RunDir(out)
        if not self.resuming:
            self.run_dir.check_new()  # here, before N processes load data
            self.run_dir.record_space(cfg.space)  # a user's space: the spawned ranks read it from here
        self.threads = threads or max(1, given_threads() // cfg.nproc)
        self.epoch, self.num_weight_parameters = 0, 0

    def run(self):
        import multiprocessing

        import torch.multiprocessing as mp

        from ..genotype import Genotype

        # The ranks report through a pipe, not a temp folder: a launcher killed by SIGKILL cleans up nothing, and
        # its ranks die with it (distributed.die_with_parent), so the pipe leaves nothing behind.
        reader, writer = multiprocessing.get_context("spawn").Pipe(duplex=False)
        args = (self.cfg.nproc, _free_port(), self.cfg, str(self.run_dir.path), self.resuming, self.log,
                self.progress, self.threads, writer, os.getpid())
        result: dict = {}
        try:
            ranks = mp.start_processes(_spawned_rank, args=args, nprocs=self.cfg.nproc, join=False,
                                       start_method="spawn")
            writer.close()  # the ranks hold their own ends
            while not ranks.join(timeout=0.5):
                result = _receive(reader, result)
            result = _receive(reader, result)
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as e:  # a rank died
            message = _receive(reader, result).get("error")
            if message:
                raise RobustDartsError(message) from None
            raise RobustDartsError(self._failure(e)) from None
        finally:
            writer.close()
            reader.close()
        if "error" in result:
            raise RobustDartsError(result["error"])
        if "genotype" not in result:
            raise RobustDartsError(f"the search processes ended without a result; {self._how_to_continue()}.")
        self.epoch, self.num_weight_parameters = result["epoch"], result["params"]
        return Genotype.from_dict(result["genotype"])

    def _failure(self, e) -> str:
        """One sentence for a rank that died without its own message: killed by a signal (no traceback exists),
        exited with a code, or raised (its traceback, which torch hands over in the exception, printed first)."""
        import signal
        import sys

        rank = f"search process {e.error_index} (pid {e.error_pid})"
        code = getattr(e, "exit_code", None)
        if getattr(e, "signal_name", None) and code is not None and code < 0:
            why = ": killed, or out of memory" if -code == signal.SIGKILL else ""
            what = f"{rank} was killed by signal {-code} ({e.signal_name}{why})"
        elif code is not None:
            what = f"{rank} exited with code {code} without an error message"
        else:
            sys.stderr.write(e.msg.strip() + "\n")
            lines = [line for line in e.msg.strip().splitlines() if line.strip()]
            what = f"{rank} failed ({lines[-1].strip()[:200] if lines else type(e).__name__}; its traceback is above)"
        return f"{what}, so every process of the search stopped; {self._how_to_continue()}"

    def _how_to_continue(self) -> str:
        path = self.run_dir.path
        if self.run_dir.checkpoint_path.exists():
            return f"the last checkpoint in {path} is intact: continue with robustdarts search --resume {path}"
        return f"{path} had no checkpoint yet: run the same command again to start it over"


def _receive(reader, result: dict) -> dict:
    """Whatever the ranks sent so far: rank 0's result, or the first error of any rank (kept over later ones)."""
    try:
        while reader.poll():
            message = json.loads(reader.recv())
            if "error" not in result:
                result = message
    except (EOFError, OSError, ValueError):  # every rank has closed its end
        pass
    return result


def _spawned_rank(rank: int, world: int, port: int, cfg, out: str, resuming: bool, log: str | None,
                  progress: bool, threads: int, report, parent: int) -> None:
    """One spawned process: join the group, run the search as rank ``rank``, rank 0 reports to the parent (any
    rank reports its one-sentence error)."""
    import torch.distributed as dist

    from ..distributed import die_with_parent

    die_with_parent(parent)
    torch.set_num_threads(threads)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    shard = Shard(rank, world)
    if shard.device(cfg.device).type == "cuda":
        torch.cuda.set_device(shard.device(cfg.device))
    dist.init_process_group(backend_for(cfg.device), rank=rank, world_size=world)
    try:
        from ..runs import RunDir
        RunDir(out).register_space()  # a user's space (YAML), recorded by the launcher: this process has not seen it
        result = run_rank(shard, cfg, out, resuming=resuming, log=log, progress=progress)
    except RobustDartsError as e:
        report.send(json.dumps({"error": str(e)}))
        raise SystemExit(2)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        report.send(json.dumps(result))


def run_rank(shard: Shard, cfg, out, *, resuming: bool = False, log: str | None = None, progress: bool = True,
             console=None) -> dict:
    """Run (or resume) the search in ``out`` as ``shard``'s rank; rank 0 opens the run logger. Returns what the
    CLI reports: the genotype, the epochs done and the supernet's size."""
    from rich.console import Console

    show = progress and shard.writes
    console = console if console is not None else (Console() if show else None)
    with one_start():  # a spawned rank is a start of its own (another process): a folder walked once here too
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
