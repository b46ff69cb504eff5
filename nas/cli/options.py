"""What the ``nas`` commands share: argument types, help texts and option groups.

One meaning per option everywhere: ``--workers`` is how many trainings run at once (processes; on one GPU they
share it), ``--loader-workers`` how many DataLoader processes feed one training that streams its images,
``--train-device`` where trainings run, ``--device`` the phone whose latency is predicted.
"""
from __future__ import annotations

import argparse
from typing import Callable, Sequence

from ..units import parse_duration_s, parse_latency_ms

MODEL_REF_HELP = "swiftformer:<xs|s|l1|l3>, timm:<name>, or an architecture .json file"
SPACE_HELP = ("a shipped space name (default: swiftformer; nb201 and fbnet: the tabular benchmarks' spaces) or a "
              ".yaml/.json SwiftFormer space file")
TRAIN_DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps"


class UsageError(ValueError):
    """Bad input a user can fix; printed as one line."""


def _checked(text: str, cast: Callable[[str], float], ok: Callable[[float], bool], expected: str):
    """``cast(text)`` if it converts and ``ok`` accepts it, else argparse's one-line error naming what is accepted."""
    try:
        value = cast(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _checked(text, int, lambda v: v > 0, "a positive integer")


def positive_float(text: str) -> float:
    return _checked(text, float, lambda v: 0 < v < float("inf"), "a positive number")


def downscale(text: str) -> float:
    return _checked(text, float, lambda v: v >= 1,
                    "a number of at least 1 (the architecture's resolution is divided by it)")


def fraction(text: str) -> float:
    return _checked(text, float, lambda v: 0 < v < 1, "a fraction between 0 and 1")


def budget(text: str) -> float:
    try:
        return parse_latency_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration(text: str) -> float:
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _minutes_as(unit_s: float):
    def minutes(text: str) -> float:
        return positive_float(text) * 60 / unit_s
    return minutes


def _duration_as(unit_s: float):
    def duration_in_unit(text: str) -> float:
        return duration(text) / unit_s
    return duration_in_unit


def add_time_limit(p: argparse.ArgumentParser, dest: str, unit_s: float, what: str) -> None:
    """One time limit across commands: ``--minutes N``, with ``--timeout DURATION`` (90s, 30m, 2h; a bare number
    is seconds) as its alias; both stored in ``dest`` in units of ``unit_s`` seconds."""
    p.add_argument("--minutes", dest=dest, type=_minutes_as(unit_s), metavar="N",
                   help=f"{what} after N minutes (a chunk); the same command resumes (alias: --timeout; default: "
                        "no limit)")
    p.add_argument("--timeout", dest=dest, type=_duration_as(unit_s), metavar="DURATION",
                   help="the same limit as a duration: 90s, 30m, 2h (a bare number is seconds)")


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that says every option's default: appended where the help text does not say it already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (action.option_strings and action.nargs != 0 and "default" not in text.lower()
                and action.default not in (None, argparse.SUPPRESS)):
            text += " (default: %(default)s)"
        return text


def add_predictor_choice(p: argparse.ArgumentParser, required: bool) -> None:
    """The phone whose latency is predicted: a shipped predictor or a calibrated file."""
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("--device", help="a shipped predictor: iphone14 or iphone12")
    group.add_argument("--predictor", help="a predictor JSON made by `nas latency calibrate`")


def add_data(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--data", default="fashion-mnist", help=help_text)


def add_train_device(p: argparse.ArgumentParser, extra: str = "") -> None:
    p.add_argument("--train-device", default="auto", help=f"where trainings run: {TRAIN_DEVICE_HELP}{extra}")


def add_concurrency(p: argparse.ArgumentParser, what: str) -> None:
    """``--workers`` (trainings at once) and where they run: local processes or Ray trials."""
    p.add_argument("--workers", type=positive_int, default=1,
                   help=f"{what} trained at once, each in its own process (on one GPU they share it: small "
                        "trainings use it far better together than one at a time)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: this machine's processes; ray: Ray Tune trials, on a local Ray or --ray-address's "
                        "cluster")
    p.add_argument("--ray-address", help="a Ray cluster to run on (default: a local Ray)")
    p.add_argument("--cpus-per-trial", "--threads", dest="cpus_per_trial", type=positive_int,
                   help="threads of each worker, and CPUs each Ray trial requests (default: the machine's CPUs "
                        "shared out between the workers; 1 per trial on a Ray cluster)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs each Ray trial requests: a fraction (e.g. 0.25) puts several trainings on one GPU "
                        "(default 0)")


def add_track(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--track", choices=("tensorboard",), default=None,
                   help=f"also record {what} as TensorBoard event files in OUT/tensorboard (view: tensorboard "
                        "--logdir OUT/tensorboard; needs the track extra: pip install 'swiftnas[track]'; default: "
                        "not recorded)")


def add_recipe_options(p: argparse.ArgumentParser, recipe_help: str, lr_help: str) -> None:
    """A recipe-driven training's options (``nas retrain``, ``nas supernet train``)."""
    p.add_argument("--out", required=True, help="output folder; running the same command again resumes it")
    p.add_argument("--recipe", help=recipe_help)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="one recipe value, e.g. --set mixup=0 (repeatable; see recipe.yaml for the keys)")
    p.add_argument("--epochs", type=positive_int, help="epochs to train (default: the recipe's)")
    p.add_argument("--batch-size", type=positive_int, help="per process (part of the recipe: its lr follows it)")
    p.add_argument("--lr", type=float, help=lr_help)
    p.add_argument("--seed", type=int, help="the run's seed: initialisation, augmentation, order (default: the "
                                            "recipe's, 0)")
    p.add_argument("--loader-workers", type=int, help="DataLoader processes where the images stream from disk "
                                                      "(default 2; resident datasets need none)")
    p.add_argument("--workers", dest="misplaced_workers", type=int, help=argparse.SUPPRESS)
    add_time_limit(p, "minutes", 60.0, "stop (inside an epoch if need be)")


def recipe_changes(args: argparse.Namespace, keys: Sequence[str]) -> dict[str, object]:
    """``--set KEY=VALUE`` items, then the recipe options given by name (``keys``)."""
    if getattr(args, "misplaced_workers", None) is not None:
        raise UsageError("--workers is the number of trainings run at once; the DataLoader processes of one "
                         "training are --loader-workers")
    changes: dict[str, object] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {item!r} is not KEY=VALUE (e.g. --set mixup=0)")
        changes[key.strip()] = value.strip()
    for key in keys:
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    return changes
