"""``nas retrain``: an architecture trained in full with the official recipe, by the engine."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from .options import UsageError, add_data, add_recipe_options, add_track, add_train_device, positive_int, recipe_changes


def cmd_retrain(args: argparse.Namespace) -> None:
    from ..training.retrain import RetrainSpec, retrain

    changes = recipe_changes(args, ("epochs", "batch_size", "lr", "resolution", "seed", "loader_workers"))
    exports = tuple(f for f in args.export.split(",") if f and f != "none")
    bad = [f for f in exports if f not in ("onnx", "coreml")]
    if bad:
        raise UsageError(f"--export {args.export!r}: unknown format {bad[0]!r}; accepted: onnx, coreml, "
                         "onnx,coreml or none")
    if args.teacher_checkpoint and not args.teacher:
        raise UsageError("--teacher-checkpoint needs --teacher")
    deadline = time.time() + 60 * args.minutes if args.minutes else None
    retrain(RetrainSpec(ref=args.ref, data=args.data, out=Path(args.out), recipe_changes=changes,
                        recipe_file=args.recipe, teacher=args.teacher, teacher_checkpoint=args.teacher_checkpoint,
                        init=args.init, train_device=args.train_device, exports=exports, track=args.track),
            deadline=deadline)


def register(commands) -> None:
    rt = commands.add_parser("retrain", help="train an architecture in full (official recipe), resumable; "
                                             "writes checkpoints, a model card and exports")
    rt.add_argument("ref", help="a search run directory (its best architecture), an architecture .json file or "
                                "swiftformer:<xs|s|l1|l3>")
    add_data(rt, "fashion-mnist (default), cifar10:PATH or imagefolder:PATH (small images held on the training "
                 "device, photographs read from disk), with the search's train/val/test splits")
    add_recipe_options(rt, "a recipe YAML (e.g. a previous run's recipe.yaml) over the official recipe",
                       "peak learning rate (default: 2e-3 scaled from a batch of 2048)")
    rt.add_argument("--resolution", type=positive_int, help="training side (default: the architecture's)")
    rt.add_argument("--teacher", help="hard token distillation from timm:NAME, swiftformer:<variant>, an "
                                      "architecture .json or a nas retrain directory")
    rt.add_argument("--teacher-checkpoint", help="the teacher's trained weights")
    rt.add_argument("--init", help="warm start: checkpoint:FILE, or supernet:DIR (the architecture's weights "
                                   "extracted from the supernet trained in DIR)")
    add_train_device(rt, "; under torchrun each process takes its local GPU")
    add_track(rt, "the training curve (loss, val top-1 per epoch)")
    rt.add_argument("--export", default="onnx,coreml", help="formats written at the end: onnx, coreml, "
                                                            "onnx,coreml (default) or none")
    rt.set_defaults(func=cmd_retrain)
