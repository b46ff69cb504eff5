"""What a search's trials say about its space, with Optuna's own analysis: which decisions matter (parameter
importances by Optuna's default evaluator, PED-ANOVA: how much each decision's values differ between the best
10 % of trials and all of them), how the best score grew (optimisation history) and, for a Pareto search, how the
front's hypervolume grew. Drawn with Optuna's matplotlib plots; no new dependency.

Drawn once a search has ``MIN_TRIALS`` trained trials (its accuracy-against-latency plot shows a smaller one
whole). Only trained trials count: an over-budget trial's placeholder score, a duplicate's copy or a pruned trial's missing
score would tell the importances about the budget and the pruner, not about accuracy. So they are computed on an
in-memory copy of the study holding the trained trials alone.
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import optuna

from ..console import quiet_optuna
from ..files import replacing
from ..trials.study import status_of
from .config import SearchConfig

logger = logging.getLogger(__name__)

IMPORTANCES = "param_importances.png"
HISTORY = "history.png"
HYPERVOLUME = "hypervolume.png"
MIN_TRIALS = 10  # fewer trained trials say nothing about importances: PED-ANOVA's best 10 % would be one trial


def trained_copy(study: optuna.Study) -> optuna.Study:
    """An in-memory study with the same directions and metric names, holding only the trained trials."""
    with quiet_optuna():
        return _trained_copy(study)


def _trained_copy(study: optuna.Study) -> optuna.Study:
    copy = optuna.create_study(directions=study.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    if study.metric_names:
        copy.set_metric_names(study.metric_names)
    copy.add_trials([t for t in study.get_trials(deepcopy=False) if status_of(t) == "trained"])
    return copy


def importances(study: optuna.Study) -> dict[str, float]:
    """Each searched decision's importance for reaching the most accurate trained trials (PED-ANOVA, Optuna's
    default, normalised to sum to 1); empty when fewer than ``MIN_TRIALS`` were trained or no decision varied."""
    trained = trained_copy(study)
    if len(trained.trials) < MIN_TRIALS:
        return {}
    try:
        with _negated_on_purpose():
            return optuna.importance.get_param_importances(trained, target=_ranked(trained), normalize=True)
    except (RuntimeError, ValueError) as exc:  # no parameter varied across them, or none shared by all
        logger.info(f"parameter importances not computed: {exc}")
        return {}


def _first(study: optuna.Study):
    """The accuracy of a Pareto search's trials (its first objective); None for one objective, so that Optuna's
    history draws the best value so far as well."""
    return (lambda t: t.values[0]) if len(study.directions) > 1 else None


def _ranked(study: optuna.Study):
    """What the importances rank by: accuracy, the study's own objective (None) or, for a Pareto search, its
    first objective negated (PED-ANOVA, given a target, reads low values as the good ones)."""
    return (lambda t: -t.values[0]) if len(study.directions) > 1 else None


@contextmanager
def _negated_on_purpose() -> Iterator[None]:
    """PED-ANOVA warns whenever it is given a target that low values are the good ones: ours are negated so."""
    with quiet_optuna(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes the importances")
        # (a small search leaves some decision's values with one trial: the report says the figures are rough)
        warnings.filterwarnings("ignore", message="Some regimes for parameter")
        yield


def trained_count(study: optuna.Study) -> int:
    return sum(status_of(t) == "trained" for t in study.get_trials(deepcopy=False))


def write_analysis(out: Path, study: optuna.Study, cfg: SearchConfig,
                   weights: dict[str, float] | None = None) -> list[str]:
    """The importance (``weights``: ``importances(study)``, computed once by the caller), history and (Pareto)
    hypervolume plots in ``out``; the names of those written."""
    import matplotlib.pyplot as plt

    trained = trained_copy(study)
    if len(trained.trials) < MIN_TRIALS:
        return []
    score = cfg.score_name()[0]
    plots = []
    drawn = [(HISTORY, lambda: optuna.visualization.matplotlib.plot_optimization_history(
        trained, target=_first(trained), target_name=score))]
    if weights if weights is not None else importances(study):
        drawn.append((IMPORTANCES, lambda: optuna.visualization.matplotlib.plot_param_importances(
            trained, target=_ranked(trained), target_name=score)))
    if cfg.objective == "pareto":  # accuracy up from 0, latency down from the budget: every trained trial counts
        drawn.append((HYPERVOLUME, lambda: optuna.visualization.matplotlib.plot_hypervolume_history(
            trained, reference_point=[0.0, cfg.budget_ms])))
    for name, draw in drawn:
        with _negated_on_purpose():
            axes = draw()
        figure = axes.figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        with replacing(out / name) as tmp:
            figure.savefig(tmp, dpi=110)
        plt.close(figure)  # (Optuna draws through pyplot: close what it opened, leave the rest alone)
        plots.append(name)
    return plots
