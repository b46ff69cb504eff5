"""``nas space show|sample``: a search space's choices and random members."""
from __future__ import annotations

import argparse
import json

from .options import SPACE_HELP, positive_int


def cmd_space_show(args: argparse.Namespace) -> None:
    from search_spaces import load_space

    print("\n".join(load_space(args.space).describe()))


def cmd_space_sample(args: argparse.Namespace) -> None:
    from search_spaces import load_space

    for arch in load_space(args.space).samples(args.n, seed=args.seed):
        print(json.dumps(arch.to_dict(), sort_keys=True))


def register(commands) -> None:
    space = commands.add_parser("space", help="inspect search spaces").add_subparsers(
        dest="space_command", required=True, metavar="SUBCOMMAND")
    show = space.add_parser("show", help="the choices of a space and its size")
    show.add_argument("space", nargs="?", default="swiftformer", help=SPACE_HELP)
    show.set_defaults(func=cmd_space_show)
    sample = space.add_parser("sample", help="random architectures of a space, one JSON object per line")
    sample.add_argument("space", nargs="?", default="swiftformer", help=SPACE_HELP)
    sample.add_argument("-n", type=positive_int, default=1, help="how many (default 1)")
    sample.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same list")
    sample.set_defaults(func=cmd_space_sample)
