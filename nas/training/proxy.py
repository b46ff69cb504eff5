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

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

import swiftformer._torchvision_fix  # noqa: F401

import numpy as np
import torch
import torch.nn.functional as F
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch.optim.swa_utils import update_bn

from swiftformer import SwiftFormer, SwiftFormerArch
from swiftformer.counting import feature_sizes

from ..data import ImageData, stratified

if TYPE_CHECKING:
    from search_spaces import SearchSpace

SPLITS = ("train", "val", "test")


class ProxyDiverged(RuntimeError):
    """The training loss stopped being finite."""


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

    def __post_init__(self) -> None:
        if not self.downscale >= 1:
            raise ValueError(f"proxy downscale {self.downscale!r} must be at least 1 (1 trains at full resolution)")

    def resolution(self, arch_resolution: int) -> int:
        """The side an architecture of ``arch_resolution`` pixels is trained at."""
        return max(8, round(arch_resolution / self.downscale))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        images = "all train images" if self.subset is None else f"{self.subset} train images"
        return (f"{self.epochs} epoch(s) on {images} at 1/{self.downscale:g} of the architecture's resolution, "
                f"batch {self.batch_size}, AdamW lr {self.lr:g}, seed {self.seed}; scored on "
                f"{'all' if self.val_subset is None else self.val_subset} val images")


@dataclass
class ProxyResult:
    accuracy: float  # on the val split
    epochs_run: int
    seconds: float  # wall time
    cpu_seconds: float  # process CPU time (all threads)
    final_loss: float
    resolution: int
    model: torch.nn.Module | None = None  # the trained model, for a final evaluation on another split


class ProxyTask:
    """A dataset prepared once for a protocol: splits chosen, images resized and normalised on first use."""

    def __init__(self, data: ImageData, config: ProxyConfig, device: str | torch.device = "cpu"):
        self.config, self.device = config, torch.device(device)
        self.num_classes, self.channels = data.num_classes, data.channels
        self.holdout = data.holdout(config.val_fraction, config.val_seed)
        rng = np.random.default_rng(config.seed)
        train = self.holdout.train
        if config.subset is not None:
            train = train[stratified(data.train_y[train], config.subset, rng)]
        val = self.holdout.val
        if config.val_subset is not None:
            val = val[stratified(data.train_y[val], config.val_subset, rng)]
        self._images = {"train": (data.train_x[train], data.train_y[train]),
                        "val": (data.train_x[val], data.train_y[val]), "test": (data.test_x, data.test_y)}
        pixels = self._images["train"][0].reshape(-1, self.channels)
        self.mean = torch.tensor(pixels.mean(0) / 255, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(pixels.std(0) / 255, dtype=torch.float32).view(1, -1, 1, 1)
        self._prepared: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.cuda = self.device.type == "cuda"

    def size(self, split: str) -> int:
        return len(self._images[split][1])

    def tensors(self, split: str, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``split``'s images at ``resolution``, normalised, channels-last, on the device (prepared once)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
        key = (split, resolution)
        if key not in self._prepared:
            images, labels = self._images[split]
            chunks = []
            for i in range(0, len(images), 4096):  # bounded peak memory for large splits
                x = torch.from_numpy(images[i: i + 4096]).permute(0, 3, 1, 2).float().div_(255)
                if x.shape[-1] != resolution or x.shape[-2] != resolution:
                    x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True,
                                      align_corners=False)
                chunks.append(((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last))
            self._prepared[key] = (torch.cat(chunks).to(self.device), torch.from_numpy(labels).to(self.device))
        return self._prepared[key]

    def proxy_arch(self, arch: SwiftFormerArch) -> SwiftFormerArch:
        """The architecture as trained here: this task's classes and channels, scaled resolution, one head."""
        return arch.replace(num_classes=self.num_classes, in_chans=self.channels,
                            resolution=self.config.resolution(arch.resolution), distillation=False)

    def train(self, arch: SwiftFormerArch, report: Callable[[int, float], None] | None = None,
              keep_model: bool = False) -> ProxyResult:
        """Train ``arch`` from scratch; ``report(epoch, val_accuracy)`` after each epoch may raise to stop early.

        The loss stays on the device (no host sync per step); it is checked for divergence once per epoch.
        """
        cfg = self.config
        start, cpu_start = time.perf_counter(), time.process_time()
        trained = self.proxy_arch(arch)
        train_x, train_y = self.tensors("train", trained.resolution)
        torch.manual_seed(cfg.seed)
        model = SwiftFormer(trained).to(self.device, memory_format=torch.channels_last)
        optimizer = create_optimizer_v2(model, "adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = math.ceil(len(train_x) / cfg.batch_size)
        scheduler = CosineLRScheduler(optimizer, t_initial=cfg.epochs * steps_per_epoch, lr_min=cfg.lr * 0.01,
                                      warmup_t=int(cfg.warmup_epochs * steps_per_epoch), warmup_lr_init=cfg.lr * 0.01,
                                      t_in_epochs=False)
        criterion = LabelSmoothingCrossEntropy(cfg.label_smoothing)
        amp_dtype = torch.bfloat16 if self.cuda and torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=self.cuda and amp_dtype == torch.float16)
        generator = torch.Generator().manual_seed(cfg.seed)
        accuracy, loss_value, step = 0.0, float("nan"), 0
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            order = torch.randperm(len(train_x), generator=generator).to(self.device)
            flips = (torch.rand(len(train_x), generator=generator) < 0.5).to(self.device)
            loss_sum = torch.zeros((), device=self.device)
            for i in range(0, len(order), cfg.batch_size):
                idx = order[i: i + cfg.batch_size]
                x = train_x[idx]
                x = torch.where(flips[i: i + len(idx)].view(-1, 1, 1, 1), x.flip(-1), x)
                with torch.autocast(self.device.type, dtype=amp_dtype, enabled=self.cuda):
                    loss = criterion(model(x), train_y[idx])
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                loss_sum += loss.detach().float()
                step += 1
                scheduler.step_update(step)
            loss_value = loss_sum.item() / steps_per_epoch  # the one host sync of the epoch
            if not math.isfinite(loss_value):
                raise ProxyDiverged(f"loss became {loss_value} in epoch {epoch} (steps up to {step})")
            accuracy = self.evaluate(model, "val")
            if report is not None:
                report(epoch, accuracy)
        return ProxyResult(accuracy, cfg.epochs, time.perf_counter() - start, time.process_time() - cpu_start,
                           loss_value, trained.resolution, model if keep_model else None)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str = "val", recalibrate: bool = True) -> float:
        """Top-1 accuracy on ``split`` after re-estimating BatchNorm statistics ("precise BN"); pass
        ``recalibrate=False`` when the model was just evaluated and its statistics are already re-estimated.

        After a few hundred steps the running averages still lag far behind the weights: on Fashion-MNIST they
        put XS at 0.19 after one epoch against 0.75 with re-estimated statistics (0.74 against 0.81 after two).
        """
        resolution = model.arch.resolution
        if recalibrate:
            train_x = self.tensors("train", resolution)[0]
            batch = self.config.batch_size
            update_bn([train_x[i: i + batch] for i in range(0, min(len(train_x), self.config.bn_images), batch)],
                      model)
        model.eval()
        x, y = self.tensors(split, resolution)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        with torch.autocast(self.device.type, enabled=self.cuda):
            for i in range(0, len(x), 512):
                correct += (model(x[i: i + 512]).argmax(1) == y[i: i + 512]).sum()
        return correct.item() / len(x)


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
