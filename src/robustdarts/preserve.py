"""Run a side computation without leaving a trace in the run: the random stream and the BN statistics come back.

Measurement passes (the dominant eigenvalue, the leakage gap's recalibrated accuracies, perturbed or probing
forward passes) run between training steps. If one drew random numbers or let BatchNorm update its running
statistics, switching a measurement on, or changing how often it runs, would change the searched architecture; a
run with measurements must follow the same trajectory as one without.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn


@contextmanager
def preserved(module: nn.Module | None = None, *, rng: bool = True,
              device: torch.device | str | None = None) -> Iterator[None]:
    """Restore, on exit (also after an exception), exactly what the block may change.

    With ``rng`` the CPU generator's state, and that of ``device``'s generator when it is a CUDA device. With
    ``module`` every buffer of every submodule (BN ``running_mean``/``running_var``/``num_batches_tracked`` and any
    other) and every submodule's train/eval flag. Buffers are restored in place, and a buffer the block replaced by
    another tensor is put back, so views and references held elsewhere (optimizer state, ``functional_call``
    dictionaries) stay valid. Module attributes other than buffers and flags (BN ``momentum``,
    ``track_running_stats``) are the block's own business.
    """
    modules = list(module.modules()) if module is not None else []
    flags = [(m, m.training) for m in modules]
    buffers = [(m, name, b, b.clone()) for m in modules for name, b in m.named_buffers(recurse=False)]
    cuda = device is not None and torch.device(device).type == "cuda"
    with torch.random.fork_rng(devices=[torch.device(device)] if cuda else [], enabled=rng):
        try:
            yield
        finally:
            with torch.no_grad():
                for m, name, buffer, saved in buffers:
                    buffer.copy_(saved)
                    if m._buffers.get(name) is not buffer:
                        setattr(m, name, buffer)
            for m, flag in flags:
                m.training = flag
