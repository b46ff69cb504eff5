"""``nas supernet train``: a weight-sharing supernet over a space, trained by the engine (sandwich rule)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from .options import SPACE_HELP, add_data, add_recipe_options, add_track, add_train_device, downscale, recipe_changes


def cmd_supernet_train(args: argparse.Namespace) -> None:
    from ..supernet.train import SandwichConfig, SupernetSpec, train_supernet

    changes = recipe_changes(args, ("epochs", "batch_size", "lr", "seed", "loader_workers"))
    sandwich = SandwichConfig(random_subnets=args.random_subnets, distill=args.distill, downscale=args.downscale)
    deadline = time.time() + 60 * args.minutes if args.minutes else None
    train_supernet(SupernetSpec(space=args.space, data=args.data, out=Path(args.out), sandwich=sandwich,
                                recipe_changes=changes, recipe_file=args.recipe, train_device=args.train_device,
                                track=args.track),
                   deadline=deadline)


def register(commands) -> None:
    sn = commands.add_parser("supernet", help="a weight-sharing supernet over a space").add_subparsers(
        dest="supernet_command", required=True, metavar="SUBCOMMAND")
    snt = sn.add_parser("train", help="train a supernet (sandwich rule, in-place distillation), resumable; "
                                      "writes supernet.pth for --evaluator supernet:DIR and --init supernet:DIR")
    snt.add_argument("--space", default="swiftformer", help=SPACE_HELP)
    add_data(snt, "fashion-mnist (default), cifar10:PATH or imagefolder:PATH, with the search's splits")
    snt.add_argument("--proxy-downscale", "--downscale", dest="downscale", type=downscale, default=4.0,
                     help="train each architecture at its resolution divided by this, as the search's proxy "
                          "(--proxy-downscale; --downscale is its old name; default 4)")
    snt.add_argument("--random-subnets", type=int, default=2,
                     help="random subnets per step besides the largest and the smallest (default 2)")
    snt.add_argument("--distill", choices=("soft", "none"), default="soft",
                     help="soft (default): the other subnets learn the largest's predictions; none: the labels")
    add_recipe_options(snt, "a recipe YAML over the supernet's defaults",
                       "peak learning rate (default: 2e-3 scaled from a batch of 512)")
    add_train_device(snt, "; under torchrun each process takes its local GPU")
    add_track(snt, "the training curve (losses, val top-1 of the largest and smallest per epoch)")
    snt.set_defaults(func=cmd_supernet_train)
