"""Scoring an architecture by its inherited weights: the one-shot evaluator of a search, and the supernet
training's per-epoch check.

A subnet is extracted to the ordinary ``SwiftFormer`` (plain convolutions run faster than sliced ones, and its BN
statistics are its own copy, so calibrating it leaves the supernet untouched), scored on val with the supernet's
running statistics (uncalibrated; only when asked: a search ranks by the calibrated score, and the extra pass
would add the val images once more to a candidate's cost), then with statistics re-estimated on a fixed set of
training images (``update_bn``, as ``calibrated`` does) and scored. Images are prepared once per side (the retraining's
evaluation transform: resize, centre crop, normalise) and kept as tensors, so a candidate costs two passes over
small tensors (three with the uncalibrated score) and nothing else.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import update_bn
from torch.utils.data import Dataset

from swiftformer import SwiftFormerArch

from .calibration import BNCalibration
from .checkpoint import SupernetRecord
from .model import SuperNet


@dataclass(frozen=True)
class ScoringConfig:
    """How many images score a candidate: fewer score faster and noisier. ``bench_supernet.py settings``
    measured the ranking each image count keeps (experiments/RESULTS.md): 128 / 500 agreed with 512 / 5,000 at
    tau 0.55 against 0.59 for 256 / 1,000, and no count was distinguishable from another against the reference
    protocol, while halving the images doubles the candidates a search sees (the issue's 300 per 10 minutes on
    2 cores, which 256 / 1,000 missed at about 250)."""

    bn_images: int = 128  # training images that re-estimate a subnet's BN statistics
    val_images: int | None = 500  # val images scored (a fixed class-stratified subset; None: all of val)
    batch_size: int = 256
    seed: int = 0  # which images
    uncalibrated: bool = False  # also score with the supernet's own BN statistics (one more pass over val)

    def __post_init__(self) -> None:
        BNCalibration(self.bn_images, self.batch_size, self.seed)  # the same checks
        if self.val_images is not None and (isinstance(self.val_images, bool) or self.val_images < 1):
            raise ValueError(f"val_images must be a positive integer or None, got {self.val_images!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SubnetScore:
    top1: float  # calibrated, a fraction (as the proxy's accuracy)
    loss: float  # calibrated mean cross-entropy
    top1_uncalibrated: float | None  # None unless ScoringConfig.uncalibrated
    loss_uncalibrated: float | None
    seconds: float


class SupernetScorer:
    """Inherited-weight accuracy of any architecture the supernet holds, on prepared val and calibration images.

    ``val`` and ``train`` are untransformed image datasets (``ImageSplits``); ``eval_transform(side)`` turns
    them into the supernet's input at a side.
    """

    def __init__(self, supernet: SuperNet, record: SupernetRecord, train: Dataset, val: Dataset,
                 eval_transform, config: ScoringConfig = ScoringConfig(), device: str | torch.device = "cpu"):
        self.supernet, self.record, self.config = supernet.eval(), record, config
        self.device = torch.device(device)
        self.eval_transform = eval_transform
        rng = np.random.default_rng(config.seed)
        labels = np.asarray(val.labels)
        chosen = (np.arange(len(labels)) if config.val_images is None or config.val_images >= len(labels)
                  else np.sort(_stratified(labels, config.val_images, rng)))
        self._val, self._train = (val, chosen), (train, np.sort(rng.permutation(len(train))[: config.bn_images]))
        self._prepared: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def tensors(self, split: str, side: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``split`` ("val" or "calibration") at ``side``, transformed and stacked once."""
        key = (split, side)
        if key not in self._prepared:
            dataset, indices = self._val if split == "val" else self._train
            transform = self.eval_transform(side)
            pairs = [dataset[int(i)] for i in indices]
            x = torch.stack([transform(image) for image, _ in pairs]).to(self.device)
            labels = [label for _, label in pairs]
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            self._prepared[key] = (x, torch.as_tensor(labels, device=self.device))
        return self._prepared[key]

    def check(self, arch: SwiftFormerArch) -> SwiftFormerArch:
        """``arch`` if the supernet holds it, else a one-line SupernetError naming what does not fit."""
        return self.supernet.check(arch)

    @torch.no_grad()
    def score(self, arch: SwiftFormerArch) -> SubnetScore:
        start = time.perf_counter()
        side = self.record.side(arch)
        model = self.supernet.extract(arch).eval()
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        val_x, val_y = self.tensors("val", side)
        top1_raw, loss_raw = self._evaluate(model, val_x, val_y) if self.config.uncalibrated else (None, None)
        calibration = self.tensors("calibration", side)[0]
        update_bn([calibration[i: i + self.config.batch_size] for i in range(0, len(calibration),
                                                                           self.config.batch_size)], model)
        top1, loss = self._evaluate(model.eval(), val_x, val_y)
        return SubnetScore(top1, loss, top1_raw, loss_raw, time.perf_counter() - start)

    def _evaluate(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        loss = torch.zeros((), dtype=torch.float64, device=self.device)
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            for i in range(0, len(x), self.config.batch_size):
                logits = model(x[i: i + self.config.batch_size]).float()
                target = y[i: i + self.config.batch_size]
                correct += (logits.argmax(1) == target).sum()
                loss += F.cross_entropy(logits, target, reduction="sum")
        return correct.item() / len(x), loss.item() / len(x)


def _stratified(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    from ..data import stratified

    return stratified(labels, n, rng)
