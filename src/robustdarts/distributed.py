"""One search over several processes (data parallel): ``robustdarts search --nproc N`` or ``torchrun``.

Every rank holds the whole supernet, α and optimizer state, draws the same global batch from the same seeded
stream and keeps its 1/N slice of it; the loop averages the gradients of the weights and of α over the ranks right
where the single-process loop would use them (``Shard.average_grads``), so every rank takes the same step and
holds the same α, weights and genotype. Rank 0 alone writes the run directory; every rank can read it (rollback,
resume), and a resumed run continues exactly: the streams, optimizers and the recipe's generators are the same on
every rank, and each rank's own torch random state (drop-path masks, S4's noise op) is saved in the checkpoint.

Why not ``DistributedDataParallel``: the search takes ``torch.autograd.grad`` with respect to α only, runs
``functional_call`` passes on virtual weights (the unrolled step) and skips zero-weight ops (parameters without a
gradient in that step) — none of which DDP's ``backward`` hooks see. One flat all-reduce per gradient set is simpler
and does the same work.

What differs from one process on the global batch: batch norm normalizes each rank's slice with the slice's own
statistics (search cells use batch statistics, as every DARTS reference does), so the loss is the mean over ranks
of N smaller-batch losses. Gradients of a global batch of B differ from the single process's by the difference
between B/N-image and B-image batch statistics; running statistics are averaged over the ranks at the end of every
epoch, before the evaluation, so the checkpoint is the same on every rank. Inner steps of a method's weight gradient
(SDARTS-ADV's PGD on the perturbation, Λ-DARTS' alignment) use each rank's slice, not the global batch; the unrolled
step averages its two inner gradients (∇w L_train for w', ∇w' L_val for the finite difference), as one process
would compute them.

The backend is gloo on the CPU and nccl on CUDA (each rank takes the GPU ``rank % device_count``). Starting the
processes (``--nproc``, torchrun) is ``search/launch.py``; this module holds what a rank does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from .errors import RobustDartsError

ENV_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")  # what torchrun sets for every process


@dataclass(frozen=True)
class Shard:
    """This process's place in a search: rank ``rank`` of ``world`` processes. ``Shard()`` is the single process,
    for which every collective is a no-op, so the loop has one path."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def writes(self) -> bool:
        """Whether this process writes the run directory (rank 0 only)."""
        return self.rank == 0

    def part(self, n: int) -> slice:
        """This rank's slice of a global batch of ``n`` (``n`` divisible by the world size: checked by the loop)."""
        per = n // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def device(self, device: str | torch.device) -> torch.device:
        """The device of this rank: the configured one, and for CUDA the GPU ``rank % device_count``."""
        device = torch.device(device)
        if device.type == "cuda" and self.active and device.index is None:
            return torch.device("cuda", self.rank % max(torch.cuda.device_count(), 1))
        return device

    # --- collectives (no-ops in one process) -------------------------------------------------------------------
    def _all_reduce(self, tensors: Sequence[torch.Tensor], op: str = "sum") -> None:
        """In-place all-reduce of ``tensors``, flattened into one buffer per dtype (one message, not hundreds)."""
        import torch.distributed as dist

        reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op]
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for t in tensors:
            by_dtype.setdefault(t.dtype, []).append(t)
        for group in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in group])
            dist.all_reduce(flat, op=reduce_op)
            offset = 0
            for t in group:
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()

    def average(self, tensors: Iterable[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """The mean over ranks of each tensor (None stays None: the same on every rank, since every rank runs the
        same graph), as new tensors; the inputs are left alone."""
        tensors = list(tensors)
        if not self.active:
            return tensors
        out = [None if t is None else t.detach().clone() for t in tensors]
        present = [t for t in out if t is not None]
        if present:
            self._all_reduce(present)
            for t in present:
                t.div_(self.world)
        return out

    def average_grads(self, params: Iterable[torch.Tensor]) -> None:
        """Replace each parameter's ``.grad`` by its mean over the ranks."""
        if not self.active:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            self._all_reduce(grads)
            for g in grads:
                g.div_(self.world)

    def reduce_(self, tensors: Sequence[torch.Tensor], op: str = "sum") -> None:
        """In-place sum (or max, min) over the ranks: epoch totals, the first bad step."""
        if self.active:
            self._all_reduce(tensors, op)

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Average the floating-point buffers (BN running statistics) over the ranks, so that the evaluation and
        the checkpoint are the same on every rank; integer buffers (batches tracked) agree already."""
        if self.active:
            buffers = [b for b in module.buffers() if b.is_floating_point()]
            self._all_reduce(buffers)
            for b in buffers:
                b.div_(self.world)

    def gather_rng_states(self) -> list[torch.Tensor] | None:
        """Every rank's torch CPU random state (rank order), or None in one process: saved in the checkpoint so
        that each rank resumes its own stream."""
        if not self.active:
            return None
        import torch.distributed as dist

        states: list = [None] * self.world
        dist.all_gather_object(states, torch.get_rng_state())
        return [torch.as_tensor(s, device="cpu") for s in states]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


def backend_for(device: str | torch.device) -> str:
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def under_torchrun() -> bool:
    """Whether this process was started by torchrun (or another launcher setting the env:// variables)."""
    return all(v in os.environ for v in ENV_VARS) and int(os.environ["WORLD_SIZE"]) > 1


def init_from_env(device: str) -> Shard:
    """Join the process group torchrun describes in the environment; the rank's Shard."""
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    shard = Shard(rank, world)
    if shard.device(device).type == "cuda":
        torch.cuda.set_device(shard.device(device))
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device), rank=rank, world_size=world)
    return shard


def die_with_parent(parent: int) -> None:
    """End this process when ``parent`` (the launcher of ``--nproc``) dies, however it dies: a SIGKILL of the
    launcher must not leave ranks computing, holding the run's lock and the gloo port. On Linux the kernel sends
    SIGKILL (``PR_SET_PDEATHSIG``; torch's own spawn sets SIGINT, which a launcher started in the background ignores,
    and so do its children); elsewhere a thread polls the parent's pid. A parent already gone before this call
    (the race of an early kill) ends the process at once."""
    import signal
    import threading
    import time

    try:
        import ctypes
        watched = ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL) == 0  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        watched = False
    if os.getppid() != parent:
        os._exit(1)
    if not watched:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="robustdarts-parent-watch", daemon=True).start()


def check_world(cfg, world: int) -> None:
    """The global batch must split evenly: each rank's slice is batch_size / N images."""
    if world > 1 and cfg.batch_size % world:
        raise RobustDartsError(f"batch_size {cfg.batch_size} does not split over {world} processes; use a batch size "
                               f"divisible by {world} (each process gets batch_size / {world} images).")
    if world > 1 and torch.device(cfg.device).type == "cuda" and torch.cuda.device_count() < world:
        raise RobustDartsError(f"{world} processes on CUDA need {world} GPUs, this machine has "
                               f"{torch.cuda.device_count()}; use --nproc {max(torch.cuda.device_count(), 1)}.")
