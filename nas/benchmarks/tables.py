"""The public tables with known answers, shipped in ``nas/data/benchmarks`` (SOURCES.md there: columns, sources,
licences), read with pandas.

- NAS-Bench-201: every architecture's 12-epoch accuracy (one run: the proxy a search can afford) and every seed's
  200-epoch accuracy (the final figure) on CIFAR-10, CIFAR-100 and ImageNet16-120;
- their measured latency on 27 device settings, and 5,000 FBNet-space architectures' on 27 settings.

Each table is indexed by the benchmark's own architecture string (``NB201Arch.digest()``, ``FBNetArch.digest()``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import pandas as pd

from search_spaces import FBNetSpace, NB201Space
from search_spaces.interface import Space

SPACES = ("nb201", "fbnet")


class BenchmarkError(ValueError):
    """A benchmark, dataset, device or budget the tables do not have; the message lists what they do have."""


@dataclass(frozen=True)
class Dataset:
    """One of NAS-Bench-201's datasets and the columns that score it."""

    name: str
    classes: int
    side: int  # input resolution
    proxy: str  # the 12-epoch accuracy a search selects on (one run)
    proxy_split: str
    final: str  # the 200-epoch accuracy, mean over the benchmark's seeds
    seeds: str  # the same, each seed (';'-separated)
    final_split: str
    params: str  # parameters in millions as the benchmark records them


DATASETS = {
    "cifar10": Dataset("cifar10", 10, 32, "c10valid_valid_12ep", "CIFAR-10 valid half (trained on train)",
                       "c10valid_valid_200ep_mean", "c10valid_valid_200ep_seeds",
                       "CIFAR-10 valid half (trained on train)", "params_mb_cifar10"),
    "cifar100": Dataset("cifar100", 100, 32, "c100_valid_12ep", "CIFAR-100 valid half",
                        "c100_valtest_200ep_mean", "c100_valtest_200ep_seeds", "CIFAR-100 valid and test halves",
                        "params_mb_cifar100"),
    "imagenet16-120": Dataset("imagenet16-120", 120, 16, "in16_valid_12ep", "ImageNet16-120 valid half",
                              "in16_valtest_200ep_mean", "in16_valtest_200ep_seeds",
                              "ImageNet16-120 valid and test halves", "params_mb_imagenet16"),
}


def _read(name: str) -> pd.DataFrame:
    with resources.as_file(resources.files("nas") / "data" / "benchmarks" / name) as path:
        return pd.read_csv(path)


@lru_cache(maxsize=None)
def nb201_accuracies() -> pd.DataFrame:
    """One row per NAS-Bench-201 architecture, indexed by its string; ``<dataset>_seeds`` parsed to tuples."""
    frame = _read("nb201.csv.gz").set_index("arch_str")
    for dataset in DATASETS.values():
        frame[dataset.seeds] = [tuple(float(v) for v in str(text).split(";")) for text in frame[dataset.seeds]]
    return frame


@lru_cache(maxsize=None)
def latency_table(space: str) -> pd.DataFrame:
    """Measured milliseconds, one column per device setting, indexed by the benchmark's architecture string."""
    if space == "nb201":
        frame = _read("nb201_latency_ms.csv.gz").set_index("index")
        keys = _read("nb201.csv.gz").set_index("index")["arch_str"]
        frame.index = keys.loc[frame.index].to_numpy()
    elif space == "fbnet":
        frame = _read("fbnet_latency_ms.csv.gz").drop(columns="index").set_index("ops")
    else:
        raise BenchmarkError(f"no latency table for space {space!r}; accepted: {', '.join(SPACES)}")
    frame.index.name = "arch"
    return frame


def devices(space: str) -> list[str]:
    return list(latency_table(space).columns)


def check_device(space: str, device: str) -> str:
    if device not in devices(space):
        raise BenchmarkError(f"unknown {space} device {device!r}; accepted: {', '.join(devices(space))}")
    return device


def check_dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise BenchmarkError(f"unknown NAS-Bench-201 dataset {name!r}; accepted: {', '.join(DATASETS)}")
    return DATASETS[name]


def benchmark_space(space: str, dataset: Dataset | None = None) -> Space:
    """The space whose networks the tables describe (the dataset's classes and input size for NAS-Bench-201;
    FBNet's latencies were recorded on CIFAR-100 input)."""
    if space == "nb201":
        dataset = dataset or DATASETS["cifar10"]
        return NB201Space(num_classes=dataset.classes, resolution=dataset.side)
    if space == "fbnet":
        return FBNetSpace(num_classes=100, resolution=32)
    raise BenchmarkError(f"unknown benchmark space {space!r}; accepted: {', '.join(SPACES)}")


@dataclass
class Oracle:
    """The best architecture whose measured latency fits a budget: the answer a search is judged against."""

    arch: str
    final: float  # its 200-epoch mean
    proxy: float  # its 12-epoch accuracy
    latency_ms: float
    best_proxy: float  # the best 12-epoch accuracy that fits (what a search on the proxy can reach)
    proxy_pick_final: float  # the 200-epoch mean of that best-proxy architecture (a perfect search's result)
    feasible: int  # architectures that fit


def oracle(dataset: Dataset, latency: pd.Series | None, budget_ms: float) -> Oracle:
    """The best 200-epoch mean among architectures whose measured ``latency`` fits ``budget_ms`` (all when
    ``latency`` is None); BenchmarkError names the fastest architecture when none fits."""
    table = nb201_accuracies()
    fits = table.index if latency is None else latency.index[latency.to_numpy() <= budget_ms]
    if len(fits) == 0:
        fastest = latency.idxmin()
        raise BenchmarkError(f"no architecture fits {budget_ms:g} ms on {latency.name}; the fastest is "
                             f"{latency.min():g} ms ({fastest})")
    rows = table.loc[fits]
    best = rows[dataset.final].idxmax()
    best_proxy = rows[dataset.proxy].idxmax()
    return Oracle(best, float(rows.at[best, dataset.final]), float(rows.at[best, dataset.proxy]),
                  float(latency.at[best]) if latency is not None else float("nan"),
                  float(rows.at[best_proxy, dataset.proxy]), float(rows.at[best_proxy, dataset.final]), len(fits))
