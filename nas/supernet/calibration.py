"""BatchNorm re-estimation per subnet, on a fixed set of training images.

A supernet's running statistics are a blur over every subnet trained through them, and uncalibrated BN is the
main cause of bad supernet rankings in the literature; so each subnet's statistics are re-estimated before it is
scored: reset, then a cumulative average (``momentum=None``) over a fixed image set, as AttentiveNAS does. This
is the training engine's ``reestimate_bn`` (``update_bn``'s arithmetic without its host syncs), the same routine
the proxy trainer's "precise BN" uses.

``reestimate_bn`` resets every BN of the supernet, not only the active prefix. ``calibrated`` therefore keeps a copy
of all BN buffers and puts it back on exit: the calibrated statistics live only inside the ``with`` block, no
subnet sees another's, and the supernet's own (training) statistics stay intact for uncalibrated scoring, which
is what "tau with and without calibration" compares.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import torch

from swiftformer import SwiftFormerArch

from ..engine import reestimate_bn
from .model import SuperNet


@dataclass(frozen=True)
class BNCalibration:
    """Which training images re-estimate BN statistics, recorded with every calibrated score.

    The same ``images`` images (chosen by ``seed``) in the same ``batch_size`` batches for every subnet, so that
    calibrated scores differ only by architecture. Defaults follow OFA (2000 images).
    """

    images: int = 2000
    batch_size: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("images", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BN calibration {name} must be a positive integer, got {value!r}")

    def batches(self, pool: torch.Tensor) -> list[torch.Tensor]:
        """The calibration batches drawn from ``pool`` (training images, N x C x H x W, at the subnet's input
        size); all of the pool when it holds fewer than ``images``."""
        generator = torch.Generator().manual_seed(self.seed)
        chosen = torch.randperm(len(pool), generator=generator)[: self.images].to(pool.device)
        images = pool[chosen]
        return [images[i: i + self.batch_size] for i in range(0, len(images), self.batch_size)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def calibrated(supernet: SuperNet, arch: SwiftFormerArch, batches: list[torch.Tensor]) -> Iterator[SuperNet]:
    """Inside the block, ``supernet`` runs ``arch`` (active) with BN statistics re-estimated on ``batches``.

    ``extract(arch)`` inside the block copies the calibrated statistics. On exit every BN buffer is restored.
    """
    saved = {name: buffer.clone() for name, buffer in supernet.named_buffers()}
    previous = supernet.active_arch
    try:
        supernet.set_active(arch)
        was_training = supernet.training
        reestimate_bn(supernet, batches)
        supernet.train(was_training)
        yield supernet
    finally:
        with torch.no_grad():
            for name, buffer in supernet.named_buffers():
                buffer.copy_(saved[name])
        supernet.active_arch = previous
