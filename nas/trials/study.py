"""The study: how a job opens it (with the identity its trials are comparable under), what state each trial is
in, and how a killed run's trials come back.

Every job that trains architectures (the search, the fidelity benchmark, ablations) keeps its trials in an
Optuna study, the single source of truth: outputs are derived from it and running the same command again
resumes it. Where it is stored, and how workers ride out a database restart, is ``storage.py``. On RDB storages
Optuna's own heartbeat marks the trials of a dead process stale; on journal files a beat in the trial's system
attributes does the same. Either way a stale trial is failed and its parameters queued again by Optuna's
``RetryHeartbeatStaleTrialCallback``.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence


import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import TrialState

from ..console import quiet_optuna
from ..files import StateError
from .storage import HEARTBEAT_S, MAX_RETRIES, STALE_AFTER_S, listed_rows, make_storage, seconds_since_outage

logger = logging.getLogger(__name__)

__all__ = ["make_storage", "status_of", "counted", "tally", "TrialIndex", "index_of", "in_flight", "best_feasible",
           "retry_of", "Heartbeat", "settle_interrupted", "settle_on_sigterm", "recover_interrupted", "open_study",
           "take_queued", "check_precision", "other_precision"]

KNOWN = ("trained", "reference", "pruned")  # statuses whose result is known: a re-proposal reuses it
FAILURES = ("diverged", "out of memory", "error", "not scorable", "claimed elsewhere", "surplus", "interrupted")
FINAL = ("trained", "diverged")  # a queued run (an ablation's, a benchmark's) is never trained again; out of memory
# is, on the next run (a device with more memory, fewer workers sharing it)
TRAINING_STATUSES = ("trained", "pruned", "diverged", "out of memory")  # searched trials that used training time



# ---------------------------------------------------------------------------------------------- trial states
RUN_ENV = "NAS_RAY_RUN"  # set in the Ray workers a driver starts: the run their trials belong to
RUN_ATTR = "nas:ray_run"


def status_of(trial: optuna.trial.FrozenTrial) -> str:
    """What happened to a trial: trained, reference, pruned, rejected (over budget), duplicate (a known result
    reused), diverged, out of memory, error, interrupted (its process died), running or queued."""
    if trial.state == TrialState.RUNNING:
        return "running"
    if trial.state == TrialState.WAITING:
        return "queued"
    if trial.state == TrialState.FAIL:  # a failure records its reason; a killed run's trial has none, and
        # a trial recovered as stale while its process was telling its result may hold that result's status
        status = trial.user_attrs.get("status", "interrupted")
        return status if status in FAILURES else "interrupted"
    if trial.state == TrialState.PRUNED:
        return trial.user_attrs.get("status", "pruned")
    return trial.user_attrs.get("status", "trained")


def counted(trials: Iterable[optuna.trial.FrozenTrial]) -> int:
    """Searched trials that used training time (trained, pruned, failed while training), references excluded."""
    return tally(trials)[0]


def tally(trials: Iterable[optuna.trial.FrozenTrial], before: int | None = None,
          index: "TrialIndex | None" = None) -> tuple[int, int, bool]:
    """In one pass (a worker reads the study before every step): ``counted``, ``in_flight`` and whether anything
    is queued. With ``before`` (the places a trial may take), ``in_flight`` is the unfinished trials numbered below
    it, queued ones too: a retry queued just after another worker's ask found the queue empty is numbered below
    that worker's new trial and takes its place when it starts. With the study's ``index``, finished trials are
    counted once each instead of at every read."""
    if index is not None:
        unfinished, done = index.update(trials), index.done
    else:
        unfinished, done = [], 0
        for t in trials:
            if not t.state.is_finished():
                unfinished.append(t)
            elif status_of(t) in TRAINING_STATUSES and "reference" not in t.user_attrs:
                done += 1
    flying = sum(1 for t in unfinished if "reference" not in t.user_attrs
                 and (t.state == TrialState.RUNNING if before is None else t.number < before))
    return done, flying, any(t.state == TrialState.WAITING for t in unfinished)


_UNFINISHED = frozenset((TrialState.RUNNING, TrialState.WAITING))


class TrialIndex:
    """The finished trials of one study as a worker keeps re-reading them, indexed once each (a finished trial
    never changes): how many used training time, and the finished trials of each architecture. The study stays the
    single source of truth: every read still starts from ``get_trials``, the index only skips re-deriving what a
    finished trial already said. A search of thousands of trials (a tabular benchmark's) would otherwise spend its
    time re-reading them before every step."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.done = 0
        self.by_digest: dict[str, list[optuna.trial.FrozenTrial]] = {}

    def update(self, trials: Iterable[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
        """Index the trials finished since the last update; returns the unfinished ones (running, queued)."""
        unfinished, seen = [], self.seen
        for t in trials:
            if t.number in seen:  # (only finished trials are seen)
                continue
            if t.state in _UNFINISHED:
                unfinished.append(t)
                continue
            seen.add(t.number)
            if status_of(t) in TRAINING_STATUSES and "reference" not in t.user_attrs:
                self.done += 1
            digest = t.user_attrs.get("digest")
            if digest is not None:
                self.by_digest.setdefault(digest, []).append(t)
        return unfinished


_INDEXES: "weakref.WeakKeyDictionary[optuna.Study, TrialIndex]" = weakref.WeakKeyDictionary()


def index_of(study: optuna.Study) -> TrialIndex:
    """This process's index of ``study`` (one per study object)."""
    if study not in _INDEXES:
        _INDEXES[study] = TrialIndex()
    return _INDEXES[study]


def open_study(name: str, storage: optuna.storages.BaseStorage, identity: Any, refuse: Callable[[str], Exception],
               directions: Sequence[str] = ("maximize",), pruner: optuna.pruners.BasePruner | None = None,
               key: str = "nas_identity", first: Mapping[str, Any] | None = None,
               listing: Path | None = None, metrics: Sequence[str] = ("val_accuracy",)) -> optuna.Study:
    """Create or load study ``name`` of a job whose trials are comparable only under ``identity`` (the settings
    that change a score): the first opening records it under ``key`` (with ``first``'s attributes), a later one
    with another identity or other directions is refused with ``refuse(what differs)``, an error the job words
    (its way out: the same settings, another --study, --out or journal).

    ``listing``: the job's table of its trials (``trials.csv``), written from the study. When it lists trials
    while the storage holds no such study, the study file was emptied, replaced or lost: a new empty study would
    overwrite that table and every output beside it, so the run is refused instead (``StateError``).

    ``metrics`` name the objective values (optuna-dashboard and Optuna's plots show them instead of "Objective 0");
    named on a study's first opening, and on a study recorded before names were given."""
    if listing is not None and name not in optuna.get_all_study_names(storage):
        listed = listed_rows(listing)
        if listed:
            raise StateError(f"{listing} lists {listed} trials of study {name!r}, but its storage holds no such "
                             "study (the study file was emptied, replaced or moved): restore the study file, or "
                             "move the folder aside to start a new study (its outputs were left as they are)")
    study = optuna.create_study(study_name=name, storage=storage, pruner=pruner, directions=list(directions),
                                load_if_exists=True)
    stored = study.user_attrs.get(key)
    if stored is None:
        study.set_user_attr(key, identity)
        for attr, value in (first or {}).items():
            study.set_user_attr(attr, value)
    elif stored != identity:
        if isinstance(stored, dict) and isinstance(identity, dict):
            changed = sorted(k for k in set(stored) | set(identity) if stored.get(k) != identity.get(k))
        else:
            changed = [key]
        raise refuse(", ".join(changed))
    if study.directions != [optuna.study.StudyDirection[d.upper()] for d in directions]:
        raise refuse("objective")
    if study.metric_names is None and len(metrics) == len(directions):
        with quiet_optuna():  # (experimental in Optuna: its warning is not the user's concern)
            study.set_metric_names(list(metrics))
    return study


def take_queued(study: optuna.Study) -> optuna.Trial | None:
    """A queued trial, now running in this process; None when the queue is empty.

    Optuna has no public call for this: ``study.ask()`` takes a queued trial too, but on an empty queue it creates
    a new trial, which a job that only trains what it queued (an ablation) would have to fail and keep. So this
    makes the storage call ``ask()`` itself makes (``Study._pop_waiting_trial_id``: the trial is claimed
    atomically, so two workers never take the same one)."""
    trial_id = study._pop_waiting_trial_id()  # noqa: SLF001 (see the docstring)
    return None if trial_id is None else optuna.Trial(study, trial_id)


def check_precision(study: optuna.Study, precision: str, device: Any, refuse: Callable[[str], Exception]) -> None:
    """Refuse, with ``refuse(message)``, a process that would train ``study`` in another precision than the one
    it trains in (``other_precision``)."""
    recorded = other_precision(study, precision)
    if recorded is not None:
        raise refuse(f"trains in {recorded}; this process would train in {precision} (on {device})")


def other_precision(study: optuna.Study, precision: str) -> str | None:
    """The precision ``study`` trains in when it is not ``precision`` (the first process to train records its own);
    None when they agree. Every job that trains keeps one precision per study: a mix would rank bf16 runs against
    fp32 ones."""
    recorded = study.user_attrs.get("nas_precision")
    if recorded is None:
        study.set_user_attr("nas_precision", precision)
        return None
    return recorded if recorded != precision else None


def best_feasible(trials: Iterable[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial | None:
    """The most accurate trial trained within the budget (a reference may be it)."""
    done = [t for t in trials if status_of(t) in ("trained", "reference")]
    return max(done, key=lambda t: t.values[0], default=None)


def in_flight(trials: list[optuna.trial.FrozenTrial], before: int | None = None) -> int:
    """Searched trials being evaluated now, by any process (each may become a counted one); with ``before``,
    only those numbered below it."""
    return sum(1 for t in trials if t.state == TrialState.RUNNING and "reference" not in t.user_attrs
               and (before is None or t.number < before))


def retry_of(trial: optuna.trial.FrozenTrial) -> int | None:
    with quiet_optuna():
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


# -------------------------------------------------------------------------------------- heartbeat, recovery
class Heartbeat:
    """Keeps a running trial visibly alive while it trains: Optuna's heartbeat record on RDB storages, a beat in
    the trial's system attributes on journal files. A beat that cannot be written (the database is away) is
    skipped, never fatal: the trial goes on and beats again when it can.

    An interrupt (Ctrl-C, or SIGTERM where the process turns it into one: ``settle_on_sigterm``) that leaves the
    block while the trial runs settles the trial itself: failed as interrupted and its parameters queued again, as
    the recovery of a stale trial would, but at once, so the next run need not wait for its heartbeat to go stale.
    A kill that allows nothing (SIGKILL, a lost machine) is still the heartbeat's to detect."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial):
        self.study, self.trial = study, trial
        # Optuna beats only inside ``study.optimize``; a job that asks and tells itself beats through the storage's
        # own heartbeat API (``BaseHeartbeat``), which it reaches only through the study and the trial's id
        self.storage, self.trial_id = study._storage, trial._trial_id  # noqa: SLF001
        self.native = is_heartbeat_enabled(self.storage)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _beat(self) -> None:
        if self.native:
            self.storage.record_heartbeat(self.trial_id)
        else:
            self.storage.set_trial_system_attr(self.trial_id, "nas:heartbeat", time.time())

    def _run(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 (a missed beat is harmless; the trial goes on)
                pass

    def __enter__(self) -> "Heartbeat":
        self._beat()
        if os.environ.get(RUN_ENV):  # a Ray worker: the driver that started it settles its trial if interrupted
            self.storage.set_trial_system_attr(self.trial_id, RUN_ATTR, os.environ[RUN_ENV])
        self.thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            settle_interrupted(self.study, self.trial)


def settle_interrupted(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Fail ``trial`` (still running) as interrupted and queue its parameters again (at most ``MAX_RETRIES``
    times, as recovery does); False when it had finished or cannot be reached (the heartbeat then settles it).
    A second Ctrl-C (or SIGTERM) during these two writes is ignored until they are done (main thread only: signals
    go there)."""
    try:
        with _signals_held():
            study.tell(trial, state=TrialState.FAIL)
            frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
            RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(study, frozen)
    except Exception:  # noqa: BLE001 (finished meanwhile, or the database is away: the heartbeat's case)
        return False
    logger.info(f"trial #{trial.number} was interrupted; its architecture is queued again")
    return True


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM ignored until the block's writes are done (main thread only: signals go there)."""
    held = (signal.SIGINT, signal.SIGTERM)
    main = threading.current_thread() is threading.main_thread()
    previous = [signal.signal(sig, signal.SIG_IGN) for sig in held] if main else []
    try:
        yield
    finally:
        for sig, handler in zip(held, previous):
            signal.signal(sig, handler)


def settle_run(study: optuna.Study, run: str) -> list[int]:
    """Fail as interrupted, and queue again, the running trials of the Ray workers a driver started (their
    ``RUN_ATTR`` is ``run``) once it has stopped them: a worker stopped by its driver cannot settle its own trial,
    and the next run would otherwise wait for its heartbeat to go stale. Returns their numbers."""
    try:
        with _signals_held():
            ours = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                    if t.system_attrs.get(RUN_ATTR) == run]
            settled = _fail_and_queue_again(study, ours)
    except Exception:  # noqa: BLE001 (the database is away: the heartbeat settles them later)
        return []
    if settled:
        logger.info(f"trial(s) {', '.join(f'#{n}' for n in settled)} were interrupted with their Ray workers; "
                    "their architectures are queued again")
    return settled


def _fail_and_queue_again(study: optuna.Study, trials: Iterable[optuna.trial.FrozenTrial]) -> list[int]:
    """What ``fail_stale_trials`` does on RDBs (which Optuna offers for its own heartbeat only): each still running
    trial failed and its parameters queued again, at most ``MAX_RETRIES`` times."""
    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
    failed = []
    for trial in trials:
        try:
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)  # noqa: SLF001
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished meanwhile, or another process recovered it first
        retry(study, next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number))
        failed.append(trial.number)
    return failed


def settle_on_sigterm() -> None:
    """Make SIGTERM an interrupt in this process (a scheduler's or ``kill``'s polite stop), so a running trial is
    settled as for Ctrl-C; main thread only."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def recover_interrupted(study: optuna.Study, wait: bool = True) -> list[int]:
    """Fail the running trials whose process stopped beating and queue their parameters again.

    With ``wait``, a trial that beat recently is given the grace period to show it is still alive (another
    process may be training it); without, only trials already stale are recovered.
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    if seconds_since_outage() < STALE_AFTER_S + HEARTBEAT_S:
        return []  # the database was just away: live workers have not had the chance to beat again yet
    native = is_heartbeat_enabled(study._storage)  # noqa: SLF001 (as Heartbeat: no public way to ask)
    if wait:
        freshest = max(_last_beat(t, native) for t in running)
        if time.time() - freshest < STALE_AFTER_S:
            logger.info(f"{len(running)} trial(s) marked running; waiting {STALE_AFTER_S - (time.time() - freshest):.0f}s "
                  "to see whether another process is still working on them")
            time.sleep(max(0.0, STALE_AFTER_S - (time.time() - freshest)) + 0.5)
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    if native:
        optuna.storages.fail_stale_trials(study)  # runs the storage's RetryHeartbeatStaleTrialCallback
    else:
        _fail_and_queue_again(study, [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                                      if time.time() - _last_beat(t, native) >= STALE_AFTER_S])
    failed = sorted({t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))} - before)
    if failed:
        logger.info(f"trial(s) {', '.join(f'#{n}' for n in failed)} were interrupted; their architectures are queued "
              "again")
    return failed


def _last_beat(trial: optuna.trial.FrozenTrial, native: bool) -> float:
    if native:  # Optuna keeps RDB beats in its own table, read only by fail_stale_trials: assume a fresh one
        return time.time()
    return trial.system_attrs.get("nas:heartbeat", trial.datetime_start.timestamp())
