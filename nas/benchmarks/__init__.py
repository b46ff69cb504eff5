"""Public tabular benchmarks with known answers (NAS-Bench-201 accuracies, NAS-Bench-201 and FBNet latencies on 27
device settings), shipped with the project, and what a search needs to run on them (``tabular``).

Below the search: nothing here imports ``nas.search``. The proving ground that runs searches on these tables and
judges them against their oracles is ``nas.proving``.
"""
from .tables import DATASETS, BenchmarkError, Dataset, Oracle, benchmark_space, devices, latency_table, \
    nb201_accuracies, oracle

__all__ = ["DATASETS", "BenchmarkError", "Dataset", "Oracle", "benchmark_space", "devices", "latency_table",
           "nb201_accuracies", "oracle"]
