"""What a ``nas`` command shows on stderr, set up by the command line and its worker processes only.

Every module reports through ``logging`` (its logger is a child of ``nas``), so importing any of them changes
nothing global: a notebook keeps its log levels, warning filters and matplotlib backend, and sees SwiftNAS's
messages the way it configures ``logging`` (``logging.getLogger("nas").setLevel(logging.INFO)`` and a handler
show them; by default only warnings reach the console). ``configure`` is what a command does instead: each message
on a line of its own, as it is, on stderr, and Optuna's own per-trial lines and its warnings about the calls the
jobs make on purpose left out.
"""
from __future__ import annotations

import logging
import sys
import warnings
from contextlib import contextmanager
from typing import Iterator

LOGGER = "nas"


class _Stderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a message is emitted (a test's capture too)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # (StreamHandler sets it once; the property reads it every time)
        pass


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's notes about calls SwiftNAS makes on purpose (experimental APIs, the in-memory studies its analysis
    builds), kept out of a library user's output for the length of the call; their settings are restored after."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def configure() -> None:
    """The command line's output: the ``nas`` messages at INFO on stderr, Optuna quiet; idempotent."""
    import optuna

    logger = logging.getLogger(LOGGER)
    if not any(isinstance(handler, _Stderr) for handler in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, retry callback
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    # a retried trial carries its first attempt's constraint (the same architecture, the same price): set again, equal
    warnings.filterwarnings("ignore", message="The constraint value is ignored because this constraint")
