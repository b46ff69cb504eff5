"""One trial of a search, from proposal to verdict.

Ask a trial; the space suggests an architecture; the latency table prices it (with ``--latency-margin band``,
the upper edge of the predictor's error band is what must fit). Over the budget it is a
constraint violation (``trial.set_constraint``; Optuna's samplers rank it below every feasible trial by its
violation, whatever its placeholder value) and is never trained. An architecture whose result is known (trained,
a reference, or pruned) reuses that result instead of training again. One that another worker (or another
``nas search`` process on the same study) is training already is left to it: of the running trials with the same
architecture, the one with the lowest number trains and the others end as "claimed elsewhere". Likewise, when
workers start together near the end, the lowest-numbered take the places left and the others end as "surplus",
so the count asked is met exactly. Each trial writes its architecture before it looks, and looks only once every
lower-numbered running trial has written its own: so the higher of two trials that propose the same architecture at
the same moment always sees the lower one and yields to it (were it to look earlier, the lower one, seeing a
higher rival, would train too). Otherwise it is proxy-trained, reporting
validation accuracy after each epoch so the pruner can stop it, and the study is told. With ``--evaluator
supernet:DIR`` it is scored instead by its inherited weights (calibrated BN; status "trained" all the same, with
``evaluator: supernet`` among its attributes); one the supernet cannot hold is "not scorable". With
``--evaluator callable:MODULE:FUNCTION`` the user's function gives its val accuracy; with ``--data
nb201:<dataset>`` the benchmark's table does, and the trial also records the truth the search does not see (the
measured latency and the 200-epoch accuracy).
"""
from __future__ import annotations

import logging
import os
import socket
import time

import optuna
from optuna.trial import TrialState

from search_spaces import SearchSpace
from swiftformer import VARIANTS

from .context import SearchContext, task_arch
from .evolution import enqueue_child
from ..trials.evaluate import evaluate_trial, tell as tell_status
from ..trials.study import KNOWN, Heartbeat, TrialIndex, index_of, status_of, tally

logger = logging.getLogger(__name__)

PROCESS = f"{socket.gethostname()}:{os.getpid()}"  # which machine and process evaluated a trial
WAIT_FOR_PROPOSALS_S = 20.0  # the longest a trial waits for a lower-numbered one to write its architecture
UNTRAINED = 0.0  # the objective placeholder of an over-budget trial: no sampler or output reads it as a score


def enqueue_references(study: optuna.Study, ctx: SearchContext) -> list[str]:
    """Queue the released variants that fit the budget, once per study; returns their names (a space other than
    SwiftFormer's has none)."""
    if study.user_attrs.get("nas_references_queued"):
        return list(study.user_attrs.get("nas_references", []))
    names = []
    for name, arch in VARIANTS.items() if isinstance(ctx.space, SearchSpace) else ():
        arch = task_arch(arch, ctx.space)
        if arch not in ctx.space:
            logger.info(f"reference {name.upper()} is outside space {ctx.space.name!r}; not evaluated")
            continue
        if ctx.checked_ms(ctx.table.predict(arch)) <= ctx.cfg.budget_ms:
            study.enqueue_trial(ctx.space.trial_params(arch), user_attrs={"reference": name.upper()})
            names.append(name.upper())
    study.set_user_attr("nas_references", names)
    study.set_user_attr("nas_references_queued", True)
    return names


def run_step(study: optuna.Study, ctx: SearchContext, worker: str = "w0") -> tuple[str, optuna.trial.FrozenTrial]:
    """Ask one trial and carry it to its end; returns its status and the finished trial."""
    if ctx.cfg.sampler == "evolution":
        enqueue_child(study, ctx)
    trial = study.ask()
    with Heartbeat(study, trial):  # from the start: a trial whose process dies at any point is seen as stale
        return _carry(study, ctx, trial, worker)


def _carry(study: optuna.Study, ctx: SearchContext, trial: optuna.Trial,
           worker: str) -> tuple[str, optuna.trial.FrozenTrial]:
    cfg = ctx.cfg
    arch = ctx.space.suggest(trial)
    digest = arch.digest()
    latency = ctx.table.predict(arch)
    checked = ctx.checked_ms(latency)
    upper = ctx.predictor.upper_ms(latency) if ctx.predictor.band else None  # (no band: nothing to record)
    for key, value in {"arch": arch.to_dict(), "summary": arch.summary(), "digest": digest,
                       **ctx.space.counts(arch), "latency_ms": latency, "latency_upper_ms": upper, "worker": worker,
                       "process": PROCESS}.items():
        trial.set_user_attr(key, value)
    trial.set_constraint("latency", checked - cfg.budget_ms)

    def tell(status: str, values: list[float] | None,
             state: TrialState = TrialState.COMPLETE) -> tuple[str, optuna.trial.FrozenTrial]:
        return tell_status(study, trial, status, values, state, worker)

    def objective(accuracy: float) -> list[float]:
        return [accuracy] if cfg.objective == "constrained" else [accuracy, latency]

    if checked > cfg.budget_ms:
        return tell("rejected", objective(UNTRAINED))
    reference = trial.user_attrs.get("reference")
    # the same architecture elsewhere in the study; a reference only counts other references (two processes
    # that open a new study together both queue the released variants)
    index = index_of(study)
    running = _proposals_before_looking(study, trial.number, index)
    same = sorted((t for t in index.by_digest.get(digest, []) + [u for u in running
                                                                  if u.user_attrs.get("digest") == digest]
                   if t.number != trial.number and (not reference or t.user_attrs.get("reference"))),
                  key=lambda t: t.number)
    twin = next((t for t in same if t.state != TrialState.RUNNING and status_of(t) in KNOWN), None)
    if twin is not None:
        trial.set_user_attr("duplicate_of", twin.number)
        if twin.state == TrialState.PRUNED:  # stopped at the same point again: the same curve, pruned
            for step, value in twin.intermediate_values.items():
                trial.report(value, step)
            return tell("duplicate", None, TrialState.PRUNED)
        return tell("duplicate", list(twin.values))
    rival = next((t for t in same if t.state == TrialState.RUNNING and t.number < trial.number), None)
    if rival is not None:
        trial.set_user_attr("fail_reason", f"trial #{rival.number} is training the same architecture")
        return tell("claimed elsewhere", None, TrialState.FAIL)
    if not reference and _places_taken(study, trial.number) >= cfg.trials:
        # workers that checked the count at the same moment: the lower-numbered trials take the places left
        trial.set_user_attr("fail_reason", f"the study's {cfg.trials} places were taken when it started")
        return tell("surplus", None, TrialState.FAIL)

    def report(epoch: int, accuracy: float) -> None:
        if cfg.objective != "constrained":
            return  # Optuna cannot prune (or record intermediate values of) multi-objective trials
        trial.report(accuracy, epoch)
        if reference is None and epoch < cfg.proxy.epochs and trial.should_prune():
            raise optuna.TrialPruned(f"val accuracy {accuracy:.3f} after epoch {epoch} is below the median")

    return evaluate_trial(study, trial, ctx.evaluator, arch, cfg.proxy.seed, report, objective,
                          "reference" if reference else "trained", worker)


def _proposals_before_looking(study: optuna.Study, number: int, index: TrialIndex) -> list[optuna.trial.FrozenTrial]:
    """The study's running trials (its finished ones go to ``index``), once every running trial numbered below
    ``number`` has written its architecture (or after ``WAIT_FOR_PROPOSALS_S``: a process that died between asking
    and writing is failed by the recovery of stale trials, and meanwhile is not waited for longer)."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    deadline = time.monotonic() + WAIT_FOR_PROPOSALS_S
    while True:
        running = index.update(study.get_trials(deepcopy=False, states=states))
        unwritten = any(t.number < number and "digest" not in t.user_attrs for t in running)
        if not unwritten or time.monotonic() > deadline:
            return running
        time.sleep(0.05)


def _places_taken(study: optuna.Study, number: int) -> int:
    """Searched trials that used training time, plus the unfinished ones numbered below trial ``number``: those
    evaluating now and those queued (a retry queued just after this trial's ask found the queue empty)."""
    done, flying, _ = tally(study.get_trials(deepcopy=False), before=number, index=index_of(study))
    return done + flying
