"""Evaluators for ``--evaluator callable:swiftnas_testing.evaluators:NAME``: a score without training, so that
storage, cluster and fault tests exercise the search's bookkeeping in seconds.

Each finished evaluation appends ``digest pid`` to the file named by ``NAS_EVALUATION_LOG`` (when set): a record
outside the study of what was evaluated, by whom, to the end, for checking that nothing was evaluated twice.
``NAS_EVALUATION_SECONDS`` makes each evaluation last that long (a trial that can be killed in the middle).
"""
from __future__ import annotations

import os
import time

from swiftformer import SwiftFormerArch


def score(arch: SwiftFormerArch) -> float:
    """A deterministic pseudo accuracy in [0.5, 0.9) from the architecture's digest."""
    return 0.5 + 0.4 * int(arch.digest()[:8], 16) / 16 ** 8


def logged(arch: SwiftFormerArch) -> float:
    seconds = float(os.environ.get("NAS_EVALUATION_SECONDS", "0"))
    if seconds:
        time.sleep(seconds)
    value = score(arch)
    log = os.environ.get("NAS_EVALUATION_LOG")
    if log:
        with open(log, "a") as handle:  # one short line per append: whole lines even with several writers
            handle.write(f"{arch.digest()} {os.getpid()}\n")
    return value
