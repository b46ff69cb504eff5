"""`nas ...` run in this process: what a user would see on stderr and the exit status, without paying for a new
interpreter and its torch import (about 4.5 s a run here). Each test file keeps one real process run as well."""
from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def run_nas_here(capsys: pytest.CaptureFixture, *args: str) -> Outcome:
    """An uncaught exception is not turned into an outcome: it fails the test, as a traceback would."""
    from nas.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)
