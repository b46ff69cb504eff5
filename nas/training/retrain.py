"""``nas retrain``: an architecture trained in full with the official recipe, resumable, on CPU, a GPU or many.

The recipe is a value the training engine (``nas.engine``) runs: its loop, checkpoint, evaluator, precision
policy and device-resident batches with the recipe's augmentation done in batches on the device (or timm's
transforms in loader workers where RandAugment asks for them). The rest is timm's: ``Mixup``,
``create_optimizer_v2``, ``create_scheduler_v2`` (stepped per update), ``dispatch_clip_grad`` (adaptive clipping),
``ModelEmaV3`` through the task's ``setup_ema``, and the training tasks (``ClassificationTask``, or
``TokenDistillationTask`` with a teacher). What this module adds is the glue a search needs: the architecture
rebuilt for the data, the search's splits, and the outputs (checkpoints in the official naming, log, curve, model
card, exports; ``outputs.py``). The parts are built in ``components.py``; ``processes.py`` knows the torchrun job.

A killed run resumes to the result of an uninterrupted one: the engine's checkpoint (after every epoch, and for a
single process every ``CHECKPOINT_EVERY_S`` inside one and when a ``deadline`` stops it; a torchrun job stops and
saves at epoch ends, where its processes agree) holds the step reached and every random stream, and an epoch's
order and augmentation follow from (seed, epoch) alone.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import swiftformer._torchvision_fix  # noqa: F401

import torch
from timm.utils import unwrap_model
from torch import nn

from swiftformer import SwiftFormerArch

from ..files import output_folder, write_text
from ..tracking import check_tracker
from ..data.loaders import ImageSplits, image_splits
from ..engine import LoopState, Training, backward, evaluate, fit, seed_init
from ..engine.run_folder import RunFolder
from .components import (RetrainError, build_mixup, build_optimization, build_student, build_task, chunk_rules,
                         data_pipeline, load_init, load_teacher, normalisation, recipe_policy, resolve_reference)
from .devices import resolve_train_device
from .processes import Processes
from .outputs import write_outputs
from .recipe import Recipe, official_recipe
from .runs import RetrainResult, RetrainSpec

logger = logging.getLogger(__name__)

__all__ = ["RetrainError", "RetrainResult", "RetrainSpec", "retrain"]


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
    collapse to chance (a short CPU run in experiments/RESULTS.md shows it)."""
    if recipe.model_ema_warmup:
        return None
    kept = recipe.model_ema_decay ** steps
    if kept < 0.05:
        return None
    return (f"note: EMA decay {recipe.model_ema_decay:g} over {steps:,} steps keeps {kept:.0%} of the initial "
            "weights at the end, so the EMA's figures will be poor; set model_ema_warmup: true or a lower "
            "model_ema_decay in the recipe")


def retrain(spec: RetrainSpec, stop_after_epoch: int | None = None, log: Callable[[str], None] | None = None,
            splits: ImageSplits | None = None, deadline: float | None = None) -> RetrainResult:
    """Train (or resume, or finish) the run of ``spec`` in ``spec.out``.

    ``stop_after_epoch`` ends this call after that many epochs, ``deadline`` (a ``time.time()``) at the first step
    after it (``chunk_rules``: inside an epoch for one process, at an epoch's end under torchrun); either leaves
    the run resumable, as a kill would. ``splits`` replaces the images ``spec.data`` names (a
    caller's own data, e.g. a benchmark's subset).
    """
    procs = Processes.from_env()
    say = log or (lambda text: logger.info(text))
    say = say if procs.main else (lambda text: None)
    source_arch, source_name = resolve_reference(spec.ref)
    device = resolve_train_device(spec.train_device, procs.local_rank)
    procs.start(device)
    recipe, recipe_note = resolve_recipe(spec, source_arch)
    policy = recipe_policy(recipe, device)
    splits = splits or image_splits(spec.data, recipe.val_fraction, recipe.val_seed)
    arch = source_arch.replace(num_classes=splits.num_classes, in_chans=splits.channels,
                               resolution=recipe.resolution or source_arch.resolution)
    changed = [f"{k} {getattr(source_arch, k)} -> {getattr(arch, k)}"
               for k in ("num_classes", "in_chans", "resolution") if getattr(source_arch, k) != getattr(arch, k)]
    out = Path(spec.out)
    check_tracker(spec.track)
    if procs.main:
        output_folder(out)
    procs.barrier()
    identity = {"arch": arch.to_dict(), "recipe": recipe.to_dict(), "data": spec.data, "world": procs.world,
                "teacher": spec.teacher, "init": spec.init}
    folder = RunFolder(out, identity, "retraining", RetrainError, track=spec.track)
    payload = folder.load()
    say(f"retraining {source_name}: {arch.summary()}" + (f" (rebuilt for the data: {', '.join(changed)})"
                                                        if changed else ""))
    mean, std = normalisation(splits.channels)
    seed_init(recipe.seed)  # the initial weights follow from the seed (the same on every process)
    model = build_student(arch, mean, std)
    init_note = load_init(model, spec.init) if spec.init else None
    if init_note:
        say(init_note)
    if recipe.sync_bn and procs.world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = policy.place(model)
    teacher = None
    if spec.teacher:
        teacher = load_teacher(spec.teacher, spec.teacher_checkpoint, splits.num_classes, splits.channels)
    task = build_task(model, recipe, teacher, device)
    if recipe.model_ema:
        task.setup_ema(decay=recipe.model_ema_decay, use_warmup=recipe.model_ema_warmup)

    data = data_pipeline(splits, recipe, arch.resolution, procs, device)
    say(f"data {splits.describe()}; {data.path}; {procs.world} process(es) on {policy.describe()}")
    updates_per_epoch = data.train.steps_per_epoch
    optimizer, scheduler, lr = build_optimization(model, recipe, procs.world, updates_per_epoch)
    scaler = policy.scaler()
    if procs.world > 1:
        task.prepare_distributed(device_ids=[device.index] if device.type == "cuda" else None)
    mixup = build_mixup(recipe, splits.num_classes)
    ema = task.get_trainable_module(ema=True).module if recipe.model_ema else None

    def step(inputs: torch.Tensor, targets: torch.Tensor, state: LoopState) -> torch.Tensor:
        with policy.autocast():
            loss = task(inputs, targets)["loss"]
        backward(loss, scaler)
        return loss.detach().float()

    training = Training(unwrap_model(model), optimizer, data.train, policy, step, scheduler, scaler,
                        clip_grad=recipe.clip_grad, clip_mode=recipe.clip_mode, mixup=mixup,
                        after_update=(lambda n: task.update_ema(step=n)) if recipe.model_ema else None,
                        seed=recipe.seed, rank=procs.rank, trained=task)
    state = None
    if payload is not None:
        if ema is not None:
            ema.load_state_dict(payload["ema"])
        state, where = folder.resume(payload, training, recipe.epochs)
        say(where)

    if procs.main:
        write_text(out / "arch.json", arch.to_json() + "\n")
        recipe.replace(resolution=arch.resolution).save(out / "recipe.yaml", {"resolved for": f"{source_name} on {spec.data}, {procs.world} "
                                          f"process(es); lr {lr:.6g} for a global batch of "
                                          f"{recipe.batch_size * procs.world}"})
    say(f"{recipe.epochs} epochs of {updates_per_epoch} steps (global batch {recipe.batch_size * procs.world}, "
        f"peak lr {lr:.3g}{', mixup/cutmix' if mixup else ''}{', EMA' if recipe.model_ema else ''}"
        f"{', distilling from ' + spec.teacher if teacher is not None else ''})")
    if recipe.model_ema and (note := ema_left_behind(recipe, recipe.epochs * updates_per_epoch)):
        say(note)

    def end_epoch(epoch: int, losses: list[float]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        if epoch % recipe.eval_every == 0 or epoch == recipe.epochs:
            row.update(_prefixed("val", evaluate(training.model, data.val(), policy, procs.world > 1).percent()))
            if ema is not None:
                row.update(_prefixed("ema_val", evaluate(ema, data.val(), policy, procs.world > 1).percent()))
        return row

    def describe(row: dict[str, Any]) -> str:
        scores = (f", val top-1 {row['val_top1']:.2f} %" if "val_top1" in row else "") + \
                 (f" (EMA {row['ema_val_top1']:.2f} %)" if "ema_val_top1" in row else "")
        return f"train loss {row['train_loss']:.4f}{scores}, lr {row['lr']:.2e}"

    checkpoint = folder.saver(training, procs, recipe.epochs, say, describe,
                              lambda: {"ema": ema.state_dict() if ema is not None else None})

    last_epoch = recipe.epochs if stop_after_epoch is None else min(recipe.epochs, stop_after_epoch)
    stop, every_s = chunk_rules(deadline, procs, device)
    state = fit(training, last_epoch, state, end_epoch, checkpoint, every_s, stop,
                f"epoch {{epoch}}/{recipe.epochs}" if procs.main else None)
    result = RetrainResult(out, arch, recipe, state.epoch, folder.rows(state, procs.world), seconds=state.seconds)
    if (stopped := folder.stopped(state, recipe.epochs)) is not None:
        say(stopped)
        return result
    final = {}
    for split, batches in (("val", data.val), ("test", data.test)):
        final.update(_prefixed(split, evaluate(training.model, batches(), policy, procs.world > 1).percent()))
        if ema is not None:
            final.update(_prefixed(f"ema_{split}", evaluate(ema, batches(), policy, procs.world > 1).percent()))
    result.final, result.finished = final, True
    if procs.main:
        write_outputs(result, training.model, ema, spec, splits, source_name, recipe_note, lr, procs.world,
                      str(device), say)
    procs.barrier()
    procs.finish()
    return result


def _prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in values.items()}
