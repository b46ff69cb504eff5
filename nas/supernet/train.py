"""``nas supernet train``: the sandwich rule with in-place distillation, on retraining's pieces, resumable.

Each step trains the largest subnet, the smallest and ``random_subnets`` random ones (BigNAS / AttentiveNAS).
The largest learns the labels; the others learn the largest's predictions of the same batch (in-place
distillation: softmax of its logits, detached, through timm's ``SoftTargetCrossEntropy``), or the labels with
``distill: none``. Gradients of the whole sandwich add up (one backward per subnet: under DDP the first ones run
in ``no_sync``), then one optimizer step. Which random subnets a step trains follows from (seed, epoch, step)
alone, the same on every process and after a resume.

Everything else is ``nas retrain``'s: the data (the search's train/val splits, timm's transforms), the ``Recipe``
(timm's optimizer and scheduler, clipping, AMP with a scaler and channels_last on CUDA), the torchrun processes
and per-epoch seeding, the ``last.pth`` checkpoint with an identity check, the log and curve. Defaults that differ
from the official recipe (``SUPERNET_RECIPE``):

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
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import swiftformer._torchvision_fix  # noqa: F401

import torch
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy
from timm.utils import unwrap_model
from torch import nn
from torch.utils.data import DistributedSampler

import search_spaces
from search_spaces import SearchSpace
from swiftformer import SwiftFormerArch

from ..data.loaders import ImageSplits, image_splits
from ..progress import progress
from ..training.components import build_mixup, data_pipeline, eval_transform, label_criterion
from ..training.devices import resolve_train_device
from ..training.processes import Processes, seed_epoch
from ..training.recipe import Recipe
from ..training.retrain import (apply_update, backward, build_optimization, resolve_amp, restore_state, save_state,
                                write_log)
from ..units import format_duration
from .checkpoint import STATE, SupernetRecord, load_supernet, save_supernet, training_side
from .model import SuperNet
from .scoring import ScoringConfig, SupernetScorer
from .spaces import SupernetError

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
                  scaler: torch.amp.GradScaler | None = None, amp_dtype: torch.dtype | None = None
                  ) -> list[torch.Tensor]:
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
            with torch.autocast(inputs.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
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
                   splits: ImageSplits | None = None) -> SupernetResult:
    """Train (or resume, or finish) the supernet of ``spec`` in ``spec.out``; ``stop_after_epoch`` ends this call
    after that many epochs, leaving the run resumable, as a kill would."""
    procs = Processes.from_env()
    say = log or (lambda text: print(text, file=sys.stderr, flush=True))
    say = say if procs.main else (lambda text: None)
    recipe, sandwich = resolve_recipe(spec), spec.sandwich
    device = resolve_train_device(spec.train_device, procs.local_rank)
    procs.start(device)
    splits = splits or image_splits(spec.data, recipe.val_fraction, recipe.val_seed)
    base = search_spaces.load_space(spec.space)
    space = dataclasses.replace(base, num_classes=splits.num_classes, in_chans=splits.channels)
    out = Path(spec.out)
    if procs.main:
        out.mkdir(parents=True, exist_ok=True)
    procs.barrier()
    identity = {"space": space.to_dict(), "recipe": recipe.to_dict(), "sandwich": sandwich.to_dict(),
                "data": spec.data, "world": procs.world}
    state_path = out / STATE
    state = torch.load(state_path, map_location="cpu", weights_only=False) if state_path.is_file() else None
    if state is not None and state["identity"] != identity:
        changed = sorted(k for k in identity if state["identity"].get(k) != identity[k])
        raise SupernetError(f"{out} holds a supernet training with other settings ({', '.join(changed)}); resume "
                            "with the same ones, or choose another --out")

    seed_epoch(recipe.seed, -1, 0)  # the initial weights follow from the seed (the same on every process)
    supernet = SuperNet(space)
    supernet.set_distilled_training(False)  # both heads' mean learns, as a retraining without teacher
    if recipe.sync_bn and procs.world > 1:
        raise SupernetError("recipe sync_bn: the supernet's sliced BatchNorm has no synchronised form; set "
                            "sync_bn=false")
    cuda = device.type == "cuda"
    supernet = supernet.to(device, memory_format=torch.channels_last if cuda else torch.contiguous_format)
    model: nn.Module = supernet
    if procs.world > 1:  # inactive slices and blocks get no gradient in a step
        model = nn.parallel.DistributedDataParallel(supernet, device_ids=[device.index] if cuda else None,
                                                    find_unused_parameters=True)
    top_side = max(training_side(r, sandwich.downscale) for r in space.resolutions)
    train_loader, _, _, sampler = data_pipeline(splits, recipe, top_side, procs, device)
    updates_per_epoch = len(train_loader)
    optimizer, scheduler, lr = build_optimization(supernet, recipe, procs.world, updates_per_epoch)
    amp_dtype = resolve_amp(recipe.amp, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    mixup = build_mixup(recipe, splits.num_classes)
    criterion = label_criterion(recipe)
    scorer = SupernetScorer(supernet, _record(identity, spec, recipe, sandwich, splits, 0, 0.0, []), splits.train,
                            splits.val, lambda side: eval_transform(recipe, side, splits.channels), spec.scoring,
                            device)

    start_epoch, num_updates, rows, seconds = 0, 0, [], 0.0
    if state is not None:
        start_epoch, num_updates, rows, seconds = restore_state(state, supernet, optimizer, scheduler, scaler)
        say(f"resuming {out} after epoch {start_epoch}/{recipe.epochs}")
    say(f"supernet over space {space.name} ({space.size():,} architectures, "
        f"{sum(p.numel() for p in supernet.parameters()) / 1e6:.2f} M parameters); largest "
        f"{supernet.largest_arch().summary()}")
    say(f"data {splits.describe()}; {procs.world} process(es) on {device}")
    say(f"{recipe.epochs} epochs of {updates_per_epoch} steps, each the largest, the smallest and "
        f"{sandwich.random_subnets} random subnet(s) at 1/{sandwich.downscale:g} of their resolution "
        f"({top_side} px for the largest side), {'in-place distillation from the largest' if sandwich.distill == 'soft' else 'all on labels'}; "
        f"global batch {recipe.batch_size * procs.world}, peak lr {lr:.3g}, weight decay {recipe.weight_decay:g}"
        f"{', AMP ' + str(amp_dtype).removeprefix('torch.') if amp_dtype else ''}")

    last_epoch = recipe.epochs if stop_after_epoch is None else min(recipe.epochs, stop_after_epoch)
    for epoch in range(start_epoch, last_epoch):
        t0 = time.perf_counter()
        seed_epoch(recipe.seed, epoch, procs.rank)
        sampler.set_epoch(epoch if isinstance(sampler, DistributedSampler) else recipe.seed * 100_003 + epoch)
        supernet.train()
        sums = torch.zeros(2 + sandwich.random_subnets, device=device)
        images = 0
        step_report = progress(f"epoch {epoch + 1}/{recipe.epochs}") if procs.main else (lambda done, total: None)
        for step, (inputs, targets) in enumerate(train_loader, start=1):
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            if cuda:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            if mixup is not None:
                inputs, targets = mixup(inputs, targets)
            archs = sandwich_archs(space, supernet, sandwich.random_subnets, recipe.seed, epoch, step)
            optimizer.zero_grad(set_to_none=True)
            losses = sandwich_step(model, archs, [training_side(a.resolution, sandwich.downscale) for a in archs],
                                   inputs, targets, criterion, sandwich.distill == "soft", scaler, amp_dtype)
            apply_update(optimizer, scaler, supernet, recipe)
            num_updates += 1
            scheduler.step_update(num_updates=num_updates)
            sums += torch.stack(losses).float()
            images += inputs.shape[0]
            step_report(step, updates_per_epoch)
        scheduler.step(epoch + 1)
        means = (sums / max(1, updates_per_epoch)).tolist()
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": means[0],
                               "train_loss_smallest": means[1],
                               "train_loss_random": sum(means[2:]) / len(means[2:]) if means[2:] else None,
                               "images_per_s": images * procs.world / (time.perf_counter() - t0)}
        if (epoch + 1) % recipe.eval_every == 0 or epoch + 1 == recipe.epochs:
            for name, arch in (("", supernet.largest_arch()), ("_smallest", supernet.smallest_arch())):
                result = scorer.score(arch)
                row.update({f"val_top1{name}": 100 * result.top1,
                            f"val_top1{name}_uncalibrated": 100 * result.top1_uncalibrated})
            supernet.train()
        seconds += time.perf_counter() - t0
        row["seconds"] = seconds
        rows.append(row)
        if procs.main:
            save_state(state_path, {
                "identity": identity, "epoch": epoch + 1, "num_updates": num_updates, "log": rows,
                "seconds": seconds, "model": supernet.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None})
            write_log(out, rows)
        procs.barrier()
        left = (recipe.epochs - epoch - 1) * seconds / (epoch + 1 - start_epoch) if epoch + 1 > start_epoch else 0
        scores = (f", val top-1 largest {row['val_top1']:.2f} % / smallest {row['val_top1_smallest']:.2f} % "
                  "(calibrated BN)" if "val_top1" in row else "")
        say(f"epoch {epoch + 1}/{recipe.epochs}: train loss largest {row['train_loss']:.4f}, smallest "
            f"{row['train_loss_smallest']:.4f}{scores}, lr {row['lr']:.2e}, {row['images_per_s']:.0f} img/s | "
            f"ETA {format_duration(left)}")

    result = SupernetResult(out, supernet, recipe, last_epoch if rows else 0, rows, seconds)
    if last_epoch < recipe.epochs:
        say(f"stopped after epoch {last_epoch}/{recipe.epochs}; run the same command again to continue")
        return result
    result.finished = True
    if procs.main:
        supernet.eval()
        save_supernet(out, supernet, _record(identity, spec, recipe, sandwich, splits, recipe.epochs, seconds, rows))
        say(f"wrote {out / 'supernet.pth'} and supernet.json after {format_duration(seconds)} of training; score "
            f"architectures with `nas search ... --evaluator supernet:{out}`")
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
