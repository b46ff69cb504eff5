"""Image datasets for full training: the same specs and splits as the search, read image by image.

Small datasets (Fashion-MNIST, CIFAR-10's python batches or JPEG tree, any tree of small images) are decoded once
into arrays, which the training engine holds on the device; a tree of photographs (RandomResizedCrop from the full
picture, trees the size of ImageNet) is read from disk by the DataLoader's workers, one file at a time. Either way
the train/val split is ``holdout`` on the training labels: the images a search selected on are the images a
retraining validates on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from .datasets import (MAX_STORED_SIDE, RESIDENT_BUDGET_BYTES, DatasetError, Holdout, first_side, holdout,
                       load_data, resolve_spec, tree_files)


def small_tree(root: Path, name: str) -> bool:
    """Whether an ImageFolder tree is held in memory (small images, within the budget) rather than streamed."""
    _, train_files, test_files = tree_files(root, name)
    side = first_side(train_files[0][0])
    return side <= MAX_STORED_SIDE and (len(train_files) + len(test_files)) * side * side * 3 <= RESIDENT_BUDGET_BYTES


class ArrayImages(Dataset):
    """Images held as uint8 (N, H, W, C) arrays, served as PIL images to timm's transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        array = self.images[index]
        return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array), int(self.labels[index])


class FileImages(Dataset):
    """Image files read when asked for; an unreadable file stops the run with its path (never skipped silently)."""

    def __init__(self, files: Sequence[tuple[Path, int]]):
        self.files = list(files)
        self.labels = np.asarray([label for _, label in self.files], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        from PIL import Image, UnidentifiedImageError

        path, label = self.files[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DatasetError(f"cannot read image {path} ({type(exc).__name__}); remove or replace it") from None
        return image, label


@dataclass
class ImageSplits:
    """A dataset's train, val and test images (untransformed), with what a report says about them."""

    name: str
    classes: tuple[str, ...]
    channels: int
    train: Dataset
    val: Dataset
    test: Dataset
    holdout: Holdout
    streamed: bool  # read from files by the loader's workers, rather than held in memory

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> str:
        where = "read from disk" if self.streamed else "in memory"
        return (f"{self.name}: {len(self.train)} train / {len(self.val)} val (stratified {self.holdout.fraction:g} "
                f"hold-out, seed {self.holdout.seed}) / {len(self.test)} test, {self.num_classes} classes, {where}")


def image_splits(spec: str, val_fraction: float = 0.1, val_seed: int = 0) -> ImageSplits:
    """The images of ``spec`` (``fashion-mnist``, ``cifar10:PATH``, ``imagefolder:PATH``), split three ways.

    A tree of small images (its first image at most ``MAX_STORED_SIDE`` on its shorter side, all of it within
    ``RESIDENT_BUDGET_BYTES`` as uint8: CIFAR-10's JPEG tree) is decoded once into memory (``load_data``'s cache)
    and trains from the device; a tree of photographs streams from disk at full size."""
    kind, root, name = resolve_spec(spec)
    if kind == "tree" and not small_tree(root, name):
        classes, train_files, test_files = tree_files(root, name)
        labels = np.asarray([label for _, label in train_files], dtype=np.int64)
        split = holdout(labels, val_fraction, val_seed)
        return ImageSplits(name, classes, 3, FileImages([train_files[i] for i in split.train]),
                           FileImages([train_files[i] for i in split.val]), FileImages(test_files), split, True)
    data = load_data(spec)
    split = data.holdout(val_fraction, val_seed)
    return ImageSplits(data.name, data.classes, data.channels,
                       ArrayImages(data.train_x[split.train], data.train_y[split.train]),
                       ArrayImages(data.train_x[split.val], data.train_y[split.val]),
                       ArrayImages(data.test_x, data.test_y), split, False)
