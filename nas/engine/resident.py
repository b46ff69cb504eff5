"""Datasets held on the training device: uint8 at the size they are stored, decoded once, shared in a process.

CIFAR-10's 50,000 + 10,000 images take 184 MB as uint8 at 32 px; Fashion-MNIST's 70,000 take 55 MB. Held on the
device at that size, a training reads its batches by indexing (no loader, no host copy per step) and resizes and
augments them there (``nas.engine.augment``). Every training a process runs (the trials of a search worker, the
runs of an ablation) shares the one copy: ``resident`` keys it by the array it came from and the device.

On the CPU the tensor is the array itself (``torch.from_numpy``: no copy).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_CACHE: dict[tuple[int, str], tuple[np.ndarray, "ResidentImages"]] = {}


@dataclass(frozen=True)
class ResidentImages:
    """uint8 images (N, H, W, C) on a device. ``take`` gives a batch as (B, C, H, W) in channels_last layout."""

    nhwc: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.nhwc.device

    def __len__(self) -> int:
        return self.nhwc.shape[0]

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """Images ``indices`` (a tensor on the same device), uint8, (B, C, H, W) channels_last."""
        return self.nhwc[indices].permute(0, 3, 1, 2)


def resident(images: np.ndarray, device: str | torch.device) -> ResidentImages:
    """``images`` (uint8 N, H, W, C) on ``device``, copied there once per process."""
    device = torch.device(device)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"resident images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
    key = (id(images), str(device))
    if key not in _CACHE:
        held = images if images.flags.writeable else images.copy()  # torch wants writable memory (IDX files are not)
        tensor = torch.from_numpy(np.ascontiguousarray(held))
        if device.type != "cpu":
            tensor = tensor.to(device)
        _CACHE[key] = (images, ResidentImages(tensor))  # the array is kept: its id stays its own
    return _CACHE[key][1]

