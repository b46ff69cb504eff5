"""Paired statistics over seeds: what an ablation can and cannot conclude from n runs per variant.

Every variant is trained with the same seeds (initialisation, batch order, training subset), so a variant and
the base are compared seed by seed: the paired difference removes the share of the noise the seed puts on both.

- Intervals: each variant's mean gets a 95 % percentile bootstrap interval (descriptive); the paired difference,
  which every conclusion rests on, gets a 95 % Student-t interval. At 3-5 seeds the percentile bootstrap cannot
  leave the observed range and covers far less than it claims: simulated with normal data (400 draws each), 74 %
  at 3 seeds, 84 % at 5, 89 % at 10, against the t interval's 95 %; a flag read off it would call noise an effect.
- Test: an exact two-sided sign-flip permutation test of the paired differences (all 2^n sign patterns up to
  n = 16, 20,000 random ones beyond). Its smallest attainable p is 2 / 2^n: 0.25 with 3 seeds, 0.0625 with 5;
  no paired test of 3 or 5 seeds can reach 0.05, which is why the report also gives intervals and seeds needed.
  Wilcoxon's signed-rank test has the same floor at n = 3 and would add nothing.
- Holm's step-down correction across a report's variants (a local function: statsmodels is not a dependency).
- Do the variants differ at all: Friedman's rank test over the seeds every variant was trained with (seeds are
  the blocks, so it is paired like the rest). Holm guards each comparison with the base; this asks the question
  before them, and a large p says the table's spread of means is what seed noise alone would give.
- Inside seed noise: the t interval of the paired difference contains 0 (or fewer than 2 pairs).
- Seeds needed: n = ceil(((z_{1-a/2} + z_{power}) * sd / |d|)^2) from the observed paired SD, a = 0.05,
  power 0.8; at least the n whose exact test can reach a at all (6); unbounded (inf) when d = 0.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.stats import friedmanchisquare, norm

ALPHA = 0.05
POWER = 0.8
LEVEL = 0.95
BOOTSTRAP = 10_000
EXACT_UP_TO = 16


def bootstrap_ci(values: np.ndarray, level: float = LEVEL, resamples: int = BOOTSTRAP,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; (nan, nan) below 2 values (no spread to resample)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def t_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean; (nan, nan) below 2 values. Wider than the bootstrap's at 3-5 seeds (whose
    resamples cannot leave the observed range), so every paired difference of a handful of seeds uses it."""
    from scipy.stats import t

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    half = t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def sign_flip_pvalue(differences: np.ndarray, resamples: int = 20_000, seed: int = 0) -> float:
    """Two-sided p of the mean paired difference under sign flips (exact up to ``EXACT_UP_TO`` pairs)."""
    d = np.asarray(differences, dtype=float)
    if len(d) == 0:
        return math.nan
    observed = abs(d.mean())
    if len(d) <= EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(resamples, len(d)))
    flipped = np.abs((signs * d).mean(axis=1))
    return float(np.mean(flipped >= observed - 1e-12))


def smallest_p(n: int) -> float:
    """The smallest two-sided p an exact sign-flip test of ``n`` pairs can give."""
    return 2.0 / 2 ** n if n else math.nan


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given; nan stays nan and is not counted)."""
    indexed = [(p, i) for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(indexed)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def seeds_needed(difference: float, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Pairs needed to resolve ``difference`` against a paired SD of ``sd`` (inf when the difference is 0)."""
    if math.isnan(difference) or math.isnan(sd):
        return math.nan
    floor = next(n for n in itertools.count(1) if smallest_p(n) <= alpha)
    if difference == 0:
        return math.inf
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return float(max(floor, math.ceil((z * sd / abs(difference)) ** 2)))


def paired(variant: dict[int, float], base: dict[int, float]) -> dict[str, float]:
    """Compare a variant with the base over the seeds both have: mean difference, its interval, p, noise flag,
    paired SD and seeds needed."""
    seeds = sorted(set(variant) & set(base))
    d = np.array([variant[s] - base[s] for s in seeds])
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n >= 2 else math.nan
    low, high = t_interval(d)
    inside = n < 2 or low <= 0 <= high
    return {"pairs": n, "diff": mean, "diff_ci_low": low, "diff_ci_high": high, "diff_sd": sd,
            "p_value": sign_flip_pvalue(d), "within_seed_noise": inside, "seeds_needed": seeds_needed(mean, sd)}


def omnibus(scores: dict[str, dict[int, float]]) -> dict[str, float]:
    """Friedman's test of "no variant differs" over the seeds all variants share: statistic, p, seeds and variants
    used (p is nan with fewer than 3 variants or 2 shared seeds, where the test is undefined)."""
    shared = sorted(set.intersection(*(set(s) for s in scores.values()))) if scores else []
    k, n = len(scores), len(shared)
    if k < 3 or n < 2:
        return {"statistic": math.nan, "p_value": math.nan, "seeds": n, "variants": k}
    table = np.array([[s[seed] for seed in shared] for s in scores.values()])
    if np.all(table == table[:1]):  # every seed ranks all variants equal: no evidence of a difference
        return {"statistic": 0.0, "p_value": 1.0, "seeds": n, "variants": k}
    result = friedmanchisquare(*table)
    return {"statistic": float(result.statistic), "p_value": float(result.pvalue), "seeds": n, "variants": k}
