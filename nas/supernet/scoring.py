"""Scoring an architecture by its inherited weights: the one-shot evaluator of a search, and the supernet
training's per-epoch check.

A subnet is extracted to the ordinary ``SwiftFormer`` (plain convolutions run faster than sliced ones, and its BN
statistics are its own copy, so calibrating it leaves the supernet untouched), scored on val with the supernet's
running statistics (uncalibrated; only when asked: a search ranks by the calibrated score, and the extra pass
would add the val images once more to a candidate's cost), then with statistics re-estimated on a fixed set of
training images (``reestimate_bn``, as ``calibrated`` does) and scored. Images are prepared once per side (the
retraining's evaluation view: centre crop, resize, normalise) and kept as tensors, so a candidate costs two passes
over small tensors (three with the uncalibrated score) and nothing else. Re-estimation and scoring are the training
engine's (``reestimate_bn``, ``evaluate``): no host sync per batch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from swiftformer import SwiftFormerArch

from ..data import stratified
from ..identity import ScoringConfig
from ..data.loaders import ArrayImages
from ..engine import Policy, Scores, evaluate, reestimate_bn
from ..engine.augment import resize
from ..training.components import device_interpolation, eval_transform, normalisation
from ..training.recipe import Recipe
from .checkpoint import SupernetRecord
from .model import SuperNet


@dataclass
class SubnetScore:
    top1: float  # calibrated, a fraction (as the proxy's accuracy)
    loss: float  # calibrated mean cross-entropy
    top1_uncalibrated: float | None  # None unless ScoringConfig.uncalibrated
    loss_uncalibrated: float | None
    seconds: float


class SupernetScorer:
    """Inherited-weight accuracy of any architecture the supernet holds, on prepared val and calibration images.

    ``val`` and ``train`` are the splits' image datasets (``ImageSplits``); their chosen images are turned into the
    supernet's input at a side once, by the evaluation view of ``recipe`` (centre ``crop_pct``, resized), and kept
    on the device: images held in memory are resized there (the engine's ``resize``), a streamed tree's through
    timm's evaluation transform in this process.
    """

    def __init__(self, supernet: SuperNet, record: SupernetRecord, train: Dataset, val: Dataset, recipe: Recipe,
                 channels: int, config: ScoringConfig = ScoringConfig(), device: str | torch.device = "cpu"):
        self.supernet, self.record, self.config = supernet.eval(), record, config
        self.policy = Policy.for_device(device)
        self.device = self.policy.device
        self.recipe, self.channels = recipe, channels
        rng = np.random.default_rng(config.seed)
        labels = np.asarray(val.labels)
        chosen = (np.arange(len(labels)) if config.val_images is None or config.val_images >= len(labels)
                  else np.sort(stratified(labels, config.val_images, rng)))
        self._val, self._train = (val, chosen), (train, np.sort(rng.permutation(len(train))[: config.bn_images]))
        self._prepared: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
        mean, std = normalisation(channels)
        self.mean, self.std = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)

    def tensors(self, split: str, side: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``split`` ("val" or "calibration") at ``side``, in the evaluation view, normalised, once per side."""
        key = (split, side)
        if key not in self._prepared:
            dataset, indices = self._val if split == "val" else self._train
            labels = torch.as_tensor(np.asarray(dataset.labels)[indices])
            if isinstance(dataset, ArrayImages):
                x = torch.from_numpy(dataset.images[indices]).permute(0, 3, 1, 2).to(self.device).float().div_(255)
                x = resize(x, side, device_interpolation(self.recipe), self.recipe.crop_pct)
            else:
                transform = eval_transform(self.recipe, side, self.channels)
                x = torch.stack([transform(dataset[int(i)][0]) for i in indices]).to(self.device).float().div_(255)
            x = ((x - self.mean.to(self.device)) / self.std.to(self.device)).contiguous(
                memory_format=torch.channels_last)
            self._prepared[key] = (x, labels.to(self.device))
        return self._prepared[key]

    def check(self, arch: SwiftFormerArch) -> SwiftFormerArch:
        """``arch`` if the supernet holds it, else a one-line SupernetError naming what does not fit."""
        return self.supernet.check(arch)

    @torch.no_grad()
    def score(self, arch: SwiftFormerArch) -> SubnetScore:
        start = time.perf_counter()
        side = self.record.side(arch)
        model = self.policy.place(self.supernet.extract(arch)).eval()
        val_x, val_y = self.tensors("val", side)
        raw = self._evaluate(model, val_x, val_y) if self.config.uncalibrated else None
        calibration = self.tensors("calibration", side)[0]
        batch = self.config.batch_size
        reestimate_bn(model, (calibration[i: i + batch] for i in range(0, len(calibration), batch)),
                      self.policy.autocast())
        scores = self._evaluate(model, val_x, val_y)
        return SubnetScore(scores.top1, scores.loss, raw.top1 if raw else None, raw.loss if raw else None,
                           time.perf_counter() - start)

    def _evaluate(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Scores:
        batch = self.config.batch_size
        return evaluate(model, ((x[i: i + batch], y[i: i + batch]) for i in range(0, len(x), batch)), self.policy)
