"""How well a scorer ranks architectures against the reference protocol.

Kendall tau-b (ties allowed) with a bootstrap 95 % interval over architectures; the same within latency bins
(architectures within about +-10 % of each other's predicted latency, where a search actually has to choose);
top-k overlap, and how many of the reference's best 3 a scorer's best 5 hold (a search that keeps its 5 best
for retraining finds those); and, as yardsticks, #params and MACs as scorers and the reference protocol against
its own second seed (the noise ceiling: no scorer can be expected to agree with the reference better than the
reference agrees with itself).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import kendalltau

BIN_RATIO = 1.2  # bins [x, 1.2 x): every pair within a bin is within about +-10 % of the bin's centre


@dataclass
class Agreement:
    scorer: str
    n: int
    tau: float
    tau_ci: tuple[float, float]
    tau_bins: float
    tau_bins_ci: tuple[float, float]
    top5: float
    top10: float
    top3_in_top5: int = 0  # how many of the reference's 3 best are among the scorer's 5 best
    resampled: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)  # tau on each resample

    def minus(self, other: "Agreement") -> tuple[float, float, float]:
        """tau of this scorer minus tau of ``other`` with a paired 95 % interval: both were resampled with the same
        seed over the same architectures (the caller makes sure), so each resample compares them on one set."""
        difference = self.resampled - other.resampled
        return (self.tau - other.tau, *percentile_interval(list(difference)))

    def row(self) -> dict:
        return {"scorer": self.scorer, "n": self.n, "tau": self.tau, "tau_lo": self.tau_ci[0], "tau_hi": self.tau_ci[1],
                "tau_bins": self.tau_bins, "tau_bins_lo": self.tau_bins_ci[0], "tau_bins_hi": self.tau_bins_ci[1],
                "top5_overlap": self.top5, "top10_overlap": self.top10, "top3_in_top5": self.top3_in_top5}


def tau_b(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2:
        return math.nan
    value = kendalltau(x, y, variant="b").statistic
    return float(value) if np.isfinite(value) else math.nan


def latency_bins(latency: np.ndarray, lo: float | None = None) -> np.ndarray:
    """Bin index of each latency on a geometric grid of ratio ``BIN_RATIO`` starting at ``lo``."""
    lo = float(np.min(latency)) if lo is None else lo
    return np.floor(np.log(np.asarray(latency) / lo) / math.log(BIN_RATIO) + 1e-9).astype(int)


def tau_within_bins(score: np.ndarray, reference: np.ndarray, bins: np.ndarray) -> float:
    """Mean of per-bin tau-b weighted by each bin's number of pairs (bins of fewer than 3 architectures skipped)."""
    total, weight = 0.0, 0
    for b in np.unique(bins):
        mask = bins == b
        k = int(mask.sum())
        if k < 3:
            continue
        t = tau_b(score[mask], reference[mask])
        if math.isnan(t):
            continue
        pairs = k * (k - 1) // 2
        total, weight = total + t * pairs, weight + pairs
    return total / weight if weight else math.nan


def top_k_overlap(score: np.ndarray, reference: np.ndarray, k: int) -> float:
    if len(score) < k:
        return math.nan
    return len(set(np.argsort(-score)[:k]) & set(np.argsort(-reference)[:k])) / k


def best_found(score: np.ndarray, reference: np.ndarray, k_reference: int = 3, k_score: int = 5) -> int:
    """How many of the reference's ``k_reference`` best are among the scorer's ``k_score`` best."""
    return len(set(np.argsort(-score)[:k_score]) & set(np.argsort(-reference)[:k_reference]))


def agreement(scorer: str, score, reference, latency, n_boot: int = 2000, seed: int = 0) -> Agreement:
    """Rank agreement of ``score`` with ``reference`` over the same architectures (aligned arrays)."""
    score, reference, latency = (np.asarray(v, dtype=float) for v in (score, reference, latency))
    bins = latency_bins(latency)
    rng = np.random.default_rng(seed)
    taus, bin_taus = [], []
    n = len(score)
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        taus.append(tau_b(score[idx], reference[idx]))
        bin_taus.append(tau_within_bins(score[idx], reference[idx], bins[idx]))
    return Agreement(scorer, n, tau_b(score, reference), percentile_interval(taus),
                     tau_within_bins(score, reference, bins), percentile_interval(bin_taus),
                     top_k_overlap(score, reference, 5), top_k_overlap(score, reference, 10),
                     best_found(score, reference), np.asarray(taus))


def percentile_interval(values: list[float]) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the finite ``values`` (a bootstrap 95 % interval)."""
    finite = np.asarray([v for v in values if not math.isnan(v)])
    if not len(finite):
        return (math.nan, math.nan)
    return float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))
