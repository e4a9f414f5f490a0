"""Batched augmentation on uint8 tensors: random crop with zero padding, horizontal flip, normalization, cutout.

All random numbers of a batch are drawn first, as tensors, from the caller's generator (``draw``); applying them
(``apply``) is pure tensor indexing, with no per-image Python loop. The draws do not depend on the switches (crop,
flip, cutout on or off, cutout probability), so the same seed gives the same crops whatever else is configured,
and a resumed stream stays in step. ``reference_augment`` is the same recipe written image by image, the ground
truth that the batched code is tested against bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..devices import to_device


class Draws(NamedTuple):
    """The random numbers of one batch, each of shape (B,)."""

    dy: Tensor  # crop offset into the padded image, in [0, 2 * padding]
    dx: Tensor
    flip: Tensor  # bool
    cy: Tensor  # cutout centre, in [0, H)
    cx: Tensor
    cut: Tensor  # bool: whether this image gets cutout (probability cutout_prob)


def draw(batch: int, height: int, width: int, crop_padding: int, cutout_prob: float,
         generator: torch.Generator) -> Draws:
    """Draw one batch's random numbers, always in this order, on the generator's device."""
    kw = dict(generator=generator, device=generator.device)
    dy = torch.randint(0, 2 * crop_padding + 1, (batch,), **kw)
    dx = torch.randint(0, 2 * crop_padding + 1, (batch,), **kw)
    flip = torch.rand(batch, **kw) < 0.5
    cy = torch.randint(0, height, (batch,), **kw)
    cx = torch.randint(0, width, (batch,), **kw)
    cut = torch.rand(batch, **kw) < cutout_prob
    return Draws(dy, dx, flip, cy, cx, cut)


def _channel_view(values: Sequence[float], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=torch.float32, device=like.device).view(-1, 1, 1)


class Normalize:
    """uint8 -> float, then (x / 255 - mean) / std per channel: torchvision's ToTensor + Normalize, op for op."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = images.to(torch.float32, copy=True)  # a copy even for float input, so the in-place ops below are safe
        return x.div_(255).sub_(_channel_view(self.mean, images)).div_(_channel_view(self.std, images))

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Augment:
    """Training transform of DARTS and its descendants, on a whole uint8 batch (B, C, H, W).

    Pad ``crop_padding`` zeros on every side and crop back to H x W at a random offset; flip horizontally with
    probability 0.5; normalize; then, with probability ``cutout_prob``, zero a ``cutout`` x ``cutout`` square centred
    at a uniformly random pixel and clipped at the borders. Cutout comes after normalization as in DARTS, so the
    square is 0 in normalized units (the mean colour). ``cutout_prob`` is a plain attribute so that RobustDARTS'
    schedule can ramp it between epochs.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], crop_padding: int = 4, flip: bool = True,
                 cutout: int = 0, cutout_prob: float = 1.0):
        if crop_padding < 0 or cutout < 0 or not 0.0 <= cutout_prob <= 1.0:
            raise ValueError(f"need crop_padding >= 0, cutout >= 0 and 0 <= cutout_prob <= 1, got "
                             f"{crop_padding}, {cutout}, {cutout_prob}")
        self.normalize = Normalize(mean, std)
        self.crop_padding, self.flip, self.cutout, self.cutout_prob = crop_padding, flip, cutout, cutout_prob

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        b, _, h, w = images.shape
        return self.apply(images, draw(b, h, w, self.crop_padding, self.cutout_prob, generator))

    def apply(self, images: Tensor, draws: Draws) -> Tensor:
        b, c, h, w = images.shape
        draws = Draws(*(to_device(t, images.device) for t in draws))  # pinned, non-blocking on CUDA
        p = self.crop_padding
        if p > 0 or self.flip:
            # Crop and flip are one gather: output pixel (i, j) reads padded pixel (dy + i, dx + j), or
            # (dy + i, dx + w - 1 - j) when flipped. Gathering on uint8 moves 4x fewer bytes than on floats.
            padded = F.pad(images, (p, p, p, p)) if p > 0 else images
            rows = draws.dy[:, None] + torch.arange(h, device=images.device) if p > 0 else \
                torch.arange(h, device=images.device).expand(b, h)
            cols = torch.arange(w, device=images.device).expand(b, w)
            if self.flip:
                cols = torch.where(draws.flip[:, None], cols.flip(-1), cols)
            if p > 0:
                cols = cols + draws.dx[:, None]
            pixel = rows[:, :, None] * padded.shape[-1] + cols[:, None, :]  # (B, H, W) flat index into padded
            images = padded.flatten(2).gather(2, pixel.view(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)
        out = self.normalize(images)
        if self.cutout > 0:
            top, left = draws.cy - self.cutout // 2, draws.cx - self.cutout // 2  # as DARTS: y - L//2 .. +L
            ys, xs = torch.arange(h, device=out.device), torch.arange(w, device=out.device)
            in_rows = (ys >= top[:, None]) & (ys < top[:, None] + self.cutout)  # comparisons clip at the borders
            in_cols = (xs >= left[:, None]) & (xs < left[:, None] + self.cutout)
            # Multiply by a 0/1 mask as DARTS does (img *= mask); a broadcast multiply is several times faster
            # than masked_fill_ here, and the (B, H, W) mask is built as an outer product of row and column hits.
            cut_rows = (in_rows & draws.cut[:, None]).to(out.dtype)
            keep = 1.0 - cut_rows[:, :, None] * in_cols[:, None, :].to(out.dtype)
            out.mul_(keep[:, None])
        return out

    def __repr__(self) -> str:
        return (f"Augment(mean={self.normalize.mean}, std={self.normalize.std}, crop_padding={self.crop_padding}, "
                f"flip={self.flip}, cutout={self.cutout}, cutout_prob={self.cutout_prob})")


def reference_augment(images: Tensor, generator: torch.Generator, mean: Sequence[float], std: Sequence[float],
                      crop_padding: int = 4, flip: bool = True, cutout: int = 0, cutout_prob: float = 1.0) -> Tensor:
    """The same recipe as ``Augment``, one image at a time with plain slicing: slow, obvious, the test's truth."""
    b, _, h, w = images.shape
    p = crop_padding
    # Same draws in the same order as ``draw``, written out so that the test also checks the batched draw code.
    kw = dict(generator=generator, device=generator.device)
    dy = torch.randint(0, 2 * p + 1, (b,), **kw).tolist()
    dx = torch.randint(0, 2 * p + 1, (b,), **kw).tolist()
    flips = (torch.rand(b, **kw) < 0.5).tolist()
    cy = torch.randint(0, h, (b,), **kw).tolist()
    cx = torch.randint(0, w, (b,), **kw).tolist()
    cuts = (torch.rand(b, **kw) < cutout_prob).tolist()
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    out = []
    for i in range(b):
        img = images[i]
        if p > 0:
            img = F.pad(img, (p, p, p, p))[:, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        if flip and flips[i]:
            img = img.flip(-1)
        img = img.float().div(255).sub(mean_t).div(std_t)
        if cutout > 0 and cuts[i]:
            y1, y2 = max(cy[i] - cutout // 2, 0), min(cy[i] - cutout // 2 + cutout, h)
            x1, x2 = max(cx[i] - cutout // 2, 0), min(cx[i] - cutout // 2 + cutout, w)
            mask = torch.ones(h, w, device=img.device)
            mask[y1:y2, x1:x2] = 0.0
            img = img * mask  # as the DARTS Cutout class: img *= mask
        out.append(img)
    return torch.stack(out)


def scaled_augment(mean: Sequence[float], std: Sequence[float], image_size: int, augment: bool = True,
                   cutout: int = 0) -> Augment:
    """The DARTS training transform with its 32x32 lengths (crop padding 4, cutout ``cutout``) scaled to
    ``image_size``, so that a CPU-sized preset at 16x16 changes the image size, not the strength of augmentation."""
    scale = image_size / 32
    pad = max(1, round(4 * scale)) if augment else 0
    return Augment(mean, std, crop_padding=pad, flip=augment, cutout=round(cutout * scale) if cutout else 0)
