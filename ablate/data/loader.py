"""Batches on the training device, with joint image/mask augmentation run there.

``BatchLoader`` moves a split to a device once and yields ``(images, masks)``: float32 NCHW
normalized with ImageNet mean/std, int64 NHW. Augmentation (``Augment``) runs there, on batched
tensors, jointly on image and mask.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..common.checks import is_int, not_allowed
from .spec import IGNORE, IMAGENET_MEAN, IMAGENET_STD, Split


@dataclass(frozen=True)
class Augment:
    """Joint image/mask augmentation, run per batch on the loader's device.

    Each sample gets: a horizontal flip with probability 1/2; a zoom-in by a factor drawn from
    ``scale`` and a crop back to size at a random position; a rotation drawn from
    +-``rotate`` degrees. Images are resampled bilinearly, masks by nearest neighbour (class
    values stay exact). Pixels whose source lies outside the image become the mean colour
    (0 after normalization) and, in the mask, ``ignore_index`` if the loader has one (they are
    then left out of the loss), else background 0.
    """

    flip: bool = True
    scale: tuple[float, float] = (1.0, 1.5)   # zoom-in factor range, >= 1
    rotate: float = 10.0                      # largest absolute rotation, degrees

    def __post_init__(self) -> None:
        if not isinstance(self.flip, bool):
            raise not_allowed("flip", self.flip, "True or False")
        try:
            low, high = (float(s) for s in self.scale)
        except (TypeError, ValueError):
            low = high = math.nan
        if not 1.0 <= low <= high <= 4.0:
            raise not_allowed("scale", self.scale, "(low, high) with 1 <= low <= high <= 4")
        object.__setattr__(self, "scale", (low, high))
        if isinstance(self.rotate, bool) or not isinstance(self.rotate, (int, float)) or not (
                0 <= self.rotate <= 45):
            raise not_allowed("rotate", self.rotate, "degrees in 0..45")


class BatchLoader:
    """Batches of (images float32 NCHW ImageNet-normalized, masks int64 NHW) from a Split.

    The split is moved to ``device`` once, as uint8; normalization and augmentation run there.
    Order and augmentation are drawn from a CPU generator seeded by (seed, epoch), so the same
    (seed, epoch) gives identical batches on any device. The epoch changes only through
    :meth:`set_epoch` (as with ``DistributedSampler``): iterating twice replays the same epoch.
    ``augment`` is False, True (the default ``Augment()``) or an ``Augment``.
    """

    def __init__(self, split: Split, batch_size: int, device: torch.device | str = "cpu",
                 shuffle: bool = False, augment: bool | Augment = False, seed: int = 0,
                 drop_last: bool = False, ignore_index: int | None = None) -> None:
        if not isinstance(split, Split):
            raise TypeError(f"BatchLoader needs an ablate Split, got {type(split).__name__}")
        if not is_int(batch_size) or batch_size < 1:
            raise not_allowed("batch_size", batch_size, "a positive integer")
        if not is_int(seed) or seed < 0:
            raise not_allowed("seed", seed, "a non-negative integer")
        if ignore_index not in (None, IGNORE):
            raise not_allowed("ignore_index", ignore_index, f"None or {IGNORE}")
        if isinstance(augment, bool):
            augment = Augment() if augment else None
        elif not isinstance(augment, Augment):
            raise not_allowed("augment", augment, "True, False or an Augment")
        if drop_last and batch_size > len(split):
            raise ValueError(f"batch_size={batch_size} with drop_last gives no batch from "
                             f"{len(split)} samples; allowed: batch_size <= {len(split)}")
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.seed, self.drop_last, self.ignore_index = seed, drop_last, ignore_index
        self.device = torch.device(device)
        self.num_samples = len(split)
        self.epoch = 0
        self._images = _to_device(split.images, self.device)  # uint8 NHWC
        self._masks = _to_device(split.masks, self.device)    # uint8 NHW
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, -1, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration yields."""
        if not is_int(epoch) or epoch < 0:
            raise not_allowed("epoch", epoch, "a non-negative integer")
        self.epoch = epoch

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, np.uint64)[0]
        gen = torch.Generator().manual_seed(int(state))
        n = self.num_samples
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        order = _host_to(order, self.device)  # one copy per epoch, not one per batch
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size]
            images = self._images[idx].permute(0, 3, 1, 2).float().div_(255)
            images = images.sub_(self._mean).div_(self._std).contiguous()
            masks = self._masks[idx].long()
            if self.augment is not None:
                fill = 0 if self.ignore_index is None else self.ignore_index
                images, masks = _augment(images, masks, self.augment, gen, fill)
            yield images, masks


def _host_to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a small CPU tensor to ``device``; on CUDA through pinned memory without blocking,
    so the host keeps queueing work instead of waiting for the GPU at every batch."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(array if array.flags.writeable else array.copy()).to(device)


def _augment(images: torch.Tensor, masks: torch.Tensor, aug: Augment, gen: torch.Generator,
             fill: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``aug`` to a batch; random amounts are drawn on the CPU from ``gen``."""
    b, _, h, w = images.shape
    device = images.device
    if aug.flip:
        flip = _host_to(torch.rand(b, generator=gen) < 0.5, device)
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        masks = torch.where(flip.view(-1, 1, 1), masks.flip(-1), masks)
    low, high = aug.scale
    if high == 1.0 and aug.rotate == 0:
        return images, masks
    zoom = low + (high - low) * torch.rand(b, generator=gen, dtype=torch.float64)
    angle = torch.deg2rad(aug.rotate * (2 * torch.rand(b, generator=gen, dtype=torch.float64) - 1))
    shift = (2 * torch.rand(b, 2, generator=gen, dtype=torch.float64) - 1) * (1 - 1 / zoom)[:, None]
    # theta maps output to input in normalized [-1, 1] coordinates; rotating in pixel units
    # (D^-1 R D, D = diag(w, h)) keeps non-square images undistorted.
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin * h / w, shift[:, 0]], 1),
                         torch.stack([sin * w / h, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(_host_to(theta.float(), device), [b, 1, h, w], align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Sample mask + 1 with zero padding, so that 0 marks pixels from outside the image.
    sampled = F.grid_sample((masks + 1).unsqueeze(1).float(), grid, mode="nearest",
                            padding_mode="zeros", align_corners=False).squeeze(1).long()
    masks = torch.where(sampled == 0, torch.full_like(sampled, fill), sampled - 1)
    return images, masks
