"""Training an architecture under a fixed protocol; the search's proxy is a cheap one, the fidelity benchmark's
reference protocol a strong one.

Every trial of a study sees the same images, downscale and recipe (timm's AdamW, cosine schedule with warm-up,
label smoothing), so scores are comparable between architectures. The protocol trains on the *train* split,
selects on the *val* hold-out carved from the source's training images, and never reads *test*; a final
evaluation asks for it explicitly (``ProxyTask.evaluate(model, "test")``).

The input side is the architecture's own resolution divided by ``downscale``: every resolution choice of a space
keeps its relative cost and token geometry. At 224 px / 4 = 56 px the stages see 14x14, 7x7, 4x4 and 2x2 maps,
so attention in stages 3 and 4 attends over 16 and 4 tokens; at 32 px the last stage has one token, where
additive attention degenerates to an MLP (its normalised query is +-1).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import swiftformer._torchvision_fix  # noqa: F401

import numpy as np
import torch
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler

from swiftformer import SwiftFormer, SwiftFormerArch
from swiftformer.counting import feature_sizes

from ..data import ImageData, stratified
from ..identity import ProxyConfig
from ..engine import (Augmentation, Diverged, Policy, ResidentBatches, Training, classification_step, evaluate, fit,
                      reestimate_bn, resident, seed_init)
from ..engine.augment import RESIZED_CROPS
from ..engine.batches import prepare

if TYPE_CHECKING:
    from search_spaces import SearchSpace, Space

SPLITS = ("train", "val", "test")
# a protocol's ``augment``: whole images flipped (every proxy before version 2 of the fidelity benchmark), or random
# resized crops of 35-100 % of the image as well (the usual small-image recipe: longer schedules overfit less)
PROXY_AUGMENTATION = {"flip": Augmentation(crop="none", hflip=0.5),
                      "crop": Augmentation(crop="resized", scale=(0.35, 1.0), hflip=0.5)}


ProxyDiverged = Diverged  # the training loss stopped being finite (the engine's error, under its old name)


@dataclass
class ProxyResult:
    accuracy: float  # on the val split
    epochs_run: int
    seconds: float  # wall time
    cpu_seconds: float  # process CPU time (all threads)
    final_loss: float
    resolution: int
    model: torch.nn.Module | None = None  # the trained model, for a final evaluation on another split
    loss_sum: float = float("nan")  # the sum over epochs of each epoch's mean training loss (Ru et al.'s SoTL)


class ProxyTask:
    """A dataset prepared once for a protocol: splits chosen, images held on the training device as uint8 at their
    stored size (shared by every task of the process) and resized there once per training side (``view``).
    """

    def __init__(self, data: ImageData, config: ProxyConfig, device: str | torch.device = "cpu"):
        self.config = config
        self.policy = Policy.for_device(device)
        self.device = self.policy.device
        self.num_classes, self.channels = data.num_classes, data.channels
        self.holdout = data.holdout(config.val_fraction, config.val_seed)
        rng = np.random.default_rng(config.seed)
        train = self.holdout.train
        if config.subset is not None:
            train = train[stratified(data.train_y[train], config.subset, rng)]
        val = self.holdout.val
        if config.val_subset is not None:
            val = val[stratified(data.train_y[val], config.val_subset, rng)]
        self._source = {"train": resident(data.train_x, self.device), "test": resident(data.test_x, self.device)}
        self._labels = {"train": torch.from_numpy(data.train_y).to(self.device),
                        "test": torch.from_numpy(data.test_y).to(self.device)}
        self._indices = {"train": train, "val": val, "test": np.arange(len(data.test_y))}
        pixels = data.train_x[train].reshape(-1, self.channels)
        self.mean = torch.tensor(pixels.mean(0) / 255, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(pixels.std(0) / 255, dtype=torch.float32).view(1, -1, 1, 1)
        self._views: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor | None]] = {}

    def size(self, split: str) -> int:
        return len(self._indices[self._check(split)])

    def _check(self, split: str) -> str:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
        return split

    def view(self, split: str, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``split``'s images at ``resolution``, normalised, channels_last, and their labels, on the device: resized
        there from the resident uint8 images once per side (a trial reads them every step and every evaluation)."""
        key = (self._check(split), resolution)
        if key not in self._views:
            source = "test" if split == "test" else "train"
            indices = self._indices[split]
            x = prepare(self._source[source], indices, resolution, self.mean, self.std)
            self._views[key] = (x, self._labels[source][torch.as_tensor(indices).to(self.device)])
        return self._views[key]

    def bn_view(self, resolution: int, count: int) -> torch.Tensor:
        """The first ``count`` training images at ``resolution``, as ``view`` gives them: a slice of the training
        view where a training already prepared it (flips only), else only these images (with crops the training
        never prepares the whole split in float; BatchNorm re-estimation needs a thousand of its images)."""
        if ("train", resolution) in self._views:
            return self._views[("train", resolution)][0][:count]
        key = ("bn", resolution)
        if key not in self._views:
            indices = self._indices["train"][:count]
            self._views[key] = (prepare(self._source["train"], indices, resolution, self.mean, self.std), None)
        return self._views[key][0][:count]

    def batches(self, split: str, resolution: int, limit: int | None = None,
                batch_size: int = 512) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``split``'s images (the first ``limit``) at ``resolution``, in batches, from its view."""
        x, y = self.view(split, resolution)
        end = len(y) if limit is None else min(limit, len(y))
        return ((x[i: min(i + batch_size, end)], y[i: min(i + batch_size, end)]) for i in range(0, end, batch_size))

    def proxy_arch(self, arch: SwiftFormerArch) -> SwiftFormerArch:
        """The architecture as trained here: this task's classes and channels, scaled resolution, one head."""
        return arch.replace(num_classes=self.num_classes, in_chans=self.channels,
                            resolution=self.config.resolution(arch.resolution), distillation=False)

    def side(self, arch: Any, space: "Space | None" = None) -> int:
        """The side ``arch`` trains and is scored at: its resolution over the protocol's downscale (a SwiftFormer
        architecture's own; another space's input side, e.g. NAS-Bench-201's 32 px)."""
        if space is None:
            return self.proxy_arch(arch).resolution
        return self.config.resolution(space.input_shape(arch)[-1])

    def training(self, arch: Any, space: "Space | None" = None) -> Training:
        """The protocol's training of ``arch`` (a SwiftFormer architecture, or one of ``space``) as the engine runs
        it: a fresh model from the seed, timm's AdamW and cosine schedule (per step, with warm-up), label
        smoothing, whole images resized to the side and flipped at random."""
        cfg = self.config
        side = self.side(arch, space)
        seed_init(cfg.seed)
        built = (SwiftFormer(self.proxy_arch(arch)) if space is None
                 else space.for_task(self.num_classes, self.channels).build_model(arch))
        model = self.policy.place(built)
        optimizer = create_optimizer_v2(model, "adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
        augmentation = PROXY_AUGMENTATION[cfg.augment]
        if augmentation.crop != "none":
            augmentation = dataclasses.replace(augmentation, crop=RESIZED_CROPS[cfg.crop_draw])
        prepared = self.view("train", side)[0] if augmentation.cacheable else None
        source = ResidentBatches(self._source["train"], self._labels["train"], self._indices["train"], augmentation,
                                 side, self.mean, self.std, cfg.batch_size, cfg.seed, prepared=prepared)
        steps_per_epoch = source.steps_per_epoch
        scheduler = CosineLRScheduler(optimizer, t_initial=cfg.epochs * steps_per_epoch, lr_min=cfg.lr * 0.01,
                                      warmup_t=int(cfg.warmup_epochs * steps_per_epoch), warmup_lr_init=cfg.lr * 0.01,
                                      t_in_epochs=False)
        scaler = self.policy.scaler()
        step = classification_step(model, LabelSmoothingCrossEntropy(cfg.label_smoothing), self.policy, scaler)
        return Training(model, optimizer, source, self.policy, step, scheduler, scaler, seed=cfg.seed)

    def train(self, arch: Any, report: Callable[[int, float], None] | None = None,
              keep_model: bool = False, space: "Space | None" = None) -> ProxyResult:
        """Train ``arch`` (SwiftFormer's, or of ``space``) from scratch; ``report(epoch, val_accuracy)`` after each
        epoch may raise to stop early."""
        cfg = self.config
        start, cpu_start = time.perf_counter(), time.process_time()
        training = self.training(arch, space)
        model, side = training.model, self.side(arch, space)

        def end_epoch(epoch: int, losses: list[float]) -> dict[str, Any]:
            accuracy = self.evaluate(model, "val", resolution=side)
            if report is not None:
                report(epoch, accuracy)
            return {"val_accuracy": accuracy}

        state = fit(training, cfg.epochs, end_epoch=end_epoch)
        last = state.log[-1]
        return ProxyResult(last["val_accuracy"], cfg.epochs, time.perf_counter() - start,
                           time.process_time() - cpu_start, last["train_loss"], side,
                           model if keep_model else None, sum(row["train_loss"] for row in state.log))

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str = "val", recalibrate: bool = True,
                 resolution: int | None = None) -> float:
        """Top-1 accuracy on ``split`` at ``resolution`` (default: a SwiftFormer model's own) after re-estimating
        BatchNorm statistics ("precise BN") on the first ``bn_images`` training images; pass
        ``recalibrate=False`` when the model was just evaluated and its statistics are already re-estimated."""
        resolution = resolution or model.arch.resolution
        if recalibrate:
            batch = self.config.batch_size
            whole = -(-min(self.size("train"), self.config.bn_images) // batch) * batch  # whole batches, as before
            x = self.bn_view(resolution, whole)
            reestimate_bn(model, (x[i: i + batch] for i in range(0, len(x), batch)), self.policy.autocast())
        return evaluate(model, self.batches(split, resolution), self.policy).top1


def attention_token_warnings(space: "SearchSpace", config: ProxyConfig) -> list[str]:
    """One line per stage whose attention encoders would attend over fewer than 4 tokens under ``config``."""
    warnings = []
    for resolution in space.resolutions:
        side = config.resolution(resolution)
        arch = space.sample(0).replace(resolution=resolution)
        _, sizes = feature_sizes(arch, side)
        for index, (choices, (h, w)) in enumerate(zip(space.stages, sizes), start=1):
            may_attend = choices.attention == "mask" or max(choices.attn_blocks, default=0) > 0
            if may_attend and h * w < 4:
                warnings.append(f"warning: at proxy resolution {side} px ({resolution} px / {config.downscale:g}) "
                                f"attention in stage {index} attends over {h * w} token(s) ({h}x{w}): the proxy "
                                "cannot see where attention pays; use a smaller --proxy-downscale")
    return warnings
