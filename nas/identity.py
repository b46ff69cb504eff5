"""What names a training, torch-free: the pieces of identity that studies, checkpoints and reports share.

A study's identity (a search's, an ablation's, a supernet's) is a digest of its settings; the side an
architecture trains at is its resolution over a downscale; a proxy protocol and a supernet scoring are values
whose every field is part of that identity. These live here, below everything that trains, so that a search's
configuration, a supernet checkpoint and a report can name a training without importing what runs it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any


def digest(data: Any) -> str:
    """12 hex digits naming ``data`` (JSON with sorted keys): the same settings, the same name."""
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def training_side(resolution: int, downscale: float) -> int:
    """The one rule for the side an architecture of ``resolution`` pixels trains and is scored at (224 px / 4 =
    56 px), shared by the proxies, the supernet and its scorer."""
    return max(8, round(resolution / downscale))


PROXY_AUGMENTATIONS = ("flip", "crop")
# How a random resized crop is drawn: as torchvision draws it (since 2026-12-07), or clipped to the image (the draw
# before; a protocol recorded with it says so to resume and reproduce). Part of the identity of crop protocols:
# a record made before the choice existed names no draw and means "clipped".
CROP_DRAWS = ("torchvision", "clipped")


@dataclass(frozen=True)
class ProxyConfig:
    """A training protocol. Everything here is part of a study's identity: change one value, get other scores."""

    epochs: int = 2
    downscale: float = 4.0  # trained at the architecture's resolution / downscale (224 px -> 56 px)
    subset: int | None = 4000  # training images, a fixed class-stratified subset of train (None: all of train)
    val_subset: int | None = 2000  # validation images scored (None: the whole val split)
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.025  # the official recipe's
    warmup_epochs: float = 0.25
    label_smoothing: float = 0.1
    seed: int = 0  # initialisation and batch order
    val_fraction: float = 0.1  # the val hold-out: this fraction of each class of the source's training split
    val_seed: int = 0  # which images it holds (kept when ``seed`` changes, so fresh seeds see the same split)
    bn_images: int = 1024  # training images that re-estimate BatchNorm statistics before each evaluation
    augment: str = "flip"  # "flip": whole images flipped at random; "crop": also a random resized crop (35-100 %)
    crop_draw: str = "torchvision"  # of a "crop" protocol: CROP_DRAWS

    def __post_init__(self) -> None:
        if not self.downscale >= 1:
            raise ValueError(f"proxy downscale {self.downscale!r} must be at least 1 (1 trains at full resolution)")
        if self.augment not in PROXY_AUGMENTATIONS:
            raise ValueError(f"proxy augment {self.augment!r} is not supported; accepted: "
                             f"{', '.join(PROXY_AUGMENTATIONS)}")
        if self.crop_draw not in CROP_DRAWS:
            raise ValueError(f"proxy crop_draw {self.crop_draw!r} is not supported; accepted: {', '.join(CROP_DRAWS)}")

    def resolution(self, arch_resolution: int) -> int:
        """The side an architecture of ``arch_resolution`` pixels is trained at."""
        return training_side(arch_resolution, self.downscale)

    def to_dict(self) -> dict[str, Any]:
        """Every field, except ``augment`` at its default and ``crop_draw`` where it was not yet a choice (flips
        only, or the clipped draw): fields added later leave the identity of the studies recorded before them
        unchanged, and a crop protocol drawn as torchvision draws is another protocol than one recorded before."""
        data = asdict(self)
        if data["augment"] == "flip":
            del data["augment"]
        if self.augment == "flip" or self.crop_draw == "clipped":
            del data["crop_draw"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProxyConfig":
        """The protocol a ``to_dict`` (a study's record) names: a crop protocol that names no draw was drawn
        clipped (it was recorded before the draw was a choice)."""
        if data.get("augment") == "crop" and "crop_draw" not in data:
            data = {**data, "crop_draw": "clipped"}
        return cls(**data)

    def describe(self) -> str:
        images = "all train images" if self.subset is None else f"{self.subset} train images"
        crop = ((", random resized crops" + (" (clipped draw)" if self.crop_draw == "clipped" else ""))
                if self.augment == "crop" else "")
        return (f"{self.epochs} epoch(s) on {images}{crop} at 1/{self.downscale:g} of the architecture's resolution, "
                f"batch {self.batch_size}, AdamW lr {self.lr:g}, seed {self.seed}; scored on "
                f"{'all' if self.val_subset is None else self.val_subset} val images")


@dataclass(frozen=True)
class ScoringConfig:
    """How many images score a candidate: fewer score faster and noisier. The defaults are the counts whose
    ranking ``bench_supernet.py settings`` could not tell from larger ones' while they score twice the candidates
    in the same time (the figures: experiments/RESULTS.md)."""

    bn_images: int = 128  # training images that re-estimate a subnet's BN statistics
    val_images: int | None = 500  # val images scored (a fixed class-stratified subset; None: all of val)
    batch_size: int = 256
    seed: int = 0  # which images
    uncalibrated: bool = False  # also score with the supernet's own BN statistics (one more pass over val)

    def __post_init__(self) -> None:
        for name in ("bn_images", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BN calibration {name} must be a positive integer, got {value!r}")
        if self.val_images is not None and (isinstance(self.val_images, bool) or self.val_images < 1):
            raise ValueError(f"val_images must be a positive integer or None, got {self.val_images!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
