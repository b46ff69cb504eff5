"""Early stopping of proxy trainings: the median rule over the searched architectures only.

Optuna's ``MedianPruner`` counts every finished trial: over-budget rejections and reused duplicates (COMPLETE
without training) would end its start-up at once, and the references' curves would set the median. Here only
searched trials trained to the end count, for the start-up and for the median alike.
"""
from __future__ import annotations

import statistics

import optuna
from optuna.trial import TrialState


class SearchedMedianPruner(optuna.pruners.BasePruner):
    def __init__(self, n_startup_trials: int = 8, n_warmup_steps: int = 0):
        self.n_startup_trials, self.n_warmup_steps = n_startup_trials, n_warmup_steps

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        peers = [t.intermediate_values[step] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                 if t.user_attrs.get("status") == "trained" and step in t.intermediate_values]
        if len(peers) < self.n_startup_trials:
            return False
        return trial.intermediate_values[step] < statistics.median(peers)
