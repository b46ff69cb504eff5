"""A search on a tabular benchmark: ``--space nb201 --data nb201:cifar100 --device pixel2``.

Nothing is trained: a candidate's score is a table column, its latency the device's measured figure (the oracle)
or the few-shot calibration's (``few_shot``) from ``--latency-shots K`` measured architectures of the device, with
HELP's known devices as its prior. Every trial also
records the truth the search does not see (the architecture's measured latency and its 200-epoch accuracy), so the
report can say what the winner really is.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd

from search_spaces.interface import Space

from ..latency.predictor import LatencyPredictor
from .few_shot import calibrate_few_shot
from .latency import measured
from .tables import DATASETS, BenchmarkError, Dataset, benchmark_space, check_dataset, nb201_accuracies

PREFIX = "nb201:"
SCORES = {
    "12ep": "the 12-epoch accuracy (one run, the benchmark's cheap proxy)",
    "200ep-run": "one 200-epoch run (a seed drawn per architecture from the search's seed)",
    "200ep-mean": "the 200-epoch mean over the benchmark's seeds (the final figure itself: an optimiser's test)",
}


def is_tabular(data: str) -> bool:
    return data.startswith(PREFIX)


def parse_data(data: str) -> Dataset:
    """``nb201:<dataset>``; BenchmarkError lists the datasets."""
    if not is_tabular(data):
        raise BenchmarkError(f"--data {data!r} is not a tabular benchmark; accepted: "
                             f"{', '.join(PREFIX + name for name in DATASETS)}")
    return check_dataset(data[len(PREFIX):])


class MeasuredLatency:
    """The latency table interface (``predict``) over a device's measured figures."""

    def __init__(self, series: pd.Series):
        self.series = series
        self.space = f"measured:{series.name}"

    def predict(self, arch: Any) -> float:
        return float(self.series.at[arch.digest()])


@dataclass
class TabularSetup:
    """What a search on the table needs: the space, how it prices (``table.predict``), a predictor-like record of
    that pricing, the score of an architecture, and the truth recorded beside it."""

    dataset: Dataset
    space: Space
    table: Any  # MeasuredLatency or a FewShot calibration (predicted)
    predictor: LatencyPredictor
    evaluate: Callable[[Any], float]
    truth: Callable[[Any], dict[str, float]]
    calibrated_on: list[str]  # the measured architectures a predictor was fitted on (none for the oracle)
    keys: list[str]  # every architecture of the table


def tabular_setup(data: str, space_name: str, device: str, score: str = "12ep", shots: int | None = None,
                  seed: int = 0) -> TabularSetup:
    if space_name != "nb201":
        raise BenchmarkError(f"--data {data} scores NAS-Bench-201 architectures; use --space nb201 (got "
                             f"{space_name!r}); FBNet's table has latency only")
    if score not in SCORES:
        raise BenchmarkError(f"unknown tabular score {score!r}; accepted: {', '.join(SCORES)}")
    dataset = parse_data(data)
    space = benchmark_space("nb201", dataset)
    truth_latency = measured("nb201", device)
    if shots is None:
        table, calibrated_on = MeasuredLatency(truth_latency), []
        predictor = LatencyPredictor(device, {}, 0.0, {}, {"source": "measured (the benchmark's table)"})
    else:
        table = calibrate_few_shot("nb201", device, shots, seed)
        calibrated_on = table.archs
        predictor = LatencyPredictor(device, {}, 0.0, {}, {"source": f"few-shot: {shots} measured architectures "
                                                                      f"(seed {seed}), form {table.form}"})
    accuracies = nb201_accuracies()
    column = {"12ep": dataset.proxy, "200ep-mean": dataset.final}.get(score)

    def evaluate(arch: Any) -> float:
        """Top-1 as a fraction, as every study records accuracy (the tables give percent)."""
        key = arch.digest()
        if column is not None:
            return float(accuracies.at[key, column]) / 100
        runs = accuracies.at[key, dataset.seeds]  # one run, the same for this architecture and search seed
        return float(runs[random.Random(f"{seed}:{key}").randrange(len(runs))]) / 100

    def truth(arch: Any) -> dict[str, float]:
        key = arch.digest()
        return {"measured_latency_ms": float(truth_latency.at[key]),
                "final_accuracy": float(accuracies.at[key, dataset.final]) / 100}

    return TabularSetup(dataset, space, table, predictor, evaluate, truth, calibrated_on, list(truth_latency.index))
