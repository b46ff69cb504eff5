"""``nas retrain``: an architecture trained in full with the official recipe, resumable, on CPU, a GPU or many.

Every piece of the loop is timm's: ``create_transform`` and ``Mixup``, ``RepeatAugSampler``,
``create_optimizer_v2``, ``create_scheduler_v2`` (stepped per update), ``dispatch_clip_grad`` (adaptive clipping),
``ModelEmaV3`` through the task's ``setup_ema``, and the training tasks (``ClassificationTask``, or
``TokenDistillationTask`` with a teacher). What this module adds is the glue a search needs: the architecture
rebuilt for the data, the search's splits, a checkpoint every epoch from which a killed run resumes to the same
result, and the outputs (checkpoints in the official naming, log, curve, model card, exports; ``outputs.py``).
The parts are built in ``components.py``; ``processes.py`` knows the torchrun job and the seeding.

Resuming gives the result of an uninterrupted run because nothing random is carried between epochs: each epoch
seeds Python, NumPy and torch from (seed, epoch, rank) before its loader, augmentation, mixup and drop-path draw.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import swiftformer._torchvision_fix  # noqa: F401

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import dispatch_clip_grad, unwrap_model
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from swiftformer import SwiftFormerArch

from ..data.loaders import ImageSplits, image_splits
from ..progress import progress
from ..units import format_duration
from .components import (RetrainError, build_mixup, build_student, build_task, data_pipeline, load_init, load_teacher,
                         normalisation, resolve_reference)
from .devices import resolve_train_device
from .processes import Processes, seed_epoch
from .recipe import Recipe, RecipeError, official_recipe

__all__ = ["RetrainError", "RetrainResult", "RetrainSpec", "apply_update", "backward", "build_optimization",
           "evaluate", "resolve_amp", "retrain", "save_state"]

STATE_FILE = "last.pth"


@dataclass
class RetrainResult:
    out: Path
    arch: SwiftFormerArch
    recipe: Recipe
    epochs_done: int
    log: list[dict[str, Any]]
    final: dict[str, float] = field(default_factory=dict)  # val/test top-1/top-5 of the model and the EMA
    seconds: float = 0.0
    finished: bool = False


@dataclass
class RetrainSpec:
    """What ``nas retrain`` was asked for, before anything is built."""

    ref: str
    data: str
    out: Path
    recipe: Recipe | None = None  # None: the official recipe for the architecture
    recipe_changes: dict[str, Any] = field(default_factory=dict)  # --epochs, --set ..., applied last
    recipe_file: str | None = None
    teacher: str | None = None
    teacher_checkpoint: str | None = None
    init: str | None = None
    train_device: str = "auto"
    exports: tuple[str, ...] = ("onnx", "coreml")


def resolve_recipe(spec: RetrainSpec, arch: SwiftFormerArch) -> tuple[Recipe, str]:
    recipe, variant = official_recipe(arch)
    note = f"official recipe with the {variant.upper()} settings (nearest released variant in parameters)"
    if spec.recipe is not None:
        recipe, note = spec.recipe, "recipe given"
    if spec.recipe_file:
        recipe, note = Recipe.load(spec.recipe_file, recipe), f"recipe {spec.recipe_file} over the official one"
    if spec.recipe_changes:
        recipe = Recipe.from_dict(spec.recipe_changes, recipe, where="command line")
    return recipe, note


def ema_left_behind(recipe: Recipe, steps: int) -> str | None:
    """A warning when the run is too short for its EMA: without warm-up, ``decay ** steps`` of the initial
    weights (and of BatchNorm's initial statistics) remain in the average, and above a few per cent its outputs
    collapse (a 5-epoch CPU run at decay 0.999 scored 10 % on CIFAR-10's val split, chance)."""
    if recipe.model_ema_warmup:
        return None
    kept = recipe.model_ema_decay ** steps
    if kept < 0.05:
        return None
    return (f"note: EMA decay {recipe.model_ema_decay:g} over {steps:,} steps keeps {kept:.0%} of the initial "
            "weights at the end, so the EMA's figures will be poor; set model_ema_warmup: true or a lower "
            "model_ema_decay in the recipe")


def retrain(spec: RetrainSpec, stop_after_epoch: int | None = None, log: Callable[[str], None] | None = None,
            splits: ImageSplits | None = None) -> RetrainResult:
    """Train (or resume, or finish) the run of ``spec`` in ``spec.out``.

    ``stop_after_epoch`` ends this call after that many epochs, leaving the run resumable, as a kill would.
    ``splits`` replaces the images ``spec.data`` names (a caller's own data, e.g. a benchmark's subset).
    """
    procs = Processes.from_env()
    say = log or (lambda text: print(text, file=sys.stderr, flush=True))
    say = say if procs.main else (lambda text: None)
    source_arch, source_name = resolve_reference(spec.ref)
    device = resolve_train_device(spec.train_device, procs.local_rank)
    procs.start(device)
    recipe, recipe_note = resolve_recipe(spec, source_arch)
    splits = splits or image_splits(spec.data, recipe.val_fraction, recipe.val_seed)
    arch = source_arch.replace(num_classes=splits.num_classes, in_chans=splits.channels,
                               resolution=recipe.resolution or source_arch.resolution)
    changed = [f"{k} {getattr(source_arch, k)} -> {getattr(arch, k)}"
               for k in ("num_classes", "in_chans", "resolution") if getattr(source_arch, k) != getattr(arch, k)]
    out = Path(spec.out)
    if procs.main:
        out.mkdir(parents=True, exist_ok=True)
    procs.barrier()
    identity = {"arch": arch.to_dict(), "recipe": recipe.to_dict(), "data": spec.data, "world": procs.world,
                "teacher": spec.teacher, "init": spec.init}
    state_path = out / STATE_FILE
    state = torch.load(state_path, map_location="cpu", weights_only=False) if state_path.is_file() else None
    if state is not None and state["identity"] != identity:
        changed = sorted(k for k in identity if state["identity"].get(k) != identity[k])
        raise RetrainError(f"{out} holds a retraining with other settings ({', '.join(changed)}); resume with "
                           "the same ones, or choose another --out")
    say(f"retraining {source_name}: {arch.summary()}" + (f" (rebuilt for the data: {', '.join(changed)})"
                                                        if changed else ""))
    say(f"data {splits.describe()}; {recipe_note}; {procs.world} process(es) on {device}")

    mean, std = normalisation(splits.channels)
    seed_epoch(recipe.seed, -1, 0)  # the initial weights follow from the seed (the same on every process)
    model = build_student(arch, mean, std)
    init_note = load_init(model, spec.init) if spec.init else None
    if init_note:
        say(init_note)
    if recipe.sync_bn and procs.world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    cuda = device.type == "cuda"
    model = model.to(device, memory_format=torch.channels_last if cuda else torch.contiguous_format)
    teacher = None
    if spec.teacher:
        teacher = load_teacher(spec.teacher, spec.teacher_checkpoint, splits.num_classes, splits.channels)
    task = build_task(model, recipe, teacher, device)
    if recipe.model_ema:
        task.setup_ema(decay=recipe.model_ema_decay, use_warmup=recipe.model_ema_warmup)

    train_loader, val_loader, test_loader, sampler = data_pipeline(splits, recipe, arch.resolution, procs, device)
    updates_per_epoch = len(train_loader)
    optimizer, scheduler, lr = build_optimization(model, recipe, procs.world, updates_per_epoch)
    amp_dtype = resolve_amp(recipe.amp, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    if procs.world > 1:
        task.prepare_distributed(device_ids=[device.index] if cuda else None)
    mixup = build_mixup(recipe, splits.num_classes)

    start_epoch, num_updates, rows, seconds = 0, 0, [], 0.0
    if state is not None:
        if recipe.model_ema:
            task.get_trainable_module(ema=True).module.load_state_dict(state["ema"])
        start_epoch, num_updates, rows, seconds = restore_state(state, unwrap_model(model), optimizer, scheduler,
                                                                scaler)
        say(f"resuming {out} after epoch {start_epoch}/{recipe.epochs}")

    if procs.main:
        (out / "arch.json").write_text(arch.to_json() + "\n")
        recipe.replace(resolution=arch.resolution).save(out / "recipe.yaml", {"resolved for": f"{source_name} on {spec.data}, {procs.world} "
                                          f"process(es); lr {lr:.6g} for a global batch of "
                                          f"{recipe.batch_size * procs.world}"})
    say(f"{recipe.epochs} epochs of {updates_per_epoch} steps (global batch {recipe.batch_size * procs.world}, "
        f"peak lr {lr:.3g}{', mixup/cutmix' if mixup else ''}{', EMA' if recipe.model_ema else ''}"
        f"{', distilling from ' + spec.teacher if teacher is not None else ''}"
        f"{', AMP ' + str(amp_dtype).removeprefix('torch.') if amp_dtype else ''})")
    if recipe.model_ema and (note := ema_left_behind(recipe, recipe.epochs * updates_per_epoch)):
        say(note)
    last_epoch = recipe.epochs if stop_after_epoch is None else min(recipe.epochs, stop_after_epoch)
    for epoch in range(start_epoch, last_epoch):
        t0 = time.perf_counter()
        seed_epoch(recipe.seed, epoch, procs.rank)
        # DistributedSampler mixes in the seed itself; RepeatAugSampler shuffles by the epoch alone
        sampler.set_epoch(epoch if isinstance(sampler, DistributedSampler) else recipe.seed * 100_003 + epoch)
        task.train()
        loss_sum = torch.zeros((), device=device)
        images = 0
        step_report = progress(f"epoch {epoch + 1}/{recipe.epochs}") if procs.main else (lambda done, total: None)
        for step, (inputs, targets) in enumerate(train_loader, start=1):
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            if cuda:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            if mixup is not None:
                inputs, targets = mixup(inputs, targets)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = task(inputs, targets)["loss"]
            optimizer.zero_grad(set_to_none=True)
            backward(loss, scaler)
            apply_update(optimizer, scaler, model, recipe)
            num_updates += 1
            task.update_ema(step=num_updates)
            scheduler.step_update(num_updates=num_updates)
            loss_sum += loss.detach()
            images += inputs.shape[0]
            step_report(step, updates_per_epoch)
        scheduler.step(epoch + 1)
        train_seconds = time.perf_counter() - t0
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                               "train_loss": float(loss_sum) / max(1, updates_per_epoch),
                               "images_per_s": images * procs.world / train_seconds}
        if (epoch + 1) % recipe.eval_every == 0 or epoch + 1 == recipe.epochs:
            row.update(_prefixed("val", evaluate(unwrap_model(model), val_loader, device, amp_dtype, procs)))
            if recipe.model_ema:
                ema = task.get_trainable_module(ema=True).module
                row.update(_prefixed("ema_val", evaluate(ema, val_loader, device, amp_dtype, procs)))
        seconds += time.perf_counter() - t0
        row["seconds"] = seconds
        rows.append(row)
        if procs.main:
            save_state(state_path, {
                "identity": identity, "epoch": epoch + 1, "num_updates": num_updates, "log": rows,
                "seconds": seconds, "model": unwrap_model(model).state_dict(),
                "ema": task.get_trainable_module(ema=True).module.state_dict() if recipe.model_ema else None,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None})
            write_log(out, rows)
        procs.barrier()
        left = (recipe.epochs - epoch - 1) * seconds / (epoch + 1 - start_epoch) if epoch + 1 > start_epoch else 0
        scores = (f", val top-1 {row['val_top1']:.2f} %" if "val_top1" in row else "") + \
                 (f" (EMA {row['ema_val_top1']:.2f} %)" if "ema_val_top1" in row else "")
        say(f"epoch {epoch + 1}/{recipe.epochs}: train loss {row['train_loss']:.4f}{scores}, lr {row['lr']:.2e}, "
            f"{row['images_per_s']:.0f} img/s | ETA {format_duration(left)}")

    result = RetrainResult(out, arch, recipe, last_epoch if rows else 0, rows, seconds=seconds)
    if last_epoch < recipe.epochs:
        say(f"stopped after epoch {last_epoch}/{recipe.epochs}; run the same command again to continue")
        return result
    final = {}
    raw = unwrap_model(model)
    for split, loader in (("val", val_loader), ("test", test_loader)):
        final.update(_prefixed(split, evaluate(raw, loader, device, amp_dtype, procs)))
        if recipe.model_ema:
            final.update(_prefixed(f"ema_{split}", evaluate(task.get_trainable_module(ema=True).module, loader,
                                                            device, amp_dtype, procs)))
    result.final, result.finished = final, True
    if procs.main:
        from .outputs import write_outputs

        ema = task.get_trainable_module(ema=True).module if recipe.model_ema else None
        write_outputs(result, raw, ema, spec, splits, source_name, recipe_note, lr, procs.world, str(device),
                      say)
    procs.barrier()
    procs.finish()
    return result


def build_optimization(model: nn.Module, recipe: Recipe, world: int, updates_per_epoch: int
                       ) -> tuple[torch.optim.Optimizer, Any, float]:
    """timm's optimizer and scheduler (stepped per update) for the recipe, and the peak learning rate."""
    lr = recipe.learning_rate(world)
    optimizer = create_optimizer_v2(model, recipe.opt, lr=lr, weight_decay=recipe.weight_decay, eps=recipe.opt_eps)
    scheduler, _ = create_scheduler_v2(
        optimizer, recipe.sched, num_epochs=recipe.epochs, warmup_epochs=recipe.warmup_epochs,
        warmup_lr=recipe.warmup_lr, min_lr=recipe.min_lr, step_on_epochs=False, updates_per_epoch=updates_per_epoch)
    return optimizer, scheduler, lr


def backward(loss: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
    """Accumulate ``loss``'s gradients (scaled under float16 AMP); several calls before one ``apply_update``
    add up, as the supernet's sandwich does."""
    (scaler.scale(loss) if scaler is not None else loss).backward()


def apply_update(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None, model: nn.Module,
                 recipe: Recipe) -> None:
    """One optimizer step on the accumulated gradients, clipped as the recipe says (after unscaling)."""
    if scaler is not None:
        if recipe.clip_grad:
            scaler.unscale_(optimizer)
            dispatch_clip_grad(model.parameters(), recipe.clip_grad, mode=recipe.clip_mode)
        scaler.step(optimizer)
        scaler.update()
        return
    if recipe.clip_grad:
        dispatch_clip_grad(model.parameters(), recipe.clip_grad, mode=recipe.clip_mode)
    optimizer.step()


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a recipe's ``amp`` on ``device`` (None: full precision)."""
    if device.type != "cuda" or amp == "off":
        if amp in ("bf16", "fp16") and device.type != "cuda":
            raise RecipeError(f"recipe amp {amp!r} needs a CUDA device (training on {device}); use auto or off")
        return None
    if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def _prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in values.items()}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, amp_dtype: torch.dtype | None = None,
             procs: Processes = Processes()) -> dict[str, float]:
    """Top-1 and top-5 accuracy (%) and mean cross-entropy over every image of ``loader``'s split."""
    was_training = model.training
    model.eval()
    correct1 = correct5 = loss = count = 0.0
    for inputs, targets in loader:
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        if device.type == "cuda":
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(inputs).float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top.eq(targets[:, None])
        correct1 += hits[:, 0].sum().item()
        correct5 += hits.any(dim=1).sum().item()
        loss += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
        count += len(targets)
    model.train(was_training)
    correct1, correct5, loss, count = procs.sum([correct1, correct5, loss, count], device)
    return {"top1": 100 * correct1 / count, "top5": 100 * correct5 / count, "loss": loss / count}


def restore_state(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                  scaler: torch.amp.GradScaler | None) -> tuple[int, int, list[dict[str, Any]], float]:
    """Load a ``last.pth`` state written by ``save_state`` (retraining and supernet training alike) into the
    training's pieces; returns the epochs done, updates done, the log so far and the seconds spent."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return state["epoch"], state["num_updates"], state["log"], state["seconds"]


def save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a kill while saving leaves the previous epoch's state


def write_log(out: Path, rows: list[dict[str, Any]]) -> None:
    """``log.csv`` (one row per epoch; rewritten whole, so a resumed run never duplicates rows) and the curve."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame.to_csv(out / "log.csv", index=False, float_format="%.6g")
    from .outputs import plot_curve

    plot_curve(frame, out / "curve.png")

