"""An ablation run as its study records it: which (variant, seed) it is and how it ended; read by the runner
(what is left to train) and by the report (what there is to show). Which runs are final is every job's rule
(``nas.trials.study.FINAL``)."""
from __future__ import annotations

import optuna
from optuna.trial import TrialState


def run_key(trial: optuna.trial.FrozenTrial) -> tuple[str, int]:
    return trial.user_attrs["variant"], trial.user_attrs["seed"]


def status_of(trial: optuna.trial.FrozenTrial) -> str:
    """trained, diverged, out of memory, error, interrupted (its process died), running or queued."""
    if trial.state == TrialState.RUNNING:
        return "running"
    if trial.state == TrialState.WAITING:
        return "queued"
    if trial.state == TrialState.FAIL:
        return trial.user_attrs.get("status", "interrupted")
    return "trained"
