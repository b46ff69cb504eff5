"""Where a training's batches come from: resident images augmented on the device, or a streaming loader.

Both give an epoch as (inputs, targets) on the device, normalised, in the order of the epoch's plan, from any
step onwards (a checkpoint taken inside an epoch resumes there). The plan of an epoch (which image comes at
which position, and each position's augmentation parameters) is drawn on the CPU from one generator seeded with
the training's seed and advanced epoch by epoch, so it is a function of (seed, epoch) alone: not of the batch size
the device can afford, the worker count or the trainings sharing a device.

- ``ResidentBatches``: datasets that fit (``nas.data.loaders.small_tree``, and every IDX or pickle set) are held on the device as uint8 at their stored size
  and every step is a gather, a resize and ``Augmentation.apply``: no loader, no host transfer per step.
- ``StreamingBatches``: larger trees, and recipe steps with no batched form (RandAugment), read through a
  ``DataLoader`` whose workers only decode, crop and augment to uint8 (timm's prefetcher-style transform), each
  item seeded from (seed, epoch, position) so the draws are the same whatever the worker count; normalisation and
  random erasing run on the device, as timm's ``PrefetchLoader`` does.
"""
from __future__ import annotations

import math
import random
from typing import Callable, Iterator, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .augment import Augmentation, erase, resize
from .policy import epoch_seed
from .resident import ResidentImages

Batch = tuple[torch.Tensor, torch.Tensor]


class EpochSource(Protocol):
    """What the training loop reads: a fixed number of steps per epoch, an epoch from any step."""

    steps_per_epoch: int
    path: str  # "resident" or "streaming": what a run's log says it took

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]: ...


def epoch_positions(n: int, perm: torch.Tensor, repeats: int, rank: int, world: int) -> torch.Tensor:
    """The image indices (into the split) of this rank's positions, as timm's samplers order them.

    One process without repeats: the permutation. Repeated augmentation (``RepeatAugSampler``, selected_round 0):
    each image ``repeats`` times in a row, this rank's share of n positions. Several processes without repeats
    (``DistributedSampler``): the permutation padded by wrapping, every ``world``-th position."""
    if repeats > 1:
        order = perm.repeat_interleave(repeats)
        total = math.ceil(n * repeats / world) * world
        take = torch.arange(rank, total, world)[: math.ceil(n / world)]
        return order[take % len(order)]
    if world == 1:
        return perm
    total = math.ceil(n / world) * world
    padded = torch.cat([perm, perm[: total - n]]) if total > n else perm
    return padded[rank:total:world]


class EpochPlans:
    """The plans of successive epochs from one seeded generator (replayed from epoch 0 when asked out of order)."""

    def __init__(self, n: int, seed: int, augmentation: Augmentation, repeats: int = 1, rank: int = 0,
                 world: int = 1, size: tuple[int, int] | None = None):
        self.n, self.seed, self.augmentation, self.size = n, seed, augmentation, size
        self.repeats, self.rank, self.world = repeats, rank, world
        self._generator: torch.Generator | None = None
        self._next = 0

    @property
    def positions(self) -> int:
        """This rank's positions per epoch (every image once, or its share under several processes)."""
        return math.ceil(self.n / self.world)

    def steps(self, batch_size: int, drop_last: bool) -> int:
        """Steps per epoch at ``batch_size`` (a last, partial batch dropped or kept); at least one."""
        steps = self.positions // batch_size if drop_last else math.ceil(self.positions / batch_size)
        if steps < 1:
            raise ValueError(f"batch size {batch_size} is larger than the {self.positions} training images of "
                             "this process; lower it")
        return steps

    def plan(self, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(indices of this rank's positions, their augmentation parameters), on the CPU. Parameters are drawn
        for every rank's positions and this rank's taken, so they follow the global position."""
        if self._generator is None or epoch < self._next:
            self._generator, self._next = torch.Generator().manual_seed(self.seed), 0
        while self._next <= epoch:
            perm = torch.randperm(self.n, generator=self._generator)
            params = self.augmentation.draw(self.positions * self.world, self._generator, self.size)
            self._next += 1
        order = epoch_positions(self.n, perm, self.repeats, self.rank, self.world)
        if self.world == 1:
            return order, params
        mine = torch.arange(self.rank, self.positions * self.world, self.world)
        return order, {k: v[mine] for k, v in params.items()}


class ResidentBatches:
    """Training batches of resident images: gather, resize and augment on the device."""

    path = "resident"

    def __init__(self, images: ResidentImages, labels: torch.Tensor, indices: np.ndarray | torch.Tensor,
                 augmentation: Augmentation, side: int, mean: torch.Tensor, std: torch.Tensor, batch_size: int,
                 seed: int, drop_last: bool = False, repeats: int = 1, rank: int = 0, world: int = 1,
                 prepared: torch.Tensor | None = None):
        """``prepared``: the split's view (``prepare`` of the same indices and side), for a cacheable augmentation:
        each batch is then a gather from it, flipped and erased, with no resize per step."""
        self.images, self.augmentation, self.side, self.batch_size = images, augmentation, side, batch_size
        if prepared is not None and not augmentation.cacheable:
            raise ValueError("a prepared view serves only an augmentation without crop or colour jitter")
        self.prepared = prepared
        device = images.device
        self.indices = torch.as_tensor(np.asarray(indices), dtype=torch.long).to(device)
        self.labels = labels.to(device)[self.indices]
        self.mean, self.std = mean.to(device).view(1, -1, 1, 1), std.to(device).view(1, -1, 1, 1)
        self.plans = EpochPlans(len(self.indices), seed, augmentation, repeats, rank, world,
                                size=tuple(images.nhwc.shape[1:3]))
        self.steps_per_epoch = self.plans.steps(batch_size, drop_last)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        order, params = self.plans.plan(epoch)
        device = self.images.device
        order = order.to(device, non_blocking=True)
        params = {k: v.to(device, non_blocking=True) for k, v in params.items()}
        for step in range(start_step, self.steps_per_epoch):
            part = slice(step * self.batch_size, min((step + 1) * self.batch_size, len(order)))
            where = order[part]
            drawn = {k: v[part] for k, v in params.items()}
            if self.prepared is not None:
                x = self.augmentation.finish(self.prepared[where], drawn)
            else:
                x = self.augmentation.apply(self.images.take(self.indices[where]), drawn, self.side, self.mean,
                                            self.std)
            yield x, self.labels[where]


def prepare(images: ResidentImages, indices: np.ndarray | torch.Tensor, side: int, mean: torch.Tensor,
            std: torch.Tensor, interpolation: str = "bilinear", crop_pct: float = 1.0,
            chunk: int = 4096) -> torch.Tensor:
    """The evaluation view of ``indices`` computed once on the device: float, normalised, channels_last, in chunks
    (bounded peak memory). A training that resizes the same images every epoch reads it instead."""
    return torch.cat([x for x, _ in eval_batches(images, torch.zeros(len(images), dtype=torch.long), indices, side,
                                                 mean, std, chunk, interpolation, crop_pct)])


def eval_batches(images: ResidentImages, labels: torch.Tensor, indices: np.ndarray | torch.Tensor, side: int,
                 mean: torch.Tensor, std: torch.Tensor, batch_size: int = 512, interpolation: str = "bilinear",
                 crop_pct: float = 1.0) -> Iterator[Batch]:
    """The evaluation view of resident images, in large batches: resized (centre ``crop_pct``), normalised."""
    device = images.device
    indices = torch.as_tensor(np.asarray(indices), dtype=torch.long).to(device)
    labels, mean, std = labels.to(device), mean.to(device).view(1, -1, 1, 1), std.to(device).view(1, -1, 1, 1)
    for i in range(0, len(indices), batch_size):
        where = indices[i: i + batch_size]
        x = resize(images.take(where).float().div_(255), side, interpolation, crop_pct)
        yield ((x - mean) / std).contiguous(memory_format=torch.channels_last), labels[where]


# ---------------------------------------------------------------------------------------------- streaming
class _PlannedSampler(Sampler):
    """Yields (item seed, image index) for the current epoch's positions from ``start``: the loader's workers
    stay alive between epochs, and each item carries the seed of its (seed, epoch, global position). Under
    several processes this rank's p-th position is global position ``rank + p * world`` (every ``world``-th, as
    ``EpochPlans`` takes them), so no two ranks draw the same crop and RandAugment for their p-th image."""

    def __init__(self, rank: int = 0, world: int = 1) -> None:
        self.items: list[tuple[int, int]] = []
        self.rank, self.world = rank, world

    def set_epoch(self, order: torch.Tensor, seed: int, start: int) -> None:
        self.items = [((seed * 1_000_033 + self.rank + p * self.world) % 2**31, i)
                      for p, i in enumerate(order.tolist())][start:]

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class TransformedItems(Dataset):
    """A split seen through a transform, the one way both kinds of item are read: ``index`` (an evaluation's
    deterministic resize and crop) or ``(seed, index)`` (a training's augmentation), transformed with Python, NumPy
    and torch (CPU) seeded from ``seed``: the same draws in whichever worker loads it. timm's and torchvision's
    transforms draw from those global generators, so each seeded item seeds them and then puts back the states it
    found: with ``loader_workers=0`` the items load in the training process, whose streams (mixup, drop-path,
    CUDA's) must not be the last image's."""

    def __init__(self, base: Dataset, transform: Callable):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item: int | tuple[int, int]):
        if not isinstance(item, tuple):
            image, label = self.base[item]
            return self.transform(image), label
        seed, index = item
        python_state, numpy_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):  # the CPU generator only: CUDA's streams are never touched
            random.seed(seed)
            np.random.seed(seed)
            torch.default_generator.manual_seed(seed)
            try:
                image, label = self.base[index]
                return self.transform(image), label
            finally:
                random.setstate(python_state)
                np.random.set_state(numpy_state)


class StreamingBatches:
    """Training batches read by a ``DataLoader`` with persistent workers that decode and augment to uint8
    (B, C, H, W); the device normalises and erases. ``transform`` is timm's ``create_transform(...,
    use_prefetcher=True)`` (no normalisation, no erasing: those are batched here)."""

    path = "streaming"

    def __init__(self, dataset: Dataset, transform: Callable, augmentation: Augmentation, mean: torch.Tensor,
                 std: torch.Tensor, batch_size: int, seed: int, device: torch.device, workers: int,
                 drop_last: bool = True, repeats: int = 1, rank: int = 0, world: int = 1):
        self.device, self.batch_size, self.seed = device, batch_size, seed
        self.mean, self.std = mean.to(device).view(1, -1, 1, 1), std.to(device).view(1, -1, 1, 1)
        # only the on-device step: erasing (the crop, flip and RandAugment run in the workers)
        self.erasing = Augmentation(re_prob=augmentation.re_prob, re_mode=augmentation.re_mode, hflip=0.0)
        self.plans = EpochPlans(len(dataset), seed, self.erasing, repeats, rank, world)
        self.drop_last = drop_last
        self.steps_per_epoch = self.plans.steps(batch_size, drop_last)
        self.sampler = _PlannedSampler(rank, world)
        # the loader's own generator: its base seed is drawn from it, not from the training process's stream
        self.loader = DataLoader(TransformedItems(dataset, transform), batch_size=batch_size, sampler=self.sampler,
                                 num_workers=workers, persistent_workers=workers > 0,
                                 pin_memory=device.type == "cuda", drop_last=False,
                                 generator=torch.Generator().manual_seed(seed))

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        order, params = self.plans.plan(epoch)
        if self.drop_last:
            order = order[: self.steps_per_epoch * self.batch_size]
        self.sampler.set_epoch(order, epoch_seed(self.seed, epoch), start_step * self.batch_size)
        params = {k: v.to(self.device) for k, v in params.items()}
        for step, (images, targets) in enumerate(self.loader, start=start_step):
            x = images.to(self.device, non_blocking=True).float().div_(255)
            x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
            if "erase" in params:
                part = slice(step * self.batch_size, step * self.batch_size + len(targets))
                x = erase(x, params["erase"][part], params["erase_seed"][part], self.erasing.re_mode)
            yield x, targets.to(self.device, non_blocking=True)


def stream_eval_batches(loader: DataLoader, mean: torch.Tensor, std: torch.Tensor,
                        device: torch.device) -> Iterator[Batch]:
    """A streaming loader's uint8 evaluation batches, normalised on the device."""
    mean, std = mean.to(device).view(1, -1, 1, 1), std.to(device).view(1, -1, 1, 1)
    for images, targets in loader:
        x = images.to(device, non_blocking=True).float().div_(255)
        yield ((x - mean) / std).contiguous(memory_format=torch.channels_last), targets.to(device, non_blocking=True)
