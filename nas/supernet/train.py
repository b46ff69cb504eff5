"""``nas supernet train``: the sandwich rule with in-place distillation, on retraining's pieces, resumable.

Each step trains the largest subnet, the smallest and ``random_subnets`` random ones (BigNAS / AttentiveNAS).
The largest learns the labels; the others learn the largest's predictions of the same batch (in-place
distillation: softmax of its logits, detached, through timm's ``SoftTargetCrossEntropy``), or the labels with
``distill: none``. Gradients of the whole sandwich add up (one backward per subnet: under DDP the first ones run
in ``no_sync``), then one optimizer step. Which random subnets a step trains follows from (seed, epoch, step)
alone, the same on every process and after a resume.

Everything else is the training engine's and ``nas retrain``'s: the loop, the data (the search's train/val
splits, resident on the device and augmented there), the ``Recipe`` (timm's optimizer and scheduler, clipping,
the engine's precision policy), the torchrun processes and seeding, the ``last.pth`` checkpoint with an identity
check (resumable inside an epoch), the log and curve. A step is the engine's ``Training.step``: the sandwich.
Defaults that differ from the official recipe (``SUPERNET_RECIPE``):

- no weight decay: AdamW's decay is decoupled from the gradient, so it would shrink every weight each step,
  including the slices and blocks the step's subnets did not use; the rarely active ones (the last channels and
  depths, which only large subnets reach) would decay towards zero between their uses.
- light augmentation and no mixup, repeated augmentation or EMA: the supernet's job is ranking, learned over
  short schedules at the proxies' side; the sandwich already regularises the shared weights.

The training side is each architecture's resolution / ``downscale`` (as ``ProxyConfig.downscale``: 224 px / 4 =
56 px), so token geometry matches the proxies; a space of several resolutions loads images at the largest side
and resizes each subnet's batch to its own.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import swiftformer._torchvision_fix  # noqa: F401

import torch
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy
from timm.utils import unwrap_model
from torch import nn

import search_spaces
from search_spaces import SearchSpace
from swiftformer import SwiftFormerArch

from ..files import output_folder
from ..tracking import check_tracker
from ..data.loaders import ImageSplits, image_splits
from ..engine import LoopState, Policy, Training, backward, fit, seed_init
from ..engine.run_folder import RunFolder
from ..training.components import (build_mixup, build_optimization, chunk_rules, data_pipeline, label_criterion,
                                   recipe_policy)
from ..training.devices import resolve_train_device
from ..training.processes import Processes
from ..training.recipe import Recipe
from ..units import format_duration
from ..identity import training_side
from .checkpoint import SupernetRecord, load_supernet, save_supernet
from .model import SuperNet
from .scoring import ScoringConfig, SupernetScorer
from .spaces import SupernetError

logger = logging.getLogger(__name__)

#: The supernet's changes to the official recipe (see the module docstring for why).
SUPERNET_RECIPE: dict[str, Any] = {
    "epochs": 30, "warmup_epochs": 1.0, "weight_decay": 0.0, "auto_augment": None, "color_jitter": 0.0,
    "scale_min": 0.35, "re_prob": 0.0, "mixup": 0.0, "cutmix": 0.0, "aug_repeats": 1, "model_ema": False,
    "lr_base_size": 512,
}

DISTILL = ("soft", "none")


@dataclass(frozen=True)
class SandwichConfig:
    """What each step trains and at which side; part of a supernet's identity."""

    random_subnets: int = 2  # besides the largest and the smallest
    distill: str = "soft"  # soft: the others learn the largest's predictions; none: everyone learns the labels
    downscale: float = 4.0  # trained at the architecture's resolution / downscale (the proxies' meaning)

    def __post_init__(self) -> None:
        if isinstance(self.random_subnets, bool) or not isinstance(self.random_subnets, int) \
                or self.random_subnets < 0:
            raise SupernetError(f"random_subnets {self.random_subnets!r} must be a non-negative integer")
        if self.distill not in DISTILL:
            raise SupernetError(f"distill {self.distill!r} is not supported; accepted: {', '.join(DISTILL)}")
        if not self.downscale >= 1:
            raise SupernetError(f"downscale {self.downscale!r} must be at least 1 (1 trains at full resolution)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def supernet_recipe() -> Recipe:
    return Recipe().replace(**SUPERNET_RECIPE)


@dataclass
class SupernetSpec:
    """What ``nas supernet train`` was asked for, before anything is built."""

    space: str
    data: str
    out: Path
    sandwich: SandwichConfig = field(default_factory=SandwichConfig)
    recipe_changes: dict[str, Any] = field(default_factory=dict)  # --epochs, --set ..., applied last
    recipe_file: str | None = None
    train_device: str = "auto"
    scoring: ScoringConfig = field(  # the per-epoch check, which logs both scores (more images than a search's)
        default_factory=lambda: ScoringConfig(bn_images=256, val_images=2000, uncalibrated=True))
    track: str | None = None  # tensorboard: the curve as event files in <out>/tensorboard (``nas.tracking``)


@dataclass
class SupernetResult:
    out: Path
    supernet: SuperNet
    recipe: Recipe
    epochs_done: int
    log: list[dict[str, Any]]
    seconds: float = 0.0
    finished: bool = False


def resolve_recipe(spec: SupernetSpec) -> Recipe:
    recipe = supernet_recipe()
    if spec.recipe_file:
        recipe = Recipe.load(spec.recipe_file, recipe)
    if spec.recipe_changes:
        recipe = Recipe.from_dict(spec.recipe_changes, recipe, where="command line")
    if recipe.model_ema:
        raise SupernetError("recipe model_ema: an EMA of the supernet is not supported; set model_ema=false")
    return recipe


def sandwich_archs(space: SearchSpace, supernet: SuperNet, random_subnets: int, seed: int, epoch: int,
                   step: int) -> list[SwiftFormerArch]:
    """Largest, smallest, then ``random_subnets`` uniform samples drawn from (seed, epoch, step) alone."""
    rng = random.Random(f"sandwich/{seed}/{epoch}/{step}")  # string seeds hash the same in every process
    return [supernet.largest_arch(), supernet.smallest_arch()] + [space.sample(rng) for _ in range(random_subnets)]


def sandwich_step(model: nn.Module, archs: list[SwiftFormerArch], sides: list[int], inputs: torch.Tensor,
                  targets: torch.Tensor, criterion: nn.Module, distill: bool,
                  scaler: torch.amp.GradScaler | None = None, policy: Policy | None = None) -> list[torch.Tensor]:
    """Forward and backward every subnet of the sandwich on one batch; gradients add up in ``.grad``.

    ``archs[0]`` (the largest) learns ``targets`` through ``criterion``; with ``distill`` the others learn its
    softmax (detached) through soft-target cross-entropy. Returns each subnet's loss (detached).
    """
    supernet = unwrap_model(model)
    soft_ce = SoftTargetCrossEntropy()
    teacher: torch.Tensor | None = None
    losses = []
    for i, (arch, side) in enumerate(zip(archs, sides)):
        x = inputs if inputs.shape[-1] == side else F.interpolate(inputs, size=(side, side), mode="bilinear",
                                                                   antialias=True, align_corners=False)
        supernet.set_active(arch)  # DDP forwards only tensors; the subnet is the active one
        last = i == len(archs) - 1
        sync = model.no_sync() if isinstance(model, nn.parallel.DistributedDataParallel) and not last \
            else contextlib.nullcontext()
        with sync:
            with policy.autocast() if policy is not None else contextlib.nullcontext():
                logits = model(x)
                if i == 0 or not distill:
                    loss = criterion(logits, targets)
                else:
                    loss = soft_ce(logits, teacher)
            if i == 0 and distill:
                teacher = logits.detach().float().softmax(dim=-1)
            backward(loss, scaler)
        losses.append(loss.detach())
    return losses


def train_supernet(spec: SupernetSpec, stop_after_epoch: int | None = None, log: Callable[[str], None] | None = None,
                   splits: ImageSplits | None = None, deadline: float | None = None) -> SupernetResult:
    """Train (or resume, or finish) the supernet of ``spec`` in ``spec.out``; ``stop_after_epoch`` ends this call
    after that many epochs, ``deadline`` (a ``time.time()``) at the first step after it, leaving the run resumable,
    as a kill would."""
    procs = Processes.from_env()
    say = log or (lambda text: logger.info(text))
    say = say if procs.main else (lambda text: None)
    recipe, sandwich = resolve_recipe(spec), spec.sandwich
    device = resolve_train_device(spec.train_device, procs.local_rank)
    procs.start(device)
    policy = recipe_policy(recipe, device)
    splits = splits or image_splits(spec.data, recipe.val_fraction, recipe.val_seed)
    base = search_spaces.load_space(spec.space)
    space = dataclasses.replace(base, num_classes=splits.num_classes, in_chans=splits.channels)
    out = Path(spec.out)
    check_tracker(spec.track)
    if procs.main:
        output_folder(out)
    procs.barrier()
    identity = {"space": space.to_dict(), "recipe": recipe.to_dict(), "sandwich": sandwich.to_dict(),
                "data": spec.data, "world": procs.world}
    folder = RunFolder(out, identity, "supernet training", SupernetError, track=spec.track)
    payload = folder.load()

    seed_init(recipe.seed)  # the initial weights follow from the seed (the same on every process)
    supernet = SuperNet(space)
    supernet.set_distilled_training(False)  # both heads' mean learns, as a retraining without teacher
    if recipe.sync_bn and procs.world > 1:
        raise SupernetError("recipe sync_bn: the supernet's sliced BatchNorm has no synchronised form; set "
                            "sync_bn=false")
    supernet = policy.place(supernet)
    model: nn.Module = supernet
    if procs.world > 1:  # inactive slices and blocks get no gradient in a step
        model = nn.parallel.DistributedDataParallel(supernet, device_ids=[device.index] if policy.cuda else None,
                                                    find_unused_parameters=True)
    top_side = max(training_side(r, sandwich.downscale) for r in space.resolutions)
    data = data_pipeline(splits, recipe, top_side, procs, device)
    updates_per_epoch = data.train.steps_per_epoch
    optimizer, scheduler, lr = build_optimization(supernet, recipe, procs.world, updates_per_epoch)
    scaler = policy.scaler()
    criterion = label_criterion(recipe)
    scorer = SupernetScorer(supernet, _record(identity, spec, recipe, sandwich, splits, 0, 0.0, []), splits.train,
                            splits.val, recipe, splits.channels, spec.scoring, device)

    def step(inputs: torch.Tensor, targets: torch.Tensor, state: LoopState) -> torch.Tensor:
        # the step's subnets follow from (seed, epoch, step) alone: the same on every process and after a resume
        archs = sandwich_archs(space, supernet, sandwich.random_subnets, recipe.seed, state.epoch, state.step + 1)
        losses = sandwich_step(model, archs, [training_side(a.resolution, sandwich.downscale) for a in archs],
                               inputs, targets, criterion, sandwich.distill == "soft", scaler, policy)
        return torch.stack(losses).float()

    training = Training(supernet, optimizer, data.train, policy, step, scheduler, scaler,
                        clip_grad=recipe.clip_grad, clip_mode=recipe.clip_mode, mixup=build_mixup(recipe,
                                                                                                  splits.num_classes),
                        seed=recipe.seed, rank=procs.rank)
    state = None
    if payload is not None:
        state, where = folder.resume(payload, training, recipe.epochs)
        say(where)
    say(f"supernet over space {space.name} ({space.size():,} architectures, "
        f"{sum(p.numel() for p in supernet.parameters()) / 1e6:.2f} M parameters); largest "
        f"{supernet.largest_arch().summary()}")
    say(f"data {splits.describe()}; {data.path}; {procs.world} process(es) on {policy.describe()}")
    say(f"{recipe.epochs} epochs of {updates_per_epoch} steps, each the largest, the smallest and "
        f"{sandwich.random_subnets} random subnet(s) at 1/{sandwich.downscale:g} of their resolution "
        f"({top_side} px for the largest side), {'in-place distillation from the largest' if sandwich.distill == 'soft' else 'all on labels'}; "
        f"global batch {recipe.batch_size * procs.world}, peak lr {lr:.3g}, weight decay {recipe.weight_decay:g}")

    def end_epoch(epoch: int, means: list[float]) -> dict[str, Any]:
        row: dict[str, Any] = {"train_loss_smallest": means[1],
                               "train_loss_random": sum(means[2:]) / len(means[2:]) if means[2:] else None}
        if epoch % recipe.eval_every == 0 or epoch == recipe.epochs:
            for name, arch in (("", supernet.largest_arch()), ("_smallest", supernet.smallest_arch())):
                result = scorer.score(arch)
                row.update({f"val_top1{name}": 100 * result.top1,
                            f"val_top1{name}_uncalibrated": 100 * result.top1_uncalibrated})
            supernet.train()
        return row

    def describe(row: dict[str, Any]) -> str:
        scores = (f", val top-1 largest {row['val_top1']:.2f} % / smallest {row['val_top1_smallest']:.2f} % "
                  "(calibrated BN)" if "val_top1" in row else "")
        return (f"train loss largest {row['train_loss']:.4f}, smallest {row['train_loss_smallest']:.4f}{scores}, "
                f"lr {row['lr']:.2e}")

    last_epoch = recipe.epochs if stop_after_epoch is None else min(recipe.epochs, stop_after_epoch)
    stop, every_s = chunk_rules(deadline, procs, device)
    state = fit(training, last_epoch, state, end_epoch, folder.saver(training, procs, recipe.epochs, say, describe),
                every_s, stop, f"epoch {{epoch}}/{recipe.epochs}" if procs.main else None)
    rows = folder.rows(state, procs.world)
    result = SupernetResult(out, supernet, recipe, state.epoch, rows, state.seconds)
    if (stopped := folder.stopped(state, recipe.epochs)) is not None:
        say(stopped)
        return result
    result.finished = True
    if procs.main:
        supernet.eval()
        save_supernet(out, supernet, _record(identity, spec, recipe, sandwich, splits, recipe.epochs, state.seconds,
                                             rows))
        say(f"wrote {out / 'supernet.pth'} and supernet.json after {format_duration(state.seconds)} of training; "
            f"score architectures with `nas search ... --evaluator supernet:{out}`")
    procs.barrier()
    procs.finish()
    return result


def _record(identity: dict[str, Any], spec: SupernetSpec, recipe: Recipe, sandwich: SandwichConfig,
            splits: ImageSplits, epochs: int, seconds: float, rows: list[dict[str, Any]]) -> SupernetRecord:
    return SupernetRecord(identity=identity, data=spec.data, val_fraction=recipe.val_fraction,
                          val_seed=recipe.val_seed, downscale=sandwich.downscale, channels=splits.channels,
                          num_classes=splits.num_classes, epochs=epochs, seconds=seconds, log=rows)


__all__ = ["SUPERNET_RECIPE", "SandwichConfig", "SupernetResult", "SupernetSpec", "load_supernet", "sandwich_archs",
           "sandwich_step", "supernet_recipe", "train_supernet"]
