"""One architecture's evaluation, whatever the job: the one place a training, a supernet score or a table read is
run, its outcome classified and its attributes recorded.

Every job calls it: the search (``nas.search.step``), ablations, the fidelity benchmark and the proving ground.
An evaluator is anything called as ``evaluator(arch, seed, report) -> Scored``: ``TrainingEvaluator`` trains
through the engine under a protocol, ``SupernetEvaluator`` scores inherited weights, ``FunctionEvaluator`` asks
a user's function or a benchmark's table. Outcomes, the same in every job:

- ``trained``: a score (the job may name it otherwise, e.g. a search's reference);
- ``pruned``: the job's ``report`` raised ``optuna.TrialPruned`` between epochs;
- ``diverged``: the training loss stopped being finite;
- ``out of memory``: the device (or the host) could not allocate;
- ``not scorable``: the supernet cannot hold the architecture.

A diverged or out-of-memory evaluation is recorded and the job goes on with its next trial. Any other exception
is recorded as ``error`` with its first line (so the trial is not retried as if interrupted) and raised: a bug
must surface. An interrupt is not caught (the trial is retried on resume), nor is a storage outage (the trial is
left running; its heartbeat stops and the next run recovers it).
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass, field
import logging
from typing import Any, Callable, Protocol as TypingProtocol

import optuna
import torch
from optuna.trial import TrialState

from ..data import ImageData
from ..engine import Diverged
from ..identity import ProxyConfig
from ..provenance import code_version
from ..supernet import SupernetError
from ..training import ProxyTask
from ..training.protocols import Protocol, train_and_evaluate
from .storage import StorageUnavailable

logger = logging.getLogger(__name__)

Report = Callable[[int, float], None]  # report(epoch, val_accuracy) after each epoch; may raise TrialPruned
OUTCOMES = ("trained", "pruned", "diverged", "out of memory", "not scorable")


@dataclass(frozen=True)
class Scored:
    """What an evaluator gives: the value a job selects on (val accuracy) and the attributes recorded with it."""

    value: float
    attrs: dict[str, Any] = field(default_factory=dict)


class Evaluator(TypingProtocol):
    def __call__(self, arch: Any, seed: int, report: Report | None) -> Scored: ...


@dataclass(frozen=True)
class Outcome:
    """How an evaluation ended: one of ``OUTCOMES``, the score where there is one, why where there is none."""

    status: str
    value: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    @property
    def state(self) -> TrialState:
        """The Optuna state a trial with this outcome ends in."""
        return {"trained": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(self.status, TrialState.FAIL)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA raises OutOfMemoryError; the CPU allocator a RuntimeError saying it cannot allocate."""
    text = str(exc)
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or "can't allocate memory" in text \
        or "out of memory" in text


def first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class EvaluationError(Exception):
    """An evaluation that failed for a reason none of the outcomes names (a bug, a broken file): ``reason`` is what
    is recorded; the original exception is its cause."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def evaluate(evaluator: Evaluator, arch: Any, seed: int = 0, report: Report | None = None) -> Outcome:
    """Run ``evaluator`` on ``arch`` and classify how it ended (see the module's docstring); an unexpected exception
    comes back as ``EvaluationError`` (chained) carrying the line to record."""
    try:
        scored = evaluator(arch, seed, report)
    except (StorageUnavailable, KeyboardInterrupt):
        raise
    except optuna.TrialPruned as exc:
        return Outcome("pruned", reason=str(exc))
    except SupernetError as exc:
        return Outcome("not scorable", reason=f"not representable in the supernet: {exc}")
    except Diverged as exc:
        return Outcome("diverged", reason=str(exc))
    except Exception as exc:
        if is_out_of_memory(exc):
            return Outcome("out of memory", reason=f"out of memory: {first_line(exc)}")
        raise EvaluationError(f"{type(exc).__name__}: {first_line(exc)}") from exc
    return Outcome("trained", float(scored.value), dict(scored.attrs))


def tell(study: optuna.Study, trial: optuna.Trial, status: str, values: list[float] | None,
         state: TrialState = TrialState.COMPLETE, worker: str = "") -> tuple[str, optuna.trial.FrozenTrial]:
    """Record ``status`` on the trial and tell the study; returns the status and the finished trial. A trial that
    another process judged stale meanwhile (its heartbeat arrived late) was queued again there: its result is
    dropped here, said, and its status is "recovered elsewhere"."""
    try:
        trial.set_user_attr("status", status)
        return status, study.tell(trial, values, state=state)
    except StorageUnavailable:
        raise
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        logger.info(f"[{worker or 'w0'}] trial #{trial.number} was recovered by another process; its result is dropped")
        return "recovered elsewhere", next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)


def evaluate_trial(study: optuna.Study, trial: optuna.Trial, evaluator: Evaluator, arch: Any, seed: int = 0,
                   report: Report | None = None, values: Callable[[float], list[float]] = lambda v: [v],
                   done: str = "trained", worker: str = "") -> tuple[str, optuna.trial.FrozenTrial]:
    """Evaluate ``arch`` for ``trial``, record the outcome's attributes (a score's, or ``fail_reason``) and tell
    the study: ``values(score)`` are the objective values of a scored trial, ``done`` its status. Returns the
    status and the finished trial. An unexpected error is told as "error" and raised (see ``evaluate``)."""
    # where and with what it runs, recorded first: a run that fails keeps them too (``TrainingEvaluator.setting``)
    for key, value in getattr(evaluator, "setting", lambda seed: {})(seed).items():
        trial.set_user_attr(key, value)
    try:
        outcome = evaluate(evaluator, arch, seed, report)
    except EvaluationError as exc:
        trial.set_user_attr("fail_reason", exc.reason)
        tell(study, trial, "error", None, TrialState.FAIL, worker)
        raise exc.__cause__ from None  # (the original error, its traceback intact)
    for key, value in outcome.attrs.items():
        if value is not None:
            trial.set_user_attr(key, value)
    if outcome.status == "trained":
        return tell(study, trial, done, values(outcome.value), worker=worker)
    if outcome.status != "pruned":
        trial.set_user_attr("fail_reason", outcome.reason)
    return tell(study, trial, outcome.status, None, outcome.state, worker)


# ---------------------------------------------------------------------------------------------- evaluators
class TaskCache:
    """Prepared training tasks of one dataset on one device, keyed by (protocol, seed): its training subset and
    order, and the images resized on the device for each side trained (``ProxyTask``). A job going seed by seed or
    protocol by protocol reuses the task of its last trials instead of preparing it again.

    Memory bound: at most ``max_tasks`` tasks (least recently used dropped first). A task's float views hold its
    training and val images at each side trained: for CIFAR-10's 45,000 train images at 56 px that is 45,000 x 3 x
    56 x 56 x 4 bytes = 1.7 GB (Fashion-MNIST's default proxy subset of 4,000 at 56 px, 50 MB); the decoded uint8
    images themselves are shared by every task of the process."""

    def __init__(self, data: ImageData, device: str | torch.device = "cpu", max_tasks: int = 2):
        if max_tasks < 1:
            raise ValueError(f"max_tasks {max_tasks}: at least 1")
        self.data, self.device, self.max_tasks = data, device, max_tasks
        self._tasks: OrderedDict[ProxyConfig, ProxyTask] = OrderedDict()

    def task(self, config: ProxyConfig) -> ProxyTask:
        """The task of ``config`` (which carries the seed), prepared on first use."""
        if config in self._tasks:
            self._tasks.move_to_end(config)
            return self._tasks[config]
        while len(self._tasks) >= self.max_tasks:
            self._tasks.popitem(last=False)  # free the oldest task's views before preparing the next
        self._tasks[config] = ProxyTask(self.data, config, self.device)
        return self._tasks[config]

    def __len__(self) -> int:
        return len(self._tasks)


class TrainingEvaluator:
    """Trains an architecture from scratch under ``protocol`` with the trial's seed, through the engine; its score
    is val accuracy (test too, recorded, where the protocol reads it). ``space``: architectures of another space
    than SwiftFormer's (a benchmark's)."""

    def __init__(self, tasks: TaskCache, protocol: Protocol, space: Any = None):
        self.tasks, self.protocol, self.space = tasks, protocol, space

    @functools.cached_property
    def provenance(self) -> dict[str, str]:
        """The code's version and the data's fingerprint, recorded with every training (read once: neither changes
        under a running job)."""
        return {"code": code_version(), "data": self.tasks.data.fingerprint()}

    def task(self, seed: int) -> ProxyTask:
        return self.tasks.task(self.protocol.with_seed(seed).config)

    def setting(self, seed: int) -> dict[str, Any]:
        """Where and with what a training of ``seed`` runs: ``evaluate_trial`` records it before the training
        starts, whatever its outcome (the score's attributes are the training's results only)."""
        task = self.task(seed)
        return {"precision": task.policy.precision, "device": str(task.device), "threads": torch.get_num_threads(),
                **self.provenance}

    def __call__(self, arch: Any, seed: int, report: Report | None = None) -> Scored:
        task = self.task(seed)
        result = train_and_evaluate(task, arch, self.protocol.reads_test, report, space=self.space)
        return Scored(result.val_accuracy, {
            "seconds": result.seconds, "cpu_seconds": result.cpu_seconds, "resolution": result.resolution,
            "train_loss_sum": result.loss_sum, "final_train_loss": result.final_loss,
            "test_accuracy": result.test_accuracy})


class SupernetEvaluator:
    """Scores an architecture by the weights it inherits from a trained supernet (BatchNorm re-estimated); one the
    supernet cannot hold is "not scorable"."""

    def __init__(self, scorer: Any):
        self.scorer = scorer

    def __call__(self, arch: Any, seed: int, report: Report | None = None) -> Scored:
        scored = self.scorer.score(self.scorer.check(arch))
        return Scored(scored.top1, {
            "evaluator": "supernet", "supernet_top1": scored.top1, "supernet_val_loss": scored.loss,
            "supernet_top1_uncalibrated": scored.top1_uncalibrated,
            "supernet_val_loss_uncalibrated": scored.loss_uncalibrated, "score_seconds": scored.seconds})


class FunctionEvaluator:
    """A function of the architecture gives its score: a user's (``--evaluator callable:MODULE:FUNCTION``) or a
    benchmark's table (``label`` "table"), whose ``truth`` (what the job does not select on: measured latency,
    long-training accuracy) is recorded beside it."""

    def __init__(self, function: Callable[[Any], float], label: str,
                 truth: Callable[[Any], dict[str, float]] | None = None):
        self.function, self.label, self.truth = function, label, truth

    def __call__(self, arch: Any, seed: int, report: Report | None = None) -> Scored:
        value = float(self.function(arch))
        return Scored(value, {"evaluator": self.label, **(self.truth(arch) if self.truth else {})})
