"""Where tensors are made and how they reach the device: one place for the rules, so a step on CUDA neither
copies through pageable memory nor waits for the GPU where no decision needs it.

- ``to_device``: from the CPU to CUDA through pinned memory, without blocking the host (``device=cuda`` selects
  ``pin_memory`` and non-blocking copies); elsewhere a plain ``.to``.
- ``make_generator``: a seeded generator on the device where its samples are used. A method's Gumbel, Dirichlet and
  noise draws then come from a CUDA generator on a GPU (no host copy, no sync: a Dirichlet sample needs α's values,
  which live on the device) and from a CPU generator on the CPU (bit-identical to earlier versions). The same seed
  gives different samples on the two kinds of device; a checkpoint resumes on the kind it was written on.
  Generators whose draws drive host decisions (SP-DARTS' per-step temperature, the batch order of a stream, the
  augmentation draws, which are tiny and copied ``to_device``) stay on the CPU, so a seed gives the same batches on
  every device.
- ``sample_on``: a sample drawn on its generator's device, then placed on the target device.
"""

from __future__ import annotations

from typing import Callable

import torch


def to_device(t: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """``t`` on ``device``; CPU → CUDA copies go through pinned memory and do not block the host."""
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator seeded with ``seed`` on ``device`` when that is a CUDA device, else on the CPU."""
    device = torch.device(device)
    return torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(seed)


def sample_on(draw: Callable[[torch.device], torch.Tensor], generator: torch.Generator | None,
              device: str | torch.device | None) -> torch.Tensor:
    """``draw(d)`` on the generator's device ``d`` (the target device when there is no generator), moved to
    ``device``: a CPU generator still serves a CUDA tensor (one small non-blocking copy), never the reverse error."""
    target = torch.device(device) if device is not None else torch.device("cpu")
    source = generator.device if generator is not None else target
    sample = draw(source)
    return sample if source == target else to_device(sample, target)
