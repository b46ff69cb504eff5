"""The ``nas`` command line: one module per command group, the options they share in ``options``.

Every command reports bad input, and a damaged or unwritable file it keeps (``nas.files``), as one line on stderr
(``nas: error: ...``, exit status 2), never a traceback.
"""
from __future__ import annotations

import argparse
import os

import argcomplete
import signal
import sys
from typing import Callable, Sequence

import swiftformer._torchvision_fix  # noqa: F401

from search_spaces import SpaceError
from swiftformer import ArchitectureError
from swiftformer.export import ExportError

from ..ablation.config import AblationError
from ..ablation.grid import GridError
from ..ablation.variants import VariantError
from ..benchmarks import BenchmarkError
from ..data import DatasetError
from ..engine import PolicyError
from ..console import configure
from ..files import StateError, os_error_line
from ..latency.lut import TableMissError
from ..latency.measure import BackendUnavailable
from ..latency.measurements import MeasurementError
from ..latency.predictor import PredictorError
from ..models import ModelRefError
from ..search.config import SearchError
from ..supernet import SupernetError
from ..tracking import TrackingError
from ..training import TrainDeviceError
from ..training.recipe import RecipeError, RetrainError
from ..trials.errors import RunError
from ..trials.study import settle_on_sigterm
from . import ablate, benchmark, latency, models, retrain, search, spaces, supernet
from .options import DefaultsFormatter, UsageError

USER_ERRORS = (AblationError, ArchitectureError, BackendUnavailable, BenchmarkError, DatasetError, ExportError, GridError,
               MeasurementError, ModelRefError, PolicyError, PredictorError, RecipeError, RetrainError, RunError,
               SearchError, SpaceError, StateError, SupernetError, TableMissError, TrackingError, TrainDeviceError,
               VariantError)
GROUPS = (models, spaces, latency, search, supernet, retrain, ablate, benchmark)  # in the order ``nas --help`` lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas", description="Hardware-aware NAS over the SwiftFormer family.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(commands)
    for each in _parsers(parser):  # every option's help says its default
        each.formatter_class = DefaultsFormatter
    return parser


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:  # noqa: SLF001 (argparse offers no public walk of its subparsers)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("swiftnas")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _attach_negative_values(argv: list[str]) -> list[str]:
    """``--latency-budget -1ms`` would read as a missing value; attach it so the budget check can explain."""
    out: list[str] = []
    for item in argv:
        if out and out[-1] in ("--latency-budget", "--timeout", "--minutes") and item.startswith("-"):
            out[-1] = f"{out[-1]}={item}"
        else:
            out.append(item)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    configure()  # messages on stderr, Optuna quiet: the command's output (importing nas changes nothing)
    parser = build_parser()
    argcomplete.autocomplete(parser)  # shell completion: eval "$(register-python-argcomplete nas)"; else nothing
    args = parser.parse_args(_attach_negative_values(list(sys.argv[1:] if argv is None else argv)))
    func: Callable[[argparse.Namespace], None] = args.func
    settle_on_sigterm()  # a polite kill settles the running trial as Ctrl-C does
    try:
        func(args)
    except (UsageError, *USER_ERRORS) as exc:
        parser.exit(2, f"nas: error: {exc}\n")
    except OSError as exc:  # a file or folder in the way, a full disk: nothing above knew better
        parser.exit(2, f"nas: error: {os_error_line(exc)}\n")
    except KeyboardInterrupt:  # the running trials are settled by now; a second Ctrl-C ends at once
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: os._exit(130))
        parser.exit(130, "nas: interrupted; finished work is kept: run the same command again to resume\n")
    return 0


__all__ = ["USER_ERRORS", "UsageError", "build_parser", "main"]
