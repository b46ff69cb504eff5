"""Running a job's workers in ``--workers`` processes that share one study (the search, ablations, the fidelity
benchmark), and the contexts a worker process keeps between its trials (``worker_context``).

A job hands over a module-level entry point ``target(payload, worker, start)`` (spawned processes import it);
the entry point calls ``run_at_start_line`` with what the worker must prepare and the loop it then runs.
Workers prepare (decode data, price parts) at different speeds; the barrier holds each at the line until all
are ready, so the first one ready does not take the whole queue while the others load.
"""
from __future__ import annotations

import logging
import multiprocessing
import sys
import threading
from collections import OrderedDict
from typing import Any, Callable, TypeVar

from ..console import configure
from .errors import RunError
from .study import settle_on_sigterm

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 600.0  # how long a ready worker waits for the others to load
STOP_TIMEOUT_S = 60.0  # how long an interrupted run waits for its workers to settle their trials
MAX_CONTEXTS = 4  # contexts a worker process keeps by default (each may hold a decoded dataset): the oldest goes first

T = TypeVar("T")
_CONTEXTS: "OrderedDict[Any, Any]" = OrderedDict()


def worker_context(key: Any, build: Callable[[], T], keep: int = MAX_CONTEXTS) -> T:
    """This process's context for ``key`` (a job's folder and study, a benchmark setting), built by ``build`` on
    first use and kept, at most ``keep`` of them, so the next trial of the same job in this process (a reused Ray
    actor, the next search of a plan) does not decode data or price tables again."""
    if key in _CONTEXTS:
        _CONTEXTS.move_to_end(key)
        return _CONTEXTS[key]
    while len(_CONTEXTS) >= keep:
        _CONTEXTS.popitem(last=False)
    _CONTEXTS[key] = build()
    return _CONTEXTS[key]


def run_processes(target: Callable[..., None], payload: Any, workers: int) -> None:
    """Start ``workers`` spawned processes running ``target(payload, worker, start)`` and wait for them all."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(workers)
    processes = [context.Process(target=target, args=(payload, i, start)) for i in range(workers)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:  # Ctrl-C reached every process; SIGTERM only this one: pass it on, so each worker
        for process in processes:  # settles its own trial, then wait for them (a worker that hangs is killed)
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
        raise
    if any(p.exitcode for p in processes):
        raise RunError(f"{sum(bool(p.exitcode) for p in processes)} worker process(es) failed; "
                          "run the same command again to resume")


def run_at_start_line(worker: int, start: threading.Barrier | None, prepare: Callable[[], T],
                      loop: Callable[[T], None]) -> None:
    """Prepare, wait at the line for the other workers, then loop; a user error ends the process with one line
    and status 2 (and releases the others from the line); an interrupt (Ctrl-C, or the parent's SIGTERM) settles
    the running trial and ends it with status 130."""
    configure()  # a worker process of a command: its messages as the command's
    settle_on_sigterm()
    try:
        prepared = prepare()
    except ValueError as exc:  # the project's user-facing errors (SearchError, DatasetError, ...) are ValueErrors
        if start is not None:
            start.abort()  # the others must not wait for a worker that will never come
        logger.info(f"nas: error: worker {worker}: {exc}")
        sys.exit(2)
    except BaseException as exc:
        if start is not None:
            start.abort()
        if isinstance(exc, KeyboardInterrupt):  # interrupted while loading: nothing to settle
            sys.exit(130)
        raise
    if start is not None:
        try:
            start.wait(timeout=START_TIMEOUT_S)
        except threading.BrokenBarrierError:
            pass  # a worker failed or is late: start anyway, the study keeps the work consistent
    try:
        loop(prepared)
    except ValueError as exc:
        logger.info(f"nas: error: worker {worker}: {exc}")
        sys.exit(2)
    except KeyboardInterrupt:  # its trial is settled (``Heartbeat``); the parent says how to resume
        sys.exit(130)
