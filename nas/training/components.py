"""The parts of a retraining, each built from the library that does the job: the architecture a reference names,
the student and teacher models, a warm start, timm's training task and Mixup, and the data pipeline (the
engine's device-resident batches, or timm's transforms in loader workers, with sharded evaluation)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import swiftformer._torchvision_fix  # noqa: F401

import numpy as np
import timm
import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.data import Mixup, create_transform
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.task import ClassificationTask, TokenDistillationTask
from timm.utils import unwrap_model
from torch import nn
from torch.utils.data import DataLoader, Subset

import swiftformer
from swiftformer import SwiftFormerArch

from ..data.loaders import ArrayImages, ImageSplits
from ..engine import (CHECKPOINT_EVERY_S, Augmentation, EpochSource, Policy, PolicyError, ResidentBatches,
                      ResidentImages, StreamingBatches, eval_batches, resident)
from ..engine.augment import RESIZED_CROPS
from ..engine.batches import TransformedItems, stream_eval_batches
from ..files import UNREADABLE, load_torch, unreadable_checkpoint
from ..models import ModelRefError, parse_model_ref
from .processes import Processes
from .recipe import Recipe, RecipeError, RetrainError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
GRAY_MEAN, GRAY_STD = (0.5,), (0.5,)


def resolve_reference(ref: str) -> tuple[SwiftFormerArch, str]:
    """The architecture a REF names: a search run directory (its best architecture), an architecture JSON
    (``best_arch.json`` or any other) or ``swiftformer:<variant>``; and a name for it."""
    path = Path(ref)
    if path.is_dir():
        best = path / "best_arch.json"
        if not best.is_file():
            raise RetrainError(f"{ref!r} is a directory without best_arch.json; give a search run directory, an "
                               "architecture .json file or swiftformer:<xs|s|l1|l3>")
        return SwiftFormerArch.load(best), f"best of {path.name}"
    try:
        model_ref = parse_model_ref(ref)
    except ModelRefError as exc:
        raise RetrainError(f"{exc}") from None
    if model_ref.arch is None:
        raise RetrainError(f"{ref!r} is not of the SwiftFormer family; nas retrain takes a search run directory, "
                           "an architecture .json file or swiftformer:<xs|s|l1|l3>")
    return model_ref.arch, model_ref.name


def build_student(arch: SwiftFormerArch, mean: tuple[float, ...], std: tuple[float, ...]) -> nn.Module:
    """The model through timm's registry (so it carries a ``pretrained_cfg``), normalised as its data is."""
    model = timm.create_model("swiftnas_arch", arch=arch)
    model.pretrained_cfg = {**model.pretrained_cfg, "mean": mean, "std": std,
                            "input_size": (arch.in_chans, arch.resolution, arch.resolution)}
    return model


def load_teacher(ref: str, checkpoint: str | None, num_classes: int, in_chans: int) -> nn.Module:
    """A trained teacher: ``timm:NAME`` or one of our family's references, with its weights from ``checkpoint``
    (a retrain directory's ``model.pth`` is found from the directory)."""
    path = Path(ref)
    if path.is_dir() and (path / "arch.json").is_file():  # a retrain output directory
        checkpoint = checkpoint or str(path / "model.pth")
        ref = str(path / "arch.json")
    if not checkpoint:
        raise RetrainError(f"teacher {ref!r} needs its trained weights: --teacher-checkpoint FILE")
    if not Path(checkpoint).is_file():
        raise RetrainError(f"teacher checkpoint {checkpoint!r} does not exist")
    try:
        model_ref = parse_model_ref(ref)
    except ModelRefError as exc:
        raise RetrainError(f"teacher: {exc}") from None
    if model_ref.arch is not None:
        mean, std = normalisation(in_chans)  # trained by nas retrain: normalised as its students are
        model = build_student(model_ref.arch.replace(num_classes=num_classes, in_chans=in_chans), mean, std)
        loader = lambda: swiftformer.load_checkpoint(model, checkpoint)  # noqa: E731
    else:
        model = timm.create_model(model_ref.name, pretrained=False, num_classes=num_classes, in_chans=in_chans)
        if in_chans != 3:  # its ImageNet statistics have three channels
            mean, std = normalisation(in_chans)
            model.pretrained_cfg = {**model.pretrained_cfg, "mean": mean, "std": std}
        loader = lambda: timm.models.load_checkpoint(model, checkpoint, strict=True)  # noqa: E731
    try:
        loader()
    except UNREADABLE as exc:
        first = str(exc).strip().splitlines()[0]
        if not isinstance(exc, (RuntimeError, KeyError)) or "PytorchStreamReader" in first:
            raise unreadable_checkpoint(checkpoint, exc, "teacher checkpoint", "give --teacher-checkpoint the "
                                        "teacher's model.pth (a file torch.save wrote)") from None
        raise RetrainError(f"teacher checkpoint {checkpoint!r} does not fit {ref} with {num_classes} classes: "
                           f"{first[:200]}") from None
    return model.eval()


def load_init(model: nn.Module, init: str) -> str:
    """Warm-start from ``checkpoint:FILE`` or ``supernet:DIR`` (the architecture's weights extracted from a trained
    supernet); heads of another class count, or a distillation head the model lacks, are left out. Says what it
    did."""
    kind, _, path = init.partition(":")
    if kind not in ("checkpoint", "supernet") or not path:
        raise RetrainError(f"--init {init!r} is not supported; accepted: checkpoint:FILE, supernet:DIR")
    if kind == "supernet":
        state, source = _supernet_weights(unwrap_model(model).arch, path), f"supernet {path}"
    else:
        if not Path(path).is_file():
            raise RetrainError(f"--init checkpoint {path!r} does not exist")
        state = swiftformer.convert_checkpoint(load_torch(path, "checkpoint", "give --init checkpoint: a file of "
                                                          "weights that torch.save wrote (e.g. a model.pth)"))
        source = path
    own = model.state_dict()
    heads = ("head.", "dist_head.")
    mismatched = sorted(k for k, v in state.items() if k in own and own[k].shape != v.shape)
    if any(not k.startswith(heads) for k in mismatched):
        raise RetrainError(f"--init {kind} {path!r} is of another architecture (e.g. {mismatched[0]}: "
                           f"{tuple(state[mismatched[0]].shape)} vs {tuple(own[mismatched[0]].shape)})")
    dropped = mismatched + sorted(k for k in state if k not in own and k.startswith(heads))
    state = {k: v for k, v in state.items() if k not in dropped}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(heads) for k in missing):
        raise RetrainError(f"--init {kind} {path!r} does not match the architecture: "
                           f"{len(missing)} missing, {len(unexpected)} unexpected keys")
    notes = (["heads left new: other class count"] if mismatched else []) + \
            (["its distillation head dropped: the model has none"] if len(dropped) > len(mismatched) else [])
    return f"initialised from {source}" + (f" ({'; '.join(notes)})" if notes else "")


def _supernet_weights(arch: SwiftFormerArch, folder: str) -> dict[str, torch.Tensor]:
    """``arch``'s weights sliced out of the supernet trained in ``folder`` (official naming)."""
    from ..supernet import SupernetError
    from ..supernet.checkpoint import load_supernet

    try:
        supernet, _ = load_supernet(folder)
        return supernet.sub_state_dict(arch)
    except SupernetError as exc:
        raise RetrainError(f"--init supernet:{folder}: {exc}") from None


def build_task(model: nn.Module, recipe: Recipe, teacher: nn.Module | None, device: torch.device) -> nn.Module:
    """timm's training task: the labels' loss (soft-target CE under mixup, else label smoothing), plus hard or
    soft token distillation into the distillation head when there is a teacher."""
    criterion = label_criterion(recipe)
    if teacher is None:
        unwrap_model(model).set_distilled_training(False)  # no teacher: the heads' mean learns the labels
        return ClassificationTask(model, criterion=criterion, device=device, verbose=False).to(device)
    if getattr(unwrap_model(model), "dist_head", None) is None:
        raise RetrainError("distillation needs the architecture's distillation head (\"distillation\": true)")
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    teacher = teacher.to(device, memory_format=layout)
    return TokenDistillationTask(model, teacher, criterion=criterion, distill_type=recipe.distill_type,
                                 task_loss_weight=recipe.task_loss_weight, device=device, verbose=False).to(device)


def label_criterion(recipe: Recipe) -> nn.Module:
    """The labels' loss: soft-target CE under mixup (whose targets are soft), else label smoothing."""
    return (SoftTargetCrossEntropy() if recipe.mixup_active else
            LabelSmoothingCrossEntropy(recipe.smoothing) if recipe.smoothing > 0 else nn.CrossEntropyLoss())


def build_mixup(recipe: Recipe, num_classes: int) -> Mixup | None:
    """timm's Mixup/CutMix (which also smooths the labels), or None when the recipe has neither."""
    if not recipe.mixup_active:
        return None
    return Mixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, prob=recipe.mixup_prob,
                 switch_prob=recipe.mixup_switch_prob, mode=recipe.mixup_mode, label_smoothing=recipe.smoothing,
                 num_classes=num_classes)


@dataclass
class DataPipeline:
    """A training's batches: the training epochs (the engine's source) and fresh val and test passes."""

    train: EpochSource
    val: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]
    test: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]
    path: str  # what the run's log says about where its images came from and why


def recipe_augmentation(recipe: Recipe) -> Augmentation:
    """The recipe's augmentation as the engine runs it on the device (RandomResizedCrop, flip, colour jitter when
    there is no RandAugment, random erasing)."""
    if recipe.re_count != 1 and recipe.re_prob > 0:
        raise RecipeError(f"recipe re_count {recipe.re_count!r}: the engine's batched random erasing erases one "
                          "rectangle per image; set re_count=1")
    return Augmentation(crop=RESIZED_CROPS[recipe.crop_draw], scale=(recipe.scale_min, 1.0), hflip=recipe.hflip,
                        color_jitter=recipe.color_jitter if recipe.auto_augment is None else 0.0,
                        re_prob=recipe.re_prob, re_mode=recipe.re_mode, interpolation=device_interpolation(recipe))


def device_interpolation(recipe: Recipe) -> str:
    """The recipe's interpolation on the device: timm's ``random`` (a choice per image in PIL) is bicubic there."""
    return recipe.interpolation if recipe.interpolation in ("bilinear", "nearest") else "bicubic"


def data_pipeline(splits: ImageSplits, recipe: Recipe, resolution: int, procs: Processes,
                  device: torch.device) -> DataPipeline:
    """The engine's sources for a retraining or a supernet training.

    Images held in memory (Fashion-MNIST, CIFAR-10, small trees: ``splits.streamed`` false) are put on the device
    as uint8 and augmented there in batches, unless the recipe asks for RandAugment, which has no batched form:
    then, as for large trees, loader workers decode and augment each image to uint8 (timm's prefetcher-style
    transform) and the device normalises and erases. Val and test are sharded over processes, each image once."""
    mean_t, std_t = (torch.tensor(v) for v in normalisation(splits.channels))
    augmentation = recipe_augmentation(recipe)
    per_process = len(splits.train) // procs.world
    if per_process < recipe.batch_size:
        raise RecipeError(f"recipe batch_size {recipe.batch_size} is larger than this process's share of the "
                          f"{len(splits.train)} training images; lower it")
    # repeated augmentation spreads an image's copies over processes (timm's RepeatAugSampler, which timm's own
    # loader refuses without several): one process sees each image once an epoch, as timm would train it
    repeats = recipe.aug_repeats if procs.world > 1 else 1
    single = (f"; aug_repeats {recipe.aug_repeats} applies across processes only (timm's RepeatAugSampler): one "
              "process sees each image once an epoch") if recipe.aug_repeats > 1 and procs.world == 1 else ""
    common = dict(batch_size=recipe.batch_size, seed=recipe.seed, drop_last=True, repeats=repeats,
                  rank=procs.rank, world=procs.world)
    eval_batch = recipe.batch_size * 2
    if not splits.streamed and recipe.auto_augment is None:
        def resident_split(dataset: ArrayImages) -> tuple[ResidentImages, torch.Tensor]:
            return resident(dataset.images, device), torch.from_numpy(np.asarray(dataset.labels)).to(device)

        images, labels = resident_split(splits.train)
        train = ResidentBatches(images, labels, np.arange(len(splits.train)), augmentation, resolution, mean_t,
                                std_t, **common)

        def evaluation(dataset: ArrayImages):
            held, held_labels = resident_split(dataset)
            shard = np.arange(procs.rank, len(dataset), procs.world)
            return lambda: eval_batches(held, held_labels, shard, resolution, mean_t, std_t, eval_batch,
                                        augmentation.interpolation, recipe.crop_pct)

        return DataPipeline(train, evaluation(splits.val), evaluation(splits.test),
                            "images resident on the device, augmented there in batches" + single)
    why = "RandAugment has no batched form" if recipe.auto_augment else "the images are too large to hold"
    train_tf = create_transform(
        resolution, is_training=True, scale=(recipe.scale_min, 1.0), hflip=recipe.hflip,
        color_jitter=recipe.color_jitter, auto_augment=recipe.auto_augment, interpolation=recipe.interpolation,
        mean=normalisation(splits.channels)[0], std=normalisation(splits.channels)[1],  # RandAugment's fill colour
        use_prefetcher=True)
    train = StreamingBatches(splits.train, train_tf, augmentation, mean_t, std_t, device=device,
                             workers=recipe.loader_workers, **common)
    eval_tf = eval_transform(recipe, resolution, splits.channels)

    def streamed(dataset) -> Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]:
        part = Subset(TransformedItems(dataset, eval_tf), range(procs.rank, len(dataset), procs.world))
        loader = DataLoader(part, batch_size=eval_batch, shuffle=False, num_workers=recipe.loader_workers,
                            pin_memory=device.type == "cuda")
        return lambda: stream_eval_batches(loader, mean_t, std_t, device)

    return DataPipeline(train, streamed(splits.val), streamed(splits.test),
                        f"streamed by {recipe.loader_workers} loader worker(s) ({why})" + single)


def eval_transform(recipe: Recipe, resolution: int, channels: int):
    """Evaluation preprocessing in loader workers, to uint8: resize to side / crop_pct, centre crop (the device
    normalises, as timm's prefetcher does)."""
    return create_transform(resolution, is_training=False, interpolation=recipe.interpolation,
                            crop_pct=recipe.crop_pct, use_prefetcher=True)


def normalisation(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else (GRAY_MEAN * channels, GRAY_STD * channels)


def recipe_policy(recipe: Recipe, device: torch.device) -> Policy:
    """The engine's precision policy for a recipe's ``amp`` on ``device``; a one-line RecipeError if it cannot."""
    try:
        return Policy.for_device(device, recipe.amp)
    except PolicyError as exc:
        raise RecipeError(f"recipe {exc}") from None


def build_optimization(model: nn.Module, recipe: Recipe, world: int, updates_per_epoch: int
                       ) -> tuple[torch.optim.Optimizer, Any, float]:
    """timm's optimizer and scheduler (stepped per update) for the recipe, and the peak learning rate."""
    lr = recipe.learning_rate(world)
    optimizer = create_optimizer_v2(model, recipe.opt, lr=lr, weight_decay=recipe.weight_decay, eps=recipe.opt_eps)
    scheduler, _ = create_scheduler_v2(
        optimizer, recipe.sched, num_epochs=recipe.epochs, warmup_epochs=recipe.warmup_epochs,
        warmup_lr=recipe.warmup_lr, min_lr=recipe.min_lr, step_on_epochs=False, updates_per_epoch=updates_per_epoch)
    return optimizer, scheduler, lr


def chunk_rules(deadline: float | None, procs: Processes,
                device: torch.device) -> tuple[Callable[[Any], bool] | None, float | None]:
    """When a retraining or supernet training stops for ``deadline`` (a ``time.time()``), and how often it saves
    inside an epoch. One process stops at the first step past the deadline and saves every
    ``CHECKPOINT_EVERY_S``; under torchrun every process must stop and save at the same step, so they agree at
    epoch ends only (one collective per epoch) and save after each epoch."""
    if procs.world == 1:
        return ((lambda state: time.time() > deadline) if deadline is not None else None), CHECKPOINT_EVERY_S
    if deadline is None:
        return None, None
    return (lambda state: state.step == 0 and procs.any(time.time() > deadline, device)), None
