"""Persistent batch streams over in-memory image sets.

A ``BatchStream`` is built once per search or training run and cycles for ever: the uint8 images move to the
device at construction, each pass draws a fresh permutation from the stream's own generator, and each batch is
gathered and augmented on the device. Its whole position (pass, offset, permutation, generator state) is a small
dict of tensors and ints, so a resumed run sees exactly the batches that an uninterrupted one would have seen.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
from torch import Tensor

from ..devices import to_device
from ..errors import RobustDartsError
from .augment import Augment, Draws, Normalize, draw
from .datasets import ImageSet

Transform = Callable[[Tensor, torch.Generator], Tensor]


class BatchStream:
    """Endless (x, y) batches of ``imageset`` on ``device``, reshuffled at every pass.

    ``augment`` maps a uint8 batch and the stream's generator to a float batch (``Augment`` or ``Normalize``;
    the default normalizes only). The generator lives on the CPU so a seed gives the same batches on every device.
    """

    def __init__(self, imageset: ImageSet, batch_size: int, augment: Transform | None = None,
                 generator_seed: int = 0, device: str | torch.device = "cpu", shuffle: bool = True,
                 drop_last: bool = True, part: slice | None = None):
        if batch_size < 1:
            raise RobustDartsError(f"batch size must be at least 1, got {batch_size}.")
        if len(imageset) == 0 or (drop_last and batch_size > len(imageset)):
            raise RobustDartsError(f"batch size {batch_size} is larger than the {len(imageset)} images of "
                                   f"{imageset.name}; lower the batch size or use more data.")
        self.device = torch.device(device)
        self.images = to_device(imageset.images, self.device)  # once: no host-to-device copy per step
        self.labels = to_device(imageset.labels, self.device)
        # One process's slice of every global batch (multi-process search): the order and the augmentation draws
        # are the global batch's, so the N slices together are exactly the batch one process would draw.
        if part is not None and not drop_last:
            raise RobustDartsError("a batch stream split between processes needs whole batches (drop_last).")
        self.part = part
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment = augment if augment is not None else Normalize(imageset.mean, imageset.std)
        self.generator = torch.Generator().manual_seed(generator_seed)
        self.epoch = 0  # passes started so far
        self.position = 0  # images of the current pass already served
        self.order = torch.empty(0, dtype=torch.long, device="cpu")  # the current pass's permutation (for state_dict)
        self._order_on_device = self.order.to(self.device)

    def __len__(self) -> int:
        return self.steps_per_epoch

    @property
    def num_images(self) -> int:
        return len(self.labels)

    @property
    def steps_per_epoch(self) -> int:
        n = self.num_images
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        n, end = self.num_images, self.position + self.batch_size
        if len(self.order) == 0 or self.position >= n or (self.drop_last and end > n):
            self._start_pass()
        index = self._order_on_device[self.position:self.position + self.batch_size]
        self.position += len(index)
        if self.part is None:
            x = self.augment(self.images.index_select(0, index), self.generator)
            return x, self.labels.index_select(0, index)
        mine = index[self.part]
        if isinstance(self.augment, Augment):  # the whole batch's draws, applied to this slice's images only
            h, w = self.images.shape[-2:]
            draws = draw(len(index), h, w, self.augment.crop_padding, self.augment.cutout_prob, self.generator)
            x = self.augment.apply(self.images.index_select(0, mine), Draws(*(d[self.part] for d in draws)))
        else:
            x = self.augment(self.images.index_select(0, index), self.generator)[self.part]
        return x, self.labels.index_select(0, mine)

    next = __next__

    def _start_pass(self) -> None:
        n = self.num_images
        cpu = self.generator.device
        self.order = torch.randperm(n, generator=self.generator, device=cpu) if self.shuffle else \
            torch.arange(n, device=cpu)
        self._order_on_device = to_device(self.order, self.device)
        self.position = 0
        self.epoch += 1

    def state_dict(self) -> dict:
        """Position, permutation and generator state: tensors and ints only (loads with ``weights_only=True``)."""
        return {"epoch": self.epoch, "position": self.position, "order": self.order.clone(),
                "generator": self.generator.get_state(), "num_images": self.num_images,
                "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        if state["num_images"] != self.num_images or state["batch_size"] != self.batch_size:
            raise RobustDartsError(
                f"the saved batch stream covered {state['num_images']} images in batches of {state['batch_size']}, "
                f"but this one has {self.num_images} in batches of {self.batch_size}; resume with the same data "
                f"and batch size.")
        order = state["order"].to(torch.long).cpu()
        if len(order) not in (0, self.num_images):
            raise RobustDartsError(f"the saved batch stream permutation has {len(order)} entries, expected "
                                   f"{self.num_images}.")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.order = order.clone()
        self._order_on_device = to_device(self.order, self.device)
        self.generator.set_state(state["generator"].cpu())


def eval_batches(imageset: ImageSet, batch_size: int, device: str | torch.device = "cpu",
                 transform: Callable[[Tensor, None], Tensor] | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """One ordered pass for evaluation: normalized (x, y) batches, the last one possibly short.

    The set moves to ``device`` once per pass; call ``imageset.to(device)`` first to make that free.
    """
    if batch_size < 1:
        raise RobustDartsError(f"batch size must be at least 1, got {batch_size}.")
    transform = transform if transform is not None else Normalize(imageset.mean, imageset.std)
    images, labels = to_device(imageset.images, device), to_device(imageset.labels, device)
    for start in range(0, len(labels), batch_size):
        yield transform(images[start:start + batch_size], None), labels[start:start + batch_size]
